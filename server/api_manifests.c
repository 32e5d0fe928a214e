#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"
#include "storage/manifest.h"

/* Tags one PUT may set: the path's and up to this many ?tag= parameters. */
#define MAX_TAGS 64

static enum MHD_Result not_found(struct request *r)
{
    if (!index_repo_exists(r->srv->idx, r->name))
        return reply_error(r, API_NAME_UNKNOWN, NULL);
    return reply_error(r, API_MANIFEST_UNKNOWN, NULL);
}

static enum MHD_Result manifest_get(struct request *r)
{
    struct digest d = r->digest;
    enum store_err rc = STORE_OK;
    if (!r->ref_is_digest)
        rc = index_tag_get(r->srv->idx, r->name, r->ref, &d);
    struct index_manifest m = {.bytes = NULL};
    if (rc == STORE_OK)
        rc = index_manifest_get(r->srv->idx, r->name, &d, true, &m);
    if (rc == STORE_ENOENT)
        return not_found(r);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "manifest lookup");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)m.size, m.bytes, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(m.bytes);
        return reply_store_error(r, STORE_ENOMEM, "manifest response");
    }
    resp_header(resp, "Content-Type", m.media_type);
    resp_header(resp, "Docker-Content-Digest", d.str);
    char etag[DIGEST_STR_MAX + 2];
    snprintf(etag, sizeof(etag), "\"%s\"", d.str);
    resp_header(resp, "ETag", etag);
    r->succeeded = true;
    if (r->method == M_GET) {
        req_count_download(r, m.size);
        req_count(r, 0, 1, 0);
        char pulled[NAME_MAX_LEN + DIGEST_STR_MAX + 2];
        snprintf(pulled, sizeof(pulled), "%s@%s", r->name, d.str);
        xfer_add(r->srv->xfer, 'p', pulled, 0, 0, 1, 0); /* for sinceImagePulled rules */
    }
    return reply(r, MHD_HTTP_OK, resp);
}

static enum MHD_Result manifest_delete(struct request *r)
{
    enum store_err rc = r->ref_is_digest
                            ? index_manifest_delete(r->srv->idx, r->name, &r->digest)
                            : index_tag_delete(r->srv->idx, r->name, r->ref);
    if (rc == STORE_ENOENT)
        return not_found(r);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "manifest delete");
    r->succeeded = true;
    return reply(r, MHD_HTTP_ACCEPTED, resp_empty());
}

static enum store_err body_buffer(struct request *r, const char *data, size_t len)
{
    if (r->too_big || len > r->srv->cfg.max_manifest - r->buf_len) {
        r->too_big = true;
        return STORE_OK; /* keep reading, answer 413 at the end */
    }
    if (r->buf_len + len > r->buf_cap) {
        size_t cap = r->buf_cap ? r->buf_cap : 16384;
        while (cap < r->buf_len + len)
            cap *= 2;
        if (cap > r->srv->cfg.max_manifest)
            cap = (size_t)r->srv->cfg.max_manifest;
        char *p = realloc(r->buf, cap);
        if (p == NULL)
            return STORE_ENOMEM;
        r->buf = p;
        r->buf_cap = cap;
    }
    memcpy(r->buf + r->buf_len, data, len);
    r->buf_len += len;
    return STORE_OK;
}

struct tag_list {
    const char *tags[MAX_TAGS + 1];
    size_t n;
    bool invalid;
    bool too_many;
};

static enum MHD_Result collect_tag(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct tag_list *tl = cls;
    if (strcmp(key, "tag") != 0)
        return MHD_YES;
    if (value == NULL || !tag_valid(value, strlen(value))) {
        tl->invalid = true;
        return MHD_NO;
    }
    for (size_t i = 0; i < tl->n; i++)
        if (strcmp(tl->tags[i], value) == 0)
            return MHD_YES;
    if (tl->n == MAX_TAGS + 1) {
        tl->too_many = true;
        return MHD_NO;
    }
    tl->tags[tl->n++] = value;
    return MHD_YES;
}

static enum MHD_Result manifest_put(struct request *r)
{
    if (r->too_big)
        return reply_error(r, API_MANIFEST_TOO_BIG, "manifest exceeds the size limit");
    if (r->body_err != STORE_OK)
        return reply_store_error(r, r->body_err, "manifest read");
    struct tag_list tl = {.n = 0};
    if (!r->ref_is_digest)
        tl.tags[tl.n++] = r->ref;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_tag, &tl);
    if (tl.invalid)
        return reply_error(r, API_TAG_INVALID, "a tag parameter does not match the grammar");
    if (tl.too_many)
        return reply_error(r, API_TAG_INVALID, "too many tags in one request");

    struct manifest_info info;
    const char *why = NULL;
    enum store_err rc =
        manifest_parse(req_header(r, "Content-Type"), r->buf ? r->buf : "", r->buf_len, &info, &why);
    if (rc == STORE_ENOMEM)
        return reply_store_error(r, rc, "manifest parse");
    if (rc != STORE_OK)
        return reply_error(r, API_MANIFEST_INVALID, why);

    struct index_manifest_put m = {.repo = r->name, .info = &info, .bytes = r->buf,
                                   .len = r->buf_len, .tags = tl.tags, .ntags = tl.n};
    enum MHD_Result ret;
    rc = digest_of(r->ref_is_digest ? r->digest.alg : DIGEST_SHA256, r->buf ? r->buf : "",
                   r->buf_len, &m.digest);
    if (rc != STORE_OK) {
        ret = reply_store_error(r, rc, "manifest digest");
        goto out;
    }
    if (r->ref_is_digest && !digest_equal(&m.digest, &r->digest)) {
        ret = reply_error(r, API_DIGEST_INVALID, "digest does not match the manifest content");
        goto out;
    }
    size_t bad = 0;
    rc = index_manifest_put(r->srv->idx, &m, &bad);
    if (rc == STORE_EEXIST) {
        char detail[TAG_MAX_LEN + NAME_MAX_LEN + 64];
        snprintf(detail, sizeof(detail), "tag %s of %s is immutable and points elsewhere",
                 tl.tags[bad], r->name);
        ret = reply_error(r, API_TAG_IMMUTABLE, detail);
        goto out;
    }
    if (rc == STORE_ENOENT || rc == STORE_ERANGE) {
        char detail[DIGEST_STR_MAX + 64];
        snprintf(detail, sizeof(detail), "%s%s",
                 rc == STORE_ERANGE ? "size mismatch for " : "", info.refs[bad].digest.str);
        ret = rc == STORE_ENOENT ? reply_error(r, API_MANIFEST_BLOB_UNKNOWN, detail)
                                 : reply_error(r, API_MANIFEST_INVALID, detail);
        goto out;
    }
    if (rc != STORE_OK) {
        ret = reply_store_error(r, rc, "manifest store");
        goto out;
    }
    struct MHD_Response *resp = resp_empty();
    if (resp != NULL) {
        char loc[NAME_MAX_LEN + DIGEST_STR_MAX + 24];
        snprintf(loc, sizeof(loc), "/v2/%s/manifests/%s", r->name, m.digest.str);
        resp_header(resp, "Location", loc);
        resp_header(resp, "Docker-Content-Digest", m.digest.str);
        if (info.has_subject)
            resp_header(resp, "OCI-Subject", info.subject.str);
        for (size_t i = 0; i < tl.n; i++)
            resp_header(resp, "OCI-Tag", tl.tags[i]);
    }
    r->succeeded = true;
    req_count(r, r->buf_len, 0, 1);
    ret = reply(r, MHD_HTTP_CREATED, resp);
out:
    manifest_info_free(&info);
    return ret;
}

enum MHD_Result api_manifest_prepare(struct request *r)
{
    switch (r->method) {
    case M_GET:
    case M_HEAD:
        r->on_done = manifest_get;
        return MHD_YES;
    case M_DELETE:
        r->on_done = manifest_delete;
        return MHD_YES;
    default:
        break;
    }
    const char *cl = req_header(r, "Content-Length");
    uint64_t len = 0, reserve;
    if (cl != NULL && parse_u64(cl, strlen(cl), &len) && len > r->srv->cfg.max_manifest)
        return reply_error(r, API_MANIFEST_TOO_BIG, "manifest exceeds the size limit");
    /* below the free-space reserve only deletes and gc go on, so they can always run */
    if (server_space_check(r->srv, len, &reserve) != STORE_OK)
        return reply_space_reserve(r, reserve);
    r->on_body = body_buffer;
    r->on_done = manifest_put;
    return MHD_YES;
}
