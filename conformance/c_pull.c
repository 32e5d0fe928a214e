/*
 * Spec "Determining Support" (end-1) and "Pull": pulling blobs (end-2, with Range), pulling
 * manifests (end-3), and checking existence with HEAD.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/conformance.h"

void sec_base(struct ctx *c)
{
    struct resp *r = req(c, "GET", "/v2/", NULL, NULL, 0);
    check_status(c, r, 200, "end-1 GET /v2/: 200 OK means the registry implements the spec");
    resp_free(r);
}

/* Content-Length of r equals n. */
static bool content_length_is(const struct resp *r, size_t n)
{
    char buf[HDR_MAX], want[32];
    fmt(want, sizeof(want), "%zu", n);
    return hdr(r, "Content-Length", buf) != NULL && strcmp(buf, want) == 0;
}

static void range_check(struct ctx *c, const char *path, const char *range, const char *data,
                        size_t from, size_t to, size_t total, const char *what)
{
    char h[80];
    fmt(h, sizeof(h), "Range: %s", range);
    struct resp *r = req(c, "GET", path, (const char *[]){h, NULL}, NULL, 0);
    checkf(c, r->status == 206,
           "end-2 GET blob with Range: %s: 206 Partial Content (SHOULD "
           "support Range, RFC 9110 section 14)",
           what);
    if (r->status != 206) {
        detail_resp(c, r);
        resp_free(r);
        return;
    }
    size_t n = to - from + 1;
    checkf(c, r->len == n && memcmp(r->body, data + from, n) == 0,
           "end-2 GET blob with Range: %s: the body is bytes %zu-%zu", what, from, to);
    char want[80];
    fmt(want, sizeof(want), "bytes %zu-%zu/%zu", from, to, total);
    char clause[200];
    fmt(clause, sizeof(clause), "end-2 GET blob with Range: %s: Content-Range %s", what, want);
    check_hdr(c, r, "Content-Range", want, clause);
    resp_free(r);
}

void sec_pull_blobs(struct ctx *c)
{
    char repo[128], other[128], path[PATH_MAX_LEN], h[HDR_MAX];
    repo_name(c, repo, sizeof(repo), "pull-blobs");
    repo_name(c, other, sizeof(other), "pull-blobs-other");
    /* a binary blob: every byte value */
    static char data[1000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + 3);
    struct blob b, ob, empty;
    if (!push_blob(c, repo, data, sizeof(data), &b) ||
        !push_blob(c, other, "other content", 13, &ob))
        return;

    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, b.digest);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 200, "end-2 GET existing blob: 200 OK");
    check(c, "end-2 GET existing blob: MUST provide the expected blob (byte-exact)",
          r->len == sizeof(data) && memcmp(r->body, data, sizeof(data)) == 0);
    if (check_hdr_present(c, r, "Docker-Content-Digest",
                          "end-2 GET blob: response MUST contain Docker-Content-Digest")) {
        char got[DIGEST_MAX];
        digest_of("sha256", r->body, r->len, got);
        check_hdr(c, r, "Docker-Content-Digest", got,
                  "end-2 GET blob: Docker-Content-Digest MUST match the digest of the body");
    }
    resp_free(r);

    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 200, "end-2 HEAD existing blob: 200 OK");
    check_hdr(c, r, "Docker-Content-Digest", b.digest,
              "end-2 HEAD blob: MUST contain the digest in Docker-Content-Digest");
    if (!check(c, "end-2 HEAD blob: MUST contain the size in Content-Length",
               content_length_is(r, sizeof(data))))
        detail(c, "Content-Length: %s", hdr(r, "Content-Length", h) ? h : "none");
    check(c, "end-2 HEAD blob: no body", r->len == 0);
    resp_free(r);

    /* not found */
    char unknown[DIGEST_MAX];
    digest_of("sha256", "never pushed anywhere", 21, unknown);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, unknown);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-2 GET unknown blob: 404 Not Found");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-2 HEAD unknown blob: 404 Not Found");
    resp_free(r);
    /* a blob the registry has, but in another repository */
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", other, b.digest);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404,
                 "end-2 GET blob of another repository: 404 (not found in the repository)");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404,
                 "end-2 HEAD blob of another repository: 404 (not found in the repository)");
    resp_free(r);

    /* ranges */
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, b.digest);
    range_check(c, path, "bytes=10-19", data, 10, 19, sizeof(data), "bytes=10-19");
    range_check(c, path, "bytes=990-", data, 990, 999, sizeof(data), "bytes=990- (open end)");
    range_check(c, path, "bytes=-5", data, 995, 999, sizeof(data), "bytes=-5 (suffix)");
    range_check(c, path, "bytes=900-5000", data, 900, 999, sizeof(data),
                "bytes=900-5000 (end past the size)");
    r = req(c, "GET", path, (const char *[]){"Range: bytes=1000-", NULL}, NULL, 0);
    check_status(c, r, 416, "end-2 GET blob with an unsatisfiable Range: 416 (RFC 9110 15.5.17)");
    check_hdr(c, r, "Content-Range", "bytes */1000",
              "end-2 416 for a Range: Content-Range bytes */<size> (RFC 9110 15.5.17)");
    resp_free(r);

    /* the empty blob */
    if (push_blob(c, repo, "", 0, &empty)) {
        fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, empty.digest);
        r = req(c, "GET", path, NULL, NULL, 0);
        check(c, "end-2 GET the zero-byte blob: 200 with an empty body",
              r->status == 200 && r->len == 0);
        check_hdr(c, r, "Docker-Content-Digest", empty.digest,
                  "end-2 GET the zero-byte blob: Docker-Content-Digest");
        resp_free(r);
    }
}

void sec_pull_manifests(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], h[HDR_MAX];
    repo_name(c, repo, sizeof(repo), "pull-manifests");
    struct image img;
    if (!push_image(c, repo, "v1", "pull", &img))
        return;

    /* GET by tag and by digest */
    const char *refs[2] = {"v1", img.digest};
    const char *what[2] = {"by tag", "by digest"};
    for (int i = 0; i < 2; i++) {
        fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, refs[i]);
        struct resp *r = req(c, "GET", path,
                             (const char *[]){"Accept: " MT_MANIFEST ", " MT_INDEX, NULL}, NULL, 0);
        checkf(c, r->status == 200, "end-3 GET manifest %s: 200 OK", what[i]);
        checkf(c, r->len == img.size && memcmp(r->body, img.body, img.size) == 0,
               "end-3 GET manifest %s: MUST provide the expected manifest (the bytes pushed)",
               what[i]);
        char clause[200];
        fmt(clause, sizeof(clause), "end-3 GET manifest %s: MUST contain Docker-Content-Digest",
            what[i]);
        if (check_hdr_present(c, r, "Docker-Content-Digest", clause)) {
            fmt(clause, sizeof(clause),
                "end-3 GET manifest %s: Docker-Content-Digest is the manifest's digest", what[i]);
            check_hdr(c, r, "Docker-Content-Digest", img.digest, clause);
        }
        fmt(clause, sizeof(clause),
            "end-3 GET manifest %s: Content-Type is the type pushed (" MT_MANIFEST ")", what[i]);
        check_hdr(c, r, "Content-Type", MT_MANIFEST, clause);
        if (i == 0)
            check(c, "end-3 GET manifest: SHOULD NOT include parameters on Content-Type",
                  hdr(r, "Content-Type", h) != NULL && strchr(h, ';') == NULL);
        resp_free(r);

        r = req(c, "HEAD", path, NULL, NULL, 0);
        checkf(c, r->status == 200, "end-3 HEAD manifest %s: 200 OK", what[i]);
        fmt(clause, sizeof(clause), "end-3 HEAD manifest %s: MUST contain Docker-Content-Digest",
            what[i]);
        check_hdr(c, r, "Docker-Content-Digest", img.digest, clause);
        checkf(c, content_length_is(r, img.size),
               "end-3 HEAD manifest %s: MUST contain the size in Content-Length", what[i]);
        checkf(c, r->len == 0, "end-3 HEAD manifest %s: no body", what[i]);
        resp_free(r);
    }

    /* without an Accept header the pushed type still comes back */
    fmt(path, sizeof(path), "/v2/%s/manifests/v1", repo);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    check(c, "end-3 GET manifest without Accept: 200 with the pushed Content-Type",
          r->status == 200 && hdr_is(r, "Content-Type", MT_MANIFEST));
    resp_free(r);

    /* not found */
    char unknown[DIGEST_MAX];
    digest_of("sha256", "no such manifest", 16, unknown);
    fmt(path, sizeof(path), "/v2/%s/manifests/nosuchtag", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-3 GET manifest of an unknown tag: 404 Not Found");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-3 HEAD manifest of an unknown tag: 404 Not Found");
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, unknown);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-3 GET manifest of an unknown digest: 404 Not Found");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-3 HEAD manifest of an unknown digest: 404 Not Found");
    resp_free(r);
    /* "An attempt to pull a nonexistent repository MUST return response code 404" */
    char never[128];
    repo_name(c, never, sizeof(never), "pull-never-pushed");
    fmt(path, sizeof(path), "/v2/%s/manifests/v1", never);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-3 pull from a nonexistent repository: MUST be 404");
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", never, img.cfg.digest);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-2 blob pull from a nonexistent repository: 404");
    resp_free(r);
}
