/*
 * The MoE layer alone (src/moe/moe.h): moe_forward and moe_backward for every router kind,
 * in training and in inference, against an oracle written out here as a plain loop over
 * tokens in double precision.
 *
 * Each case routes T random tokens with pm_router_forward, draws random SwiGLU experts
 * f_e(x) = down·(silu(gate·x) ⊙ (up·x)) (Hugging Face layout) and a random upstream gradient
 * dy, and holds the routing fixed (weights are constants), so L(x, W) = Σ_t <dy_t, y_t>.
 * It checks that
 *  - y_t = Σ_{combine pairs (e, w) of t} w·f_e(x_t), and exactly 0 for a token without pairs;
 *  - c_p = <dy_t, f_e(x_t)> for every compute pair, including pairs computed only for the
 *    router (densemixer in training), and that c is overwritten;
 *  - dx and the expert gradients equal the oracle's, which only combine pairs feed, and are
 *    accumulated (+=) into non-zero buffers; an expert with no combine pair and a token with
 *    none keep their gradient buffers bit for bit; a second backward call gives the same;
 *  - the oracle's gradients equal central differences of its own loss (double), so the
 *    oracle is checked too, and moe_backward's equal central differences of L computed by
 *    moe_forward itself (float32: a coarse step and a loose tolerance, but independent of
 *    the oracle), for every entry of x and of the expert weights.
 * Routers are iterated by index, so routers added later are covered without naming them.
 * Further tests: the fused gate/up product and SwiGLU's layout against separate naive
 * products; the experts run side by side (one per thread) against one at a time, on shapes
 * where OpenBLAS and oneDNN split a product over the threads, with fp32 OpenBLAS products and
 * on a oneDNN context's workers (bf16, and fp32 through oneDNN), and when side by side is
 * refused (no workers, too little room, fp32 shapes not timed yet); the layer's fused passes
 * side by side against its passes called one by one, bit for bit; moe_experts_check refuses
 * experts whose up_proj does not follow gate_proj.
 * The MoE state and scratch are sized to the batch's exact number of compute pairs, so that
 * the sanitizer build catches any access past them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "check.h"
#include "moe/moe_internal.h"
#include "nn/nn.h"

enum { T = 7, H = 8, I = 6, E = 5, K = 2 };
/* Each expert's weights are one block of PER_EXPERT floats: gate (I, H), up (I, H), down (H, I). */
enum { MATRIX = I * H, PER_EXPERT = 3 * MATRIX, PARAMS = E * PER_EXPERT };
enum { GATE = 0, UP = MATRIX, DOWN = 2 * MATRIX };
enum { MAX_PAIRS = T * E };

/* ------------------------------------------------------------ the oracle */

static double sigmoid(double g) { return 1.0 / (1.0 + exp(-g)); }

/* One expert on one token: pre-activations g = gate·x, u = up·x, a = silu(g) ⊙ u, f = down·a. */
typedef struct {
    double g[I], u[I], a[I], f[H];
} expert_eval;

static void expert_apply(const double *w, const double *x, expert_eval *ev) {
    for (int i = 0; i < I; i++) {
        double g = 0.0, u = 0.0;
        for (int j = 0; j < H; j++) {
            g += w[GATE + i * H + j] * x[j];
            u += w[UP + i * H + j] * x[j];
        }
        ev->g[i] = g;
        ev->u[i] = u;
        ev->a[i] = g * sigmoid(g) * u;
    }
    for (int h = 0; h < H; h++) {
        double f = 0.0;
        for (int i = 0; i < I; i++) f += w[DOWN + h * I + i] * ev->a[i];
        ev->f[h] = f;
    }
}

/* The layer's inputs in double: x (T, H), the expert weights (E blocks), dy (T, H). */
typedef struct {
    const pm_routing *routing;
    double x[T * H], w[PARAMS], dy[T * H];
} oracle;

/* y (T, H) = Σ over t's combine pairs of w·f_e(x_t). */
static void oracle_forward(const oracle *o, double *y) {
    const pm_routing *r = o->routing;
    for (int t = 0; t < T; t++) {
        double *row = y + t * H;
        for (int h = 0; h < H; h++) row[h] = 0.0;
        for (int q = r->offsets[t]; q < r->offsets[t + 1]; q++) {
            expert_eval ev;
            expert_apply(o->w + r->experts[q] * PER_EXPERT, o->x + t * H, &ev);
            for (int h = 0; h < H; h++) row[h] += r->weights[q] * ev.f[h];
        }
    }
}

static double oracle_loss(const oracle *o) {
    double y[T * H], loss = 0.0;
    oracle_forward(o, y);
    for (int n = 0; n < T * H; n++) loss += o->dy[n] * y[n];
    return loss;
}

/* c (compute pairs) = <dy_t, f_e(x_t)>; dx (T, H) and dw (PARAMS) = dL/dx, dL/dW, which only
 * combine pairs feed (written, not accumulated). */
static void oracle_backward(const oracle *o, double *c, double *dx, double *dw) {
    const pm_routing *r = o->routing;
    memset(dx, 0, sizeof(double) * T * H);
    memset(dw, 0, sizeof(double) * PARAMS);
    for (int t = 0; t < T; t++) {
        const double *x = o->x + t * H, *dy = o->dy + t * H;
        for (int p = r->c_offsets[t]; p < r->c_offsets[t + 1]; p++) {
            expert_eval ev;
            expert_apply(o->w + r->c_experts[p] * PER_EXPERT, x, &ev);
            c[p] = 0.0;
            for (int h = 0; h < H; h++) c[p] += dy[h] * ev.f[h];
        }
        for (int q = r->offsets[t]; q < r->offsets[t + 1]; q++) {
            const double *w = o->w + r->experts[q] * PER_EXPERT;
            double *d = dw + r->experts[q] * PER_EXPERT, g[H], da[I];
            expert_eval ev;
            expert_apply(w, x, &ev);
            for (int h = 0; h < H; h++) g[h] = r->weights[q] * dy[h]; /* dL/df_e */
            for (int i = 0; i < I; i++) {
                da[i] = 0.0;
                for (int h = 0; h < H; h++) {
                    da[i] += w[DOWN + h * I + i] * g[h];
                    d[DOWN + h * I + i] += g[h] * ev.a[i];
                }
                const double s = sigmoid(ev.g[i]);
                const double dgate = da[i] * ev.u[i] * s * (1.0 + ev.g[i] * (1.0 - s));
                const double dup = da[i] * ev.g[i] * s;
                for (int j = 0; j < H; j++) {
                    d[GATE + i * H + j] += dgate * x[j];
                    d[UP + i * H + j] += dup * x[j];
                    dx[t * H + j] += w[GATE + i * H + j] * dgate + w[UP + i * H + j] * dup;
                }
            }
        }
    }
}

/* ------------------------------------------------------------- helpers */

static double max_abs(const double *v, int n) {
    double m = 0.0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* got[i] within rel·|want[i]| + abs_rel·max|want| (float32 sums cancel: the floor scales with
 * the array's magnitude). */
static void check_array(const float *got, const double *want, int n, double rel, double abs_rel,
                        const char *label, const char *what) {
    char name[128];
    snprintf(name, sizeof name, "%s: %s", label, what);
    const double abs_floor = abs_rel * fmax(max_abs(want, n), 1e-30);
    for (int i = 0; i < n; i++) assert_close(got[i], want[i], rel, abs_floor, name, i);
}

/* L = Σ dy ⊙ y in double, y from moe_forward. */
static double layer_loss(moe_state *state, const float *x, const pm_routing *routing,
                         const moe_expert *experts, const float *dy) {
    float y[T * H];
    moe_forward(state, y, x, routing, experts);
    double loss = 0.0;
    for (int n = 0; n < T * H; n++) loss += (double)dy[n] * y[n];
    return loss;
}

/* Central difference of layer_loss in v[n] (x or a weight); the step actually taken in float
 * is used as the denominator. */
static double layer_difference(moe_state *state, float *v, int n, float step, const float *x,
                               const pm_routing *routing, const moe_expert *experts,
                               const float *dy) {
    const float saved = v[n], plus = saved + step, minus = saved - step;
    v[n] = plus;
    const double up = layer_loss(state, x, routing, experts, dy);
    v[n] = minus;
    const double down = layer_loss(state, x, routing, experts, dy);
    v[n] = saved;
    return (up - down) / ((double)plus - (double)minus);
}

/* What the cases exercised, so that the suite can insist the special paths were reached. */
typedef struct {
    int compute_only_pairs; /* compute pairs without a combine weight */
    int idle_experts;       /* experts without a combine pair (per case) */
    int idle_computed;      /* ... of which some compute pair asked for the expert */
    int empty_tokens;       /* tokens without a combine pair */
} coverage;

/* -------------------------------------------------------- one case */

/* Routes `logits` with cfg and checks the layer's forward and backward (see the header). */
static void check_layer(const char *label, pm_router_config cfg, bool training,
                        const float *logits, uint64_t seed, coverage *cov) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 1);
    static float x[T * H], params[PARAMS], grads[PARAMS], grads0[PARAMS], dy[T * H];
    static float y[T * H], dx[T * H], dx0[T * H], c[MAX_PAIRS];
    static oracle o;
    static double y_want[T * H], c_want[MAX_PAIRS], dx_want[T * H], dw_want[PARAMS];
    static double want[PARAMS];
    random_normal(&rng, x, T * H, 1.0);
    for (int e = 0; e < E; e++) {
        float *w = params + e * PER_EXPERT;
        random_normal(&rng, w + GATE, MATRIX, 1.0 / sqrt(H));
        random_normal(&rng, w + UP, MATRIX, 1.0 / sqrt(H));
        random_normal(&rng, w + DOWN, MATRIX, 1.0 / sqrt(I));
    }
    random_normal(&rng, dy, T * H, 1.0);
    random_normal(&rng, dx0, T * H, 1.0);
    random_normal(&rng, grads0, PARAMS, 1.0);

    pm_router *router = pm_router_create(&cfg);
    assert_non_null(router);
    pm_routing *routing = pm_routing_create(router, T);
    assert_non_null(routing);
    assert_int_equal(pm_router_forward(router, routing, logits, T, training, &rng), PM_OK);
    const int pairs = routing->c_offsets[T];
    assert_true(pairs <= MAX_PAIRS);

    /* What moe.c relies on: each token's combine experts are increasing and appear in its
     * compute list in the same order. Count what this case exercises. */
    bool combined[E] = {false}, computed[E] = {false};
    for (int t = 0; t < T; t++) {
        int p = routing->c_offsets[t];
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
            if (q > routing->offsets[t]) assert_true(routing->experts[q] > routing->experts[q - 1]);
            while (p < routing->c_offsets[t + 1] && routing->c_experts[p] != routing->experts[q]) p++;
            assert_true(p < routing->c_offsets[t + 1]);
            combined[routing->experts[q]] = true;
        }
        for (p = routing->c_offsets[t]; p < routing->c_offsets[t + 1]; p++)
            computed[routing->c_experts[p]] = true;
        cov->empty_tokens += routing->offsets[t] == routing->offsets[t + 1];
    }
    cov->compute_only_pairs += pairs - routing->offsets[T];
    for (int e = 0; e < E; e++) {
        cov->idle_experts += !combined[e];
        cov->idle_computed += !combined[e] && computed[e];
    }

    moe_expert experts[E];
    for (int e = 0; e < E; e++) {
        float *w = params + e * PER_EXPERT, *d = grads + e * PER_EXPERT;
        experts[e] = (moe_expert){w + GATE, w + UP, w + DOWN, d + GATE, d + UP, d + DOWN, NULL, NULL, NULL};
    }
    moe_state state;
    moe_scratch scratch;
    const int capacity = pairs > 0 ? pairs : 1;
    assert_int_equal(moe_state_init(&state, H, I, E, T, capacity), PM_OK);
    assert_int_equal(moe_scratch_init(&scratch, H, I, capacity), PM_OK);

    o.routing = routing;
    for (int n = 0; n < T * H; n++) o.x[n] = x[n], o.dy[n] = dy[n];
    for (int n = 0; n < PARAMS; n++) o.w[n] = params[n];

    /* forward: y is overwritten, tokens without pairs get exactly 0 */
    for (int n = 0; n < T * H; n++) y[n] = NAN;
    moe_forward(&state, y, x, routing, experts);
    oracle_forward(&o, y_want);
    check_array(y, y_want, T * H, 1e-5, 1e-6, label, "y");
    for (int t = 0; t < T; t++)
        if (routing->offsets[t] == routing->offsets[t + 1])
            for (int h = 0; h < H; h++) assert_true(y[t * H + h] == 0.0f);

    /* backward into non-zero buffers: c overwritten, dx and gradients accumulated */
    oracle_backward(&o, c_want, dx_want, dw_want);
    for (int p = 0; p < MAX_PAIRS; p++) c[p] = NAN;
    memcpy(dx, dx0, sizeof dx);
    memcpy(grads, grads0, sizeof grads);
    moe_backward(&state, &scratch, dx, c, dy, routing, experts);
    check_array(c, c_want, pairs, 1e-5, 1e-6, label, "c");
    for (int p = pairs; p < MAX_PAIRS; p++) assert_true(isnan(c[p])); /* nothing past the list */
    for (int n = 0; n < T * H; n++) want[n] = dx0[n] + dx_want[n];
    check_array(dx, want, T * H, 1e-5, 1e-6, label, "dx accumulated");
    for (int n = 0; n < PARAMS; n++) want[n] = grads0[n] + dw_want[n];
    check_array(grads, want, PARAMS, 1e-5, 1e-6, label, "expert gradients accumulated");
    /* (the oracle ignores pairs computed only for the router, so the checks above already
     * require that they reach neither dx nor the expert parameters) an expert without a
     * combine pair, and a token without one, keep their buffers bit for bit */
    for (int e = 0; e < E; e++)
        if (!combined[e])
            assert_memory_equal(grads + e * PER_EXPERT, grads0 + e * PER_EXPERT, sizeof(float) * PER_EXPERT);
    for (int t = 0; t < T; t++)
        if (routing->offsets[t] == routing->offsets[t + 1])
            assert_memory_equal(dx + t * H, dx0 + t * H, sizeof(float) * H);

    /* a second call (same forward) into zeroed buffers gives the gradients alone */
    memset(dx, 0, sizeof dx);
    memset(grads, 0, sizeof grads);
    moe_backward(&state, &scratch, dx, c, dy, routing, experts);
    check_array(c, c_want, pairs, 1e-5, 1e-6, label, "c (second call)");
    check_array(dx, dx_want, T * H, 1e-5, 1e-6, label, "dx");
    check_array(grads, dw_want, PARAMS, 1e-5, 1e-6, label, "expert gradients");

    /* the oracle's gradients against central differences of its double loss */
    const double h = 1e-5;
    char name[128];
    snprintf(name, sizeof name, "%s: oracle dx vs differences", label);
    for (int n = 0; n < T * H; n++) {
        const double saved = o.x[n];
        o.x[n] = saved + h;
        const double up = oracle_loss(&o);
        o.x[n] = saved - h;
        const double down = oracle_loss(&o);
        o.x[n] = saved;
        assert_close(dx_want[n], (up - down) / (2 * h), 1e-6, 1e-8, name, n);
    }
    snprintf(name, sizeof name, "%s: oracle dW vs differences", label);
    for (int n = 0; n < PARAMS; n++) {
        const double saved = o.w[n];
        o.w[n] = saved + h;
        const double up = oracle_loss(&o);
        o.w[n] = saved - h;
        const double down = oracle_loss(&o);
        o.w[n] = saved;
        assert_close(dw_want[n], (up - down) / (2 * h), 1e-6, 1e-8, name, n);
    }

    /* moe_backward against central differences of moe_forward itself (float32: with a step
     * of 5e-3 the rounding noise and the truncation error of a difference are each about
     * 1e-4 here, observed at most 2.3e-4) */
    const float step = 5e-3f;
    /* some 1500 tiny forward passes: one thread, or waking the team dominates the runtime */
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    snprintf(name, sizeof name, "%s: dx vs differences of moe_forward", label);
    for (int n = 0; n < T * H; n++)
        assert_close(dx[n], layer_difference(&state, x, n, step, x, routing, experts, dy), 5e-3, 1e-3,
                     name, n);
    snprintf(name, sizeof name, "%s: dW vs differences of moe_forward", label);
    for (int n = 0; n < PARAMS; n++)
        assert_close(grads[n], layer_difference(&state, params, n, step, x, routing, experts, dy), 5e-3,
                     1e-3, name, n);
    omp_set_num_threads(threads);

    moe_scratch_free(&scratch);
    moe_state_free(&state);
    pm_routing_free(routing);
    pm_router_free(router);
}

/* ------------------------------------------------------------- the tests */

/* Every router, training and inference, on random logits and on logits where expert E−1 is
 * far behind (so most routers never select it, and it is idle in the combine list). */
static void test_every_router(void **unused) {
    (void)unused;
    coverage cov = {0};
    float logits[T * E];
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        const pm_router_config cfg = pm_router_config_default((pm_router_kind)kind, E, K);
        for (int training = 0; training <= 1; training++)
            for (int starved = 0; starved <= 1; starved++) {
                pm_rng rng;
                const uint64_t seed = 100 + (uint64_t)(4 * kind + 2 * training + starved);
                pm_rng_init(&rng, seed, 0);
                random_normal(&rng, logits, T * E, 1.0);
                if (starved)
                    for (int t = 0; t < T; t++) logits[t * E + E - 1] -= 6.0f;
                char label[96];
                snprintf(label, sizeof label, "%s/%s/%s", pm_router_kind_name((pm_router_kind)kind),
                         training ? "train" : "eval", starved ? "starved" : "random");
                check_layer(label, cfg, training, logits, seed, &cov);
            }
    }
    /* The special paths were reached: an idle expert (starved cases), and pairs computed only
     * for the router, including for an idle expert (densemixer in training today). */
    assert_true(cov.idle_experts > 0);
    assert_true(cov.compute_only_pairs > 0);
    assert_true(cov.idle_computed > 0);
}

/* Tokens without a combine pair, forced through public configs: probmoe-dyn with k_min = 0
 * and a token whose logits are all very negative (the empty set is then both the MAP set and,
 * up to ~1e-12, the only sample), and softmoe with a fixed tau = 0.5 and a token with equal
 * logits (LapSum gives each expert soft_k / E = 0.4 < tau). */
static void test_token_without_pairs(void **unused) {
    (void)unused;
    enum { EMPTY = 3 };
    float logits[T * E];
    for (int training = 0; training <= 1; training++) {
        pm_rng rng;
        pm_rng_init(&rng, 200 + (uint64_t)training, 0);

        pm_router_config dyn = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, E, K);
        dyn.k_min = 0;
        random_normal(&rng, logits, T * E, 2.0);
        for (int e = 0; e < E; e++) logits[EMPTY * E + e] = -30.0f;
        coverage cov = {0};
        check_layer(training ? "probmoe-dyn k_min=0/train" : "probmoe-dyn k_min=0/eval", dyn, training,
                    logits, 210 + (uint64_t)training, &cov);
        assert_true(cov.empty_tokens >= 1 && cov.empty_tokens < T);

        pm_router_config soft = pm_router_config_default(PM_ROUTER_SOFTMOE, E, K);
        soft.tau = 0.5f;
        random_normal(&rng, logits, T * E, 3.0);
        for (int e = 0; e < E; e++) logits[EMPTY * E + e] = 0.0f;
        cov = (coverage){0};
        check_layer(training ? "softmoe tau=0.5/train" : "softmoe tau=0.5/eval", soft, training, logits,
                    220 + (uint64_t)training, &cov);
        assert_true(cov.empty_tokens >= 1 && cov.empty_tokens < T);
    }
}

/* A batch where no token has a combine pair: y = 0, c has nothing to fill, dx and every
 * expert gradient stay as they were. */
static void test_batch_without_pairs(void **unused) {
    (void)unused;
    float logits[T * E];
    for (int n = 0; n < T * E; n++) logits[n] = -30.0f - (float)(n % E);
    pm_router_config dyn = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, E, K);
    dyn.k_min = 0;
    for (int training = 0; training <= 1; training++) {
        coverage cov = {0};
        check_layer(training ? "empty batch/train" : "empty batch/eval", dyn, training, logits, 300, &cov);
        assert_int_equal(cov.empty_tokens, T);
        assert_int_equal(cov.idle_experts, E);
    }
}

/* ------------------------------------------- the fused gate/up product */

/* One expert's projections on n rows as the layer computes them (one product with the (2I, H)
 * matrix [gate; up], SwiGLU over the (n, 2I) result, and its backward) against separate naive
 * products of gate and up in double; and the decoder's row products, which must equal two
 * separate row products bit for bit (each output's sum has one fixed order). */
static void test_fused_gate_up(void **unused) {
    (void)unused;
    enum { N = 13, FH = 40, FI = 24 };
    pm_rng rng;
    pm_rng_init(&rng, 400, 0);
    static float x[N * FH], w[2 * FI * FH], gate_up[N * 2 * FI], act[N * FI], dact[N * FI];
    static float dgate_up[N * 2 * FI], dx[N * FH], dw[2 * FI * FH], rows[N * 2 * FI], apart[N * FI];
    static double want_act[N * FI], want_dx[N * FH], want_dw[2 * FI * FH];
    random_normal(&rng, x, N * FH, 1.0);
    random_normal(&rng, w, 2 * FI * FH, 1.0 / sqrt(FH));
    random_normal(&rng, dact, N * FI, 1.0);
    const float *gate = w, *up = w + FI * FH;
    memset(want_dx, 0, sizeof want_dx);
    memset(want_dw, 0, sizeof want_dw);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < FI; i++) {
            double g = 0.0, u = 0.0;
            for (int j = 0; j < FH; j++) {
                g += (double)gate[i * FH + j] * x[t * FH + j];
                u += (double)up[i * FH + j] * x[t * FH + j];
            }
            const double s = sigmoid(g), d = dact[t * FI + i];
            want_act[t * FI + i] = g * s * u;
            const double dg = d * u * s * (1.0 + g * (1.0 - s)), du = d * g * s;
            for (int j = 0; j < FH; j++) {
                want_dx[t * FH + j] += dg * gate[i * FH + j] + du * up[i * FH + j];
                want_dw[i * FH + j] += dg * x[t * FH + j];
                want_dw[(FI + i) * FH + j] += du * x[t * FH + j];
            }
        }
    matmul_forward(gate_up, x, w, N, FH, 2 * FI);
    swiglu_forward(act, gate_up, N, FI);
    check_array(act, want_act, N * FI, 1e-5, 1e-6, "fused gate/up", "act");
    for (int i = 0; i < N * FH; i++) dx[i] = NAN; /* overwritten */
    for (int i = 0; i < N * 2 * FI; i++) dgate_up[i] = NAN;
    memset(dw, 0, sizeof dw);
    swiglu_backward(dgate_up, dact, gate_up, N, FI);
    matmul_backward_into(dx, dw, dgate_up, x, w, N, FH, 2 * FI);
    check_array(dx, want_dx, N * FH, 1e-5, 1e-6, "fused gate/up", "dx");
    check_array(dw, want_dw, 2 * FI * FH, 1e-5, 1e-6, "fused gate/up", "d[gate; up]");
    /* the decoder's products: one of N = 2I is gate's and up's side by side, bit for bit */
    matmul_rows_forward(rows, x, w, N, FH, 2 * FI);
    for (int half = 0; half < 2; half++) {
        matmul_rows_forward(apart, x, w + half * FI * FH, N, FH, FI);
        for (int t = 0; t < N; t++)
            assert_memory_equal(rows + (t * 2 + half) * FI, apart + t * FI, sizeof(float) * FI);
    }
}

/* moe_experts_check: the model's layout passes; an up_proj (or its gradient, or its bf16
 * copy) anywhere else is refused, naming the expert. */
static void test_experts_check(void **unused) {
    (void)unused;
    static float params[PARAMS], grads[PARAMS], other[MATRIX];
    static uint16_t params16[PARAMS];
    moe_expert experts[E];
    for (int e = 0; e < E; e++) {
        float *w = params + e * PER_EXPERT, *d = grads + e * PER_EXPERT;
        const uint16_t *w16 = params16 + e * PER_EXPERT;
        experts[e] = (moe_expert){w + GATE, w + UP, w + DOWN, d + GATE, d + UP, d + DOWN, w16 + GATE, w16 + UP,
                                  w16 + DOWN};
    }
    assert_int_equal(moe_experts_check(experts, E, H, I), PM_OK);
    const char *what[3] = {"weights", "gradients", "bf16 weights"};
    for (int field = 0; field < 3; field++) {
        moe_expert wrong[E];
        memcpy(wrong, experts, sizeof wrong);
        if (field == 0) wrong[3].up = other;
        else if (field == 1) wrong[3].d_up = other;
        else wrong[3].up16 = params16;
        assert_int_equal(moe_experts_check(wrong, E, H, I), PM_ERR_ARG);
        assert_non_null(strstr(pm_last_error(), "expert 3"));
        assert_non_null(strstr(pm_last_error(), what[field]));
        assert_non_null(strstr(pm_last_error(), "gate_proj"));
    }
    for (int e = 0; e < E; e++) experts[e].d_gate = experts[e].d_up = NULL; /* inference: no gradients */
    assert_int_equal(moe_experts_check(experts, E, H, I), PM_OK);
}

/* ------------------------------------- experts side by side or one at a time */

/* Shapes large enough that OpenBLAS and oneDNN run a product over both threads one at a time,
 * and a few rows per expert (about 13; auto takes side by side); the last expert gets few or
 * no rows. */
enum { ST = 40, SH = 96, SI = 160, SE = 6, SK = 2, SMATRIX = SI * SH, SPER = 3 * SMATRIX };

/* One router's batch: inputs, routing, and the experts with fp32 weights only (experts) or also
 * bf16 copies (experts16); their gradients go to grads. */
typedef struct {
    float x[ST * SH], dy[ST * SH], logits[ST * SE], params[SE * SPER], grads[SE * SPER];
    uint16_t params16[SE * SPER];
    moe_expert experts[SE], experts16[SE];
    pm_router *router;
    pm_routing *routing;
} side_case;

static side_case *side_case_make(int kind) {
    static side_case sc;
    pm_rng rng;
    pm_rng_init(&rng, 500 + (uint64_t)kind, 0);
    random_normal(&rng, sc.x, ST * SH, 1.0);
    random_normal(&rng, sc.dy, ST * SH, 1.0);
    random_normal(&rng, sc.logits, ST * SE, 1.0);
    for (int t = 0; t < ST; t++) sc.logits[t * SE + SE - 1] -= 6.0f; /* an expert with few or no rows */
    random_normal(&rng, sc.params, SE * SPER, 1.0 / sqrt(SH));
    float_to_bf16(sc.params16, sc.params, SE * SPER);
    for (int e = 0; e < SE; e++) {
        float *w = sc.params + e * SPER, *d = sc.grads + e * SPER;
        const uint16_t *w16 = sc.params16 + e * SPER;
        sc.experts[e] = (moe_expert){w, w + SMATRIX, w + 2 * SMATRIX, d, d + SMATRIX, d + 2 * SMATRIX, NULL, NULL, NULL};
        sc.experts16[e] = sc.experts[e];
        sc.experts16[e].gate16 = w16;
        sc.experts16[e].up16 = w16 + SMATRIX;
        sc.experts16[e].down16 = w16 + 2 * SMATRIX;
    }
    assert_int_equal(moe_experts_check(sc.experts16, SE, SH, SI), PM_OK);
    const pm_router_config cfg = pm_router_config_default((pm_router_kind)kind, SE, SK);
    sc.router = pm_router_create(&cfg);
    sc.routing = sc.router ? pm_routing_create(sc.router, ST) : NULL;
    assert_non_null(sc.routing);
    assert_int_equal(pm_router_forward(sc.router, sc.routing, sc.logits, ST, true, &rng), PM_OK);
    return &sc;
}

static void side_case_free(side_case *sc) {
    pm_routing_free(sc->routing);
    pm_router_free(sc->router);
}

/* How run_layer runs the layer: the schedule, the products' context (NULL: fp32 OpenBLAS), and
 * whether through moe_forward and moe_backward or through their passes one by one
 * (moe_internal.h: gather, experts, combine; output gradients, experts, input gradients), as
 * the layer ran before the passes were fused. */
typedef struct {
    moe_expert_schedule schedule;
    matmul_bf16 *ctx;
    bool passes;
} layer_way;

/* The layer's forward and backward one way: y, c, dx and the expert gradients (from zero),
 * and whether the experts ran side by side forward and backward. */
typedef struct {
    float y[ST * SH], c[ST * SE], dx[ST * SH], grads[SE * SPER];
    bool side_by_side[2];
} layer_results;

static void run_layer(layer_way way, side_case *sc, const moe_expert *experts, layer_results *out) {
    const pm_routing *routing = sc->routing;
    const int pairs = routing->c_offsets[ST];
    moe_state state;
    moe_scratch scratch;
    assert_int_equal(moe_state_init(&state, SH, SI, SE, ST, pairs), PM_OK);
    assert_int_equal(moe_scratch_init(&scratch, SH, SI, pairs), PM_OK);
    state.bf16 = way.ctx;
    moe_set_expert_schedule(way.schedule);
    memset(sc->grads, 0, sizeof sc->grads);
    memset(out->dx, 0, sizeof out->dx);
    for (int p = 0; p < pairs; p++) out->c[p] = NAN; /* overwritten */
    if (way.passes) {
        const moe_rows rows = {state.x, state.gate_up, state.act, state.out, state.bf16};
        moe_prepare(&state, routing);
        moe_gather_rows(&state, sc->x);
        moe_experts_forward(&rows, state.expert_offsets, SE, experts, SH, SI);
        out->side_by_side[0] = moe_experts_ran_side_by_side();
        moe_combine(&state, out->y, routing);
        moe_output_grads(&state, &scratch, out->c, sc->dy, routing);
        moe_experts_backward(&rows, &scratch, state.expert_offsets, state.expert_selected, SE, experts, SH, SI);
        out->side_by_side[1] = moe_experts_ran_side_by_side();
        moe_input_grads(&state, &scratch, out->dx, routing);
    } else {
        moe_forward(&state, out->y, sc->x, routing, experts);
        out->side_by_side[0] = moe_experts_ran_side_by_side();
        moe_backward(&state, &scratch, out->dx, out->c, sc->dy, routing, experts);
        out->side_by_side[1] = moe_experts_ran_side_by_side();
    }
    moe_set_expert_schedule(MOE_EXPERTS_AUTO);
    memcpy(out->grads, sc->grads, sizeof sc->grads);
    moe_scratch_free(&scratch);
    moe_state_free(&state);
}

/* got within rel of max|want| everywhere (the schedules round differently, not bit for bit). */
static void check_near(const float *got, const float *want, size_t n, double rel, const char *label,
                       const char *what) {
    double *wanted = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) wanted[i] = want[i];
    check_array(got, wanted, (int)n, rel, rel, label, what);
    free(wanted);
}

static void check_results_near(const layer_results *got, const layer_results *want, int pairs, double rel,
                               const char *label) {
    check_near(got->y, want->y, ST * SH, rel, label, "y");
    check_near(got->c, want->c, (size_t)pairs, rel, label, "c");
    check_near(got->dx, want->dx, ST * SH, rel, label, "dx");
    check_near(got->grads, want->grads, SE * SPER, rel, label, "expert gradients");
}

static void check_results_equal(const layer_results *got, const layer_results *want, int pairs,
                                const char *label) {
    const struct {
        const float *got, *want;
        size_t n;
        const char *what;
    } arrays[] = {{got->y, want->y, ST * SH, "y"},
                  {got->c, want->c, (size_t)pairs, "c"},
                  {got->dx, want->dx, ST * SH, "dx"},
                  {got->grads, want->grads, SE * SPER, "expert gradients"}};
    for (size_t a = 0; a < sizeof arrays / sizeof arrays[0]; a++)
        for (size_t i = 0; i < arrays[a].n; i++)
            if (memcmp(&arrays[a].got[i], &arrays[a].want[i], sizeof(float)))
                fail_msg("%s: %s[%zu] = %.9g, not %.9g bit for bit", label, arrays[a].what, i, arrays[a].got[i],
                         arrays[a].want[i]);
}

static void assert_schedule(const layer_results *results, bool side_by_side, const char *label) {
    for (int pass = 0; pass < 2; pass++)
        if (results->side_by_side[pass] != side_by_side)
            fail_msg("%s: the %s pass ran the experts %s", label, pass ? "backward" : "forward",
                     results->side_by_side[pass] ? "side by side" : "one at a time");
}

static layer_results results[4];

/* Every router (densemixer's router-only pairs and idle experts included), in training, fp32
 * through OpenBLAS: side by side agrees with one at a time to fp32 rounding (OpenBLAS's split of
 * a product over the threads changes its last bits, so not bit for bit), and auto takes side by
 * side here. */
static void test_side_by_side_matches(void **unused) {
    (void)unused;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        side_case *sc = side_case_make(kind);
        const int pairs = sc->routing->c_offsets[ST];
        char label[96];
        snprintf(label, sizeof label, "%s side by side", pm_router_kind_name((pm_router_kind)kind));
        run_layer((layer_way){MOE_EXPERTS_ONE_AT_A_TIME, NULL, false}, sc, sc->experts, &results[0]);
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, NULL, false}, sc, sc->experts, &results[1]);
        run_layer((layer_way){MOE_EXPERTS_AUTO, NULL, false}, sc, sc->experts, &results[2]);
        assert_schedule(&results[0], false, label);
        assert_schedule(&results[1], true, label);
        assert_schedule(&results[2], true, label);
        check_results_near(&results[1], &results[0], pairs, 1e-6, label);
        check_results_near(&results[2], &results[0], pairs, 1e-6, label);
        side_case_free(sc);
    }
    omp_set_num_threads(threads);
}

/* A context with a worker for each of `threads` threads, room for the test's products, and
 * its fp32 products by `fp32`. */
static matmul_bf16 *context_with_workers(int threads, pm_fp32_matmul fp32) {
    matmul_bf16 *ctx = matmul_bf16_create();
    assert_non_null(ctx);
    matmul_set_fp32(ctx, fp32);
    assert_true(matmul_bf16_reserve(ctx, (size_t)ST * SE * 2 * SI));
    assert_true(matmul_bf16_reserve_workers(ctx, threads, (size_t)moe_side_by_side_elements(SH, SI)));
    return ctx;
}

/* Side by side, moe_forward and moe_backward gather, combine and compute c and the output and
 * input gradients inside the experts' parallel region; they give bit for bit what the passes
 * one by one give around the same experts, for every router, with fp32 OpenBLAS products and
 * with bf16 products on a context's workers. The decoder's row products give the same side by
 * side as one at a time, bit for bit. */
static void test_fused_passes_match(void **unused) {
    (void)unused;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    matmul_bf16 *ctx = matmul_bf16_available() ? context_with_workers(2, PM_FP32_MATMUL_OPENBLAS) : NULL;
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        side_case *sc = side_case_make(kind);
        const int pairs = sc->routing->c_offsets[ST];
        char label[96];
        snprintf(label, sizeof label, "%s fused passes", pm_router_kind_name((pm_router_kind)kind));
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, NULL, true}, sc, sc->experts, &results[0]);
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, NULL, false}, sc, sc->experts, &results[1]);
        assert_schedule(&results[0], true, label);
        assert_schedule(&results[1], true, label);
        check_results_equal(&results[1], &results[0], pairs, label);
        if (ctx) {
            snprintf(label, sizeof label, "%s fused passes, bf16", pm_router_kind_name((pm_router_kind)kind));
            run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, ctx, true}, sc, sc->experts16, &results[0]);
            run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, ctx, false}, sc, sc->experts16, &results[1]);
            assert_schedule(&results[0], true, label);
            assert_schedule(&results[1], true, label);
            check_results_equal(&results[1], &results[0], pairs, label);
        }
        /* the decoder's forward */
        moe_state state;
        assert_int_equal(moe_state_init(&state, SH, SI, SE, ST, pairs), PM_OK);
        for (int way = 0; way < 2; way++) {
            moe_set_expert_schedule(way ? MOE_EXPERTS_SIDE_BY_SIDE : MOE_EXPERTS_ONE_AT_A_TIME);
            moe_forward_rows(&state, results[way].y, sc->x, sc->routing, sc->experts16);
            assert_true(moe_experts_ran_side_by_side() == (way == 1));
        }
        moe_set_expert_schedule(MOE_EXPERTS_AUTO);
        assert_memory_equal(results[1].y, results[0].y, sizeof results[0].y);
        moe_state_free(&state);
        side_case_free(sc);
    }
    matmul_bf16_free(ctx);
    omp_set_num_threads(threads);
}

/* With a oneDNN context (bf16 products, and fp32 products through oneDNN), for every router:
 * the experts run side by side on the context's workers, forced and by auto, and agree with one
 * at a time to BF16_SCHEDULES (oneDNN splits a product's sums over the threads one at a time,
 * not side by side; the bf16 rounding of an activation that the last fp32 bit moves over a
 * rounding boundary carries such a difference a little further). Side by side gives the same
 * bit for bit on 3 threads as on 2. A context without workers, or with too little room in them,
 * runs the experts one at a time; so does an fp32 shape PM_FP32_MATMUL_AUTO has not timed yet,
 * once. */
#define BF16_SCHEDULES 1e-6
static void test_side_by_side_with_context(void **unused) {
    (void)unused;
    if (!matmul_bf16_available()) skip();
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    matmul_bf16 *ctx = context_with_workers(3, PM_FP32_MATMUL_OPENBLAS);
    matmul_bf16 *onednn = context_with_workers(2, PM_FP32_MATMUL_ONEDNN);
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        side_case *sc = side_case_make(kind);
        const int pairs = sc->routing->c_offsets[ST];
        char label[96];
        snprintf(label, sizeof label, "%s side by side, bf16", pm_router_kind_name((pm_router_kind)kind));
        run_layer((layer_way){MOE_EXPERTS_ONE_AT_A_TIME, ctx, false}, sc, sc->experts16, &results[0]);
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, ctx, false}, sc, sc->experts16, &results[1]);
        run_layer((layer_way){MOE_EXPERTS_AUTO, ctx, false}, sc, sc->experts16, &results[2]);
        assert_schedule(&results[0], false, label);
        assert_schedule(&results[1], true, label);
        assert_schedule(&results[2], true, label);
        check_results_near(&results[1], &results[0], pairs, BF16_SCHEDULES, label);
        check_results_equal(&results[2], &results[1], pairs, label);
        omp_set_num_threads(3);
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, ctx, false}, sc, sc->experts16, &results[3]);
        omp_set_num_threads(2);
        assert_schedule(&results[3], true, label);
        check_results_equal(&results[3], &results[1], pairs, label);

        snprintf(label, sizeof label, "%s side by side, fp32 oneDNN", pm_router_kind_name((pm_router_kind)kind));
        run_layer((layer_way){MOE_EXPERTS_ONE_AT_A_TIME, onednn, false}, sc, sc->experts, &results[0]);
        run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, onednn, false}, sc, sc->experts, &results[1]);
        assert_schedule(&results[0], false, label);
        assert_schedule(&results[1], true, label);
        check_results_near(&results[1], &results[0], pairs, 1e-6, label);
        side_case_free(sc);
    }
    side_case *sc = side_case_make(0);
    /* no workers, and workers without room for the bf16 copies: one at a time */
    matmul_bf16 *bare = matmul_bf16_create(), *small = context_with_workers(2, PM_FP32_MATMUL_OPENBLAS);
    assert_non_null(bare);
    assert_true(matmul_bf16_reserve(bare, (size_t)ST * SE * 2 * SI));
    matmul_bf16_free(small);
    small = matmul_bf16_create();
    assert_non_null(small);
    assert_true(matmul_bf16_reserve(small, (size_t)ST * SE * 2 * SI));
    assert_true(matmul_bf16_reserve_workers(small, 2, 2 * SI));
    run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, bare, false}, sc, sc->experts16, &results[0]);
    assert_schedule(&results[0], false, "no workers");
    run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, small, false}, sc, sc->experts16, &results[0]);
    assert_schedule(&results[0], false, "workers with too little room");
    /* the workers run fp32 products without bf16 copies: room does not matter then */
    run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, small, false}, sc, sc->experts, &results[0]);
    assert_schedule(&results[0], true, "fp32 products on small workers");
    /* auto's fp32 choices: the first pass times the shapes, one at a time; then side by side */
    matmul_set_fp32(small, PM_FP32_MATMUL_AUTO);
    run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, small, false}, sc, sc->experts, &results[0]);
    assert_schedule(&results[0], false, "fp32 auto, untimed");
    run_layer((layer_way){MOE_EXPERTS_SIDE_BY_SIDE, small, false}, sc, sc->experts, &results[0]);
    assert_schedule(&results[0], true, "fp32 auto, timed");
    side_case_free(sc);
    matmul_bf16_free(bare);
    matmul_bf16_free(small);
    matmul_bf16_free(ctx);
    matmul_bf16_free(onednn);
    omp_set_num_threads(threads);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_router),
        cmocka_unit_test(test_token_without_pairs),
        cmocka_unit_test(test_batch_without_pairs),
        cmocka_unit_test(test_fused_gate_up),
        cmocka_unit_test(test_experts_check),
        cmocka_unit_test(test_side_by_side_matches),
        cmocka_unit_test(test_fused_passes_match),
        cmocka_unit_test(test_side_by_side_with_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
