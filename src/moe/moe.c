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
    state->row_pair = arena_ints(arena, P);
    state->row_combine = arena_ints(arena, P);
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
 * is matched to its compute pair by merging the two expert-sorted lists of its token. The
 * inverse maps (row to pair, weighted row to combine pair) let a thread work on an expert's
 * rows alone (experts side by side).
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
        state->row_pair[state->pair_row[p]] = p;
    }
    for (int q = 0; q < routing->offsets[T]; q++) {
        state->combine_row[q] = state->pair_row[combine_pair[q]];
        state->row_combine[state->combine_row[q]] = q;
    }
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
 * inside a parallel region; oneDNN's on the context's worker for that thread, nn.h). Each
 * expert's results are the same either way to the products' rounding, and its weight gradients
 * are its own, so nothing is shared between threads.
 *
 * Side by side, moe_forward and moe_backward are one parallel region each: every thread also
 * gathers its experts' rows (forward) or computes their c and output gradients (backward) before
 * running them, and after one barrier the threads combine the tokens or sum their input
 * gradients. One at a time, those passes are parallel loops of their own around the experts.
 */
static moe_expert_schedule expert_schedule = MOE_EXPERTS_AUTO;
static _Thread_local bool ran_side_by_side;

void moe_set_expert_schedule(moe_expert_schedule schedule) { expert_schedule = schedule; }

bool moe_experts_ran_side_by_side(void) { return ran_side_by_side; }

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
enum { SIDE_BY_SIDE_ROWS = 64, SIDE_BY_SIDE_LARGEST = 4 * SIDE_BY_SIDE_ROWS };

uint64_t moe_side_by_side_elements(int hidden, int intermediate) {
    const uint64_t widest = 2 * (uint64_t)intermediate > (uint64_t)hidden ? 2 * (uint64_t)intermediate : (uint64_t)hidden;
    return SIDE_BY_SIDE_LARGEST * widest;
}

/* Rows of expert e: selected[e], or all of its rows without selected. */
static int expert_rows(const int *offsets, const int *selected, int e) {
    return selected ? selected[e] : offsets[e + 1] - offsets[e];
}

static bool side_by_side(const int *offsets, const int *selected, int count) {
    if (count < 2 || omp_in_parallel() || omp_get_max_threads() < 2) return false;
    int64_t total = 0;
    int busy = 0, largest = 0;
    for (int e = 0; e < count; e++) {
        const int n = expert_rows(offsets, selected, e);
        total += n;
        busy += n > 0;
        largest = n > largest ? n : largest;
    }
    if (total == 0) return false;
    if (expert_schedule != MOE_EXPERTS_AUTO) return expert_schedule == MOE_EXPERTS_SIDE_BY_SIDE;
    return busy >= 2 && total < (int64_t)SIDE_BY_SIDE_ROWS * busy && largest <= SIDE_BY_SIDE_LARGEST;
}

/* The thread, of `threads`, that runs an expert of n rows after `before` rows of others, out
 * of `total`: the one whose equal share of the rows holds the expert's middle row. It depends
 * on the counts alone (and the result on neither). */
static int expert_thread(int64_t before, int n, int64_t total, int threads) {
    const int64_t thread = (2 * before + n) * threads / (2 * total);
    return thread < threads ? (int)thread : threads - 1;
}

/* What moe_forward and moe_backward do on an expert's own thread when the experts run side by
 * side: gather its rows from x (forward), or compute c and the output gradients of its rows from
 * dy (backward). */
typedef struct {
    const moe_state *state;
    const pm_routing *routing;
    const float *tokens; /* x or dy (T, H) */
    float *c;            /* backward */
} fused_passes;

typedef struct {
    const moe_rows *rows;
    const moe_scratch *scratch;    /* backward only */
    const int *offsets, *selected; /* selected: the backward's rows of each expert; NULL: all */
    int count;
    const moe_expert *experts;
    int H, I;
    product_fn product;          /* forward only */
    const fused_passes *fused;   /* NULL: the experts alone */
} experts_job;

/* An expert's run on its rows, with the products on ctx (a worker of it side by side). */
typedef void (*expert_fn)(const experts_job *job, int e, int n, matmul_bf16 *ctx);

/* c = <dy_t, f_e(x_t)> of one pair, in double. */
static float output_dot(const float *dy_row, const float *f, int H) {
    double dot = 0.0;
    for (int i = 0; i < H; i++) dot += (double)dy_row[i] * f[i];
    return (float)dot;
}

/* A weighted row's output gradient d := w · dy_t. */
static void output_grad_row(float *d, float w, const float *dy_row, int H) {
    for (int i = 0; i < H; i++) d[i] = w * dy_row[i];
}

/* Rows [first, end) of state->x := the tokens of their pairs. */
static void gather_rows(const fused_passes *fused, int first, int end) {
    const moe_state *state = fused->state;
    const int H = state->hidden;
    for (int r = first; r < end; r++)
        memcpy(state->x + (size_t)r * H, fused->tokens + (size_t)state->pair_token[state->row_pair[r]] * H,
               sizeof(float) * H);
}

/* c of the pairs of rows [first, end), and the output gradients of the weighted ones among them
 * [first, weighted_end): moe_output_grads, row by row. */
static void output_grad_rows(const fused_passes *fused, const moe_scratch *scratch, int first, int weighted_end,
                             int end) {
    const moe_state *state = fused->state;
    const int H = state->hidden;
    for (int r = first; r < end; r++) {
        const int p = state->row_pair[r];
        const float *g = fused->tokens + (size_t)state->pair_token[p] * H;
        fused->c[p] = output_dot(g, state->out + (size_t)r * H, H);
        if (r < weighted_end)
            output_grad_row(scratch->d_out + (size_t)r * H, fused->routing->weights[state->row_combine[r]], g, H);
    }
}

/* x (n, H) · [gate; up]ᵀ (one (2I, H) matrix: moe_experts_check) → gate_up (n, 2I); SwiGLU;
 * act (n, I) · downᵀ → out (n, H). */
static void expert_forward(const experts_job *job, int e, int n, matmul_bf16 *ctx) {
    const int H = job->H, I = job->I, first = job->offsets[e];
    const moe_rows *rows = job->rows;
    const moe_expert *ex = &job->experts[e];
    float *x = rows->x + (size_t)first * H, *gate_up = rows->gate_up + (size_t)first * 2 * I;
    float *act = rows->act + (size_t)first * I, *out = rows->out + (size_t)first * H;
    if (job->fused) gather_rows(job->fused, first, first + n);
    job->product(ctx, gate_up, x, ex->gate, ex->gate16, n, H, 2 * I);
    swiglu_forward(act, gate_up, n, I);
    job->product(ctx, out, act, ex->down, ex->down16, n, I, H);
}

/* Over the first n rows: d_act := d_out · down, d_down +=; d_gate_up := SwiGLU's backward;
 * d_x := d_gate_up · [gate; up], d_[gate; up] += (K = 2I: one product each). */
static void expert_backward(const experts_job *job, int e, int n, matmul_bf16 *ctx) {
    const int H = job->H, I = job->I, first = job->offsets[e];
    const moe_rows *rows = job->rows;
    const moe_scratch *scratch = job->scratch;
    const moe_expert *ex = &job->experts[e];
    const size_t hi = (size_t)first * H, ii = (size_t)first * I, gi = 2 * ii;
    if (job->fused) output_grad_rows(job->fused, scratch, first, first + n, job->offsets[e + 1]);
    if (n == 0) return;
    linear_backward_into(ctx, scratch->d_act + ii, ex->d_down, scratch->d_out + hi, rows->act + ii, ex->down,
                         ex->down16, n, I, H);
    swiglu_backward(scratch->d_gate_up + gi, scratch->d_act + ii, rows->gate_up + gi, n, I);
    linear_backward_into(ctx, scratch->d_x + hi, ex->d_gate, scratch->d_gate_up + gi, rows->x + hi, ex->gate,
                         ex->gate16, n, H, 2 * I);
}

/* With a context, each thread runs its experts' products on a worker of its own: there must be
 * one for every thread, with room for the bf16 copies of the largest expert's inputs (the model
 * reserves that up front, so nothing is allocated mid-run), and the products must be ready. A
 * shape whose fp32 choice PM_FP32_MATMUL_AUTO has yet to time runs one at a time once, which
 * times it. */
static bool workers_ready(const experts_job *job, bool backward, int threads) {
    matmul_bf16 *ctx = job->rows->bf16;
    size_t room = 0;
    if (matmul_bf16_workers(ctx, &room) < threads) return false;
    const int H = job->H, I = job->I;
    const int K[2] = {H, I}, N[2] = {2 * I, H}; /* the products: [gate; up], down */
    bool needed[2][2] = {{false, false}, {false, false}}; /* [product][in bf16] */
    int largest = 0;
    for (int e = 0; e < job->count; e++) {
        const int n = expert_rows(job->offsets, job->selected, e);
        if (n == 0) continue;
        largest = n > largest ? n : largest;
        needed[0][job->experts[e].gate16 != NULL] = true;
        needed[1][job->experts[e].down16 != NULL] = true;
    }
    const size_t widest = (size_t)(2 * I > H ? 2 * I : H);
    if ((needed[0][1] || needed[1][1]) && (size_t)largest * widest > room) return false;
    for (int product = 0; product < 2; product++)
        for (int bf16 = 0; bf16 < 2; bf16++)
            if (needed[product][bf16] && !matmul_bf16_prepare(ctx, backward, bf16, K[product], N[product]))
                return false;
    return true;
}

/* The threads to run the experts side by side on, or 0: one at a time. */
static int plan(const experts_job *job, bool backward) {
    int threads = side_by_side(job->offsets, job->selected, job->count) ? omp_get_max_threads() : 0;
    if (threads && job->rows->bf16 && !workers_ready(job, backward, threads)) threads = 0;
    ran_side_by_side = threads > 0;
    return threads;
}

static void one_at_a_time(const experts_job *job, expert_fn run) {
    for (int e = 0; e < job->count; e++) {
        const int n = expert_rows(job->offsets, job->selected, e);
        if (n > 0) run(job, e, n, job->rows->bf16);
    }
}

/* Inside the parallel region: this thread's experts (expert_thread), each on its worker of the
 * context. With the fused passes every expert with rows counts, even with none to run (c of a
 * backward's unweighted rows). */
static void run_own_experts(const experts_job *job, expert_fn run) {
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    matmul_bf16 *ctx = job->rows->bf16 ? matmul_bf16_worker(job->rows->bf16, me) : NULL;
    int64_t total = 0, before = 0;
    for (int e = 0; e < job->count; e++) total += expert_rows(job->offsets, job->selected, e);
    for (int e = 0; e < job->count; e++) {
        const int n = expert_rows(job->offsets, job->selected, e);
        const bool visit = n > 0 || (job->fused && job->offsets[e + 1] > job->offsets[e]);
        if (visit && expert_thread(before, n, total, threads) == me) run(job, e, n, ctx);
        before += n;
    }
}

/* run(job, e, rows) for every expert with rows, one at a time or side by side. */
static void each_expert(const experts_job *job, bool backward, expert_fn run) {
    const int threads = plan(job, backward);
    if (!threads) {
        one_at_a_time(job, run);
        return;
    }
#pragma omp parallel num_threads(threads)
    run_own_experts(job, run);
}

void moe_experts_forward(const moe_rows *rows, const int *offsets, int count, const moe_expert *experts, int H,
                         int I) {
    const experts_job job = {rows, NULL, offsets, NULL, count, experts, H, I, linear_forward, NULL};
    each_expert(&job, false, expert_forward);
}

/* y_t := Σ over t's combine pairs of w · f_e(x_t). */
static void combine_token(const moe_state *state, float *y, const pm_routing *routing, int t) {
    const int H = state->hidden;
    float *row = y + (size_t)t * H;
    memset(row, 0, sizeof(float) * H);
    for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
        const float w = routing->weights[q], *f = state->out + (size_t)state->combine_row[q] * H;
        for (int i = 0; i < H; i++) row[i] += w * f[i];
    }
}

void moe_combine(const moe_state *state, float *y, const pm_routing *routing) {
    const int T = routing->num_tokens;
#pragma omp parallel for schedule(static) if ((size_t)T * state->hidden > PARALLEL_FLOATS)
    for (int t = 0; t < T; t++) combine_token(state, y, routing, t);
}

void moe_prepare(moe_state *state, const pm_routing *routing) {
    state->num_tokens = routing->num_tokens;
    state->num_pairs = routing->c_offsets[routing->num_tokens];
    dispatch(state, routing);
}

static void forward(moe_state *state, float *y, const float *x, const pm_routing *routing, const moe_expert *experts,
                    product_fn product) {
    moe_prepare(state, routing);
    const moe_rows rows = {state->x, state->gate_up, state->act, state->out,
                           product == linear_forward ? state->bf16 : NULL};
    const fused_passes fused = {state, routing, x, NULL};
    experts_job job = {&rows, NULL, state->expert_offsets, NULL, state->num_experts, experts, state->hidden,
                       state->intermediate, product, &fused};
    const int threads = plan(&job, false);
    if (!threads) {
        job.fused = NULL;
        moe_gather_rows(state, x);
        one_at_a_time(&job, expert_forward);
        moe_combine(state, y, routing);
        return;
    }
    const int T = routing->num_tokens;
#pragma omp parallel num_threads(threads)
    {
        run_own_experts(&job, expert_forward);
#pragma omp barrier
#pragma omp for schedule(static) nowait
        for (int t = 0; t < T; t++) combine_token(state, y, routing, t);
    }
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
        for (int p = routing->c_offsets[t]; p < routing->c_offsets[t + 1]; p++)
            c[p] = output_dot(g, state->out + (size_t)state->pair_row[p] * H, H);
        for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++)
            output_grad_row(scratch->d_out + (size_t)state->combine_row[q] * H, routing->weights[q], g, H);
    }
}

void moe_experts_backward(const moe_rows *rows, const moe_scratch *scratch, const int *offsets,
                          const int *selected, int count, const moe_expert *experts, int H, int I) {
    const experts_job job = {rows, scratch, offsets, selected, count, experts, H, I, NULL, NULL};
    each_expert(&job, true, expert_backward);
}

/* dx_t += Σ over t's combine pairs of their rows of d_x. */
static void input_grads_token(const moe_state *state, const moe_scratch *scratch, float *dx,
                              const pm_routing *routing, int t) {
    const int H = state->hidden;
    float *row = dx + (size_t)t * H;
    for (int q = routing->offsets[t]; q < routing->offsets[t + 1]; q++) {
        const float *d = scratch->d_x + (size_t)state->combine_row[q] * H;
        for (int i = 0; i < H; i++) row[i] += d[i];
    }
}

void moe_input_grads(const moe_state *state, const moe_scratch *scratch, float *dx, const pm_routing *routing) {
    const int T = state->num_tokens;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) input_grads_token(state, scratch, dx, routing, t);
}

void moe_backward(moe_state *state, moe_scratch *scratch, float *dx, float *c, const float *dy,
                  const pm_routing *routing, const moe_expert *experts) {
    const moe_rows rows = {state->x, state->gate_up, state->act, state->out, state->bf16};
    const fused_passes fused = {state, routing, dy, c};
    experts_job job = {&rows, scratch, state->expert_offsets, state->expert_selected, state->num_experts, experts,
                       state->hidden, state->intermediate, NULL, &fused};
    const int threads = plan(&job, true);
    if (!threads) {
        job.fused = NULL;
        moe_output_grads(state, scratch, c, dy, routing);
        one_at_a_time(&job, expert_backward);
        moe_input_grads(state, scratch, dx, routing);
        return;
    }
    const int T = state->num_tokens;
#pragma omp parallel num_threads(threads)
    {
        run_own_experts(&job, expert_backward);
#pragma omp barrier
#pragma omp for schedule(static) nowait
        for (int t = 0; t < T; t++) input_grads_token(state, scratch, dx, routing, t);
    }
}
