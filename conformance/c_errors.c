/*
 * Spec "Error Codes" (code-1 ... code-14) where the spec says when they occur, the <name> and
 * tag grammars, and the error body format {"errors":[{"code","message","detail"}]}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/conformance.h"

static struct resp *post_empty(struct ctx *c, const char *repo, const char *query)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/blobs/uploads/%s%s", repo, query ? "?" : "",
        query ? query : "");
    return req(c, "POST", path, (const char *[]){"Content-Length: 0", NULL}, "", 0);
}

static void cancel(struct ctx *c, const struct resp *r)
{
    char loc[HDR_MAX];
    if (r->status == 202 && hdr(r, "Location", loc) != NULL) {
        struct resp *x = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(x);
    }
}

void sec_err_names(struct ctx *c)
{
    char repo[256], path[PATH_MAX_LEN];
    /* names outside [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)* */
    static const char *const bad[] = {"UPPER", "a..b", "-lead", "trail-",
                                      "a___b", "a.-b", "x_",    "dot."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        repo_name(c, repo, sizeof(repo), bad[i]);
        struct resp *r = post_empty(c, repo, NULL);
        char clause[300];
        fmt(clause, sizeof(clause),
            "code-8 NAME_INVALID: POST /v2/<name>/blobs/uploads/ with <name> component \"%s\" "
            "(not matching the name regex)",
            bad[i]);
        check_error(c, r, 0, "NAME_INVALID", clause);
        cancel(c, r);
        resp_free(r);
    }
    repo_name(c, repo, sizeof(repo), "Mixed.Case");
    struct resp *r = put_manifest(c, repo, "v1", MT_MANIFEST, "{}", 2);
    check_error(c, r, 0, "NAME_INVALID",
                "code-8 NAME_INVALID: PUT manifest under an invalid <name> (uppercase)");
    resp_free(r);

    /* names inside the grammar are accepted */
    static const char *const good[] = {"a0.b_c__d-e--f", "deep/er/and/deeper", "1", "x-----y"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        repo_name(c, repo, sizeof(repo), good[i]);
        r = post_empty(c, repo, NULL);
        if (!checkf(c, r->status == 202, "end-4a <name> \"%s\" matches the name regex: 202", repo))
            detail_resp(c, r);
        cancel(c, r);
        resp_free(r);
    }

    /* NAME_UNKNOWN */
    repo_name(c, repo, sizeof(repo), "never-pushed");
    fmt(path, sizeof(path), "/v2/%s/tags/list", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_error(c, r, 404, "NAME_UNKNOWN",
                "code-9 NAME_UNKNOWN: GET /tags/list of a repository not known: 404");
    resp_free(r);
}

void sec_err_digests(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], loc[HDR_MAX], q[300];
    repo_name(c, repo, sizeof(repo), "errors-digests");
    static const char data[] = "the content actually sent";
    size_t len = sizeof(data) - 1;
    char real[DIGEST_MAX], wrong[DIGEST_MAX];
    digest_of("sha256", data, len, real);
    digest_of("sha256", "the content the client claims", 29, wrong);

    /* single POST whose digest does not match */
    fmt(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, wrong);
    struct resp *r = req(c, "POST", path, (const char *[]){OCTET, NULL}, data, len);
    check_error(c, r, 400, "DIGEST_INVALID",
                "code-4 DIGEST_INVALID: POST ?digest= not matching the body: 400");
    resp_free(r);

    /* closing PUT whose digest does not match */
    r = post_empty(c, repo, NULL);
    bool have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    setup(c, "POST /blobs/uploads/", have, r);
    resp_free(r);
    if (have) {
        fmt(q, sizeof(q), "digest=%s", wrong);
        add_query(path, sizeof(path), loc, q);
        r = req(c, "PUT", path, (const char *[]){OCTET, NULL}, data, len);
        check_error(c, r, 400, "DIGEST_INVALID",
                    "code-4 DIGEST_INVALID: PUT ?digest= not matching the uploaded content: 400");
        resp_free(r);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
    /* chunked, then a wrong digest */
    r = post_empty(c, repo, NULL);
    have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    resp_free(r);
    if (have) {
        char cr[64], nloc[HDR_MAX];
        fmt(cr, sizeof(cr), "Content-Range: 0-%zu", len - 1);
        r = req(c, "PATCH", loc, (const char *[]){OCTET, cr, NULL}, data, len);
        if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
            fmt(loc, sizeof(loc), "%s", nloc);
        resp_free(r);
        fmt(q, sizeof(q), "digest=%s", wrong);
        add_query(path, sizeof(path), loc, q);
        r = req(c, "PUT", path, (const char *[]){"Content-Length: 0", NULL}, NULL, 0);
        check_error(c, r, 400, "DIGEST_INVALID",
                    "code-4 DIGEST_INVALID: closing PUT of a chunked upload with a wrong digest");
        resp_free(r);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, wrong);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "code-4 nothing is stored under a digest that did not match: 404");
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, real);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check_status(c, r, 404, "code-4 nor under the content's real digest: 404");
    resp_free(r);

    /* malformed and unsupported digests: "SHOULD respond with 400" */
    static const char *const bad[] = {"sha256:nothex", "sha256:abc",
                                      "md5:d41d8cd98f00b204e9800998ecf8427e", "nocolon"};
    static const char *const what[] = {"non-hex encoded part", "too short for sha256",
                                       "unsupported algorithm md5", "no algorithm"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = post_empty(c, repo, NULL);
        have = r->status == 202 && hdr(r, "Location", loc) != NULL;
        resp_free(r);
        if (!have)
            continue;
        fmt(q, sizeof(q), "digest=%s", bad[i]);
        add_query(path, sizeof(path), loc, q);
        r = req(c, "PUT", path, (const char *[]){OCTET, NULL}, data, len);
        char clause[300];
        fmt(clause, sizeof(clause),
            "code-4 PUT ?digest= invalid (%s): SHOULD be 400 with DIGEST_INVALID", what[i]);
        check_error(c, r, 400, "DIGEST_INVALID", clause);
        resp_free(r);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
    r = post_empty(c, repo, NULL);
    have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    resp_free(r);
    if (have) {
        r = req(c, "PUT", loc, (const char *[]){OCTET, NULL}, data, len);
        check_status(c, r, 400,
                     "end-6 closing PUT without ?digest= (the digest MUST be included): 400");
        resp_free(r);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
    r = post_empty(c, repo, "digest-algorithm=md5");
    if (!check(c, "end-4c ?digest-algorithm= of an unsupported algorithm: SHOULD be 400",
               r->status == 400))
        detail_resp(c, r);
    cancel(c, r);
    resp_free(r);

    /* manifest PUT by a digest that is not the body's */
    struct image img;
    if (push_image(c, repo, NULL, "errors-digests", &img)) {
        char body[4096];
        fmt(body, sizeof(body), "%s", img.body);
        r = put_manifest(c, repo, wrong, MT_MANIFEST, body, strlen(body));
        check_error(c, r, 400, "DIGEST_INVALID",
                    "code-4 DIGEST_INVALID: PUT manifest by a digest not matching the body");
        resp_free(r);
        fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, wrong);
        r = req(c, "GET", path, NULL, NULL, 0);
        check_status(c, r, 404, "code-4 the refused manifest is not stored: 404");
        resp_free(r);
    }
}

void sec_err_blobs(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], never[128];
    repo_name(c, repo, sizeof(repo), "errors-blobs");
    repo_name(c, never, sizeof(never), "errors-never-pushed");
    struct blob b;
    if (!push_blob(c, repo, "present", 7, &b))
        return;
    char unknown[DIGEST_MAX];
    digest_of("sha256", "absent", 6, unknown);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, unknown);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    check_error(c, r, 404, "BLOB_UNKNOWN", "code-1 BLOB_UNKNOWN: GET of an unknown blob: 404");
    resp_free(r);
    r = req(c, "DELETE", path, NULL, NULL, 0);
    check_error(c, r, 404, "BLOB_UNKNOWN", "code-1 BLOB_UNKNOWN: DELETE of an unknown blob: 404");
    resp_free(r);
    r = req(c, "HEAD", path, NULL, NULL, 0);
    check(c, "code-1 HEAD of an unknown blob: 404 without a body", r->status == 404 && r->len == 0);
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", never, b.digest);
    r = req(c, "GET", path, NULL, NULL, 0);
    check(c,
          "code-1/code-9 GET blob in an unknown repository: 404 with BLOB_UNKNOWN or "
          "NAME_UNKNOWN",
          r->status == 404 &&
              (error_has_code(r, "BLOB_UNKNOWN") || error_has_code(r, "NAME_UNKNOWN")));
    resp_free(r);
}

void sec_err_uploads(struct ctx *c)
{
    char repo[128], loc[HDR_MAX], path[PATH_MAX_LEN], q[200];
    repo_name(c, repo, sizeof(repo), "errors-uploads");
    static const char data[] = "0123456789abcdef";
    char d[DIGEST_MAX];
    digest_of("sha256", data, 16, d);

    /* a session that was cancelled: every upload endpoint says BLOB_UPLOAD_UNKNOWN */
    struct resp *r = post_empty(c, repo, NULL);
    bool have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    setup(c, "POST /blobs/uploads/", have, r);
    resp_free(r);
    if (!have)
        return;
    r = req(c, "DELETE", loc, NULL, NULL, 0);
    resp_free(r);
    r = req(c, "GET", loc, NULL, NULL, 0);
    check_error(c, r, 404, "BLOB_UPLOAD_UNKNOWN",
                "code-3 BLOB_UPLOAD_UNKNOWN: end-13 GET of an unknown session: 404");
    resp_free(r);
    r = req(c, "PATCH", loc, (const char *[]){OCTET, "Content-Range: 0-15", NULL}, data, 16);
    check_error(c, r, 404, "BLOB_UPLOAD_UNKNOWN",
                "code-3 BLOB_UPLOAD_UNKNOWN: end-5 PATCH to an unknown session: 404");
    resp_free(r);
    fmt(q, sizeof(q), "digest=%s", d);
    add_query(path, sizeof(path), loc, q);
    r = req(c, "PUT", path, (const char *[]){OCTET, NULL}, data, 16);
    check_error(c, r, 404, "BLOB_UPLOAD_UNKNOWN",
                "code-3 BLOB_UPLOAD_UNKNOWN: end-6 PUT to an unknown session: 404");
    resp_free(r);
    r = req(c, "DELETE", loc, NULL, NULL, 0);
    check_error(c, r, 404, "BLOB_UPLOAD_UNKNOWN",
                "code-3 BLOB_UPLOAD_UNKNOWN: end-14 DELETE of an unknown session: 404");
    resp_free(r);
    /* an id the registry never issued */
    fmt(path, sizeof(path), "/v2/%s/blobs/uploads/4f0ab3f6-1f6c-4a8e-9a57-000000000000", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check(c, "end-13 GET of an upload id never issued: 404 (or 400 for an id of a foreign form)",
          r->status == 404 || r->status == 400);
    resp_free(r);

    /* BLOB_UPLOAD_INVALID and SIZE_INVALID on a live session */
    r = post_empty(c, repo, NULL);
    have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    resp_free(r);
    if (!have)
        return;
    char nloc[HDR_MAX];
    r = req(c, "PATCH", loc, (const char *[]){OCTET, "Content-Range: 0-7", NULL}, data, 8);
    setup(c, "PATCH of a first chunk", r->status == 202, r);
    if (hdr(r, "Location", nloc) != NULL && loc_path(nloc) != NULL)
        fmt(loc, sizeof(loc), "%s", nloc);
    resp_free(r);
    static const char *const ranges[] = {"Content-Range: bytes 8-15/16", "Content-Range: 8-",
                                         "Content-Range: abc"};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        r = req(c, "PATCH", loc, (const char *[]){OCTET, ranges[i], NULL}, data + 8, 8);
        char clause[300];
        fmt(clause, sizeof(clause),
            "code-2 BLOB_UPLOAD_INVALID: PATCH with \"%s\" (Content-Range MUST match "
            "^[0-9]+-[0-9]+$): refused",
            ranges[i]);
        bool refused = r->status == 400 || r->status == 416;
        if (!check(c, clause, refused))
            detail_resp(c, r);
        if (refused && r->status == 400) {
            fmt(clause, sizeof(clause), "code-2 400 for \"%s\": code BLOB_UPLOAD_INVALID",
                ranges[i]);
            check_error(c, r, 400, "BLOB_UPLOAD_INVALID", clause);
        }
        resp_free(r);
    }
    /* a Content-Range whose length is not the body's */
    r = req(c, "PATCH", loc, (const char *[]){OCTET, "Content-Range: 8-15", NULL}, data + 8, 4);
    {
        bool refused = r->status >= 400 && r->status < 500;
        bool code = error_has_code(r, "SIZE_INVALID") || error_has_code(r, "BLOB_UPLOAD_INVALID");
        if (!check(c,
                   "code-10 SIZE_INVALID: PATCH whose Content-Range length is not the body's: "
                   "4xx with SIZE_INVALID (or BLOB_UPLOAD_INVALID)",
                   refused && (code || r->status == 416)))
            detail_resp(c, r);
    }
    resp_free(r);
    r = req(c, "GET", loc, NULL, NULL, 0);
    check(c, "end-13 refused PATCHes changed nothing: 204 with Range 0-7",
          r->status == 204 && hdr_is(r, "Range", "0-7"));
    resp_free(r);
    /* the session still completes */
    fmt(q, sizeof(q), "digest=%s", d);
    add_query(path, sizeof(path), loc, q);
    r = req(c, "PUT", path, (const char *[]){OCTET, "Content-Range: 8-15", NULL}, data + 8, 8);
    check_status(c, r, 201, "end-6 the session completes after refused PATCHes: 201");
    resp_free(r);
}

void sec_err_manifests(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], body[4096];
    repo_name(c, repo, sizeof(repo), "errors-manifests");
    struct image img;
    if (!push_image(c, repo, "v1", "errors-manifests", &img))
        return;
    char unknown[DIGEST_MAX];
    digest_of("sha256", "no manifest has this digest", 27, unknown);

    /* MANIFEST_UNKNOWN */
    fmt(path, sizeof(path), "/v2/%s/manifests/nosuchtag", repo);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    check_error(c, r, 404, "MANIFEST_UNKNOWN",
                "code-7 MANIFEST_UNKNOWN: GET of an unknown tag: 404");
    resp_free(r);
    r = req(c, "DELETE", path, NULL, NULL, 0);
    check_error(c, r, 404, "MANIFEST_UNKNOWN",
                "code-7 MANIFEST_UNKNOWN: end-9 DELETE of an unknown tag: 404");
    resp_free(r);
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, unknown);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_error(c, r, 404, "MANIFEST_UNKNOWN",
                "code-7 MANIFEST_UNKNOWN: GET of an unknown digest: 404");
    resp_free(r);
    r = req(c, "DELETE", path, NULL, NULL, 0);
    check_error(c, r, 404, "MANIFEST_UNKNOWN",
                "code-7 MANIFEST_UNKNOWN: end-9 DELETE of an unknown digest: 404");
    resp_free(r);

    /* MANIFEST_INVALID */
    static const char *const invalid[] = {
        "{not json",
        "[\"an array\"]",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":\"a string\","
        "\"layers\":[]}",
    };
    static const char *const what[] = {"not JSON", "a JSON array",
                                       "an image manifest without "
                                       "config",
                                       "a config that is not a descriptor"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        r = put_manifest(c, repo, "invalid", MT_MANIFEST, invalid[i], strlen(invalid[i]));
        char clause[300];
        fmt(clause, sizeof(clause), "code-6 MANIFEST_INVALID: PUT of %s: 4xx", what[i]);
        check_error(c, r, 0, "MANIFEST_INVALID", clause);
        resp_free(r);
    }
    fmt(path, sizeof(path), "/v2/%s/manifests/invalid", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 404, "code-6 invalid manifests are not stored: GET 404");
    resp_free(r);

    /* MANIFEST_BLOB_UNKNOWN: a registry MAY reject; when it does, it MUST say this code */
    struct blob missing;
    digest_of("sha256", "layer never uploaded", 20, missing.digest);
    missing.size = 20;
    image_manifest(body, sizeof(body), MT_CONFIG, &img.cfg, &missing, 1, NULL);
    r = put_manifest(c, repo, "missing-layer", MT_MANIFEST, body, strlen(body));
    if (!check(c,
               "code-5 manifest with a layer never pushed: accepted (201) or rejected with "
               "MANIFEST_BLOB_UNKNOWN",
               r->status == 201 || (r->status >= 400 && r->status < 500 &&
                                    error_has_code(r, "MANIFEST_BLOB_UNKNOWN"))))
        detail_resp(c, r);
    resp_free(r);
    struct blob cfg_missing;
    digest_of("sha256", "config never uploaded", 21, cfg_missing.digest);
    cfg_missing.size = 21;
    image_manifest(body, sizeof(body), MT_CONFIG, &cfg_missing, &img.layer, 1, NULL);
    r = put_manifest(c, repo, "missing-config", MT_MANIFEST, body, strlen(body));
    if (!check(c, "code-5 manifest with a config never pushed: 201 or MANIFEST_BLOB_UNKNOWN",
               r->status == 201 || (r->status >= 400 && r->status < 500 &&
                                    error_has_code(r, "MANIFEST_BLOB_UNKNOWN"))))
        detail_resp(c, r);
    resp_free(r);
    fmt(body, sizeof(body),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX
        "\",\"manifests\":[{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":1234}]}",
        unknown);
    r = put_manifest(c, repo, "missing-child", MT_INDEX, body, strlen(body));
    if (!check(c, "code-5 index with a child manifest never pushed: 201 or MANIFEST_BLOB_UNKNOWN",
               r->status == 201 || (r->status >= 400 && r->status < 500 &&
                                    error_has_code(r, "MANIFEST_BLOB_UNKNOWN"))))
        detail_resp(c, r);
    resp_free(r);

    /* tags outside [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
    char t129[130];
    memset(t129, 'y', 129);
    t129[129] = '\0';
    const char *bad[] = {".dot-first", "-dash-first", t129, "semi;colon"};
    const char *bwhat[] = {"starting with .", "starting with -", "of 129 characters",
                           "with ; in it"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = put_manifest(c, repo, bad[i], MT_MANIFEST, img.body, img.size);
        char clause[300];
        fmt(clause, sizeof(clause),
            "end-7a tag %s (a tag MUST match the regex, at most 128): refused 4xx", bwhat[i]);
        bool refused = r->status >= 400 && r->status < 500;
        if (!check(c, clause, refused))
            detail_resp(c, r);
        if (refused) {
            fmt(clause, sizeof(clause), "TAG_INVALID (legacy code) for a tag %s", bwhat[i]);
            check_error(c, r, 0, "TAG_INVALID", clause);
        }
        resp_free(r);
    }
    char ref[PATH_MAX_LEN];
    fmt(ref, sizeof(ref), "%s?tag=fine&tag=.not-fine", img.digest);
    r = put_manifest(c, repo, ref, MT_MANIFEST, img.body, img.size);
    if (!check(c, "end-7b ?tag= with a tag outside the regex: refused 4xx",
               r->status >= 400 && r->status < 500))
        detail_resp(c, r);
    resp_free(r);
}

void sec_err_bodies(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], loc[HDR_MAX], why[256];
    repo_name(c, repo, sizeof(repo), "errors-bodies");
    struct image img;
    if (!push_image(c, repo, "v1", "errors-bodies", &img))
        return;
    char unknown[DIGEST_MAX];
    digest_of("sha256", "unknown to the error body checks", 32, unknown);

    /* the shape, on a plain 404 */
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, unknown);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    json_t *j = resp_json(r);
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    check(c, "error body of a 404: a JSON object with an \"errors\" array",
          json_is_array(json_object_get(j, "errors")));
    check(c, "error body: each error has \"code\" of uppercase letters and underscores",
          error_body_valid(r->body, r->len, why, sizeof(why)));
    json_t *msg = json_object_get(e0, "message");
    check(c, "error body: \"message\" (OPTIONAL), when present, is a string",
          msg == NULL || json_is_string(msg));
    json_decref(j);
    resp_free(r);

    /*
     * requests the spec gives no answer for: each must still be refused with a 4xx (not served,
     * not a 5xx), and a JSON body has the spec's format
     */
    struct {
        const char *what;
        const char *method;
        char path[PATH_MAX_LEN];
        const char *const *hdrs;
        const char *body;
    } cases[6];
    int n = 0;
    cases[n].what = "GET /tags/list?n=-1 (an n that is not a count)";
    cases[n].method = "GET";
    fmt(cases[n].path, PATH_MAX_LEN, "/v2/%s/tags/list?n=-1", repo);
    cases[n].hdrs = NULL;
    cases[n++].body = NULL;
    cases[n].what = "GET /tags/list?n=abc";
    cases[n].method = "GET";
    fmt(cases[n].path, PATH_MAX_LEN, "/v2/%s/tags/list?n=abc", repo);
    cases[n].hdrs = NULL;
    cases[n++].body = NULL;
    cases[n].what = "GET of a path that is no endpoint";
    cases[n].method = "GET";
    fmt(cases[n].path, PATH_MAX_LEN, "/v2/%s/no-such-endpoint", repo);
    cases[n].hdrs = NULL;
    cases[n++].body = NULL;
    cases[n].what = "POST to /manifests/<tag> (a method the endpoint lacks)";
    cases[n].method = "POST";
    fmt(cases[n].path, PATH_MAX_LEN, "/v2/%s/manifests/v1", repo);
    cases[n].hdrs = NULL;
    cases[n++].body = "";
    for (int i = 0; i < n; i++) {
        r = req(c, cases[i].method, cases[i].path, cases[i].hdrs, cases[i].body,
                cases[i].body ? strlen(cases[i].body) : 0);
        bool refused = r->status >= 400 && r->status < 500;
        bool json = r->len > 0 && r->body[0] == '{';
        bool shape = !json || error_body_valid(r->body, r->len, why, sizeof(why));
        if (!checkf(c, refused && shape,
                    "%s: refused with a 4xx; a JSON error body in the spec's format, code from "
                    "its table",
                    cases[i].what)) {
            if (!shape)
                detail(c, "%s", why);
            detail_resp(c, r);
        }
        resp_free(r);
    }
    /* the 416 of an out-of-order chunk */
    r = post_empty(c, repo, NULL);
    bool have = r->status == 202 && hdr(r, "Location", loc) != NULL;
    resp_free(r);
    if (have) {
        r = req(c, "PATCH", loc, (const char *[]){OCTET, "Content-Range: 5-9", NULL}, "56789", 5);
        bool json = r->len > 0 && r->body[0] == '{';
        bool shape = !json || error_body_valid(r->body, r->len, why, sizeof(why));
        if (!check(c,
                   "end-5 an out-of-order chunk: MUST be 416; a JSON error body in the spec's "
                   "format, code from its table",
                   r->status == 416 && shape)) {
            if (!shape)
                detail(c, "%s", why);
            detail_resp(c, r);
        }
        resp_free(r);
        r = req(c, "DELETE", loc, NULL, NULL, 0);
        resp_free(r);
    }
}
