/*
 * Fuzzes the numeric header parsers: parse_u64 (on an exact-size copy, checked against
 * strtoull), parse_content_range, parse_range and url_unescape. The first 8 input bytes, when
 * there are 8, are the body size parse_range is asked about; the rest is the header value.
 */
#include <errno.h>
#include <stdbool.h>

#include "server/httpparse.h"
#include "tests/fuzz/fuzz.h"

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static void check_u64(const uint8_t *data, size_t size)
{
    char *s = fuzz_memdup(data, size);
    uint64_t v = 0;
    bool ok = parse_u64(s, size, &v);
    /* the reference: strtoull on a NUL-terminated copy, digits only */
    bool want = size > 0 && size <= 20 && all_digits(s, size);
    if (want) {
        char *z = fuzz_strdup(data, size);
        errno = 0;
        unsigned long long ref = strtoull(z, NULL, 10);
        want = errno != ERANGE;
        if (ok && want)
            FUZZ_CHECK(v == ref);
        free(z);
    }
    FUZZ_CHECK(ok == want);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t body = 0;
    if (size >= 8) {
        for (int i = 0; i < 8; i++)
            body = body << 8 | data[i];
        /* small sizes are the interesting ones most of the time */
        if (data[0] & 0x80)
            body &= 0xffff;
    }
    const uint8_t *hdr = size >= 8 ? data + 8 : data;
    size_t hlen = size >= 8 ? size - 8 : size;

    check_u64(hdr, hlen);

    char *s = fuzz_strdup(hdr, hlen);
    uint64_t start = 0, end = 0;
    if (parse_content_range(s, &start, &end))
        FUZZ_CHECK(start <= end && end < UINT64_MAX);

    uint64_t first = 0, len = 0;
    enum range_result rr = parse_range(s, body, &first, &len);
    FUZZ_CHECK(rr == RANGE_NONE || rr == RANGE_OK || rr == RANGE_UNSATISFIABLE);
    if (rr == RANGE_OK) {
        /* a range that can be served: non-empty and inside the body */
        FUZZ_CHECK(len >= 1 && first < body && len <= body - first);
    }
    FUZZ_CHECK(parse_range(NULL, body, &first, &len) == RANGE_NONE);

    /* decoding only shrinks, and never leaves a NUL that would cut the string short */
    size_t before = strlen(s);
    size_t n = url_unescape(s);
    FUZZ_CHECK(n == strlen(s) && n <= before);
    free(s);
    return 0;
}
