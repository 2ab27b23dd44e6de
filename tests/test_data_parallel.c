/*
 * Data and expert parallelism (core/batch_comm.h): a run split over 2 and 3 ranks (threads of
 * this process, tests/util/thread_comm.c), and over 2 to 4 ranks with the experts split over
 * groups of 2 to 4 (6 experts: uneven slices too), gives the single process's per-step losses
 * and final weights to 1e-5, for every router with its global-batch statistics switched on
 * (topk's load-balancing loss, z-loss and selection bias; softmoe's tau calibration and
 * learned budget; probmoe's samples at global token indices). Rank 0 alone writes. Under
 * expert parallelism, a rank's gradient holds nothing for other ranks' experts and, for its
 * own, the single process's gradient from the whole group's tokens; a checkpoint saved by an
 * expert-parallel run resumes in one process.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "thread_comm.h"
#include "tiny_model.h"
#include "model/model_internal.h"
#include "nn/matmul_onednn_internal.h"
#include "train/trainer.h"
#include "word_corpus.h"

enum { STEPS = 20 };

static char work[64];

static int make_corpus(void **state) {
    (void)state;
    static const char *const words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"};
    snprintf(work, sizeof work, "/tmp/probmoe_dp_XXXXXX");
    return word_corpus_make(work, words, 8, 6000, 3);
}

static int remove_work(void **state) {
    (void)state;
    return word_corpus_remove(work);
}

typedef struct {
    pm_model_config cfg;
    char out[160];
    float lr; /* 0: the default below */
    long save_interval;
    const char *resume;
    char message[1024]; /* rank 0's error, if it failed */
} run_spec;

static train_options options_for(const run_spec *spec, const batch_comm *comm) {
    static char data[128];
    snprintf(data, sizeof data, "%s/corpus.txt", work);
    train_options opt = train_options_default();
    opt.data_path = data;
    opt.out_dir = spec->out;
    opt.batch = 6;
    opt.seq = 16;
    opt.accum = 2;
    opt.steps = STEPS;
    opt.warmup = 2;
    opt.lr = spec->lr > 0.0f ? spec->lr : 3e-3f;
    if (spec->lr > 1.0f) opt.clip = 0.0f, opt.warmup = 0; /* made to diverge */
    opt.eval_interval = 0;
    opt.eval_batches = 1;
    opt.save_interval = spec->save_interval;
    opt.resume_dir = spec->resume;
    opt.comm = comm;
    return opt;
}

static int train_rank(int rank, const batch_comm *comm, void *user) {
    run_spec *spec = user;
    train_options opt = options_for(spec, comm);
    train_result result;
    int status = train_run(&spec->cfg, &opt, NULL, &result);
    if (status < 0) print_message("rank %d: %s\n", rank, pm_last_error());
    if (status < 0 && rank == 0) snprintf(spec->message, sizeof spec->message, "%s", pm_last_error());
    return status < 0;
}

static void read_losses(const char *out, double *losses) {
    char path[200], line[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    int count = 0;
    while (count < STEPS && fgets(line, sizeof line, file)) {
        const char *at = strstr(line, "\"loss\": ");
        assert_non_null(at);
        losses[count++] = strtod(at + 8, NULL);
    }
    fclose(file);
    assert_int_equal(count, STEPS);
}

/* Every value of "key" in out/metrics.jsonl, in order (each layer of each step). */
static int read_field(const char *out, const char *key, double *values, int capacity) {
    char path[200], line[8192], pattern[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    int count = 0;
    while (fgets(line, sizeof line, file))
        for (const char *at = strstr(line, pattern); at && count < capacity; at = strstr(at + 1, pattern))
            values[count++] = strtod(at + strlen(pattern), NULL);
    fclose(file);
    return count;
}

static void compare_runs(const char *single, const char *parallel, int ranks) {
    double want[STEPS], got[STEPS];
    read_losses(single, want);
    read_losses(parallel, got);
    for (int i = 0; i < STEPS; i++)
        if (fabs(got[i] - want[i]) > 1e-5 * fabs(want[i]) + 1e-6)
            fail_msg("%d ranks, step %d: loss %.7f, single process %.7f", ranks, i + 1, got[i], want[i]);
    /* the routing statistics in the metrics are the global batch's too */
    static const char *const keys[] = {"mean_active", "load_entropy", "max_over_mean", "dead_experts"};
    for (int k = 0; k < 4; k++) {
        double a[STEPS * 8], b[STEPS * 8];
        const int n = read_field(single, keys[k], a, STEPS * 8);
        assert_int_equal(read_field(parallel, keys[k], b, STEPS * 8), n);
        assert_true(n >= STEPS);
        for (int i = 0; i < n; i++)
            if (fabs(a[i] - b[i]) > 2e-4) fail_msg("%d ranks: %s[%d] is %g, single process %g", ranks, keys[k], i, b[i], a[i]);
    }
    char a[200], b[200];
    snprintf(a, sizeof a, "%s/model", single);
    snprintf(b, sizeof b, "%s/model", parallel);
    pm_model *x = pm_model_load(a, 1, 8), *y = pm_model_load(b, 1, 8);
    assert_non_null(x);
    assert_non_null(y);
    /* Summation order differs across ranks (float rounding), and AdamW's m/sqrt(v) passes on
     * the rounding of a gradient that is a small sum of cancelling terms at nearly full size;
     * so each tensor is compared as a whole: |Δw| / |w| (Euclidean norms). */
    const float *wx = pm_model_weights(x), *wy = pm_model_weights(y);
    for (int p = 0; p < pm_model_num_params(x); p++) {
        const pm_param *param = pm_model_param(x, p);
        double sq = 0.0, diff = 0.0;
        for (size_t i = param->offset; i < param->offset + param->count; i++) {
            sq += (double)wx[i] * wx[i];
            diff += ((double)wx[i] - wy[i]) * ((double)wx[i] - wy[i]);
        }
        const double relative = sqrt(diff) / (sqrt(sq) + 1e-30);
        if (getenv("DP_VERBOSE")) print_message("%d ranks %-48s %.2g\n", ranks, param->name, relative);
        /* k's bias (qwen2_moe) adds nearly the same score to all of a query's keys (but for rope's
         * rotation), which the softmax ignores: its gradient is the small remainder of cancelling
         * terms, so AdamW passes on more of the rounding */
        const double most = strstr(param->name, "k_proj.bias") ? 1e-4 : 1e-5;
        if (relative > most) fail_msg("%d ranks: %s differs by %.3g of its norm", ranks, param->name, relative);
    }
    pm_model_free(x);
    pm_model_free(y);
}

/* tiny_model_config with the bytes tokenizer's vocabulary */
static run_spec spec_for(pm_router_kind kind) {
    run_spec spec = {tiny_model_config(kind), "", 0.0f, 0, NULL, ""};
    spec.cfg.vocab_size = 256;
    return spec;
}

/* Runs spec on one rank, on 2 and 3 data-parallel ranks and under expert parallelism, and
 * compares each with the single rank's run. */
static void check_runs(run_spec spec, const char *name) {
    snprintf(spec.out, sizeof spec.out, "%s/%s-1", work, name);
    omp_set_num_threads(1);
    assert_int_equal(thread_comm_run(1, train_rank, &spec), 0); /* a single rank */
    char single[160];
    snprintf(single, sizeof single, "%s", spec.out);
    for (int ranks = 2; ranks <= 3; ranks++) {
        snprintf(spec.out, sizeof spec.out, "%s/%s-%d", work, name, ranks);
        assert_int_equal(thread_comm_run(ranks, train_rank, &spec), 0);
        compare_runs(single, spec.out, ranks);
    }
    /* expert parallelism: (ranks, group) */
    static const int layouts[][2] = {{2, 2}, {4, 2}, {3, 3}, {4, 4}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        const int ranks = layouts[i][0], group = layouts[i][1];
        snprintf(spec.out, sizeof spec.out, "%s/%s-%d-ep%d", work, name, ranks, group);
        assert_int_equal(thread_comm_run_experts(ranks, group, train_rank, &spec), 0);
        compare_runs(single, spec.out, ranks);
    }
}

static void check_router(pm_router_kind kind) {
    run_spec spec = spec_for(kind);
    if (kind == PM_ROUTER_TOPK) {
        spec.cfg.router.lb_coef = 0.01f;
        spec.cfg.router.z_coef = 0.001f;
        spec.cfg.router.bias_rate = 0.01f;
    }
    check_runs(spec, pm_router_kind_name(kind));
}

/* The other families' parts under both parallelisms: qwen2_moe's tied embedding (whose
 * gradient sums lm_head's and the embedding's), biases, shared expert and dense layers (whose
 * tensors expert parallelism does not split); mixtral's window. */
static void test_families(void **state) {
    (void)state;
    for (pm_arch arch = PM_ARCH_QWEN2_MOE; arch <= PM_ARCH_MIXTRAL; arch++) {
        run_spec spec = spec_for(PM_ROUTER_PROBMOE);
        spec.cfg = tiny_family_config(arch, PM_ROUTER_PROBMOE);
        spec.cfg.vocab_size = 256;
        check_runs(spec, pm_arch_name(arch));
    }
    run_spec spec = spec_for(PM_ROUTER_PROBMOE); /* dense layers among the MoE layers */
    spec.cfg = tiny_dense_config(PM_ROUTER_PROBMOE);
    spec.cfg.vocab_size = 256;
    check_runs(spec, "qwen2_moe with dense layers");
}

static void test_topk(void **state) {
    (void)state;
    check_router(PM_ROUTER_TOPK);
}
static void test_probmoe(void **state) {
    (void)state;
    check_router(PM_ROUTER_PROBMOE);
}
static void test_probmoe_dyn(void **state) {
    (void)state;
    check_router(PM_ROUTER_PROBMOE_DYN);
}
static void test_densemixer(void **state) {
    (void)state;
    check_router(PM_ROUTER_DENSEMIXER);
}
static void test_softmoe(void **state) {
    (void)state;
    check_router(PM_ROUTER_SOFTMOE);
}

/* A run with a comm of one rank equals a run with none (the plain path), bit for bit. */
static void test_one_rank_is_plain(void **state) {
    (void)state;
    run_spec spec = spec_for(PM_ROUTER_PROBMOE);
    snprintf(spec.out, sizeof spec.out, "%s/plain", work);
    train_options opt = options_for(&spec, NULL);
    train_result result;
    omp_set_num_threads(1);
    if (train_run(&spec.cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    double want[STEPS], got[STEPS];
    read_losses(spec.out, want);
    snprintf(spec.out, sizeof spec.out, "%s/probmoe-one-rank", work);
    assert_int_equal(thread_comm_run(1, train_rank, &spec), 0);
    read_losses(spec.out, got);
    for (int i = 0; i < STEPS; i++) assert_true(got[i] == want[i]);
}

/* Fewer sequences than ranks is refused by every rank, and nothing is written. */
static void test_batch_smaller_than_ranks(void **state) {
    (void)state;
    run_spec spec = spec_for(PM_ROUTER_TOPK);
    snprintf(spec.out, sizeof spec.out, "%s/too-many-ranks", work);
    /* 6 sequences a batch: 7 ranks cannot each have one */
    assert_int_equal(thread_comm_run(7, train_rank, &spec), 7);
    struct stat info;
    assert_int_not_equal(stat(spec.out, &info), 0);
}

/* A run that diverges stops on every rank after the same non-finite steps (the ranks agree on
 * non-finite router logits before any collective), none waiting for another, nothing saved. */
static void test_divergence_stops_every_rank(void **state) {
    (void)state;
    run_spec spec = spec_for(PM_ROUTER_PROBMOE);
    spec.lr = 1e30f;
    snprintf(spec.out, sizeof spec.out, "%s/diverges", work);
    assert_int_equal(thread_comm_run(2, train_rank, &spec), 2);
    char path[200];
    snprintf(path, sizeof path, "%s/model/model.safetensors", spec.out);
    struct stat info;
    assert_int_not_equal(stat(path, &info), 0);
}

/* ------------------------------------------------------------ expert gradients */

enum { GRAD_BATCH = 4, GRAD_SEQ = 12 };

typedef struct {
    pm_model_config cfg;
    int32_t tokens[GRAD_BATCH * GRAD_SEQ], targets[GRAD_BATCH * GRAD_SEQ];
    float *single;   /* the single process's gradient */
    int bad[64];     /* per rank: entries that break the expectations */
    int64_t traffic[64][4]; /* per rank: rows per pair and per rank, counted and by brute force */
} gradient_spec;

/* The rows of H floats a rank's pairs (CSR) send to other ranks and back, by brute force: per
 * pair whose expert another rank holds, and per distinct such rank of each token. */
static void count_traffic(const int *offsets, const int *experts, int T, int E, int ranks, int self, int64_t *pairs,
                          int64_t *per_rank) {
    for (int t = 0; t < T; t++) {
        bool seen[64] = {false};
        for (int p = offsets[t]; p < offsets[t + 1]; p++)
            for (int j = 0; j < ranks; j++) {
                int first, count;
                batch_comm_rows(E, j, ranks, &first, &count);
                if (j == self || experts[p] < first || experts[p] >= first + count) continue;
                *pairs += 2;
                if (!seen[j]) *per_rank += 2;
                seen[j] = true;
            }
    }
}

/* One forward and backward of this rank's rows with the experts split over all ranks (one
 * group, no replicas): the rank's gradient of its experts is the single process's; of other
 * ranks' experts, zero. The rows it counts as sent match a brute-force count of its pairs. */
static int expert_gradient_rank(int rank, const batch_comm *comm, void *user) {
    gradient_spec *spec = user;
    pm_model *model = pm_model_create(&spec->cfg, GRAD_BATCH, GRAD_SEQ);
    if (!model) return 1;
    pm_model_init_weights(model, 5);
    int first, rows;
    batch_comm_rows(GRAD_BATCH, rank, comm->size, &first, &rows);
    const int most = (GRAD_BATCH + comm->size - 1) / comm->size;
    int status = model_set_expert_parallel(model, comm, most * GRAD_SEQ);
    model_set_batch_origin(model, comm, (uint32_t)(first * GRAD_SEQ));
    pm_model_zero_grads(model);
    float loss;
    if (status == 0)
        status = pm_model_forward(model, spec->tokens + first * GRAD_SEQ, spec->targets + first * GRAD_SEQ, rows,
                                  GRAD_SEQ, true, 3, 0, &loss);
    if (status == 0) status = pm_model_backward(model);
    int64_t pairs = 0, per_rank = 0, counted_pairs, counted_ranks;
    for (int l = 0; status == 0 && l < pm_model_moe_layers(&spec->cfg); l++) {
        const pm_routing *r = pm_model_routing(model, l); /* forward: compute pairs; backward: weighted */
        count_traffic(r->c_offsets, r->c_experts, r->num_tokens, spec->cfg.num_experts, comm->size, rank, &pairs,
                      &per_rank);
        count_traffic(r->offsets, r->experts, r->num_tokens, spec->cfg.num_experts, comm->size, rank, &pairs,
                      &per_rank);
    }
    model_expert_traffic(model, &counted_pairs, &counted_ranks);
    const int64_t traffic[4] = {counted_pairs, pairs, counted_ranks, per_rank};
    memcpy(spec->traffic[rank], traffic, sizeof traffic);
    const float *grads = pm_model_grads(model);
    for (int p = 0; status == 0 && p < pm_model_num_params(model); p++) {
        const pm_param *param = pm_model_param(model, p);
        if (strstr(param->name, ".experts.") == NULL) { /* shared (a dense layer's MLP too): every rank's */
            spec->bad[rank] += !model_param_local(model, p);
            continue;
        }
        double diff = 0.0, norm = 0.0;
        for (size_t i = param->offset; i < param->offset + param->count; i++) {
            if (!model_param_local(model, p)) {
                spec->bad[rank] += grads[i] != 0.0f; /* exactly nothing for another rank's expert */
                continue;
            }
            diff += ((double)grads[i] - spec->single[i]) * ((double)grads[i] - spec->single[i]);
            norm += (double)spec->single[i] * spec->single[i];
        }
        if (model_param_local(model, p) && sqrt(diff) > 1e-5 * sqrt(norm) + 1e-9) spec->bad[rank]++;
    }
    pm_model_free(model);
    return status < 0;
}

static void check_expert_gradients(pm_model_config cfg, const char *name) {
    gradient_spec spec = {.cfg = cfg};
    for (int i = 0; i < GRAD_BATCH * GRAD_SEQ; i++) {
        spec.tokens[i] = (i * 7 + 3) % spec.cfg.vocab_size;
        spec.targets[i] = (i * 11 + 1) % spec.cfg.vocab_size;
    }
    omp_set_num_threads(1);
    pm_model *model = pm_model_create(&spec.cfg, GRAD_BATCH, GRAD_SEQ);
    assert_non_null(model);
    pm_model_init_weights(model, 5);
    pm_model_zero_grads(model);
    float loss;
    assert_int_equal(pm_model_forward(model, spec.tokens, spec.targets, GRAD_BATCH, GRAD_SEQ, true, 3, 0, &loss), 0);
    assert_int_equal(pm_model_backward(model), 0);
    spec.single = pm_model_grads(model);
    for (int ranks = 2; ranks <= 4; ranks++) {
        memset(spec.bad, 0, sizeof spec.bad);
        assert_int_equal(thread_comm_run_experts(ranks, ranks, expert_gradient_rank, &spec), 0);
        for (int r = 0; r < ranks; r++) {
            if (spec.bad[r])
                fail_msg("%s, %d ranks: rank %d has %d expert gradient entries or tensors off", name, ranks, r,
                         spec.bad[r]);
            const int64_t *t = spec.traffic[r];
            if (t[0] != t[1] || t[2] != t[3] || t[3] > t[1] || t[1] == 0)
                fail_msg("%s, %d ranks: rank %d counted %lld rows per pair and %lld per rank; brute force %lld and "
                         "%lld", name, ranks, r, (long long)t[0], (long long)t[2],
                         (long long)t[1], (long long)t[3]);
        }
    }
    pm_model_free(model);
}

static void test_expert_gradients_stay_with_owner(void **state) {
    (void)state;
    for (int kind = 0; kind < pm_router_kind_count(); kind++)
        check_expert_gradients(tiny_model_config((pm_router_kind)kind), pm_router_kind_name((pm_router_kind)kind));
    /* dense layers: their MLP is not split, and no rank's experts include it */
    check_expert_gradients(tiny_dense_config(PM_ROUTER_PROBMOE), "qwen2_moe with dense layers");
}

/* bf16 under expert parallelism: the owner's expert products run on up to `capacity` received
 * rows, more than the rank's own pairs; the copies of their inputs are reserved when the
 * experts are split, so a step does not grow them (nothing is allocated mid-run). */
static int bf16_owner_rank(int rank, const batch_comm *comm, void *user) {
    gradient_spec *spec = user;
    pm_model *model = pm_model_create(&spec->cfg, 1, GRAD_SEQ); /* one row a rank: its own products are small */
    if (!model) return 1;
    pm_model_init_weights(model, 5);
    int first, rows;
    batch_comm_rows(GRAD_BATCH, rank, comm->size, &first, &rows);
    int status = pm_model_set_precision(model, PM_PRECISION_BF16);
    if (status == 0) status = model_set_expert_parallel(model, comm, GRAD_SEQ);
    model_set_batch_origin(model, comm, (uint32_t)(first * GRAD_SEQ));
    const size_t reserved = status == 0 ? model->bf16->capacity : 0;
    const moe_owner *owner = &moe_layer(model, 0)->owner;
    if (status == 0 && reserved < model_bf16_owner_elements(&spec->cfg, (uint64_t)owner->capacity)) spec->bad[rank]++;
    float loss;
    pm_model_zero_grads(model);
    if (status == 0)
        status = pm_model_forward(model, spec->tokens + first * GRAD_SEQ, spec->targets + first * GRAD_SEQ, rows,
                                  GRAD_SEQ, true, 3, 0, &loss);
    if (status == 0) status = pm_model_backward(model);
    if (status == 0 && (model->bf16->capacity != reserved || !isfinite(loss))) spec->bad[rank]++;
    pm_model_free(model);
    return status < 0;
}

static void test_bf16_expert_rows_reserved(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    gradient_spec spec = {.cfg = tiny_model_config(PM_ROUTER_PROBMOE)};
    for (int i = 0; i < GRAD_BATCH * GRAD_SEQ; i++) {
        spec.tokens[i] = (i * 7 + 3) % spec.cfg.vocab_size;
        spec.targets[i] = (i * 11 + 1) % spec.cfg.vocab_size;
    }
    omp_set_num_threads(1);
    assert_int_equal(thread_comm_run_experts(4, 4, bf16_owner_rank, &spec), 0);
    for (int r = 0; r < 4; r++)
        if (spec.bad[r]) fail_msg("rank %d: the bf16 copies were not reserved for its received rows", r);
}

/* A checkpoint of a run with experts split over groups (4 ranks, groups of 2) holds every
 * expert's weights and moments: resumed in one process it continues as the single process's
 * own checkpoint does. */
static void test_expert_parallel_checkpoint_resumes(void **state) {
    (void)state;
    run_spec spec = spec_for(PM_ROUTER_PROBMOE);
    spec.save_interval = 10;
    omp_set_num_threads(1);
    snprintf(spec.out, sizeof spec.out, "%s/ckpt-single", work);
    assert_int_equal(thread_comm_run(1, train_rank, &spec), 0);
    snprintf(spec.out, sizeof spec.out, "%s/ckpt-ep", work);
    assert_int_equal(thread_comm_run_experts(4, 2, train_rank, &spec), 0);
    char resume[200];
    snprintf(resume, sizeof resume, "%s/ckpt-ep/checkpoint-000010", work);
    spec.resume = resume;
    spec.save_interval = 0;
    assert_int_equal(thread_comm_run(1, train_rank, &spec), 0); /* continues in ckpt-ep */
    double want[STEPS], got[STEPS];
    snprintf(resume, sizeof resume, "%s/ckpt-single", work);
    read_losses(resume, want);
    read_losses(spec.out, got); /* the 20 steps of the run, then the resumed 10 appended */
    char path[200], line[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", spec.out);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    int count = 0;
    while (fgets(line, sizeof line, file)) {
        const char *at = strstr(line, "\"loss\": ");
        assert_non_null(at);
        const double value = strtod(at + 8, NULL);
        const int step = count < STEPS ? count : count - STEPS + 10;
        if (fabs(value - want[step]) > 1e-5 * fabs(want[step]) + 1e-6)
            fail_msg("line %d (step %d): loss %.7f, single process %.7f", count + 1, step + 1, value, want[step]);
        count++;
    }
    fclose(file);
    assert_int_equal(count, STEPS + 10);
    (void)got;
}

/* The ranks on one machine share its memory: a model that one process could train but four on
 * this machine cannot is refused by all four before anything is allocated, with a message
 * that counts them. */
static void test_memory_check_counts_the_machines_processes(void **state) {
    (void)state;
    run_spec spec = spec_for(PM_ROUTER_TOPK);
    const uint64_t machine = pm_machine_memory();
    if (machine == 0) skip();
    /* the smallest vocabulary whose training needs 40% of this machine in one process */
    int low = 256, high = 1 << 24;
    while (low < high) {
        spec.cfg.vocab_size = low + (high - low) / 2;
        pm_memory_estimate need;
        assert_int_equal(pm_model_memory_estimate(&spec.cfg, 6, 16, true, &need), 0);
        if (need.total < machine / 10 * 4) low = spec.cfg.vocab_size + 1;
        else high = spec.cfg.vocab_size;
    }
    spec.cfg.vocab_size = low;
    snprintf(spec.out, sizeof spec.out, "%s/too-many-on-one-machine", work);
    assert_int_equal(thread_comm_run(4, train_rank, &spec), 4);
    assert_non_null(strstr(spec.message, "the 4 processes of this run on this machine need about"));
    struct stat info;
    assert_int_not_equal(stat(spec.out, &info), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_rank_is_plain), cmocka_unit_test(test_topk),
        cmocka_unit_test(test_probmoe),           cmocka_unit_test(test_probmoe_dyn),
        cmocka_unit_test(test_densemixer),        cmocka_unit_test(test_softmoe), cmocka_unit_test(test_families),
        cmocka_unit_test(test_batch_smaller_than_ranks),  cmocka_unit_test(test_divergence_stops_every_rank),
        cmocka_unit_test(test_expert_gradients_stay_with_owner), cmocka_unit_test(test_expert_parallel_checkpoint_resumes),
        cmocka_unit_test(test_bf16_expert_rows_reserved),
        cmocka_unit_test(test_memory_check_counts_the_machines_processes),
    };
    return cmocka_run_group_tests(tests, make_corpus, remove_work);
}
