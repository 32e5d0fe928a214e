#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"
#include "storage/gc.h"

/* Per connection. libmicrohttpd 0.9.75 zeroes the whole pool before each request on a
 * keep-alive connection: at 256 KiB that memset was a quarter of the CPU of a manifest GET.
 * With 64 KiB a 256 MiB upload still ran at full speed; with 32 KiB it did not. */
#define CONN_MEMORY_LIMIT (64u << 10)
/* A *req_cls before the access handler's first call: the path as sent held %2F (uri_seen).
 * Only its address is used. */
static const char ENCODED_SLASH[] = "%2F";

void server_config_defaults(struct server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->root = "./data";
    cfg->listen = "127.0.0.1:5000";
    cfg->threads = 0;
    cfg->max_manifest = 4u << 20;
    cfg->map_size = (uint64_t)64 << 30;
    cfg->shutdown_grace = 10;
    cfg->conn_timeout = 120;
    cfg->per_ip_limit = 0;
    cfg->max_connections = 1000;
    cfg->max_upload_size = (uint64_t)64 << 30;
    cfg->max_repo_upload_size = (uint64_t)256 << 30;
    cfg->min_free_bytes = 256u << 20;
    cfg->min_free_percent = 1;
    cfg->auth = AUTH_MODE_NONE;
    cfg->service = "ocireg";
    cfg->issuer = "ocireg";
    cfg->token_ttl = 300;
    cfg->refresh_ttl = 30 * 24 * 3600;
    cfg->login_failures = 10;
    cfg->metrics_max_repos = 10000;
    cfg->gc_grace = 3600;
    cfg->gc_upload_max_age = 86400;
}

/* ---- request helpers ---- */

const char *req_header(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *req_arg(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct MHD_Response *resp_empty(void)
{
    return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
}

void resp_header(struct MHD_Response *resp, const char *name, const char *value)
{
    (void)MHD_add_response_header(resp, name, value);
}

enum MHD_Result reply(struct request *r, unsigned status, struct MHD_Response *resp)
{
    if (resp == NULL) {
        log_error("out of memory building a response");
        return MHD_NO;
    }
    resp_header(resp, "Docker-Distribution-API-Version", "registry/2.0");
    if (r->request_id[0] != '\0')
        resp_header(resp, "X-Request-Id", r->request_id);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->responded = true;
    return ret;
}

struct MHD_Response *resp_error(struct request *r, enum api_err e, const char *detail)
{
    json_t *err = json_pack("{s:s, s:s}", "code", api_err_code(e), "message", api_err_message(e));
    if (err != NULL && detail != NULL)
        json_object_set_new(err, "detail", json_string(detail));
    json_t *body = json_pack("{s:[o]}", "errors", err);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct MHD_Response *resp =
        text != NULL ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
                     : resp_empty();
    if (resp == NULL)
        free(text);
    if (resp != NULL)
        resp_header(resp, "Content-Type", "application/json");
    log_debug("%s %s%s%s -> %u %s", route_label(r->route.kind), r->name, r->ref[0] ? " " : "",
              r->ref, api_err_status(e), api_err_code(e));
    return resp;
}

enum MHD_Result reply_error(struct request *r, enum api_err e, const char *detail)
{
    return reply(r, api_err_status(e), resp_error(r, e, detail));
}

enum MHD_Result reply_store_error(struct request *r, enum store_err e, const char *what)
{
    if (e == STORE_EQUOTA) {
        struct index_usage u = {0};
        uint64_t quota = 0;
        if (index_usage_get(r->srv->idx, 'r', r->name, &u) == STORE_OK)
            quota = u.quota;
        if (quota == 0)
            (void)index_quota_default(r->srv->idx, &quota);
        uint64_t held = 0;
        (void)index_upload_held(r->srv->idx, r->name, &held);
        char detail[NAME_MAX_LEN + 160];
        if (held > 0)
            snprintf(detail, sizeof(detail),
                     "repository %s is over its quota of %llu bytes (%llu stored, %llu held by "
                     "upload sessions)",
                     r->name, (unsigned long long)quota, (unsigned long long)u.stored_bytes,
                     (unsigned long long)held);
        else
            snprintf(detail, sizeof(detail),
                     "repository %s is over its quota of %llu bytes (%llu stored)", r->name,
                     (unsigned long long)quota, (unsigned long long)u.stored_bytes);
        log_info("%s: %s", what, detail);
        return reply_error(r, API_DENIED, detail);
    }
    log_error("%s (repository %s): %s%s%s", what, r->name, store_strerror(e),
              e == STORE_EIO ? ": " : "", e == STORE_EIO ? strerror(errno) : "");
    return reply_error(r, api_err_from_store(e), store_strerror(e));
}

enum MHD_Result reply_retry_later(struct request *r, const char *detail)
{
    struct MHD_Response *resp = resp_error(r, API_UNAVAILABLE, detail);
    if (resp != NULL)
        resp_header(resp, "Retry-After", "1");
    return reply(r, api_err_status(API_UNAVAILABLE), resp);
}

enum store_err server_space_check(struct server *srv, uint64_t more, uint64_t *reserve)
{
    const struct server_config *cfg = &srv->cfg;
    struct statvfs sv;
    *reserve = 0;
    if ((cfg->min_free_bytes == 0 && cfg->min_free_percent == 0) || statvfs(cfg->root, &sv) != 0)
        return STORE_OK; /* no reserve, or unknown: a full disk is reported by the write */
    uint64_t size = (uint64_t)sv.f_blocks * sv.f_frsize;
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    uint64_t by_percent = size / 100 * cfg->min_free_percent;
    if (cfg->min_free_bytes == 0)
        *reserve = by_percent;
    else if (cfg->min_free_percent == 0 || cfg->min_free_bytes < by_percent)
        *reserve = cfg->min_free_bytes;
    else
        *reserve = by_percent;
    return avail >= *reserve && avail - *reserve >= more ? STORE_OK : STORE_ENOSPC;
}

enum MHD_Result reply_space_reserve(struct request *r, uint64_t reserve)
{
    char detail[160];
    snprintf(detail, sizeof(detail),
             "free space is below the reserve of %llu bytes kept for deletes and garbage "
             "collection (--min-free-space)",
             (unsigned long long)reserve);
    log_info("%s %s refused: %s", route_label(r->route.kind), r->name, detail);
    return reply_error(r, API_INSUFFICIENT_STORAGE, detail);
}

void req_count_download(struct request *r, uint64_t body_len)
{
    if (r->method != M_GET)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->sock_fd = ci != NULL ? ci->connect_fd : -1;
    r->acked_start = xfer_acked(r->sock_fd);
    r->egress_len = body_len;
    r->count_egress = true;
}

void req_count(struct request *r, uint64_t ingress, uint64_t pulls, uint64_t pushes)
{
    xfer_add(r->srv->xfer, 'r', r->name, ingress, 0, pulls, pushes);
    if (r->principal[0] != '\0')
        xfer_add(r->srv->xfer, 'u', r->principal, ingress, 0, pulls, pushes);
}

/* The client's X-Request-Id when it is short and plain, else a fresh random one. */
static void set_request_id(struct request *r)
{
    const char *given = req_header(r, "X-Request-Id");
    size_t n = given != NULL ? strlen(given) : 0;
    bool ok = n > 0 && n < sizeof(r->request_id);
    for (size_t i = 0; ok && i < n; i++)
        ok = (given[i] >= 'a' && given[i] <= 'z') || (given[i] >= 'A' && given[i] <= 'Z') ||
             (given[i] >= '0' && given[i] <= '9') || strchr("-_.:", given[i]) != NULL;
    if (ok) {
        memcpy(r->request_id, given, n + 1);
        return;
    }
    unsigned char raw[8];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(r->request_id, sizeof(r->request_id), raw, sizeof(raw));
}

/* One JSON line per request; every field is bounded and escaped by jansson. */
static void access_log(struct server *srv, struct request *r, double seconds, uint64_t out)
{
    char remote[64] = "";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci != NULL && ci->client_addr != NULL) {
        socklen_t sl = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                              : sizeof(struct sockaddr_in);
        (void)getnameinfo(ci->client_addr, sl, remote, sizeof(remote), NULL, 0, NI_NUMERICHOST);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             now.tv_nsec / 1000000);
    static const char *const methods[] = {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OTHER"};
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:f}", "time",
                             when, "request_id", r->request_id, "remote", remote, "user",
                             r->principal, "method", methods[r->method], "route",
                             route_label(r->route.kind), "repository", r->name, "status",
                             (int)r->status, "bytes_in", (json_int_t)r->received, "bytes_out",
                             (json_int_t)out, "duration_ms", seconds * 1000.0);
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (text != NULL) {
        fprintf(srv->access_log, "%s\n", text);
        free(text);
    }
}

/* ---- routing ---- */

static enum method method_of(const char *m)
{
    static const struct {
        const char *name;
        enum method m;
    } methods[] = {{"GET", M_GET},     {"HEAD", M_HEAD},   {"PUT", M_PUT},
                   {"POST", M_POST},   {"PATCH", M_PATCH}, {"DELETE", M_DELETE}};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(m, methods[i].name) == 0)
            return methods[i].m;
    return M_OTHER;
}

static enum MHD_Result api_base(struct request *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(2, (void *)"{}",
                                                                MHD_RESPMEM_PERSISTENT);
    if (resp != NULL)
        resp_header(resp, "Content-Type", "application/json");
    return reply(r, MHD_HTTP_OK, resp);
}

#define MB(m) (1u << (m))

/* The methods each route answers. */
static unsigned route_methods(enum route_kind kind)
{
    switch (kind) {
    case ROUTE_BASE:
    case ROUTE_CATALOG:
    case ROUTE_TAGS:
    case ROUTE_REFERRERS:
        return MB(M_GET) | MB(M_HEAD);
    case ROUTE_BLOB:
        return MB(M_GET) | MB(M_HEAD) | MB(M_DELETE);
    case ROUTE_MANIFEST:
        return MB(M_GET) | MB(M_HEAD) | MB(M_PUT) | MB(M_DELETE);
    case ROUTE_UPLOAD_START:
        return MB(M_POST);
    case ROUTE_UPLOAD:
        return MB(M_GET) | MB(M_PATCH) | MB(M_PUT) | MB(M_DELETE);
    case ROUTE_TOKEN:
        return MB(M_GET) | MB(M_POST);
    case ROUTE_NONE:
        break;
    }
    return 0;
}

static enum MHD_Result not_allowed(struct request *r, unsigned mask)
{
    static const char *const names[] = {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"};
    char allow[64] = "";
    size_t len = 0;
    for (int m = 0; m < (int)(sizeof(names) / sizeof(names[0])); m++) {
        if ((mask & MB(m)) == 0)
            continue;
        int n = snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", names[m]);
        if (n > 0 && (size_t)n < sizeof(allow) - len)
            len += (size_t)n;
    }
    struct MHD_Response *resp = resp_error(r, API_UNSUPPORTED, "method not allowed on this endpoint");
    if (resp != NULL)
        resp_header(resp, "Allow", allow);
    return reply(r, api_err_status(API_UNSUPPORTED), resp);
}

/* Counts Content-Length and Transfer-Encoding headers. */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    unsigned *counts = cls;
    if (strcasecmp(key, "Content-Length") == 0)
        counts[0]++;
    else if (strcasecmp(key, "Transfer-Encoding") == 0)
        counts[1]++;
    return MHD_YES;
}

/* Validates the path's name and reference and picks the handler. */
static enum MHD_Result begin(struct request *r, const char *url)
{
    /* ambiguous framing is how requests are smuggled past a proxy: refuse it */
    unsigned framing[2] = {0, 0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, framing);
    if (framing[0] > 1 || framing[1] > 1 || (framing[0] && framing[1]))
        return reply_error(r, API_SIZE_INVALID, "conflicting Content-Length / Transfer-Encoding");

    route_parse(url, &r->route);
    const struct route *rt = &r->route;
    if (rt->kind == ROUTE_NONE)
        return reply_error(r, API_NOT_FOUND, NULL);
    /* url is decoded, %2F into '/': a path that had one names no repository (uri_seen) */
    if (r->encoded_slash)
        return rt->name != NULL ? reply_error(r, API_NAME_INVALID,
                                              "a percent-encoded '/' separates nothing")
                                : reply_error(r, API_NOT_FOUND, NULL);
    unsigned allowed = route_methods(rt->kind);
    if (r->method == M_OTHER || (allowed & MB(r->method)) == 0)
        return not_allowed(r, allowed);
    enum MHD_Result denied;
    if (rt->kind == ROUTE_TOKEN)
        return api_token_prepare(r);
    if (rt->kind == ROUTE_BASE || rt->kind == ROUTE_CATALOG) {
        if (!authz_check(r, &denied))
            return denied;
        r->on_done = rt->kind == ROUTE_BASE ? api_base : api_catalog;
        return MHD_YES;
    }
    if (!name_valid(rt->name, rt->name_len))
        return reply_error(r, API_NAME_INVALID, "repository name does not match the grammar");
    memcpy(r->name, rt->name, rt->name_len);
    r->name[rt->name_len] = '\0';
    if (rt->ref_len > REF_MAX)
        return reply_error(r, rt->kind == ROUTE_UPLOAD ? API_BLOB_UPLOAD_UNKNOWN
                                                       : API_DIGEST_INVALID,
                           "reference too long");
    if (rt->ref != NULL) {
        memcpy(r->ref, rt->ref, rt->ref_len);
        r->ref[rt->ref_len] = '\0';
    }
    if (rt->kind == ROUTE_MANIFEST || rt->kind == ROUTE_BLOB || rt->kind == ROUTE_REFERRERS) {
        bool looks_digest = memchr(r->ref, ':', rt->ref_len) != NULL;
        if (looks_digest || rt->kind != ROUTE_MANIFEST) {
            enum store_err rc = digest_parse(&r->digest, r->ref, rt->ref_len);
            if (rc != STORE_OK)
                return reply_error(r, API_DIGEST_INVALID,
                                   rc == STORE_ENOENT ? "unsupported digest algorithm"
                                                      : "invalid digest");
            r->ref_is_digest = true;
        } else if (!tag_valid(r->ref, rt->ref_len)) {
            return reply_error(r, API_TAG_INVALID, "tag does not match the grammar");
        }
    }
    /* before any body is read: an unauthorized upload is refused without consuming it */
    if (!authz_check(r, &denied))
        return denied;
    switch (rt->kind) {
    case ROUTE_TAGS:
        r->on_done = api_tags;
        return MHD_YES;
    case ROUTE_REFERRERS:
        r->on_done = api_referrers;
        return MHD_YES;
    case ROUTE_BLOB:
        r->on_done = api_blob;
        return MHD_YES;
    case ROUTE_MANIFEST:
        return api_manifest_prepare(r);
    case ROUTE_UPLOAD_START:
        return api_upload_prepare(r);
    case ROUTE_UPLOAD:
        if (!upload_id_valid(r->ref, rt->ref_len))
            return reply_error(r, API_BLOB_UPLOAD_UNKNOWN, NULL);
        memcpy(r->upload_id, r->ref, UPLOAD_ID_LEN + 1);
        return api_upload_prepare(r);
    default:
        return reply_error(r, API_NOT_FOUND, NULL);
    }
}

/* What a connection keeps across its requests (libmicrohttpd's socket context). */
struct conn_state {
    bool linger; /* a request was answered before its body was read */
};

/* Whether the request announces a body (a length above 0, or chunks). */
static bool announces_body(struct request *r)
{
    const char *cl = req_header(r, "Content-Length");
    uint64_t n = 0;
    if (cl != NULL && parse_u64(cl, strlen(cl), &n) && n > 0)
        return true;
    return req_header(r, "Transfer-Encoding") != NULL;
}

/* The request was answered with its body unread: libmicrohttpd closes the connection after
 * the answer, and it lingers then (acceptor_linger). */
static void mark_linger(struct request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_state *cs = ci != NULL ? ci->socket_context : NULL;
    if (cs != NULL)
        cs->linger = true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **req_cls)
{
    (void)version;
    struct server *srv = cls;
    struct request *r = *req_cls;
    if (r == NULL || r == (void *)ENCODED_SLASH) {
        bool encoded_slash = r != NULL;
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->encoded_slash = encoded_slash;
        r->srv = srv;
        r->conn = conn;
        r->method = method_of(method);
        r->sock_fd = -1;
        clock_gettime(CLOCK_MONOTONIC, &r->start);
        set_request_id(r);
        *req_cls = r;
        atomic_fetch_add(&srv->inflight, 1);
        enum MHD_Result ret = begin(r, url);
        if (r->responded && announces_body(r))
            mark_linger(r);
        return ret;
    }
    if (*data_size > 0) {
        size_t n = *data_size;
        *data_size = 0;
        if (!r->responded && r->body_err == STORE_OK) {
            if (r->on_body != NULL)
                r->body_err = r->on_body(r, data, n);
            else
                r->body_err = STORE_EINVAL;
        }
        r->received += n;
        return MHD_YES;
    }
    if (r->responded)
        return MHD_YES;
    if (r->on_body == NULL && r->received > 0)
        return reply_error(r, API_UNSUPPORTED, "this request takes no body");
    return r->on_done(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct server *srv = cls;
    struct request *r = *req_cls;
    if (r == NULL || r == (void *)ENCODED_SLASH) /* ended before the access handler */
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->succeeded)
        log_debug("request on %s %s ended early (%d)", route_label(r->route.kind), r->name,
                  (int)toe);
    api_upload_complete(r);
    uint64_t sent = 0;
    if (r->count_egress) {
        sent = r->egress_len;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            /* what the client acknowledged (headers included: a few hundred bytes) */
            uint64_t acked = xfer_acked(r->sock_fd) - r->acked_start;
            sent = acked < sent ? acked : sent;
        }
        xfer_add(srv->xfer, 'r', r->name, 0, sent, 0, 0);
        if (r->principal[0] != '\0')
            xfer_add(srv->xfer, 'u', r->principal, 0, sent, 0, 0);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double seconds = (double)(now.tv_sec - r->start.tv_sec) +
                     (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
    metrics_observe(srv->metrics, (int)r->method, r->route.kind, r->status, seconds);
    if (srv->access_log != NULL)
        access_log(srv, r, seconds, sent);
    authz_request_done(r);
    free(r->buf);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

/*
 * The request target as the client sent it, before libmicrohttpd decodes it (and the access
 * handler sees it): libmicrohttpd turns %2F into '/', so "/v2/a%2Fb/tags/list" would reach
 * the router as a second spelling of "a/b". RFC 3986 (2.2) says the two are different URIs,
 * and a proxy's rules by path prefix would see the one and not the other; no name in the
 * grammar needs escaping. What is returned becomes the request's *req_cls: the address
 * ENCODED_SLASH marks such a path, and on_request keeps the mark in the request it makes.
 */
static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    if (uri == NULL)
        return NULL;
    size_t path_len = strcspn(uri, "?");
    for (size_t i = 0; i + 2 < path_len; i++)
        if (uri[i] == '%' && uri[i + 1] == '2' && (uri[i + 2] == 'f' || uri[i + 2] == 'F'))
            return (void *)ENCODED_SLASH;
    return NULL;
}

static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return url_unescape(s);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(struct conn_state)); /* NULL: no lingering */
        return;
    }
    struct conn_state *cs = *socket_context;
    *socket_context = NULL;
    if (cs != NULL && cs->linger) {
        /* libmicrohttpd has shut our side and closes its descriptor after this call: a
         * duplicate keeps the socket open while the accept loop drains what is still coming */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = ci != NULL ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd != -1)
            acceptor_linger(srv, fd);
    }
    free(cs);
    acceptor_connection_closed(srv, c);
}


static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    /* malformed requests (TLS probes of plain HTTP, bad framing) are the client's problem */
    if (strncmp(line, "Error processing request", 24) == 0 ||
        strncmp(line, "Connection was closed by remote side", 36) == 0)
        log_debug("http: %s", line);
    else
        log_warn("http: %s", line);
}

/* ---- listening ---- */

static int split_host_port(const char *listen, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL)
        return -1;
    const char *h = listen;
    size_t hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= hcap || pl == 0 || pl >= pcap)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

static int bind_listen(const char *addr, unsigned *port_out)
{
    char host[256], port[16];
    if (split_host_port(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        log_error("--listen %s: expected HOST:PORT", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        log_error("--listen %s: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd == -1)
            continue;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd == -1) {
        log_error("--listen %s: cannot bind: %s", addr, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return -1;
    }
    char sport[16];
    if (getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, sport, sizeof(sport), NI_NUMERICSERV) !=
        0) {
        close(fd);
        return -1;
    }
    *port_out = (unsigned)strtoul(sport, NULL, 10);
    return fd;
}

/* Written to a temporary name and renamed, so a reader never sees a partial file. */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    int ok = fprintf(f, "%u\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Reads a whole PEM file (small) into a NUL-terminated OWNED string. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (buf != NULL) {
        len = fread(buf, 1, cap, f);
        if (ferror(f) || len == cap) {
            free(buf);
            buf = NULL;
        } else {
            buf[len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static int load_tls(struct server *srv)
{
    srv->tls_cert = read_pem(srv->cfg.tls_cert);
    srv->tls_key = read_pem(srv->cfg.tls_key);
    if (srv->tls_cert == NULL || srv->tls_key == NULL) {
        log_error("cannot read --tls-cert %s / --tls-key %s", srv->cfg.tls_cert,
                  srv->cfg.tls_key);
        return -1;
    }
    return 0;
}

unsigned server_port(const struct server *srv)
{
    return srv->port;
}

/* The admin listener: --admin-listen, or 127.0.0.1 on the API port + 1 (0 stays 0). */
static int start_admin(struct server *srv)
{
    char addr[64];
    const char *listen_addr = srv->cfg.admin_listen;
    if (listen_addr == NULL) {
        const char *colon = strrchr(srv->cfg.listen, ':');
        unsigned asked = colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", asked == 0 ? 0 : asked + 1);
        listen_addr = addr;
    }
    srv->admin_fd = bind_listen(listen_addr, &srv->admin_port);
    if (srv->admin_fd == -1)
        return -1;
    if (admin_start(srv, srv->admin_fd) != 0) {
        log_error("cannot start the admin listener");
        return -1;
    }
    if (srv->cfg.admin_port_file != NULL &&
        write_port_file(srv->cfg.admin_port_file, srv->admin_port) != 0) {
        log_error("cannot write admin port file %s: %s", srv->cfg.admin_port_file,
                  strerror(errno));
        return -1;
    }
    log_info("admin listener (/metrics, /healthz, /readyz, /admin/usage) on %s (port %u)",
             listen_addr, srv->admin_port);
    return 0;
}

static void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    gc_sched_stop(srv);
    acceptor_stop(srv);
    acceptor_free(srv); /* the API daemon is stopped by now (or never started) */
    if (srv->admin != NULL)
        MHD_stop_daemon(srv->admin); /* closes admin_fd */
    else if (srv->admin_fd != -1)
        close(srv->admin_fd);
    xfer_stop(srv->xfer);
    metrics_free(srv->metrics);
    if (srv->access_log != NULL && srv->access_log != stderr)
        fclose(srv->access_log);
    if (srv->listen_fd != -1)
        close(srv->listen_fd);
    upload_cache_free(srv->uploads);
    authz_free(srv);
    free(srv->tls_cert);
    if (srv->tls_key != NULL)
        explicit_bzero(srv->tls_key, strlen(srv->tls_key));
    free(srv->tls_key);
    index_close(srv->idx);
    blobstore_close(srv->bs);
    free(srv);
}

/* Appended to; created like the data it describes (who pulled what): nothing for others. */
static FILE *open_access_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, STORE_FILE_MODE);
    FILE *f = fd != -1 ? fdopen(fd, "a") : NULL;
    if (f == NULL && fd != -1)
        close(fd);
    return f;
}

int server_start(struct server **out, const struct server_config *cfg)
{
    struct server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -1;
    srv->cfg = *cfg;
    srv->listen_fd = -1;
    srv->admin_fd = -1;
    atomic_init(&srv->inflight, 0);
    enum store_err rc = blobstore_open(&srv->bs, cfg->root);
    if (rc != STORE_OK) {
        log_error("cannot open storage under %s: %s (%s)", cfg->root, store_strerror(rc),
                  strerror(errno));
        goto fail;
    }
    char idxdir[4096];
    int n = snprintf(idxdir, sizeof(idxdir), "%s/index", cfg->root);
    if (n < 0 || (size_t)n >= sizeof(idxdir)) {
        log_error("storage root path too long");
        goto fail;
    }
    rc = index_open(&srv->idx, idxdir, cfg->map_size);
    if (rc != STORE_OK) {
        log_error("cannot open index %s: %s (%s)", idxdir, store_strerror(rc), strerror(errno));
        goto fail;
    }
    uint64_t orphans = 0;
    if (gc_sweep_orphans(srv->idx, srv->bs, &orphans) == STORE_OK && orphans > 0)
        log_info("removed %llu blob files a crash left without a record",
                 (unsigned long long)orphans);
    /* a session is in use by one request at most: the connections bound them */
    if (upload_cache_new(&srv->uploads, cfg->max_connections + 64) != STORE_OK ||
        authz_init(srv) != STORE_OK)
        goto fail;
    if (cfg->access_log != NULL) {
        srv->access_log =
            strcmp(cfg->access_log, "-") == 0 ? stderr : open_access_log(cfg->access_log);
        if (srv->access_log == NULL) {
            log_error("cannot open --access-log %s: %s", cfg->access_log, strerror(errno));
            goto fail;
        }
        setvbuf(srv->access_log, NULL, _IOLBF, 0);
    }
    srv->metrics = metrics_new();
    if (srv->metrics == NULL || xfer_start(&srv->xfer, srv->idx) != 0)
        goto fail;
    if (cfg->tls_cert != NULL && load_tls(srv) != 0)
        goto fail;
    srv->listen_fd = bind_listen(cfg->listen, &srv->port);
    if (srv->listen_fd == -1)
        goto fail;
    /* poll, not epoll: libmicrohttpd 0.9.75's epoll mode misses a peer's close that follows
     * its data at once, leaving the connection open until the idle timeout */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (srv->tls_cert != NULL ? MHD_USE_TLS : 0);
    /* A thread per connection by default: libmicrohttpd then sends a file in 2 MiB sendfile
     * calls instead of the pool's 128 KiB, each followed by a poll, which held a blob GET
     * at ~80% of what nginx sends over the same loopback. --threads N chooses a pool of N. */
    unsigned threads = cfg->threads;
    if (threads == 0)
        flags |= MHD_USE_THREAD_PER_CONNECTION;
    /* plain HTTP: our accept loop hands connections over (acceptor.c); TLS: the daemon's */
    bool own_accept = srv->tls_cert == NULL;
    if (own_accept)
        flags |= MHD_USE_NO_LISTEN_SOCKET;
    struct MHD_OptionItem more_opts[6];
    size_t nopt = 0;
    if (threads != 0)
        more_opts[nopt++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    /* our accept loop answers the connection over the limit with a 503 itself (acceptor.c);
     * libmicrohttpd, accepting for TLS, closes it */
    more_opts[nopt++] = (struct MHD_OptionItem){
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections + (own_accept ? 64u : 0u), NULL};
    if (!own_accept) { /* with TLS the daemon accepts on our socket itself */
        more_opts[nopt++] =
            (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, srv->listen_fd, NULL};
        more_opts[nopt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
        more_opts[nopt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
    }
    more_opts[nopt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_URI_LOG_CALLBACK, uri_seen, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->conn_timeout, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        own_accept ? 0u : cfg->per_ip_limit, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_ARRAY, more_opts, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        log_error("cannot start the HTTP daemon");
        goto fail;
    }
    /* the admin threads read srv->gc: it is set before they start */
    if ((own_accept && acceptor_start(srv, srv->listen_fd) != 0) || gc_sched_start(srv) != 0 ||
        start_admin(srv) != 0) {
        acceptor_stop(srv);
        MHD_stop_daemon(srv->daemon);
        if (!own_accept)
            srv->listen_fd = -1; /* the daemon closed it */
        goto fail;
    }
    if (cfg->port_file != NULL && write_port_file(cfg->port_file, srv->port) != 0) {
        log_error("cannot write port file %s: %s", cfg->port_file, strerror(errno));
        MHD_stop_daemon(srv->daemon);
        goto fail;
    }
    if (threads == 0)
        log_info("listening on %s (port %u), storage %s, a thread per connection", cfg->listen,
                 srv->port, cfg->root);
    else
        log_info("listening on %s (port %u), storage %s, %u threads", cfg->listen, srv->port,
                 cfg->root, threads);
    *out = srv;
    return 0;
fail:
    server_free(srv);
    return -1;
}

void server_stop(struct server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stopping, true);
    if (srv->acceptor != NULL) {
        acceptor_stop(srv);
        close(srv->listen_fd);
        srv->listen_fd = -1;
    } else {
        MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);
        if (lfd != MHD_INVALID_SOCKET && lfd == srv->listen_fd) {
            close(srv->listen_fd);
            srv->listen_fd = -1;
        }
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (atomic_load(&srv->inflight) > 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)srv->cfg.shutdown_grace) {
            log_warn("shutdown: %d requests still running after %u s, closing them",
                     atomic_load(&srv->inflight), srv->cfg.shutdown_grace);
            break;
        }
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    srv->listen_fd = -1; /* closed above, or by the daemon when quiescing failed */
    server_free(srv);
    log_info("stopped");
}
