/* Unit tests of the storage module: validators, digests, manifests, blob store, index. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "storage/archive_int.h"
#include "storage/blobstore.h"
#include "storage/digest.h"
#include "storage/index.h"
#include "storage/manifest.h"
#include "storage/names.h"
#include "tests/check.h"

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void fresh_dir(void)
{
    if (tmpdir[0] != '\0')
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ocireg-unit-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
}

#define S(x) (x), strlen(x)

static void test_names(void)
{
    CHECK(name_valid(S("a")));
    CHECK(name_valid(S("library/ubuntu")));
    CHECK(name_valid(S("a.b_c__d---e/f0")));
    CHECK(!name_valid(S("")));
    CHECK(!name_valid(S("A")));
    CHECK(!name_valid(S("a//b")));
    CHECK(!name_valid(S("/a")));
    CHECK(!name_valid(S("a/")));
    CHECK(!name_valid(S("a/../b")));
    CHECK(!name_valid(S("a/./b")));
    CHECK(!name_valid(S("..")));
    CHECK(!name_valid(S("a___b")));
    CHECK(!name_valid(S("a_")));
    CHECK(!name_valid(S("-a")));
    CHECK(!name_valid(S("a%2fb")));
    CHECK(!name_valid("a\0b", 3));
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    CHECK(name_valid(longname, 255));
    CHECK(!name_valid(longname, 256));

    CHECK(tag_valid(S("latest")));
    CHECK(tag_valid(S("_x.Y-1")));
    CHECK(!tag_valid(S(".x")));
    CHECK(!tag_valid(S("-x")));
    CHECK(!tag_valid(S("")));
    CHECK(!tag_valid(S("a/b")));
    CHECK(!tag_valid(S("a:b")));
    CHECK(tag_valid(longname, 128));
    CHECK(!tag_valid(longname, 129));

    char id[UPLOAD_ID_LEN + 1];
    CHECK(upload_id_new(id));
    CHECK(upload_id_valid(id, strlen(id)));
    CHECK(!upload_id_valid(S("../../etc/passwd")));
    CHECK(!upload_id_valid(S("0123456789ABCDEF0123456789abcdef")));
    CHECK(!upload_id_valid(id, strlen(id) - 1));
}

static void test_digests(void)
{
    struct digest d;
    const char *e = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    CHECK_INT(digest_parse(&d, S(e)), ==, STORE_OK);
    CHECK_STR(d.str, e);
    CHECK_STR(digest_hex(&d), e + 7);
    struct digest got;
    CHECK_INT(digest_of(DIGEST_SHA256, "", 0, &got), ==, STORE_OK);
    CHECK(digest_equal(&got, &d));
    CHECK_INT(digest_of(DIGEST_SHA512, "", 0, &got), ==, STORE_OK);
    CHECK(strncmp(got.str, "sha512:cf83e1357eefb8bd", 23) == 0);
    CHECK_INT(strlen(got.str), ==, 7 + 128);

    CHECK_INT(digest_parse(&d, S("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")),
              ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S("sha256:abc")), ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S("sha256:../../../../etc/passwd")), ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S("md5:d41d8cd98f00b204e9800998ecf8427e")), ==, STORE_ENOENT);
    CHECK_INT(digest_parse(&d, S("sha256")), ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S(":abc")), ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S("sha256:")), ==, STORE_EINVAL);
    CHECK_INT(digest_parse(&d, S("Sha256:abc")), ==, STORE_EINVAL);

    struct hasher *h = hasher_new(DIGEST_SHA256);
    CHECK(h != NULL);
    CHECK_INT(hasher_update(h, "hel", 3), ==, STORE_OK);
    CHECK_INT(hasher_update(h, "lo", 2), ==, STORE_OK);
    CHECK_INT(hasher_peek(h, &got), ==, STORE_OK);
    CHECK_STR(got.str, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    hasher_free(h);
}

static const char *const cfg_dg =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

static void test_manifest_parse(void)
{
    struct manifest_info info;
    const char *why;
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"a/b\","
             "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"x/y\",\"digest\":\"%s\","
             "\"size\":2},{\"mediaType\":\"application/vnd.oci.image.layer.nondistributable.v1."
             "tar\",\"digest\":\"%s\",\"size\":7}],\"subject\":{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":1}}",
             MT_OCI_MANIFEST, cfg_dg, cfg_dg, cfg_dg, MT_OCI_MANIFEST, cfg_dg);
    CHECK_INT(manifest_parse(NULL, S(buf), &info, &why), ==, STORE_OK);
    CHECK_STR(info.media_type, MT_OCI_MANIFEST);
    CHECK_STR(info.artifact_type, "a/b");
    CHECK_INT(info.nrefs, ==, 3);
    CHECK(!info.refs[0].optional && !info.refs[1].optional && info.refs[2].optional);
    CHECK(info.has_subject);
    manifest_info_free(&info);

    /* media type disagreeing with Content-Type */
    CHECK_INT(manifest_parse(MT_OCI_INDEX, S(buf), &info, &why), ==, STORE_EINVAL);

    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":3}]}",
             MT_OCI_INDEX, MT_OCI_MANIFEST, cfg_dg);
    CHECK_INT(manifest_parse(MT_OCI_INDEX "; charset=utf-8", S(buf), &info, &why), ==, STORE_OK);
    CHECK(info.is_index);
    CHECK_INT(info.nrefs, ==, 1);
    CHECK(info.refs[0].is_manifest);
    manifest_info_free(&info);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"schemaVersion\":2,",
        "{\"schemaVersion\":3,\"config\":{}}",
        "{\"schemaVersion\":2,\"schemaVersion\":2,\"config\":{}}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:1\","
        "\"size\":1}}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:"
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":-1}}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        CHECK_INT(manifest_parse(NULL, S(bad[i]), &info, &why), ==, STORE_EINVAL);
        CHECK(why != NULL);
    }
    CHECK_INT(manifest_parse(NULL, S("{\"schemaVersion\":1,\"fsLayers\":[]}"), &info, &why), ==,
              STORE_ENOENT);
    CHECK_INT(manifest_parse("application/x-other", S("{\"schemaVersion\":2,\"mediaType\":\"x/y\","
                                                       "\"config\":{}}"),
                             &info, &why),
              ==, STORE_ENOENT);

    /* a million values is refused before it is parsed */
    size_t many = 1000000;
    char *flat = malloc(2 * many + 2);
    CHECK(flat != NULL);
    flat[0] = '[';
    for (size_t i = 0; i < many; i++) {
        flat[1 + 2 * i] = '0';
        flat[2 + 2 * i] = ',';
    }
    flat[2 * many] = ']';
    CHECK_INT(manifest_parse(NULL, flat, 2 * many + 1, &info, &why), ==, STORE_EINVAL);
    CHECK_STR(why, "manifest has too many elements");
    free(flat);

    /* nesting deeper than the parser allows is refused, not a crash */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    CHECK(deep != NULL);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    CHECK_INT(manifest_parse(NULL, deep, 2 * depth, &info, &why), ==, STORE_EINVAL);
    free(deep);
}

static struct blobstore *open_store(void)
{
    struct blobstore *bs = NULL;
    CHECK_INT(blobstore_open(&bs, tmpdir), ==, STORE_OK);
    return bs;
}

static void test_uploads(void)
{
    fresh_dir();
    struct blobstore *bs = open_store();
    char id[UPLOAD_ID_LEN + 1];
    CHECK(upload_id_new(id));
    struct upload *u = NULL;
    CHECK_INT(upload_open(bs, id, DIGEST_SHA256, true, &u), ==, STORE_OK);
    CHECK_INT(upload_write(u, "hel", 3), ==, STORE_OK);
    CHECK_INT(upload_mark(u), ==, STORE_OK);
    CHECK_INT(upload_write(u, "XXXX", 4), ==, STORE_OK);
    CHECK_INT(upload_rollback(u), ==, STORE_OK);
    CHECK_INT(upload_offset(u), ==, 3);
    upload_close(u);

    /* reopening rehashes what is on disk: a session survives a restart */
    CHECK_INT(upload_open(bs, id, DIGEST_SHA256, false, &u), ==, STORE_OK);
    CHECK_INT(upload_offset(u), ==, 3);
    CHECK_INT(upload_write(u, "lo", 2), ==, STORE_OK);
    struct digest wrong, right;
    CHECK_INT(digest_of(DIGEST_SHA256, "hellx", 5, &wrong), ==, STORE_OK);
    CHECK_INT(upload_commit(u, &wrong), ==, STORE_EDIGEST);
    int fd;
    uint64_t size;
    CHECK_INT(blobstore_blob_open(bs, &wrong, &fd, &size), ==, STORE_ENOENT);
    /* committing with another algorithm rehashes the data */
    CHECK_INT(digest_of(DIGEST_SHA512, "hello", 5, &right), ==, STORE_OK);
    CHECK_INT(upload_commit(u, &right), ==, STORE_OK);
    upload_close(u);
    CHECK_INT(blobstore_blob_open(bs, &right, &fd, &size), ==, STORE_OK);
    CHECK_INT(size, ==, 5);
    char buf[8] = {0};
    CHECK_INT(read(fd, buf, sizeof(buf)), ==, 5);
    CHECK_STR(buf, "hello");
    close(fd);
    /* the session's data file is gone */
    CHECK_INT(upload_open(bs, id, DIGEST_SHA256, false, &u), ==, STORE_ENOENT);
    CHECK_INT(upload_open(bs, "../../x", DIGEST_SHA256, true, &u), ==, STORE_EINVAL);
    blobstore_close(bs);
}

static struct index *open_index(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/index", tmpdir);
    struct index *idx = NULL;
    CHECK_INT(index_open(&idx, dir, 64u << 20), ==, STORE_OK);
    return idx;
}

static int collect(const char *name, size_t len, void *arg)
{
    char *out = arg;
    size_t used = strlen(out);
    snprintf(out + used, 256 - used, "%.*s,", (int)len, name);
    return 0;
}

static void test_index_blobs_and_lists(void)
{
    fresh_dir();
    struct index *idx = open_index();
    struct digest d;
    CHECK_INT(digest_of(DIGEST_SHA256, "x", 1, &d), ==, STORE_OK);
    uint64_t size = 1;
    CHECK_INT(index_blob_link(idx, "a", &d, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_blob_linked(idx, "a", &d, &size), ==, STORE_OK);
    CHECK_INT(size, ==, 1);
    CHECK_INT(index_blob_linked(idx, "b", &d, &size), ==, STORE_ENOENT);
    /* mount: only from a repository that has it */
    size = 0;
    CHECK_INT(index_blob_link(idx, "c", &d, &size, "b"), ==, STORE_ENOENT);
    CHECK_INT(index_blob_link(idx, "c", &d, &size, "a"), ==, STORE_OK);
    CHECK_INT(size, ==, 1);
    CHECK_INT(index_blob_unlink(idx, "a", &d), ==, STORE_OK);
    CHECK_INT(index_blob_unlink(idx, "a", &d), ==, STORE_ENOENT);
    CHECK_INT(index_blob_linked(idx, "c", &d, &size), ==, STORE_OK);

    char out[256] = "";
    bool more;
    CHECK_INT(index_repos_list(idx, NULL, 10, collect, out, &more), ==, STORE_OK);
    CHECK_STR(out, "a,c,");
    CHECK(!more);
    out[0] = '\0';
    CHECK_INT(index_repos_list(idx, NULL, 1, collect, out, &more), ==, STORE_OK);
    CHECK_STR(out, "a,");
    CHECK(more);
    out[0] = '\0';
    CHECK_INT(index_repos_list(idx, "a", 1, collect, out, &more), ==, STORE_OK);
    CHECK_STR(out, "c,");
    CHECK(!more);
    CHECK_INT(index_tags_list(idx, "zz", NULL, 10, collect, out, &more), ==, STORE_ENOENT);

    struct index_upload up = {.alg = DIGEST_SHA512, .created = 7}, got;
    strcpy(up.repo, "a/b");
    CHECK_INT(index_upload_put(idx, "0123456789abcdef0123456789abcdef", &up, NULL), ==, STORE_OK);
    CHECK_INT(index_upload_get(idx, "0123456789abcdef0123456789abcdef", &got), ==, STORE_OK);
    CHECK_STR(got.repo, "a/b");
    CHECK_INT(got.alg, ==, DIGEST_SHA512);
    CHECK_INT(index_upload_del(idx, "0123456789abcdef0123456789abcdef"), ==, STORE_OK);
    CHECK_INT(index_upload_get(idx, "0123456789abcdef0123456789abcdef", &got), ==, STORE_ENOENT);

    /* committing the blob of an upload drops the upload's record in the same txn */
    struct digest e;
    CHECK_INT(digest_of(DIGEST_SHA256, "xyz", 3, &e), ==, STORE_OK);
    CHECK_INT(index_upload_put(idx, "fedcba9876543210fedcba9876543210", &up, NULL), ==, STORE_OK);
    CHECK_INT(index_blob_commit(idx, "a/b", &e, 3, NULL, NULL, NULL,
                                "fedcba9876543210fedcba9876543210"),
              ==, STORE_OK);
    CHECK_INT(index_blob_linked(idx, "a/b", &e, &size), ==, STORE_OK);
    CHECK_INT(index_upload_get(idx, "fedcba9876543210fedcba9876543210", &got), ==, STORE_ENOENT);
    index_close(idx);
}

static void print_problem(const char *kind, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "  fsck %s: %s\n", kind, msg);
}

/* What upload sessions hold counts against the quota, within their bounds, and is given back
 * by a shrink, a delete and the commit of the blob. */
static void test_upload_holds(void)
{
    fresh_dir();
    struct index *idx = NULL;
    CHECK_INT(index_open(&idx, tmpdir, 1 << 24), ==, STORE_OK);
    const char *s1 = "11111111111111111111111111111111", *s2 = "22222222222222222222222222222222",
               *s3 = "33333333333333333333333333333333";
    struct index_upload up = {.alg = DIGEST_SHA256, .created = 1};
    strcpy(up.repo, "q/r");
    CHECK_INT(index_quota_set(idx, "q/r", 1000), ==, STORE_OK);
    CHECK_INT(index_upload_put(idx, s1, &up, NULL), ==, STORE_OK);
    CHECK_INT(index_upload_put(idx, s2, &up, NULL), ==, STORE_OK);
    CHECK_INT(index_upload_hold(idx, s1, 600, NULL), ==, STORE_OK);
    CHECK_INT(index_upload_hold(idx, s2, 500, NULL), ==, STORE_EQUOTA);
    CHECK_INT(index_upload_hold(idx, s2, 400, NULL), ==, STORE_OK);
    uint64_t held = 0;
    CHECK_INT(index_upload_held(idx, "q/r", &held), ==, STORE_OK);
    CHECK_INT(held, ==, 1000);
    struct index_upload got;
    CHECK_INT(index_upload_get(idx, s2, &got), ==, STORE_OK);
    CHECK_INT(got.held, ==, 400);
    /* a record that starts out holding bytes is checked the same way */
    up.held = 1;
    CHECK_INT(index_upload_put(idx, s3, &up, NULL), ==, STORE_EQUOTA);
    CHECK_INT(index_upload_get(idx, s3, &got), ==, STORE_ENOENT);
    CHECK_INT(index_upload_hold(idx, s1, 100, NULL), ==, STORE_OK); /* shrinks: always */
    CHECK_INT(index_upload_del(idx, s2), ==, STORE_OK);
    CHECK_INT(index_upload_held(idx, "q/r", &held), ==, STORE_OK);
    CHECK_INT(held, ==, 100);
    /* bounds: one session, the repository's sessions together */
    struct index_upload_limits lim = {.session = 500, .repo = 700};
    up.held = 501;
    CHECK_INT(index_upload_put(idx, s3, &up, &lim), ==, STORE_ETOOBIG);
    up.held = 500;
    CHECK_INT(index_upload_put(idx, s3, &up, &lim), ==, STORE_OK);
    CHECK_INT(index_upload_hold(idx, s1, 201, &lim), ==, STORE_EBUSY);
    CHECK_INT(index_upload_hold(idx, s1, 200, &lim), ==, STORE_OK);
    CHECK_INT(index_upload_del(idx, s3), ==, STORE_OK);
    /* the commit of the blob gives back what its session held, in the same txn */
    struct digest d;
    CHECK_INT(digest_of(DIGEST_SHA256, "held", 4, &d), ==, STORE_OK);
    CHECK_INT(index_blob_commit(idx, "q/r", &d, 150, NULL, NULL, NULL, s1), ==, STORE_OK);
    CHECK_INT(index_upload_held(idx, "q/r", &held), ==, STORE_OK);
    CHECK_INT(held, ==, 0);
    struct index_usage u;
    CHECK_INT(index_usage_get(idx, 'r', "q/r", &u), ==, STORE_OK);
    CHECK_INT(u.stored_bytes, ==, 150);
    uint64_t problems = 99;
    CHECK_INT(index_fsck_counts(idx, false, print_problem, NULL, &problems), ==, STORE_OK);
    CHECK_INT(problems, ==, 0);
    index_close(idx);
}

static int collect_usage(const char *name, const struct index_usage *u, void *arg)
{
    (void)u;
    return collect(name, strlen(name), arg);
}

static int count_referrers(const struct index_referrer *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static void test_index_manifests(void)
{
    fresh_dir();
    struct index *idx = open_index();
    struct digest cfg;
    CHECK_INT(digest_of(DIGEST_SHA256, "{}", 2, &cfg), ==, STORE_OK);
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"a/b\","
             "\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
             MT_OCI_MANIFEST, cfg.str);
    struct manifest_info info;
    const char *why;
    CHECK_INT(manifest_parse(NULL, S(buf), &info, &why), ==, STORE_OK);
    const char *tags[] = {"v1", "latest"};
    struct index_manifest_put m = {.repo = "r", .info = &info, .bytes = buf, .len = strlen(buf),
                                   .tags = tags, .ntags = 2};
    CHECK_INT(digest_of(DIGEST_SHA256, buf, strlen(buf), &m.digest), ==, STORE_OK);
    size_t bad = 99;
    /* the config blob is not in the repository yet */
    CHECK_INT(index_manifest_put(idx, &m, &bad), ==, STORE_ENOENT);
    CHECK_INT(bad, ==, 0);
    CHECK(!index_repo_exists(idx, "r"));
    uint64_t size = 3;
    CHECK_INT(index_blob_link(idx, "r", &cfg, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_manifest_put(idx, &m, &bad), ==, STORE_ERANGE);
    CHECK_INT(index_blob_unlink(idx, "r", &cfg), ==, STORE_OK);
    size = 2;
    CHECK_INT(index_blob_link(idx, "r", &cfg, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_manifest_put(idx, &m, &bad), ==, STORE_OK);

    struct digest t;
    CHECK_INT(index_tag_get(idx, "r", "latest", &t), ==, STORE_OK);
    CHECK(digest_equal(&t, &m.digest));
    struct index_manifest got;
    CHECK_INT(index_manifest_get(idx, "r", &t, true, &got), ==, STORE_OK);
    CHECK_INT(got.size, ==, strlen(buf));
    CHECK(memcmp(got.bytes, buf, got.size) == 0);
    CHECK_STR(got.media_type, MT_OCI_MANIFEST);
    free(got.bytes);

    char out[256] = "";
    bool more;
    CHECK_INT(index_tags_list(idx, "r", NULL, 10, collect, out, &more), ==, STORE_OK);
    CHECK_STR(out, "latest,v1,");

    /* a referrer of it */
    char ref[1024];
    snprintf(ref, sizeof(ref),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"x/sig\",\"config\":"
             "{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":2},\"subject\":{\"mediaType\":"
             "\"%s\",\"digest\":\"%s\",\"size\":%zu}}",
             MT_OCI_MANIFEST, cfg.str, MT_OCI_MANIFEST, m.digest.str, strlen(buf));
    struct manifest_info rinfo;
    CHECK_INT(manifest_parse(NULL, S(ref), &rinfo, &why), ==, STORE_OK);
    struct index_manifest_put rm = {.repo = "r", .info = &rinfo, .bytes = ref, .len = strlen(ref)};
    CHECK_INT(digest_of(DIGEST_SHA256, ref, strlen(ref), &rm.digest), ==, STORE_OK);
    CHECK_INT(index_manifest_put(idx, &rm, &bad), ==, STORE_OK);
    int n = 0;
    CHECK_INT(index_referrers_list(idx, "r", &m.digest, count_referrers, &n), ==, STORE_OK);
    CHECK_INT(n, ==, 1);

    /* deleting the manifest drops its tags; deleting the referrer drops the entry */
    CHECK_INT(index_manifest_delete(idx, "r", &m.digest), ==, STORE_OK);
    CHECK_INT(index_tag_get(idx, "r", "latest", &t), ==, STORE_ENOENT);
    CHECK_INT(index_tag_get(idx, "r", "v1", &t), ==, STORE_ENOENT);
    CHECK_INT(index_manifest_get(idx, "r", &m.digest, false, &got), ==, STORE_ENOENT);
    CHECK_INT(index_manifest_delete(idx, "r", &m.digest), ==, STORE_ENOENT);
    CHECK_INT(index_manifest_delete(idx, "r", &rm.digest), ==, STORE_OK);
    n = 0;
    CHECK_INT(index_referrers_list(idx, "r", &m.digest, count_referrers, &n), ==, STORE_OK);
    CHECK_INT(n, ==, 0);
    manifest_info_free(&info);
    manifest_info_free(&rinfo);
    index_close(idx);
}

static void test_usage(void)
{
    fresh_dir();
    struct index *idx = open_index();
    struct digest a, b;
    CHECK_INT(digest_of(DIGEST_SHA256, "a", 1, &a), ==, STORE_OK);
    CHECK_INT(digest_of(DIGEST_SHA256, "b", 1, &b), ==, STORE_OK);
    uint64_t size = 100;
    CHECK_INT(index_blob_link(idx, "x", &a, &size, NULL), ==, STORE_OK);
    size = 100;
    CHECK_INT(index_blob_link(idx, "x", &a, &size, NULL), ==, STORE_OK); /* counted once */
    size = 40;
    CHECK_INT(index_blob_link(idx, "x", &b, &size, NULL), ==, STORE_OK);
    size = 0;
    CHECK_INT(index_blob_link(idx, "y", &a, &size, "x"), ==, STORE_OK);
    struct index_usage u;
    CHECK_INT(index_usage_get(idx, 'r', "x", &u), ==, STORE_OK);
    CHECK_INT(u.stored_bytes, ==, 140);
    CHECK_INT(index_usage_get(idx, 'r', "y", &u), ==, STORE_OK);
    CHECK_INT(u.stored_bytes, ==, 100);
    uint64_t ex = 0;
    CHECK_INT(index_exclusive_bytes(idx, "x", &ex), ==, STORE_OK);
    CHECK_INT(ex, ==, 40);
    CHECK_INT(index_exclusive_bytes(idx, "y", &ex), ==, STORE_OK);
    CHECK_INT(ex, ==, 0);
    struct index_totals t;
    CHECK_INT(index_totals_get(idx, &t), ==, STORE_OK);
    CHECK_INT(t.physical_bytes, ==, 140);
    CHECK_INT(t.blobs, ==, 2);
    uint64_t rc_stored = 0;
    CHECK_INT(index_recount(idx, "x", &rc_stored), ==, STORE_OK);
    CHECK_INT(rc_stored, ==, 140);
    /* quotas: the repository's own, else the default */
    CHECK_INT(index_quota_set(idx, "y", 150), ==, STORE_OK);
    size = 60;
    CHECK_INT(index_blob_link(idx, "y", &b, &size, NULL), ==, STORE_EQUOTA);
    CHECK_INT(index_blob_linked(idx, "y", &b, &size), ==, STORE_ENOENT);
    CHECK_INT(index_quota_set(idx, "y", 0), ==, STORE_OK);
    CHECK_INT(index_quota_set(idx, NULL, 120), ==, STORE_OK);
    size = 40;
    CHECK_INT(index_blob_link(idx, "y", &b, &size, NULL), ==, STORE_EQUOTA);
    CHECK_INT(index_blob_unlink(idx, "y", &a), ==, STORE_OK); /* deleting frees quota */
    size = 40;
    CHECK_INT(index_blob_link(idx, "y", &b, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_quota_set(idx, NULL, 0), ==, STORE_OK);
    /* transfer counters and hourly snapshots */
    struct index_transfer tr[2] = {{'r', "x", 10, 20, 1, 2}, {'u', "alice", 10, 0, 0, 2}};
    CHECK_INT(index_transfer_add(idx, tr, 2), ==, STORE_OK);
    CHECK_INT(index_snapshot_take(idx, 1000), ==, STORE_OK);
    CHECK_INT(index_transfer_add(idx, tr, 1), ==, STORE_OK);
    CHECK_INT(index_usage_get(idx, 'r', "x", &u), ==, STORE_OK);
    CHECK_INT(u.ingress_bytes, ==, 20);
    CHECK_INT(u.egress_bytes, ==, 40);
    CHECK_INT(u.pushes, ==, 4);
    uint64_t at = 0;
    CHECK_INT(index_snapshot_get(idx, 999, 'r', "x", &u, &at), ==, STORE_ENOENT);
    CHECK_INT(index_snapshot_get(idx, 1005, 'r', "x", &u, &at), ==, STORE_OK);
    CHECK_INT(at, ==, 1000);
    CHECK_INT(u.ingress_bytes, ==, 10);
    CHECK_INT(index_snapshot_get(idx, 1005, 'u', "alice", &u, &at), ==, STORE_OK);
    CHECK_INT(u.pushes, ==, 2);
    char out[256] = "";
    bool more;
    CHECK_INT(index_usage_list(idx, 'r', NULL, 10, collect_usage, out, &more), ==, STORE_OK);
    CHECK_STR(out, "x,y,");
    index_close(idx);
}

/* Tar header numbers past the octal field (blobs of 8 GiB and more) and pax records. */
static void test_tar_numbers(void)
{
    static const uint64_t sizes[] = {0, 1, 511, TAR_OCTAL_SIZE_MAX, TAR_OCTAL_SIZE_MAX + 1,
                                     (uint64_t)9 << 30, (uint64_t)1 << 40, UINT64_MAX >> 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char field[12];
        uint64_t back = 1;
        tar_number_put(field, sizeof(field), sizes[i]);
        CHECK(tar_number_get(field, sizeof(field), &back));
        CHECK(back == sizes[i]);
        /* octal as long as it fits (what every tar reads), base-256 past it */
        CHECK((field[0] == 0x80) == (sizes[i] > TAR_OCTAL_SIZE_MAX));
    }
    uint64_t v = 0;
    CHECK(tar_number_get((const unsigned char *)"0000644 \0", 8, &v) && v == 0644);
    CHECK(tar_number_get((const unsigned char *)" 123\0\0\0\0", 8, &v) && v == 0123);
    CHECK(!tar_number_get((const unsigned char *)"12x4567\0", 8, &v));
    CHECK(!tar_number_get((const unsigned char *)"\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
                                                 "\x02",
                          12, &v)); /* past 64 bits */
    char rec[64];
    CHECK_INT(tar_pax_record(rec, sizeof(rec), "size", "9663676416"), ==, 19);
    CHECK_STR(rec, "19 size=9663676416\n");
    /* the length counts its own digits: 9 bytes with one digit, 10 would need two (11) */
    CHECK_INT(tar_pax_record(rec, sizeof(rec), "a", "bcde"), ==, 9);
    CHECK_STR(rec, "9 a=bcde\n");
    CHECK_INT(tar_pax_record(rec, sizeof(rec), "a", "bcdef"), ==, 11);
    CHECK_STR(rec, "11 a=bcdef\n");
    CHECK_INT(tar_pax_record(rec, 8, "size", "9663676416"), ==, 0);
    CHECK(tar_decimal_get("18446744073709551615", 20, &v) && v == UINT64_MAX);
    CHECK(!tar_decimal_get("18446744073709551616", 20, &v));
    CHECK(!tar_decimal_get("", 0, &v) && !tar_decimal_get("1 2", 3, &v));
}

static int note_link(const char *digest, uint64_t size, uint64_t linked_at, void *arg)
{
    (void)digest;
    (void)size;
    *(uint64_t *)arg = linked_at;
    return 0;
}

/* What the collector decided is re-checked in the txn that applies it. */
static void test_gc_rechecks(void)
{
    fresh_dir();
    struct index *idx = open_index();
    struct digest d;
    CHECK_INT(digest_of(DIGEST_SHA256, "layer", 5, &d), ==, STORE_OK);
    uint64_t size = 5, gen = 0, seen = 0;
    CHECK_INT(index_blob_link(idx, "r", &d, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_repo_gen(idx, "r", &gen), ==, STORE_OK);
    CHECK_INT(index_links_scan(idx, "r", note_link, &seen), ==, STORE_OK);
    /* the collector decided on the link; the client uploads the blob again (in the same
     * second) and is told 201: the link stays */
    CHECK_INT(index_blob_link(idx, "r", &d, &size, NULL), ==, STORE_OK);
    struct index_gc_link gl = {d, seen};
    size_t unlinked = 99;
    CHECK_INT(index_gc_repo(idx, "r", gen, &gl, 1, NULL, 0, &unlinked), ==, STORE_OK);
    CHECK_INT(unlinked, ==, 0);
    CHECK_INT(index_blob_linked(idx, "r", &d, &size), ==, STORE_OK);
    /* a mount refreshes it the same way */
    CHECK_INT(index_links_scan(idx, "r", note_link, &gl.linked_at), ==, STORE_OK);
    CHECK_INT(index_blob_link(idx, "r", &d, &size, "r"), ==, STORE_OK);
    CHECK_INT(index_gc_repo(idx, "r", gen, &gl, 1, NULL, 0, &unlinked), ==, STORE_OK);
    CHECK_INT(unlinked, ==, 0);
    /* decided on what is there now: it goes */
    CHECK_INT(index_links_scan(idx, "r", note_link, &gl.linked_at), ==, STORE_OK);
    CHECK_INT(index_gc_repo(idx, "r", gen, &gl, 1, NULL, 0, &unlinked), ==, STORE_OK);
    CHECK_INT(unlinked, ==, 1);
    CHECK_INT(index_blob_linked(idx, "r", &d, &size), ==, STORE_ENOENT);

    /* a repository deleted and made again never returns to a generation seen before */
    uint64_t g1 = 0, g2 = 0;
    CHECK_INT(index_blob_link(idx, "g", &d, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_repo_gen(idx, "g", &g1), ==, STORE_OK);
    CHECK_INT(index_repo_delete(idx, "g"), ==, STORE_OK);
    CHECK_INT(index_blob_link(idx, "g", &d, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_repo_gen(idx, "g", &g2), ==, STORE_OK);
    CHECK(g2 != g1);
    CHECK_INT(index_links_scan(idx, "g", note_link, &gl.linked_at), ==, STORE_OK);
    CHECK_INT(index_gc_repo(idx, "g", g1, &gl, 1, NULL, 0, &unlinked), ==, STORE_EBUSY);
    CHECK_INT(index_blob_linked(idx, "g", &d, &size), ==, STORE_OK);
    index_close(idx);
}

/* Writes v as a 4-byte record under key in the usage table, straight into the LMDB
 * environment; v < 0 deletes the key. */
static void raw_usage_put(const char *key, size_t klen, long v)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/index", tmpdir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    CHECK(mdb_env_create(&env) == 0);
    CHECK(mdb_env_set_maxdbs(env, 16) == 0);
    CHECK(mdb_env_set_mapsize(env, 64u << 20) == 0);
    CHECK(mdb_env_open(env, dir, 0, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "usage", 0, &dbi) == 0);
    MDB_val k = {klen, (void *)key};
    unsigned char b[4] = {(unsigned char)v, 0, 0, 0};
    MDB_val val = {4, b};
    if (v < 0)
        CHECK(mdb_del(txn, dbi, &k, NULL) == 0);
    else
        CHECK(mdb_put(txn, dbi, &k, &val, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

/* The schema stamp "V" (v < 0: none, as before versions existed). */
static void set_schema(long v)
{
    raw_usage_put("V", 1, v);
}

static void test_schema_versions(void)
{
    fresh_dir();
    struct index *idx = open_index();
    struct digest d;
    CHECK_INT(digest_of(DIGEST_SHA256, "kept", 4, &d), ==, STORE_OK);
    uint64_t size = 4;
    CHECK_INT(index_blob_link(idx, "old", &d, &size, NULL), ==, STORE_OK);
    index_close(idx);
    /* an index from before schema versions: migrated in place, data intact */
    set_schema(-1);
    idx = open_index();
    CHECK_INT(index_blob_linked(idx, "old", &d, &size), ==, STORE_OK);
    index_close(idx);
    /* one from a newer ocireg: refused, not misread */
    set_schema(99);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/index", tmpdir);
    CHECK_INT(index_open(&idx, dir, 64u << 20), ==, STORE_EVERSION);
    set_schema((long)index_schema_version());
    idx = open_index();
    /* schema 1 had no generation clock: the migration starts it past every repository's
     * generation, so a repository made again does not come back to one seen before */
    struct digest m;
    CHECK_INT(digest_of(DIGEST_SHA256, "policy", 6, &m), ==, STORE_OK);
    uint64_t before = 0, after = 0;
    CHECK_INT(index_blob_link(idx, "busy", &m, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_repo_gen(idx, "busy", &before), ==, STORE_OK);
    index_close(idx);
    raw_usage_put("c", 2, -1);
    set_schema(1);
    idx = open_index();
    CHECK_INT(index_repo_delete(idx, "busy"), ==, STORE_OK);
    CHECK_INT(index_blob_link(idx, "busy", &m, &size, NULL), ==, STORE_OK);
    CHECK_INT(index_repo_gen(idx, "busy", &after), ==, STORE_OK);
    CHECK(after > before);
    index_close(idx);
}

int main(void)
{
    RUN(test_names);
    RUN(test_digests);
    RUN(test_manifest_parse);
    RUN(test_uploads);
    RUN(test_index_blobs_and_lists);
    RUN(test_index_manifests);
    RUN(test_usage);
    RUN(test_gc_rechecks);
    RUN(test_tar_numbers);
    RUN(test_upload_holds);
    RUN(test_schema_versions);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
