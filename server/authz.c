/*
 * Access control: who is asking (Basic credentials or a bearer token), what the request needs
 * (pull, push or delete on its repository, or the catalog), the 401 challenge, and the
 * Docker token endpoint at /auth/token.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"

#define TOKEN_FORM_MAX 8192
#define MAX_SCOPES 32

enum store_err authz_init(struct server *srv)
{
    if (srv->cfg.auth == AUTH_MODE_NONE)
        return STORE_OK;
    char keydir[4096];
    int n = snprintf(keydir, sizeof(keydir), "%s/keys", srv->cfg.root);
    if (n < 0 || (size_t)n >= sizeof(keydir))
        return STORE_EINVAL;
    enum auth_err rc = auth_keys_open(&srv->keys, keydir);
    if (rc != AUTH_OK) {
        log_error("cannot open the token signing key under %s: %s", keydir, auth_strerror(rc));
        return STORE_EIO;
    }
    if (srv->cfg.ext_issuer != NULL) {
        rc = auth_keys_trust(srv->keys, srv->cfg.ext_issuer, srv->cfg.ext_public_key);
        if (rc != AUTH_OK) {
            log_error("cannot load --token-public-key %s: %s (RS256 or ES256 PEM expected)",
                      srv->cfg.ext_public_key, auth_strerror(rc));
            return STORE_EINVAL;
        }
    }
    return creds_init(srv);
}

void authz_free(struct server *srv)
{
    auth_keys_close(srv->keys);
    srv->keys = NULL;
    creds_free(srv);
}

void authz_request_done(struct request *r)
{
    if (r->has_claims)
        auth_claims_free(&r->claims);
    r->has_claims = false;
    auth_grants_free(r->grants);
    r->grants = NULL;
}

/* ---- the challenge ---- */

/* scheme://host of this registry as the client reached it, for the token realm. */
static void public_base(struct request *r, char *buf, size_t cap)
{
    const struct server_config *cfg = &r->srv->cfg;
    if (cfg->public_url != NULL) {
        snprintf(buf, cap, "%s", cfg->public_url);
        size_t n = strlen(buf);
        while (n > 0 && buf[n - 1] == '/')
            buf[--n] = '\0';
        return;
    }
    const char *host = req_header(r, "Host");
    bool host_ok = host != NULL && host[0] != '\0' && strlen(host) < 256;
    for (const char *p = host; host_ok && *p; p++)
        host_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr(".-:[]", *p) != NULL;
    snprintf(buf, cap, "%s://%s", cfg->tls_cert != NULL ? "https" : "http",
             host_ok ? host : "127.0.0.1");
}

static const char *scope_actions(unsigned need)
{
    if (need & AUTH_DELETE)
        return "delete";
    if (need & AUTH_PUSH)
        return "pull,push";
    return "pull";
}

/* 401 with the challenge of the mode. scope may be NULL; error is the Bearer error or NULL. */
static enum MHD_Result challenge(struct request *r, const char *scope, const char *error,
                                 const char *detail)
{
    char value[1024];
    if (r->srv->cfg.auth == AUTH_MODE_BASIC) {
        snprintf(value, sizeof(value), "Basic realm=\"ocireg\"");
    } else {
        char base[300];
        public_base(r, base, sizeof(base));
        int n = snprintf(value, sizeof(value), "Bearer realm=\"%s/auth/token\",service=\"%s\"",
                         base, r->srv->cfg.service);
        if (n > 0 && scope != NULL && (size_t)n < sizeof(value))
            n += snprintf(value + n, sizeof(value) - (size_t)n, ",scope=\"%s\"", scope);
        if (n > 0 && error != NULL && (size_t)n < sizeof(value))
            snprintf(value + n, sizeof(value) - (size_t)n, ",error=\"%s\"", error);
    }
    struct MHD_Response *resp = resp_error(r, API_UNAUTHORIZED, detail);
    if (resp != NULL)
        resp_header(resp, "WWW-Authenticate", value);
    return reply(r, api_err_status(API_UNAUTHORIZED), resp);
}

/* What the routed request needs: actions on r->name, or the catalog. */
static unsigned needed_actions(const struct request *r)
{
    switch (r->route.kind) {
    case ROUTE_MANIFEST:
        if (r->method == M_PUT)
            return AUTH_PUSH;
        return r->method == M_DELETE ? AUTH_DELETE : AUTH_PULL;
    case ROUTE_BLOB:
        return r->method == M_DELETE ? AUTH_DELETE : AUTH_PULL;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        return AUTH_PUSH;
    case ROUTE_TAGS:
    case ROUTE_REFERRERS:
        return AUTH_PULL;
    default:
        return 0;
    }
}

bool authz_can(struct request *r, const char *repo, unsigned action)
{
    switch (r->srv->cfg.auth) {
    case AUTH_MODE_NONE:
        return true;
    case AUTH_MODE_BASIC:
        return (auth_allowed(r->srv->idx, r->principal[0] ? r->principal : NULL, repo) & action) ==
               action;
    case AUTH_MODE_TOKEN:
        return r->has_claims && (auth_claims_allowed(&r->claims, repo) & action) == action;
    }
    return false;
}

bool authz_check(struct request *r, enum MHD_Result *ret)
{
    struct server *srv = r->srv;
    if (srv->cfg.auth == AUTH_MODE_NONE || r->route.kind == ROUTE_TOKEN)
        return true;
    const char *hdr = req_header(r, "Authorization");
    bool catalog = r->route.kind == ROUTE_CATALOG;
    unsigned need = needed_actions(r);
    char scope[NAME_MAX_LEN + 64];
    if (catalog)
        snprintf(scope, sizeof(scope), "registry:catalog:*");
    else
        snprintf(scope, sizeof(scope), "repository:%s:%s", r->name, scope_actions(need));
    bool has_scope = catalog || need != 0;

    if (srv->cfg.auth == AUTH_MODE_BASIC) {
        bool given = hdr != NULL;
        if (given) {
            unsigned retry = 0;
            enum cred_result cr = authz_basic(srv, r->conn, hdr, r->principal,
                                              sizeof(r->principal), &retry);
            if (cr == CRED_THROTTLED) {
                *ret = reply_throttled(r, retry);
                return false;
            }
            if (cr != CRED_OK) {
                *ret = challenge(r, NULL, NULL, "invalid username or password");
                return false;
            }
        } else if (r->route.kind == ROUTE_BASE) {
            *ret = challenge(r, NULL, NULL, NULL);
            return false;
        }
        const char *who = r->principal[0] ? r->principal : NULL;
        /* a signed-in user without pull on "*" sees the repositories it may pull */
        bool ok = catalog ? given || auth_catalog_allowed(srv->idx, who)
                          : (auth_allowed(srv->idx, who, r->name) & need) == need;
        if (ok)
            return true;
        if (!given) {
            *ret = challenge(r, NULL, NULL, NULL);
            return false;
        }
        *ret = reply_error(r, API_DENIED, NULL);
        return false;
    }

    /* token mode */
    if (hdr == NULL || strncasecmp(hdr, "Bearer ", 7) != 0) {
        *ret = challenge(r, has_scope ? scope : NULL, NULL, NULL);
        return false;
    }
    const char *tok = hdr + 7;
    while (*tok == ' ')
        tok++;
    enum auth_err rc = auth_token_verify(srv->keys, tok, srv->cfg.issuer, srv->cfg.service,
                                         (uint64_t)time(NULL), &r->claims);
    if (rc == AUTH_OK && r->claims.kind != AUTH_TOKEN_ACCESS) {
        auth_claims_free(&r->claims);
        rc = AUTH_EDENIED;
    }
    /* ours, for a user: worth nothing once that account is gone, replaced or revoked */
    if (rc == AUTH_OK && !r->claims.external && r->claims.subject[0] != '\0' &&
        !auth_user_current(srv->idx, r->claims.subject, r->claims.account,
                           r->claims.generation)) {
        auth_claims_free(&r->claims);
        rc = AUTH_EDENIED;
    }
    if (rc != AUTH_OK) {
        *ret = challenge(r, has_scope ? scope : NULL, "invalid_token",
                         rc == AUTH_EEXPIRED ? "token expired" : "invalid token");
        return false;
    }
    r->has_claims = true;
    snprintf(r->principal, sizeof(r->principal), "%s", r->claims.subject);
    bool ok = catalog ? auth_claims_catalog(&r->claims)
                      : (auth_claims_allowed(&r->claims, r->name) & need) == need;
    if (!ok) {
        *ret = challenge(r, scope, "insufficient_scope", "token does not grant this action");
        return false;
    }
    /*
     * A mount also needs pull on from. A token that never asked for from gets a challenge
     * naming both scopes; one that asked and was refused just gets an ordinary upload.
     */
    const char *from = r->route.kind == ROUTE_UPLOAD_START && req_arg(r, "mount") != NULL
                           ? req_arg(r, "from")
                           : NULL;
    if (from != NULL && name_valid(from, strlen(from)) &&
        !auth_claims_mentions(&r->claims, from)) {
        char both[2 * NAME_MAX_LEN + 64];
        snprintf(both, sizeof(both), "%s repository:%s:pull", scope, from);
        *ret = challenge(r, both, "insufficient_scope", "a mount needs pull on its source");
        return false;
    }
    return true;
}

enum cred_result authz_basic(struct server *srv, struct MHD_Connection *conn, const char *hdr,
                             char *principal, size_t cap, unsigned *retry_after)
{
    char name[AUTH_NAME_MAX + 1], password[AUTH_TOKEN_MAX];
    struct auth_user u;
    enum cred_result cr = CRED_DENIED;
    if (creds_parse_basic(hdr, name, sizeof(name), password, sizeof(password)))
        cr = creds_check(srv, conn, name, password, &u, retry_after);
    sodium_memzero(password, sizeof(password));
    if (cr == CRED_OK)
        snprintf(principal, cap, "%s", u.name);
    return cr;
}

enum MHD_Result reply_throttled(struct request *r, unsigned retry_after)
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%u", retry_after > 0 ? retry_after : 1);
    struct MHD_Response *resp =
        resp_error(r, API_TOOMANYREQUESTS, "too many failed logins from this address");
    if (resp != NULL)
        resp_header(resp, "Retry-After", secs);
    return reply(r, api_err_status(API_TOOMANYREQUESTS), resp);
}

enum store_err authz_catalog_begin(struct request *r, bool *all)
{
    struct server *srv = r->srv;
    *all = true;
    if (srv->cfg.auth == AUTH_MODE_NONE)
        return STORE_OK;
    if (r->has_claims && r->claims.external)
        return STORE_OK; /* authz_check saw its issuer grant the catalog */
    const char *who = r->principal[0] ? r->principal : NULL;
    if (auth_grants_load(srv->idx, who, &r->grants) != AUTH_OK)
        return STORE_ENOMEM;
    *all = auth_grants_catalog(r->grants);
    return STORE_OK;
}

bool authz_catalog_shows(struct request *r, const char *repo)
{
    return r->grants != NULL && (auth_grants_allowed(r->grants, repo) & AUTH_PULL) != 0;
}

/* ---- the token endpoint ---- */

struct token_params {
    const char *service;
    const char *scopes[MAX_SCOPES];
    size_t nscopes;
    bool offline;
    const char *grant_type;
    const char *username;
    const char *password;
    const char *refresh_token;
};

/* "repository:NAME:ACTIONS" or "registry:catalog:*" into a requested access entry. */
static bool parse_scope(const char *scope, struct auth_access *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(scope, "registry:catalog:*") == 0) {
        out->catalog = true;
        return true;
    }
    if (strncmp(scope, "repository:", 11) != 0)
        return false;
    const char *name = scope + 11;
    const char *colon = strrchr(name, ':');
    if (colon == NULL || (size_t)(colon - name) > NAME_MAX_LEN)
        return false;
    size_t nl = (size_t)(colon - name);
    if (!name_valid(name, nl))
        return false;
    memcpy(out->name, name, nl);
    out->name[nl] = '\0';
    unsigned m = 0;
    char acts[64];
    snprintf(acts, sizeof(acts), "%s", colon + 1);
    /* unknown actions are simply not granted */
    for (char *save = NULL, *a = strtok_r(acts, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        unsigned one;
        if (auth_actions_parse(a, &one))
            m |= one;
    }
    out->actions = m;
    return true;
}

/* An OAuth2-style error; retry_after (seconds) only for 429. */
static enum MHD_Result token_error_after(struct request *r, unsigned status, const char *err,
                                         const char *desc, unsigned retry_after)
{
    const char *code = status == 401   ? "UNAUTHORIZED"
                       : status == 429 ? "TOOMANYREQUESTS"
                                       : "DENIED";
    json_t *body = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "error", err, "error_description",
                             desc, "errors", "code", code, "message", desc);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
             : resp_empty();
    if (resp == NULL)
        free(text);
    if (resp != NULL) {
        resp_header(resp, "Content-Type", "application/json");
        if (status == 401)
            resp_header(resp, "WWW-Authenticate", "Basic realm=\"ocireg\"");
        if (status == 429) {
            char secs[16];
            snprintf(secs, sizeof(secs), "%u", retry_after > 0 ? retry_after : 1);
            resp_header(resp, "Retry-After", secs);
        }
    }
    return reply(r, status, resp);
}

static enum MHD_Result token_error(struct request *r, unsigned status, const char *err,
                                   const char *desc)
{
    return token_error_after(r, status, err, desc, 0);
}

/* Tokens for user u (NULL: anonymous). */
static enum MHD_Result issue_tokens(struct request *r, const struct token_params *p,
                                    const struct auth_user *u)
{
    struct server *srv = r->srv;
    struct auth_access granted[MAX_SCOPES];
    size_t n = 0;
    const char *subject = u != NULL ? u->name : "";
    const char *who = u != NULL ? u->name : NULL;
    uint32_t generation = u != NULL ? u->generation : 0;
    uint64_t account = u != NULL ? u->account : 0;
    for (size_t i = 0; i < p->nscopes; i++) {
        /* docker may put several space-separated scopes in one parameter */
        char buf[NAME_MAX_LEN + 64 + 1];
        snprintf(buf, sizeof(buf), "%s", p->scopes[i]);
        for (char *save = NULL, *sc = strtok_r(buf, " ", &save); sc && n < MAX_SCOPES;
             sc = strtok_r(NULL, " ", &save)) {
            struct auth_access a;
            if (!parse_scope(sc, &a))
                continue;
            if (a.catalog) {
                /* a user sees the part of the catalog it may pull (authz_catalog_begin) */
                if (who != NULL || auth_catalog_allowed(srv->idx, who))
                    granted[n++] = a;
                continue;
            }
            /* a refused scope stays in, with no actions: the client learns it was asked */
            a.actions &= auth_allowed(srv->idx, who, a.name);
            granted[n++] = a;
        }
    }
    uint64_t now = (uint64_t)time(NULL);
    struct auth_token_req tr = {AUTH_TOKEN_ACCESS, srv->cfg.issuer, srv->cfg.service, subject,
                                generation, granted, n, now, srv->cfg.token_ttl, account};
    char *access = NULL, *refresh = NULL;
    if (auth_token_issue(srv->keys, &tr, &access) != AUTH_OK)
        return reply_store_error(r, STORE_ENOMEM, "token issue");
    if (p->offline && subject[0] != '\0') {
        struct auth_token_req rr = {AUTH_TOKEN_REFRESH, srv->cfg.issuer, srv->cfg.service,
                                    subject, generation, NULL, 0, now, srv->cfg.refresh_ttl,
                                    account};
        if (auth_token_issue(srv->keys, &rr, &refresh) != AUTH_OK) {
            free(access);
            return reply_store_error(r, STORE_ENOMEM, "token issue");
        }
    }
    char issued[32];
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(issued, sizeof(issued), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *body = json_pack("{s:s, s:s, s:I, s:s}", "token", access, "access_token", access,
                             "expires_in", (json_int_t)srv->cfg.token_ttl, "issued_at", issued);
    if (body != NULL && refresh != NULL)
        json_object_set_new(body, "refresh_token", json_string(refresh));
    free(access);
    free(refresh);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return reply_store_error(r, STORE_ENOMEM, "token response");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return reply_store_error(r, STORE_ENOMEM, "token response");
    }
    resp_header(resp, "Content-Type", "application/json");
    resp_header(resp, "Cache-Control", "no-store");
    r->succeeded = true;
    log_info("token: issued to %s for %zu scope(s)", subject[0] ? subject : "(anonymous)", n);
    return reply(r, MHD_HTTP_OK, resp);
}

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    struct token_params *p = cls;
    if (value == NULL)
        return MHD_YES;
    if (strcmp(key, "scope") == 0 && p->nscopes < MAX_SCOPES)
        p->scopes[p->nscopes++] = value;
    else if (strcmp(key, "service") == 0)
        p->service = value;
    else if (strcmp(key, "offline_token") == 0)
        p->offline = strcmp(value, "true") == 0;
    else if (strcmp(key, "access_type") == 0)
        p->offline = p->offline || strcmp(value, "offline") == 0;
    else if (strcmp(key, "grant_type") == 0)
        p->grant_type = value;
    else if (strcmp(key, "username") == 0)
        p->username = value;
    else if (strcmp(key, "password") == 0)
        p->password = value;
    else if (strcmp(key, "refresh_token") == 0)
        p->refresh_token = value;
    return MHD_YES;
}

/* Splits an application/x-www-form-urlencoded body in place into params. */
static void parse_form(char *body, struct token_params *p)
{
    for (char *save = NULL, *kv = strtok_r(body, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        for (char *c = eq + 1; *c; c++)
            if (*c == '+')
                *c = ' ';
        url_unescape(kv);
        url_unescape(eq + 1);
        collect_param(p, MHD_POSTDATA_KIND, kv, eq + 1);
    }
}

static enum MHD_Result token_done(struct request *r)
{
    struct server *srv = r->srv;
    struct token_params p;
    memset(&p, 0, sizeof(p));
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_param, &p);
    if (r->method == M_POST) {
        if (r->too_big)
            return token_error(r, 400, "invalid_request", "request too large");
        if (r->buf != NULL) {
            r->buf[r->buf_len] = '\0';
            parse_form(r->buf, &p);
        }
    }
    if (p.service != NULL && strcmp(p.service, srv->cfg.service) != 0)
        return token_error(r, 400, "invalid_request", "unknown service");

    const char *hdr = req_header(r, "Authorization");
    struct auth_user u;
    if (r->method == M_POST && p.grant_type != NULL && strcmp(p.grant_type, "refresh_token") == 0) {
        struct auth_claims c;
        bool ok = p.refresh_token != NULL &&
                  auth_token_verify(srv->keys, p.refresh_token, srv->cfg.issuer,
                                    srv->cfg.service, (uint64_t)time(NULL), &c) == AUTH_OK;
        if (ok) {
            ok = c.kind == AUTH_TOKEN_REFRESH && !c.external &&
                 auth_user_get(srv->idx, c.subject, &u) == AUTH_OK &&
                 u.account == c.account && u.generation == c.generation;
            auth_claims_free(&c);
        }
        if (!ok)
            return token_error(r, 401, "invalid_grant", "invalid refresh token");
        return issue_tokens(r, &p, &u);
    }
    char name[AUTH_NAME_MAX + 1] = "", password[AUTH_TOKEN_MAX] = "";
    bool have_creds = false;
    if (r->method == M_POST && p.grant_type != NULL) {
        if (strcmp(p.grant_type, "password") != 0)
            return token_error(r, 400, "unsupported_grant_type", "unsupported grant_type");
        if (p.username == NULL || p.password == NULL ||
            strlen(p.username) >= sizeof(name) || strlen(p.password) >= sizeof(password))
            return token_error(r, 401, "invalid_grant", "invalid username or password");
        snprintf(name, sizeof(name), "%s", p.username);
        snprintf(password, sizeof(password), "%s", p.password);
        have_creds = true;
    } else if (hdr != NULL) {
        if (!creds_parse_basic(hdr, name, sizeof(name), password, sizeof(password)))
            return token_error(r, 401, "invalid_request", "malformed Authorization header");
        have_creds = true;
    }
    if (!have_creds)
        return issue_tokens(r, &p, NULL);
    unsigned retry = 0;
    enum cred_result cr = creds_check(srv, r->conn, name, password, &u, &retry);
    sodium_memzero(password, sizeof(password));
    if (cr == CRED_THROTTLED)
        return token_error_after(r, 429, "slow_down", "too many failed logins from this address",
                                 retry);
    if (cr != CRED_OK) {
        log_info("token: refused credentials for a user");
        return token_error(r, 401, "invalid_grant", "invalid username or password");
    }
    return issue_tokens(r, &p, &u);
}

static enum store_err token_body(struct request *r, const char *data, size_t len)
{
    if (r->too_big || len > TOKEN_FORM_MAX - r->buf_len) {
        r->too_big = true;
        return STORE_OK;
    }
    if (r->buf == NULL) {
        r->buf = malloc(TOKEN_FORM_MAX + 1);
        if (r->buf == NULL)
            return STORE_ENOMEM;
        r->buf_cap = TOKEN_FORM_MAX;
    }
    memcpy(r->buf + r->buf_len, data, len);
    r->buf_len += len;
    return STORE_OK;
}

enum MHD_Result api_token_prepare(struct request *r)
{
    if (r->srv->cfg.auth != AUTH_MODE_TOKEN)
        return reply_error(r, API_NOT_FOUND, "token authentication is not enabled");
    if (r->method == M_POST)
        r->on_body = token_body;
    r->on_done = token_done;
    return MHD_YES;
}
