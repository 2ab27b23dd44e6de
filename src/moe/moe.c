#include "moe/moe.h"

#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/arena.h"
#include "core/memory.h"
#include "moe/moe_internal.h"
#include "nn/nn.h"

void moe_state_layout(moe_state *state, pm_arena *arena, int hidden, int intermediate, int num_experts,
                      int max_tokens, uint64_t max_pairs) {
    memset(state, 0, sizeof *state);
    state->hidden = hidden;
    state->intermediate = intermediate;
    state->num_experts = num_experts;
    state->capacity_pairs = max_pairs > INT_MAX ? INT_MAX : (int)max_pairs; /* an estimate's plan may exceed */
    state->capacity_tokens = max_tokens;
    const uint64_t P = max_pairs, E = (uint64_t)num_experts;
    state->expert_offsets = arena_ints(arena, E + 1);
    state->expert_selected = arena_ints(arena, E);
    state->pair_row = arena_ints(arena, P);
    state->combine_row = arena_ints(arena, P);
    state->pair_token = arena_ints(arena, P);
    state->sort_counts = arena_ints(arena, 2 * E);
    state->combine_pair = arena_ints(arena, P);
    state->weighted = arena_take(arena, P, 1);
    state->x = arena_floats(arena, sat_mul(P, (uint64_t)hidden));
    state->gate_up = arena_floats(arena, sat_mul(P, 2 * (uint64_t)intermediate));
    state->act = arena_floats(arena, sat_mul(P, (uint64_t)intermediate));
    state->out = arena_floats(arena, sat_mul(P, (uint64_t)hidden));
}

void moe_scratch_layout(moe_scratch *scratch, pm_arena *arena, int hidden, int intermediate, uint64_t max_pairs) {
    const uint64_t P = max_pairs;
    scratch->d_out = arena_floats(arena, sat_mul(P, (uint64_t)hidden));
    scratch->d_act = arena_floats(arena, sat_mul(P, (uint64_t)intermediate));
    scratch->d_gate_up = arena_floats(arena, sat_mul(P, 2 * (uint64_t)intermediate));
    scratch->d_x = arena_floats(arena, sat_mul(P, (uint64_t)hidden));
}

int moe_state_init(moe_state *state, int hidden, int intermediate, int num_experts, int max_tokens, int max_pairs) {
    pm_arena arena = {0};
    moe_state_layout(state, &arena, hidden, intermediate, num_experts, max_tokens, max_pairs);
    if (!arena_allocate(&arena)) {
        memset(state, 0, sizeof *state);
        return pm_fail(PM_ERR_NOMEM, "MoE layer: out of memory for %d expert rows", max_pairs);
    }
    moe_state_layout(state, &arena, hidden, intermediate, num_experts, max_tokens, max_pairs);
    state->block = arena.base;
    return PM_OK;
}

void moe_state_free(moe_state *state) {
    free(state->block);
    memset(state, 0, sizeof *state);
}

int moe_scratch_init(moe_scratch *scratch, int hidden, int intermediate, int max_pairs) {
    pm_arena arena = {0};
    moe_scratch_layout(scratch, &arena, hidden, intermediate, max_pairs);
    if (!arena_allocate(&arena)) {
        memset(scratch, 0, sizeof *scratch);
        return pm_fail(PM_ERR_NOMEM, "MoE layer: out of memory for %d expert rows", max_pairs);
    }
    moe_scratch_layout(scratch, &arena, hidden, intermediate, max_pairs);
    scratch->block = arena.base;
    return PM_OK;
}

void moe_scratch_free(moe_scratch *scratch) {
    free(scratch->block);
    memset(scratch, 0, sizeof *scratch);
}

uint64_t moe_state_bytes(int hidden, int intermediate, int num_experts, uint64_t max_pairs) {
    pm_arena plan = {0};
    moe_state state;
    moe_state_layout(&state, &plan, hidden, intermediate, num_experts, 0, max_pairs);
    return plan.used;
}

uint64_t moe_scratch_bytes(int hidden, int intermediate, uint64_t max_pairs) {
    pm_arena plan = {0};
    moe_scratch scratch;
    moe_scratch_layout(&scratch, &plan, hidden, intermediate, max_pairs);
    return plan.used;
}

/*
 * Counting sort of the compute pairs by (expert, carries a weight first). Each combine pair
 * is matched to its compute pair by merging the two expert-sorted lists of its token.
 */
static void dispatch(moe_state *state, const pm_routing *routing) {
    const int T = routing->num_tokens, E = state->num_experts;
    const int P = routing->c_offsets[T];
    int *selected_count = state->sort_counts, *other_count = state->sort_counts + E;
    unsigned char *weighted = state->weighted;
    int *combine_pair = state->combine_pair;
    memset(state->sort_counts, 0, sizeof(int) * 2 * E);
    memset(weighted, 0, (size_t)P);
    for (int t = 0; t < T; t++) {
        int p = routing->c_offsets[t];
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
            while (routing->c_experts[p] != routing->experts[q]) p++;
            combine_pair[q] = p;
            weighted[p] = 1;
        }
        for (p = routing->c_offsets[t]; p < routing->c_offsets[t + 1]; p++) {
            state->pair_token[p] = t;
            if (weighted[p])
                selected_count[routing->c_experts[p]]++;
            else
                other_count[routing->c_experts[p]]++;
        }
    }
    state->expert_offsets[0] = 0;
    for (int e = 0; e < E; e++) {
        state->expert_offsets[e + 1] = state->expert_offsets[e] + selected_count[e] + other_count[e];
        state->expert_selected[e] = selected_count[e];
        other_count[e] = state->expert_offsets[e] + selected_count[e]; /* next unweighted row */
        selected_count[e] = state->expert_offsets[e];                  /* next weighted row */
    }
    for (int p = 0; p < P; p++) {
        const int e = routing->c_experts[p];
        state->pair_row[p] = weighted[p] ? selected_count[e]++ : other_count[e]++;
    }
    for (int q = 0; q < routing->offsets[T]; q++) state->combine_row[q] = state->pair_row[combine_pair[q]];
}

/* Rows of at most this many floats in all are gathered and combined on one thread: a decoding
 * step's few rows cost less than waking the others. */
enum { PARALLEL_FLOATS = 16384 };

void moe_gather_rows(moe_state *state, const float *x) {
    const int H = state->hidden;
#pragma omp parallel for schedule(static) if ((size_t)state->num_pairs * H > PARALLEL_FLOATS)
    for (int p = 0; p < state->num_pairs; p++)
        memcpy(state->x + (size_t)state->pair_row[p] * H, x + (size_t)state->pair_token[p] * H,
               sizeof(float) * H);
}

int moe_experts_check(const moe_expert *experts, int count, int hidden, int intermediate) {
    const size_t matrix = (size_t)hidden * (size_t)intermediate;
    for (int e = 0; e < count; e++) {
        const moe_expert *ex = &experts[e];
        const char *which = ex->up != ex->gate + matrix                          ? "weights"
                            : (ex->d_gate || ex->d_up) && ex->d_up != ex->d_gate + matrix ? "gradients"
                            : (ex->gate16 || ex->up16) && ex->up16 != ex->gate16 + matrix ? "bf16 weights"
                                                                                          : NULL;
        if (which)
            return pm_fail(PM_ERR_ARG, "MoE layer: expert %d's up_proj %s do not follow its gate_proj's in memory; the "
                           "experts' products read gate_proj and up_proj as one (2·%d, %d) matrix, so lay each "
                           "expert's up_proj right after its gate_proj (as the model's parameter table does)",
                           e, which, intermediate, hidden);
    }
    return PM_OK;
}

/* One product of the experts' projections, given the weight in fp32 and, or NULL, in bf16:
 * BLAS or oneDNN (linear_forward), or the row-independent products for the decoder. */
typedef void (*product_fn)(matmul_bf16 *ctx, float *out, const float *in, const float *weight,
                           const uint16_t *weight16, int T, int K, int N);

/* The decoder's rows read the bf16 copy it made itself, if it made one, never oneDNN's. */
static void rows_product(matmul_bf16 *ctx, float *out, const float *in, const float *weight, const uint16_t *weight16,
                         int T, int K, int N) {
    (void)ctx;
    if (weight16) matmul_rows_forward_bf16(out, in, weight16, T, K, N);
    else matmul_rows_forward(out, in, weight, T, K, N);
}

/*
 * How the experts of a layer share the threads. One at a time, each expert's products use all
 * the threads (OpenBLAS and oneDNN split a product's output); that is efficient when each
 * product has many rows. With few rows per expert (decoding, evaluating short batches, many
 * experts) a product is a few weight-bound matrix-vector products too small to split well, and
 * the threads wait at every product's end: then the experts run side by side instead, each on
 * one thread with single-threaded products (OpenBLAS and the row products run on one thread
 * inside a parallel region). Each expert's results are the same either way to the products'
 * rounding, and its weight gradients are its own, so nothing is shared between threads.
 *
 * oneDNN's context (the bf16 products, and the fp32 products when it may choose oneDNN) keeps
 * one scratch and a primitive cache for one thread at a time, so with a context the experts
 * always run one at a time.
 */
static moe_expert_schedule expert_schedule = MOE_EXPERTS_AUTO;

void moe_set_expert_schedule(moe_expert_schedule schedule) { expert_schedule = schedule; }

/* Side by side when the experts with rows average fewer than SIDE_BY_SIDE_ROWS rows and none has
 * more than 4× that. Below about 64 rows a product of the large config (H 512, I 1024; 64 rows:
 * 2·64·512·2048 = 134 MFLOP, about 1 ms on one core) is dominated by reading and packing its
 * weight, which two threads on one product share badly, and each product ends in a join; whole
 * experts per thread have neither cost. Rough runs on the shared development machine (E 16,
 * k 4, fp32) had side by side 5–20% faster at 4–64 rows per expert and no slower at 128–256;
 * 64 stays on the safe side until a quiet measurement: above it one product at a time keeps
 * both threads busy anyway, while splitting by experts leaves a thread idle whenever the rows
 * do not divide evenly. One expert far larger than the others would leave one thread with most
 * of the work, hence the 4× bound. */
enum { SIDE_BY_SIDE_ROWS = 64 };

/* Rows of expert e: selected[e], or all of its rows without selected. */
static int expert_rows(const int *offsets, const int *selected, int e) {
    return selected ? selected[e] : offsets[e + 1] - offsets[e];
}

static bool side_by_side(const int *offsets, const int *selected, int count, const matmul_bf16 *ctx) {
    if (ctx || count < 2 || omp_in_parallel() || omp_get_max_threads() < 2) return false;
    if (expert_schedule != MOE_EXPERTS_AUTO) return expert_schedule == MOE_EXPERTS_SIDE_BY_SIDE;
    int64_t total = 0;
    int busy = 0, largest = 0;
    for (int e = 0; e < count; e++) {
        const int n = expert_rows(offsets, selected, e);
        total += n;
        busy += n > 0;
        largest = n > largest ? n : largest;
    }
    return busy >= 2 && total < (int64_t)SIDE_BY_SIDE_ROWS * busy && largest <= 4 * SIDE_BY_SIDE_ROWS;
}

/* The thread, of `threads`, that runs an expert of n rows after `before` rows of others, out
 * of `total`: the one whose equal share of the rows holds the expert's middle row. It depends
 * on the counts alone (and the result on neither). */
static int expert_thread(int64_t before, int n, int64_t total, int threads) {
    const int64_t thread = (2 * before + n) * threads / (2 * total);
    return thread < threads ? (int)thread : threads - 1;
}

typedef struct {
    const moe_rows *rows;
    const moe_scratch *scratch; /* backward only */
    const int *offsets;
    const moe_expert *experts;
    int H, I;
    product_fn product; /* forward only */
} experts_job;

/* x (n, H) · [gate; up]ᵀ (one (2I, H) matrix: moe_experts_check) → gate_up (n, 2I); SwiGLU;
 * act (n, I) · downᵀ → out (n, H). */
static void expert_forward(const experts_job *job, int e, int n) {
    const int H = job->H, I = job->I, first = job->offsets[e];
    const moe_rows *rows = job->rows;
    const moe_expert *ex = &job->experts[e];
    float *x = rows->x + (size_t)first * H, *gate_up = rows->gate_up + (size_t)first * 2 * I;
    float *act = rows->act + (size_t)first * I, *out = rows->out + (size_t)first * H;
    job->product(rows->bf16, gate_up, x, ex->gate, ex->gate16, n, H, 2 * I);
    swiglu_forward(act, gate_up, n, I);
    job->product(rows->bf16, out, act, ex->down, ex->down16, n, I, H);
}

/* Over the first n rows: d_act := d_out · down, d_down +=; d_gate_up := SwiGLU's backward;
 * d_x := d_gate_up · [gate; up], d_[gate; up] += (K = 2I: one product each). */
static void expert_backward(const experts_job *job, int e, int n) {
    const int H = job->H, I = job->I, first = job->offsets[e];
    const moe_rows *rows = job->rows;
    const moe_scratch *scratch = job->scratch;
    const moe_expert *ex = &job->experts[e];
    const size_t hi = (size_t)first * H, ii = (size_t)first * I, gi = 2 * ii;
    linear_backward_into(rows->bf16, scratch->d_act + ii, ex->d_down, scratch->d_out + hi, rows->act + ii, ex->down,
                         ex->down16, n, I, H);
    swiglu_backward(scratch->d_gate_up + gi, scratch->d_act + ii, rows->gate_up + gi, n, I);
    linear_backward_into(rows->bf16, scratch->d_x + hi, ex->d_gate, scratch->d_gate_up + gi, rows->x + hi, ex->gate,
                         ex->gate16, n, H, 2 * I);
}

/* run(job, e, rows) for every expert with rows, one at a time or side by side. */
static void each_expert(const experts_job *job, const int *selected, int count,
                        void (*run)(const experts_job *job, int e, int n)) {
    const int *offsets = job->offsets;
    if (!side_by_side(offsets, selected, count, job->rows->bf16)) {
        for (int e = 0; e < count; e++) {
            const int n = expert_rows(offsets, selected, e);
            if (n > 0) run(job, e, n);
        }
        return;
    }
    int64_t total = 0;
    for (int e = 0; e < count; e++) total += expert_rows(offsets, selected, e);
    if (total == 0) return;
#pragma omp parallel
    {
        const int threads = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t before = 0;
        for (int e = 0; e < count; e++) {
            const int n = expert_rows(offsets, selected, e);
            if (n > 0 && expert_thread(before, n, total, threads) == me) run(job, e, n);
            before += n;
        }
    }
}

static void experts_forward(const moe_rows *rows, const int *offsets, int count, const moe_expert *experts, int H,
                            int I, product_fn product) {
    const experts_job job = {rows, NULL, offsets, experts, H, I, product};
    each_expert(&job, NULL, count, expert_forward);
}

void moe_experts_forward(const moe_rows *rows, const int *offsets, int count, const moe_expert *experts, int H,
                         int I) {
    experts_forward(rows, offsets, count, experts, H, I, linear_forward);
}

void moe_combine(const moe_state *state, float *y, const pm_routing *routing) {
    const int T = routing->num_tokens, H = state->hidden;
#pragma omp parallel for schedule(static) if ((size_t)T * H > PARALLEL_FLOATS)
    for (int t = 0; t < T; t++) {
        float *row = y + (size_t)t * H;
        memset(row, 0, sizeof(float) * H);
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
            const float w = routing->weights[q], *f = state->out + (size_t)state->combine_row[q] * H;
            for (int i = 0; i < H; i++) row[i] += w * f[i];
        }
    }
}

void moe_prepare(moe_state *state, const pm_routing *routing) {
    state->num_tokens = routing->num_tokens;
    state->num_pairs = routing->c_offsets[routing->num_tokens];
    dispatch(state, routing);
}

static void forward(moe_state *state, float *y, const float *x, const pm_routing *routing, const moe_expert *experts,
                    product_fn product) {
    moe_prepare(state, routing);
    moe_gather_rows(state, x);
    const moe_rows rows = {state->x, state->gate_up, state->act, state->out,
                           product == linear_forward ? state->bf16 : NULL};
    experts_forward(&rows, state->expert_offsets, state->num_experts, experts, state->hidden, state->intermediate,
                    product);
    moe_combine(state, y, routing);
}

void moe_forward(moe_state *state, float *y, const float *x, const pm_routing *routing,
                 const moe_expert *experts) {
    forward(state, y, x, routing, experts, linear_forward);
}

void moe_forward_rows(moe_state *state, float *y, const float *x, const pm_routing *routing,
                      const moe_expert *experts) {
    forward(state, y, x, routing, experts, rows_product);
}

void moe_output_grads(const moe_state *state, moe_scratch *scratch, float *c, const float *dy,
                      const pm_routing *routing) {
    const int T = state->num_tokens, H = state->hidden;
    /* token by token, so that dy_t is read once for both: c for the router (every computed
     * pair, weighted or not) and the weighted pairs' output gradients */
#pragma omp parallel for schedule(static) if ((size_t)state->num_pairs * H > PARALLEL_FLOATS)
    for (int t = 0; t < T; t++) {
        const float *g = dy + (size_t)t * H;
        for (int p = routing->c_offsets[t]; p < routing->c_offsets[t + 1]; p++) {
            const float *f = state->out + (size_t)state->pair_row[p] * H;
            double dot = 0.0;
            for (int i = 0; i < H; i++) dot += (double)g[i] * f[i];
            c[p] = (float)dot;
        }
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
            float *d = scratch->d_out + (size_t)state->combine_row[q] * H;
            const float w = routing->weights[q];
            for (int i = 0; i < H; i++) d[i] = w * g[i];
        }
    }
}

void moe_experts_backward(const moe_rows *rows, const moe_scratch *scratch, const int *offsets,
                          const int *selected, int count, const moe_expert *experts, int H, int I) {
    const experts_job job = {rows, scratch, offsets, experts, H, I, NULL};
    each_expert(&job, selected, count, expert_backward);
}

void moe_input_grads(const moe_state *state, const moe_scratch *scratch, float *dx, const pm_routing *routing) {
    const int T = state->num_tokens, H = state->hidden;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *row = dx + (size_t)t * H;
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
            const float *d = scratch->d_x + (size_t)state->combine_row[q] * H;
            for (int i = 0; i < H; i++) row[i] += d[i];
        }
    }
}

void moe_backward(moe_state *state, moe_scratch *scratch, float *dx, float *c, const float *dy,
                  const pm_routing *routing, const moe_expert *experts) {
    moe_output_grads(state, scratch, c, dy, routing);
    const moe_rows rows = {state->x, state->gate_up, state->act, state->out, state->bf16};
    moe_experts_backward(&rows, scratch, state->expert_offsets, state->expert_selected, state->num_experts, experts,
                         state->hidden, state->intermediate);
    moe_input_grads(state, scratch, dx, routing);
}
