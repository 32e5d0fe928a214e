/*
 * HTTP integration tests: the real ocireg binary on an ephemeral port, driven through every
 * endpoint of the OCI distribution API, every error code, and bad input. Failed requests are
 * checked to leave nothing stored.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER "application/vnd.docker.distribution.manifest.v2+json"

static struct srv S;

static struct resp *req(const char *method, const char *path, const char *const *hdrs,
                        const void *body, size_t len)
{
    return http(&S, method, path, hdrs, body, len);
}

/* Monolithic blob push; returns the digest in out[72]. */
static void push_blob(const char *repo, const char *data, size_t len, char *out)
{
    char path[512];
    sha256_str(data, len, out);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, out);
    struct resp *r = req("POST", path, (const char *[]){"Content-Type: application/octet-stream",
                                                        NULL},
                         data, len);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

/* An image manifest with the given config and one layer (digests of pushed blobs). */
static void image_manifest(char *out, size_t cap, const char *cfg, size_t cfg_len,
                           const char *layer, size_t layer_len, const char *extra)
{
    snprintf(out, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
             "\"%s\",\"size\":%zu}]%s}",
             cfg, cfg_len, layer, layer_len, extra ? extra : "");
}

static struct resp *put_manifest(const char *repo, const char *ref, const char *ct,
                                 const char *body)
{
    char path[512], cth[128];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    snprintf(cth, sizeof(cth), "Content-Type: %s", ct);
    return req("PUT", path, (const char *[]){cth, NULL}, body, strlen(body));
}

/* POST a new upload session of repo; its Location into loc. */
static void start_upload(const char *repo, char *loc, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    struct resp *r = req("POST", path, NULL, "", 0);
    EXPECT(r, 202, NULL);
    CHECK(resp_hdr(r, "Location", loc, cap) != NULL);
    resp_free(r);
}

/* GET the session status and check its Range. */
static void expect_range(const char *loc, const char *range)
{
    char h[64];
    struct resp *r = req("GET", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    CHECK_STR(resp_hdr(r, "Range", h, sizeof(h)), range);
    resp_free(r);
}

/* Closes the session with a bodiless PUT carrying the digest of `all`. */
static void finish_upload(const char *loc, const char *all)
{
    char d[80], path[700];
    sha256_str(all, strlen(all), d);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    struct resp *r = req("PUT", path, NULL, NULL, 0);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

static const char CFG[] = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
static const char LAYER[] = "layer-bytes-0123456789";

/* Pushes CFG, LAYER and a manifest tagged `tag`; returns the manifest digest. */
static void push_image(const char *repo, const char *tag, char *mdigest, char *body, size_t cap)
{
    char cd[80], ld[80];
    push_blob(repo, CFG, strlen(CFG), cd);
    push_blob(repo, LAYER, strlen(LAYER), ld);
    image_manifest(body, cap, cd, strlen(CFG), ld, strlen(LAYER), NULL);
    struct resp *r = put_manifest(repo, tag, MT_MANIFEST, body);
    EXPECT(r, 201, NULL);
    sha256_str(body, strlen(body), mdigest);
    char h[200];
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), mdigest);
    resp_free(r);
}

static void test_base(void)
{
    struct resp *r = req("GET", "/v2/", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    char h[64];
    CHECK_STR(resp_hdr(r, "Docker-Distribution-API-Version", h, sizeof(h)), "registry/2.0");
    CHECK_STR(r->body, "{}");
    resp_free(r);
    r = req("GET", "/nothing", NULL, NULL, 0);
    EXPECT(r, 404, NULL);
    CHECK_STR(resp_hdr(r, "Docker-Distribution-API-Version", h, sizeof(h)), "registry/2.0");
    resp_free(r);
    r = req("POST", "/v2/", NULL, "", 0);
    EXPECT(r, 405, "UNSUPPORTED");
    resp_free(r);
}

static void test_blob_monolithic_and_ranges(void)
{
    char d[80], path[256], h[256];
    push_blob("mono/repo", "hello world", 11, d);
    snprintf(path, sizeof(path), "/v2/mono/repo/blobs/%s", d);
    struct resp *r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "hello world");
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), d);
    resp_free(r);
    r = req("HEAD", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(resp_hdr(r, "Content-Length", h, sizeof(h)), "11");
    CHECK_INT(r->len, ==, 0);
    resp_free(r);
    r = req("GET", path, (const char *[]){"Range: bytes=6-", NULL}, NULL, 0);
    EXPECT(r, 206, NULL);
    CHECK_STR(r->body, "world");
    CHECK_STR(resp_hdr(r, "Content-Range", h, sizeof(h)), "bytes 6-10/11");
    resp_free(r);
    r = req("GET", path, (const char *[]){"Range: bytes=-5", NULL}, NULL, 0);
    EXPECT(r, 206, NULL);
    CHECK_STR(r->body, "world");
    resp_free(r);
    r = req("GET", path, (const char *[]){"Range: bytes=11-", NULL}, NULL, 0);
    EXPECT(r, 416, NULL);
    CHECK_STR(resp_hdr(r, "Content-Range", h, sizeof(h)), "bytes */11");
    resp_free(r);
    /* not in another repository, even though the registry has it */
    snprintf(path, sizeof(path), "/v2/other/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UNKNOWN");
    resp_free(r);
    /* the empty blob */
    push_blob("mono/repo", "", 0, d);
    snprintf(path, sizeof(path), "/v2/mono/repo/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_INT(r->len, ==, 0);
    resp_free(r);
}

static void test_blob_post_put(void)
{
    char d[80], h[512], path[600];
    struct resp *r = req("POST", "/v2/pp/blobs/uploads/", NULL, "", 0);
    EXPECT(r, 202, NULL);
    CHECK(resp_hdr(r, "Location", h, sizeof(h)) != NULL);
    CHECK(strncmp(h, "/v2/pp/blobs/uploads/", 21) == 0);
    CHECK(resp_hdr(r, "Docker-Upload-UUID", path, sizeof(path)) != NULL);
    CHECK_STR(resp_hdr(r, "Range", path, sizeof(path)), "0-0");
    resp_free(r);
    sha256_str("abc", 3, d);
    snprintf(path, sizeof(path), "%s?digest=%s", h, d);
    r = req("PUT", path, (const char *[]){"Content-Type: application/octet-stream", NULL}, "abc",
            3);
    EXPECT(r, 201, NULL);
    snprintf(path, sizeof(path), "/v2/pp/blobs/%s", d);
    CHECK_STR(resp_hdr(r, "Location", h, sizeof(h)), path);
    resp_free(r);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
}

static void test_blob_chunked(void)
{
    char loc[512], path[700], h[256], d[80];
    struct resp *r = req("POST", "/v2/chunky/blobs/uploads/", NULL, "", 0);
    EXPECT(r, 202, NULL);
    resp_hdr(r, "Location", loc, sizeof(loc));
    resp_free(r);
    r = req("PATCH", loc, (const char *[]){"Content-Range: 0-4", NULL}, "01234", 5);
    EXPECT(r, 202, NULL);
    CHECK_STR(resp_hdr(r, "Range", h, sizeof(h)), "0-4");
    resp_free(r);
    /* out of order: 416 with the current state */
    r = req("PATCH", loc, (const char *[]){"Content-Range: 3-7", NULL}, "34567", 5);
    EXPECT(r, 416, NULL);
    CHECK_STR(resp_hdr(r, "Range", h, sizeof(h)), "0-4");
    CHECK(resp_hdr(r, "Location", h, sizeof(h)) != NULL);
    resp_free(r);
    /* a Content-Range that does not match the body length changes nothing */
    r = req("PATCH", loc, (const char *[]){"Content-Range: 5-9", NULL}, "567", 3);
    CHECK(r->status == 416 || r->status == 400);
    resp_free(r);
    r = req("GET", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    CHECK_STR(resp_hdr(r, "Range", h, sizeof(h)), "0-4");
    resp_free(r);
    /* streamed chunk without Content-Range, chunked transfer encoding */
    r = http_chunked(&S, "PATCH", loc, NULL, "56789", 5);
    EXPECT(r, 202, NULL);
    CHECK_STR(resp_hdr(r, "Range", h, sizeof(h)), "0-9");
    resp_free(r);
    /* final chunk in the PUT */
    sha256_str("0123456789ab", 12, d);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    r = req("PUT", path, (const char *[]){"Content-Range: 10-11", NULL}, "ab", 2);
    EXPECT(r, 201, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/chunky/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "0123456789ab");
    resp_free(r);
    /* the session is over */
    r = req("GET", loc, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UPLOAD_UNKNOWN");
    resp_free(r);
}

/* Descriptors the server has open. */
static int server_fds(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)S.pid);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Chunked upload of data into repo, committed: 201. */
static void push_chunked(const char *repo, const char *data, size_t n, const char *digest)
{
    char loc[512], path[700];
    start_upload(repo, loc, sizeof(loc));
    struct resp *r = http_chunked(&S, "PATCH", loc, NULL, data, n);
    EXPECT(r, 202, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
    r = req("PUT", path, NULL, NULL, 0);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

static void test_blob_big_streamed(void)
{
    size_t n = 8u << 20;
    char *data = malloc(n);
    CHECK(data != NULL);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    char d[80], path[700];
    sha256_str(data, n, d);
    struct resp *r;
    push_chunked("big", data, n, d);
    int fds = server_fds();
    /* the same content uploaded again elsewhere: the blob exists, the upload's file is freed
     * (its descriptor closed after the answer) and nothing of it stays */
    push_chunked("big2", data, n, d);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 500 && server_fds() > fds; i++)
        nanosleep(&tick, NULL);
    CHECK_INT(server_fds(), <=, fds);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", i == 0 ? "big" : "big2", d);
        r = req("GET", path, NULL, NULL, 0);
        EXPECT(r, 200, NULL);
        CHECK_INT(r->len, ==, n);
        CHECK(memcmp(r->body, data, n) == 0);
        resp_free(r);
    }
    free(data);
}

static void test_blob_digest_mismatch(void)
{
    char d[80], path[700], loc[512];
    int blobs_before = count_files(S.root, "blobs");
    sha256_str("expected", 8, d);
    snprintf(path, sizeof(path), "/v2/mis/blobs/uploads/?digest=%s", d);
    struct resp *r = req("POST", path, NULL, "actual", 6);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    start_upload("mis", loc, sizeof(loc));
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    r = req("PUT", path, NULL, "actual", 6);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/mis/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UNKNOWN");
    resp_free(r);
    sha256_str("actual", 6, d);
    snprintf(path, sizeof(path), "/v2/mis/blobs/%s", d);
    r = req("HEAD", path, NULL, NULL, 0);
    EXPECT(r, 404, NULL);
    resp_free(r);
    /* PUT without a digest, or with a malformed one */
    start_upload("mis", loc, sizeof(loc));
    r = req("PUT", loc, NULL, "x", 1);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    snprintf(path, sizeof(path), "%s?digest=sha256:nothex", loc);
    r = req("PUT", path, NULL, "x", 1);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    r = req("DELETE", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    CHECK_INT(count_files(S.root, "blobs"), ==, blobs_before);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
}

static void test_upload_ids(void)
{
    char loc[512], path[700];
    struct resp *r;
    start_upload("owner", loc, sizeof(loc));
    const char *id = strrchr(loc, '/') + 1;
    /* the id of another repository's session */
    snprintf(path, sizeof(path), "/v2/thief/blobs/uploads/%s", id);
    r = req("PATCH", path, NULL, "x", 1);
    EXPECT(r, 404, "BLOB_UPLOAD_UNKNOWN");
    resp_free(r);
    static const char *const bad[] = {
        "/v2/owner/blobs/uploads/00000000000000000000000000000000",
        "/v2/owner/blobs/uploads/..",
        "/v2/owner/blobs/uploads/%2e%2e%2fkeys",
        "/v2/owner/blobs/uploads/ABCDEF00000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = req("GET", bad[i], NULL, NULL, 0);
        CHECK(r->status == 404 || r->status == 400);
        resp_free(r);
    }
    /* cancel */
    r = req("DELETE", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    r = req("DELETE", loc, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UPLOAD_UNKNOWN");
    resp_free(r);
}

static void test_mount(void)
{
    char d[80], path[700], h[256];
    push_blob("src/repo", "mount me", 8, d);
    snprintf(path, sizeof(path), "/v2/dst/repo/blobs/uploads/?mount=%s&from=src/repo", d);
    struct resp *r = req("POST", path, NULL, "", 0);
    EXPECT(r, 201, NULL);
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), d);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/dst/repo/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "mount me");
    resp_free(r);
    /* from a repository without the blob: an ordinary upload session */
    snprintf(path, sizeof(path), "/v2/dst2/blobs/uploads/?mount=%s&from=nowhere", d);
    r = req("POST", path, NULL, "", 0);
    EXPECT(r, 202, NULL);
    CHECK(resp_hdr(r, "Location", h, sizeof(h)) != NULL);
    resp_free(r);
    r = req("DELETE", h, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    /* without from: any repository holding it will do */
    snprintf(path, sizeof(path), "/v2/dst3/blobs/uploads/?mount=%s", d);
    r = req("POST", path, NULL, "", 0);
    EXPECT(r, 201, NULL);
    resp_free(r);
    char unknown[80];
    sha256_str("held by nobody", 14, unknown);
    snprintf(path, sizeof(path), "/v2/dst3/blobs/uploads/?mount=%s", unknown);
    r = req("POST", path, NULL, "", 0);
    EXPECT(r, 202, NULL);
    CHECK(resp_hdr(r, "Location", h, sizeof(h)) != NULL);
    resp_free(r);
    r = req("DELETE", h, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
}

static void test_sha512(void)
{
    char d[140], loc[512], path[800], h[256];
    struct resp *r = req("POST", "/v2/five12/blobs/uploads/?digest-algorithm=sha512", NULL, "", 0);
    EXPECT(r, 202, NULL);
    resp_hdr(r, "Location", loc, sizeof(loc));
    resp_free(r);
    sha512_str("sha512 data", 11, d);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    r = req("PUT", path, NULL, "sha512 data", 11);
    EXPECT(r, 201, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/five12/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "sha512 data");
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), d);
    resp_free(r);
    r = req("POST", "/v2/five12/blobs/uploads/?digest-algorithm=md5", NULL, "", 0);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
}

static void test_manifests(void)
{
    char md[80], body[2048], h[256], path[512];
    push_image("img/app", "v1", md, body, sizeof(body));
    struct resp *r = req("GET", "/v2/img/app/manifests/v1", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, body);
    CHECK_STR(resp_hdr(r, "Content-Type", h, sizeof(h)), MT_MANIFEST);
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), md);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/img/app/manifests/%s", md);
    r = req("HEAD", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    snprintf(h, sizeof(h), "%zu", strlen(body));
    char cl[32];
    CHECK_STR(resp_hdr(r, "Content-Length", cl, sizeof(cl)), h);
    resp_free(r);
    /* PUT by digest with several tags */
    snprintf(path, sizeof(path), "/v2/img/app/manifests/%s?tag=a&tag=b&tag=c", md);
    r = req("PUT", path, (const char *[]){"Content-Type: " MT_MANIFEST, NULL}, body, strlen(body));
    EXPECT(r, 201, NULL);
    CHECK_INT(resp_hdr_count(r, "OCI-Tag"), ==, 3);
    resp_free(r);
    r = req("GET", "/v2/img/app/tags/list", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "{\"name\":\"img/app\",\"tags\":[\"a\",\"b\",\"c\",\"v1\"]}");
    resp_free(r);
    /* custom fields and whitespace are kept byte for byte */
    char odd[2200];
    snprintf(odd, sizeof(odd), "%.*s,\n  \"x-custom\": {\"k\": [1, 2]} }", (int)strlen(body) - 1,
             body);
    r = put_manifest("img/app", "odd", MT_MANIFEST, odd);
    EXPECT(r, 201, NULL);
    resp_free(r);
    r = req("GET", "/v2/img/app/manifests/odd", NULL, NULL, 0);
    CHECK_STR(r->body, odd);
    resp_free(r);
    /* a Docker schema 2 manifest */
    char docker[2048];
    snprintf(docker, sizeof(docker), "%s", body);
    char *mt = strstr(docker, MT_MANIFEST);
    CHECK(mt != NULL);
    memmove(mt + strlen(MT_DOCKER), mt + strlen(MT_MANIFEST), strlen(mt + strlen(MT_MANIFEST)) + 1);
    memcpy(mt, MT_DOCKER, strlen(MT_DOCKER));
    r = put_manifest("img/app", "docker", MT_DOCKER, docker);
    EXPECT(r, 201, NULL);
    resp_free(r);
    r = req("GET", "/v2/img/app/manifests/docker", NULL, NULL, 0);
    CHECK_STR(resp_hdr(r, "Content-Type", h, sizeof(h)), MT_DOCKER);
    resp_free(r);
    /* an index of it */
    char index[1024];
    snprintf(index, sizeof(index),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":[{\"mediaType\":\""
             MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":"
             "\"amd64\",\"os\":\"linux\"}}]}",
             md, strlen(body));
    r = put_manifest("img/app", "multi", MT_INDEX, index);
    EXPECT(r, 201, NULL);
    resp_free(r);
    /* an index of a manifest that is not in the repository */
    r = put_manifest("img/other", "multi", MT_INDEX, index);
    EXPECT(r, 404, "MANIFEST_BLOB_UNKNOWN");
    resp_free(r);
}

static void test_manifest_errors(void)
{
    char cd[80], ld[80], body[2048], path[512];
    push_blob("bad/m", CFG, strlen(CFG), cd);
    sha256_str("never pushed", 12, ld);
    image_manifest(body, sizeof(body), cd, strlen(CFG), ld, 12, NULL);
    struct resp *r = put_manifest("bad/m", "t", MT_MANIFEST, body);
    EXPECT(r, 404, "MANIFEST_BLOB_UNKNOWN");
    resp_free(r);
    r = put_manifest("bad/m", "t", MT_MANIFEST, "{not json");
    EXPECT(r, 400, "MANIFEST_INVALID");
    resp_free(r);
    r = put_manifest("bad/m", "t", MT_MANIFEST, "{\"schemaVersion\":2,\"schemaVersion\":2}");
    EXPECT(r, 400, "MANIFEST_INVALID");
    resp_free(r);
    r = put_manifest("bad/m", "t", "application/vnd.docker.distribution.manifest.v1+json",
                     "{\"schemaVersion\":1,\"name\":\"bad/m\",\"tag\":\"t\",\"fsLayers\":[]}");
    EXPECT(r, 400, "MANIFEST_INVALID");
    CHECK(strstr(r->body, "schema 1") != NULL);
    resp_free(r);
    /* media type in body disagreeing with Content-Type */
    push_blob("bad/m", LAYER, strlen(LAYER), ld);
    image_manifest(body, sizeof(body), cd, strlen(CFG), ld, strlen(LAYER), NULL);
    r = put_manifest("bad/m", "t", MT_INDEX, body);
    EXPECT(r, 400, "MANIFEST_INVALID");
    resp_free(r);
    /* the wrong digest in the path */
    char wrong[80];
    sha256_str("x", 1, wrong);
    r = put_manifest("bad/m", wrong, MT_MANIFEST, body);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    /* a descriptor whose size is not the blob's */
    image_manifest(body, sizeof(body), cd, strlen(CFG) + 1, ld, strlen(LAYER), NULL);
    r = put_manifest("bad/m", "t", MT_MANIFEST, body);
    EXPECT(r, 400, "MANIFEST_INVALID");
    resp_free(r);
    /* over the size limit (the test server runs with 64 KiB) */
    size_t big = 70000;
    char *huge = malloc(big + 1);
    CHECK(huge != NULL);
    memset(huge, ' ', big);
    huge[big] = '\0';
    r = put_manifest("bad/m", "t", MT_MANIFEST, huge);
    EXPECT(r, 413, NULL);
    resp_free(r);
    r = http_chunked(&S, "PUT", "/v2/bad/m/manifests/t",
                     (const char *[]){"Content-Type: " MT_MANIFEST, NULL}, huge, big);
    EXPECT(r, 413, NULL);
    resp_free(r);
    free(huge);
    /* bad tags, bad ?tag= */
    r = put_manifest("bad/m", ".dot", MT_MANIFEST, body);
    EXPECT(r, 400, "TAG_INVALID");
    resp_free(r);
    image_manifest(body, sizeof(body), cd, strlen(CFG), ld, strlen(LAYER), NULL);
    r = put_manifest("bad/m", "t?tag=ok&tag=-bad", MT_MANIFEST, body);
    EXPECT(r, 400, "TAG_INVALID");
    resp_free(r);
    /* none of it stored anything */
    r = req("GET", "/v2/bad/m/tags/list", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "{\"name\":\"bad/m\",\"tags\":[]}");
    resp_free(r);
    r = req("GET", "/v2/bad/m/manifests/t", NULL, NULL, 0);
    EXPECT(r, 404, "MANIFEST_UNKNOWN");
    resp_free(r);
    r = req("GET", "/v2/never/manifests/t", NULL, NULL, 0);
    EXPECT(r, 404, "NAME_UNKNOWN");
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/bad/m/manifests/%s", wrong);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 404, "MANIFEST_UNKNOWN");
    resp_free(r);
}

/*
 * Paths outside the grammars: <name> is [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/...)*, so every
 * path below but the tag one names no repository: 400 NAME_INVALID, on every endpoint (the
 * spec's code-8), never a 404 that would say "a valid name, not known".
 */
static void test_bad_names(void)
{
    static const struct {
        const char *path, *code;
    } bad[] = {
        {"/v2/UPPER/manifests/t", "NAME_INVALID"},
        {"/v2/a/../b/manifests/t", "NAME_INVALID"},
        {"/v2/a/./b/manifests/t", "NAME_INVALID"},
        {"/v2/a//b/manifests/t", "NAME_INVALID"},
        /* a percent-encoded '/' is no separator (RFC 3986 2.2): not a second spelling of a/b */
        {"/v2/a%2fb/manifests/t", "NAME_INVALID"},
        {"/v2/a%2Fb/tags/list", "NAME_INVALID"},
        {"/v2/a%2fb/blobs/uploads/", "NAME_INVALID"},
        {"/v2/a%00b/manifests/t", "NAME_INVALID"},
        {"/v2/-a/manifests/t", "NAME_INVALID"},
        {"/v2/a_/tags/list", "NAME_INVALID"},
        {"/v2/a..b/manifests/t", "NAME_INVALID"},
        {"/v2/a%00/tags/list", "NAME_INVALID"},
        {"/v2/a/manifests/t%00x", "TAG_INVALID"}, /* the name is fine, the tag is not */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool post = strstr(bad[i].path, "/uploads/") != NULL;
        const char *method = post ? "POST" : "GET";
        struct resp *r = req(method, bad[i].path, NULL, post ? "" : NULL, 0);
        if (r->status != 400 || strstr(r->body, bad[i].code) == NULL) {
            fprintf(stderr, "%s %s -> %ld %s, want 400 %s\n", method, bad[i].path, r->status,
                    r->body, bad[i].code);
            abort();
        }
        resp_free(r);
    }
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
    /* the names those decode to are not there either: nothing made a/b */
    struct resp *r = req("GET", "/v2/a/b/tags/list", NULL, NULL, 0);
    EXPECT(r, 404, "NAME_UNKNOWN");
    resp_free(r);
    char longpath[5000];
    int n = snprintf(longpath, sizeof(longpath), "/v2/");
    for (int i = 0; i < 4096; i++)
        longpath[n++] = 'a';
    snprintf(longpath + n, sizeof(longpath) - (size_t)n, "/tags/list");
    r = req("GET", longpath, NULL, NULL, 0);
    EXPECT(r, 400, "NAME_INVALID"); /* past the 255 characters a name may have */
    resp_free(r);
    r = req("GET", "/v2/a/blobs/sha256:short", NULL, NULL, 0);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    r = req("GET", "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", NULL, NULL, 0);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    r = req("GET", "/v2/a/manifests/sha256:XYZ", NULL, NULL, 0);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    r = req("GET", "/v2/a/referrers/notadigest", NULL, NULL, 0);
    EXPECT(r, 400, "DIGEST_INVALID");
    resp_free(r);
    r = req("POST", "/v2/a..b/blobs/uploads/", NULL, "", 0);
    EXPECT(r, 400, "NAME_INVALID");
    resp_free(r);
    r = req("OPTIONS", "/v2/a/manifests/t", NULL, NULL, 0);
    EXPECT(r, 405, "UNSUPPORTED");
    char h[64];
    CHECK_STR(resp_hdr(r, "Allow", h, sizeof(h)), "GET, HEAD, PUT, DELETE");
    resp_free(r);
    /* a POST that carries a body it should not have leaves no session behind */
    r = req("POST", "/v2/a/blobs/uploads/", NULL, "unexpected", 10);
    CHECK(r->status >= 400);
    resp_free(r);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
}

static void test_lists(void)
{
    char md[80], body[2048], h[256];
    push_image("list/a", "t3", md, body, sizeof(body));
    const char *tags[] = {"t1", "t2", "t0"};
    for (int i = 0; i < 3; i++) {
        struct resp *r = put_manifest("list/a", tags[i], MT_MANIFEST, body);
        EXPECT(r, 201, NULL);
        resp_free(r);
    }
    struct resp *r = req("GET", "/v2/list/a/tags/list?n=2", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "{\"name\":\"list/a\",\"tags\":[\"t0\",\"t1\"]}");
    CHECK_STR(resp_hdr(r, "Link", h, sizeof(h)), "</v2/list/a/tags/list?n=2&last=t1>; rel=\"next\"");
    resp_free(r);
    r = req("GET", "/v2/list/a/tags/list?n=2&last=t1", NULL, NULL, 0);
    CHECK_STR(r->body, "{\"name\":\"list/a\",\"tags\":[\"t2\",\"t3\"]}");
    CHECK(resp_hdr(r, "Link", h, sizeof(h)) == NULL);
    resp_free(r);
    r = req("GET", "/v2/list/a/tags/list?n=0", NULL, NULL, 0);
    CHECK_STR(r->body, "{\"name\":\"list/a\",\"tags\":[]}");
    CHECK(resp_hdr(r, "Link", h, sizeof(h)) == NULL);
    resp_free(r);
    r = req("GET", "/v2/list/a/tags/list?n=x", NULL, NULL, 0);
    EXPECT(r, 400, "UNSUPPORTED");
    resp_free(r);
    r = req("GET", "/v2/list/none/tags/list", NULL, NULL, 0);
    EXPECT(r, 404, "NAME_UNKNOWN");
    resp_free(r);
    r = req("GET", "/v2/_catalog?n=1&last=list/a", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "\"repositories\":[\"") != NULL);
    CHECK(strstr(r->body, "list/a") == NULL);
    resp_free(r);
    r = req("GET", "/v2/_catalog", NULL, NULL, 0);
    CHECK(strstr(r->body, "\"list/a\"") != NULL);
    resp_free(r);
}

static void test_referrers(void)
{
    char md[80], body[2048], h[256], path[512], empty[80], art[3000];
    push_image("ref/app", "v1", md, body, sizeof(body));
    push_blob("ref/app", "{}", 2, empty);
    snprintf(art, sizeof(art),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"artifactType\":"
             "\"application/vnd.example.sig\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.empty.v1+json\",\"digest\":\"%s\",\"size\":2},\"layers\":"
             "[{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"%s\",\"size\":2}],"
             "\"subject\":{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu},"
             "\"annotations\":{\"org.example\":\"yes\"}}",
             empty, empty, md, strlen(body));
    char ad[80];
    sha256_str(art, strlen(art), ad);
    struct resp *r = put_manifest("ref/app", ad, MT_MANIFEST, art);
    EXPECT(r, 201, NULL);
    CHECK_STR(resp_hdr(r, "OCI-Subject", h, sizeof(h)), md);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/ref/app/referrers/%s", md);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(resp_hdr(r, "Content-Type", h, sizeof(h)), MT_INDEX);
    CHECK(strstr(r->body, ad) != NULL);
    CHECK(strstr(r->body, "\"artifactType\":\"application/vnd.example.sig\"") != NULL);
    CHECK(strstr(r->body, "\"org.example\":\"yes\"") != NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/ref/app/referrers/%s?artifactType=application/other", md);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(resp_hdr(r, "OCI-Filters-Applied", h, sizeof(h)), "artifactType");
    CHECK(strstr(r->body, "\"manifests\":[]") != NULL);
    resp_free(r);
    /* a subject that does not exist yet is accepted, and listed */
    char ghost[80];
    sha256_str("ghost", 5, ghost);
    snprintf(art, sizeof(art),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.empty.v1+json\",\"digest\":\"%s\",\"size\":2},\"layers\":[],"
             "\"subject\":{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":5}}",
             empty, ghost);
    r = put_manifest("ref/app", "dangling", MT_MANIFEST, art);
    EXPECT(r, 201, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/ref/app/referrers/%s", ghost);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "application/vnd.oci.empty.v1+json") != NULL);
    resp_free(r);
    /* unknown repository: an empty list */
    snprintf(path, sizeof(path), "/v2/ref/none/referrers/%s", md);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "\"manifests\":[]") != NULL);
    resp_free(r);
}

static void test_deletes(void)
{
    char md[80], body[2048], path[512], cd[80];
    push_image("del/app", "v1", md, body, sizeof(body));
    struct resp *r = put_manifest("del/app", "v2", MT_MANIFEST, body);
    resp_free(r);
    r = req("DELETE", "/v2/del/app/manifests/v2", NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    r = req("GET", "/v2/del/app/manifests/v2", NULL, NULL, 0);
    EXPECT(r, 404, "MANIFEST_UNKNOWN");
    resp_free(r);
    r = req("GET", "/v2/del/app/manifests/v1", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/del/app/manifests/%s", md);
    r = req("DELETE", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    r = req("GET", "/v2/del/app/manifests/v1", NULL, NULL, 0);
    EXPECT(r, 404, "MANIFEST_UNKNOWN");
    resp_free(r);
    r = req("DELETE", path, NULL, NULL, 0);
    EXPECT(r, 404, "MANIFEST_UNKNOWN");
    resp_free(r);
    sha256_str(CFG, strlen(CFG), cd);
    snprintf(path, sizeof(path), "/v2/del/app/blobs/%s", cd);
    r = req("DELETE", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UNKNOWN");
    resp_free(r);
    r = req("DELETE", path, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UNKNOWN");
    resp_free(r);
}

static void test_restart_keeps_state(void)
{
    char loc[512], path[700], md[80], body[2048], d[80];
    push_image("dur/app", "v1", md, body, sizeof(body));
    struct resp *r;
    start_upload("dur/app", loc, sizeof(loc));
    r = req("PATCH", loc, (const char *[]){"Content-Range: 0-5", NULL}, "before", 6);
    EXPECT(r, 202, NULL);
    resp_free(r);
    /* an acknowledged push survives kill -9; an upload session survives a restart */
    srv_kill(&S);
    srv_restart(&S, (const char *[]){"--max-manifest-size", "65536", NULL});
    r = req("GET", "/v2/dur/app/manifests/v1", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, body);
    resp_free(r);
    expect_range(loc, "0-5");
    r = req("PATCH", loc, (const char *[]){"Content-Range: 6-10", NULL}, "after", 5);
    EXPECT(r, 202, NULL);
    resp_free(r);
    finish_upload(loc, "beforeafter");
    sha256_str("beforeafter", 11, d);
    srv_stop(&S);
    srv_restart(&S, (const char *[]){"--max-manifest-size", "65536", NULL});
    snprintf(path, sizeof(path), "/v2/dur/app/blobs/%s", d);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "beforeafter");
    resp_free(r);
}

/* A cut-off chunk rolls back to the last acknowledged offset, never further. */
static void test_cut_chunks_keep_acked_data(void)
{
    char loc[512], raw[1024];
    struct resp *r;
    start_upload("cut", loc, sizeof(loc));
    r = req("PATCH", loc, (const char *[]){"Content-Range: 0-4", NULL}, "01234", 5);
    EXPECT(r, 202, NULL);
    resp_free(r);
    r = req("PATCH", loc, (const char *[]){"Content-Range: 5-9", NULL}, "56789", 5);
    EXPECT(r, 202, NULL);
    resp_free(r);
    /* declares 100 bytes, sends 3, hangs up */
    int n = snprintf(raw, sizeof(raw),
                     "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Range: 10-109\r\n"
                     "Content-Length: 100\r\n\r\nabc",
                     loc);
    free(raw_exchange(&S, raw, (size_t)n, true));
    /* a chunk whose length disagrees with its Content-Range */
    r = req("PATCH", loc, (const char *[]){"Content-Range: 10-19", NULL}, "abc", 3);
    CHECK(r->status == 416 || r->status == 400);
    resp_free(r);
    /* raw_exchange returned when the server closed the connection, after the rollback */
    expect_range(loc, "0-9");
    r = req("PATCH", loc, (const char *[]){"Content-Range: 10-11", NULL}, "ab", 2);
    EXPECT(r, 202, NULL);
    resp_free(r);
    finish_upload(loc, "0123456789ab");
}

/*
 * The reply to a raw exchange starts with the status line want ("HTTP/1.1 431 "); OWNED out is
 * freed. Then the server still serves: a GET /v2/ on a new connection answers 200.
 */
static void expect_raw(const char *what, char *out, const char *want)
{
    if (strncmp(out, want, strlen(want)) != 0) {
        fprintf(stderr, "%s: the reply starts \"%.60s\", want \"%s\"\n", what, out, want);
        abort();
    }
    free(out);
    struct resp *r = req("GET", "/v2/", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
}

/* raw_exchange of a NUL-terminated request. OWNED. */
static char *raw(const char *bytes, bool half_close)
{
    return raw_exchange(&S, bytes, strlen(bytes), half_close);
}

/* Ambiguous framing and malformed requests are refused; the server stays up. */
static void test_raw_framing(void)
{
    static const char dup_length[] = "POST /v2/frame/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    expect_raw("two Content-Lengths",
               raw_exchange(&S, dup_length, sizeof(dup_length) - 1, true), "HTTP/1.1 400 ");
    /* a chunk size that is no number, to a live session: 400, and the session took nothing */
    char loc[256], bad_chunk[512];
    start_upload("frame", loc, sizeof(loc));
    snprintf(bad_chunk, sizeof(bad_chunk),
             "PATCH %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
             "0\r\n\r\n",
             loc);
    expect_raw("a bad chunk size", raw(bad_chunk, true), "HTTP/1.1 400 ");
    expect_range(loc, "0-0");
    struct resp *r = req("DELETE", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    /* a request line that is one word: 400 (RFC 9112, 3), not a silent close, whether the
     * client half-closes or waits for the answer */
    expect_raw("GARBAGE", raw("GARBAGE\r\n\r\n", true), "HTTP/1.1 400 ");
    expect_raw("GARBAGE, kept open", raw("GARBAGE\r\n\r\n", false), "HTTP/1.1 400 ");
    expect_raw("an empty line, then GARBAGE", raw("\r\nGARBAGE\r\nHost: x\r\n\r\n", true),
               "HTTP/1.1 400 ");
    expect_raw("no target", raw("GET /v2/\r\n\r\n", true), "HTTP/1.1 400 ");
    expect_raw("HTTP/9.9", raw("GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n", true), "HTTP/1.1 505 ");
    expect_raw("a header line without a colon",
               raw("GET /v2/ HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", true), "HTTP/1.1 400 ");
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
}

/* Content-Length lying short, and headers far too large: refused or served, never a crash. */
static void test_hostile_lengths_and_headers(void)
{
    /* declares 5 bytes, sends 12: the rest is read as the next request, which is garbage */
    static const char short_cl[] = "POST /v2/lie/blobs/uploads/?digest=sha256:"
                                   "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                                   " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGARBAGE\r\n\r\n";
    /* the 5 bytes it declared are the blob */
    expect_raw("a short Content-Length", raw_exchange(&S, short_cl, sizeof(short_cl) - 1, true),
               "HTTP/1.1 201 ");
    /* a 100 KB header value and 10,000 headers: past the connection's 64 KiB, 431 */
    size_t big = 100 * 1024 + 256;
    char *buf = malloc(big);
    CHECK(buf != NULL);
    int n = snprintf(buf, big, "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(buf + n, 'a', 100 * 1024);
    n += 100 * 1024;
    n += snprintf(buf + n, big - (size_t)n, "\r\n\r\n");
    expect_raw("a 100 KB header", raw_exchange(&S, buf, (size_t)n, true), "HTTP/1.1 431 ");
    free(buf);
    size_t many = 10000 * 12 + 64;
    buf = malloc(many);
    CHECK(buf != NULL);
    n = snprintf(buf, many, "GET /v2/ HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 10000; i++)
        n += snprintf(buf + n, many - (size_t)n, "X-%05d: 1\r\n", i);
    n += snprintf(buf + n, many - (size_t)n, "\r\n");
    expect_raw("10,000 headers", raw_exchange(&S, buf, (size_t)n, true), "HTTP/1.1 431 ");
    free(buf);
    /* nothing stored by any of it but the honest 5 bytes */
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
    struct resp *r = req("GET",
                         "/v2/lie/blobs/sha256:"
                         "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                         NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "hello");
    resp_free(r);
}

int main(void)
{
    srv_start(&S, (const char *[]){"--max-manifest-size", "65536", NULL});
    RUN(test_base);
    RUN(test_blob_monolithic_and_ranges);
    RUN(test_blob_post_put);
    RUN(test_blob_chunked);
    RUN(test_blob_big_streamed);
    RUN(test_blob_digest_mismatch);
    RUN(test_upload_ids);
    RUN(test_mount);
    RUN(test_sha512);
    RUN(test_manifests);
    RUN(test_manifest_errors);
    RUN(test_bad_names);
    RUN(test_lists);
    RUN(test_referrers);
    RUN(test_deletes);
    RUN(test_cut_chunks_keep_acked_data);
    RUN(test_raw_framing);
    RUN(test_hostile_lengths_and_headers);
    RUN(test_restart_keeps_state);
    srv_cleanup(&S);
    return 0;
}
