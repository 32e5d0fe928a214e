#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"

static void upload_location(const struct request *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "/v2/%s/blobs/uploads/%s", r->name, r->upload_id);
}

/* Location, Range and Docker-Upload-UUID of the session, on any response. */
static void session_headers(struct request *r, struct MHD_Response *resp, uint64_t offset)
{
    char loc[NAME_MAX_LEN + 64], range[48];
    upload_location(r, loc, sizeof(loc));
    snprintf(range, sizeof(range), "0-%" PRIu64, offset > 0 ? offset - 1 : 0);
    resp_header(resp, "Location", loc);
    resp_header(resp, "Range", range);
    resp_header(resp, "Docker-Upload-UUID", r->upload_id);
}

static enum MHD_Result reply_session(struct request *r, unsigned status, uint64_t offset)
{
    struct MHD_Response *resp = resp_empty();
    if (resp != NULL)
        session_headers(r, resp, offset);
    return reply(r, status, resp);
}

/* 416 with the session's current state, so the client can resume. */
static enum MHD_Result reply_range_error(struct request *r, uint64_t offset, const char *detail)
{
    struct MHD_Response *resp = resp_error(r, API_RANGE_INVALID, detail);
    if (resp != NULL)
        session_headers(r, resp, offset);
    return reply(r, api_err_status(API_RANGE_INVALID), resp);
}

static enum MHD_Result reply_blob_created(struct request *r, const struct digest *d)
{
    char loc[NAME_MAX_LEN + DIGEST_STR_MAX + 16];
    snprintf(loc, sizeof(loc), "/v2/%s/blobs/%s", r->name, d->str);
    struct MHD_Response *resp = resp_empty();
    if (resp != NULL) {
        resp_header(resp, "Location", loc);
        resp_header(resp, "Docker-Content-Digest", d->str);
    }
    r->succeeded = true;
    return reply(r, MHD_HTTP_CREATED, resp);
}

/*
 * A session holds bytes in the index before they are written (index_upload_hold): they count
 * against the repository's quota and the bounds of --max-upload-size and
 * --max-repo-upload-size, so a refused body leaves nothing behind. A body of known length is
 * held whole before it is read; one of unknown length (chunked) a step ahead as it streams in.
 * What is held past the data is given back when the request ends.
 */
#define HOLD_STEP ((uint64_t)64 << 20)
/* A monolithic body of known length up to this is checked but not held, and its session gets
 * no record: it lives only as long as its request, and a record would cost two index writes
 * for a small blob. (Its bytes are not seen by the repository's bound while in flight; the
 * quota is checked again when the blob is recorded.) */
#define UNHELD_MAX ((uint64_t)1 << 20)

/* Refusals of hold(): the bound or the reserve that refused, named. */
static enum MHD_Result reply_hold_error(struct request *r, enum store_err e, const char *what)
{
    const struct server_config *cfg = &r->srv->cfg;
    char detail[NAME_MAX_LEN + 200];
    switch (e) {
    case STORE_ETOOBIG:
        snprintf(detail, sizeof(detail),
                 "an upload session may hold at most %llu bytes (--max-upload-size)",
                 (unsigned long long)cfg->max_upload_size);
        log_info("%s: %s", what, detail);
        return reply_error(r, API_BLOB_TOO_BIG, detail);
    case STORE_EBUSY: {
        uint64_t held = 0;
        (void)index_upload_held(r->srv->idx, r->name, &held);
        snprintf(detail, sizeof(detail),
                 "the upload sessions of repository %s hold %llu bytes, at most %llu together "
                 "(--max-repo-upload-size): finish or delete one",
                 r->name, (unsigned long long)held, (unsigned long long)cfg->max_repo_upload_size);
        log_info("%s: %s", what, detail);
        return reply_error(r, API_TOOMANYREQUESTS, detail);
    }
    case STORE_ENOSPC: {
        uint64_t reserve = 0;
        (void)server_space_check(r->srv, 0, &reserve);
        return reply_space_reserve(r, reserve);
    }
    default:
        return reply_store_error(r, e, what); /* the quota (403 DENIED), or the index failed */
    }
}

/* Makes the session hold `total` bytes before they are written. */
static enum store_err hold(struct request *r, uint64_t total)
{
    if (total <= r->held)
        return STORE_OK;
    uint64_t max = r->srv->cfg.max_upload_size;
    if (max != 0 && total > max)
        return STORE_ETOOBIG; /* the index would say so too */
    uint64_t reserve;
    uint64_t written = upload_offset(r->up);
    enum store_err rc = server_space_check(r->srv, total - written, &reserve);
    if (rc != STORE_OK)
        return rc;
    const struct index_upload_limits lim = {r->srv->cfg.max_upload_size,
                                            r->srv->cfg.max_repo_upload_size};
    rc = index_upload_hold(r->srv->idx, r->upload_id, total, &lim);
    if (rc == STORE_OK)
        r->held = total;
    return rc;
}

static bool hold_refusal(enum store_err e)
{
    return e == STORE_EQUOTA || e == STORE_ETOOBIG || e == STORE_EBUSY || e == STORE_ENOSPC;
}

static enum store_err body_write(struct request *r, const char *data, size_t len)
{
    uint64_t end = upload_offset(r->up) + len;
    if (end > r->held) {
        /* a step ahead, so the index is not written at every piece; else just this piece */
        enum store_err rc = hold(r, end + HOLD_STEP);
        if (hold_refusal(rc))
            rc = hold(r, end);
        if (rc != STORE_OK) {
            r->hold_refused = hold_refusal(rc);
            return rc;
        }
    }
    enum store_err rc = upload_write(r->up, data, len);
    if (rc == STORE_OK)
        upload_writeback(r->up);
    return rc;
}

/* Ends this request's use of the session: kept for the next chunk (a request that wrote
 * leaves it holding no more than its data), or closed. */
static void release(struct request *r, bool keep)
{
    if (keep && r->up != NULL && r->on_body == body_write && r->held > upload_offset(r->up)) {
        enum store_err rc = index_upload_hold(r->srv->idx, r->upload_id, upload_offset(r->up),
                                              NULL);
        if (rc == STORE_OK)
            r->held = upload_offset(r->up);
        else
            log_warn("upload %s: cannot give back %llu bytes held: %s", r->upload_id,
                     (unsigned long long)(r->held - upload_offset(r->up)), store_strerror(rc));
    }
    upload_cache_release(r->srv->uploads, r->up, keep);
    r->up = NULL;
}

/* Drops the session for good: data file, index record (and what it held), cached handle. */
static void discard_session(struct request *r)
{
    enum store_err rc = upload_remove(r->srv->bs, r->upload_id);
    if (rc != STORE_OK)
        log_warn("upload %s: cannot remove data: %s", r->upload_id, store_strerror(rc));
    release(r, false);
    if (!r->has_record)
        return;
    rc = index_upload_del(r->srv->idx, r->upload_id);
    if (rc != STORE_OK && rc != STORE_ENOENT)
        log_warn("upload %s: cannot remove record: %s", r->upload_id, store_strerror(rc));
    r->has_record = false;
}

/* After the body: a body write failure or a chunk shorter than its Content-Range. */
static enum MHD_Result check_body(struct request *r, bool *failed)
{
    *failed = true;
    if (r->body_err != STORE_OK) {
        enum store_err e = r->body_err;
        if (!r->monolithic)
            (void)upload_rollback(r->up);
        if (r->hold_refused)
            return reply_hold_error(r, e, "upload write");
        return reply_store_error(r, e, "upload write");
    }
    if (r->has_range && r->received != r->range_end - r->range_start + 1) {
        (void)upload_rollback(r->up);
        return reply_range_error(r, upload_offset(r->up),
                                 "chunk length does not match Content-Range");
    }
    *failed = false;
    return MHD_YES;
}

static enum MHD_Result patch_done(struct request *r)
{
    bool failed;
    enum MHD_Result ret = check_body(r, &failed);
    if (failed) {
        release(r, true);
        return ret;
    }
    uint64_t offset = upload_offset(r->up);
    release(r, true);
    r->succeeded = true;
    return reply_session(r, MHD_HTTP_ACCEPTED, offset);
}

static enum store_err install_blob(void *arg)
{
    struct request *r = arg;
    return upload_install(r->up, &r->put_digest);
}

static enum store_err uninstall_blob(void *arg)
{
    struct request *r = arg;
    return blobstore_blob_remove(r->srv->bs, &r->put_digest);
}

static enum MHD_Result put_done(struct request *r)
{
    bool failed;
    enum MHD_Result ret = check_body(r, &failed);
    if (failed) {
        if (r->monolithic)
            discard_session(r);
        else
            release(r, true);
        return ret;
    }
    enum store_err rc = upload_verify(r->up, &r->put_digest);
    if (rc == STORE_EDIGEST) {
        discard_session(r);
        return reply_error(r, API_DIGEST_INVALID, "digest does not match the uploaded content");
    }
    if (rc != STORE_OK) {
        if (r->monolithic)
            discard_session(r);
        else
            release(r, true);
        return reply_store_error(r, rc, "blob commit");
    }
    uint64_t size = upload_offset(r->up);
    /* the file goes into blobs/ inside the txn that records it and drops the session record */
    rc = index_blob_commit(r->srv->idx, r->name, &r->put_digest, size, install_blob,
                           uninstall_blob, r, r->has_record ? r->upload_id : NULL);
    if (rc != STORE_OK) {
        discard_session(r); /* what was refused (quota) is not kept */
        return reply_store_error(r, rc, "blob commit");
    }
    /*
     * The upload's name goes now; its descriptor is closed after the answer is out. When the
     * blob existed already, that close is the file's last reference and frees all of it:
     * 70 ms for 256 MiB on ext4, which the client need not wait for.
     */
    rc = upload_remove(r->srv->bs, r->upload_id);
    if (rc != STORE_OK)
        log_warn("upload %s: cannot remove data: %s", r->upload_id, store_strerror(rc));
    r->retired = upload_cache_detach(r->srv->uploads, r->up);
    r->up = NULL;
    req_count(r, size, 0, 0);
    return reply_blob_created(r, &r->put_digest);
}

/*
 * Creates the session file and (with_record) its index record, holding `initial` bytes from
 * the start (without a record: checked, not held); the caller holds r->up on success. A
 * refusal of the hold is reported as a body_err is (*refused set).
 */
static enum store_err session_create(struct request *r, enum digest_alg alg, uint64_t initial,
                                     bool with_record, bool *refused)
{
    struct server *srv = r->srv;
    const struct index_upload_limits lim = {srv->cfg.max_upload_size,
                                            srv->cfg.max_repo_upload_size};
    *refused = false;
    if (!upload_id_new(r->upload_id))
        return STORE_EIO;
    uint64_t reserve;
    enum store_err rc = server_space_check(srv, initial, &reserve);
    if (srv->cfg.max_upload_size != 0 && initial > srv->cfg.max_upload_size)
        rc = STORE_ETOOBIG;
    if (rc == STORE_OK && !with_record && initial > 0)
        rc = index_upload_check(srv->idx, r->name, initial, &lim);
    if (rc != STORE_OK) {
        *refused = hold_refusal(rc);
        return rc;
    }
    rc = upload_cache_acquire(srv->uploads, srv->bs, r->upload_id, alg, true, &r->up, NULL);
    if (rc != STORE_OK)
        return rc;
    r->held = initial;
    if (!with_record)
        return STORE_OK;
    struct index_upload rec = {.alg = alg, .created = (uint64_t)time(NULL), .held = initial};
    memcpy(rec.repo, r->name, sizeof(rec.repo));
    rc = index_upload_put(srv->idx, r->upload_id, &rec, &lim);
    if (rc != STORE_OK) {
        *refused = hold_refusal(rc);
        discard_session(r);
        return rc;
    }
    r->has_record = true;
    return STORE_OK;
}

/* POST without a digest: the session is made only once the request is complete, so a
 * refused or abandoned POST leaves nothing behind. */
static enum MHD_Result post_done(struct request *r)
{
    bool refused;
    enum store_err rc = session_create(r, r->post_alg, 0, true, &refused);
    if (rc == STORE_EBUSY && !refused)
        return reply_retry_later(r, "too many uploads in progress");
    if (refused)
        return reply_hold_error(r, rc, "upload create");
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "upload create");
    uint64_t offset = upload_offset(r->up);
    release(r, true);
    r->succeeded = true;
    return reply_session(r, MHD_HTTP_ACCEPTED, offset);
}

/* Content-Range and Content-Length of a chunk, checked against the session offset. */
static enum MHD_Result check_chunk_headers(struct request *r, bool *failed)
{
    *failed = true;
    const char *cl = req_header(r, "Content-Length");
    if (cl != NULL) {
        if (!parse_u64(cl, strlen(cl), &r->length))
            return reply_error(r, API_SIZE_INVALID, "invalid Content-Length");
        r->has_length = true;
    }
    const char *cr = req_header(r, "Content-Range");
    if (cr != NULL) {
        uint64_t offset = upload_offset(r->up);
        if (!parse_content_range(cr, &r->range_start, &r->range_end))
            return reply_range_error(r, offset, "invalid Content-Range");
        r->has_range = true;
        if (r->range_start != offset)
            return reply_range_error(r, offset, "chunk does not start at the upload offset");
        if (r->has_length && r->length != r->range_end - r->range_start + 1)
            return reply_range_error(r, offset, "Content-Length does not match Content-Range");
    }
    *failed = false;
    return MHD_YES;
}

/* Parses ?digest= of a closing PUT or a monolithic POST. */
static enum MHD_Result parse_put_digest(struct request *r, const char *v, bool *failed)
{
    *failed = true;
    enum store_err rc = v != NULL ? digest_parse(&r->put_digest, v, strlen(v)) : STORE_EINVAL;
    if (rc != STORE_OK)
        return reply_error(r, API_DIGEST_INVALID,
                           v == NULL ? "digest parameter missing"
                           : rc == STORE_ENOENT ? "unsupported digest algorithm"
                                                : "invalid digest");
    r->has_put_digest = true;
    *failed = false;
    return MHD_YES;
}

static enum MHD_Result upload_start(struct request *r)
{
    struct server *srv = r->srv;
    const char *mount = req_arg(r, "mount");
    const char *from = req_arg(r, "from");
    if (mount != NULL) {
        struct digest md;
        if (digest_parse(&md, mount, strlen(mount)) != STORE_OK)
            return reply_error(r, API_DIGEST_INVALID, "invalid mount digest");
        /*
         * With from: only when the requester may pull from it. Without: a blob this registry
         * holds anywhere, only when there is no access control to leak it past.
         */
        bool mountable = from != NULL ? name_valid(from, strlen(from)) &&
                                            authz_can(r, from, AUTH_PULL)
                                      : srv->cfg.auth == AUTH_MODE_NONE;
        if (mountable) {
            uint64_t size = 0;
            enum store_err rc =
                index_blob_link(srv->idx, r->name, &md, &size, from != NULL ? from : "");
            if (rc == STORE_OK)
                return reply_blob_created(r, &md);
            if (rc != STORE_ENOENT)
                return reply_store_error(r, rc, "blob mount");
        }
        /* not mountable: an ordinary upload session, as the spec asks */
    }
    enum digest_alg alg = DIGEST_SHA256;
    const char *alg_arg = req_arg(r, "digest-algorithm");
    if (alg_arg != NULL && !digest_alg_parse(&alg, alg_arg))
        return reply_error(r, API_DIGEST_INVALID, "unsupported digest algorithm");
    const char *dg = req_arg(r, "digest");
    if (dg != NULL) {
        bool failed;
        enum MHD_Result ret = parse_put_digest(r, dg, &failed);
        if (failed)
            return ret;
        alg = r->put_digest.alg;
        r->monolithic = true;
    }
    if (!r->monolithic) {
        r->post_alg = alg;
        r->on_done = post_done;
        return MHD_YES;
    }
    /* the whole body is held before it is read, when its length is known */
    uint64_t initial = 0;
    const char *cl = req_header(r, "Content-Length");
    if (cl != NULL && !parse_u64(cl, strlen(cl), &initial))
        return reply_error(r, API_SIZE_INVALID, "invalid Content-Length");
    bool refused;
    enum store_err rc =
        session_create(r, alg, initial, cl == NULL || initial > UNHELD_MAX, &refused);
    if (rc == STORE_EBUSY && !refused)
        return reply_retry_later(r, "too many uploads in progress");
    if (refused)
        return reply_hold_error(r, rc, "upload create");
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "upload create");
    bool failed;
    enum MHD_Result ret = check_chunk_headers(r, &failed);
    if (failed) {
        discard_session(r);
        return ret;
    }
    r->on_body = body_write;
    r->on_done = put_done;
    return MHD_YES;
}

enum MHD_Result api_upload_prepare(struct request *r)
{
    if (r->route.kind == ROUTE_UPLOAD_START)
        return upload_start(r);

    struct server *srv = r->srv;
    struct index_upload rec;
    enum store_err rc = index_upload_get(srv->idx, r->upload_id, &rec);
    if (rc == STORE_ENOENT || (rc == STORE_OK && strcmp(rec.repo, r->name) != 0))
        return reply_error(r, API_BLOB_UPLOAD_UNKNOWN, NULL);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "upload lookup");

    bool failed;
    if (r->method == M_PUT) {
        enum MHD_Result ret = parse_put_digest(r, req_arg(r, "digest"), &failed);
        if (failed)
            return ret;
    }
    bool in_use = false;
    rc = upload_cache_acquire(srv->uploads, srv->bs, r->upload_id, rec.alg, false, &r->up,
                              &in_use);
    if (rc == STORE_ENOENT) {
        (void)index_upload_del(srv->idx, r->upload_id);
        return reply_error(r, API_BLOB_UPLOAD_UNKNOWN, "upload data is gone");
    }
    if (rc == STORE_EBUSY && !in_use)
        return reply_retry_later(r, "too many uploads in progress");
    if (rc == STORE_EBUSY) {
        /* another request is writing to it: report what has been acknowledged so far */
        uint64_t acked = upload_cache_acked(srv->uploads, r->upload_id);
        if (r->method == M_GET)
            return reply_session(r, MHD_HTTP_NO_CONTENT, acked);
        if (r->method == M_DELETE)
            return reply_error(r, API_BLOB_UPLOAD_INVALID, "upload is in use by another request");
        return reply_range_error(r, acked, "upload is in use by another request");
    }
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "upload open");
    r->has_record = true;
    r->held = rec.held;

    switch (r->method) {
    case M_GET: {
        uint64_t offset = upload_offset(r->up);
        release(r, true);
        r->succeeded = true;
        return reply_session(r, MHD_HTTP_NO_CONTENT, offset);
    }
    case M_DELETE:
        discard_session(r);
        r->succeeded = true;
        return reply(r, MHD_HTTP_NO_CONTENT, resp_empty());
    case M_PATCH:
    case M_PUT: {
        /* a chunk that fails or is cut off rolls back to here */
        rc = upload_mark(r->up);
        if (rc != STORE_OK) {
            release(r, true);
            return reply_store_error(r, rc, "upload mark");
        }
        enum MHD_Result ret = check_chunk_headers(r, &failed);
        if (failed) {
            release(r, true);
            return ret;
        }
        /* the whole body is held before it is read, when its length is known */
        if (r->has_length && r->length > 0) {
            uint64_t offset = upload_offset(r->up);
            rc = r->length > UINT64_MAX - offset ? STORE_ETOOBIG : hold(r, offset + r->length);
            if (rc != STORE_OK) {
                release(r, true);
                return reply_hold_error(r, rc, "upload write");
            }
        }
        r->on_body = body_write;
        r->on_done = r->method == M_PATCH ? patch_done : put_done;
        return MHD_YES;
    }
    default:
        release(r, true);
        return reply_error(r, API_UNSUPPORTED, NULL);
    }
}

void api_upload_complete(struct request *r)
{
    upload_close(r->retired);
    r->retired = NULL;
    if (r->up == NULL)
        return;
    /* the request ended before its handler finished: the chunk never happened */
    if (r->monolithic) {
        discard_session(r);
        return;
    }
    (void)upload_rollback(r->up);
    release(r, true);
}
