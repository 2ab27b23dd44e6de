/* The data loader: seeded epoch orders (same seed same order, other seeds other orders, each
 * epoch a permutation, permutations uniform), resuming from a saved position, and ranks
 * sharing every epoch disjointly; over token shards and over GSM8K-style supervised rows. */
#define _XOPEN_SOURCE 700

#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/sft.h"
#include "data_fixtures.h"

enum { S = 4 };

/* A shard whose token i is i, so a row is recognised by its first input: row = inputs[0] / S. */
static token_shard counting_shard(size_t count) {
    token_shard shard = {0};
    shard.tokens = malloc(sizeof(int32_t) * count);
    for (size_t i = 0; i < count; i++) shard.tokens[i] = (int32_t)i;
    shard.count = count;
    return shard;
}

static data_loader make_loader(const token_shard *shard, int batch, uint64_t seed, int rank, int world) {
    data_loader loader;
    loader_options options = {batch, seed, true, rank, world};
    int status = loader_init(&loader, loader_shard_rows(shard, S), &options);
    if (status != PM_OK) fail_msg("%s", pm_last_error());
    return loader;
}

/* The rows of the next `batches` batches, B each, into rows; checks inputs/targets shape. */
static void next_rows(data_loader *loader, int batches, size_t *rows) {
    const int B = loader->options.batch_size;
    int32_t *inputs = malloc(sizeof(int32_t) * (size_t)(B * S)), *targets = malloc(sizeof(int32_t) * (size_t)(B * S));
    for (int k = 0; k < batches; k++) {
        assert_int_equal(loader_next(loader, inputs, targets), PM_OK);
        for (int b = 0; b < B; b++) {
            const int32_t *in = inputs + b * S, *tg = targets + b * S;
            assert_int_equal(in[0] % S, 0);
            for (int j = 0; j < S; j++) {
                assert_int_equal(in[j], in[0] + j);
                assert_int_equal(tg[j], in[j] + 1); /* targets are the inputs shifted by one */
            }
            rows[(size_t)k * (size_t)B + (size_t)b] = (size_t)in[0] / S;
        }
    }
    free(inputs);
    free(targets);
}

static void test_shard_rows(void **state) {
    (void)state;
    token_shard shard = counting_shard(4 * S + 3); /* rows 0..3 whole; the last row needs token 16 */
    loader_rows rows = loader_shard_rows(&shard, S);
    assert_int_equal(rows.row_count, 4);
    token_shard tiny = counting_shard(S); /* S tokens: no row of S + 1 */
    assert_int_equal(loader_shard_rows(&tiny, S).row_count, 0);
    data_loader loader;
    loader_options options = {2, 0, true, 0, 1};
    assert_int_equal(loader_init(&loader, loader_shard_rows(&tiny, S), &options), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "no whole sequence of 4 tokens"));
    options.rank = 1;
    assert_int_equal(loader_init(&loader, rows, &options), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "rank 1 of 1"));
    options.rank = 0;
    options.batch_size = 0;
    assert_int_equal(loader_init(&loader, rows, &options), PM_ERR_ARG);
    free(tiny.tokens);
    free(shard.tokens);
}

static void test_epochs_are_permutations(void **state) {
    (void)state;
    const size_t N = 37;
    token_shard shard = counting_shard(N * S + 1);
    data_loader a = make_loader(&shard, 1, 7, 0, 1), b = make_loader(&shard, 1, 7, 0, 1), c = make_loader(&shard, 1, 8, 0, 1);
    size_t rows_a[3 * 37], rows_b[3 * 37], rows_c[3 * 37];
    next_rows(&a, 3 * (int)N, rows_a);
    next_rows(&b, 3 * (int)N, rows_b);
    next_rows(&c, 3 * (int)N, rows_c);
    assert_memory_equal(rows_a, rows_b, sizeof rows_a);             /* same seed, same order */
    assert_memory_not_equal(rows_a, rows_c, sizeof(size_t) * N);     /* another seed, another */
    assert_memory_not_equal(rows_a, rows_a + N, sizeof(size_t) * N); /* each epoch reshuffled */
    for (int epoch = 0; epoch < 3; epoch++) {
        int seen[37] = {0};
        for (size_t i = 0; i < N; i++) seen[rows_a[(size_t)epoch * N + i]]++;
        for (size_t r = 0; r < N; r++) assert_int_equal(seen[r], 1);
    }
    loader_position at = loader_tell(&a);
    assert_int_equal(at.epoch, 3);
    assert_int_equal(at.index, 0);

    /* without shuffling, every epoch is in row order */
    data_loader ordered;
    loader_options options = {5, 7, false, 0, 1};
    assert_int_equal(loader_init(&ordered, loader_shard_rows(&shard, S), &options), PM_OK);
    size_t rows[2 * 37 + 4];
    next_rows(&ordered, 15, rows);
    for (size_t i = 0; i < 75; i++) assert_int_equal(rows[i], i % N);
    loader_free(&ordered);
    loader_free(&a);
    loader_free(&b);
    loader_free(&c);
    free(shard.tokens);
}

/* Fisher-Yates over 3 rows draws each of the 6 orders about equally often across seeds. */
static void test_uniform_permutations(void **state) {
    (void)state;
    token_shard shard = counting_shard(3 * S + 1);
    int counts[3][3][3] = {{{0}}};
    const int seeds = 6000;
    for (int seed = 0; seed < seeds; seed++) {
        data_loader loader = make_loader(&shard, 3, (uint64_t)seed, 0, 1);
        size_t rows[3];
        next_rows(&loader, 1, rows);
        counts[rows[0]][rows[1]][rows[2]]++;
        loader_free(&loader);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) {
                if (i == j || j == k || i == k) continue;
                /* expected 1000, standard deviation 29: 5 sigma */
                if (abs(counts[i][j][k] - seeds / 6) > 145) fail_msg("order %d%d%d: %d of %d", i, j, k, counts[i][j][k], seeds);
            }
    free(shard.tokens);
}

static void test_resume(void **state) {
    (void)state;
    const size_t N = 23; /* batches of 3 straddle epochs */
    token_shard shard = counting_shard(N * S + 2);
    data_loader first = make_loader(&shard, 3, 99, 0, 1);
    size_t before[7 * 3], after[20 * 3], resumed[20 * 3];
    next_rows(&first, 7, before);
    loader_position saved = loader_tell(&first);
    assert_int_equal(saved.epoch, 0);
    assert_int_equal(saved.index, 21);
    next_rows(&first, 20, after);

    data_loader second = make_loader(&shard, 3, 99, 0, 1);
    assert_int_equal(loader_seek(&second, saved), PM_OK);
    next_rows(&second, 20, resumed);
    assert_memory_equal(after, resumed, sizeof after);
    assert_int_equal(loader_tell(&first).epoch, loader_tell(&second).epoch);
    assert_int_equal(loader_tell(&first).index, loader_tell(&second).index);

    /* a position from other data is refused */
    loader_position bogus = {0, N};
    assert_int_equal(loader_seek(&second, bogus), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "saved with other data"));
    loader_free(&first);
    loader_free(&second);
    free(shard.tokens);
}

/* World 3, batch 2, 23 rows: each rank's rows are its blocks of the global stream; over every
 * epoch the ranks' rows are disjoint and together all rows. */
static void test_ranks_share_epochs(void **state) {
    (void)state;
    enum { N = 23, W = 3, B = 2, STEPS = 40 };
    token_shard shard = counting_shard(N * S + 1);
    size_t rank_rows[W][STEPS * B];
    for (int r = 0; r < W; r++) {
        data_loader loader = make_loader(&shard, B, 5, r, W);
        next_rows(&loader, STEPS, rank_rows[r]);
        loader_position at = loader_tell(&loader);
        assert_int_equal(at.epoch * N + at.index, STEPS * W * B); /* all ranks at one position */
        loader_free(&loader);
    }
    /* the global stream a single loader of batch W·B sees */
    data_loader whole = make_loader(&shard, W * B, 5, 0, 1);
    size_t global[STEPS * W * B];
    next_rows(&whole, STEPS, global);
    loader_free(&whole);
    int seen[STEPS * W * B / N + 1][N];
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < STEPS; k++)
        for (int r = 0; r < W; r++)
            for (int b = 0; b < B; b++) {
                size_t slot = (size_t)k * W * B + (size_t)r * B + (size_t)b;
                size_t row = rank_rows[r][k * B + b];
                assert_int_equal(row, global[slot]);
                seen[slot / N][row]++;
            }
    for (size_t epoch = 0; epoch < STEPS * W * B / N; epoch++) /* whole epochs only */
        for (size_t row = 0; row < N; row++) assert_int_equal(seen[epoch][row], 1);
    free(shard.tokens);
}

/* The example a padded row of 16 shows (every example here fits). */
static int example_of(const sft_tokens *tokens, const int32_t *inputs) {
    for (int e = 0; e < tokens->count; e++) {
        size_t start = tokens->offsets[e], length = tokens->offsets[e + 1] - start - 1;
        if (memcmp(inputs, tokens->tokens + start, sizeof(int32_t) * length) == 0 && inputs[length] == TEST_EOS)
            return e;
    }
    fail_msg("a row that is no example");
    return -1;
}

/* GSM8K-style rows go through the same machinery. */
static void test_sft_rows(void **state) {
    (void)state;
    const char *prompts[] = {"q1", "question two", "q3", "q four", "q5"};
    const char *completions[] = {" a", " bb", " ccc", " dddd", " e"};
    sft_tokens tokens;
    assert_int_equal(sft_tokenize(&tokens, prompts, completions, 5, &test_tokenizer, true), PM_OK);
    sft_rows rows;
    assert_int_equal(sft_rows_init(&rows, &tokens, SFT_PAD, 16), PM_OK);
    loader_options options = {2, 11, true, 0, 1};
    data_loader a, b;
    assert_int_equal(loader_init(&a, loader_sft_rows(&rows), &options), PM_OK);
    assert_int_equal(loader_init(&b, loader_sft_rows(&rows), &options), PM_OK);
    int32_t inputs_a[2 * 16], targets_a[2 * 16], inputs_b[2 * 16], targets_b[2 * 16];
    int seen[5] = {0};
    for (int k = 0; k < 10; k++) {
        assert_int_equal(loader_next(&a, inputs_a, targets_a), PM_OK);
        if (k == 4) assert_int_equal(loader_seek(&b, loader_tell(&a)), PM_OK);
        if (k > 4) {
            assert_int_equal(loader_next(&b, inputs_b, targets_b), PM_OK);
            assert_memory_equal(inputs_a, inputs_b, sizeof inputs_a);
            assert_memory_equal(targets_a, targets_b, sizeof targets_a);
        }
        if (k < 2) /* the first epoch's first four rows: distinct examples */
            for (int r = 0; r < 2; r++) seen[example_of(&tokens, inputs_a + r * 16)]++;
    }
    int total = 0;
    for (int e = 0; e < 5; e++) {
        assert_true(seen[e] <= 1);
        total += seen[e];
    }
    assert_int_equal(total, 4);
    loader_free(&a);
    loader_free(&b);
    sft_rows_free(&rows);
    sft_tokens_free(&tokens);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_rows),
        cmocka_unit_test(test_epochs_are_permutations),
        cmocka_unit_test(test_uniform_permutations),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_ranks_share_epochs),
        cmocka_unit_test(test_sft_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
