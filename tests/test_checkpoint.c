/* Checkpoints: round trips (F32, BF16, sharded, optimizer, trainer state, tokenizer), clear
 * errors for broken directories, symbolic links only inside a model directory (or a Hugging
 * Face hub cache's blobs), pruning, replacing directories safely, removing the leftovers of
 * interrupted saves, and crash safety: a save killed at any moment leaves a loadable
 * checkpoint. */
#define _POSIX_C_SOURCE 200809L /* fork, kill, mkdtemp, nanosleep, symlink */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "core/bf16.h"
#include "tiny_model.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

/* ------------------------------------------------------------ helpers */

/* snprintf into a rotating set of buffers, so several paths can be built in one call. */
static const char *fmt(const char *format, ...) {
    static char buffers[8][4200];
    static int next;
    char *out = buffers[next++ % 8];
    va_list args;
    va_start(args, format);
    vsnprintf(out, sizeof buffers[0], format, args);
    va_end(args);
    return out;
}

static char *make_temp_dir(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/probmoe_ckpt_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_tree(const char *dir) { assert_int_equal(system(fmt("rm -rf '%s'", dir)), 0); }

static bool exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    fputs(text, file);
    assert_int_equal(fclose(file), 0);
}

static char *read_text(const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    static char text[1 << 16];
    size_t got = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[got] = '\0';
    return text;
}

/* Entries of dir, "." and ".." excluded. */
static int count_entries(const char *dir) {
    DIR *handle = opendir(dir);
    if (!handle) return -1;
    int count = 0;
    for (struct dirent *entry; (entry = readdir(handle));)
        count += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
    closedir(handle);
    return count;
}

static void assert_error_mentions(const char *a, const char *b) {
    const char *message = pm_last_error();
    if (!strstr(message, a) || (b && !strstr(message, b)))
        fail_msg("the error \"%s\" should mention '%s'%s%s", message, a, b ? " and " : "", b ? b : "");
}

static pm_model_config tiny_config(pm_router_kind kind) { return tiny_model_config(kind); }

/* Random weights without pm_model_init_weights: no OpenMP region in this test, so forking
 * is safe in any order. */
static pm_model *tiny_model(uint64_t seed) {
    pm_model_config cfg = tiny_config(PM_ROUTER_SOFTMOE);
    pm_model *model = pm_model_create(&cfg, 1, 8);
    assert_non_null(model);
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    random_normal(&rng, pm_model_weights(model), (int)pm_model_size(model), 0.5);
    *pm_router_find_value(pm_model_router(model, 0), "tau", NULL) = 0.125f + (float)seed * 1e-3f;
    *pm_router_find_value(pm_model_router(model, 1), "tau", NULL) = 0.375f;
    return model;
}

static pm_model *load(const char *dir, bool allow_unknown) {
    pm_model *model = checkpoint_load_model(dir, 1, 8, allow_unknown);
    if (!model) fail_msg("loading %s: %s", dir, pm_last_error());
    return model;
}

static void assert_same_weights(pm_model *a, pm_model *b) {
    assert_int_equal(pm_model_size(a), pm_model_size(b));
    assert_memory_equal(pm_model_weights(a), pm_model_weights(b), sizeof(float) * pm_model_size(a));
}

/* Writes a model directory by hand: config.json and model.safetensors with the given writer. */
static void write_by_hand(const char *dir, const pm_model_config *cfg, st_writer *writer) {
    assert_int_equal(mkdir(dir, 0755), 0);
    char *config = pm_model_config_to_json(cfg);
    write_text(fmt("%s/config.json", dir), config);
    free(config);
    assert_int_equal(st_writer_write(writer, fmt("%s/model.safetensors", dir)), 0);
    st_writer_free(writer);
}

/* A writer holding model's parameters as F32, except the one named skip (may be NULL). */
static st_writer *writer_with_params(pm_model *model, const char *skip) {
    st_writer *writer = st_writer_create();
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *p = pm_model_param(model, i);
        if (skip && strcmp(p->name, skip) == 0) continue;
        assert_int_equal(st_writer_add(writer, p->name, ST_F32, p->shape, p->rank, pm_model_weights(model) + p->offset), 0);
    }
    return writer;
}

/* ------------------------------------------------------------ crash safety */

/* ~56 MB of F32 weights: a sharded save takes long enough to be killed in the middle. */
static pm_model_config big_config(void) {
    pm_model_config cfg = tiny_config(PM_ROUTER_TOPK);
    cfg.vocab_size = 512;
    cfg.hidden_size = 256;
    cfg.intermediate_size = 512;
    cfg.num_layers = 4;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 4;
    cfg.num_experts = 8;
    cfg.max_position_embeddings = 16;
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, 8, 2);
    return cfg;
}

/* Every weight tells which save wrote it: generation·1000 + (i mod 997)/4, exact in F32. */
static void fill_generation(pm_model *model, int generation) {
    float *w = pm_model_weights(model);
    for (size_t i = 0; i < pm_model_size(model); i++) w[i] = (float)generation * 1000.0f + (float)(i % 997) * 0.25f;
}

/* The generation all weights come from, or -1 if they are mixed. */
static int generation_of(pm_model *model) {
    const float *w = pm_model_weights(model);
    int generation = (int)lroundf(w[0] / 1000.0f);
    for (size_t i = 0; i < pm_model_size(model); i++)
        if (w[i] != (float)generation * 1000.0f + (float)(i % 997) * 0.25f) return -1;
    return generation;
}

static pid_t spawn_save(const char *dir, int generation) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pm_model_config cfg = big_config();
        pm_model *model = pm_model_create(&cfg, 1, 1);
        if (!model) _exit(2);
        fill_generation(model, generation);
        checkpoint_options options = {false, 1 << 20}; /* ~60 shards, each fsynced */
        _exit(checkpoint_save(model, NULL, dir, &options) == 0 ? 0 : 1);
    }
    return pid;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

typedef enum { KILL_AFTER_MS, KILL_WHEN_EXISTS, KILL_WHEN_FILES, NO_KILL } kill_rule;

/* Waits until rule says so (or the child is done), kills the child, reaps it; true if it
 * finished its save. */
static bool run_and_kill(pid_t pid, kill_rule rule, int ms, const char *watch, int files) {
    int status;
    if (rule == KILL_AFTER_MS) sleep_ms(ms);
    while (rule == KILL_WHEN_EXISTS || rule == KILL_WHEN_FILES) {
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (rule == KILL_WHEN_EXISTS ? exists(watch) : count_entries(watch) >= files) break;
    }
    if (rule != NO_KILL) kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) fail_msg("the saving child failed (%d)", WEXITSTATUS(status));
    return WIFEXITED(status);
}

/* Runs first, before anything else in this process could start OpenMP threads (libgomp's
 * state does not survive fork); the saves happen in children. The kills land before a save
 * starts, while it writes shards, and while it removes the previous copy. The moment between
 * its two renames is too short to hit by polling: test_loads_from_old_after_crash builds
 * that state by hand. */
static void test_crash_safety(void **state) {
    (void)state;
    const char *parent = make_temp_dir(), *dir = fmt("%s/ckpt", parent);
    char dir_copy[256];
    snprintf(dir_copy, sizeof dir_copy, "%s", dir);
    dir = dir_copy;
    assert_true(run_and_kill(spawn_save(dir, 1), NO_KILL, 0, NULL, 0));
    struct {
        kill_rule rule;
        int ms;
        const char *watch; /* "tmp" or "old": the child's sibling to watch */
        int files;
    } trials[] = {{KILL_AFTER_MS, 1, NULL, 0},  {KILL_AFTER_MS, 5, NULL, 0},   {KILL_AFTER_MS, 20, NULL, 0},
                  {KILL_AFTER_MS, 80, NULL, 0}, {KILL_WHEN_EXISTS, 0, "tmp", 0}, {KILL_WHEN_FILES, 0, "tmp", 10},
                  {KILL_WHEN_FILES, 0, "tmp", 40}, {KILL_WHEN_EXISTS, 0, "old", 0}, {KILL_WHEN_EXISTS, 0, "old", 0},
                  {NO_KILL, 0, NULL, 0}};
    int latest = 1;
    for (size_t t = 0; t < sizeof trials / sizeof trials[0]; t++) {
        int generation = (int)t + 2;
        pid_t pid = spawn_save(dir, generation);
        const char *watch = trials[t].watch ? fmt("%s.%s-%ld", dir, trials[t].watch, (long)pid) : NULL;
        bool finished = run_and_kill(pid, trials[t].rule, trials[t].ms, watch, trials[t].files);
        pm_model *model = load(dir, false);
        int found = generation_of(model);
        pm_model_free(model);
        if (found != latest && found != generation)
            fail_msg("trial %zu: weights of generation %d, expected %d or %d", t, found, latest, generation);
        if (finished) assert_int_equal(found, generation);
        latest = found;
    }
    assert_int_equal(latest, (int)(sizeof trials / sizeof trials[0]) + 1);
    /* the last, complete save swept away what the killed ones left */
    assert_int_equal(count_entries(parent), 1);
    remove_tree(parent);
}

/* The state after a crash between a save's two renames: DIR missing, DIR.old-<pid> complete,
 * DIR.tmp-<pid> partial. Loading uses the old copy; the next save cleans everything. */
static void test_loads_from_old_after_crash(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/ckpt", parent);
    pm_model *first = tiny_model(1), *second = tiny_model(2);
    assert_int_equal(checkpoint_save(first, NULL, dir, NULL), 0);
    pid_t dead = fork(); /* a process id that no longer runs */
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_int_equal(rename(dir, fmt("%s.old-%ld", dir, (long)dead)), 0);
    assert_int_equal(mkdir(fmt("%s.tmp-%ld", dir, (long)dead), 0755), 0);
    write_text(fmt("%s.tmp-%ld/config.json", dir, (long)dead), "{");
    pm_model *loaded = load(dir, false);
    assert_same_weights(loaded, first);
    pm_model_free(loaded);
    assert_int_equal(checkpoint_save(second, NULL, dir, NULL), 0);
    assert_int_equal(count_entries(parent), 1);
    loaded = load(dir, false);
    assert_same_weights(loaded, second);
    pm_model_free(loaded);
    pm_model_free(first);
    pm_model_free(second);
    remove_tree(parent);
}

/* ------------------------------------------------------------ round trips */

static void test_round_trip_f32(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/run/ckpt/", parent); /* missing parents; a trailing slash */
    pm_model *model = tiny_model(3);
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    assert_true(exists(fmt("%s/run/ckpt/config.json", parent)));
    assert_true(exists(fmt("%s/run/ckpt/model.safetensors", parent)));
    assert_int_equal(count_entries(fmt("%s/run", parent)), 1);
    assert_int_equal(count_entries(fmt("%s/run/ckpt", parent)), 2);
    pm_model *loaded = load(dir, false);
    assert_same_weights(loaded, model);
    for (int l = 0; l < 2; l++)
        assert_true(*pm_router_find_value(pm_model_router(loaded, l), "tau", NULL) == *pm_router_find_value(pm_model_router(model, l), "tau", NULL));
    const pm_model_config *a = pm_model_get_config(model), *b = pm_model_get_config(loaded);
    assert_int_equal(b->router.kind, PM_ROUTER_SOFTMOE);
    assert_int_equal(b->num_kv_heads, a->num_kv_heads);
    assert_int_equal(b->intermediate_size, a->intermediate_size);
    pm_model_free(loaded);
    /* the public pair, replacing the directory */
    pm_model *other = tiny_model(4);
    assert_int_equal(pm_model_save(other, dir), 0);
    loaded = pm_model_load(dir, 1, 8);
    assert_non_null(loaded);
    assert_same_weights(loaded, other);
    assert_int_equal(count_entries(fmt("%s/run", parent)), 1);
    pm_model_free(loaded);
    pm_model_free(other);
    pm_model_free(model);
    remove_tree(parent);
}

static void test_round_trip_bf16(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/ckpt", parent);
    pm_model *model = tiny_model(5);
    checkpoint_options options = {true, 0};
    assert_int_equal(checkpoint_save(model, NULL, dir, &options), 0);
    st_file *file;
    assert_int_equal(st_open(&file, fmt("%s/model.safetensors", dir)), 0);
    assert_int_equal(st_find(file, "lm_head.weight")->dtype, ST_BF16);
    st_close(file);
    pm_model *loaded = load(dir, false);
    const float *want = pm_model_weights(model), *got = pm_model_weights(loaded);
    for (size_t i = 0; i < pm_model_size(model); i++) {
        uint32_t bits;
        memcpy(&bits, &got[i], sizeof bits);
        assert_int_equal(bits & 0xFFFFu, 0); /* a bfloat16 value */
        assert_close(got[i], want[i], 1.0 / 256, 0, "bf16 weight", (int)i);
    }
    pm_model_free(loaded);
    pm_model_free(model);
    remove_tree(parent);
}

/* Save back in each family's layout: BF16 shards load as the model rounded to bf16, with the
 * family's config and tensor names (no lm_head when tied), and give the same logits. */
static void test_families_save_back(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    /* the fourth: qwen2_moe with dense layers (0 and 2) */
    const char *names[] = {"model.layers.1.mlp.experts.5.down_proj.weight",
                           "model.layers.0.mlp.shared_expert_gate.weight",
                           "model.layers.1.block_sparse_moe.experts.2.w3.weight", "model.layers.2.mlp.down_proj.weight"};
    const char *fields[] = {"\"OlmoeForCausalLM\"", "\"Qwen2MoeForCausalLM\"", "\"num_local_experts\"",
                            "\"decoder_sparse_step\":\t2"};
    for (int c = 0; c < 4; c++) {
        const pm_arch arch = c < 3 ? (pm_arch)c : PM_ARCH_QWEN2_MOE;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s%d", parent, pm_arch_name(arch), c);
        pm_model_config cfg = c < 3 ? tiny_family_config(arch, PM_ROUTER_TOPK) : tiny_dense_config(PM_ROUTER_TOPK);
        pm_model *model = pm_model_create(&cfg, 1, 8);
        assert_non_null(model);
        pm_rng rng;
        pm_rng_init(&rng, 40 + (uint64_t)c, 0);
        random_normal(&rng, pm_model_weights(model), (int)pm_model_size(model), 0.5);
        float *weights = pm_model_weights(model); /* bf16 values: the file then holds them exactly */
        for (size_t i = 0; i < pm_model_size(model); i++) weights[i] = bf16_to_float(bf16_from_float(weights[i]));
        const checkpoint_options options = {true, 4 << 10};
        assert_int_equal(checkpoint_save(model, NULL, dir, &options), 0);
        assert_false(exists(fmt("%s/model.safetensors", dir)));
        assert_non_null(strstr(read_text(fmt("%s/config.json", dir)), fields[c]));
        assert_non_null(strstr(read_text(fmt("%s/model.safetensors.index.json", dir)), names[c]));
        assert_int_equal(strstr(read_text(fmt("%s/model.safetensors.index.json", dir)), "lm_head") == NULL,
                         cfg.tie_word_embeddings);
        pm_model *loaded = load(dir, false);
        assert_int_equal(pm_model_get_config(loaded)->arch, arch);
        assert_same_weights(loaded, model);
        const int32_t tokens[8] = {3, 1, 4, 1, 5, 9, 2, 6};
        assert_int_equal(pm_model_forward(model, tokens, NULL, 1, 8, false, 0, 0, NULL), 0);
        assert_int_equal(pm_model_forward(loaded, tokens, NULL, 1, 8, false, 0, 0, NULL), 0);
        assert_memory_equal(pm_model_logits(loaded), pm_model_logits(model), sizeof(float) * 8 * cfg.vocab_size);
        pm_model_free(loaded);
        pm_model_free(model);
    }
    remove_tree(parent);
}

/* Weights saved untied, under a config.json that says tied: refused, naming both (Hugging Face
 * would silently replace the trained lm_head with the embedding). */
static void test_tied_config_with_lm_head_refused(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/ckpt", parent);
    pm_model_config cfg = tiny_family_config(PM_ARCH_QWEN2_MOE, PM_ROUTER_TOPK);
    cfg.tie_word_embeddings = false;
    pm_model *model = pm_model_create(&cfg, 1, 8);
    assert_non_null(model);
    pm_model_init_weights(model, 3);
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    pm_model_free(model);
    cfg.tie_word_embeddings = true;
    char *json = pm_model_config_to_json(&cfg);
    write_text(fmt("%s/config.json", dir), json);
    free(json);
    assert_null(checkpoint_load_model(dir, 1, 8, false));
    assert_non_null(strstr(pm_last_error(), "lm_head.weight"));
    assert_non_null(strstr(pm_last_error(), "tie_word_embeddings to false"));
    pm_model *skipped = checkpoint_load_model(dir, 1, 8, true);
    assert_non_null(skipped);
    pm_model_free(skipped);
    remove_tree(parent);
}

static void test_sharded(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/ckpt", parent);
    pm_model *model = tiny_model(6);
    const size_t limit = 16 << 10;
    checkpoint_options options = {false, limit};
    assert_int_equal(checkpoint_save(model, NULL, dir, &options), 0);
    assert_false(exists(fmt("%s/model.safetensors", dir)));
    cJSON *index = cJSON_Parse(read_text(fmt("%s/model.safetensors.index.json", dir)));
    assert_non_null(index);
    const cJSON *total = cJSON_GetObjectItem(cJSON_GetObjectItem(index, "metadata"), "total_size");
    assert_true(cJSON_IsNumber(total) && total->valuedouble == 4.0 * (double)pm_model_size(model));
    const cJSON *map = cJSON_GetObjectItem(index, "weight_map");
    assert_int_equal(cJSON_GetArraySize(map), pm_model_num_params(model));
    int shards = 0;
    for (const cJSON *entry = map->child; entry; entry = entry->next)
        sscanf(entry->valuestring, "model-%*d-of-%d.safetensors", &shards);
    assert_true(shards > 3);
    assert_int_equal(count_entries(dir), shards + 2); /* + config.json and the index */
    for (int s = 1; s <= shards; s++) {
        st_file *file;
        assert_int_equal(st_open(&file, fmt("%s/model-%05d-of-%05d.safetensors", dir, s, shards)), 0);
        size_t bytes = 0;
        for (int i = 0; i < st_count(file); i++) {
            bytes += st_tensor_at(file, i)->num_bytes;
            const cJSON *mapped = cJSON_GetObjectItem(map, st_tensor_at(file, i)->name);
            assert_string_equal(mapped->valuestring, fmt("model-%05d-of-%05d.safetensors", s, shards));
        }
        assert_true(bytes <= limit || st_count(file) == 1);
        st_close(file);
    }
    cJSON_Delete(index);
    pm_model *loaded = load(dir, false);
    assert_same_weights(loaded, model);
    assert_true(*pm_router_find_value(pm_model_router(loaded, 1), "tau", NULL) == 0.375f);
    pm_model_free(loaded);
    /* a single-file save over a sharded one leaves no stale shards behind */
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    assert_int_equal(count_entries(dir), 2);
    pm_model_free(model);
    remove_tree(parent);
}

static void test_training_state(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/checkpoint-000100", parent);
    pm_model *model = tiny_model(7);
    const size_t n = pm_model_size(model);
    float *m = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n), *m2 = malloc(sizeof(float) * n),
          *v2 = malloc(sizeof(float) * n);
    pm_rng rng;
    pm_rng_init(&rng, 8, 0);
    random_normal(&rng, m, (int)n, 1e-3);
    for (size_t i = 0; i < n; i++) v[i] = m[i] * m[i];
    const char *trainer_state = "{\"step\": 100, \"note\": \"verbatim: caf\xc3\xa9\"}\n";
    checkpoint_extras extras = {m, v, 100, trainer_state, NULL, NULL};
    checkpoint_options bf16 = {true, 0}; /* the optimizer state stays F32 anyway */
    assert_int_equal(checkpoint_save(model, &extras, dir, &bf16), 0);
    long step = 0;
    assert_int_equal(checkpoint_load_optimizer(dir, m2, v2, n, &step), 0);
    assert_int_equal(step, 100);
    assert_memory_equal(m2, m, sizeof(float) * n);
    assert_memory_equal(v2, v, sizeof(float) * n);
    char *text = checkpoint_load_trainer_state(dir);
    assert_non_null(text);
    assert_string_equal(text, trainer_state);
    free(text);
    assert_true(checkpoint_load_optimizer(dir, m2, v2, n - 1, &step) < 0);
    assert_error_mentions("adamw.m", "optimizer.safetensors");
    /* a model-only checkpoint has neither */
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    assert_true(checkpoint_load_optimizer(dir, m2, v2, n, &step) < 0);
    assert_error_mentions(dir, "optimizer.safetensors");
    assert_null(checkpoint_load_trainer_state(dir));
    assert_error_mentions(dir, "trainer_state.json");
    extras.adam_v = NULL;
    assert_true(checkpoint_save(model, &extras, dir, NULL) < 0);
    /* a fine-tuned model's chat format travels in config.json's "probmoe" object; the model
     * loads as before, and a model saved without one records none */
    char name[16] = "";
    assert_int_equal(checkpoint_read_chat_format(dir, name, sizeof name), 0);
    checkpoint_extras chat = {.chat_format = "tulu"};
    assert_int_equal(checkpoint_save(model, &chat, dir, NULL), 0);
    assert_int_equal(checkpoint_read_chat_format(dir, name, sizeof name), 1);
    assert_string_equal(name, "tulu");
    assert_true(checkpoint_read_chat_format(dir, name, 4) < 0); /* "tulu" and its NUL need 5 */
    pm_model *back = checkpoint_load_model(dir, 1, 7, false);
    assert_non_null(back);
    assert_int_equal(pm_model_get_config(back)->router.kind, pm_model_get_config(model)->router.kind);
    pm_model_free(back);
    free(m), free(v), free(m2), free(v2);
    pm_model_free(model);
    remove_tree(parent);
}

static void test_tokenizer_files(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256], parent_copy[64];
    snprintf(parent_copy, sizeof parent_copy, "%s", parent);
    parent = parent_copy;
    snprintf(dir, sizeof dir, "%s/ckpt", parent);
    pm_model *model = tiny_model(9);
    write_text(fmt("%s/my_tokenizer.json", parent), "{\"model\": {\"type\": \"BPE\"}}");
    checkpoint_extras extras = {NULL, NULL, 0, NULL, fmt("%s/my_tokenizer.json", parent), NULL};
    assert_int_equal(checkpoint_save(model, &extras, dir, NULL), 0);
    assert_string_equal(read_text(fmt("%s/tokenizer.json", dir)), "{\"model\": {\"type\": \"BPE\"}}");
    assert_int_equal(mkdir(fmt("%s/gpt2", parent), 0755), 0);
    write_text(fmt("%s/gpt2/encoder.json", parent), "{\"!\": 0}");
    write_text(fmt("%s/gpt2/vocab.bpe", parent), "#version: 0.2\n");
    extras.tokenizer_path = fmt("%s/gpt2", parent);
    assert_int_equal(checkpoint_save(model, &extras, dir, NULL), 0);
    assert_string_equal(read_text(fmt("%s/encoder.json", dir)), "{\"!\": 0}");
    assert_string_equal(read_text(fmt("%s/vocab.bpe", dir)), "#version: 0.2\n");
    assert_false(exists(fmt("%s/tokenizer.json", dir)));
    /* a directory with tokenizer.json: only that */
    write_text(fmt("%s/gpt2/tokenizer.json", parent), "{}");
    assert_int_equal(checkpoint_save(model, &extras, dir, NULL), 0);
    assert_string_equal(read_text(fmt("%s/tokenizer.json", dir)), "{}");
    assert_false(exists(fmt("%s/vocab.bpe", dir)));
    /* nothing usable: an error, and the previous checkpoint untouched */
    assert_int_equal(mkdir(fmt("%s/empty", parent), 0755), 0);
    extras.tokenizer_path = fmt("%s/empty", parent);
    assert_true(checkpoint_save(model, &extras, dir, NULL) < 0);
    assert_error_mentions("empty", "tokenizer.json");
    assert_string_equal(read_text(fmt("%s/tokenizer.json", dir)), "{}");
    assert_int_equal(count_entries(parent), 4); /* ckpt, my_tokenizer.json, gpt2, empty: no tmp */
    pm_model_free(model);
    remove_tree(parent);
}

/* A hand-written directory with F16 weights (as some converters produce) loads exactly. */
static uint16_t to_f16(float x) { /* exact for the values used: 0 or ±m/16, |m| <= 32 */
    if (x == 0.0f) return 0;
    int e;
    float f = frexpf(fabsf(x), &e); /* |x| = f·2^e, f in [0.5, 1) */
    uint16_t bits = (uint16_t)((e - 1 + 15) << 10 | (int)lroundf((2 * f - 1) * 1024));
    return x < 0 ? (uint16_t)(bits | 0x8000u) : bits;
}

static void test_f16_by_hand(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/f16", parent);
    pm_model *model = tiny_model(10);
    float *w = pm_model_weights(model);
    uint16_t *half = malloc(sizeof(uint16_t) * pm_model_size(model));
    for (size_t i = 0; i < pm_model_size(model); i++) {
        w[i] = (float)((int)(i % 65) - 32) / 16.0f;
        half[i] = to_f16(w[i]);
    }
    st_writer *writer = st_writer_create();
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *p = pm_model_param(model, i);
        assert_int_equal(st_writer_add(writer, p->name, ST_F16, p->shape, p->rank, half + p->offset), 0);
    }
    write_by_hand(dir, pm_model_get_config(model), writer);
    pm_model *loaded = load(dir, false);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);
    free(half);
    pm_model_free(model);
    remove_tree(parent);
}

/* ------------------------------------------------------------ errors */

static void test_broken_single_file(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char base[64];
    snprintf(base, sizeof base, "%s", parent);
    pm_model *model = tiny_model(11);
    const pm_model_config *cfg = pm_model_get_config(model);

    write_by_hand(fmt("%s/missing", base), cfg, writer_with_params(model, "model.norm.weight"));
    assert_null(checkpoint_load_model(fmt("%s/missing", base), 1, 8, true));
    assert_error_mentions("model.norm.weight", "missing/model.safetensors");

    st_writer *writer = writer_with_params(model, NULL);
    int64_t shape[1] = {4};
    assert_int_equal(st_writer_add(writer, "model.extra.weight", ST_F32, shape, 1, pm_model_weights(model)), 0);
    write_by_hand(fmt("%s/unknown", base), cfg, writer);
    assert_null(checkpoint_load_model(fmt("%s/unknown", base), 1, 8, false));
    assert_error_mentions("model.extra.weight", "unknown/model.safetensors");
    pm_model *loaded = load(fmt("%s/unknown", base), true);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);

    /* k_proj is (16, 32): stored transposed */
    writer = writer_with_params(model, "model.layers.1.self_attn.k_proj.weight");
    const pm_param *k = pm_model_find_param(model, "model.layers.1.self_attn.k_proj.weight");
    int64_t transposed[2] = {k->shape[1], k->shape[0]};
    assert_int_equal(st_writer_add(writer, k->name, ST_F32, transposed, 2, pm_model_weights(model) + k->offset), 0);
    write_by_hand(fmt("%s/shape", base), cfg, writer);
    assert_null(checkpoint_load_model(fmt("%s/shape", base), 1, 8, false));
    assert_error_mentions("model.layers.1.self_attn.k_proj.weight", "shape/model.safetensors");

    assert_int_equal(mkdir(fmt("%s/empty", base), 0755), 0);
    char *config = pm_model_config_to_json(cfg);
    write_text(fmt("%s/empty/config.json", base), config);
    free(config);
    assert_null(checkpoint_load_model(fmt("%s/empty", base), 1, 8, false));
    assert_error_mentions("empty", "model.safetensors.index.json");
    assert_null(checkpoint_load_model(fmt("%s/nowhere", base), 1, 8, false));
    assert_error_mentions("nowhere", "does not exist");
    pm_model_free(model);
    remove_tree(base);
}

/* Rewrites the index of dir with edit applied to its weight_map, loads, checks the error. */
static void expect_index_error(const char *dir, const char *original, void (*edit)(cJSON *map), const char *a,
                               const char *b) {
    cJSON *index = cJSON_Parse(original);
    edit(cJSON_GetObjectItem(index, "weight_map"));
    char *text = cJSON_Print(index);
    write_text(fmt("%s/model.safetensors.index.json", dir), text);
    free(text);
    cJSON_Delete(index);
    assert_null(checkpoint_load_model(dir, 1, 8, false));
    assert_error_mentions(a, b);
}

static void duplicate_entry(cJSON *map) { cJSON_AddStringToObject(map, "model.norm.weight", map->child->valuestring); }
static void drop_entry(cJSON *map) { cJSON_DeleteItemFromObject(map, "model.norm.weight"); }
static void unknown_entry(cJSON *map) { cJSON_AddStringToObject(map, "model.extra.weight", map->child->valuestring); }
static void escaping_entry(cJSON *map) {
    cJSON_ReplaceItemInObject(map, "model.norm.weight", cJSON_CreateString("../model-00001-of-00009.safetensors"));
}
static void moved_entry(cJSON *map) { /* the first tensor claimed to be in the last file */
    cJSON *last = map->child;
    while (last->next) last = last->next;
    cJSON_ReplaceItemInObject(map, map->child->string, cJSON_CreateString(last->valuestring));
}

static void test_broken_index(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s/sharded", parent);
    pm_model *model = tiny_model(12);
    checkpoint_options options = {false, 16 << 10};
    assert_int_equal(checkpoint_save(model, NULL, dir, &options), 0);
    const char *index_path = fmt("%s/model.safetensors.index.json", dir);
    char *original = strdup(read_text(index_path));
    expect_index_error(dir, original, duplicate_entry, "model.norm.weight", "twice");
    expect_index_error(dir, original, drop_entry, "model.norm.weight", "index.json");
    expect_index_error(dir, original, unknown_entry, "model.extra.weight", "index.json");
    expect_index_error(dir, original, escaping_entry, "model.norm.weight", "same directory");
    expect_index_error(dir, original, moved_entry, "model.embed_tokens.weight", "index");
    write_text(index_path, "{\"weight_map\": [");
    assert_null(checkpoint_load_model(dir, 1, 8, false));
    assert_error_mentions(index_path, "weight_map");
    write_text(index_path, original);
    pm_model *loaded = load(dir, false);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);
    /* allow_unknown accepts an extra listed name */
    expect_index_error(dir, original, unknown_entry, "model.extra.weight", NULL);
    loaded = load(dir, true);
    pm_model_free(loaded);
    write_text(index_path, original);
    const char *shard = strstr(original, "model-00002-of-");
    assert_non_null(shard);
    char shard_name[64];
    snprintf(shard_name, sizeof shard_name, "%.32s", shard);
    assert_int_equal(unlink(fmt("%s/%s", dir, shard_name)), 0);
    assert_null(checkpoint_load_model(dir, 1, 8, false));
    assert_error_mentions(shard_name, dir);
    free(original);
    pm_model_free(model);
    remove_tree(parent);
}

/* ------------------------------------------------------------ symbolic links */

/* The name of dir's first shard (model-00001-of-N.safetensors). */
static const char *first_shard(const char *dir) {
    static char name[256];
    DIR *handle = opendir(dir);
    assert_non_null(handle);
    name[0] = '\0';
    for (struct dirent *entry; (entry = readdir(handle));)
        if (strncmp(entry->d_name, "model-00001-of-", 15) == 0) snprintf(name, sizeof name, "%s", entry->d_name);
    closedir(handle);
    assert_true(name[0]);
    return name;
}

/* Moves dir/name to moved_to and puts a symbolic link to target (its text) in its place. */
static void move_and_link(const char *dir, const char *name, const char *moved_to, const char *target) {
    assert_int_equal(rename(fmt("%s/%s", dir, name), moved_to), 0);
    assert_int_equal(symlink(target, fmt("%s/%s", dir, name)), 0);
}

static void expect_link_refused(const char *dir, const char *link_name, const char *says) {
    assert_null(checkpoint_load_model(dir, 1, 8, false));
    assert_error_mentions(link_name, says);
}

/* A model directory's files may be symbolic links only into the directory itself, or in a
 * Hugging Face hub cache (<repo>/snapshots/<revision>/) into that repository's blobs/. */
static void test_symbolic_links(void **state) {
    (void)state;
    char base[64];
    snprintf(base, sizeof base, "%s", make_temp_dir());
    pm_model *model = tiny_model(14);
    checkpoint_options sharded = {false, 16 << 10};

    /* a shard linked to a file in a subdirectory of the model directory: read */
    char inside[128], outside[128], single[128], secret[128], config_out[128], repo[160], snapshot[192], other[160],
        fake[128];
    snprintf(inside, sizeof inside, "%s/inside", base);
    assert_int_equal(checkpoint_save(model, NULL, inside, &sharded), 0);
    char shard[256];
    snprintf(shard, sizeof shard, "%s", first_shard(inside));
    assert_int_equal(mkdir(fmt("%s/store", inside), 0755), 0);
    move_and_link(inside, shard, fmt("%s/store/%s", inside, shard), fmt("store/%s", shard));
    pm_model *loaded = load(inside, false);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);

    /* a shard linked to a good shard outside: refused, though it would load */
    snprintf(outside, sizeof outside, "%s/outside", base);
    assert_int_equal(checkpoint_save(model, NULL, outside, &sharded), 0);
    move_and_link(outside, shard, fmt("%s/elsewhere.safetensors", base), "../elsewhere.safetensors");
    expect_link_refused(outside, shard, "outside the model directory");
    assert_error_mentions("elsewhere.safetensors", "symbolic link");

    /* model.safetensors linked to a file that is no model at all: refused without a byte of it */
    snprintf(single, sizeof single, "%s/single", base);
    snprintf(secret, sizeof secret, "%s/secret.txt", base);
    write_text(secret, "TOKEN=Zq9x7Wv3Kp4Yh8\n");
    assert_int_equal(checkpoint_save(model, NULL, single, NULL), 0);
    assert_int_equal(unlink(fmt("%s/model.safetensors", single)), 0);
    assert_int_equal(symlink(secret, fmt("%s/model.safetensors", single)), 0);
    expect_link_refused(single, "model.safetensors", "outside the model directory");
    if (strstr(pm_last_error(), "TOKEN") || strstr(pm_last_error(), "Zq9x"))
        fail_msg("the error \"%s\" quotes the link's target", pm_last_error());
    /* ... and linked inside: read */
    assert_int_equal(unlink(fmt("%s/model.safetensors", single)), 0);
    assert_int_equal(checkpoint_save(model, NULL, fmt("%s/plain", base), NULL), 0);
    assert_int_equal(rename(fmt("%s/plain/model.safetensors", base), fmt("%s/weights.bin", single)), 0);
    assert_int_equal(symlink("weights.bin", fmt("%s/model.safetensors", single)), 0);
    loaded = load(single, false);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);

    /* config.json and the index are checked the same way; a link to nothing is named */
    snprintf(config_out, sizeof config_out, "%s/config_out", base);
    assert_int_equal(checkpoint_save(model, NULL, config_out, NULL), 0);
    move_and_link(config_out, "config.json", fmt("%s/config.json", base), "../config.json");
    expect_link_refused(config_out, "config.json", "outside the model directory");
    move_and_link(outside, "model.safetensors.index.json", fmt("%s/index.json", base), "../index.json");
    expect_link_refused(outside, "model.safetensors.index.json", "outside the model directory");
    assert_int_equal(unlink(fmt("%s/config.json", config_out)), 0);
    assert_int_equal(symlink("no-such-file", fmt("%s/config.json", config_out)), 0);
    expect_link_refused(config_out, "config.json", "leads nowhere");

    /* the hub cache: snapshots/<revision>/ files link to ../../blobs/<hash> */
    snprintf(repo, sizeof repo, "%s/hub/models--probmoe--tiny", base);
    assert_int_equal(system(fmt("mkdir -p '%s/blobs' '%s/snapshots/0123abcd' '%s/refs'", repo, repo, repo)), 0);
    snprintf(snapshot, sizeof snapshot, "%s/snapshots/0123abcd", repo);
    assert_int_equal(checkpoint_save(model, NULL, fmt("%s/hub_source", base), &sharded), 0);
    DIR *handle = opendir(fmt("%s/hub_source", base));
    assert_non_null(handle);
    int blob = 0;
    for (struct dirent *entry; (entry = readdir(handle));) {
        if (entry->d_name[0] == '.') continue;
        assert_int_equal(rename(fmt("%s/hub_source/%s", base, entry->d_name), fmt("%s/blobs/%08x", repo, blob)), 0);
        assert_int_equal(symlink(fmt("../../blobs/%08x", blob), fmt("%s/%s", snapshot, entry->d_name)), 0);
        blob++;
    }
    closedir(handle);
    loaded = load(snapshot, false);
    assert_same_weights(loaded, model);
    pm_model_free(loaded);
    /* ... but not into another repository's blobs */
    snprintf(other, sizeof other, "%s/hub/models--someone--else/blobs", base);
    assert_int_equal(system(fmt("mkdir -p '%s'", other)), 0);
    assert_int_equal(system(fmt("cp -L '%s/%s' '%s/ffff'", snapshot, shard, other)), 0); /* the blob's content */
    assert_int_equal(unlink(fmt("%s/%s", snapshot, shard)), 0);
    assert_int_equal(symlink("../../../models--someone--else/blobs/ffff", fmt("%s/%s", snapshot, shard)), 0);
    expect_link_refused(snapshot, shard, "outside the model directory");
    /* ... nor from a directory that is not a snapshot */
    snprintf(fake, sizeof fake, "%s/fake/revision", base);
    assert_int_equal(system(fmt("mkdir -p '%s' '%s/blobs'", fake, base)), 0);
    assert_int_equal(checkpoint_save(model, NULL, fmt("%s/fake_source", base), NULL), 0);
    assert_int_equal(rename(fmt("%s/fake_source/config.json", base), fmt("%s/config.json", fake)), 0);
    assert_int_equal(rename(fmt("%s/fake_source/model.safetensors", base), fmt("%s/blobs/w", base)), 0);
    assert_int_equal(symlink("../../blobs/w", fmt("%s/model.safetensors", fake)), 0);
    expect_link_refused(fake, "model.safetensors", "outside the model directory");

    pm_model_free(model);
    remove_tree(base);
}

/* ------------------------------------------------------------ directories */

static void test_replacing_directories(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char dir[256], base[64];
    snprintf(base, sizeof base, "%s", parent);
    snprintf(dir, sizeof dir, "%s/model", base);
    pm_model *model = tiny_model(13);
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    /* files that a save does not write survive it */
    write_text(fmt("%s/metrics.jsonl", dir), "{\"step\": 1}\n");
    assert_int_equal(checkpoint_save(model, NULL, dir, NULL), 0);
    assert_string_equal(read_text(fmt("%s/metrics.jsonl", dir)), "{\"step\": 1}\n");
    /* a subdirectory would be deleted with the directory: refused, nothing changed */
    assert_int_equal(mkdir(fmt("%s/checkpoint-5", dir), 0755), 0);
    assert_true(checkpoint_save(model, NULL, dir, NULL) < 0);
    assert_error_mentions(dir, "checkpoint-5");
    assert_true(exists(fmt("%s/checkpoint-5", dir)));
    assert_int_equal(count_entries(base), 1);
    /* a symbolic link, or a file, is not replaced */
    assert_int_equal(symlink(dir, fmt("%s/link", base)), 0);
    assert_true(checkpoint_save(model, NULL, fmt("%s/link", base), NULL) < 0);
    assert_error_mentions("link", "symbolic link");
    write_text(fmt("%s/file", base), "x");
    assert_true(checkpoint_save(model, NULL, fmt("%s/file", base), NULL) < 0);
    assert_error_mentions("file", "not a directory");
    assert_true(checkpoint_save(model, NULL, ".", NULL) < 0);
    pm_model_free(model);
    remove_tree(base);
}

static void test_prune(void **state) {
    (void)state;
    const char *parent = make_temp_dir();
    char base[64];
    snprintf(base, sizeof base, "%s", parent);
    const char *dirs[] = {"checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-10", "checkpoint-0011",
                          "checkpoint-1.old-1", "checkpoint-x", "other-5", "checkpoint-"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        assert_int_equal(mkdir(fmt("%s/%s", base, dirs[i]), 0755), 0);
        write_text(fmt("%s/%s/config.json", base, dirs[i]), "{}");
    }
    write_text(fmt("%s/checkpoint-99", base), "a file, not a checkpoint");
    assert_int_equal(checkpoint_prune(base, "checkpoint-", 0), 0);
    assert_int_equal(checkpoint_prune(base, "checkpoint-", 5), 0);
    assert_int_equal(count_entries(base), 10);
    assert_int_equal(checkpoint_prune(base, "checkpoint-", 3), 0);
    const char *kept[] = {"checkpoint-3", "checkpoint-10", "checkpoint-0011", "checkpoint-x", "other-5",
                          "checkpoint-", "checkpoint-99"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        if (!exists(fmt("%s/%s", base, kept[i]))) fail_msg("%s was removed", kept[i]);
    assert_int_equal(count_entries(base), 7); /* checkpoint-1 went with its crash leftover */
    assert_int_equal(checkpoint_prune(base, "checkpoint-", 1), 0);
    assert_true(exists(fmt("%s/checkpoint-0011", base)));
    assert_int_equal(count_entries(base), 5);
    assert_true(checkpoint_prune(fmt("%s/nowhere", base), "checkpoint-", 1) < 0);
    remove_tree(base);
}

/* A run directory's leftovers of interrupted saves (model or checkpoint-N directories) go when
 * their process is gone; those of live processes (this one, its parent), DIR.old-*, files, and
 * names saves do not use stay. */
static void test_leftovers(void **state) {
    (void)state;
    char base[64];
    snprintf(base, sizeof base, "%s", make_temp_dir());
    const long dead = dead_pid(), self = (long)getpid(), parent = (long)getppid();
    char removed_names[3][64], kept[8][64];
    snprintf(removed_names[0], sizeof removed_names[0], "checkpoint-000100.tmp-%ld", dead);
    snprintf(removed_names[1], sizeof removed_names[1], "model.del-%ld", dead);
    snprintf(removed_names[2], sizeof removed_names[2], "checkpoint-000700.del-%ld", dead);
    snprintf(kept[0], sizeof kept[0], "checkpoint-000200.tmp-%ld", self);
    snprintf(kept[1], sizeof kept[1], "checkpoint-000300.tmp-%ld", parent);
    snprintf(kept[2], sizeof kept[2], "checkpoint-000400.old-%ld", dead);
    snprintf(kept[3], sizeof kept[3], "checkpoint-000500.tmp-%ldx", dead);
    snprintf(kept[4], sizeof kept[4], "checkpoint-000800.tmp-%ld", dead); /* holds a subdirectory */
    snprintf(kept[5], sizeof kept[5], "checkpoint-000600");
    snprintf(kept[6], sizeof kept[6], "notes.txt.tmp-%ld", dead);  /* not a name saves use */
    snprintf(kept[7], sizeof kept[7], "backup.del-%ld", dead);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mkdir(fmt("%s/%s", base, removed_names[i]), 0755), 0);
        write_text(fmt("%s/%s/config.json", base, removed_names[i]), "{}");
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(mkdir(fmt("%s/%s", base, kept[i]), 0755), 0);
        write_text(fmt("%s/%s/config.json", base, kept[i]), "{}");
    }
    assert_int_equal(mkdir(fmt("%s/%s/sub", base, kept[4]), 0755), 0);
    char model_file[64]; /* a file, not a directory, under a save's name: not ours either */
    snprintf(model_file, sizeof model_file, "model.tmp-%ld", dead);
    write_text(fmt("%s/%s", base, model_file), "a file");

    stderr_capture_begin();
    const int count = checkpoint_remove_leftovers(base);
    const char *said = stderr_capture_end();
    assert_int_equal(count, 3);
    for (int i = 0; i < 3; i++) {
        if (exists(fmt("%s/%s", base, removed_names[i]))) fail_msg("%s was kept", removed_names[i]);
        if (!strstr(said, removed_names[i])) fail_msg("the removal of %s was not reported: %s", removed_names[i], said);
    }
    assert_non_null(strstr(said, "no longer running"));
    for (int i = 0; i < 8; i++)
        if (!exists(fmt("%s/%s/config.json", base, kept[i]))) fail_msg("%s was removed", kept[i]);
    assert_true(exists(fmt("%s/%s", base, model_file)));
    assert_int_equal(count_entries(base), 9);
    remove_tree(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_safety), /* first: it forks */
        cmocka_unit_test(test_loads_from_old_after_crash),
        cmocka_unit_test(test_round_trip_f32),
        cmocka_unit_test(test_round_trip_bf16),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_families_save_back),
        cmocka_unit_test(test_tied_config_with_lm_head_refused),
        cmocka_unit_test(test_training_state),
        cmocka_unit_test(test_tokenizer_files),
        cmocka_unit_test(test_f16_by_hand),
        cmocka_unit_test(test_broken_single_file),
        cmocka_unit_test(test_broken_index),
        cmocka_unit_test(test_symbolic_links),
        cmocka_unit_test(test_replacing_directories),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
