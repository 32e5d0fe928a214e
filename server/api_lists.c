#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/http.h"
#include "server/httpparse.h"
#include "server/log.h"
#include "storage/manifest.h"

/* Page size when the client gives no n, and the most it may ask for. */
#define LIST_DEFAULT 1000
#define LIST_MAX 10000

/* Serialises body (TAKES it) into a response with the given Content-Type; NULL on ENOMEM. */
static struct MHD_Response *json_response(json_t *body, const char *content_type)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return NULL;
    }
    resp_header(resp, "Content-Type", content_type);
    return resp;
}

/* A JSON 200 with an optional extra header (name NULL: none). TAKES body. */
static enum MHD_Result reply_json(struct request *r, json_t *body, const char *content_type,
                                  const char *hname, const char *hvalue)
{
    struct MHD_Response *resp = json_response(body, content_type);
    if (resp == NULL)
        return reply_store_error(r, STORE_ENOMEM, "json");
    if (hname != NULL)
        resp_header(resp, hname, hvalue);
    r->succeeded = true;
    return reply(r, MHD_HTTP_OK, resp);
}

static int append_name(const char *name, size_t len, void *arg)
{
    json_t *arr = arg;
    return json_array_append_new(arr, json_stringn(name, len));
}

/* n and last of a paginated listing; false after replying with an error. */
static bool page_args(struct request *r, size_t *n, const char **last, enum MHD_Result *ret)
{
    const char *ns = req_arg(r, "n");
    *n = LIST_DEFAULT;
    if (ns != NULL && ns[0] != '\0') {
        uint64_t v;
        if (!parse_u64(ns, strlen(ns), &v)) {
            *ret = reply_error(r, API_PAGINATION_NUMBER_INVALID, "n must be a number");
            return false;
        }
        *n = v > LIST_MAX ? LIST_MAX : (size_t)v;
    }
    *last = req_arg(r, "last");
    if (*last != NULL && (*last)[0] == '\0')
        *last = NULL;
    return true;
}

/* Link: <path?n=N&last=LAST>; rel="next" (names and tags need no escaping). */
static void next_link(char *buf, size_t cap, const char *path, size_t n, json_t *arr)
{
    size_t count = json_array_size(arr);
    json_t *lastv = count > 0 ? json_array_get(arr, count - 1) : NULL;
    snprintf(buf, cap, "<%s?n=%zu&last=%s>; rel=\"next\"", path, n,
             lastv ? json_string_value(lastv) : "");
}

enum MHD_Result api_tags(struct request *r)
{
    size_t n;
    const char *last;
    enum MHD_Result ret;
    if (!page_args(r, &n, &last, &ret))
        return ret;
    if (last != NULL && !tag_valid(last, strlen(last)))
        return reply_error(r, API_TAG_INVALID, "last is not a valid tag");
    json_t *arr = json_array();
    if (arr == NULL)
        return reply_store_error(r, STORE_ENOMEM, "json");
    bool more = false;
    enum store_err rc = index_tags_list(r->srv->idx, r->name, last, n, append_name, arr, &more);
    if (rc != STORE_OK) {
        json_decref(arr);
        if (rc == STORE_ENOENT)
            return reply_error(r, API_NAME_UNKNOWN, NULL);
        return reply_store_error(r, rc, "tag list");
    }
    char link[NAME_MAX_LEN + TAG_MAX_LEN + 80];
    if (more) {
        char path[NAME_MAX_LEN + 24];
        snprintf(path, sizeof(path), "/v2/%s/tags/list", r->name);
        next_link(link, sizeof(link), path, n, arr);
    }
    json_t *body = json_pack("{s:s, s:o}", "name", r->name, "tags", arr);
    return reply_json(r, body, "application/json", more ? "Link" : NULL, link);
}

/* One page of a catalog filtered by what the requester may pull. */
struct catalog_page {
    struct request *r;
    json_t *arr;
    size_t n;
    bool more;
};

static int catalog_one(const char *name, size_t len, void *arg)
{
    (void)len;
    struct catalog_page *p = arg;
    if (!authz_catalog_shows(p->r, name))
        return 0;
    if (json_array_size(p->arr) == p->n) {
        p->more = true;
        return 1;
    }
    return json_array_append_new(p->arr, json_string(name));
}

enum MHD_Result api_catalog(struct request *r)
{
    size_t n;
    const char *last;
    enum MHD_Result ret;
    if (!page_args(r, &n, &last, &ret))
        return ret;
    if (last != NULL && !name_valid(last, strlen(last)))
        return reply_error(r, API_NAME_INVALID, "last is not a valid repository name");
    bool all = true;
    enum store_err rc = authz_catalog_begin(r, &all);
    if (rc != STORE_OK)
        return reply_store_error(r, rc, "catalog");
    struct catalog_page page = {r, json_array(), n, false};
    if (page.arr == NULL)
        return reply_store_error(r, STORE_ENOMEM, "json");
    if (all) {
        rc = index_repos_list(r->srv->idx, last, n, append_name, page.arr, &page.more);
    } else {
        /* the walk goes on past the names it may not show until the page is full */
        bool unused;
        rc = n == 0 ? STORE_OK
                    : index_repos_list(r->srv->idx, last, SIZE_MAX, catalog_one, &page, &unused);
    }
    if (rc != STORE_OK) {
        json_decref(page.arr);
        return reply_store_error(r, rc, "catalog");
    }
    char link[NAME_MAX_LEN + 80];
    if (page.more)
        next_link(link, sizeof(link), "/v2/_catalog", n, page.arr);
    json_t *body = json_pack("{s:o}", "repositories", page.arr);
    return reply_json(r, body, "application/json", page.more ? "Link" : NULL, link);
}

struct referrers_ctx {
    json_t *manifests;
    const char *filter; /* artifactType to keep, or NULL */
};

static int add_referrer(const struct index_referrer *ref, void *arg)
{
    struct referrers_ctx *ctx = arg;
    if (ctx->filter != NULL && strcmp(ctx->filter, ref->artifact_type) != 0)
        return 0;
    json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", ref->media_type, "digest", ref->digest,
                          "size", (json_int_t)ref->size);
    if (d == NULL)
        return -1;
    if (ref->artifact_type[0] != '\0')
        json_object_set_new(d, "artifactType", json_string(ref->artifact_type));
    json_t *doc = json_loadb(ref->bytes, ref->len, 0, NULL);
    json_t *ann = doc != NULL ? json_object_get(doc, "annotations") : NULL;
    if (json_is_object(ann) && json_object_size(ann) > 0)
        json_object_set(d, "annotations", ann);
    json_decref(doc);
    return json_array_append_new(ctx->manifests, d);
}

enum MHD_Result api_referrers(struct request *r)
{
    struct referrers_ctx ctx = {json_array(), req_arg(r, "artifactType")};
    if (ctx.manifests == NULL)
        return reply_store_error(r, STORE_ENOMEM, "json");
    if (ctx.filter != NULL && ctx.filter[0] == '\0')
        ctx.filter = NULL;
    enum store_err rc =
        index_referrers_list(r->srv->idx, r->name, &r->digest, add_referrer, &ctx);
    if (rc != STORE_OK) {
        json_decref(ctx.manifests);
        return reply_store_error(r, rc, "referrers");
    }
    json_t *body = json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType",
                             MT_OCI_INDEX, "manifests",
                             ctx.manifests);
    return reply_json(r, body, MT_OCI_INDEX, ctx.filter ? "OCI-Filters-Applied" : NULL,
                      "artifactType");
}
