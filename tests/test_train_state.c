/* trainer_state.json: the options and history a resumed run takes round-trip exactly, and a
 * damaged state (a value out of its range or type, an unknown schedule, a bad seed) is refused
 * naming the field, never converted with undefined behaviour. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train/train_state.h"

static void test_round_trip(void **state) {
    (void)state;
    train_options opt = train_options_default();
    opt.seed = 18446744073709551615ull;
    opt.steps = 12345;
    opt.batch = 3;
    opt.seq = 77;
    opt.accum = 2;
    opt.lr = 1.5e-4f;
    opt.min_lr_ratio = 0.25f;
    opt.warmup = 9;
    opt.schedule = SCHEDULE_LINEAR;
    opt.clip = 0.5f;
    opt.adamw.beta1 = 0.8f;
    opt.adamw.eps = 1e-6f;
    opt.adamw.freeze_router = true;
    opt.keep_last = 4;
    opt.data_path = "some/data";
    opt.supervised = true;
    opt.chat_format = CHAT_TULU;
    train_history history = {0};
    assert_int_equal(train_history_add(&history, 5, 2.5, NAN), 0);
    assert_int_equal(train_history_add(&history, 10, 2.25, 2.75), 0);
    char *json = train_state_to_json(&opt, 10, &history);
    assert_non_null(json);

    train_options back = train_options_default();
    train_history history_back = {0};
    train_state_paths paths;
    long step = -1;
    if (train_state_from_json(json, "state", &back, &step, &history_back, &paths) < 0) fail_msg("%s", pm_last_error());
    assert_int_equal(step, 10);
    assert_true(back.seed == opt.seed);
    assert_int_equal(back.steps, opt.steps);
    assert_int_equal(back.batch, opt.batch);
    assert_int_equal(back.seq, opt.seq);
    assert_int_equal(back.accum, opt.accum);
    assert_true(back.lr == opt.lr && back.min_lr_ratio == opt.min_lr_ratio && back.clip == opt.clip);
    assert_true(back.adamw.beta1 == opt.adamw.beta1 && back.adamw.eps == opt.adamw.eps);
    assert_true(back.adamw.freeze_router);
    assert_int_equal(back.schedule, SCHEDULE_LINEAR);
    assert_int_equal(back.keep_last, 4);
    assert_string_equal(back.data_path, "some/data");
    assert_true(back.supervised);
    assert_int_equal(back.chat_format, CHAT_TULU);
    assert_int_equal(history_back.count, 2);
    assert_true(isnan(history_back.entries[0].val_loss));
    assert_true(history_back.entries[1].loss == 2.25 && history_back.entries[1].val_loss == 2.75);
    free(json);
    train_history_free(&history);
    train_history_free(&history_back);
}

static void expect_refused(const char *json, const char *fragment) {
    train_options opt = train_options_default();
    train_history history = {0};
    train_state_paths paths;
    long step;
    int status = train_state_from_json(json, "run/checkpoint-3/trainer_state.json", &opt, &step, &history, &paths);
    train_history_free(&history);
    if (status == 0) fail_msg("accepted: %s", json);
    const char *message = pm_last_error();
    if (!strstr(message, "run/checkpoint-3/trainer_state.json") || !strstr(message, fragment))
        fail_msg("message '%s' should name the file and say '%s'", message, fragment);
}

static void test_damaged_fields_refused(void **state) {
    (void)state;
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"eps\": 9.9e71}", "\"eps\" is 9.9e+71");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"batch\": 1.5}", "\"batch\" is 1.5; it must be an integer");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"steps\": 1e300}", "\"steps\"");
    expect_refused("{\"step\": -1, \"seed\": \"1\"}", "\"step\" is -1");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"lr\": 0}", "\"lr\" is 0");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"beta2\": 1.5}", "\"beta2\" is 1.5");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"warmup\": \"ten\"}", "\"warmup\" must be a number");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"schedule\": \"fast\"}", "cosine, linear or constant");
    expect_refused("{\"step\": 3, \"seed\": \"-1\"}", "\"seed\" must be a decimal integer");
    expect_refused("{\"step\": 3, \"seed\": \"99999999999999999999\"}", "below 2^64");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"metrics\": [{\"step\": 1e20, \"loss\": 1}]}", "\"step\" is 1e+20");
    expect_refused("{\"seed\": \"1\"}", "not a probmoe trainer state");
    expect_refused("{\"step\": 3, \"seed\": \"1\", \"chat_format\": \"vicuna\"}", "plain, chatml, llama2, tulu");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_fields_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
