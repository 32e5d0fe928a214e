#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"

static enum MHD_Result blob_delete(struct request *r)
{
    enum store_err rc = index_blob_unlink(r->srv->idx, r->name, &r->digest);
    if (rc == STORE_ENOENT)
        return reply_error(r, API_BLOB_UNKNOWN, NULL);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "blob delete");
    r->succeeded = true;
    return reply(r, MHD_HTTP_ACCEPTED, resp_empty());
}

enum MHD_Result api_blob(struct request *r)
{
    if (r->method == M_DELETE)
        return blob_delete(r);
    uint64_t size;
    enum store_err rc = index_blob_linked(r->srv->idx, r->name, &r->digest, &size);
    if (rc == STORE_ENOENT)
        return reply_error(r, API_BLOB_UNKNOWN, NULL);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "blob lookup");
    int fd = -1;
    rc = blobstore_blob_open(r->srv->bs, &r->digest, &fd, &size);
    if (rc == STORE_ENOENT) {
        log_error("blob %s linked in %s but its file is missing", r->digest.str, r->name);
        return reply_error(r, API_BLOB_UNKNOWN, "blob data missing");
    }
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "blob open");

    uint64_t first = 0, len = size;
    unsigned status = MHD_HTTP_OK;
    char cr[96];
    enum range_result rr = parse_range(req_header(r, "Range"), size, &first, &len);
    if (rr == RANGE_UNSATISFIABLE) {
        close(fd);
        struct MHD_Response *resp = resp_empty();
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        if (resp != NULL)
            resp_header(resp, "Content-Range", cr);
        return reply(r, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
    }
    if (rr == RANGE_OK) {
        status = MHD_HTTP_PARTIAL_CONTENT;
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
                 first + len - 1, size);
    }
    /* TAKES fd: closed by libmicrohttpd when the response is destroyed */
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, first);
    if (resp == NULL) {
        close(fd);
        return reply_store_error(r, STORE_ENOMEM, "blob response");
    }
    resp_header(resp, "Content-Type", "application/octet-stream");
    resp_header(resp, "Docker-Content-Digest", r->digest.str);
    resp_header(resp, "Accept-Ranges", "bytes");
    resp_header(resp, "Cache-Control", "max-age=31536000");
    char etag[DIGEST_STR_MAX + 2];
    snprintf(etag, sizeof(etag), "\"%s\"", r->digest.str);
    resp_header(resp, "ETag", etag);
    if (status == MHD_HTTP_PARTIAL_CONTENT)
        resp_header(resp, "Content-Range", cr);
    r->succeeded = true;
    req_count_download(r, len);
    return reply(r, status, resp);
}
