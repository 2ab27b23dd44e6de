/* One training step (forward + backward + AdamW) of the model: tokens/s, achieved GFLOP/s and
 * peak memory, for the demo config and for L=4, H=512, 8 heads, E=16, k=4, I=1024, S=256, B=8
 * with each router, in fp32 and (with oneDNN) bf16. The same run measures cblas_sgemm and
 * oneDNN's fp32 and bf16 products at comparable sizes and, when Debian's python3-torch is installed, the
 * dev/ PyTorch reference's step, and prints the ratios and the targets.
 * Each configuration runs in a child process so its peak memory is its own.
 * Usage: train_step [steps] [--no-torch] [--fp32 (no bf16 runs)] */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/model_internal.h"
#include "probmoe.h"
#include "train/optim.h"

typedef struct {
    const char *name;
    int layers, hidden, heads, experts, k, intermediate, seq, batch, vocab;
} bench_config;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Matrix-multiply FLOPs of one step: 6 per active weight per token (forward 2, backward 4)
 * plus causal attention (about 6·B·S²·H). densemixer's forward also runs every expert. */
static double step_flops(const bench_config *c, pm_router_kind kind) {
    const double H = c->hidden, T = (double)c->batch * c->seq;
    const double expert = 3.0 * H * c->intermediate;
    double active = 4.0 * H * H + H * c->experts + c->k * expert;
    double flops = 6.0 * (c->layers * active + H * c->vocab) * T + 6.0 * c->layers * c->batch * (double)c->seq * c->seq * H;
    if (kind == PM_ROUTER_DENSEMIXER) flops += 2.0 * c->layers * (c->experts - c->k) * expert * T;
    return flops;
}

/* Runs `steps` steps after one warm-up, with the matrix products in `precision`; writes the
 * median seconds per step. */
static pm_model_config model_config(const bench_config *c, pm_router_kind kind) {
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = c->vocab;
    cfg.hidden_size = c->hidden;
    cfg.intermediate_size = c->intermediate;
    cfg.num_layers = c->layers;
    cfg.num_heads = cfg.num_kv_heads = c->heads;
    cfg.num_experts = c->experts;
    cfg.experts_per_token = c->k;
    cfg.max_position_embeddings = c->seq;
    cfg.router = pm_router_config_default(kind, c->experts, c->k);
    return cfg;
}

static int run_config(const bench_config *c, pm_router_kind kind, pm_precision precision, int steps, double *seconds) {
    const pm_model_config cfg = model_config(c, kind);
    pm_model *model = pm_model_create(&cfg, c->batch, c->seq);
    if (!model) {
        fprintf(stderr, "train_step: %s\n", pm_last_error());
        return 1;
    }
    pm_model_init_weights(model, 1);
    /* fp32 products by the measured table, as probmoe train does by default */
    if (pm_model_set_precision(model, precision) < 0 || pm_model_set_fp32_matmul(model, PM_FP32_MATMUL_MEASURED) < 0) {
        fprintf(stderr, "train_step: %s\n", pm_last_error());
        pm_model_free(model);
        return 1;
    }
    adamw optimizer;
    adamw_init(&optimizer, model, (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, false});
    const int T = c->batch * c->seq;
    int32_t *tokens = malloc(sizeof(int32_t) * T), *targets = malloc(sizeof(int32_t) * T);
    pm_rng rng;
    pm_rng_init(&rng, 7, 0);
    for (int i = 0; i < T; i++) tokens[i] = (int32_t)(pm_rng_u32(&rng) % c->vocab), targets[i] = (int32_t)(pm_rng_u32(&rng) % c->vocab);
    double *times = malloc(sizeof(double) * (steps + 1));
    /* as the trainer does: AdamW's pass clears the gradients for the next step */
    adamw_step_options update = adamw_step_defaults();
    update.zero_grads = true;
    update.bf16_weights = model->weights16; /* bf16: the copy in AdamW's pass, as the trainer does */
    pm_model_zero_grads(model);
    for (int s = 0; s <= steps; s++) {
        double start = now_seconds();
        float loss;
        if (pm_model_forward(model, tokens, targets, c->batch, c->seq, true, 1, (uint64_t)s, &loss) < 0 ||
            pm_model_backward(model) < 0) {
            fprintf(stderr, "train_step: %s\n", pm_last_error());
            return 1;
        }
        adamw_step(&optimizer, model, 1e-4f, &update);
        if (model->weights16) model_weights16_written(model);
        times[s] = now_seconds() - start;
    }
    /* median of the timed steps (the first is a warm-up) */
    for (int i = 2; i <= steps; i++)
        for (int j = i; j > 1 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    *seconds = times[1 + steps / 2];
    free(times);
    free(tokens);
    free(targets);
    adamw_free(&optimizer);
    pm_model_free(model);
    return 0;
}

/* Runs job(arg, results) in a child process and copies its two results back; the parent
 * never starts OpenMP or BLAS threads, so forking stays safe. Results: [0] the job's figure,
 * [1] the child's peak resident MiB. */
typedef int (*child_job)(const void *arg, double *figure);

static int in_child(child_job job, const void *arg, double results[2]) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return 1;
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(pipe_fds[0]);
        double out[2] = {0, 0};
        int status = job(arg, &out[0]);
        struct rusage usage;
        getrusage(RUSAGE_SELF, &usage);
        out[1] = usage.ru_maxrss / 1024.0;
        if (write(pipe_fds[1], out, sizeof out) != (ssize_t)sizeof out) status = 1;
        _exit(status);
    }
    close(pipe_fds[1]);
    ssize_t got = read(pipe_fds[0], results, 2 * sizeof(double));
    close(pipe_fds[0]);
    int status;
    waitpid(child, &status, 0);
    return got == (ssize_t)(2 * sizeof(double)) && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

typedef struct {
    const bench_config *config;
    pm_router_kind kind;
    pm_precision precision;
    int steps;
} step_job;

static int run_step_job(const void *arg, double *seconds) {
    const step_job *job = arg;
    return run_config(job->config, job->kind, job->precision, job->steps, seconds);
}

/* Best of three sgemm runs of (M, N, K), in GFLOP/s. */
static int sgemm_job(const void *arg, double *rate) {
    const int *shape = arg, M = shape[0], N = shape[1], K = shape[2];
    float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)N * K, sizeof(float));
    float *out = calloc((size_t)M * N, sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        double start = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, out, N);
        double elapsed = now_seconds() - start;
        if (r > 0 && elapsed < best) best = elapsed;
    }
    free(a);
    free(b);
    free(out);
    *rate = 2.0 * M * N * K / best * 1e-9;
    return 0;
}

/* Best of three oneDNN f32 products of (M, N, K) (out = a·bᵀ, as sgemm_job), in GFLOP/s. */
static int dnnl_f32_job(const void *arg, double *rate) {
    const int *shape = arg, M = shape[0], N = shape[1], K = shape[2];
    matmul_bf16 *ctx = matmul_bf16_create();
    float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)N * K, sizeof(float));
    float *out = calloc((size_t)M * N, sizeof(float));
    if (!ctx || !a || !b || !out) return 1;
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        double start = now_seconds();
        if (!matmul_dnnl_product(ctx, MATMUL_FORWARD, out, a, b, M, K, N)) return 1;
        double elapsed = now_seconds() - start;
        if (r > 0 && elapsed < best) best = elapsed;
    }
    free(a), free(b), free(out);
    matmul_bf16_free(ctx);
    *rate = 2.0 * M * N * K / best * 1e-9;
    return 0;
}

/* Best of three bf16 products of (M, N, K) through linear_forward, in GFLOP/s. */
static int bf16_job(const void *arg, double *rate) {
    const int *shape = arg, M = shape[0], N = shape[1], K = shape[2];
    matmul_bf16 *ctx = matmul_bf16_create();
    float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)N * K, sizeof(float));
    float *out = calloc((size_t)M * N, sizeof(float));
    uint16_t *b16 = calloc((size_t)N * K, sizeof(uint16_t));
    if (!ctx || !a || !b || !out || !b16) return 1;
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    float_to_bf16(b16, b, (size_t)N * K);
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        double start = now_seconds();
        linear_forward(ctx, out, a, b, b16, M, K, N);
        double elapsed = now_seconds() - start;
        if (r > 0 && elapsed < best) best = elapsed;
    }
    free(a), free(b), free(out), free(b16);
    matmul_bf16_free(ctx);
    *rate = 2.0 * M * N * K / best * 1e-9;
    return 0;
}

static double product_rate(child_job job, int M, int N, int K) {
    const int shape[3] = {M, N, K};
    double results[2];
    return in_child(job, shape, results) == 0 ? results[0] : NAN;
}

/* tokens/s of the PyTorch reference's step, or 0 if it cannot run here. */
static double torch_tokens_per_second(const bench_config *c, const char *router) {
    char command[512];
    snprintf(command, sizeof command,
             "/usr/bin/python3 dev/bench_torch_step.py --layers %d --hidden %d --heads %d --kv-heads %d "
             "--experts %d --k %d --intermediate %d --seq %d --batch %d --vocab %d --router %s --threads %d "
             "2>/dev/null",
             c->layers, c->hidden, c->heads, c->heads, c->experts, c->k, c->intermediate, c->seq, c->batch, c->vocab,
             router, omp_get_max_threads());
    FILE *pipe_in = popen(command, "r");
    if (!pipe_in) return 0.0;
    char line[512];
    double rate = 0.0;
    while (fgets(line, sizeof line, pipe_in)) {
        /* the reference prints "tokens/s <figure>" */
        if (strncmp(line, "tokens/s ", 9) == 0) rate = strtod(line + 9, NULL);
    }
    pclose(pipe_in);
    return rate;
}

int main(int argc, char **argv) {
    int steps = 5;
    bool torch = true;
    bool fp32_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-torch") == 0) torch = false;
        else if (strcmp(argv[i], "--fp32") == 0) fp32_only = true;
        else steps = atoi(argv[i]) > 0 ? atoi(argv[i]) : steps;
    }
    const bench_config demo = {"demo", 4, 256, 8, 8, 2, 512, 128, 8, 256};
    const bench_config large = {"large", 4, 512, 8, 16, 4, 1024, 256, 8, 256};
    printf("one training step (forward + backward + AdamW), %d threads, median of %d steps, fp32 and bf16 matrix "
           "products\n", omp_get_max_threads(), steps);
    /* sgemm at the shapes the large config's step runs: the best of them is the reference */
    const int rows = large.batch * large.seq, expert_rows = rows * large.k / large.experts;
    const int shapes[][3] = {{rows, large.hidden, large.hidden},          /* dense projection */
                             {large.hidden, large.hidden, rows},          /* its weight gradient */
                             {expert_rows, large.intermediate, large.hidden}, /* an expert's rows */
                             {large.intermediate, large.hidden, expert_rows}, /* its weight gradient */
                             {rows, large.vocab, large.hidden}};          /* lm_head */
    double reference_rate = 0.0;
    printf("cblas_sgemm GFLOP/s (M×N×K):");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double rate = product_rate(sgemm_job, shapes[i][0], shapes[i][1], shapes[i][2]);
        printf(" %.1f (%d×%d×%d)", rate, shapes[i][0], shapes[i][1], shapes[i][2]);
        if (rate > reference_rate) reference_rate = rate;
    }
    printf("; reference: the best, %.1f GFLOP/s\n", reference_rate);
    /* oneDNN's f32 product at the same shapes: the other library fp32 products may run with
     * (pm_fp32_matmul; bench/matmul_sites compares the two at every call site) */
    if (matmul_bf16_available()) {
        printf("oneDNN fp32 GFLOP/s (M×N×K):");
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            printf(" %.1f (%d×%d×%d)", product_rate(dnnl_f32_job, shapes[i][0], shapes[i][1], shapes[i][2]),
                   shapes[i][0], shapes[i][1], shapes[i][2]);
        printf("\n");
    }
    printf("\n");
    /* bf16's reference: oneDNN's bf16 product at the same shapes (in a child, as the rest) */
    double bf16_rate = 0.0;
    if (matmul_bf16_available()) {
        printf("oneDNN bf16 GFLOP/s (M×N×K):");
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            double rate = product_rate(bf16_job, shapes[i][0], shapes[i][1], shapes[i][2]);
            printf(" %.1f (%d×%d×%d)", rate, shapes[i][0], shapes[i][1], shapes[i][2]);
            if (rate > bf16_rate) bf16_rate = rate;
        }
        printf("; reference: the best, %.1f GFLOP/s\n", bf16_rate);
    }
    /* peak: the child's resident peak over both precisions; estimate: pm_model_memory_estimate's
     * total for training in fp32 (bf16 adds the weights' copy and the inputs' scratch); arena: its
     * activation arena, the one block planned at creation */
    printf("\n%-6s %-14s %9s %9s %8s %8s %9s %9s %8s %8s %9s %9s %9s\n", "config", "router", "fp32 ms", "tokens/s",
           "GFLOP/s", "of sgemm", "bf16 ms", "tokens/s", "GFLOP/s", "of bf16", "peak MiB", "estim MiB", "arena MiB");
    enum { MAX_KINDS = 32 };
    double seconds[2][2][MAX_KINDS] = {{{0}}}; /* [config][precision][router] */
    const bench_config *configs[2] = {&demo, &large};
    const int precisions = matmul_bf16_available() && !fp32_only ? 2 : 1;
    for (int ci = 0; ci < 2; ci++)
        for (int kind = 0; kind < pm_router_kind_count() && kind < MAX_KINDS; kind++) {
            const bench_config *c = configs[ci];
            double peak = 0.0;
            bool failed = false;
            for (int p = 0; p < precisions && !failed; p++) {
                const step_job job = {c, (pm_router_kind)kind, p ? PM_PRECISION_BF16 : PM_PRECISION_FP32, steps};
                double results[2];
                failed = in_child(run_step_job, &job, results) != 0;
                seconds[ci][p][kind] = results[0];
                if (results[1] > peak) peak = results[1];
            }
            if (failed) {
                printf("%-6s %-14s failed\n", c->name, pm_router_kind_name((pm_router_kind)kind));
                continue;
            }
            const double tokens = (double)c->batch * c->seq, flops = step_flops(c, (pm_router_kind)kind) * 1e-9;
            const double *fp32 = seconds[ci][0], *bf16 = seconds[ci][1];
            printf("%-6s %-14s %9.1f %9.0f %8.1f %7.0f%%", c->name, pm_router_kind_name((pm_router_kind)kind),
                   1e3 * fp32[kind], tokens / fp32[kind], flops / fp32[kind], 100.0 * flops / fp32[kind] / reference_rate);
            if (precisions == 2)
                printf(" %9.1f %9.0f %8.1f %7.0f%%", 1e3 * bf16[kind], tokens / bf16[kind], flops / bf16[kind],
                       100.0 * flops / bf16[kind] / bf16_rate);
            else
                printf(" %9s %9s %8s %8s", "-", "-", "-", "-");
            const pm_model_config cfg = model_config(c, (pm_router_kind)kind);
            pm_memory_estimate need = {0};
            pm_model_memory_estimate(&cfg, c->batch, c->seq, true, &need);
            printf(" %9.0f %9.0f %9.0f\n", peak, need.total / 1048576.0, need.activation_arena / 1048576.0);
        }
    const double large_tokens = (double)large.batch * large.seq;
    const double *fp32 = seconds[1][0], *bf16 = seconds[1][1];
    const double fp32_rate = large_tokens / fp32[PM_ROUTER_PROBMOE];
    printf("\ntarget: large config, probmoe, fp32 >= 900 tokens/s: %.0f (%s)\n", fp32_rate,
           fp32_rate >= 900 ? "met" : "MISSED");
    printf("target: probmoe's fp32 step within 1.05x of topk's: %.2fx (%s)\n", fp32[PM_ROUTER_PROBMOE] / fp32[PM_ROUTER_TOPK],
           fp32[PM_ROUTER_PROBMOE] <= 1.05 * fp32[PM_ROUTER_TOPK] ? "met" : "MISSED");
    double bf16_tokens = 0.0;
    if (precisions == 2) {
        bf16_tokens = large_tokens / bf16[PM_ROUTER_PROBMOE];
        printf("target: large config, probmoe, bf16 >= 1,600 tokens/s: %.0f (%s)\n", bf16_tokens,
               bf16_tokens >= 1600 ? "met" : "MISSED");
        printf("target: probmoe's bf16 step within 1.05x of topk's: %.2fx (%s)\n",
               bf16[PM_ROUTER_PROBMOE] / bf16[PM_ROUTER_TOPK],
               bf16[PM_ROUTER_PROBMOE] <= 1.05 * bf16[PM_ROUTER_TOPK] ? "met" : "MISSED");
    }
    printf("densemixer's extra cost over topk (fp32): %.2fx the step time\n", fp32[PM_ROUTER_DENSEMIXER] / fp32[PM_ROUTER_TOPK]);
    /* against PyTorch: this machine's speed drifts between runs, so the two alternate, three
     * rounds, each round's ratios from back-to-back runs, and the median round is reported */
    double torch_rate = torch ? torch_tokens_per_second(&large, "probmoe") : 0.0;
    if (torch_rate > 0.0) {
        enum { ROUNDS = 3 };
        double ratio32[ROUNDS], ratio16[ROUNDS], rates[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            double results[2], ours32 = fp32_rate, ours16 = bf16_tokens;
            const step_job job32 = {&large, PM_ROUTER_PROBMOE, PM_PRECISION_FP32, steps};
            const step_job job16 = {&large, PM_ROUTER_PROBMOE, PM_PRECISION_BF16, steps};
            if (r > 0 && in_child(run_step_job, &job32, results) == 0) ours32 = large_tokens / results[0];
            if (r > 0 && precisions == 2 && in_child(run_step_job, &job16, results) == 0) ours16 = large_tokens / results[0];
            rates[r] = r > 0 ? torch_tokens_per_second(&large, "probmoe") : torch_rate;
            ratio32[r] = ours32 / rates[r];
            ratio16[r] = ours16 / rates[r];
            printf("round %d: PyTorch %.0f tokens/s, probmoe fp32 %.0f (%.2fx)", r + 1, rates[r], ours32, ratio32[r]);
            if (precisions == 2) printf(", bf16 %.0f (%.2fx)", ours16, ratio16[r]);
            printf("\n");
        }
        /* the median of three */
        for (int i = 1; i < ROUNDS; i++)
            for (int j = i; j > 0 && ratio16[j] < ratio16[j - 1]; j--) {
                const double t = ratio16[j];
                ratio16[j] = ratio16[j - 1];
                ratio16[j - 1] = t;
            }
        for (int i = 1; i < ROUNDS; i++)
            for (int j = i; j > 0 && ratio32[j] < ratio32[j - 1]; j--) {
                const double t = ratio32[j];
                ratio32[j] = ratio32[j - 1];
                ratio32[j - 1] = t;
            }
        printf("PyTorch reference (fp32, same model, vocabulary and threads), median round: fp32 %.2fx", ratio32[1]);
        if (precisions == 2)
            printf(", bf16 %.2fx (target >= 3x: %s)", ratio16[1], ratio16[1] >= 3.0 ? "met" : "MISSED");
        printf("\n");
    } else {
        printf("PyTorch reference: not measured (needs python3-torch and dev/bench_torch_step.py)\n");
    }
    return 0;
}
