/*
 * Fuzzes the API router and the validators the server applies to what it returns: the input is
 * a request path (unescaped as libmicrohttpd's callback does, then NUL-terminated); the name and
 * the reference go through name_valid, tag_valid, upload_id_valid and digest_parse, each on an
 * exact-size copy so a validator reading past its length is caught.
 */
#include <stdbool.h>

#include "server/httpparse.h"
#include "server/route.h"
#include "storage/digest.h"
#include "storage/names.h"
#include "tests/fuzz/fuzz.h"

static bool has_name(enum route_kind k)
{
    return k == ROUTE_TAGS || k == ROUTE_MANIFEST || k == ROUTE_BLOB || k == ROUTE_UPLOAD_START ||
           k == ROUTE_UPLOAD || k == ROUTE_REFERRERS;
}

static bool has_ref(enum route_kind k)
{
    return k == ROUTE_MANIFEST || k == ROUTE_BLOB || k == ROUTE_UPLOAD || k == ROUTE_REFERRERS;
}

/* Every validator on one slice, with the invariants their headers promise. */
static void validate(const char *p, size_t len)
{
    char *s = fuzz_memdup(p, len);
    if (name_valid(s, len)) {
        FUZZ_CHECK(len >= 1 && len <= NAME_MAX_LEN);
        FUZZ_CHECK(s[0] != '/' && s[len - 1] != '/');
        FUZZ_CHECK(memchr(s, '\0', len) == NULL);
    }
    if (tag_valid(s, len)) {
        FUZZ_CHECK(len >= 1 && len <= TAG_MAX_LEN);
        FUZZ_CHECK(memchr(s, '/', len) == NULL && memchr(s, ':', len) == NULL);
    }
    if (upload_id_valid(s, len))
        FUZZ_CHECK(len == UPLOAD_ID_LEN);
    struct digest d;
    if (digest_parse(&d, s, len) == STORE_OK) {
        /* canonical form: the string itself, and only the supported algorithms' lengths */
        FUZZ_CHECK(strlen(d.str) == len && memcmp(d.str, s, len) == 0);
        size_t hex = strlen(digest_hex(&d));
        FUZZ_CHECK(hex == (d.alg == DIGEST_SHA256 ? 64u : 128u));
        FUZZ_CHECK(strncmp(d.str, digest_alg_name(d.alg), 6) == 0 && d.str[6] == ':');
        /* a digest names a file: it must never look like a path */
        FUZZ_CHECK(memchr(s, '/', len) == NULL && memchr(s, '.', len) == NULL);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = fuzz_strdup(data, size);
    size_t plen = url_unescape(path);
    FUZZ_CHECK(plen == strlen(path) && plen <= size);

    struct route r;
    route_parse(path, &r);
    FUZZ_CHECK(route_label(r.kind) != NULL);
    const char *end = path + plen;
    if (has_name(r.kind)) {
        /* /v2/<name>/...: the name is a non-empty slice right after "/v2/", before a '/' */
        FUZZ_CHECK(r.name == path + 4 && r.name_len > 0);
        FUZZ_CHECK(r.name + r.name_len < end && r.name[r.name_len] == '/');
        validate(r.name, r.name_len);
    } else {
        FUZZ_CHECK(r.name == NULL && r.name_len == 0);
    }
    if (has_ref(r.kind)) {
        FUZZ_CHECK(r.ref != NULL && r.ref > r.name + r.name_len && r.ref + r.ref_len == end);
        FUZZ_CHECK(memchr(r.ref, '/', r.ref_len) == NULL);
        validate(r.ref, r.ref_len);
    } else {
        FUZZ_CHECK(r.ref == NULL && r.ref_len == 0);
    }
    if (r.kind == ROUTE_UPLOAD)
        FUZZ_CHECK(r.ref_len > 0);

    /* the validators on the whole input too, which need not hold a route at all */
    validate((const char *)data, size);
    free(path);
    return 0;
}
