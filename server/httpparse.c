#include <string.h>

#include "server/httpparse.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool parse_content_range(const char *s, uint64_t *start, uint64_t *end)
{
    if (strncmp(s, "bytes=", 6) == 0 || strncmp(s, "bytes ", 6) == 0)
        s += 6;
    const char *dash = strchr(s, '-');
    if (dash == NULL)
        return false;
    uint64_t a, b;
    if (!parse_u64(s, (size_t)(dash - s), &a) || !parse_u64(dash + 1, strlen(dash + 1), &b))
        return false;
    /* end + 1 must not wrap: a chunk of 2^64 bytes is no chunk */
    if (a > b || b == UINT64_MAX)
        return false;
    *start = a;
    *end = b;
    return true;
}

enum range_result parse_range(const char *hdr, uint64_t size, uint64_t *first, uint64_t *len)
{
    if (hdr == NULL)
        return RANGE_NONE;
    while (*hdr == ' ')
        hdr++;
    if (strncmp(hdr, "bytes=", 6) != 0)
        return RANGE_NONE;
    const char *spec = hdr + 6;
    if (strchr(spec, ',') != NULL)
        return RANGE_NONE;
    size_t sl = strlen(spec);
    while (sl > 0 && spec[sl - 1] == ' ')
        sl--;
    const char *dash = memchr(spec, '-', sl);
    if (dash == NULL)
        return RANGE_NONE;
    size_t alen = (size_t)(dash - spec), blen = sl - alen - 1;
    uint64_t a, b;
    if (alen == 0) {
        /* suffix range: the last b bytes */
        if (!parse_u64(dash + 1, blen, &b))
            return RANGE_NONE;
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        if (b > size)
            b = size;
        *first = size - b;
        *len = b;
        return RANGE_OK;
    }
    if (!parse_u64(spec, alen, &a))
        return RANGE_NONE;
    if (blen == 0) {
        b = size == 0 ? 0 : size - 1;
    } else {
        if (!parse_u64(dash + 1, blen, &b))
            return RANGE_NONE;
        if (b < a)
            return RANGE_UNSATISFIABLE; /* an inverted range can never be served */
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *len = b - a + 1;
    return RANGE_OK;
}

size_t url_unescape(char *s)
{
    char *out = s;
    for (const char *in = s; *in != '\0'; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = hexval(in[1])) >= 0 && (lo = hexval(in[2])) >= 0 &&
            (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}
