/* The numbers and pax records of tar headers, shared by export and import (archive_int.h). */
#include <stdio.h>
#include <string.h>

#include "storage/archive_int.h"

void tar_number_put(unsigned char *field, size_t width, uint64_t v)
{
    /* octal with a terminating NUL holds width - 1 digits */
    if (width - 1 >= 22 || v >> (3 * (width - 1)) == 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%0*llo", (int)width - 1, (unsigned long long)v);
        memcpy(field, buf, width);
        return;
    }
    /* past it (a blob of 8 GiB or more in the 12-byte size field): base-256, big-endian,
     * the first byte's top bit set, as GNU tar, bsdtar, Go and Python read it */
    memset(field, 0, width);
    field[0] = 0x80;
    for (size_t i = 0; i < 8 && i < width - 1; i++)
        field[width - 1 - i] = (unsigned char)(v >> (8 * i));
}

bool tar_number_get(const unsigned char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n > 0 && p[0] == 0x80) {
        for (size_t i = 1; i < n; i++) {
            if (v >> 56 != 0)
                return false; /* past 64 bits */
            v = v << 8 | p[i];
        }
        *out = v;
        return true;
    }
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v >> 61 != 0)
            return false;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    /* what follows the digits: NUL or space padding only */
    for (; i < n; i++)
        if (p[i] != '\0' && p[i] != ' ')
            return false;
    *out = v;
    return digits > 0 || n == 0 || p[0] == '\0';
}

size_t tar_pax_record(char *out, size_t cap, const char *key, const char *value)
{
    /* "LEN key=value\n", LEN counting itself */
    size_t body = 1 + strlen(key) + 1 + strlen(value) + 1;
    for (size_t digits = 1; digits < 20; digits++) {
        size_t len = body + digits;
        char num[24];
        int nd = snprintf(num, sizeof(num), "%zu", len);
        if (nd < 0 || (size_t)nd != digits)
            continue;
        if (len >= cap)
            return 0;
        snprintf(out, cap, "%s %s=%s\n", num, key, value);
        return len;
    }
    return 0;
}

bool tar_decimal_get(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
