/*
 * HTTP helpers of the conformance runner on top of the integration-test harness, response
 * checks, and the content (blobs, manifests) the sections push.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conformance/conformance.h"

bool fmt(char *out, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, cap, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

void repo_name(const struct ctx *c, char *out, size_t cap, const char *suffix)
{
    fmt(out, cap, "%s/%s", c->prefix, suffix);
}

const char *loc_path(const char *loc)
{
    if (loc == NULL)
        return NULL;
    const char *p = loc;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else
        return loc[0] == '/' ? loc : NULL;
    p = strchr(p, '/');
    return p;
}

bool add_query(char *out, size_t cap, const char *url, const char *query)
{
    return fmt(out, cap, "%s%c%s", url, strchr(url, '?') != NULL ? '&' : '?', query);
}

const char *hdr(const struct resp *r, const char *name, char *buf)
{
    return resp_hdr(r, name, buf, HDR_MAX);
}

bool hdr_is(const struct resp *r, const char *name, const char *want)
{
    char buf[HDR_MAX];
    const char *v = hdr(r, name, buf);
    return v != NULL && strcmp(v, want) == 0;
}

void hdr_all(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t used = 0, nl = strlen(name);
    out[0] = '\0';
    const char *line = r->headers;
    while (line != NULL && *line != '\0') {
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL)
            eol = line + strlen(line);
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = (size_t)(eol - v);
            if (used + n + 2 < cap) {
                if (used > 0)
                    out[used++] = ',';
                memcpy(out + used, v, n);
                used += n;
                out[used] = '\0';
            }
        }
        line = *eol ? eol + 2 : NULL;
    }
}

bool list_has(const char *list, const char *item)
{
    size_t il = strlen(item);
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == il && strncmp(p, item, il) == 0)
            return true;
        p = e;
    }
    return false;
}

/* ---- observation of every response: error body format and Warning headers ---- */

static const char *const SPEC_CODES[] = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    /* "Legacy Docker support error codes": a client MAY encounter these */
    "TAG_INVALID",
    "MANIFEST_UNVERIFIED",
};

static bool code_known(const char *code)
{
    for (size_t i = 0; i < sizeof(SPEC_CODES) / sizeof(SPEC_CODES[0]); i++)
        if (strcmp(code, SPEC_CODES[i]) == 0)
            return true;
    return false;
}

bool error_body_valid(const char *body, size_t len, char *why, size_t cap)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    bool ok = false;
    if (j == NULL) {
        fmt(why, cap, "not JSON: %s", jerr.text);
        return false;
    }
    json_t *errs = json_object_get(j, "errors");
    if (!json_is_object(j) || !json_is_array(errs)) {
        fmt(why, cap, "no \"errors\" array");
        goto out;
    }
    if (json_array_size(errs) == 0) {
        fmt(why, cap, "\"errors\" is empty");
        goto out;
    }
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        json_t *code = json_object_get(e, "code");
        if (!json_is_object(e) || !json_is_string(code)) {
            fmt(why, cap, "errors[%zu] has no string \"code\"", i);
            goto out;
        }
        const char *s = json_string_value(code);
        for (const char *p = s; *p; p++)
            if (!(isupper((unsigned char)*p) || *p == '_')) {
                fmt(why, cap, "code \"%s\" is not uppercase letters and underscores", s);
                goto out;
            }
        if (*s == '\0' || !code_known(s)) {
            fmt(why, cap, "code \"%s\" is not one of the spec's error codes", s);
            goto out;
        }
        json_t *msg = json_object_get(e, "message");
        if (msg != NULL && !json_is_string(msg)) {
            fmt(why, cap, "errors[%zu].message is not a string", i);
            goto out;
        }
    }
    ok = true;
out:
    json_decref(j);
    return ok;
}

bool error_has_code(const struct resp *r, const char *code)
{
    json_t *j = resp_json(r);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "errors"), i, e)
    {
        const char *s = json_string_value(json_object_get(e, "code"));
        if (s != NULL && strcmp(s, code) == 0)
            found = true;
    }
    json_decref(j);
    return found;
}

static bool looks_json(const struct resp *r)
{
    char ct[HDR_MAX];
    if (hdr(r, "Content-Type", ct) != NULL && strstr(ct, "json") != NULL)
        return true;
    for (size_t i = 0; i < r->len; i++) {
        if (isspace((unsigned char)r->body[i]))
            continue;
        return r->body[i] == '{' || r->body[i] == '[';
    }
    return false;
}

static void observe(struct ctx *c, const char *method, const char *path, const struct resp *r)
{
    char why[256];
    if (r->status >= 400 && r->status < 500 && r->len > 0 && looks_json(r)) {
        c->err_bodies++;
        if (!error_body_valid(r->body, r->len, why, sizeof(why))) {
            /* one entry per distinct reason, with the first request that showed it */
            size_t u = strlen(c->err_body_why);
            const char *shown = path;
            size_t pl = strlen(c->prefix);
            if (strncmp(path, "/v2/", 4) == 0 && strncmp(path + 4, c->prefix, pl) == 0)
                shown = path + 4 + pl;
            char entry[400];
            fmt(entry, sizeof(entry), "%s [%ld for %s ...%.60s]", why, r->status, method, shown);
            if (strstr(c->err_body_why, why) == NULL &&
                u + strlen(entry) + 3 < sizeof(c->err_body_why))
                snprintf(c->err_body_why + u, sizeof(c->err_body_why) - u, "%s%s", u ? "; " : "",
                         entry);
            c->err_body_bad++;
        }
    }
    /* Warnings: warn-code 299, warn-agent "-", no warn-date; at most 4096 bytes in all */
    size_t total = 0;
    const char *line = r->headers;
    bool bad = false;
    while (line != NULL && *line != '\0') {
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL)
            eol = line + strlen(line);
        if (strncasecmp(line, "Warning:", 8) == 0) {
            const char *v = line + 8;
            while (*v == ' ')
                v++;
            size_t n = (size_t)(eol - v);
            total += n;
            /* 299 - "text" and nothing after the closing quote */
            if (n < 8 || strncmp(v, "299 - \"", 7) != 0 || v[n - 1] != '"')
                bad = true;
            else
                for (const char *q = v + 7; q < v + n - 1; q++) {
                    if (*q == '\\') {
                        q++;
                        continue;
                    }
                    if (*q == '"')
                        bad = true; /* a second quoted string: a warn-date */
                }
        }
        line = *eol ? eol + 2 : NULL;
    }
    if (total > 4096)
        bad = true;
    if (bad) {
        if (c->warn_bad == 0)
            fmt(c->warn_why, sizeof(c->warn_why), "%s %.80s", method, path);
        c->warn_bad++;
    }
}

static struct resp *do_req(struct ctx *c, const char *method, const char *path,
                           const char *const *hdrs, const void *body, size_t len, bool chunked)
{
    const char *p = loc_path(path);
    if (p == NULL)
        p = path;
    struct resp *r = chunked ? http_chunked(c->srv, method, p, hdrs, body, len)
                             : http(c->srv, method, p, hdrs, body, len);
    observe(c, method, p, r);
    return r;
}

struct resp *req(struct ctx *c, const char *method, const char *path, const char *const *hdrs,
                 const void *body, size_t len)
{
    return do_req(c, method, path, hdrs, body, len, false);
}

struct resp *req_chunked(struct ctx *c, const char *method, const char *path,
                         const char *const *hdrs, const void *body, size_t len)
{
    return do_req(c, method, path, hdrs, body, len, true);
}

/* ---- checks of responses ---- */

bool check_status(struct ctx *c, const struct resp *r, long want, const char *clause)
{
    bool ok = check(c, clause, r->status == want);
    if (!ok) {
        detail(c, "expected %ld", want);
        detail_resp(c, r);
    }
    return ok;
}

bool check_status2(struct ctx *c, const struct resp *r, long a, long b, const char *clause)
{
    bool ok = check(c, clause, r->status == a || r->status == b);
    if (!ok) {
        detail(c, "expected %ld or %ld", a, b);
        detail_resp(c, r);
    }
    return ok;
}

bool check_error(struct ctx *c, const struct resp *r, long status, const char *code,
                 const char *clause)
{
    char why[256] = "";
    bool st = status == 0 ? (r->status >= 400 && r->status < 500) : r->status == status;
    bool shape = error_body_valid(r->body, r->len, why, sizeof(why));
    bool has = error_has_code(r, code);
    bool ok = check(c, clause, st && has && shape);
    if (!ok) {
        if (status == 0)
            detail(c, "expected a 4xx with code %s", code);
        else
            detail(c, "expected %ld with code %s", status, code);
        if (!shape)
            detail(c, "error body: %s", why);
        detail_resp(c, r);
    }
    return ok;
}

bool check_hdr(struct ctx *c, const struct resp *r, const char *name, const char *want,
               const char *clause)
{
    char buf[HDR_MAX];
    const char *v = hdr(r, name, buf);
    bool ok = check(c, clause, v != NULL && strcmp(v, want) == 0);
    if (!ok)
        detail(c, "%s: expected \"%s\", got %s%s%s (status %ld)", name, want, v ? "\"" : "",
               v ? v : "none", v ? "\"" : "", r->status);
    return ok;
}

bool check_hdr_present(struct ctx *c, const struct resp *r, const char *name, const char *clause)
{
    char buf[HDR_MAX];
    bool ok = check(c, clause, hdr(r, name, buf) != NULL);
    if (!ok) {
        detail(c, "no %s header", name);
        detail_resp(c, r);
    }
    return ok;
}

/* ---- content ---- */

void digest_of(const char *alg, const void *data, size_t len, char *out)
{
    if (alg != NULL && strcmp(alg, "sha512") == 0)
        sha512_str(data, len, out);
    else
        sha256_str(data, len, out);
}

json_t *resp_json(const struct resp *r) { return json_loadb(r->body, r->len, 0, NULL); }

bool push_blob(struct ctx *c, const char *repo, const void *data, size_t len, struct blob *out)
{
    char path[PATH_MAX_LEN], loc[HDR_MAX], q[200];
    digest_of("sha256", data, len, out->digest);
    out->size = len;
    fmt(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    struct resp *r = req(c, "POST", path, NULL, "", 0);
    bool ok = r->status == 202 && hdr(r, "Location", loc) != NULL;
    setup(c, "POST /blobs/uploads/ for a blob the checks need", ok, r);
    resp_free(r);
    if (!ok)
        return false;
    fmt(q, sizeof(q), "digest=%s", out->digest);
    add_query(path, sizeof(path), loc, q);
    r = req(c, "PUT", path, (const char *[]){OCTET, NULL}, data, len);
    ok = r->status == 201;
    setup(c, "PUT <location>?digest= of a blob the checks need", ok, r);
    resp_free(r);
    return ok;
}

struct resp *put_manifest(struct ctx *c, const char *repo, const char *ref, const char *ctype,
                          const char *body, size_t len)
{
    char path[PATH_MAX_LEN], ct[256];
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    fmt(ct, sizeof(ct), "Content-Type: %s", ctype);
    return req(c, "PUT", path, (const char *[]){ct, NULL}, body, len);
}

bool push_manifest(struct ctx *c, const char *repo, const char *ref, const char *ctype,
                   const char *body, char *digest_out)
{
    struct resp *r = put_manifest(c, repo, ref, ctype, body, strlen(body));
    bool ok = r->status == 201;
    setup(c, "PUT of a manifest the checks need", ok, r);
    resp_free(r);
    if (digest_out != NULL)
        digest_of("sha256", body, strlen(body), digest_out);
    return ok;
}

bool image_manifest(char *out, size_t cap, const char *cfg_mt, const struct blob *cfg,
                    const struct blob *layers, size_t nlayers, const char *extra)
{
    size_t used = 0;
    if (!fmt(out, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
             cfg_mt, cfg->digest, cfg->size))
        return false;
    used = strlen(out);
    for (size_t i = 0; i < nlayers; i++) {
        if (!fmt(out + used, cap - used,
                 "%s{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\",\"size\":%zu}", i ? "," : "",
                 layers[i].digest, layers[i].size))
            return false;
        used += strlen(out + used);
    }
    return fmt(out + used, cap - used, "]%s%s}", extra ? "," : "", extra ? extra : "");
}

bool push_image(struct ctx *c, const char *repo, const char *tag, const char *salt,
                struct image *out)
{
    char cfg[256], layer[256];
    fmt(cfg, sizeof(cfg), "{\"architecture\":\"amd64\",\"os\":\"linux\",\"salt\":\"%s\"}", salt);
    fmt(layer, sizeof(layer), "layer bytes of %s", salt);
    if (!push_blob(c, repo, cfg, strlen(cfg), &out->cfg) ||
        !push_blob(c, repo, layer, strlen(layer), &out->layer))
        return false;
    image_manifest(out->body, sizeof(out->body), MT_CONFIG, &out->cfg, &out->layer, 1, NULL);
    out->size = strlen(out->body);
    digest_of("sha256", out->body, out->size, out->digest);
    return push_manifest(c, repo, tag != NULL ? tag : out->digest, MT_MANIFEST, out->body, NULL);
}
