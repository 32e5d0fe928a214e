/*
 * Spec "Push": POST then PUT (end-4a, end-6), single POST (end-4b), digest-algorithm (end-4c),
 * chunked and streamed PATCH (end-5) with the upload status (end-13), cancel (end-14), mounts
 * (end-11), manifests (end-7a) with ?tag= (end-7b), and the manifest size limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/conformance.h"

/* POST /v2/<repo>/blobs/uploads/[?query]; the response (OWNED). */
static struct resp *post_upload(struct ctx *c, const char *repo, const char *query,
                                const void *body, size_t len)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/blobs/uploads/%s%s", repo, query ? "?" : "",
        query ? query : "");
    if (body == NULL)
        return req(c, "POST", path, (const char *[]){"Content-Length: 0", NULL}, "", 0);
    return req(c, "POST", path, (const char *[]){OCTET, NULL}, body, len);
}

/* Opens a session for setup; its Location into loc (HDR_MAX). */
static bool open_session(struct ctx *c, const char *repo, const char *query, char *loc)
{
    struct resp *r = post_upload(c, repo, query, NULL, 0);
    bool ok = r->status == 202 && hdr(r, "Location", loc) != NULL;
    setup(c, "POST /blobs/uploads/ opening a session", ok, r);
    resp_free(r);
    return ok;
}

/* PUT <loc>?digest=<d> with an optional final chunk. */
static struct resp *close_session(struct ctx *c, const char *loc, const char *digest,
                                  const void *body, size_t len, const char *content_range)
{
    char path[PATH_MAX_LEN], q[200], cr[100];
    fmt(q, sizeof(q), "digest=%s", digest);
    add_query(path, sizeof(path), loc, q);
    if (body == NULL)
        return req(c, "PUT", path, (const char *[]){"Content-Length: 0", NULL}, NULL, 0);
    if (content_range != NULL) {
        fmt(cr, sizeof(cr), "Content-Range: %s", content_range);
        return req(c, "PUT", path, (const char *[]){OCTET, cr, NULL}, body, len);
    }
    return req(c, "PUT", path, (const char *[]){OCTET, NULL}, body, len);
}

static struct resp *patch(struct ctx *c, const char *loc, const void *body, size_t from, size_t to)
{
    char cr[100];
    fmt(cr, sizeof(cr), "Content-Range: %zu-%zu", from, to);
    return req(c, "PATCH", loc, (const char *[]){OCTET, cr, NULL}, body, to - from + 1);
}

/* GET <location> expecting the blob bytes. */
static void check_pullable(struct ctx *c, const struct resp *r, const void *data, size_t len,
                           const char *clause)
{
    char loc[HDR_MAX];
    if (hdr(r, "Location", loc) == NULL || loc_path(loc) == NULL) {
        check(c, clause, false);
        detail(c, "no usable Location");
        return;
    }
    struct resp *g = req(c, "GET", loc, NULL, NULL, 0);
    bool ok = g->status == 200 && g->len == len && memcmp(g->body, data, len) == 0;
    if (!check(c, clause, ok)) {
        detail(c, "GET %s", loc);
        detail_resp(c, g);
    }
    resp_free(g);
}

/* GET /v2/<repo>/blobs/<digest> returns data. */
static bool blob_is(struct ctx *c, const char *repo, const char *digest, const void *data,
                    size_t len)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    struct resp *g = req(c, "GET", path, NULL, NULL, 0);
    bool ok = g->status == 200 && g->len == len && memcmp(g->body, data, len) == 0;
    if (!ok)
        detail_resp(c, g);
    resp_free(g);
    return ok;
}

static bool blob_absent(struct ctx *c, const char *repo, const char *digest)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    struct resp *g = req(c, "HEAD", path, NULL, NULL, 0);
    bool ok = g->status == 404;
    resp_free(g);
    return ok;
}

static void fill(char *p, size_t n, unsigned seed)
{
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)(x >> 16);
    }
}

void sec_push_monolithic(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], loc2[HDR_MAX], h[HDR_MAX];
    repo_name(c, repo, sizeof(repo), "push-monolithic");
    static char data[4096];
    fill(data, sizeof(data), 1);
    char d[DIGEST_MAX];
    digest_of("sha256", data, sizeof(data), d);

    /* POST then PUT */
    struct resp *r = post_upload(c, repo, NULL, NULL, 0);
    check_status(c, r, 202, "end-4a POST /blobs/uploads/: 202 Accepted");
    bool have = check_hdr_present(c, r, "Location", "end-4a POST: MUST include Location");
    if (have)
        hdr(r, "Location", loc);
    resp_free(r);
    if (!have)
        return;
    r = post_upload(c, repo, NULL, NULL, 0);
    bool have2 = r->status == 202 && hdr(r, "Location", loc2) != NULL;
    if (!check(c, "end-4a two POSTs: each <blob-push-location> holds a unique session ID",
               have2 && strcmp(loc, loc2) != 0))
        detail(c, "first %s, second %s", loc, have2 ? loc2 : "(none)");
    resp_free(r);

    r = close_session(c, loc, d, data, sizeof(data), NULL);
    check_status(c, r, 201, "end-6 PUT <location>?digest= with the blob: 201 Created");
    if (check_hdr_present(c, r, "Location", "end-6 PUT: MUST have Location <blob-location>"))
        check_pullable(c, r, data, sizeof(data),
                       "end-6 PUT: <blob-location> is a pullable blob URL");
    check(c, "end-6 PUT: Docker-Content-Digest, if sent, is the blob's digest",
          hdr(r, "Docker-Content-Digest", h) == NULL || strcmp(h, d) == 0);
    resp_free(r);
    check(c, "end-6 after POST+PUT: GET /blobs/<digest> returns the blob",
          blob_is(c, repo, d, data, sizeof(data)));
    /* the second session is still usable for the same content (de-duplication) */
    if (have2) {
        r = close_session(c, loc2, d, data, sizeof(data), NULL);
        check_status(c, r, 201, "end-6 PUT of a blob the repository already has: 201 Created");
        resp_free(r);
    }

    /* single POST */
    static char data2[3000];
    fill(data2, sizeof(data2), 2);
    char d2[DIGEST_MAX], q[200];
    digest_of("sha256", data2, sizeof(data2), d2);
    fmt(q, sizeof(q), "digest=%s", d2);
    r = post_upload(c, repo, q, data2, sizeof(data2));
    check_status2(c, r, 201, 202,
                  "end-4b POST ?digest= with the blob: 201 (or 202 without "
                  "single-POST support)");
    check_hdr_present(c, r, "Location", "end-4b POST ?digest=: MUST include Location");
    if (r->status == 201) {
        check_pullable(c, r, data2, sizeof(data2),
                       "end-4b POST ?digest=: <blob-location> is a pullable blob URL");
    } else if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *p = close_session(c, loc, d2, data2, sizeof(data2), NULL);
        check_status(c, p, 201, "end-4b 202 fallback: the PUT that follows completes, 201");
        resp_free(p);
    }
    resp_free(r);
    check(c, "end-4b after a single POST: GET /blobs/<digest> returns the blob",
          blob_is(c, repo, d2, data2, sizeof(data2)));

    /* the zero-byte blob through POST then PUT */
    char de[DIGEST_MAX];
    digest_of("sha256", "", 0, de);
    if (open_session(c, repo, NULL, loc)) {
        r = close_session(c, loc, de, "", 0, NULL);
        check_status(c, r, 201, "end-6 PUT of the zero-byte blob: 201 Created");
        resp_free(r);
        check(c, "end-6 zero-byte blob: GET returns it (200, empty)", blob_is(c, repo, de, "", 0));
    }
}

void sec_push_sha512(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], path[PATH_MAX_LEN];
    repo_name(c, repo, sizeof(repo), "push-sha512");
    static const char data[] = "content addressed with sha512";
    size_t len = sizeof(data) - 1;
    char d[DIGEST_MAX];
    digest_of("sha512", data, len, d);

    struct resp *r = post_upload(c, repo, "digest-algorithm=sha512", NULL, 0);
    check_status2(c, r, 202, 201, "end-4c POST ?digest-algorithm=sha512: 202 (201/202)");
    bool have = check_hdr_present(c, r, "Location", "end-4c POST ?digest-algorithm=: Location");
    if (have)
        hdr(r, "Location", loc);
    resp_free(r);
    if (have && loc_path(loc) != NULL) {
        r = close_session(c, loc, d, data, len, NULL);
        check_status(c, r, 201, "end-6 PUT ?digest=sha512:...: 201 Created");
        check_hdr_present(c, r, "Location", "end-6 PUT ?digest=sha512:...: Location");
        resp_free(r);
    }
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, d);
    r = req(c, "GET", path, NULL, NULL, 0);
    check(c, "end-2 GET sha512 blob: 200 with the content",
          r->status == 200 && r->len == len && memcmp(r->body, data, len) == 0);
    check_hdr(c, r, "Docker-Content-Digest", d,
              "end-2 GET sha512 blob: Docker-Content-Digest is the sha512 digest");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_hdr(c, r, "Docker-Content-Digest", d,
              "end-2 HEAD sha512 blob: 200 with the sha512 Docker-Content-Digest");
    resp_free(r);

    /* chunked with sha512 */
    static const char part1[] = "sha512 ", part2[] = "in chunks";
    char all[64], d2[DIGEST_MAX], nloc[HDR_MAX];
    fmt(all, sizeof(all), "%s%s", part1, part2);
    digest_of("sha512", all, strlen(all), d2);
    r = post_upload(c, repo, "digest-algorithm=sha512", NULL, 0);
    if (setup(c, "POST ?digest-algorithm=sha512 for a chunked upload",
              r->status == 202 && hdr(r, "Location", loc) != NULL, r)) {
        struct resp *p = patch(c, loc, part1, 0, strlen(part1) - 1);
        check_status(c, p, 202, "end-5 PATCH in a sha512 session: 202 Accepted");
        if (hdr(p, "Location", nloc) != NULL)
            fmt(loc, sizeof(loc), "%s", nloc);
        resp_free(p);
        p = close_session(c, loc, d2, part2, strlen(part2), NULL);
        check_status(c, p, 201, "end-6 closing PUT (final chunk) of a sha512 session: 201");
        resp_free(p);
        check(c, "end-2 sha512 chunked blob: GET returns the whole blob",
              blob_is(c, repo, d2, all, strlen(all)));
    }
    resp_free(r);

    /* single POST with a sha512 digest */
    static const char data3[] = "sha512 in one request";
    char d3[DIGEST_MAX], q[200];
    digest_of("sha512", data3, strlen(data3), d3);
    fmt(q, sizeof(q), "digest=%s", d3);
    r = post_upload(c, repo, q, data3, strlen(data3));
    check_status2(c, r, 201, 202, "end-4b POST ?digest=sha512:... with the blob: 201/202");
    if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *p = close_session(c, loc, d3, data3, strlen(data3), NULL);
        resp_free(p);
    }
    resp_free(r);
    check(c, "end-4b sha512 single POST: GET returns the blob",
          blob_is(c, repo, d3, data3, strlen(data3)));

    /* a manifest addressed by a sha512 digest */
    struct blob cfg, layer;
    if (!push_blob(c, repo, "{\"os\":\"linux\"}", 14, &cfg) ||
        !push_blob(c, repo, "sha512 layer", 12, &layer))
        return;
    char body[2048], md[DIGEST_MAX];
    image_manifest(body, sizeof(body), MT_CONFIG, &cfg, &layer, 1, NULL);
    digest_of("sha512", body, strlen(body), md);
    r = put_manifest(c, repo, md, MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201, "end-7a PUT manifest by a sha512 digest: 201 Created");
    check_hdr(c, r, "Docker-Content-Digest", md,
              "end-7a PUT by sha512 digest: Docker-Content-Digest MUST equal the client's digest");
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, md);
    r = req(c, "GET", path, NULL, NULL, 0);
    check(c, "end-3 GET manifest by sha512 digest: 200 with the bytes pushed",
          r->status == 200 && r->len == strlen(body) && memcmp(r->body, body, r->len) == 0);
    resp_free(r);
}

/* Reads OCI-Chunk-Min-Length from a POST response: the chunk size to use. */
static size_t chunk_size(const struct resp *r)
{
    char h[HDR_MAX];
    size_t cs = 16;
    if (hdr(r, "OCI-Chunk-Min-Length", h) != NULL) {
        unsigned long long v = strtoull(h, NULL, 10);
        if (v > cs && v <= (64ull << 20))
            cs = (size_t)v;
    }
    return cs;
}

static void expect_status_range(struct ctx *c, const char *loc, size_t end, const char *clause)
{
    char want[64], cl[300];
    fmt(want, sizeof(want), "0-%zu", end);
    struct resp *r = req(c, "GET", loc, NULL, NULL, 0);
    fmt(cl, sizeof(cl), "%s: GET <location> is 204 No Content", clause);
    check_status(c, r, 204, cl);
    fmt(cl, sizeof(cl), "%s: GET <location> has Range %s", clause, want);
    check_hdr(c, r, "Range", want, cl);
    fmt(cl, sizeof(cl), "%s: GET <location> has Location", clause);
    check_hdr_present(c, r, "Location", cl);
    resp_free(r);
}

void sec_push_chunked(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], nloc[HDR_MAX], want[64];
    repo_name(c, repo, sizeof(repo), "push-chunked");

    struct resp *r = post_upload(c, repo, NULL, NULL, 0);
    check_status(c, r, 202, "end-4a POST with Content-Length: 0 (chunked upload): 202");
    bool have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    size_t cs = chunk_size(r);
    resp_free(r);
    if (!have)
        return;
    size_t total = 2 * cs + 5;
    char *data = malloc(total);
    if (data == NULL)
        return;
    fill(data, total, 3);
    char d[DIGEST_MAX];
    digest_of("sha256", data, total, d);

    /* first chunk */
    r = patch(c, loc, data, 0, cs - 1);
    check_status(c, r, 202, "end-5 PATCH first chunk (Content-Range 0-N): 202 Accepted");
    check_hdr_present(c, r, "Location", "end-5 PATCH: MUST have Location");
    fmt(want, sizeof(want), "0-%zu", cs - 1);
    check_hdr(c, r, "Range", want, "end-5 PATCH: MUST have Range 0-<end-of-range>");
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);

    /* second chunk at the next offset, on the Location the first returned */
    r = patch(c, loc, data + cs, cs, 2 * cs - 1);
    check_status(c, r, 202, "end-5 PATCH next chunk in order: 202 Accepted");
    fmt(want, sizeof(want), "0-%zu", 2 * cs - 1);
    check_hdr(c, r, "Range", want, "end-5 PATCH next chunk: Range is 0-<end of this chunk>");
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);

    expect_status_range(c, loc, 2 * cs - 1, "end-13 upload status after two chunks");

    /* out of order: a gap, then a repeat of the first chunk */
    r = patch(c, loc, data + 2 * cs + 2, 2 * cs + 2, 2 * cs + 4);
    check_status(c, r, 416, "end-5 PATCH chunk out of order (gap): MUST be 416");
    resp_free(r);
    r = patch(c, loc, data, 0, cs - 1);
    check_status(c, r, 416, "end-5 PATCH chunk out of order (already uploaded range): MUST be 416");
    resp_free(r);
    expect_status_range(c, loc, 2 * cs - 1, "end-13 status after a 416");

    /* final chunk out of order in the PUT */
    char cr[64];
    fmt(cr, sizeof(cr), "%zu-%zu", 2 * cs + 1, total - 1);
    r = close_session(c, loc, d, data + 2 * cs + 1, total - 2 * cs - 1, cr);
    check_status(c, r, 416, "end-6 final chunk out of order in the closing PUT: MUST be 416");
    resp_free(r);
    expect_status_range(c, loc, 2 * cs - 1, "end-13 status after a 416 on the closing PUT");

    /* final chunk in the closing PUT */
    fmt(cr, sizeof(cr), "%zu-%zu", 2 * cs, total - 1);
    r = close_session(c, loc, d, data + 2 * cs, total - 2 * cs, cr);
    check_status(c, r, 201, "end-6 closing PUT with the final chunk and ?digest=: 201 Created");
    if (check_hdr_present(c, r, "Location", "end-6 closing PUT: MUST have Location"))
        check_pullable(c, r, data, total, "end-6 closing PUT: <blob-location> is pullable");
    resp_free(r);
    check(c, "end-6 chunked upload: GET /blobs/<digest> returns the whole blob",
          blob_is(c, repo, d, data, total));
    r = req(c, "GET", loc, NULL, NULL, 0);
    check_status(c, r, 404, "end-13 GET <location> of a closed session: 404");
    resp_free(r);

    /* final chunk in a PATCH, then a PUT without a body */
    char d2[DIGEST_MAX];
    fill(data, total, 4);
    digest_of("sha256", data, total, d2);
    if (open_session(c, repo, NULL, loc)) {
        r = patch(c, loc, data, 0, cs - 1);
        check_status(c, r, 202, "end-5 PATCH (second upload) first chunk: 202");
        if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
            fmt(loc, sizeof(loc), "%s", nloc);
        resp_free(r);
        r = patch(c, loc, data + cs, cs, total - 1);
        check_status(c, r, 202, "end-5 PATCH final chunk: 202");
        fmt(want, sizeof(want), "0-%zu", total - 1);
        check_hdr(c, r, "Range", want, "end-5 PATCH final chunk: Range 0-<size-1>");
        if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
            fmt(loc, sizeof(loc), "%s", nloc);
        resp_free(r);
        r = close_session(c, loc, d2, NULL, 0, NULL);
        check_status(c, r, 201,
                     "end-6 closing PUT without a body after the last PATCH: 201 Created");
        check_hdr_present(c, r, "Location", "end-6 closing PUT without a body: Location");
        resp_free(r);
        check(c, "end-6 (final chunk by PATCH): GET returns the whole blob",
              blob_is(c, repo, d2, data, total));
    }

    /* the first chunk's range MUST begin with 0 */
    if (open_session(c, repo, NULL, loc)) {
        r = patch(c, loc, data + 5, 5, cs + 4);
        check_status(c, r, 416, "end-5 first chunk not starting at 0: 416 (out of order)");
        resp_free(r);
        struct resp *g = req(c, "GET", loc, NULL, NULL, 0);
        check_status(c, g, 204, "end-13 status after a refused first chunk: 204, session alive");
        resp_free(g);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
    free(data);
}

void sec_push_streamed(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], nloc[HDR_MAX], want[64];
    repo_name(c, repo, sizeof(repo), "push-streamed");
    size_t n1 = 1u << 20, n2 = 1000, n3 = 777;
    size_t total = n1 + n2 + n3;
    char *data = malloc(total);
    if (data == NULL)
        return;
    fill(data, total, 5);
    char d[DIGEST_MAX];
    digest_of("sha256", data, total, d);
    if (!open_session(c, repo, NULL, loc)) {
        free(data);
        return;
    }
    /* a streamed PATCH: chunked transfer encoding, no Content-Range */
    struct resp *r = req_chunked(c, "PATCH", loc, (const char *[]){OCTET, NULL}, data, n1);
    check_status(c, r, 202, "end-5 streamed PATCH (chunked encoding, no Content-Range): 202");
    check_hdr_present(c, r, "Location", "end-5 streamed PATCH: Location");
    fmt(want, sizeof(want), "0-%zu", n1 - 1);
    check_hdr(c, r, "Range", want, "end-5 streamed PATCH: Range 0-<bytes received - 1>");
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);
    expect_status_range(c, loc, n1 - 1, "end-13 status after a streamed PATCH");
    /* another streamed PATCH appends */
    r = req_chunked(c, "PATCH", loc, (const char *[]){OCTET, NULL}, data + n1, n2);
    check_status(c, r, 202, "end-5 second streamed PATCH appends: 202");
    fmt(want, sizeof(want), "0-%zu", n1 + n2 - 1);
    check_hdr(c, r, "Range", want, "end-5 second streamed PATCH: Range covers both");
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);
    /* a PATCH with Content-Length and no Content-Range appends too */
    r = req(c, "PATCH", loc, (const char *[]){OCTET, NULL}, data + n1 + n2, n3);
    check_status(c, r, 202, "end-5 PATCH with a body and no Content-Range: 202");
    fmt(want, sizeof(want), "0-%zu", total - 1);
    check_hdr(c, r, "Range", want, "end-5 PATCH without Content-Range: Range covers all");
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);
    r = close_session(c, loc, d, NULL, 0, NULL);
    check_status(c, r, 201, "end-6 PUT ?digest= closing a streamed upload: 201 Created");
    check_hdr_present(c, r, "Location", "end-6 PUT closing a streamed upload: Location");
    resp_free(r);
    check(c, "end-6 streamed upload: GET returns the whole blob", blob_is(c, repo, d, data, total));
    free(data);
}

void sec_push_cancel(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], nloc[HDR_MAX];
    repo_name(c, repo, sizeof(repo), "push-cancel");
    static const char data[] = "this upload is abandoned";
    size_t len = sizeof(data) - 1;
    char d[DIGEST_MAX];
    digest_of("sha256", data, len, d);
    if (!open_session(c, repo, NULL, loc))
        return;
    struct resp *r = patch(c, loc, data, 0, 9);
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);
    r = req(c, "DELETE", loc, (const char *[]){"Content-Length: 0", NULL}, NULL, 0);
    check_status(c, r, 204, "end-14 DELETE <location> cancels the session: SHOULD be 204");
    resp_free(r);
    r = req(c, "GET", loc, NULL, NULL, 0);
    check_status(c, r, 404, "end-13 GET <location> of a cancelled session: 404");
    resp_free(r);
    r = patch(c, loc, data + 10, 10, len - 1);
    check_status(c, r, 404, "end-5 PATCH to a cancelled session: 404");
    resp_free(r);
    r = close_session(c, loc, d, data + 10, len - 10, NULL);
    check_status(c, r, 404, "end-6 PUT to a cancelled session: 404");
    resp_free(r);
    r = req(c, "DELETE", loc, (const char *[]){"Content-Length: 0", NULL}, NULL, 0);
    check_status(c, r, 404, "end-14 DELETE of an already cancelled session: 404");
    resp_free(r);
    check(c, "end-2 nothing of a cancelled upload is pullable: HEAD 404", blob_absent(c, repo, d));
}

void sec_push_mount(struct ctx *c)
{
    char src[128], dst[128], dst2[128], dst3[128], dst4[128], path[PATH_MAX_LEN], q[400];
    char loc[HDR_MAX];
    repo_name(c, src, sizeof(src), "mount-src");
    repo_name(c, dst, sizeof(dst), "mount-dst");
    repo_name(c, dst2, sizeof(dst2), "mount-fallback");
    repo_name(c, dst3, sizeof(dst3), "mount-nofrom");
    repo_name(c, dst4, sizeof(dst4), "mount-unknown");
    static const char data[] = "a blob to be mounted elsewhere";
    size_t len = sizeof(data) - 1;
    struct blob b;
    if (!push_blob(c, src, data, len, &b))
        return;

    /* mount with from */
    fmt(q, sizeof(q), "mount=%s&from=%s", b.digest, src);
    struct resp *r = post_upload(c, dst, q, NULL, 0);
    check_status(c, r, 201, "end-11 POST ?mount=&from= of a blob in <other_name>: MUST be 201");
    if (check_hdr_present(c, r, "Location", "end-11 successful mount: MUST contain Location"))
        check_pullable(c, r, data, len, "end-11 mount: Location is the accepted blob's URL");
    resp_free(r);
    check(c, "end-11 after the mount: GET /v2/<name>/blobs/<digest> returns the blob",
          blob_is(c, dst, b.digest, data, len));

    /* a blob that <other_name> does not have: an upload session instead */
    static const char data2[] = "never in the source repository";
    size_t len2 = sizeof(data2) - 1;
    char d2[DIGEST_MAX];
    digest_of("sha256", data2, len2, d2);
    fmt(q, sizeof(q), "mount=%s&from=%s", d2, src);
    r = post_upload(c, dst2, q, NULL, 0);
    check_status(c, r, 202, "end-11 mount the registry cannot do: SHOULD be 202 (session begun)");
    bool have = check_hdr_present(c, r, "Location",
                                  "end-11 202 for a mount: Location of the "
                                  "upload session");
    if (have)
        hdr(r, "Location", loc);
    bool sess = r->status == 202 && have;
    resp_free(r);
    if (sess) {
        r = close_session(c, loc, d2, data2, len2, NULL);
        check_status(c, r, 201,
                     "end-11 202 for a mount: the client MAY proceed with the "
                     "upload: PUT 201");
        resp_free(r);
        check(c, "end-11 fallback upload: GET returns the blob", blob_is(c, dst2, d2, data2, len2));
    }

    /* from naming a repository without the blob: 201 (cross-mounted) or 202 */
    fmt(q, sizeof(q), "mount=%s&from=%s", b.digest, dst2);
    r = post_upload(c, dst4, q, NULL, 0);
    check_status2(c, r, 201, 202,
                  "end-11 mount with a from that lacks the blob: 201 "
                  "(MAY cross-mount) or 202");
    check_hdr_present(c, r, "Location", "end-11 mount with a from that lacks the blob: Location");
    if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *x = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(x);
    }
    resp_free(r);

    /* mount without from */
    fmt(q, sizeof(q), "mount=%s", b.digest);
    r = post_upload(c, dst3, q, NULL, 0);
    check_status2(c, r, 201, 202,
                  "end-11 mount without from: 201 (MAY treat from as optional) "
                  "or 202");
    check_hdr_present(c, r, "Location", "end-11 mount without from: Location");
    if (r->status == 201) {
        check(c, "end-11 mount without from, 201: the blob is in <name>",
              blob_is(c, dst3, b.digest, data, len));
    } else if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *x = close_session(c, loc, b.digest, data, len, NULL);
        check_status(c, x, 201, "end-11 mount without from, 202: the upload completes");
        resp_free(x);
    }
    resp_free(r);

    /* an unknown digest without from: 202 */
    char d5[DIGEST_MAX];
    digest_of("sha256", "held by no repository", 21, d5);
    fmt(q, sizeof(q), "mount=%s", d5);
    r = post_upload(c, dst3, q, NULL, 0);
    check_status(c, r, 202, "end-11 mount of a blob the registry does not have: SHOULD be 202");
    check_hdr_present(c, r, "Location", "end-11 mount of an unknown blob: Location");
    if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *x = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(x);
    }
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", dst3, d5);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-11 a failed mount mounts nothing: HEAD 404");
    resp_free(r);
}

/* GET manifest ref: 200, the exact bytes, Content-Type ctype. */
static void check_manifest(struct ctx *c, const char *repo, const char *ref, const char *body,
                           const char *ctype, const char *what)
{
    char path[PATH_MAX_LEN], d[DIGEST_MAX];
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    size_t len = strlen(body);
    if (!checkf(c, r->status == 200 && r->len == len && memcmp(r->body, body, len) == 0,
                "end-3 GET %s: 200 and exactly the bytes pushed", what))
        detail_resp(c, r);
    char clause[300];
    fmt(clause, sizeof(clause), "end-3 GET %s: Content-Type is the pushed %s", what, ctype);
    check_hdr(c, r, "Content-Type", ctype, clause);
    digest_of("sha256", body, len, d);
    fmt(clause, sizeof(clause), "end-3 GET %s: Docker-Content-Digest", what);
    check_hdr(c, r, "Docker-Content-Digest", d, clause);
    resp_free(r);
}

void sec_push_manifests(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], body[4096], d[DIGEST_MAX];
    repo_name(c, repo, sizeof(repo), "push-manifests");
    struct blob cfg, layer, layer2, empty;
    if (!push_blob(c, repo, "{\"architecture\":\"arm64\",\"os\":\"linux\"}", 38, &cfg) ||
        !push_blob(c, repo, "manifest layer one", 18, &layer) ||
        !push_blob(c, repo, "manifest layer two", 18, &layer2) ||
        !push_blob(c, repo, "{}", 2, &empty))
        return;
    struct blob layers[2] = {layer, layer2};
    image_manifest(body, sizeof(body), MT_CONFIG, &cfg, layers, 2, NULL);
    digest_of("sha256", body, strlen(body), d);

    /* by tag */
    struct resp *r = put_manifest(c, repo, "v1", MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201, "end-7a PUT manifest by tag: 201 Created");
    if (check_hdr_present(c, r, "Location", "end-7a PUT manifest: MUST have Location")) {
        char loc[HDR_MAX];
        hdr(r, "Location", loc);
        struct resp *g = req(c, "GET", loc, NULL, NULL, 0);
        check(c, "end-7a PUT manifest: Location is a pullable manifest URL",
              g->status == 200 && g->len == strlen(body) && memcmp(g->body, body, g->len) == 0);
        resp_free(g);
    }
    check_hdr(c, r, "Docker-Content-Digest", d,
              "end-7a PUT manifest by tag: Docker-Content-Digest is the manifest's digest");
    resp_free(r);
    check_manifest(c, repo, "v1", body, MT_MANIFEST, "image manifest by tag");

    /* by digest */
    r = put_manifest(c, repo, d, MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201, "end-7a PUT manifest by digest: 201 Created");
    check_hdr_present(c, r, "Location", "end-7a PUT manifest by digest: MUST have Location");
    check_hdr(c, r, "Docker-Content-Digest", d,
              "end-7a PUT by digest: Docker-Content-Digest MUST equal the client's digest");
    resp_free(r);
    check_manifest(c, repo, d, body, MT_MANIFEST, "image manifest by digest");

    /* the exact byte representation: odd spacing, key order, custom fields, escapes */
    char odd[4096];
    fmt(odd, sizeof(odd),
        "{\n  \"schemaVersion\" : 2 ,\n\t\"layers\": [ {\"size\": %zu, \"digest\": \"%s\", "
        "\"mediaType\": \"" MT_LAYER "\", \"x-custom\": [1, 2.50, null]} ],\n"
        "  \"config\": {\"digest\": \"%s\", \"mediaType\": \"" MT_CONFIG "\", \"size\": %zu},\n"
        "  \"mediaType\": \"" MT_MANIFEST "\",\n"
        "  \"annotations\": {\"org.example.text\": \"caf\\u00e9 \\\"quoted\\\" \\/ slash\"}\n}\n",
        layer.size, layer.digest, cfg.digest, cfg.size);
    r = put_manifest(c, repo, "odd", MT_MANIFEST, odd, strlen(odd));
    check_status(c, r, 201, "end-7a PUT manifest with custom fields and unusual spacing: 201");
    resp_free(r);
    check_manifest(c, repo, "odd", odd, MT_MANIFEST,
                   "manifest with custom fields (MUST store the exact byte representation)");

    /* a tag moves to the manifest last pushed to it */
    char body2[4096], d2[DIGEST_MAX];
    image_manifest(body2, sizeof(body2), MT_CONFIG, &cfg, &layer2, 1, NULL);
    digest_of("sha256", body2, strlen(body2), d2);
    r = put_manifest(c, repo, "v1", MT_MANIFEST, body2, strlen(body2));
    check_status(c, r, 201, "end-7a PUT another manifest to an existing tag: 201");
    resp_free(r);
    check_manifest(c, repo, "v1", body2, MT_MANIFEST, "a re-pushed tag (the new manifest)");
    check_manifest(c, repo, d, body, MT_MANIFEST, "the former manifest by digest (still there)");

    /* no layers: "the list of blobs MAY be empty" */
    char nolayers[4096];
    image_manifest(nolayers, sizeof(nolayers), MT_CONFIG, &cfg, NULL, 0, NULL);
    r = put_manifest(c, repo, "nolayers", MT_MANIFEST, nolayers, strlen(nolayers));
    check_status(c, r, 201, "end-7a PUT manifest with an empty layer list: 201");
    resp_free(r);

    /* an artifact: artifactType and the empty config */
    char art[4096];
    image_manifest(art, sizeof(art), MT_EMPTY, &empty, &layer, 1,
                   "\"artifactType\":\"application/vnd.example.thing.v1\"");
    r = put_manifest(c, repo, "artifact", MT_MANIFEST, art, strlen(art));
    check_status(c, r, 201, "end-7a PUT artifact manifest (artifactType, empty config): 201");
    resp_free(r);
    check_manifest(c, repo, "artifact", art, MT_MANIFEST, "artifact manifest");

    /* a Docker schema 2 manifest keeps its media type */
    char dock[4096];
    fmt(dock, sizeof(dock),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"config\":{\"mediaType\":"
        "\"" MT_DOCKER_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
        "\"" MT_DOCKER_LAYER "\",\"digest\":\"%s\",\"size\":%zu}]}",
        cfg.digest, cfg.size, layer.digest, layer.size);
    r = put_manifest(c, repo, "docker", MT_DOCKER_MANIFEST, dock, strlen(dock));
    check_status(c, r, 201, "end-7a PUT Docker schema 2 manifest: 201");
    resp_free(r);
    check_manifest(c, repo, "docker", dock, MT_DOCKER_MANIFEST, "Docker schema 2 manifest");

    /* an index with two children, and an index of an index */
    struct image c1, c2;
    if (!push_image(c, repo, NULL, "child-amd64", &c1) ||
        !push_image(c, repo, NULL, "child-arm64", &c2))
        return;
    char index[4096], id[DIGEST_MAX];
    fmt(index, sizeof(index),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":["
        "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
        "{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":"
        "{\"architecture\":\"arm64\",\"os\":\"linux\"}}]}",
        c1.digest, c1.size, c2.digest, c2.size);
    digest_of("sha256", index, strlen(index), id);
    r = put_manifest(c, repo, "multi", MT_INDEX, index, strlen(index));
    check_status(c, r, 201, "end-7a PUT image index of two manifests: 201");
    check_hdr(c, r, "Docker-Content-Digest", id, "end-7a PUT index: Docker-Content-Digest");
    resp_free(r);
    check_manifest(c, repo, "multi", index, MT_INDEX, "image index");
    for (int i = 0; i < 2; i++) {
        fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, i ? c2.digest : c1.digest);
        r = req(c, "HEAD", path, NULL, NULL, 0);
        checkf(c, r->status == 200, "end-3 HEAD child %d of the index by digest: 200", i + 1);
        resp_free(r);
    }
    char nested[4096];
    fmt(nested, sizeof(nested),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":["
        "{\"mediaType\":\"" MT_INDEX "\",\"digest\":\"%s\",\"size\":%zu},"
        "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu}]}",
        id, strlen(index), c1.digest, c1.size);
    r = put_manifest(c, repo, "nested", MT_INDEX, nested, strlen(nested));
    check_status(c, r, 201, "end-7a PUT index that contains an index: 201");
    resp_free(r);
    check_manifest(c, repo, "nested", nested, MT_INDEX, "nested index");

    /* tags at the edges of [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
    char t128[129];
    memset(t128, 'x', 128);
    t128[0] = 'T';
    t128[128] = '\0';
    const char *tags[] = {t128, "_Under.score-1", "a", "9", "A-._"};
    const char *names[] = {"a 128-character tag", "a tag starting with _ with . and -",
                           "a one-letter tag", "a one-digit tag", "a tag ending in separators"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        r = put_manifest(c, repo, tags[i], MT_MANIFEST, body, strlen(body));
        if (!checkf(c, r->status == 201, "end-7a PUT manifest to %s (matches the tag regex): 201",
                    names[i]))
            detail_resp(c, r);
        resp_free(r);
        fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, tags[i]);
        r = req(c, "GET", path, NULL, NULL, 0);
        checkf(c, r->status == 200, "end-3 GET manifest by %s: 200", names[i]);
        resp_free(r);
    }
}

void sec_push_tag_param(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], body[4096], d[DIGEST_MAX], tags[HDR_MAX * 2];
    repo_name(c, repo, sizeof(repo), "push-tag-param");
    struct blob cfg, layer;
    if (!push_blob(c, repo, "{\"os\":\"linux\",\"tagged\":1}", 25, &cfg) ||
        !push_blob(c, repo, "tag param layer", 15, &layer))
        return;
    image_manifest(body, sizeof(body), MT_CONFIG, &cfg, &layer, 1, NULL);
    digest_of("sha256", body, strlen(body), d);
    char ref[PATH_MAX_LEN];
    fmt(ref, sizeof(ref), "%s?tag=1.2.3&tag=1.2&tag=1&tag=latest", d);
    struct resp *r = put_manifest(c, repo, ref, MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201,
                 "end-7b PUT manifest by digest with ?tag=1.2.3&tag=1.2&tag=1&tag=latest: "
                 "201");
    hdr_all(r, "OCI-Tag", tags, sizeof(tags));
    if (!check(c, "end-7b MUST include an OCI-Tag header for each accepted tag",
               list_has(tags, "1.2.3") && list_has(tags, "1.2") && list_has(tags, "1") &&
                   list_has(tags, "latest")))
        detail(c, "OCI-Tag: %s", tags[0] ? tags : "(none)");
    check_hdr(c, r, "Docker-Content-Digest", d, "end-7b Docker-Content-Digest is the digest");
    resp_free(r);
    const char *want[] = {"1.2.3", "1.2", "1", "latest"};
    for (int i = 0; i < 4; i++) {
        fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, want[i]);
        r = req(c, "GET", path, NULL, NULL, 0);
        checkf(c, r->status == 200 && hdr_is(r, "Docker-Content-Digest", d),
               "end-7b tag %s from ?tag= resolves to the manifest", want[i]);
        resp_free(r);
    }
    /* "SHOULD support pushing at least 10 tags per request" */
    char q[1024];
    size_t u = (size_t)snprintf(q, sizeof(q), "%s", d);
    for (int i = 0; i < 10 && u < sizeof(q); i++)
        u += (size_t)snprintf(q + u, sizeof(q) - u, "%ctag=ten-%d", i ? '&' : '?', i);
    r = put_manifest(c, repo, q, MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201, "end-7b PUT with 10 ?tag= parameters (SHOULD support 10): 201");
    hdr_all(r, "OCI-Tag", tags, sizeof(tags));
    bool all = true;
    for (int i = 0; i < 10; i++) {
        char t[16];
        fmt(t, sizeof(t), "ten-%d", i);
        all = all && list_has(tags, t);
    }
    if (!check(c, "end-7b 10 tags: an OCI-Tag value for each", all))
        detail(c, "OCI-Tag: %s", tags[0] ? tags : "(none)");
    resp_free(r);
}

/* A valid image manifest padded with an annotation to exactly size bytes (size >= 400). */
static char *padded_manifest(const struct blob *cfg, const struct blob *layer, size_t size)
{
    char head[2048];
    image_manifest(head, sizeof(head), MT_CONFIG, cfg, layer, 1,
                   "\"annotations\":{\"org.example.pad\":\"");
    size_t hl = strlen(head);
    /* head ends with "}" from image_manifest; cut it: we close the annotation ourselves */
    hl--;
    const char *tail = "\"}}";
    size_t tl = strlen(tail);
    if (size < hl + tl)
        return NULL;
    char *m = malloc(size + 1);
    if (m == NULL)
        return NULL;
    memcpy(m, head, hl);
    memset(m + hl, 'p', size - hl - tl);
    memcpy(m + size - tl, tail, tl);
    m[size] = '\0';
    return m;
}

void sec_push_limits(struct ctx *c)
{
    char repo[128], d[DIGEST_MAX], path[PATH_MAX_LEN];
    repo_name(c, repo, sizeof(repo), "push-limits");
    struct blob cfg, layer;
    if (!push_blob(c, repo, "{\"os\":\"linux\",\"big\":1}", 22, &cfg) ||
        !push_blob(c, repo, "limits layer", 12, &layer))
        return;
    /* "SHOULD expect to be able to support manifest pushes of at least 4 megabytes" */
    size_t four = 4000000;
    if (c->manifest_limit >= four) {
        char *m = padded_manifest(&cfg, &layer, four);
        if (m != NULL) {
            struct resp *r = put_manifest(c, repo, "four-mb", MT_MANIFEST, m, four);
            check_status(c, r, 201,
                         "end-7a PUT a 4 MB manifest (SHOULD support at least 4 "
                         "megabytes): 201");
            resp_free(r);
            digest_of("sha256", m, four, d);
            fmt(path, sizeof(path), "/v2/%s/manifests/four-mb", repo);
            r = req(c, "GET", path, NULL, NULL, 0);
            check(c, "end-3 GET the 4 MB manifest: 200, all of it",
                  r->status == 200 && r->len == four && memcmp(r->body, m, four) == 0);
            resp_free(r);
            free(m);
        }
    } else {
        printf("        (4 MB manifest check skipped: --manifest-limit %zu)\n", c->manifest_limit);
    }
    /* over the limit */
    size_t over = c->manifest_limit + 1;
    char *m = padded_manifest(&cfg, &layer, over < 512 ? 512 : over);
    if (m == NULL)
        return;
    struct resp *r = put_manifest(c, repo, "too-big", MT_MANIFEST, m, strlen(m));
    if (!check(c, "end-7a PUT manifest over the registry's limit: SHOULD be 413 Payload Too Large",
               r->status == 413))
        detail_resp(c, r);
    resp_free(r);
    free(m);
    fmt(path, sizeof(path), "/v2/%s/manifests/too-big", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "end-7a a refused manifest is not stored: GET 404");
    resp_free(r);
}
