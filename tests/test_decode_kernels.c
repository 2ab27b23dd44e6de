/* The decoder's kernels: the row-independent products in fp32 and with bf16 weights and the
 * attention of one token over its cache, against double-precision references; each product
 * row bit for bit the same alone or in a batch, at any offset, on 1 or 2 threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "check.h"
#include "core/bf16.h"
#include "nn/nn.h"

/* Shapes that cover the kernel's paths: K below, at and past a vector of 16 with a partial
 * last vector; N with and without a partial block of 4 outputs; K·N past the threads'
 * threshold (32768 weights). */
static const int shapes[][2] = {{1, 1}, {5, 3}, {16, 4}, {37, 301}, {256, 258}, {512, 72}, {100, 7}};

/* |got − want| within 2·K units of fp32 rounding of Σ|x_k w_k|: the bound of any summation
 * order of K products (K·u), doubled for the fused multiply-adds' and the tree's slack. */
static void check_product(const float *out, const float *in, const float *weight_values, int T, int K, int N,
                          const char *what) {
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double want = 0.0, magnitude = 0.0;
            for (int k = 0; k < K; k++) {
                const double term = (double)in[t * K + k] * weight_values[(size_t)n * K + k];
                want += term;
                magnitude += fabs(term);
            }
            assert_close(out[t * N + n], want, 0.0, 2.0 * K * ldexp(1.0, -24) * magnitude + 1e-30, what,
                         t * N + n);
        }
}

typedef void (*product)(float *out, const float *in, const void *weight, int T, int K, int N);

static void fp32_product(float *out, const float *in, const void *weight, int T, int K, int N) {
    matmul_rows_forward(out, in, weight, T, K, N);
}

static void bf16_product(float *out, const float *in, const void *weight, int T, int K, int N) {
    matmul_rows_forward_bf16(out, in, weight, T, K, N);
}

/* The product against the reference on the weights it reads (for bf16, the rounded ones), and
 * every run of consecutive rows bit for bit the rows computed alone, on 1 and 2 threads. */
static void check_rows(product run, const void *weight, const float *weight_values, int K, int N, uint64_t seed,
                       const char *what) {
    enum { T = 6 };
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    float *in = malloc(sizeof(float) * T * (size_t)K);
    random_normal(&rng, in, T * K, 1.0);
    float *alone = malloc(sizeof(float) * T * (size_t)N), *out = malloc(sizeof(float) * T * (size_t)N);
    for (int t = 0; t < T; t++) run(alone + (size_t)t * N, in + (size_t)t * K, weight, 1, K, N);
    check_product(alone, in, weight_values, T, K, N, what);
    const int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int first = 0; first < T; first++)
            for (int rows = 1; first + rows <= T; rows++) {
                run(out, in + (size_t)first * K, weight, rows, K, N);
                assert_memory_equal(out, alone + (size_t)first * N, sizeof(float) * rows * (size_t)N);
            }
    }
    omp_set_num_threads(saved);
    free(in), free(alone), free(out);
}

static void test_products(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int K = shapes[s][0], N = shapes[s][1];
        const size_t count = (size_t)K * N;
        pm_rng rng;
        pm_rng_init(&rng, 500 + s, 0);
        float *weight = malloc(sizeof(float) * count), *widened = malloc(sizeof(float) * count);
        uint16_t *weight16 = malloc(sizeof(uint16_t) * count);
        random_normal(&rng, weight, (int)count, 0.5);
        bf16_from_floats(weight16, weight, count);
        for (size_t i = 0; i < count; i++) widened[i] = bf16_to_float(weight16[i]);
        check_rows(fp32_product, weight, weight, K, N, 600 + s, "matmul_rows_forward");
        check_rows(bf16_product, weight16, widened, K, N, 700 + s, "matmul_rows_forward_bf16");
        free(weight), free(widened), free(weight16);
    }
}

/* K = 0: an empty sum is 0; T = 0 or N = 0 write nothing. */
static void test_products_empty(void **state) {
    (void)state;
    float out[6] = {1, 1, 1, 1, 1, 1}, in[1] = {0}, weight[1] = {0};
    const uint16_t weight16[1] = {0};
    matmul_rows_forward(out, in, weight, 2, 0, 3);
    for (int i = 0; i < 6; i++) assert_true(out[i] == 0.0f);
    out[0] = 1.0f;
    matmul_rows_forward_bf16(out, in, weight16, 0, 4, 3);
    matmul_rows_forward(out, in, weight, 2, 4, 0);
    assert_true(out[0] == 1.0f);
}

/* Softmax(q·k / √D) · v of the last of n positions, in double, for grouped KV heads. */
static void check_attention(int n, int heads, int kv_heads, int D, uint64_t seed) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    const int KV = kv_heads * D;
    float *q = malloc(sizeof(float) * heads * D), *keys = malloc(sizeof(float) * (size_t)n * KV);
    float *values = malloc(sizeof(float) * (size_t)n * KV), *out = malloc(sizeof(float) * heads * D);
    float *scores = malloc(sizeof(float) * heads * (size_t)n);
    random_normal(&rng, q, heads * D, 2.0);
    random_normal(&rng, keys, n * KV, 1.0);
    random_normal(&rng, values, n * KV, 1.0);
    attention_decode_forward(out, scores, q, keys, values, n, heads, kv_heads, D);
    double *p = malloc(sizeof(double) * (size_t)n);
    for (int h = 0; h < heads; h++) {
        const int g = h / (heads / kv_heads);
        double top = -INFINITY, sum = 0.0;
        for (int j = 0; j < n; j++) {
            double dot = 0.0;
            for (int d = 0; d < D; d++) dot += (double)q[h * D + d] * keys[(size_t)j * KV + g * D + d];
            p[j] = dot / sqrt((double)D);
            top = p[j] > top ? p[j] : top;
        }
        for (int j = 0; j < n; j++) sum += p[j] = exp(p[j] - top);
        for (int d = 0; d < D; d++) {
            double want = 0.0;
            for (int j = 0; j < n; j++) want += p[j] / sum * values[(size_t)j * KV + g * D + d];
            assert_close(out[h * D + d], want, 1e-5, 1e-5, "attention_decode_forward", h * D + d);
        }
    }
    free(q), free(keys), free(values), free(out), free(scores), free(p);
}

static void test_attention_decode(void **state) {
    (void)state;
    /* D below, at and past a vector; one, a few and many positions; grouped and full heads */
    check_attention(1, 2, 2, 8, 801);
    check_attention(9, 4, 2, 20, 802);
    check_attention(128, 8, 8, 32, 803);
    check_attention(33, 6, 1, 48, 804);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_products_empty),
        cmocka_unit_test(test_attention_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
