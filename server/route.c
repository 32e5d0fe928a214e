#include <string.h>

#include "server/route.h"

static const char V2[] = "/v2/";

/* Position of the '/' before the segment that ends at `end` (exclusive), or -1. */
static long seg_start(const char *s, long end, long floor)
{
    for (long i = end - 1; i >= floor; i--)
        if (s[i] == '/')
            return i;
    return -1;
}

static int seg_is(const char *s, long from, long to, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(to - from) == n && memcmp(s + from, word, n) == 0;
}

void route_parse(const char *path, struct route *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = ROUTE_NONE;
    size_t plen = strlen(path);
    if (strcmp(path, "/auth/token") == 0) {
        out->kind = ROUTE_TOKEN;
        return;
    }
    if (strcmp(path, "/v2") == 0 || strcmp(path, "/v2/") == 0) {
        out->kind = ROUTE_BASE;
        return;
    }
    if (plen < sizeof(V2) || strncmp(path, V2, sizeof(V2) - 1) != 0)
        return;
    if (strcmp(path, "/v2/_catalog") == 0) {
        out->kind = ROUTE_CATALOG;
        return;
    }
    const long floor = (long)sizeof(V2) - 2; /* index of the '/' after v2 */
    long end = (long)plen;
    /* the last segment: a reference, or empty for ".../blobs/uploads/" */
    long s1 = seg_start(path, end, floor);
    if (s1 <= floor)
        return;
    long s2 = seg_start(path, s1, floor);
    if (s2 < floor)
        return;
    long s3 = s2 > floor ? seg_start(path, s2, floor) : -1;
    enum route_kind kind = ROUTE_NONE;
    long name_end = -1;
    if (seg_is(path, s2 + 1, s1, "tags") && seg_is(path, s1 + 1, end, "list")) {
        kind = ROUTE_TAGS;
        name_end = s2;
    } else if (s3 >= floor && seg_is(path, s3 + 1, s2, "blobs") &&
               seg_is(path, s2 + 1, s1, "uploads")) {
        kind = end == s1 + 1 ? ROUTE_UPLOAD_START : ROUTE_UPLOAD;
        name_end = s3;
    } else if (seg_is(path, s2 + 1, s1, "blobs") && seg_is(path, s1 + 1, end, "uploads")) {
        kind = ROUTE_UPLOAD_START; /* "/blobs/uploads" without the trailing slash */
        name_end = s2;
        s1 = end;
    } else if (seg_is(path, s2 + 1, s1, "manifests")) {
        kind = ROUTE_MANIFEST;
        name_end = s2;
    } else if (seg_is(path, s2 + 1, s1, "blobs")) {
        kind = ROUTE_BLOB;
        name_end = s2;
    } else if (seg_is(path, s2 + 1, s1, "referrers")) {
        kind = ROUTE_REFERRERS;
        name_end = s2;
    }
    if (kind == ROUTE_NONE || name_end <= floor + 1)
        return;
    out->kind = kind;
    out->name = path + floor + 1;
    out->name_len = (size_t)(name_end - floor - 1);
    if (kind != ROUTE_TAGS && kind != ROUTE_UPLOAD_START) {
        out->ref = path + s1 + 1;
        out->ref_len = (size_t)(end - s1 - 1);
    }
}

const char *route_label(enum route_kind kind)
{
    switch (kind) {
    case ROUTE_NONE:
        return "none";
    case ROUTE_BASE:
        return "base";
    case ROUTE_CATALOG:
        return "catalog";
    case ROUTE_TAGS:
        return "tags";
    case ROUTE_MANIFEST:
        return "manifest";
    case ROUTE_BLOB:
        return "blob";
    case ROUTE_UPLOAD_START:
        return "upload_start";
    case ROUTE_UPLOAD:
        return "upload";
    case ROUTE_REFERRERS:
        return "referrers";
    case ROUTE_TOKEN:
        return "token";
    }
    return "none";
}
