/*
 * The admin listener (loopback by default): /metrics (Prometheus text format), /healthz,
 * /readyz and /admin/usage (JSON for billing scripts). Separate from the API listener so
 * neither auth nor a public proxy ever sits in front of it by accident.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"
#include "server/usage.h"

#define USAGE_PAGE_DEFAULT 100
#define USAGE_PAGE_MAX 1000

static enum MHD_Result admin_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                                   char *body, size_t len, const char *link)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (link != NULL)
        MHD_add_response_header(resp, "Link", link);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A text answer with one extra header (hname NULL: none). */
static enum MHD_Result admin_text_with(struct MHD_Connection *c, unsigned status,
                                       const char *text, const char *hname, const char *hvalue)
{
    char *copy = strdup(text);
    struct MHD_Response *resp =
        copy != NULL ? MHD_create_response_from_buffer(strlen(copy), copy, MHD_RESPMEM_MUST_FREE)
                     : NULL;
    if (resp == NULL) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (hname != NULL)
        MHD_add_response_header(resp, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result admin_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return admin_text_with(c, status, text, NULL, NULL);
}

struct repo_series {
    struct mbuf *b;
    size_t n, max;
    bool truncated;
    int pass; /* which metric family this pass writes */
};

static int repo_line(const char *name, const struct index_usage *u, void *arg)
{
    struct repo_series *rs = arg;
    if (rs->n == rs->max) {
        rs->truncated = true;
        return 1;
    }
    rs->n++;
    switch (rs->pass) {
    case 0:
        mbuf_printf(rs->b, "ocireg_repo_stored_bytes{repository=\"%s\"} %llu\n", name,
                    (unsigned long long)u->stored_bytes);
        break;
    case 1:
        mbuf_printf(rs->b,
                    "ocireg_repo_transfer_bytes_total{repository=\"%s\",direction=\"ingress\"} "
                    "%llu\nocireg_repo_transfer_bytes_total{repository=\"%s\",direction="
                    "\"egress\"} %llu\n",
                    name, (unsigned long long)u->ingress_bytes, name,
                    (unsigned long long)u->egress_bytes);
        break;
    case 2:
        mbuf_printf(rs->b, "ocireg_repo_pulls_total{repository=\"%s\"} %llu\n", name,
                    (unsigned long long)u->pulls);
        break;
    default:
        mbuf_printf(rs->b, "ocireg_repo_pushes_total{repository=\"%s\"} %llu\n", name,
                    (unsigned long long)u->pushes);
        break;
    }
    return 0;
}

static enum MHD_Result admin_metrics(struct server *srv, struct MHD_Connection *c)
{
    struct mbuf b = {NULL, 0, 0, false};
    metrics_write(srv->metrics, &b);
    struct index_totals t = {0, 0, 0};
    (void)index_totals_get(srv->idx, &t);
    uint64_t up_n = 0, up_bytes = 0;
    (void)blobstore_uploads_stat(srv->bs, &up_n, &up_bytes);
    mbuf_printf(&b,
                "# HELP ocireg_build_info The running ocireg: version, commit, index schema.\n"
                "# TYPE ocireg_build_info gauge\n"
                "ocireg_build_info{version=\"%s\",commit=\"%s\",schema=\"%u\"} 1\n",
                OCIREG_VERSION, OCIREG_COMMIT, index_schema_version());
    mbuf_printf(&b,
                "# HELP ocireg_storage_physical_bytes Bytes of blobs and manifests stored, each "
                "counted once.\n# TYPE ocireg_storage_physical_bytes gauge\n"
                "ocireg_storage_physical_bytes %llu\n"
                "# HELP ocireg_blobs Distinct blobs stored.\n# TYPE ocireg_blobs gauge\n"
                "ocireg_blobs %llu\n"
                "# HELP ocireg_manifests Distinct manifests stored.\n"
                "# TYPE ocireg_manifests gauge\nocireg_manifests %llu\n"
                "# HELP ocireg_uploads_in_progress Open upload sessions.\n"
                "# TYPE ocireg_uploads_in_progress gauge\nocireg_uploads_in_progress %llu\n"
                "# HELP ocireg_uploads_in_progress_bytes Bytes received by open upload sessions.\n"
                "# TYPE ocireg_uploads_in_progress_bytes gauge\n"
                "ocireg_uploads_in_progress_bytes %llu\n",
                (unsigned long long)t.physical_bytes, (unsigned long long)t.blobs,
                (unsigned long long)t.manifests, (unsigned long long)up_n,
                (unsigned long long)up_bytes);
    static const char *const families[] = {
        "# HELP ocireg_repo_stored_bytes Bytes a repository references (distinct blobs and "
        "manifests).\n# TYPE ocireg_repo_stored_bytes gauge\n",
        "# HELP ocireg_repo_transfer_bytes_total Bytes received (ingress) and sent (egress) for "
        "a repository.\n# TYPE ocireg_repo_transfer_bytes_total counter\n",
        "# HELP ocireg_repo_pulls_total Manifest GETs of a repository.\n"
        "# TYPE ocireg_repo_pulls_total counter\n",
        "# HELP ocireg_repo_pushes_total Manifest PUTs to a repository.\n"
        "# TYPE ocireg_repo_pushes_total counter\n",
    };
    gc_sched_metrics(srv, &b);
    bool truncated = false;
    for (int pass = 0; pass < 4; pass++) {
        struct repo_series rs = {&b, 0, srv->cfg.metrics_max_repos, false, pass};
        bool more;
        mbuf_printf(&b, "%s", families[pass]);
        (void)index_usage_list(srv->idx, 'r', NULL, srv->cfg.metrics_max_repos + 1, repo_line,
                               &rs, &more);
        truncated = truncated || rs.truncated;
    }
    mbuf_printf(&b,
                "# HELP ocireg_repo_series_truncated 1 when repositories beyond "
                "--metrics-max-repos were left out.\n# TYPE ocireg_repo_series_truncated gauge\n"
                "ocireg_repo_series_truncated %d\n",
                truncated ? 1 : 0);
    if (b.failed) {
        free(b.p);
        return admin_text(c, 500, "out of memory\n");
    }
    return admin_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, NULL);
}

static json_t *usage_json(struct server *srv, const char *name, const struct index_usage *u)
{
    uint64_t exclusive = 0;
    (void)index_exclusive_bytes(srv->idx, name, &exclusive);
    uint64_t quota = u->quota;
    if (quota == 0)
        (void)index_quota_default(srv->idx, &quota);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "repository", name,
                     "stored_bytes", (json_int_t)u->stored_bytes, "exclusive_bytes",
                     (json_int_t)exclusive, "ingress_bytes", (json_int_t)u->ingress_bytes,
                     "egress_bytes", (json_int_t)u->egress_bytes, "pulls", (json_int_t)u->pulls,
                     "pushes", (json_int_t)u->pushes, "quota_bytes", (json_int_t)quota);
}

struct usage_page {
    struct server *srv;
    json_t *arr;
    char last[NAME_MAX_LEN + 1];
};

static int usage_one(const char *name, const struct index_usage *u, void *arg)
{
    struct usage_page *p = arg;
    json_array_append_new(p->arr, usage_json(p->srv, name, u));
    snprintf(p->last, sizeof(p->last), "%s", name);
    return 0;
}

static int user_one(const char *name, const struct index_usage *u, void *arg)
{
    json_array_append_new(arg, json_pack("{s:s, s:I, s:I, s:I, s:I}", "user", name,
                                         "ingress_bytes", (json_int_t)u->ingress_bytes,
                                         "egress_bytes", (json_int_t)u->egress_bytes, "pulls",
                                         (json_int_t)u->pulls, "pushes", (json_int_t)u->pushes));
    return 0;
}

/* /admin/usage?users: the transfer figures per authenticated user. */
static enum MHD_Result admin_usage_users(struct server *srv, struct MHD_Connection *c)
{
    json_t *arr = json_array();
    bool more;
    (void)index_usage_list(srv->idx, 'u', NULL, SIZE_MAX, user_one, arr, &more);
    json_t *body = json_pack("{s:o}", "users", arr);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return admin_text(c, 500, "out of memory\n");
    return admin_reply(c, 200, "application/json", text, strlen(text), NULL);
}

static enum MHD_Result has_users_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    if (strcmp(key, "users") == 0)
        *(bool *)cls = true;
    return MHD_YES;
}

static enum MHD_Result admin_usage(struct server *srv, struct MHD_Connection *c)
{
    bool users = false; /* "?users" has no value: look for the key itself */
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, has_users_arg, &users);
    if (users)
        return admin_usage_users(srv, c);
    const char *repo = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "repository");
    const char *ns = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "n");
    const char *last = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "last");
    uint64_t n = USAGE_PAGE_DEFAULT;
    if (ns != NULL && (!parse_u64(ns, strlen(ns), &n) || n == 0))
        return admin_text(c, 400, "n must be a positive number\n");
    if (n > USAGE_PAGE_MAX)
        n = USAGE_PAGE_MAX;
    if ((repo != NULL && !name_valid(repo, strlen(repo))) ||
        (last != NULL && !name_valid(last, strlen(last))))
        return admin_text(c, 400, "invalid repository name\n");
    struct usage_page p = {srv, json_array(), ""};
    bool more = false;
    if (repo != NULL) {
        struct index_usage u;
        if (index_usage_get(srv->idx, 'r', repo, &u) == STORE_OK)
            json_array_append_new(p.arr, usage_json(srv, repo, &u));
    } else {
        (void)index_usage_list(srv->idx, 'r', last, (size_t)n, usage_one, &p, &more);
    }
    struct index_totals t = {0, 0, 0};
    (void)index_totals_get(srv->idx, &t);
    json_t *body = json_pack("{s:o, s:{s:I, s:I, s:I}}", "repositories", p.arr, "registry",
                             "physical_bytes", (json_int_t)t.physical_bytes, "blobs",
                             (json_int_t)t.blobs, "manifests", (json_int_t)t.manifests);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return admin_text(c, 500, "out of memory\n");
    char link[NAME_MAX_LEN + 64];
    if (more)
        snprintf(link, sizeof(link), "</admin/usage?n=%llu&last=%s>; rel=\"next\"",
                 (unsigned long long)n, p.last);
    return admin_reply(c, 200, "application/json", text, strlen(text), more ? link : NULL);
}

static bool from_loopback(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

/*
 * With auth on, everything but the probes (and /metrics with --metrics-public) needs the
 * Basic credentials of an administrator: a user holding every action on "*". Returns true
 * to go on; false after queueing the refusal in *ret.
 */
static bool admin_authorized(struct server *srv, struct MHD_Connection *c, const char *url,
                             enum MHD_Result *ret)
{
    if (srv->cfg.auth == AUTH_MODE_NONE || strcmp(url, "/healthz") == 0 ||
        strcmp(url, "/readyz") == 0 || (srv->cfg.metrics_public && strcmp(url, "/metrics") == 0))
        return true;
    const char *hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    char who[AUTH_NAME_MAX + 1] = "";
    unsigned retry = 0;
    enum cred_result cr = hdr != NULL ? authz_basic(srv, c, hdr, who, sizeof(who), &retry)
                                      : CRED_DENIED;
    if (cr == CRED_THROTTLED) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%u", retry > 0 ? retry : 1);
        *ret = admin_text_with(c, 429, "too many failed logins from this address\n",
                               "Retry-After", secs);
        return false;
    }
    if (cr != CRED_OK) {
        *ret = admin_text_with(c, 401, "credentials of an administrator required\n",
                               "WWW-Authenticate", "Basic realm=\"ocireg-admin\"");
        return false;
    }
    if (!auth_user_is_admin(srv->idx, who)) {
        log_info("admin: %s refused: no grant of every action on '*'", who);
        *ret = admin_text(c, 403, "the admin listener needs a grant of every action on '*'\n");
        return false;
    }
    return true;
}

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *data,
                                size_t *data_size, void **req_cls)
{
    (void)version;
    (void)data;
    struct server *srv = cls;
    if (*req_cls == NULL) {
        *req_cls = (void *)1; /* headers seen; answer on the next call */
        return MHD_YES;
    }
    if (*data_size != 0) {
        *data_size = 0;
        return MHD_YES;
    }
    enum MHD_Result denied;
    if (!admin_authorized(srv, c, url, &denied))
        return denied;
    static const char repos[] = "/admin/repositories/";
    if (strncmp(url, repos, sizeof(repos) - 1) == 0) {
        const char *name = url + sizeof(repos) - 1;
        if (strcmp(method, "DELETE") != 0)
            return admin_text(c, 405, "method not allowed\n");
        if (!srv->cfg.admin_writes)
            return admin_text(c, 403, "changes through the admin listener are off "
                                      "(serve --admin-writes turns them on)\n");
        /* without auth, the admin listener may be opened to the network for probes:
         * changes come only from this host */
        if (srv->cfg.auth == AUTH_MODE_NONE && !from_loopback(c))
            return admin_text(c, 403, "without --auth, repository deletion is allowed from "
                                      "loopback only\n");
        if (!name_valid(name, strlen(name)))
            return admin_text(c, 400, "invalid repository name\n");
        enum store_err rc = index_repo_delete(srv->idx, name);
        if (rc == STORE_ENOENT)
            return admin_text(c, 404, "no such repository\n");
        if (rc != STORE_OK)
            return admin_text(c, 500, store_strerror(rc));
        log_info("admin: repository %s deleted", name);
        return admin_text(c, 200, "deleted\n");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return admin_text(c, 405, "method not allowed\n");
    if (strcmp(url, "/healthz") == 0)
        return admin_text(c, 200, "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        struct index_totals t;
        /* ready: not stopping, the index takes writes, the storage takes a file */
        bool ready = !atomic_load(&srv->stopping) && index_totals_get(srv->idx, &t) == STORE_OK &&
                     index_probe_write(srv->idx) == STORE_OK &&
                     blobstore_probe_write(srv->bs) == STORE_OK;
        return admin_text(c, ready ? 200 : 503, ready ? "ready\n" : "not ready\n");
    }
    if (strcmp(url, "/metrics") == 0)
        return admin_metrics(srv, c);
    if (strcmp(url, "/admin/usage") == 0)
        return admin_usage(srv, c);
    return admin_text(c, 404, "not found\n");
}

int admin_start(struct server *srv, int fd)
{
    srv->admin = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_admin, srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
    return srv->admin != NULL ? 0 : -1;
}
