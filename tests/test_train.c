/* Training: reproducible from a seed (bit-identical for the same thread count, equal to 1e-5
 * across thread counts), learns a simple corpus, stops cleanly on divergence without writing a
 * model, and refuses to overwrite a trained model. The run directory's lock: a second writer
 * (train or compare) is refused before it writes anything, a stale lock of this host is taken
 * over (another host's too, on a local file system); leftovers of interrupted saves by dead
 * processes are removed. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, scandir, fork, kill, gethostname */
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/run_lock.h"
#include "experiments/compare.h"
#include "word_corpus.h"
#include "train/trainer.h"

static char work[64];

static int make_corpus(void **state) {
    (void)state;
    static const char *const words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"};
    snprintf(work, sizeof work, "/tmp/probmoe_train_XXXXXX");
    return word_corpus_make(work, words, 8, 6000, 1);
}

static int remove_work(void **state) {
    (void)state;
    return word_corpus_remove(work);
}

static pm_model_config tiny_model(void) {
    pm_model_config cfg = pm_model_config_default();
    cfg.hidden_size = 32;
    cfg.intermediate_size = 32;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_experts = 4;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 64;
    cfg.router = pm_router_config_default(PM_ROUTER_PROBMOE, 4, 2);
    return cfg;
}

static train_options tiny_options(const char *out) {
    static char data[128];
    snprintf(data, sizeof data, "%s/corpus.txt", work);
    train_options opt = train_options_default();
    opt.data_path = data;
    opt.out_dir = out;
    opt.batch = 4;
    opt.seq = 32;
    opt.accum = 2;
    opt.steps = 6;
    opt.warmup = 2;
    opt.eval_interval = 3;
    opt.eval_batches = 2;
    return opt;
}

/* The "loss" of every line of out/metrics.jsonl. */
static int read_losses(const char *out, double *losses, int capacity) {
    char path[160], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    int count = 0;
    while (count < capacity && fgets(line, sizeof line, file)) {
        char *at = strstr(line, "\"loss\": ");
        assert_non_null(at);
        losses[count++] = strtod(at + 8, NULL);
    }
    fclose(file);
    return count;
}

static void run(const char *name, int threads, double *losses) {
    char out[128];
    snprintf(out, sizeof out, "%s/%s", work, name);
    omp_set_num_threads(threads);
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    train_result result;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    omp_set_num_threads(2);
    assert_int_equal(read_losses(out, losses, 6), 6);
}

static void test_reproducible(void **state) {
    (void)state;
    double a[6], b[6], c[6];
    run("one_thread_a", 1, a);
    run("one_thread_b", 1, b);
    run("two_threads", 2, c);
    for (int i = 0; i < 6; i++) {
        assert_true(a[i] == b[i]); /* the same seed and thread count: identical */
        assert_close(c[i], a[i], 1e-5, 0, "loss with 2 threads", i);
    }
    /* another seed gives another run */
    char out[128];
    snprintf(out, sizeof out, "%s/other_seed", work);
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    opt.seed = 2;
    train_result result;
    assert_int_equal(train_run(&cfg, &opt, NULL, &result), 0);
    double d[6];
    read_losses(out, d, 6);
    assert_true(d[0] != a[0]);
}

static void test_learns(void **state) {
    (void)state;
    char out[128];
    snprintf(out, sizeof out, "%s/learns", work);
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    opt.steps = 120;
    opt.eval_interval = 0;
    opt.lr = 1e-2f;
    train_result result;
    assert_int_equal(train_run(&cfg, &opt, NULL, &result), 0);
    /* eight words in random order: far below the unigram loss is possible */
    assert_true(result.final_val_loss < 0.8 * result.unigram_loss);
    char path[160];
    snprintf(path, sizeof path, "%s/model/model.safetensors", out);
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    /* a second run into the same directory is refused and changes nothing */
    assert_true(train_run(&cfg, &opt, NULL, &result) < 0);
    assert_non_null(strstr(pm_last_error(), "already holds a trained model"));
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_true(after.st_mtime == info.st_mtime && after.st_size == info.st_size);
}

static void test_divergence_stops_without_saving(void **state) {
    (void)state;
    char out[128], path[160];
    snprintf(out, sizeof out, "%s/diverges", work);
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    opt.steps = 20;
    opt.lr = 1e30f;
    opt.warmup = 0;
    opt.clip = 0.0f;
    train_result result;
    assert_true(train_run(&cfg, &opt, NULL, &result) < 0);
    assert_non_null(strstr(pm_last_error(), "non-finite steps in a row"));
    snprintf(path, sizeof path, "%s/model/model.safetensors", out);
    struct stat info;
    assert_true(stat(path, &info) != 0);
}

/* Resuming from the checkpoint of step 4 of an 8-step run gives steps 5..8 of the
 * uninterrupted run bit for bit, router selection biases included; old checkpoints beyond
 * keep_last are pruned. */
static void test_resume_is_exact(void **state) {
    (void)state;
    char whole[128], resumed[128], pruned[128], checkpoint[192];
    snprintf(whole, sizeof whole, "%s/whole", work);
    snprintf(resumed, sizeof resumed, "%s/resumed", work);
    snprintf(pruned, sizeof pruned, "%s/pruned", work);
    pm_model_config cfg = tiny_model();
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, 4, 2);
    cfg.router.bias_rate = 0.01f; /* router state beyond the weights must survive too */
    train_options opt = tiny_options(whole);
    opt.steps = 8;
    opt.save_interval = 4;
    train_result result;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    double want[8], got[4];
    assert_int_equal(read_losses(whole, want, 8), 8);

    train_options resume = train_options_default();
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-000004", whole);
    resume.resume_dir = checkpoint;
    resume.out_dir = resumed;
    resume.steps = 0;      /* the checkpoint's own total */
    resume.data_path = NULL; /* from the checkpoint's trainer state */
    if (train_run(&cfg, &resume, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    assert_int_equal(result.steps_done, 8);
    assert_int_equal(read_losses(resumed, got, 4), 4);
    for (int i = 0; i < 4; i++)
        if (got[i] != want[4 + i]) fail_msg("step %d: resumed loss %.9g, uninterrupted %.9g", 5 + i, got[i], want[4 + i]);

    opt = tiny_options(pruned);
    opt.steps = 6;
    opt.save_interval = 2;
    opt.keep_last = 2;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    struct stat info;
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-000002", pruned);
    assert_true(stat(checkpoint, &info) != 0);
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-000004", pruned);
    assert_int_equal(stat(checkpoint, &info), 0);
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-000006", pruned);
    assert_int_equal(stat(checkpoint, &info), 0);
}

static void test_bad_options(void **state) {
    (void)state;
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options("/tmp/never");
    opt.seq = 65;
    assert_true(train_options_check(&opt, &cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "max_position_embeddings = 64"));
    const struct { float clip, decay, min_ratio; int keep_last; const char *says; } bad[] = {
        {NAN, 0.1f, 0.1f, 0, "--clip (finite)"}, {1.0f, NAN, 0.1f, 0, "--weight-decay nan"},
        {1.0f, -0.5f, 0.1f, 0, "--weight-decay -0.5"}, {1.0f, 0.1f, 1.5f, 0, "--min-lr-ratio 1.5"},
        {1.0f, 0.1f, 0.1f, -1, "--keep-last -1"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opt = tiny_options("/tmp/never");
        opt.clip = bad[i].clip;
        opt.adamw.weight_decay = bad[i].decay;
        opt.min_lr_ratio = bad[i].min_ratio;
        opt.keep_last = bad[i].keep_last;
        assert_true(train_options_check(&opt, &cfg) < 0);
        if (!strstr(pm_last_error(), bad[i].says)) fail_msg("case %zu: %s", i, pm_last_error());
    }
    opt = tiny_options("/tmp/never");
    opt.data_path = "/no/such/file.txt";
    train_result result;
    assert_true(train_run(&cfg, &opt, NULL, &result) < 0);
    assert_non_null(strstr(pm_last_error(), "cannot open the data file"));
    struct stat info;
    assert_true(stat("/tmp/never", &info) != 0);
}

/* Fine-tuning from a trained model on GSM8K-format data lowers the held-out answer loss. */
static void test_finetune_gsm8k(void **state) {
    (void)state;
    char base[128], tuned[128], model_dir[160], jsonl[128];
    snprintf(base, sizeof base, "%s/base", work);
    snprintf(tuned, sizeof tuned, "%s/tuned", work);
    snprintf(jsonl, sizeof jsonl, "%s/math.jsonl", work);
    FILE *file = fopen(jsonl, "w");
    for (int i = 0; i < 60; i++)
        fprintf(file, "{\"question\": \"What is %d plus %d?\", \"answer\": \"%d + %d = %d\\n#### %d\"}\n", i, i % 7,
                i, i % 7, i + i % 7, i + i % 7);
    fclose(file);
    pm_model_config cfg = tiny_model();
    cfg.max_position_embeddings = 64;
    train_options opt = tiny_options(base);
    opt.steps = 4;
    train_result result;
    assert_int_equal(train_run(&cfg, &opt, NULL, &result), 0);
    snprintf(model_dir, sizeof model_dir, "%s/model", base);
    opt = tiny_options(tuned);
    opt.init_dir = model_dir;
    opt.data_path = jsonl;
    opt.supervised = true;
    opt.seq = 63;
    opt.steps = 40;
    opt.eval_interval = 1;
    opt.lr = 1e-2f;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    assert_true(isnan(result.unigram_loss));
    /* the first evaluated loss (after step 1) against the last */
    char path[160], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tuned);
    file = fopen(path, "r");
    assert_non_null(fgets(line, sizeof line, file));
    fclose(file);
    double first = strtod(strstr(line, "\"val_loss\": ") + 12, NULL);
    assert_true(result.final_val_loss < 0.7 * first);
}

/* ------------------------------------------------------------ the run directory's lock */

/* The sorted names in dir, with the lock file's content: what "unchanged" compares. */
static const char *snapshot(const char *dir) {
    static char text[8192];
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);
    assert_true(n >= 0);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(text + used, sizeof text - used, "%s\n", entries[i]->d_name);
        free(entries[i]);
    }
    free(entries);
    char path[192];
    snprintf(path, sizeof path, "%s/%s", dir, RUN_LOCK_FILE);
    FILE *file = fopen(path, "r");
    if (file) {
        used += fread(text + used, 1, sizeof text - 1 - used, file);
        fclose(file);
    }
    text[used] = '\0';
    return text;
}

static void write_lock_file(const char *dir, long pid, const char *host) {
    char path[192];
    snprintf(path, sizeof path, "%s/%s", dir, RUN_LOCK_FILE);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file, "pid %ld\nhost %s\ncommand probmoe train\nsince 2025-01-01 00:00:00 UTC\n", pid, host);
    fclose(file);
}

static bool lock_file_exists(const char *dir) {
    char path[192];
    struct stat info;
    snprintf(path, sizeof path, "%s/%s", dir, RUN_LOCK_FILE);
    return stat(path, &info) == 0;
}

static void assert_mentions(const char *text, const char *part) {
    if (!strstr(text, part)) fail_msg("\"%s\" should mention '%s'", text, part);
}


/* Trains the tiny model into out, which must succeed; what it said on stderr. */
static const char *train_saying(const char *out) {
    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    train_result result;
    stderr_capture_begin();
    const int status = train_run(&cfg, &opt, NULL, &result);
    const char *said = stderr_capture_end();
    if (status < 0) fail_msg("%s", pm_last_error());
    return said;
}
/* A second writer is refused before it writes anything, naming the directory, the owner's
 * pid and host; once the owner is killed, the next run takes the stale lock over, says so,
 * and removes the lock file when it is done. */
static void test_locked_directory(void **state) {
    (void)state;
    char out[128], host[256], pid_text[32];
    snprintf(out, sizeof out, "%s/locked", work);
    assert_int_equal(mkdir(out, 0755), 0);
    gethostname(host, sizeof host);
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    fflush(stdout);
    fflush(stderr);
    const pid_t owner = fork(); /* the child takes the lock and waits: no OpenMP in it */
    assert_true(owner >= 0);
    if (owner == 0) {
        run_lock *lock;
        char byte = run_lock_acquire(out, "probmoe train", &lock) == 0 ? 'y' : 'n';
        if (write(ready[1], &byte, 1) != 1) _exit(1);
        (void)!read(hold[0], &byte, 1); /* until killed */
        _exit(0);
    }
    char byte = 0;
    assert_int_equal(read(ready[0], &byte, 1), 1);
    assert_int_equal(byte, 'y');
    snprintf(pid_text, sizeof pid_text, "pid %ld", (long)owner);
    char before[8192];
    snprintf(before, sizeof before, "%s", snapshot(out));
    assert_mentions(before, pid_text);

    pm_model_config cfg = tiny_model();
    train_options opt = tiny_options(out);
    train_result result;
    assert_true(train_run(&cfg, &opt, NULL, &result) < 0);
    const char *message = pm_last_error();
    assert_mentions(message, out);
    assert_mentions(message, pid_text);
    assert_mentions(message, host);
    assert_mentions(message, "nothing was written");
    assert_string_equal(snapshot(out), before);
    assert_true(run_lock_check(out) < 0);
    run_lock *lock = NULL;
    assert_true(run_lock_acquire(out, "probmoe test", &lock) < 0);
    assert_null(lock);
    assert_string_equal(snapshot(out), before);

    /* killed: the kernel drops its flock, its lock file stays */
    kill(owner, SIGKILL);
    assert_int_equal(waitpid(owner, NULL, 0), owner);
    close(ready[0]), close(ready[1]), close(hold[0]), close(hold[1]);
    assert_true(lock_file_exists(out));
    const char *said = train_saying(out);
    assert_mentions(said, "taking the lock over");
    assert_mentions(said, pid_text);
    assert_mentions(said, "no longer running");
    assert_false(lock_file_exists(out)); /* released at the end */
}

/* A lock file a dead process of this host left (written by hand) is taken over; leftovers of
 * interrupted saves by dead processes go, those of live ones stay. */
static void test_stale_lock_and_leftovers(void **state) {
    (void)state;
    char out[128], host[256], path[256], pid_text[32];
    snprintf(out, sizeof out, "%s/stale", work);
    assert_int_equal(mkdir(out, 0755), 0);
    gethostname(host, sizeof host);
    const long dead = dead_pid();
    write_lock_file(out, dead, host);
    char removed[2][64], kept[2][64];
    snprintf(removed[0], sizeof removed[0], "checkpoint-000100.tmp-%ld", dead);
    snprintf(removed[1], sizeof removed[1], "checkpoint-000050.del-%ld", dead);
    snprintf(kept[0], sizeof kept[0], "checkpoint-000100.tmp-%ld", (long)getpid());
    snprintf(kept[1], sizeof kept[1], "checkpoint-000100.tmp-%ld", (long)getppid());
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", out, i < 2 ? removed[i] : kept[i - 2]);
        assert_int_equal(mkdir(path, 0755), 0);
        strcat(path, "/model.safetensors");
        FILE *file = fopen(path, "w");
        assert_non_null(file);
        fclose(file);
    }
    const char *said = train_saying(out);
    snprintf(pid_text, sizeof pid_text, "pid %ld", dead);
    assert_mentions(said, pid_text);
    assert_mentions(said, "taking the lock over");
    struct stat info;
    for (int i = 0; i < 2; i++) {
        assert_mentions(said, removed[i]);
        snprintf(path, sizeof path, "%s/%s", out, removed[i]);
        if (stat(path, &info) == 0) fail_msg("%s was kept", removed[i]);
        snprintf(path, sizeof path, "%s/%s/model.safetensors", out, kept[i]);
        if (stat(path, &info) != 0) fail_msg("%s was removed", kept[i]);
    }
    assert_false(lock_file_exists(out));
}

/* A lock file another host wrote, which nobody holds, on a local file system (like /tmp): no
 * process anywhere can hold it, so it is stale (a container restarted under a new hostname);
 * taken over with a message naming that host. (On a network file system such a lock is
 * refused: another machine may hold it, and a flock need not reach this one.) */
static void test_foreign_lock(void **state) {
    (void)state;
    char out[128];
    snprintf(out, sizeof out, "%s/foreign", work);
    assert_int_equal(mkdir(out, 0755), 0);
    write_lock_file(out, 4242, "elsewhere.invalid");
    const char *said = train_saying(out);
    assert_mentions(said, "pid 4242");
    assert_mentions(said, "elsewhere.invalid");
    assert_mentions(said, "taking the lock over");
    assert_false(lock_file_exists(out));
}

/* compare is refused on a directory another writer holds, before it writes a file. */
static void test_compare_refused(void **state) {
    (void)state;
    char out[128];
    snprintf(out, sizeof out, "%s/compare", work);
    run_lock *lock = NULL;
    assert_int_equal(run_lock_acquire(out, "probmoe train", &lock), 0);
    char before[8192];
    snprintf(before, sizeof before, "%s", snapshot(out));
    compare_options opt;
    assert_int_equal(compare_preset("quick", &opt), 0);
    opt.out_dir = out;
    opt.text_path = "/nonexistent/text.txt";
    opt.gsm8k_test = "/nonexistent/test.jsonl";
    assert_true(compare_run(&opt) < 0);
    assert_mentions(pm_last_error(), "is in use by probmoe train");
    assert_string_equal(snapshot(out), before);
    run_lock_release(lock);
    assert_false(lock_file_exists(out));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_learns),
        cmocka_unit_test(test_divergence_stops_without_saving),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_finetune_gsm8k),
        cmocka_unit_test(test_locked_directory),
        cmocka_unit_test(test_stale_lock_and_leftovers),
        cmocka_unit_test(test_foreign_lock),
        cmocka_unit_test(test_compare_refused),
    };
    return cmocka_run_group_tests(tests, make_corpus, remove_work);
}
