/*
 * Unit tests of the server's upload session cache: sessions in use and idle handles are
 * counted apart, so neither crowds out the other, and "in use by another request" is told
 * apart from "the server is at capacity".
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/http.h"
#include "tests/check.h"

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void make_id(char *out, unsigned n)
{
    snprintf(out, UPLOAD_ID_LEN + 1, "%032x", n);
}

/* Takes session n, creating its data file the first time. */
static struct upload *take(struct upload_cache *c, struct blobstore *bs, unsigned n)
{
    char id[UPLOAD_ID_LEN + 1];
    make_id(id, n);
    struct upload *u = NULL;
    bool in_use = true;
    bool create = !blobstore_upload_present(bs, id);
    CHECK_INT(upload_cache_acquire(c, bs, id, DIGEST_SHA256, create, &u, &in_use), ==, STORE_OK);
    CHECK(u != NULL);
    return u;
}

static enum store_err try_take(struct upload_cache *c, struct blobstore *bs, unsigned n,
                               bool *in_use)
{
    char id[UPLOAD_ID_LEN + 1];
    make_id(id, n);
    struct upload *u = NULL;
    return upload_cache_acquire(c, bs, id, DIGEST_SHA256, !blobstore_upload_present(bs, id), &u,
                                in_use);
}

/* Two sessions in use at most: a third is refused as "at capacity", a second request on a
 * session in use as "in use"; a release makes room. */
static void test_busy_bound(struct blobstore *bs)
{
    struct upload_cache *c = NULL;
    CHECK_INT(upload_cache_new(&c, 2), ==, STORE_OK);
    struct upload *a = take(c, bs, 1), *b = take(c, bs, 2);
    bool in_use = true;
    CHECK_INT(try_take(c, bs, 3, &in_use), ==, STORE_EBUSY);
    CHECK(!in_use);
    CHECK_INT(try_take(c, bs, 1, &in_use), ==, STORE_EBUSY);
    CHECK(in_use);
    CHECK_INT(upload_write(a, "abc", 3), ==, STORE_OK);
    upload_cache_release(c, a, true);
    CHECK_INT(upload_cache_acked(c, "00000000000000000000000000000001"), ==, 3);
    struct upload *d = take(c, bs, 3);
    /* the idle handle of session 1 is kept while two others are in use */
    CHECK_INT(try_take(c, bs, 1, &in_use), ==, STORE_EBUSY);
    CHECK(!in_use);
    upload_cache_release(c, b, false);
    a = take(c, bs, 1);
    CHECK_INT(upload_offset(a), ==, 3);
    upload_cache_release(c, a, true);
    upload_close(upload_cache_detach(c, d));
    upload_cache_free(c);
}

/* 300 idle sessions and then 300 in use: each is taken and given back in turn. */
static void test_many(struct blobstore *bs)
{
    enum { N = 300 };
    struct upload_cache *c = NULL;
    CHECK_INT(upload_cache_new(&c, N), ==, STORE_OK);
    for (unsigned i = 0; i < N; i++)
        upload_cache_release(c, take(c, bs, 100 + i), true);
    static struct upload *held[N];
    for (unsigned i = 0; i < N; i++)
        held[i] = take(c, bs, 100 + i);
    bool in_use = false;
    CHECK_INT(try_take(c, bs, 100, &in_use), ==, STORE_EBUSY);
    CHECK(in_use);
    for (unsigned i = 0; i < N; i++)
        upload_cache_release(c, held[i], true);
    for (unsigned i = 0; i < N; i++)
        upload_cache_release(c, take(c, bs, 100 + i), true);
    upload_cache_free(c);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ocireg-unit-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    struct blobstore *bs = NULL;
    CHECK_INT(blobstore_open(&bs, tmpdir), ==, STORE_OK);
    fprintf(stderr, "-- test_busy_bound\n");
    test_busy_bound(bs);
    fprintf(stderr, "-- test_many\n");
    test_many(bs);
    blobstore_close(bs);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
