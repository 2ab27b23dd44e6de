/* safetensors reader and writer: round trips, exact F16/BF16 decoding and BF16 rounding,
 * a file assembled byte by byte, and hostile files (truncated, corrupted, inconsistent)
 * that must be rejected with a telling message and no out-of-bounds read. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "io/safetensors.h"

static char tmp_dir[64];

static int make_tmp_dir(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/pm_safetensors_XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state) {
    (void)state;
    DIR *dir = opendir(tmp_dir);
    if (dir) {
        struct dirent *entry;
        char path[512];
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", tmp_dir, entry->d_name);
            unlink(path);
        }
        closedir(dir);
    }
    return rmdir(tmp_dir);
}

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    unsigned char *bytes = malloc((size_t)size + 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return bytes;
}

static void put_u64_le(unsigned char *out, uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(v >> 8 * i);
}

/* Writes a safetensors file whose length field says header_len, followed by the header
 * text and data_len zero bytes. */
static void write_raw(const char *path, uint64_t header_len, const char *header,
                      size_t data_len) {
    size_t text = strlen(header), n = 8 + text + data_len;
    unsigned char *bytes = calloc(n, 1);
    assert_non_null(bytes);
    put_u64_le(bytes, header_len);
    memcpy(bytes + 8, header, text);
    write_bytes(path, bytes, n);
    free(bytes);
}

static void write_st(const char *path, const char *header, size_t data_len) {
    write_raw(path, strlen(header), header, data_len);
}

static uint32_t float_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* st_open must fail with a message naming the path and containing `want`. */
static void expect_open_fails(const char *path, const char *want, const char *what) {
    st_file *file = NULL;
    int rc = st_open(&file, path);
    const char *msg = pm_last_error();
    if (rc >= 0 || file || !strstr(msg, want) || !strstr(msg, path)) {
        print_error("%s: st_open returned %d, message \"%s\" (wanted one containing \"%s\")\n",
                    what, rc, msg, want);
        st_close(file);
        fail();
    }
}

static void expect_error(int rc, const char *want, const char *what) {
    const char *msg = pm_last_error();
    if (rc >= 0 || !strstr(msg, want)) {
        print_error("%s: returned %d, message \"%s\" (wanted one containing \"%s\")\n", what, rc,
                    msg, want);
        fail();
    }
}

/* ------------------------------------------------------------ round trip */

#define ODD_NAME "odd \"name\" \\ with\nnewline and \xc3\xa9"
#define NOTE_VALUE "quote \" backslash \\ tab \t \xc3\xa9"

/* Float inputs and the bfloat16 bit patterns they must round to, computed by hand. */
static const struct {
    uint32_t in;
    uint16_t want;
} BF16_ROUNDING[12] = {
    {0x3F800000, 0x3F80}, /* 1 */
    {0xC0400000, 0xC040}, /* -3 */
    {0x3F808000, 0x3F80}, /* 1 + 2^-8: halfway, ties to even (down) */
    {0x3F818000, 0x3F82}, /* 1 + 3·2^-8: halfway, ties to even (up) */
    {0x3F808008, 0x3F81}, /* 1 + 2^-8 + 2^-20: just above halfway */
    {0x3DCCCCCD, 0x3DCD}, /* 0.1f */
    {0x7F7FFFFF, 0x7F80}, /* FLT_MAX rounds to infinity */
    {0xFF800000, 0xFF80}, /* -inf */
    {0x7F800001, 0x7FC0}, /* NaN whose payload is only in the dropped bits stays NaN */
    {0x80000000, 0x8000}, /* -0 */
    {0x00000001, 0x0000}, /* smallest subnormal rounds to +0 */
    {0x477FE000, 0x4780}, /* 65504 rounds up to 65536 */
};

static void test_round_trip(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "round_trip.safetensors");

    const float w[6] = {1.5f, -0.0f, 1e-40f, INFINITY, -3.25e7f, 0.1f};
    float bf_in[12];
    for (int i = 0; i < 12; i++) bf_in[i] = bits_float(BF16_ROUNDING[i].in);
    const int32_t ids[5] = {0, -1, 7, INT32_MIN, INT32_MAX};
    const int64_t pos[2] = {-5, 1234567};
    const float scale = 0.5f;
    const float odd[1] = {42.0f};

    st_writer *writer = st_writer_create();
    assert_non_null(writer);
    assert_int_equal(st_writer_set_metadata(writer, "format", "np"), PM_OK);
    assert_int_equal(st_writer_set_metadata(writer, "note", NOTE_VALUE), PM_OK);
    assert_int_equal(st_writer_set_metadata(writer, "format", "pt"), PM_OK); /* replaces */
    assert_int_equal(st_writer_add(writer, "layers.0.w", ST_F32, (int64_t[]){2, 3}, 2, w), 0);
    assert_int_equal(st_writer_add_bf16(writer, "emb", (int64_t[]){3, 4}, 2, bf_in), 0);
    assert_int_equal(st_writer_add(writer, "ids", ST_I32, (int64_t[]){5}, 1, ids), 0);
    assert_int_equal(st_writer_add(writer, "pos", ST_I64, (int64_t[]){2}, 1, pos), 0);
    assert_int_equal(st_writer_add(writer, "scale", ST_F32, NULL, 0, &scale), 0);
    assert_int_equal(st_writer_add(writer, "empty", ST_F32, (int64_t[]){0, 4}, 2, NULL), 0);
    assert_int_equal(st_writer_add(writer, ODD_NAME, ST_F32, (int64_t[]){1}, 1, odd), 0);
    /* The BF16 copy is owned: clobbering the input now must not change the file. */
    for (int i = 0; i < 12; i++) bf_in[i] = 99.0f;
    assert_int_equal(st_writer_write(writer, path), PM_OK);
    st_writer_free(writer);

    /* Layout: data section 8-byte aligned, file exactly header + data. */
    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | bytes[i];
    assert_int_equal((8 + n) % 8, 0);
    size_t data_bytes = 24 + 24 + 20 + 16 + 4 + 0 + 4;
    assert_int_equal(size, 8 + n + data_bytes);
    free(bytes);

    st_file *file = NULL;
    assert_int_equal(st_open(&file, path), PM_OK);
    assert_int_equal(st_count(file), 7);
    static const char *const names[7] = {"layers.0.w", "emb", "ids", "pos", "scale", "empty",
                                         ODD_NAME};
    static const st_dtype dtypes[7] = {ST_F32, ST_BF16, ST_I32, ST_I64, ST_F32, ST_F32, ST_F32};
    static const int ranks[7] = {2, 2, 1, 1, 0, 2, 1};
    static const int64_t shapes[7][2] = {{2, 3}, {3, 4}, {5, 0}, {2, 0}, {0, 0}, {0, 4}, {1, 0}};
    static const size_t elements[7] = {6, 12, 5, 2, 1, 0, 1};
    for (int i = 0; i < 7; i++) {
        const st_tensor *t = st_tensor_at(file, i);
        assert_non_null(t);
        assert_string_equal(t->name, names[i]);
        assert_ptr_equal(st_find(file, names[i]), t);
        assert_int_equal(t->dtype, dtypes[i]);
        assert_int_equal(t->rank, ranks[i]);
        for (int d = 0; d < ranks[i]; d++) assert_int_equal(t->shape[d], shapes[i][d]);
        assert_int_equal(t->num_elements, elements[i]);
    }
    assert_null(st_tensor_at(file, 7));
    assert_null(st_tensor_at(file, -1));
    assert_null(st_find(file, "layers.0"));
    assert_string_equal(st_metadata(file, "format"), "pt");
    assert_string_equal(st_metadata(file, "note"), NOTE_VALUE);
    assert_null(st_metadata(file, "missing"));

    float got[12];
    assert_int_equal(st_read_f32(file, "layers.0.w", (int64_t[]){2, 3}, 2, got), PM_OK);
    for (int i = 0; i < 6; i++) assert_int_equal(float_bits(got[i]), float_bits(w[i]));

    /* BF16: the stored bits are the hand-rounded ones, and they decode exactly. */
    const unsigned char *raw = st_find(file, "emb")->data;
    assert_int_equal(st_read_f32(file, "emb", (int64_t[]){3, 4}, 2, got), PM_OK);
    for (int i = 0; i < 12; i++) {
        uint16_t stored = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
        if (stored != BF16_ROUNDING[i].want) {
            print_error("bf16[%d]: stored 0x%04x, want 0x%04x\n", i, stored,
                        BF16_ROUNDING[i].want);
            fail();
        }
        assert_int_equal(float_bits(got[i]), (uint32_t)BF16_ROUNDING[i].want << 16);
    }

    int32_t ints[5];
    assert_int_equal(st_read_i32(file, "ids", (int64_t[]){5}, 1, ints), PM_OK);
    assert_memory_equal(ints, ids, sizeof ids);
    assert_int_equal(st_read_i32(file, "pos", (int64_t[]){2}, 1, ints), PM_OK);
    assert_int_equal(ints[0], -5);
    assert_int_equal(ints[1], 1234567);
    assert_int_equal(st_read_f32(file, "scale", NULL, 0, got), PM_OK);
    assert_true(got[0] == 0.5f);
    assert_int_equal(st_read_f32(file, "empty", (int64_t[]){0, 4}, 2, NULL), PM_OK);
    assert_int_equal(st_read_f32(file, ODD_NAME, (int64_t[]){1}, 1, got), PM_OK);
    assert_true(got[0] == 42.0f);
    st_close(file);
}

/* The data section starts 8-byte aligned whatever the header length. */
static void test_header_padding(void **state) {
    (void)state;
    char path[256], name[16];
    tmp_path(path, sizeof path, "padding.safetensors");
    const float x = 1.0f;
    for (int len = 1; len <= 9; len++) {
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        st_writer *writer = st_writer_create();
        assert_int_equal(st_writer_add(writer, name, ST_F32, (int64_t[]){1}, 1, &x), PM_OK);
        assert_int_equal(st_writer_write(writer, path), PM_OK);
        st_writer_free(writer);
        size_t size;
        unsigned char *bytes = read_bytes(path, &size);
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | bytes[i];
        assert_int_equal(n % 8, 0);
        assert_int_equal(size, 8 + n + 4);
        assert_int_equal(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}', 1);
        free(bytes);
        st_file *file = NULL;
        assert_int_equal(st_open(&file, path), PM_OK);
        assert_string_equal(st_tensor_at(file, 0)->name, name);
        st_close(file);
    }
}

/* ------------------------------------------------------------ decoding */

/* The value of an IEEE half by its definition, computed arithmetically (not by bits). */
static double f16_reference(uint16_t h) {
    int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
    double magnitude;
    if (exponent == 0) magnitude = ldexp(mantissa, -24);
    else if (exponent == 31) magnitude = mantissa ? NAN : INFINITY;
    else magnitude = ldexp(1024 + mantissa, exponent - 25);
    return sign ? -magnitude : magnitude;
}

static void test_f16_bf16_decoding(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "decode.safetensors");
    static const struct {
        uint16_t h;
        float want;
    } f16[] = {
        {0x3C00, 1.0f},          {0xC000, -2.0f},     {0x7BFF, 65504.0f},
        {0x0001, 0x1p-24f},      {0x8001, -0x1p-24f}, {0x03FF, 0x1.ff8p-15f},
        {0x0400, 0x1p-14f},      {0x3555, 0.333251953125f}, {0x3BFF, 0.99951171875f},
        {0x7C00, INFINITY},      {0xFC00, -INFINITY}, {0x0000, 0.0f},
    };
    static const struct {
        uint16_t h;
        float want;
    } bf16[] = {
        {0x3F80, 1.0f},     {0xC040, -3.0f},      {0x4049, 3.140625f}, {0x7F80, INFINITY},
        {0xFF80, -INFINITY}, {0x0001, 0x1p-133f}, {0x7F7F, 0x1.fep127f}, {0x0000, 0.0f},
    };
    enum { NF = sizeof f16 / sizeof f16[0], NB = sizeof bf16 / sizeof bf16[0] };
    /* Special patterns checked bit by bit: -0, NaNs keep sign and payload. */
    static const uint16_t f16_special[4] = {0x8000, 0x7E00, 0x7D01, 0xFE00};
    static const uint32_t f16_special_bits[4] = {0x80000000, 0x7FC00000, 0x7FA02000, 0xFFC00000};
    static const uint16_t bf16_special[3] = {0x8000, 0x7FC1, 0xFF81};

    uint16_t a[NF + 4], b[NB + 3];
    for (int i = 0; i < NF; i++) a[i] = f16[i].h;
    for (int i = 0; i < 4; i++) a[NF + i] = f16_special[i];
    for (int i = 0; i < NB; i++) b[i] = bf16[i].h;
    for (int i = 0; i < 3; i++) b[NB + i] = bf16_special[i];
    uint16_t *all = malloc(65536 * sizeof *all);
    assert_non_null(all);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;

    st_writer *writer = st_writer_create();
    assert_int_equal(st_writer_add(writer, "h", ST_F16, (int64_t[]){NF + 4}, 1, a), PM_OK);
    assert_int_equal(st_writer_add(writer, "b", ST_BF16, (int64_t[]){NB + 3}, 1, b), PM_OK);
    assert_int_equal(st_writer_add(writer, "all", ST_F16, (int64_t[]){256, 256}, 2, all), 0);
    assert_int_equal(st_writer_write(writer, path), PM_OK);
    st_writer_free(writer);

    st_file *file = NULL;
    assert_int_equal(st_open(&file, path), PM_OK);
    float got[NF + 4];
    assert_int_equal(st_read_f32(file, "h", (int64_t[]){NF + 4}, 1, got), PM_OK);
    for (int i = 0; i < NF; i++)
        if (float_bits(got[i]) != float_bits(f16[i].want)) {
            print_error("f16 0x%04x: got %a, want %a\n", f16[i].h, got[i], f16[i].want);
            fail();
        }
    for (int i = 0; i < 4; i++) assert_int_equal(float_bits(got[NF + i]), f16_special_bits[i]);
    assert_int_equal(st_read_f32(file, "b", (int64_t[]){NB + 3}, 1, got), PM_OK);
    for (int i = 0; i < NB; i++)
        if (float_bits(got[i]) != float_bits(bf16[i].want)) {
            print_error("bf16 0x%04x: got %a, want %a\n", bf16[i].h, got[i], bf16[i].want);
            fail();
        }
    for (int i = 0; i < 3; i++)
        assert_int_equal(float_bits(got[NB + i]), (uint32_t)bf16_special[i] << 16);

    /* Every half value against its arithmetic definition. */
    float *decoded = malloc(65536 * sizeof *decoded);
    assert_non_null(decoded);
    assert_int_equal(st_read_f32(file, "all", (int64_t[]){256, 256}, 2, decoded), PM_OK);
    for (int i = 0; i < 65536; i++) {
        double want = f16_reference((uint16_t)i);
        bool ok = isnan(want) ? isnan(decoded[i]) && !signbit(decoded[i]) == !signbit(want)
                              : float_bits(decoded[i]) == float_bits((float)want);
        if (!ok) {
            print_error("f16 0x%04x: got %a, want %a\n", i, decoded[i], want);
            fail();
        }
    }
    free(decoded);
    free(all);
    st_close(file);
}

/* ------------------------------------------------------------ hand-built file */

static void test_hand_built_file(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "hand.safetensors");
    /* Header order differs from offset order; one extra space makes 8 + N odd, so the data
     * section (and every tensor in it) is misaligned in the reader's buffer. */
    const char *header =
        "{\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"data_offsets\":[0,8],\"shape\":[1,2],\"dtype\":\"F32\",\"extra\":[1]}}\n \t";
    size_t text = strlen(header);
    char padded[512];
    snprintf(padded, sizeof padded, "%s%s", header, (8 + text) % 2 ? "" : " ");
    text = strlen(padded);
    assert_int_equal((8 + text) % 2, 1);
    static const unsigned char data[16] = {
        0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x10, 0xC0, /* a: 1.5f, -2.25f */
        0x07, 0x00, 0x00, 0x00, 0xF7, 0xFF, 0xFF, 0xFF, /* b: 7, -9 */
    };
    unsigned char bytes[600];
    put_u64_le(bytes, text);
    memcpy(bytes + 8, padded, text);
    memcpy(bytes + 8 + text, data, sizeof data);
    write_bytes(path, bytes, 8 + text + sizeof data);

    st_file *file = NULL;
    assert_int_equal(st_open(&file, path), PM_OK);
    assert_int_equal(st_count(file), 2);
    const st_tensor *b = st_tensor_at(file, 0), *a = st_tensor_at(file, 1);
    assert_string_equal(b->name, "b");
    assert_string_equal(a->name, "a");
    assert_int_equal(a->dtype, ST_F32);
    assert_int_equal(b->dtype, ST_I32);
    assert_int_equal(a->rank, 2);
    assert_int_equal(a->shape[0], 1);
    assert_int_equal(a->shape[1], 2);
    assert_int_equal(a->num_bytes, 8);
    assert_int_equal(b->num_bytes, 8);
    /* The offsets map to the right bytes. */
    assert_int_equal((const unsigned char *)b->data - (const unsigned char *)a->data, 8);
    assert_memory_equal(a->data, data, 8);
    assert_memory_equal(b->data, data + 8, 8);
    assert_true((uintptr_t)a->data % 4 != 0);
    assert_string_equal(st_metadata(file, "format"), "pt");

    float f[2];
    int32_t i[2];
    assert_int_equal(st_read_f32(file, "a", (int64_t[]){1, 2}, 2, f), PM_OK);
    assert_true(f[0] == 1.5f && f[1] == -2.25f);
    assert_int_equal(st_read_i32(file, "b", (int64_t[]){2}, 1, i), PM_OK);
    assert_true(i[0] == 7 && i[1] == -9);
    st_close(file);

    /* A file with no tensors at all is valid too. */
    write_st(path, "{}      ", 0);
    assert_int_equal(st_open(&file, path), PM_OK);
    assert_int_equal(st_count(file), 0);
    assert_null(st_find(file, "a"));
    st_close(file);
}

/* ------------------------------------------------------------ hostile files */

#define T1(name, dtype, shape, offsets) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

static void test_hostile_headers(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data_len;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\" \"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4,
         "not valid JSON"},
        {"[1, 2]", 0, "does not start with '{'"},
        {"", 0, "does not start with '{'"},
        {"{} x", 0, "unexpected bytes after the JSON"},
        {"{\"a\x01\":1}", 0, "header byte 3 is a control character"},
        {"{\"\xff\":1}", 0, "not valid UTF-8"},
        {"{\"\xc0\xaf\":1}", 0, "not valid UTF-8"},
        {"{" T1("w", "Q4", "[1]", "[0,4]") "}", 4, "unsupported dtype \"Q4\""},
        {"{" T1("w", "f32", "[1]", "[0,4]") "}", 4, "unsupported dtype \"f32\""},
        {"{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "'w': \"dtype\" is not a string"},
        {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w': missing \"shape\""},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w': missing \"data_offsets\""},
        {"{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "\"dtype\" appears twice"},
        {"{\"w\":5}", 0, "'w': entry is 5, not an object"},
        {"{" T1("w", "F32", "[-1]", "[0,4]") "}", 4, "shape[0] is -1, not a non-negative"},
        {"{" T1("w", "F32", "[2,1.5]", "[0,12]") "}", 12, "shape[1] is 1.5"},
        {"{" T1("w", "F32", "[\"2\"]", "[0,8]") "}", 8, "shape[0] is a string"},
        {"{" T1("w", "F32", "[1e300]", "[0,8]") "}", 8, "shape[0] is 1.0000000000000001e+300"},
        {"{" T1("w", "F32", "3", "[0,12]") "}", 12, "\"shape\" is 3, not an array"},
        {"{" T1("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "rank 9 exceeds"},
        {"{" T1("w", "F32", "[3]", "[0,8]") "}", 8, "shape and byte count mismatch"},
        {"{" T1("w", "F32", "[4294967296,4294967296,4294967296]", "[0,8]") "}", 8,
         "element count overflows"},
        {"{" T1("w", "F32", "[2]", "[0,16]") "}", 8, "ends past the end of the 8-byte data"},
        {"{" T1("w", "F32", "[2]", "[8,0]") "}", 8, "begin > end"},
        {"{" T1("w", "F32", "[2]", "[-4,4]") "}", 8, "two non-negative integers"},
        {"{" T1("w", "F32", "[2]", "[0,8,8]") "}", 8, "two non-negative integers"},
        {"{" T1("w", "F32", "[2]", "[0,8.5]") "}", 8, "two non-negative integers"},
        {"{" T1("w", "F32", "[2]", "{}") "}", 8, "two non-negative integers"},
        {"{" T1("a", "F32", "[2]", "[0,8]") "," T1("b", "F32", "[2]", "[4,12]") "}", 12,
         "'a' (bytes 0..8) and 'b' (bytes 4..12) overlap"},
        {"{" T1("a", "F32", "[2]", "[0,8]") "," T1("b", "F32", "[0]", "[4,4]") "}", 8,
         "overlap"},
        {"{" T1("a", "F32", "[1]", "[0,4]") "," T1("b", "F32", "[1]", "[8,12]") "}", 12,
         "data bytes 4..8 belong to no tensor (gap before 'b')"},
        {"{" T1("a", "F32", "[1]", "[4,8]") "}", 8, "data bytes 0..4 belong to no tensor"},
        {"{" T1("a", "F32", "[1]", "[0,4]") "}", 8, "trailing bytes"},
        {"{" T1("a", "F32", "[1]", "[0,4]") "," T1("a", "F32", "[1]", "[4,8]") "}", 8,
         "tensor name 'a' appears twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "metadata value for key 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":null}}", 0, "is not a string"},
        {"{\"__metadata__\":\"x\"}", 0, "\"__metadata__\" is not an object"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "metadata key 'k' appears twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "two \"__metadata__\""},
    };
    char path[256];
    tmp_path(path, sizeof path, "hostile.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(path, cases[i].header, cases[i].data_len);
        char what[64];
        snprintf(what, sizeof what, "case %zu", i);
        expect_open_fails(path, cases[i].want, what);
    }

    /* Nesting deeper than cJSON allows fails as JSON, without recursing without bound. */
    char deep[4100] = "{\"a\":";
    size_t prefix = strlen(deep);
    memset(deep + prefix, '[', 4000);
    memcpy(deep + prefix + 4000, "}", 2);
    write_st(path, deep, 0);
    expect_open_fails(path, "not valid JSON", "deep nesting");
}

static void test_corrupt_files(void **state) {
    (void)state;
    char path[256], good[256];
    tmp_path(path, sizeof path, "corrupt.safetensors");
    tmp_path(good, sizeof good, "good.safetensors");
    const char *header = "{" T1("a", "F32", "[2]", "[0,8]") "," T1("b", "I32", "[1]", "[8,12]") "}";
    write_st(good, header, 12);
    size_t size;
    unsigned char *bytes = read_bytes(good, &size);
    size_t n = strlen(header);

    write_bytes(path, bytes, 8 + n / 2);
    expect_open_fails(path, "truncated", "truncated in the header");
    write_bytes(path, bytes, size - 1);
    expect_open_fails(path, "truncated", "truncated in the data");
    write_bytes(path, bytes, 3);
    expect_open_fails(path, "shorter than the 8-byte header length", "3-byte file");
    write_bytes(path, bytes, 0);
    expect_open_fails(path, "shorter than the 8-byte header length", "empty file");

    write_raw(path, size, header, 12);
    expect_open_fails(path, "truncated", "header length larger than the file");
    write_raw(path, (uint64_t)1 << 63, header, 12);
    expect_open_fails(path, "exceeds the 100000000-byte limit", "2^63 header length");
    assert_null(strstr(pm_last_error(), "9223372036854775808")); /* the bytes, as a number */
    write_raw(path, UINT64_MAX, header, 12);
    expect_open_fails(path, "exceeds", "2^64-1 header length");
    write_raw(path, 100000001, header, 12);
    expect_open_fails(path, "100000000-byte limit", "header just over the limit");
    /* A length one short leaves '}' as the first data byte: JSON ends early. */
    write_raw(path, n - 1, header, 12);
    expect_open_fails(path, "not valid JSON", "header length one short");

    tmp_path(path, sizeof path, "does_not_exist.safetensors");
    expect_open_fails(path, "cannot open", "missing file");
    expect_open_fails(tmp_dir, "not a regular file", "directory");
    free(bytes);
}

/* A file that is not a safetensors file (say the target of a hostile symbolic link) is
 * refused with a description: no run of its bytes, and not the number its first 8 bytes
 * make, appears in the message. */
static void expect_nothing_quoted(const char *path, const unsigned char *bytes, size_t size,
                                  const char *want) {
    write_bytes(path, bytes, size);
    expect_open_fails(path, want, path);
    char message[1024];
    snprintf(message, sizeof message, "%s", pm_last_error() + strlen(path)); /* the path aside */
    for (size_t i = 0; i + 4 <= size; i++) {
        char run[5];
        memcpy(run, bytes + i, 4);
        run[4] = '\0';
        if (strlen(run) == 4 && strstr(message, run)) fail_msg("the message \"%s\" quotes \"%s\" of the file", message, run);
    }
    uint64_t first = 0;
    for (int i = 7; i >= 0 && size >= 8; i--) first = first << 8 | bytes[i];
    char number[32];
    snprintf(number, sizeof number, "%" PRIu64, first);
    if (size >= 8 && strstr(message, number)) fail_msg("the message \"%s\" quotes the bytes as %s", message, number);
}

static void test_foreign_files_not_quoted(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "foreign.bin");
    static const char secret[] = "pw=hunter2;key=Zq9x7Wv3;id=Kp4Yh8\n";
    expect_nothing_quoted(path, (const unsigned char *)secret, strlen(secret), "not a safetensors file");
    /* a plausible length (19088727) that the file cannot hold, and no header after it */
    static const unsigned char small[] = {0x57, 0x34, 0x23, 0x01, 0, 0, 0, 0, 'Z', 'q', '9', 'x', '7', 'W', 'v'};
    expect_nothing_quoted(path, small, sizeof small, "not a safetensors file");
    /* ASCII text: its first 8 bytes as a length exceed any header */
    static const char text[] = "#!/bin/sh\nexport TOKEN=Zq9x7Wv3Kp4Yh8\n";
    expect_nothing_quoted(path, (const unsigned char *)text, strlen(text), "exceeds the 100000000-byte limit");
}

/* Every proper prefix of a valid file is rejected cleanly; the whole file is accepted. */
static void test_truncation_sweep(void **state) {
    (void)state;
    char good[256], path[256];
    tmp_path(good, sizeof good, "sweep_good.safetensors");
    tmp_path(path, sizeof path, "sweep.safetensors");
    const float x[3] = {1, 2, 3};
    const int32_t k[2] = {4, 5};
    st_writer *writer = st_writer_create();
    assert_int_equal(st_writer_set_metadata(writer, "format", "pt"), PM_OK);
    assert_int_equal(st_writer_add(writer, "x", ST_F32, (int64_t[]){3}, 1, x), PM_OK);
    assert_int_equal(st_writer_add_bf16(writer, "y", (int64_t[]){1, 3}, 2, x), PM_OK);
    assert_int_equal(st_writer_add(writer, "k", ST_I32, (int64_t[]){2}, 1, k), PM_OK);
    assert_int_equal(st_writer_write(writer, good), PM_OK);
    st_writer_free(writer);
    size_t size;
    unsigned char *bytes = read_bytes(good, &size);
    for (size_t len = 0; len <= size; len++) {
        write_bytes(path, bytes, len);
        st_file *file = NULL;
        int rc = st_open(&file, path);
        if (len == size) {
            assert_int_equal(rc, PM_OK);
            assert_int_equal(st_count(file), 3);
        } else if (rc >= 0 || file || !strstr(pm_last_error(), path)) {
            print_error("prefix of %zu/%zu bytes: rc %d, message \"%s\"\n", len, size, rc,
                        pm_last_error());
            fail();
        }
        st_close(file);
    }
    free(bytes);
}

/* Single-byte corruptions of a valid file: each is either rejected with a message or gives
 * tensors whose reads stay in bounds (the sanitizer build checks every read). */
static void test_byte_corruption(void **state) {
    (void)state;
    char good[256], path[256];
    tmp_path(good, sizeof good, "flip_good.safetensors");
    tmp_path(path, sizeof path, "flip.safetensors");
    const char *header = "{\"__metadata__\":{\"m\":\"v\"}," T1("a", "F16", "[2,2]", "[0,8]")
        "," T1("b", "I64", "[1]", "[8,16]") "," T1("c", "BF16", "[2]", "[16,20]") "}";
    write_st(good, header, 20);
    size_t size;
    unsigned char *bytes = read_bytes(good, &size);
    static const unsigned char values[] = {0x00, ' ', '"', '{', '}', '[', ']', ',', ':', '0',
                                           '1',  '9', '-', '.', 'e', '\\', 0x80, 0xFF};
    int accepted = 0, rejected = 0;
    for (size_t pos = 0; pos < 8 + strlen(header); pos++)
        for (size_t v = 0; v < sizeof values; v++) {
            unsigned char saved = bytes[pos];
            if (values[v] == saved) continue;
            bytes[pos] = values[v];
            write_bytes(path, bytes, size);
            bytes[pos] = saved;
            st_file *file = NULL;
            if (st_open(&file, path) != PM_OK) {
                assert_null(file);
                assert_true(strlen(pm_last_error()) > strlen(path));
                rejected++;
                continue;
            }
            accepted++;
            for (int i = 0; i < st_count(file); i++) {
                const st_tensor *t = st_tensor_at(file, i);
                float *f = malloc(t->num_elements * sizeof *f + 1);
                int32_t *k = malloc(t->num_elements * sizeof *k + 1);
                assert_true(f && k);
                int rf = st_read_f32(file, t->name, t->shape, t->rank, f);
                int ri = st_read_i32(file, t->name, t->shape, t->rank, k);
                assert_true(rf == PM_OK || ri == PM_OK || t->dtype == ST_I64);
                free(f);
                free(k);
            }
            st_close(file);
        }
    /* Most corruptions break the header; some (a changed metadata letter) do not. */
    assert_true(rejected > 0);
    assert_true(accepted > 0);
    free(bytes);
}

/* ------------------------------------------------------------ read errors */

static void test_read_errors(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "read_errors.safetensors");
    const float w[6] = {0};
    const int64_t big[3] = {1, -2147483648LL, 2147483648LL};
    st_writer *writer = st_writer_create();
    assert_int_equal(st_writer_add(writer, "layers.3.mlp.gate", ST_F32, (int64_t[]){2, 3}, 2, w),
                     PM_OK);
    assert_int_equal(st_writer_add(writer, "big", ST_I64, (int64_t[]){3}, 1, big), PM_OK);
    assert_int_equal(st_writer_write(writer, path), PM_OK);
    st_writer_free(writer);

    st_file *file = NULL;
    assert_int_equal(st_open(&file, path), PM_OK);
    float out[6];
    int32_t ints[3];
    int rc = st_read_f32(file, "layers.3.mlp.gate", (int64_t[]){3, 2}, 2, out);
    expect_error(rc, "'layers.3.mlp.gate' has shape [2, 3] but [3, 2] was expected", "shape");
    assert_non_null(strstr(pm_last_error(), path));
    rc = st_read_f32(file, "layers.3.mlp.gate", (int64_t[]){6}, 1, out);
    expect_error(rc, "has shape [2, 3] but [6] was expected", "rank");
    rc = st_read_f32(file, "layers.3.mlp.gate", NULL, 0, out);
    expect_error(rc, "but [] was expected", "rank 0");
    rc = st_read_f32(file, "layers.3.mlp.gat", (int64_t[]){2, 3}, 2, out);
    expect_error(rc, "no tensor named 'layers.3.mlp.gat'", "missing");
    rc = st_read_i32(file, "layers.3.mlp.gate", (int64_t[]){2, 3}, 2, ints);
    expect_error(rc, "'layers.3.mlp.gate' is F32, not an integer tensor", "i32 of f32");
    rc = st_read_f32(file, "big", (int64_t[]){3}, 1, out);
    expect_error(rc, "'big' is I64, not floating point", "f32 of i64");
    rc = st_read_i32(file, "big", (int64_t[]){3}, 1, ints);
    expect_error(rc, "'big': I64 element 2 = 2147483648 does not fit in int32", "i64 range");
    rc = st_read_f32(file, "layers.3.mlp.gate", (int64_t[]){2, 3}, 2, NULL);
    expect_error(rc, "out is NULL", "NULL out");
    rc = st_read_f32(file, "layers.3.mlp.gate", (int64_t[]){2, 3}, 9, out);
    expect_error(rc, "rank 9", "rank 9");
    assert_int_equal(st_read_f32(file, "layers.3.mlp.gate", (int64_t[]){2, 3}, 2, out), PM_OK);
    st_close(file);
}

/* ------------------------------------------------------------ writer errors */

static void test_writer_errors(void **state) {
    (void)state;
    const float x[4] = {1, 2, 3, 4};
    st_writer *writer = st_writer_create();
    assert_non_null(writer);
    expect_error(st_writer_add(NULL, "a", ST_F32, (int64_t[]){4}, 1, x), "writer is NULL",
                 "NULL writer");
    expect_error(st_writer_add(writer, "", ST_F32, (int64_t[]){4}, 1, x), "empty", "empty name");
    expect_error(st_writer_add(writer, "__metadata__", ST_F32, (int64_t[]){4}, 1, x),
                 "reserved", "reserved name");
    expect_error(st_writer_add(writer, "bad\xff", ST_F32, (int64_t[]){4}, 1, x),
                 "not valid UTF-8", "bad UTF-8");
    expect_error(st_writer_add(writer, "a", (st_dtype)99, (int64_t[]){4}, 1, x),
                 "'a': invalid dtype 99", "dtype");
    expect_error(st_writer_add(writer, "a", ST_F32, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 9,
                               x),
                 "'a': rank 9", "rank");
    expect_error(st_writer_add(writer, "a", ST_F32, (int64_t[]){2, -2}, 2, x),
                 "'a': shape[1] = -2 is out of range", "negative shape");
    expect_error(st_writer_add(writer, "a", ST_F32, (int64_t[]){4}, 1, NULL), "'a': data is NULL",
                 "NULL data");
    expect_error(st_writer_add(writer, "a", ST_F32, NULL, 1, x), "'a': shape is NULL",
                 "NULL shape");
    expect_error(st_writer_add_bf16(writer, "a", (int64_t[]){INT64_MAX}, 1, x), "out of range",
                 "huge shape");
    expect_error(st_writer_set_metadata(writer, "k", NULL), "NULL", "NULL metadata");
    assert_int_equal(st_writer_add(writer, "a", ST_F32, (int64_t[]){4}, 1, x), PM_OK);
    expect_error(st_writer_add_bf16(writer, "a", (int64_t[]){4}, 1, x), "'a' was already added",
                 "duplicate");

    /* The failed calls left no trace. */
    char path[256];
    tmp_path(path, sizeof path, "writer_errors.safetensors");
    assert_int_equal(st_writer_write(writer, path), PM_OK);
    st_file *file = NULL;
    assert_int_equal(st_open(&file, path), PM_OK);
    assert_int_equal(st_count(file), 1);
    assert_null(st_metadata(file, "k"));
    st_close(file);

    tmp_path(path, sizeof path, "no/such/dir/x.safetensors");
    int rc = st_writer_write(writer, path);
    expect_error(rc, "cannot create", "missing directory");
    assert_non_null(strstr(pm_last_error(), path));
    /* /dev/full accepts the open and fails the write: the error surfaces at fflush. */
    if (access("/dev/full", W_OK) == 0) {
        rc = st_writer_write(writer, "/dev/full");
        expect_error(rc, "/dev/full: write failed", "disk full");
    }
    st_writer_free(writer);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_header_padding),
        cmocka_unit_test(test_f16_bf16_decoding),
        cmocka_unit_test(test_hand_built_file),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_foreign_files_not_quoted),
        cmocka_unit_test(test_truncation_sweep),
        cmocka_unit_test(test_byte_corruption),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_writer_errors),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
