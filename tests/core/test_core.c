/* test_core.c - unit tests of core/: UTF-8 validation against the well-formed byte table of
 * the Unicode standard (table 3-7), the error record, the byte buffer. fj_fmt_repr is checked
 * against Python itself by fmt_repr.py. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/utf8.h"

/* Reference: a byte-at-a-time decoder written straight from table 3-7. */
static bool reference_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else
            return false;
        if (i + (size_t)len > n)
            return false;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += (size_t)len;
    }
    return true;
}

static void test_utf8_against_reference(void)
{
    /* Every 1- and 2-byte string, every 3-byte string with a lead byte >= 0xC0, and random
     * longer strings with a bias towards high bytes. */
    uint8_t s[16];
    for (int a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        CHECK(fj_utf8_valid(s, 1, NULL) == reference_valid(s, 1));
        for (int b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            CHECK(fj_utf8_valid(s, 2, NULL) == reference_valid(s, 2));
            if (a < 0xC0)
                continue;
            for (int c = 0x70; c < 0xC8; c++) {
                s[2] = (uint8_t)c;
                if (fj_utf8_valid(s, 3, NULL) != reference_valid(s, 3)) {
                    CHECK(!"3-byte disagreement");
                    return;
                }
            }
        }
    }
    uint32_t x = 99;
    for (int r = 0; r < 200000; r++) {
        size_t n = 1 + r % 16;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            uint8_t v = (uint8_t)(x >> 16);
            s[i] = (x >> 28) & 1 ? v : (uint8_t)(0x80 | (v & 0x7F));
        }
        size_t off = 999;
        bool ok = fj_utf8_valid(s, n, &off);
        CHECK(ok == reference_valid(s, n));
        if (!ok) /* the prefix before the reported offset is valid */
            CHECK(off < n && reference_valid(s, off));
    }
    CHECK_EQ_U(fj_utf8_count("a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80", 10), 4);
}

static void test_err_first_wins(void)
{
    struct fj_err err = {0};
    CHECK(fj_err_set(&err, FJ_ERR_IO, "first %d", 1) == FJ_ERR_IO);
    CHECK(fj_err_set(&err, FJ_ERR_NOMEM, "second") == FJ_ERR_NOMEM);
    CHECK(err.code == FJ_ERR_IO);
    CHECK_STR(err.msg, "first 1");
    CHECK(fj_err_set(NULL, FJ_ERR_IO, "ignored") == FJ_ERR_IO);
    fj_err_clear(&err);
    CHECK(err.code == FJ_OK && err.msg[0] == '\0');
    CHECK_STR(fj_code_name(FJ_ERR_UTF8), "utf8");
}

static void test_buf(void)
{
    struct fj_buf b = {0};
    for (int i = 0; i < 1000; i++)
        CHECK(fj_buf_printf(&b, "%d,", i) == 0);
    CHECK(b.len == strlen(b.data));
    CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
    CHECK(fj_buf_append(&b, "", 0) == 0);
    fj_buf_free(&b);
    fj_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
}

int main(int argc, char **argv)
{
    /* `test_core --repr`: print fj_fmt_repr of each hex bit pattern on stdin (fmt_repr.py). */
    if (argc > 1 && strcmp(argv[1], "--repr") == 0) {
        char line[64];
        while (fgets(line, sizeof line, stdin)) {
            unsigned long long bits = strtoull(line, NULL, 16);
            double x;
            memcpy(&x, &bits, sizeof x);
            char out[FJ_FMT_REPR_MAX];
            printf("%s\n", fj_fmt_repr(x, out));
        }
        return 0;
    }
    RUN(test_utf8_against_reference);
    RUN(test_err_first_wins);
    RUN(test_buf);
    return TEST_DONE();
}
