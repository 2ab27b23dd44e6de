/* Router logits as text (route/logits_text.h, the input of `probmoe route`) and the number
 * syntax under it (core/number.h): good inputs give the right values and shape; each kind of
 * bad input is refused with a message that says what and where; nothing past the given length
 * is read (the buffers here are exactly that long, without a NUL, so AddressSanitizer catches
 * a read past the end). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/number.h"
#include "route/logits_text.h"

/* A copy of text[0..length) in a buffer of exactly length bytes (no NUL after it). */
static char *exact_copy(const char *text, size_t length) {
    char *copy = malloc(length ? length : 1);
    assert_non_null(copy);
    memcpy(copy, text, length);
    return copy;
}

typedef struct {
    float *values;
    int rows, experts, status;
} parsed;

static parsed parse_bytes(const char *text, size_t length) {
    char *copy = exact_copy(text, length);
    parsed out;
    out.status = logits_text_parse(copy, length, "in.txt", &out.values, &out.rows, &out.experts);
    free(copy);
    return out;
}

static parsed parse(const char *text) { return parse_bytes(text, strlen(text)); }

/* Refused, with every fragment in the message; and the outputs cleared. */
static void expect_refused_bytes(const char *text, size_t length, const char *fragment, const char *fragment2) {
    parsed out = parse_bytes(text, length);
    if (out.status >= 0) fail_msg("accepted '%.*s' (%d rows of %d)", (int)length, text, out.rows, out.experts);
    if (!strstr(pm_last_error(), fragment) || (fragment2 && !strstr(pm_last_error(), fragment2)))
        fail_msg("the message for '%.*s' lacks '%s'%s%s: %s", (int)length, text, fragment,
                 fragment2 ? " or " : "", fragment2 ? fragment2 : "", pm_last_error());
    assert_null(out.values);
    assert_int_equal(out.rows, 0);
    assert_int_equal(out.experts, 0);
}

static void expect_refused(const char *text, const char *fragment, const char *fragment2) {
    expect_refused_bytes(text, strlen(text), fragment, fragment2);
}

static void expect_values(const char *text, int rows, int experts, const float *want) {
    parsed out = parse(text);
    if (out.status < 0) fail_msg("refused '%s': %s", text, pm_last_error());
    assert_int_equal(out.rows, rows);
    assert_int_equal(out.experts, experts);
    for (int i = 0; i < rows * experts; i++)
        if (out.values[i] != want[i]) fail_msg("'%s': value %d is %.9g, not %.9g", text, i, out.values[i], want[i]);
    free(out.values);
}

static void test_good_inputs(void **state) {
    (void)state;
    const float two_by_three[] = {1.5f, -2.0f, 3e-2f, 0.25f, 5.0f, -0.5f};
    expect_values("1.5 -2 3e-2\n.25 5. -.5\n", 2, 3, two_by_three);
    expect_values("1.5,-2,3e-2\n0.25,5,-0.5", 2, 3, two_by_three);                  /* no final newline */
    expect_values("1.5 , -2 ,3e-2\n0.25,\t5 ,\t-0.5\n", 2, 3, two_by_three);        /* blanks around commas */
    expect_values("\t1.5\t\t-2   3e-2  \n  0.25 5 -0.5\t\n", 2, 3, two_by_three);   /* runs of blanks */
    expect_values("\n  \n1.5 -2 3e-2\n\t\n\n0.25 5 -0.5\n\n", 2, 3, two_by_three); /* blank lines */
    expect_values("1.5 -2 3e-2\r\n0.25 5 -0.5\r\n", 2, 3, two_by_three);            /* CRLF */
    expect_values("1.5 -2 3e-2\r\n0.25 5 -0.5\r", 2, 3, two_by_three);              /* CR at the very end */
    const float one[] = {7.0f};
    expect_values("+7", 1, 1, one);
    const float extremes[] = {3.4e38f, -3.4e38f, 0.0f, 1e-40f};
    expect_values("3.4e38 -3.4E+38 1e-60 1e-40", 1, 4, extremes); /* underflow rounds, as strtof does */
    /* the worked example of ROUTING.md section 5 */
    const float worked[] = {1.3862944f, 0.4054651f, -0.4054651f, -1.3862944f};
    expect_values("1.3862944 0.4054651 -0.4054651 -1.3862944\n", 1, 4, worked);
}

static void test_bad_inputs(void **state) {
    (void)state;
    /* NUL bytes anywhere: "1 2\0 3 4" used to read as two experts */
    expect_refused_bytes("1 2\0 3 4\n", 9, "line 1, column 4: a NUL byte", "binary");
    expect_refused_bytes("1 2\n3 4\n\0", 9, "line 3, column 1: a NUL byte", NULL);
    expect_refused_bytes("1 2\n3\0004\n", 8, "line 2, column 2: a NUL byte", NULL);
    /* empty fields: "1,,2,3" used to read as three experts */
    expect_refused("1,,2,3\n", "line 1, column 3: an empty field", "one comma");
    expect_refused("1, ,2\n", "line 1, column 4: an empty field", NULL);
    expect_refused(",1,2\n", "line 1, column 1: an empty field", NULL);
    expect_refused("1 2\n1,2,\n", "line 2", "an empty field");
    expect_refused("1 2\n 1 , 2 , \r\n", "line 2", "an empty field");
    /* not numbers */
    expect_refused("1 two 3\n", "line 1, column 3: 'two' is not a number", "decimal");
    expect_refused("1 2\n3 4x\n", "line 2, column 3: '4x' is not a number", NULL);
    expect_refused("1 2;3\n", "'2;3' is not a number", NULL);
    expect_refused("1 2\r3\n", "'2\\x0D3' is not a number", NULL); /* a lone CR inside a line */
    expect_refused("1e 2\n", "'1e' is not a number", NULL);
    expect_refused("- 2\n", "'-' is not a number", NULL);
    expect_refused("1 \xC3\xA9\n", "'\\xC3\\xA9' is not a number", NULL);
    expect_refused("1 0x1p3\n", "'0x1p3' is a hexadecimal number", "decimal");
    expect_refused("1 -0X10\n", "hexadecimal", NULL);
    /* non-finite and out of range */
    expect_refused("1 nan 3\n", "line 1, column 3: 'nan' is not finite", "finite number");
    expect_refused("1 2\n-inf 3\n", "line 2, column 1: '-inf' is not finite", NULL);
    expect_refused("Infinity 1\n", "is not finite", NULL);
    expect_refused("NaN(123) 1\n", "is not finite", NULL);
    expect_refused("1 1e39\n", "'1e39' overflows a float", NULL);
    expect_refused("1 -3.5e38\n", "overflows a float", NULL);
    char long_field[300];
    memset(long_field, '1', 200);
    strcpy(long_field + 200, " 2\n");
    expect_refused(long_field, "a field of 200 characters", "too long");
    /* shape */
    expect_refused("1 2 3\n1 2\n", "line 2 has 2 logits, the first token (line 1) had 3", "one logit per expert");
    expect_refused("\n1 2\n\n1 2 3\n", "line 4 has 3 logits, the first token (line 2) had 2", NULL);
    expect_refused("", "holds no logits", NULL);
    expect_refused("\n \t\n\r\n", "holds no logits", NULL);
    /* the message names the input */
    expect_refused("x\n", "in.txt line 1", NULL);
}

static void test_bounds(void **state) {
    (void)state;
    /* LOGITS_TEXT_MAX_EXPERTS logits on a line are fine, one more is not */
    const size_t most = LOGITS_TEXT_MAX_EXPERTS;
    char *line = malloc(2 * (most + 1) + 1);
    assert_non_null(line);
    for (size_t i = 0; i < most; i++) line[2 * i] = '1', line[2 * i + 1] = ' ';
    parsed out = parse_bytes(line, 2 * most);
    if (out.status < 0) fail_msg("%s", pm_last_error());
    assert_int_equal(out.experts, LOGITS_TEXT_MAX_EXPERTS);
    free(out.values);
    line[2 * most] = '1';
    expect_refused_bytes(line, 2 * most + 1, "line 1 has more than 4096 logits", "at most 4096 experts");
    free(line);
    /* more than LOGITS_TEXT_MAX_VALUES in all: 2^24 + 1 lines of one logit */
    const size_t rows = (size_t)LOGITS_TEXT_MAX_VALUES + 1;
    char *many = malloc(2 * rows);
    assert_non_null(many);
    for (size_t i = 0; i < rows; i++) many[2 * i] = '0', many[2 * i + 1] = '\n';
    out = parse_bytes(many, 2 * (rows - 1));
    if (out.status < 0) fail_msg("%s", pm_last_error());
    assert_int_equal(out.rows, LOGITS_TEXT_MAX_VALUES);
    free(out.values);
    expect_refused_bytes(many, 2 * rows, "more than 16777216 logits", "fewer tokens");
    free(many);
    /* text longer than LOGITS_TEXT_MAX_BYTES is refused before it is read */
    float *values = NULL;
    int r = 0, e = 0;
    assert_true(logits_text_parse("1", LOGITS_TEXT_MAX_BYTES + 1, "big.txt", &values, &r, &e) < 0);
    assert_non_null(strstr(pm_last_error(), "big.txt is 268435457 bytes"));
    assert_null(values);
}

/* A buffer without a NUL after it: the last number runs up to the end and no further. */
static void test_unterminated_buffer(void **state) {
    (void)state;
    const char text[] = "0.5 -1.25\n2 3";
    char *buffer = exact_copy(text, sizeof text - 1);
    float *values = NULL;
    int rows = 0, experts = 0;
    assert_int_equal(logits_text_parse(buffer, sizeof text - 1, "buffer", &values, &rows, &experts), PM_OK);
    assert_int_equal(rows, 2);
    assert_int_equal(experts, 2);
    assert_true(values[0] == 0.5f && values[1] == -1.25f && values[2] == 2.0f && values[3] == 3.0f);
    free(values);
    /* a prefix of the same buffer: the length decides, not a terminator */
    assert_int_equal(logits_text_parse(buffer, 8, "buffer", &values, &rows, &experts), PM_OK);
    assert_int_equal(rows, 1);
    assert_int_equal(experts, 2);
    assert_true(values[0] == 0.5f && values[1] == -1.2f); /* "-1.2", not "-1.25" */
    free(values);
    free(buffer);
    /* every prefix of a longer input parses or fails cleanly, never reading past its length */
    const char sample[] = "1.5,-2 , 3e-2\r\n\n0.25\t5 -0.5\n";
    for (size_t n = 0; n <= sizeof sample - 1; n++) {
        char *prefix = exact_copy(sample, n);
        if (logits_text_parse(prefix, n, "prefix", &values, &rows, &experts) == PM_OK) free(values);
        else assert_null(values);
        free(prefix);
    }
    /* NULL text is fine only when empty */
    assert_true(logits_text_parse(NULL, 0, "nothing", &values, &rows, &experts) < 0);
    assert_non_null(strstr(pm_last_error(), "holds no logits"));
}

static void test_number_syntax(void **state) {
    (void)state;
    float f = 0.0f;
    double d = 0.0;
    int64_t i = 0;
    assert_int_equal(number_parse_float("2.5e1", 5, &f), NUMBER_OK);
    assert_true(f == 25.0f);
    assert_int_equal(number_parse_float("2.5e1xyz", 5, &f), NUMBER_OK); /* the length decides */
    assert_int_equal(number_parse_float("", 0, &f), NUMBER_EMPTY);
    assert_int_equal(number_parse_float(" 1", 2, &f), NUMBER_SYNTAX);
    assert_int_equal(number_parse_float("1 ", 2, &f), NUMBER_SYNTAX);
    assert_int_equal(number_parse_float(".", 1, &f), NUMBER_SYNTAX);
    assert_int_equal(number_parse_float("0x10", 4, &f), NUMBER_HEX);
    assert_int_equal(number_parse_float("-INF", 4, &f), NUMBER_NONFINITE);
    assert_int_equal(number_parse_float("1e39", 4, &f), NUMBER_RANGE);
    assert_int_equal(number_parse_double("1e39", 4, &d), NUMBER_OK);
    assert_int_equal(number_parse_double("1e309", 5, &d), NUMBER_RANGE);
    assert_int_equal(number_parse_int64("-9223372036854775808", 20, &i), NUMBER_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(number_parse_int64("9223372036854775808", 19, &i), NUMBER_RANGE);
    assert_int_equal(number_parse_int64("12abc", 5, &i), NUMBER_SYNTAX);
    assert_int_equal(number_parse_int64("1e3", 3, &i), NUMBER_SYNTAX);
    assert_int_equal(number_parse_int64("+", 1, &i), NUMBER_SYNTAX);
    assert_int_equal(number_parse_int64("0x1F", 4, &i), NUMBER_HEX);
    char digits[NUMBER_MAX_CHARS];
    memset(digits, '1', sizeof digits);
    assert_int_equal(number_parse_double(digits, sizeof digits - 1, &d), NUMBER_OK);
    assert_int_equal(number_parse_double(digits, sizeof digits, &d), NUMBER_TOO_LONG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_inputs),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_unterminated_buffer),
        cmocka_unit_test(test_number_syntax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
