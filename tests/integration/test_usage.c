/*
 * Billing figures against the real binary: images with layers shared across tags and across
 * repositories, mounts, range requests, an aborted download and a deleted manifest; every
 * figure of /admin/usage and /metrics (every ocireg_repo_* sample, physical bytes, blob and
 * manifest counts) is checked to the byte against what this test sent and received. Then
 * kill -9: storage figures survive exactly and transfer counters flushed before it too.
 * Quotas refuse what would exceed them. promtool checks /metrics.
 * Upload sessions count against the quota while their bodies are written, and are bounded
 * per session and per repository, across two server processes on one root.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static struct srv S;
static unsigned admin_port;

struct figures {
    long long stored, exclusive, ingress, egress, pulls, pushes;
};

static const char *const *server_args(void)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/aport", S.dir);
    static const char *args[3];
    args[0] = "--admin-port-file";
    args[1] = path;
    args[2] = NULL;
    return args;
}

/* GET on the admin listener. */
static struct resp *admin_get(const char *path)
{
    struct srv a = S;
    a.port = admin_port;
    snprintf(a.base, sizeof(a.base), "http://127.0.0.1:%u", admin_port);
    return http(&a, "GET", path, NULL, NULL, 0);
}

static struct figures usage_of(const char *repo)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/usage?repository=%s", repo);
    struct resp *r = admin_get(path);
    EXPECT(r, 200, NULL);
    json_t *doc = json_loads(r->body, 0, NULL);
    CHECK(doc != NULL);
    json_t *e = json_array_get(json_object_get(doc, "repositories"), 0);
    struct figures f = {0, 0, 0, 0, 0, 0};
    if (e != NULL) {
        f.stored = json_integer_value(json_object_get(e, "stored_bytes"));
        f.exclusive = json_integer_value(json_object_get(e, "exclusive_bytes"));
        f.ingress = json_integer_value(json_object_get(e, "ingress_bytes"));
        f.egress = json_integer_value(json_object_get(e, "egress_bytes"));
        f.pulls = json_integer_value(json_object_get(e, "pulls"));
        f.pushes = json_integer_value(json_object_get(e, "pushes"));
    }
    json_decref(doc);
    resp_free(r);
    return f;
}

static long long total(const char *field)
{
    struct resp *r = admin_get("/admin/usage?n=1");
    json_t *doc = json_loads(r->body, 0, NULL);
    CHECK(doc != NULL);
    long long v = json_integer_value(json_object_get(json_object_get(doc, "registry"), field));
    json_decref(doc);
    resp_free(r);
    return v;
}

/* Transfer counters reach the index within a second or so: wait (with a deadline) for them. */
static struct figures wait_for(const char *repo, long long ingress, long long egress_min,
                               long long pulls)
{
    struct timespec start, now, tick = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct figures f = usage_of(repo);
        if (f.ingress >= ingress && f.egress >= egress_min && f.pulls >= pulls)
            return f;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10) {
            fprintf(stderr, "%s: ingress %lld/%lld egress %lld/%lld pulls %lld/%lld\n", repo,
                    f.ingress, ingress, f.egress, egress_min, f.pulls, pulls);
            abort();
        }
        nanosleep(&tick, NULL);
    }
}

/*
 * The figures of /metrics against what this test sent and received: every ocireg_repo_*
 * sample, and the registry's, must be one of want[] (to the byte), and every line of want[]
 * must be there.
 */
static void expect_metrics(const char *const *want, size_t n)
{
    struct resp *r = admin_get("/metrics");
    EXPECT(r, 200, NULL);
    static const char *const families[] = {
        "ocireg_repo_",           "ocireg_storage_physical_bytes ", "ocireg_blobs ",
        "ocireg_manifests ",      "ocireg_uploads_in_progress ",    "ocireg_uploads_in_progress_bytes ",
    };
    bool *seen = calloc(n ? n : 1, sizeof(*seen));
    CHECK(seen != NULL);
    int bad = 0;
    for (char *save = NULL, *line = strtok_r(r->body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        bool ours = false;
        for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
            ours = ours || strncmp(line, families[f], strlen(families[f])) == 0;
        if (!ours)
            continue;
        size_t i = 0;
        while (i < n && strcmp(line, want[i]) != 0)
            i++;
        if (i == n || seen[i]) {
            fprintf(stderr, "/metrics: unexpected sample: %s\n", line);
            bad++;
        } else {
            seen[i] = true;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!seen[i]) {
            fprintf(stderr, "/metrics: missing sample: %s\n", want[i]);
            bad++;
        }
    free(seen);
    resp_free(r);
    CHECK_INT(bad, ==, 0);
}

/* The five samples of one repository into lines[5] (each of cap bytes). */
static void repo_samples(char (*lines)[160], const char *repo, const struct figures *f)
{
    snprintf(lines[0], 160, "ocireg_repo_stored_bytes{repository=\"%s\"} %lld", repo, f->stored);
    snprintf(lines[1], 160,
             "ocireg_repo_transfer_bytes_total{repository=\"%s\",direction=\"ingress\"} %lld",
             repo, f->ingress);
    snprintf(lines[2], 160,
             "ocireg_repo_transfer_bytes_total{repository=\"%s\",direction=\"egress\"} %lld",
             repo, f->egress);
    snprintf(lines[3], 160, "ocireg_repo_pulls_total{repository=\"%s\"} %lld", repo, f->pulls);
    snprintf(lines[4], 160, "ocireg_repo_pushes_total{repository=\"%s\"} %lld", repo, f->pushes);
}

/* /metrics with bill/one and bill/two as given, and the registry's figures. */
static void expect_bill_metrics(const struct figures *one, const struct figures *two,
                                long long physical, long long blobs, long long manifests)
{
    char lines[16][160];
    repo_samples(&lines[0], "bill/one", one);
    repo_samples(&lines[5], "bill/two", two);
    snprintf(lines[10], 160, "ocireg_repo_series_truncated 0");
    snprintf(lines[11], 160, "ocireg_storage_physical_bytes %lld", physical);
    snprintf(lines[12], 160, "ocireg_blobs %lld", blobs);
    snprintf(lines[13], 160, "ocireg_manifests %lld", manifests);
    snprintf(lines[14], 160, "ocireg_uploads_in_progress 0");
    snprintf(lines[15], 160, "ocireg_uploads_in_progress_bytes 0");
    const char *want[16];
    for (int i = 0; i < 16; i++)
        want[i] = lines[i];
    expect_metrics(want, 16);
}

static const char CFG1[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":1}";
static const char CFG2[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":2}";
static const char L1[] = "layer one, shared by both images and both repositories";
static const char L2[] = "layer two of image one";
static const char L3[] = "layer three, of image two only";

static void manifest(char *out, size_t cap, const char *cfg, size_t cl, const char *a, size_t al,
                     const char *b, size_t bl)
{
    snprintf(out, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
             "\"%s\",\"size\":%zu},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
             "\"digest\":\"%s\",\"size\":%zu}]}",
             cfg, cl, a, al, b, bl);
}

static char M1[1024], M2[1024], dm1[80], dm2[80], dc1[80], dc2[80], dl1[80], dl2[80], dl3[80];

static void test_figures(void)
{
    long long c1 = strlen(CFG1), c2 = strlen(CFG2), l1 = strlen(L1), l2 = strlen(L2),
              l3 = strlen(L3);
    push_blob_data(&S, "bill/one", CFG1, (size_t)c1, dc1);
    push_blob_data(&S, "bill/one", L1, (size_t)l1, dl1);
    push_blob_data(&S, "bill/one", L2, (size_t)l2, dl2);
    manifest(M1, sizeof(M1), dc1, (size_t)c1, dl1, (size_t)l1, dl2, (size_t)l2);
    struct resp *r = put_manifest_body(&S, "bill/one", "v1", MT_MANIFEST, M1);
    EXPECT(r, 201, NULL);
    resp_free(r);
    r = put_manifest_body(&S, "bill/one", "latest", MT_MANIFEST, M1); /* same bytes, new tag */
    EXPECT(r, 201, NULL);
    resp_free(r);
    push_blob_data(&S, "bill/one", CFG2, (size_t)c2, dc2);
    push_blob_data(&S, "bill/one", L1, (size_t)l1, dl1); /* again: stored once */
    push_blob_data(&S, "bill/one", L3, (size_t)l3, dl3);
    manifest(M2, sizeof(M2), dc2, (size_t)c2, dl1, (size_t)l1, dl3, (size_t)l3);
    r = put_manifest_body(&S, "bill/one", "v2", MT_MANIFEST, M2);
    EXPECT(r, 201, NULL);
    resp_free(r);
    sha256_str(M1, strlen(M1), dm1);
    sha256_str(M2, strlen(M2), dm2);
    long long m1 = strlen(M1), m2 = strlen(M2);

    /* image one into bill/two by mounts: no bytes move */
    const char *mounts[] = {dc1, dl1, dl2};
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v2/bill/two/blobs/uploads/?mount=%s&from=bill/one",
                 mounts[i]);
        r = http(&S, "POST", path, NULL, "", 0);
        EXPECT(r, 201, NULL);
        resp_free(r);
    }
    r = put_manifest_body(&S, "bill/two", "v1", MT_MANIFEST, M1);
    EXPECT(r, 201, NULL);
    resp_free(r);

    /* downloads: a manifest GET (a pull), a HEAD (no bytes), a blob, a range */
    r = http(&S, "GET", "/v2/bill/one/manifests/v1", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    r = http(&S, "HEAD", "/v2/bill/one/manifests/v2", NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    char path[256];
    snprintf(path, sizeof(path), "/v2/bill/one/blobs/%s", dl2);
    r = http(&S, "GET", path, NULL, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/bill/one/blobs/%s", dl1);
    r = http(&S, "GET", path, (const char *[]){"Range: bytes=0-9", NULL}, NULL, 0);
    EXPECT(r, 206, NULL);
    resp_free(r);

    long long ingress1 = c1 + l1 + l2 + m1 + m1 + c2 + l1 + l3 + m2;
    long long egress1 = m1 + l2 + 10;
    struct figures one = wait_for("bill/one", ingress1, egress1, 1);
    CHECK_INT(one.ingress, ==, ingress1);
    CHECK_INT(one.egress, ==, egress1);
    CHECK_INT(one.pulls, ==, 1);
    CHECK_INT(one.pushes, ==, 3);
    CHECK_INT(one.stored, ==, c1 + l1 + l2 + m1 + c2 + l3 + m2);
    CHECK_INT(one.exclusive, ==, c2 + l3 + m2);
    struct figures two = wait_for("bill/two", m1, 0, 0);
    CHECK_INT(two.ingress, ==, m1);
    CHECK_INT(two.egress, ==, 0);
    CHECK_INT(two.pushes, ==, 1);
    CHECK_INT(two.stored, ==, c1 + l1 + l2 + m1);
    CHECK_INT(two.exclusive, ==, 0);
    CHECK_INT(total("physical_bytes"), ==, c1 + l1 + l2 + m1 + c2 + l3 + m2);
    CHECK_INT(total("blobs"), ==, 5);
    CHECK_INT(total("manifests"), ==, 2);
    /* /metrics says the same, to the byte, computed from what was sent and received */
    struct figures want_one = {c1 + l1 + l2 + m1 + c2 + l3 + m2, 0, ingress1, egress1, 1, 3};
    struct figures want_two = {c1 + l1 + l2 + m1, 0, m1, 0, 0, 1};
    expect_bill_metrics(&want_one, &want_two, c1 + l1 + l2 + m1 + c2 + l3 + m2, 5, 2);

    /* a deleted manifest leaves the bill; a shared one stays on disk */
    snprintf(path, sizeof(path), "/v2/bill/one/manifests/%s", dm2);
    r = http(&S, "DELETE", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/bill/one/manifests/%s", dm1);
    r = http(&S, "DELETE", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    one = usage_of("bill/one");
    CHECK_INT(one.stored, ==, c1 + l1 + l2 + c2 + l3);
    CHECK_INT(total("manifests"), ==, 1);
    CHECK_INT(total("physical_bytes"), ==, c1 + l1 + l2 + m1 + c2 + l3);
    CHECK_INT(total("blobs"), ==, 5);
    want_one.stored = c1 + l1 + l2 + c2 + l3;
    expect_bill_metrics(&want_one, &want_two, c1 + l1 + l2 + m1 + c2 + l3, 5, 1);
}

static void test_aborted_download(void)
{
    size_t n = 32u << 20;
    char *big = malloc(n);
    CHECK(big != NULL);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 2654435761u >> 11);
    char d[80];
    push_blob_data(&S, "bill/big", big, n, d);
    free(big);
    struct figures before = wait_for("bill/big", (long long)n, 0, 0);
    char req[512];
    int len = snprintf(req, sizeof(req), "GET /v2/bill/big/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n",
                       d);
    size_t got = raw_abandon(&S, req, (size_t)len, 1u << 20);
    CHECK_INT(got, ==, 1u << 20);
    /* the server counts what the client's TCP acknowledged: about what it read (its last
     * delayed ACKs may be lost to the reset), far less than the blob */
    struct figures after = wait_for("bill/big", (long long)n, before.egress + (3 << 18), 0);
    CHECK_INT(after.egress - before.egress, <, (long long)n);
}

static void test_quota(void)
{
    char out[80], d[80];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "set", "bill/q", "--quota", "100", NULL}),
              ==, 0);
    char blob[80];
    memset(blob, 'q', sizeof(blob));
    push_blob_data(&S, "bill/q", blob, 60, d);
    char path[256];
    char other[80];
    memset(other, 'r', sizeof(other));
    sha256_str(other, 60, d);
    snprintf(path, sizeof(path), "/v2/bill/q/blobs/uploads/?digest=%s", d);
    struct resp *r = http(&S, "POST", path, NULL, other, 60);
    EXPECT(r, 403, "DENIED");
    CHECK(strstr(r->body, "quota of 100 bytes") != NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/bill/q/blobs/%s", d);
    r = http(&S, "HEAD", path, NULL, NULL, 0);
    EXPECT(r, 404, NULL);
    resp_free(r);
    CHECK_INT(usage_of("bill/q").stored, ==, 60);
    /* deleting frees quota */
    sha256_str(blob, 60, out);
    snprintf(path, sizeof(path), "/v2/bill/q/blobs/%s", out);
    r = http(&S, "DELETE", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    push_blob_data(&S, "bill/q", other, 60, d);
    CHECK_INT(usage_of("bill/q").stored, ==, 60);
    /* a mount is no upload: the quota is checked where the link is made, and a refused
     * mount is no 201 (the client gets an upload session or the refusal, nothing linked) */
    char third[80];
    memset(third, 's', sizeof(third));
    push_blob_data(&S, "bill/q-src", third, 70, d);
    snprintf(path, sizeof(path), "/v2/bill/q/blobs/uploads/?mount=%s&from=bill/q-src", d);
    r = http(&S, "POST", path, NULL, NULL, 0);
    EXPECT(r, 403, "DENIED");
    CHECK(strstr(r->body, "quota of 100 bytes") != NULL);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/bill/q/blobs/%s", d);
    r = http(&S, "HEAD", path, NULL, NULL, 0);
    EXPECT(r, 404, NULL);
    resp_free(r);
    CHECK_INT(usage_of("bill/q").stored, ==, 60);
}

static void session_start(struct srv *s, const char *repo, char *loc, size_t cap)
{
    char path[256];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    struct resp *r = http(s, "POST", path, NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    CHECK(resp_hdr(r, "Location", loc, cap) != NULL);
    resp_free(r);
}

/* A PATCH of n bytes at offset `at`, with Content-Length (and Content-Range). */
static struct resp *patch_at(struct srv *s, const char *loc, size_t at, const char *data,
                             size_t n)
{
    char cr[64];
    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", at, at + n - 1);
    return http(s, "PATCH", loc, (const char *[]){cr, "Content-Type: application/octet-stream",
                                                   NULL},
                data, n);
}

/* The same sent whole on a raw connection: for a chunk refused before its body is read, whose
 * answer libcurl may not report (http_whole). */
static struct resp *patch_whole(struct srv *s, const char *loc, size_t at, const char *data,
                                size_t n)
{
    char cr[64];
    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", at, at + n - 1);
    return http_whole(s, "PATCH", loc,
                      (const char *[]){cr, "Content-Type: application/octet-stream", NULL}, data,
                      n);
}

/* A PATCH whose body streams in (chunked transfer coding: no length known beforehand). */
static struct resp *patch_streamed(struct srv *s, const char *loc, const char *data, size_t n)
{
    return http_chunked(s, "PATCH", loc, (const char *[]){"Content-Type: application/octet-stream",
                                                           NULL},
                        data, n);
}

/* The head of a request announcing `len` body bytes and sending none: the answer must come
 * before the body (the connection is not half-closed). */
static char *head_only(struct srv *s, const char *method, const char *path, size_t len)
{
    char raw[512];
    int n = snprintf(raw, sizeof(raw),
                     "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, len);
    return raw_exchange(s, raw, (size_t)n, false);
}

static void expect_raw(const char *out, const char *status, const char *needle, const char *what)
{
    if (strncmp(out, status, strlen(status)) != 0 || strstr(out, needle) == NULL) {
        fprintf(stderr, "%s: want %s with \"%s\", got:\n%.1500s\n", what, status, needle, out);
        abort();
    }
}

static long long session_offset(struct srv *s, const char *loc)
{
    struct resp *r = http(s, "GET", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    char range[64];
    CHECK(resp_hdr(r, "Range", range, sizeof(range)) != NULL);
    resp_free(r);
    long long last = strtoll(strchr(range, '-') + 1, NULL, 10);
    return last == 0 ? 0 : last + 1; /* "0-0": empty, as the sessions here never hold 1 byte */
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * Waits until the PATCH sent on fd to session loc has written `want` bytes of its body into
 * the session's data file: then the server has read its head and holds what it announced
 * (body bytes are written only into what is held). Fails, showing the answer, when the server
 * answered the PATCH instead (refused it before its body ended), or after 60 s.
 */
static void wait_chunk_taken(int fd, const char *loc, long long want)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/uploads/%s", S.root, strrchr(loc, '/') + 1);
    double until = now_s() + 60;
    struct timespec tick = {0, 5 * 1000 * 1000};
    for (;;) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size >= want)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            char buf[2048];
            ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
            buf[n > 0 ? n : 0] = '\0';
            fprintf(stderr, "the PATCH in flight was answered before its body ended:\n%s\n", buf);
            abort();
        }
        CHECK(now_s() < until);
        nanosleep(&tick, NULL);
    }
}

/* DELETE of a session whose last request may still be ending: it answers "in use by another
 * request" until that request has given the session back, after its hold. */
static void session_delete(struct srv *s, const char *loc)
{
    double until = now_s() + 60;
    struct timespec tick = {0, 5 * 1000 * 1000};
    struct resp *r;
    for (;;) {
        r = http(s, "DELETE", loc, NULL, NULL, 0);
        if (r->status != 400 || strstr(r->body, "in use by another request") == NULL)
            break;
        resp_free(r);
        CHECK(now_s() < until);
        nanosleep(&tick, NULL);
    }
    EXPECT(r, 204, NULL);
    resp_free(r);
}

static void session_commit(struct srv *s, const char *loc, const char *data, size_t n)
{
    char digest[80], path[512];
    sha256_str(data, n, digest);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
    struct resp *r = http(s, "PUT", path, NULL, NULL, 0);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

/* A repository with a 1 KiB quota and upload bodies of 3 MB: every kind refused at once,
 * nothing big kept; sessions within the quota work, and count against it. */
static void test_upload_quota(void)
{
    enum { BIG = 3000000 };
    char out[80];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "set", "bill/uq", "--quota", "1K", NULL}),
              ==, 0);
    char *big = malloc(BIG);
    CHECK(big != NULL);
    memset(big, 'b', BIG);
    char loc[256], path[512], digest[80];
    long long before = dir_bytes(S.root, "uploads");

    /* a chunk of known length: refused before its body is read */
    session_start(&S, "bill/uq", loc, sizeof(loc));
    char *raw = head_only(&S, "PATCH", loc, BIG);
    expect_raw(raw, "HTTP/1.1 403", "quota of 1024 bytes", "3 MB PATCH into a 1 KiB quota");
    CHECK(strstr(raw, "\"DENIED\"") != NULL);
    free(raw);
    /* the same sent whole */
    struct resp *r = patch_whole(&S, loc, 0, big, BIG);
    EXPECT(r, 403, "DENIED");
    resp_free(r);
    CHECK_INT(session_offset(&S, loc), ==, 0);
    /* a streamed chunk: refused as it goes over, its bytes not kept */
    r = patch_streamed(&S, loc, big, BIG);
    EXPECT(r, 403, "DENIED");
    CHECK(strstr(r->body, "quota of 1024 bytes") != NULL);
    resp_free(r);
    CHECK_INT(session_offset(&S, loc), ==, 0);
    /* monolithic: refused before its body is read, and sent whole */
    sha256_str(big, BIG, digest);
    snprintf(path, sizeof(path), "/v2/bill/uq/blobs/uploads/?digest=%s", digest);
    raw = head_only(&S, "POST", path, BIG);
    expect_raw(raw, "HTTP/1.1 403", "quota of 1024 bytes", "3 MB monolithic POST");
    free(raw);
    r = http_whole(&S, "POST", path,
                   (const char *[]){"Content-Type: application/octet-stream", NULL}, big, BIG);
    EXPECT(r, 403, "DENIED");
    resp_free(r);
    long long left = dir_bytes(S.root, "uploads") - before;
    fprintf(stderr, "  after the refused 3 MB bodies: %lld bytes more in uploads/\n", left);
    CHECK_INT(left, <=, 1024);
    r = http(&S, "DELETE", loc, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);

    /* within the quota: sessions count against it while they hold their bytes */
    char a[256], b[256], c[256], x[256], data[1024];
    memset(data, 'q', sizeof(data));
    session_start(&S, "bill/uq", a, sizeof(a));
    session_start(&S, "bill/uq", b, sizeof(b));
    /* a chunk in flight holds its announced length; cut off, it gives it back */
    session_start(&S, "bill/uq", x, sizeof(x));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd != -1 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: 1000\r\n\r\n0123456789",
                      x);
    CHECK(send(fd, head, (size_t)hn, MSG_NOSIGNAL) == hn);
    /*
     * Nothing else of bill/uq may hold bytes until x's chunk holds its 1000: a PATCH on a
     * holding 100 when the server reads x's head would make x's hold the one refused
     * (100 + 1000 > 1024), and nothing would hold 1000 afterwards.
     */
    wait_chunk_taken(fd, x, 10);
    r = patch_at(&S, a, 0, data, 100);
    EXPECT(r, 403, "DENIED");
    if (strstr(r->body, "(0 stored, 1000 held by upload sessions)") == NULL) {
        fprintf(stderr, "want the 1000 bytes x holds named, got %s\n", r->body);
        abort();
    }
    resp_free(r);
    CHECK_INT(session_offset(&S, a), ==, 0);
    /* cut off: x gives its 1000 back once the server sees the reset. A refused PATCH holds
     * nothing, so polling with one does not compete with x. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    struct timespec tick = {0, 20 * 1000 * 1000};
    double until = now_s() + 60;
    for (;;) {
        r = patch_at(&S, a, 0, data, 600);
        if (r->status == 202)
            break;
        EXPECT(r, 403, "DENIED");
        resp_free(r);
        CHECK(now_s() < until);
        nanosleep(&tick, NULL);
    }
    resp_free(r);
    CHECK_INT(session_offset(&S, x), ==, 0);
    session_delete(&S, x);
    r = patch_at(&S, b, 0, data + 1, 600);
    EXPECT(r, 403, "DENIED");
    CHECK(strstr(r->body, "600 held by upload sessions") != NULL);
    resp_free(r);
    r = http(&S, "DELETE", a, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    r = patch_at(&S, b, 0, data + 1, 600);
    EXPECT(r, 202, NULL);
    resp_free(r);
    session_commit(&S, b, data + 1, 600);
    CHECK_INT(usage_of("bill/uq").stored, ==, 600);
    /* monolithic within, then over */
    push_blob_data(&S, "bill/uq", data + 2, 300, digest);
    sha256_str(data + 3, 200, digest);
    snprintf(path, sizeof(path), "/v2/bill/uq/blobs/uploads/?digest=%s", digest);
    r = http(&S, "POST", path, NULL, data + 3, 200);
    EXPECT(r, 403, "DENIED");
    resp_free(r);
    /* streamed within */
    session_start(&S, "bill/uq", c, sizeof(c));
    r = patch_streamed(&S, c, data + 4, 100);
    EXPECT(r, 202, NULL);
    resp_free(r);
    session_commit(&S, c, data + 4, 100);
    CHECK_INT(usage_of("bill/uq").stored, ==, 1000);
    CHECK_INT(dir_bytes(S.root, "uploads") - before, <=, 0);
    free(big);
}

/* --max-upload-size 1M and --max-repo-upload-size 2M, with two server processes on one root. */
static void test_upload_bounds(void)
{
    enum { K = 1024, BIG = 1536 * 1024 };
    const char *const args[] = {"--max-upload-size", "1M", "--max-repo-upload-size", "2M", NULL};
    struct srv a = {.log_to_file = true};
    srv_start(&a, args);
    struct srv b = a;
    srv_restart(&b, args); /* a second process on the same root */
    char *big = malloc(BIG);
    CHECK(big != NULL);
    memset(big, 'z', BIG);
    char s1[256], s2[256], s3[256], s4[256], path[512], digest[80];

    session_start(&a, "lim/app", s1, sizeof(s1));
    char *raw = head_only(&a, "PATCH", s1, BIG);
    expect_raw(raw, "HTTP/1.1 413", "--max-upload-size", "a 1.5 MiB chunk into a 1 MiB bound");
    CHECK(strstr(raw, "\"SIZE_INVALID\"") != NULL);
    free(raw);
    struct resp *r = patch_at(&a, s1, 0, big, 600 * K);
    EXPECT(r, 202, NULL);
    resp_free(r);
    r = patch_whole(&a, s1, 600 * K, big, 600 * K);
    EXPECT(r, 413, "SIZE_INVALID");
    resp_free(r);
    CHECK_INT(session_offset(&a, s1), ==, 600 * K);
    session_start(&a, "lim/app", s2, sizeof(s2));
    r = patch_streamed(&a, s2, big, BIG);
    EXPECT(r, 413, "SIZE_INVALID");
    resp_free(r);
    CHECK_INT(session_offset(&a, s2), ==, 0);
    sha256_str(big, BIG, digest);
    snprintf(path, sizeof(path), "/v2/lim/app/blobs/uploads/?digest=%s", digest);
    raw = head_only(&a, "POST", path, BIG);
    expect_raw(raw, "HTTP/1.1 413", "--max-upload-size", "a 1.5 MiB monolithic POST");
    free(raw);
    CHECK_INT(dir_bytes(a.root, "uploads"), ==, 600 * K);

    /* the repository's sessions together, whichever process holds them */
    session_start(&b, "lim/app", s3, sizeof(s3));
    r = patch_at(&b, s3, 0, big, 1024 * K);
    EXPECT(r, 202, NULL);
    resp_free(r);
    session_start(&a, "lim/app", s4, sizeof(s4));
    r = patch_whole(&a, s4, 0, big, 600 * K);
    EXPECT(r, 429, "TOOMANYREQUESTS");
    CHECK(strstr(r->body, "--max-repo-upload-size") != NULL);
    resp_free(r);
    r = http(&a, "DELETE", s3, NULL, NULL, 0);
    EXPECT(r, 204, NULL);
    resp_free(r);
    r = patch_at(&b, s4, 0, big, 600 * K);
    EXPECT(r, 202, NULL);
    resp_free(r);
    session_commit(&b, s4, big, 600 * K);
    session_commit(&a, s1, big, 600 * K);
    CHECK_INT(dir_bytes(a.root, "uploads"), ==, 0);
    free(big);
    srv_stop(&b);
    srv_stop(&a);
    srv_cleanup(&a);
}

static void test_metrics_format(void)
{
    struct resp *r = admin_get("/metrics");
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "ocireg_repo_stored_bytes{repository=\"bill/one\"}") != NULL);
    CHECK(strstr(r->body, "ocireg_http_requests_total{method=\"PUT\",route=\"manifest\","
                          "code=\"201\"}") != NULL);
    CHECK(strstr(r->body, "ocireg_repo_transfer_bytes_total{repository=\"bill/one\","
                          "direction=\"egress\"}") != NULL);
    char file[256], cmd[600];
    snprintf(file, sizeof(file), "%s/metrics.txt", S.dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL && fwrite(r->body, 1, r->len, f) == r->len);
    fclose(f);
    resp_free(r);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", file);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "promtool check metrics failed (%d): is the prometheus package "
                        "installed?\n",
                rc);
        abort();
    }
    r = admin_get("/admin/usage?users");
    EXPECT(r, 200, NULL);
    CHECK(strncmp(r->body, "{\"users\":[", 10) == 0);
    resp_free(r);
    r = admin_get("/healthz");
    EXPECT(r, 200, NULL);
    resp_free(r);
    r = admin_get("/readyz");
    EXPECT(r, 200, NULL);
    resp_free(r);
}

static void test_kill9(void)
{
    struct figures one = usage_of("bill/one"), two = usage_of("bill/two");
    long long phys = total("physical_bytes");
    srv_kill(&S);
    srv_restart(&S, server_args());
    admin_port = read_port_file(&S, "aport");
    struct figures a = usage_of("bill/one"), b = usage_of("bill/two");
    CHECK_INT(a.stored, ==, one.stored);
    CHECK_INT(a.ingress, ==, one.ingress);
    CHECK_INT(a.egress, ==, one.egress);
    CHECK_INT(b.stored, ==, two.stored);
    CHECK_INT(b.pushes, ==, two.pushes);
    CHECK_INT(total("physical_bytes"), ==, phys);
    /* the CLI reads the same figures while the server runs */
    char out[4096];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"usage", "--json", "bill/two",
                                                                     NULL}),
              ==, 0);
    char want[64];
    snprintf(want, sizeof(want), "\"stored_bytes\":%lld,", two.stored);
    CHECK(strstr(out, want) != NULL);
}

int main(void)
{
    srv_start(&S, NULL);
    srv_stop(&S);
    srv_restart(&S, server_args());
    admin_port = read_port_file(&S, "aport");
    RUN(test_figures);
    RUN(test_aborted_download);
    RUN(test_quota);
    RUN(test_upload_quota);
    RUN(test_upload_bounds);
    RUN(test_metrics_format);
    RUN(test_kill9);
    srv_cleanup(&S);
    return 0;
}
