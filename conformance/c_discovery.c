/*
 * Spec "Content Discovery": listing tags (end-8a, end-8b with n/last and Link), listing
 * referrers (end-12a, end-12b with the artifactType filter), pushing manifests with a subject
 * (OCI-Subject), and the catalog (/v2/_catalog: not in the OCI spec; Docker Registry v2 API).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conformance/conformance.h"

#define MAX_TAGS 64
#define TAG_LEN 160

struct names {
    int n;
    char v[MAX_TAGS][TAG_LEN];
};

/* The strings of member key (an array) of r's JSON body; false when the body is not that. */
static bool names_of(const struct resp *r, const char *key, struct names *out, bool null_ok)
{
    out->n = 0;
    json_t *j = resp_json(r);
    json_t *a = json_object_get(j, key);
    bool ok = json_is_array(a) || (null_ok && json_is_object(j) && (a == NULL || json_is_null(a)));
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (!json_is_string(e) || out->n >= MAX_TAGS) {
            ok = false;
            break;
        }
        fmt(out->v[out->n++], TAG_LEN, "%s", json_string_value(e));
    }
    json_decref(j);
    return ok;
}

static bool names_has(const struct names *s, const char *v)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], v) == 0)
            return true;
    return false;
}

/* "lexical (case-insensitive alphanumeric) or ASCIIbetical order" */
static bool sorted(const struct names *s)
{
    bool ascii = true, ci = true;
    for (int i = 0; i + 1 < s->n; i++) {
        if (strcmp(s->v[i], s->v[i + 1]) >= 0)
            ascii = false;
        if (strcasecmp(s->v[i], s->v[i + 1]) > 0)
            ci = false;
    }
    return ascii || ci;
}

static void names_str(const struct names *s, char *out, size_t cap)
{
    size_t u = 0;
    out[0] = '\0';
    for (int i = 0; i < s->n && u < cap; i++)
        u += (size_t)snprintf(out + u, cap - u, "%s%s", i ? "," : "", s->v[i]);
}

/*
 * The target of a Link header with rel="next" (RFC 5988): "<url>; rel="next"". present says
 * whether there was a Link header; returns whether it was well-formed.
 */
static bool link_next(const struct resp *r, char *url, size_t cap, bool *present)
{
    char h[HDR_MAX];
    *present = hdr(r, "Link", h) != NULL;
    if (!*present)
        return false;
    const char *p = h;
    while (*p == ' ')
        p++;
    if (*p != '<')
        return false;
    const char *e = strchr(p, '>');
    if (e == NULL || (size_t)(e - p - 1) >= cap)
        return false;
    memcpy(url, p + 1, (size_t)(e - p - 1));
    url[e - p - 1] = '\0';
    const char *rest = e + 1;
    return strstr(rest, ";") != NULL &&
           (strstr(rest, "rel=\"next\"") != NULL || strstr(rest, "rel=next") != NULL);
}

static struct resp *get(struct ctx *c, const char *f, ...) CONF_PRINTF(2, 3);
static struct resp *get(struct ctx *c, const char *f, ...)
{
    char path[PATH_MAX_LEN];
    va_list ap;
    va_start(ap, f);
    vsnprintf(path, sizeof(path), f, ap);
    va_end(ap);
    return req(c, "GET", path, NULL, NULL, 0);
}

void sec_tags(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN], s1[2048], s2[2048];
    repo_name(c, repo, sizeof(repo), "tags");
    static const char *const TAGS[] = {"v10", "v2", "V1", "alpha", "Beta", "_x", "1.0", "latest"};
    const int NT = (int)(sizeof(TAGS) / sizeof(TAGS[0]));
    struct image img;
    if (!push_image(c, repo, TAGS[0], "tags", &img))
        return;
    for (int i = 1; i < NT; i++)
        if (!push_manifest(c, repo, TAGS[i], MT_MANIFEST, img.body, NULL))
            return;

    /* the whole list */
    struct resp *r = get(c, "/v2/%s/tags/list", repo);
    check_status(c, r, 200, "end-8a GET /tags/list of a repository: 200 OK");
    struct names all;
    bool shape = names_of(r, "tags", &all, false);
    json_t *j = resp_json(r);
    const char *name = json_string_value(json_object_get(j, "name"));
    if (!check(c, "end-8a body is {\"name\":\"<name>\",\"tags\":[...]} with <name> the repository",
               shape && name != NULL && strcmp(name, repo) == 0))
        detail_resp(c, r);
    json_decref(j);
    resp_free(r);
    bool every = all.n == NT;
    for (int i = 0; i < NT; i++)
        every = every && names_has(&all, TAGS[i]);
    names_str(&all, s1, sizeof(s1));
    if (!check(c, "end-8a the list holds every tag of the repository, once", every))
        detail(c, "got %s", s1);
    if (!check(c, "end-8a tags MUST be in lexical or ASCIIbetical order", sorted(&all)))
        detail(c, "got %s", s1);
    if (all.n != NT)
        return;

    /* n */
    r = get(c, "/v2/%s/tags/list?n=%s", repo, "3");
    check_status(c, r, 200, "end-8b GET /tags/list?n=3: 200 OK");
    struct names page;
    names_of(r, "tags", &page, false);
    bool link_present;
    char next[HDR_MAX];
    bool link_ok = link_next(r, next, sizeof(next), &link_present);
    names_str(&page, s2, sizeof(s2));
    if (!check(c, "end-8b n=3: MUST include 3 results (fewer only with a Link header)",
               page.n == 3 || (page.n < 3 && link_present)))
        detail(c, "got %s", s2);
    bool prefix = page.n <= 3;
    for (int i = 0; i < page.n && i < all.n; i++)
        prefix = prefix && strcmp(page.v[i], all.v[i]) == 0;
    if (!check(c, "end-8b n=3 without last: the start of the list, in order", prefix))
        detail(c, "got %s; whole list %s", s2, s1);
    if (link_present)
        check(c, "end-8b Link header: RFC 5988 with rel=\"next\"", link_ok);
    resp_free(r);

    /* following the Link chain (or last=) gives back the whole list */
    struct names joined = page;
    int pages = 1;
    bool chain_ok = true;
    while (joined.n < all.n && pages < 20) {
        struct resp *p;
        if (link_present && link_ok) {
            p = req(c, "GET", next, NULL, NULL, 0);
        } else {
            p = get(c, "/v2/%s/tags/list?n=3&last=%s", repo, joined.v[joined.n - 1]);
        }
        struct names more;
        if (p->status != 200 || !names_of(p, "tags", &more, true) || more.n == 0) {
            chain_ok = false;
            resp_free(p);
            break;
        }
        for (int i = 0; i < more.n && joined.n < MAX_TAGS; i++)
            fmt(joined.v[joined.n++], TAG_LEN, "%s", more.v[i]);
        link_ok = link_next(p, next, sizeof(next), &link_present);
        resp_free(p);
        pages++;
    }
    bool same = chain_ok && joined.n == all.n;
    for (int i = 0; same && i < all.n; i++)
        same = strcmp(joined.v[i], all.v[i]) == 0;
    names_str(&joined, s2, sizeof(s2));
    if (!check(c, "end-8b paging with n=3 (Link or last=) yields the whole list, in order", same))
        detail(c, "paged %s; whole %s", s2, s1);

    /* n=0 */
    r = get(c, "/v2/%s/tags/list?n=%s", repo, "0");
    names_of(r, "tags", &page, true);
    check(c, "end-8b n=0: MUST return an empty list", r->status == 200 && page.n == 0);
    check(c, "end-8b n=0: MUST NOT include a Link header", resp_hdr_count(r, "Link") == 0);
    resp_free(r);

    /* last */
    fmt(path, sizeof(path), "/v2/%s/tags/list?n=2&last=%s", repo, all.v[2]);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 200, "end-8b GET /tags/list?n=2&last=<tag>: 200");
    names_of(r, "tags", &page, true);
    names_str(&page, s2, sizeof(s2));
    bool after = (page.n == 2 || (page.n < 2 && resp_hdr_count(r, "Link") > 0)) && page.n >= 1 &&
                 strcmp(page.v[0], all.v[3]) == 0 &&
                 (page.n < 2 || strcmp(page.v[1], all.v[4]) == 0);
    if (!check(c, "end-8b n=2&last=<tag>: the 2 tags after <tag>, non-inclusive", after))
        detail(c, "last=%s got %s; whole %s", all.v[2], s2, s1);
    resp_free(r);
    r = get(c, "/v2/%s/tags/list?last=%s", repo, all.v[NT - 3]);
    names_of(r, "tags", &page, true);
    names_str(&page, s2, sizeof(s2));
    bool rest =
        r->status == 200 && page.n >= 1 && page.n <= 2 && strcmp(page.v[0], all.v[NT - 2]) == 0 &&
        (page.n == 1 ? resp_hdr_count(r, "Link") > 0 : strcmp(page.v[1], all.v[NT - 1]) == 0);
    if (!check(c, "end-8b last=<tag> without n (n is OPTIONAL): the tags after <tag>", rest))
        detail(c, "last=%s got %s", all.v[NT - 3], s2);
    resp_free(r);
    r = get(c, "/v2/%s/tags/list?n=5&last=%s", repo, all.v[NT - 1]);
    names_of(r, "tags", &page, true);
    check(c, "end-8b last=<the last tag>: 200 and no tags", r->status == 200 && page.n == 0);
    resp_free(r);
    r = get(c, "/v2/%s/tags/list?n=%s", repo, "100");
    names_of(r, "tags", &page, true);
    check(c, "end-8b n larger than the number of tags: all of them",
          r->status == 200 && page.n == NT);
    resp_free(r);

    /* a repository whose manifests have no tag */
    char untagged[128];
    repo_name(c, untagged, sizeof(untagged), "tags-untagged");
    struct image u;
    if (push_image(c, untagged, NULL, "untagged", &u)) {
        r = get(c, "/v2/%s/tags/list", untagged);
        names_of(r, "tags", &page, true);
        if (!check(c, "end-8a repository without tags: 200 and an empty list (MAY be empty)",
                   r->status == 200 && page.n == 0))
            detail_resp(c, r);
        resp_free(r);
    }
}

/* ---- referrers ---- */

/*
 * One page of a referrers list into all: it must be a 200 with Content-Type MT_INDEX and a JSON
 * image index (schemaVersion 2, mediaType MT_INDEX, manifests an array of objects). why gets
 * the reason when it is not.
 */
static bool referrers_page(const struct resp *r, json_t *all, char *why, size_t cap)
{
    char ct[HDR_MAX];
    if (r->status != 200) {
        fmt(why, cap, "status %ld", r->status);
        return false;
    }
    if (hdr(r, "Content-Type", ct) == NULL || strcmp(ct, MT_INDEX) != 0) {
        fmt(why, cap, "Content-Type %s", hdr(r, "Content-Type", ct) != NULL ? ct : "(none)");
        return false;
    }
    json_t *j = resp_json(r);
    json_t *m = json_object_get(j, "manifests");
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    bool ok = false;
    if (j == NULL)
        fmt(why, cap, "the body is not JSON (%zu bytes)", r->len);
    else if (!json_is_array(m))
        fmt(why, cap, "no \"manifests\" array");
    else if (json_integer_value(json_object_get(j, "schemaVersion")) != 2 || mt == NULL ||
             strcmp(mt, MT_INDEX) != 0)
        fmt(why, cap, "not an image index (schemaVersion 2, mediaType %s)", MT_INDEX);
    else
        ok = true;
    size_t i;
    json_t *d;
    json_array_foreach(m, i, d)
    {
        if (ok && !json_is_object(d)) {
            fmt(why, cap, "manifests[%zu] is not a descriptor", i);
            ok = false;
        }
    }
    if (ok)
        json_array_extend(all, m);
    json_decref(j);
    return ok;
}

/*
 * All descriptors of the referrers of digest (following Link pages); first: the 1st response.
 * Records one check, what (with the endpoint id) naming it: every page a 200 with an image index
 * (referrers_page). NULL when a page was not: a list that could not be read is no empty list.
 * OWNED: json_decref.
 */
static json_t *referrers(struct ctx *c, const char *what, const char *repo, const char *digest,
                         const char *filter, struct resp **first)
{
    char path[PATH_MAX_LEN], why[300] = "";
    if (filter != NULL) {
        /* a query value: percent-encode all but unreserved characters and "/" */
        char enc[600];
        size_t u = 0;
        for (const char *p = filter; *p != '\0' && u + 4 < sizeof(enc); p++) {
            unsigned char ch = (unsigned char)*p;
            if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/')
                enc[u++] = (char)ch;
            else
                u += (size_t)snprintf(enc + u, sizeof(enc) - u, "%%%02X", ch);
        }
        enc[u] = '\0';
        fmt(path, sizeof(path), "/v2/%s/referrers/%s?artifactType=%s", repo, digest, enc);
    } else {
        fmt(path, sizeof(path), "/v2/%s/referrers/%s", repo, digest);
    }
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    *first = r;
    json_t *all = json_array();
    bool ok = referrers_page(r, all, why, sizeof(why));
    const struct resp *bad = ok ? NULL : r;
    char next[HDR_MAX];
    bool present;
    bool more = ok && link_next(r, next, sizeof(next), &present);
    struct resp *p = NULL;
    for (int pages = 0; more && pages < 50; pages++) {
        resp_free(p);
        p = req(c, "GET", next, NULL, NULL, 0);
        ok = referrers_page(p, all, why, sizeof(why));
        if (!ok)
            bad = p;
        more = ok && link_next(p, next, sizeof(next), &present);
    }
    if (!checkf(c, ok,
                "%s: 200, Content-Type %s and an image index with a manifests array "
                "(every page)",
                what, MT_INDEX)) {
        detail(c, "%s", why);
        detail_resp(c, bad);
        json_decref(all);
        all = NULL;
    }
    resp_free(p);
    return all;
}

static json_t *find_desc(json_t *list, const char *digest)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        const char *s = json_string_value(json_object_get(d, "digest"));
        if (s != NULL && strcmp(s, digest) == 0)
            return d;
    }
    return NULL;
}

struct referrer {
    const char *what;
    char body[4096];
    char digest[DIGEST_MAX];
    const char *media_type;
    const char *artifact_type; /* expected in the descriptor; NULL: omitted */
    const char *ann_key, *ann_val;
};

static void check_desc(struct ctx *c, json_t *list, const struct referrer *f)
{
    json_t *d = find_desc(list, f->digest);
    if (!checkf(c, d != NULL, "end-12a lists the %s", f->what))
        return;
    checkf(c,
           json_is_string(json_object_get(d, "mediaType")) &&
               strcmp(json_string_value(json_object_get(d, "mediaType")), f->media_type) == 0,
           "end-12a descriptor of the %s: mediaType %s", f->what, f->media_type);
    checkf(c, json_integer_value(json_object_get(d, "size")) == (json_int_t)strlen(f->body),
           "end-12a descriptor of the %s: size of the manifest", f->what);
    const char *at = json_string_value(json_object_get(d, "artifactType"));
    if (f->artifact_type != NULL) {
        if (!checkf(c, at != NULL && strcmp(at, f->artifact_type) == 0,
                    "end-12a descriptor of the %s: artifactType MUST be %s", f->what,
                    f->artifact_type))
            detail(c, "artifactType: %s", at ? at : "(none)");
    } else {
        if (!checkf(c, at == NULL,
                    "end-12a descriptor of the %s: artifactType MUST be omitted (index "
                    "without artifactType)",
                    f->what))
            detail(c, "artifactType: %s", at);
    }
    const char *av =
        json_string_value(json_object_get(json_object_get(d, "annotations"), f->ann_key));
    checkf(c, av != NULL && strcmp(av, f->ann_val) == 0,
           "end-12a descriptor of the %s: MUST include the manifest's annotations", f->what);
}

void sec_referrers(struct ctx *c)
{
    char repo[128], h[HDR_MAX];
    repo_name(c, repo, sizeof(repo), "referrers");
    struct image subj, other;
    struct blob empty, sbom, sigcfg;
    if (!push_image(c, repo, "subject", "referrers-subject", &subj) ||
        !push_image(c, repo, NULL, "referrers-other", &other) ||
        !push_blob(c, repo, "{}", 2, &empty) ||
        !push_blob(c, repo, "{\"sbom\":\"data\"}", 15, &sbom) ||
        !push_blob(c, repo, "{\"signature\":\"abcd\"}", 20, &sigcfg))
        return;
    char subject[512];
    fmt(subject, sizeof(subject),
        "\"subject\":{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu}",
        subj.digest, subj.size);

    static struct referrer f[4];
    char extra[1024];
    /* 1: artifact with artifactType */
    f[0].what = "artifact with artifactType";
    f[0].media_type = MT_MANIFEST;
    f[0].artifact_type = "application/vnd.example.sbom.v1";
    f[0].ann_key = "org.example.sbom.format";
    f[0].ann_val = "json";
    fmt(extra, sizeof(extra),
        "\"artifactType\":\"application/vnd.example.sbom.v1\",%s,\"annotations\":"
        "{\"org.example.sbom.format\":\"json\",\"org.opencontainers.image.created\":"
        "\"2022-01-01T14:42:55Z\"}",
        subject);
    image_manifest(f[0].body, sizeof(f[0].body), MT_EMPTY, &empty, &sbom, 1, extra);
    /* 2: image manifest without artifactType: the config's mediaType stands in */
    f[1].what = "manifest without artifactType";
    f[1].media_type = MT_MANIFEST;
    f[1].artifact_type = "application/vnd.example.signature.config.v1+json";
    f[1].ann_key = "org.example.signature.fingerprint";
    f[1].ann_val = "abcd";
    fmt(extra, sizeof(extra), "%s,\"annotations\":{\"org.example.signature.fingerprint\":\"abcd\"}",
        subject);
    image_manifest(f[1].body, sizeof(f[1].body), "application/vnd.example.signature.config.v1+json",
                   &sigcfg, NULL, 0, extra);
    /* 3: an index with a subject and no artifactType */
    f[2].what = "index without artifactType";
    f[2].media_type = MT_INDEX;
    f[2].artifact_type = NULL;
    f[2].ann_key = "org.example.index";
    f[2].ann_val = "yes";
    fmt(f[2].body, sizeof(f[2].body),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX
        "\",\"manifests\":[{\"mediaType\":\"" MT_MANIFEST
        "\",\"digest\":\"%s\",\"size\":%zu}],%s,\"annotations\":"
        "{\"org.example.index\":\"yes\"}}",
        other.digest, other.size, subject);
    /* 4: an index with artifactType */
    f[3].what = "index with artifactType";
    f[3].media_type = MT_INDEX;
    f[3].artifact_type = "application/vnd.example.bundle.v1";
    f[3].ann_key = "org.example.bundle";
    f[3].ann_val = "1";
    fmt(f[3].body, sizeof(f[3].body),
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"artifactType\":"
        "\"application/vnd.example.bundle.v1\",\"manifests\":[{\"mediaType\":\"" MT_MANIFEST
        "\",\"digest\":\"%s\",\"size\":%zu}],%s,\"annotations\":{\"org.example.bundle\":\"1\"}}",
        other.digest, other.size, subject);

    for (int i = 0; i < 4; i++) {
        digest_of("sha256", f[i].body, strlen(f[i].body), f[i].digest);
        struct resp *r =
            put_manifest(c, repo, f[i].digest, f[i].media_type, f[i].body, strlen(f[i].body));
        if (!checkf(c, r->status == 201, "end-7a PUT %s with a subject: 201", f[i].what))
            detail_resp(c, r);
        if (strcmp(f[i].media_type, MT_MANIFEST) == 0) {
            char clause[300];
            fmt(clause, sizeof(clause),
                "end-7a PUT image manifest with subject (%s): MUST respond OCI-Subject: "
                "<subject digest>",
                f[i].what);
            check_hdr(c, r, "OCI-Subject", subj.digest, clause);
        }
        resp_free(r);
    }

    /* the list */
    struct resp *r;
    json_t *list = referrers(c, "end-12a GET /referrers/<digest>", repo, subj.digest, NULL, &r);
    resp_free(r);
    for (int i = 0; i < 4; i++)
        check_desc(c, list, &f[i]);
    if (!check(c, "end-12a lists only manifests whose subject is <digest> (4 here)",
               list != NULL && json_array_size(list) == 4))
        detail(c, "%zu descriptors", json_array_size(list));
    json_decref(list);

    /* the artifactType filter */
    list = referrers(c, "end-12b GET /referrers/<digest>?artifactType=", repo, subj.digest,
                     "application/vnd.example.sbom.v1", &r);
    bool applied = hdr(r, "OCI-Filters-Applied", h) != NULL && list_has(h, "artifactType");
    check(c, "end-12b filter applied (SHOULD support filtering): OCI-Filters-Applied: artifactType",
          applied);
    if (applied) {
        bool only =
            list != NULL && json_array_size(list) == 1 && find_desc(list, f[0].digest) != NULL;
        if (!check(c, "end-12b with the filter applied: only descriptors of that artifactType",
                   only))
            detail(c, "%zu descriptors", json_array_size(list));
    }
    resp_free(r);
    json_decref(list);
    list = referrers(c, "end-12b filter on a config-derived artifactType", repo, subj.digest,
                     "application/vnd.example.signature.config.v1+json", &r);
    if (hdr(r, "OCI-Filters-Applied", h) != NULL)
        check(c, "end-12b filter on the config-derived artifactType: that manifest only",
              list != NULL && json_array_size(list) == 1 && find_desc(list, f[1].digest) != NULL);
    resp_free(r);
    json_decref(list);
    list = referrers(c, "end-12b filter matching nothing", repo, subj.digest,
                     "application/vnd.example.none", &r);
    if (hdr(r, "OCI-Filters-Applied", h) != NULL)
        check(c, "end-12b filter matching nothing: an empty manifests list",
              list != NULL && json_array_size(list) == 0);
    resp_free(r);
    json_decref(list);

    /* no referrers */
    list = referrers(c, "end-12a digest without referrers (MUST NOT 404)", repo, other.digest, NULL,
                     &r);
    check(c, "end-12a digest without referrers: an empty manifests list",
          list != NULL && json_array_size(list) == 0);
    resp_free(r);
    json_decref(list);
    char unknown[DIGEST_MAX];
    digest_of("sha256", "nothing refers to this", 22, unknown);
    list = referrers(c, "end-12a unknown digest (MUST NOT 404)", repo, unknown, NULL, &r);
    if (!check(c, "end-12a unknown digest: an empty manifests list",
               list != NULL && json_array_size(list) == 0))
        detail_resp(c, r);
    resp_free(r);
    json_decref(list);
    char norepo[128];
    repo_name(c, norepo, sizeof(norepo), "referrers-never-pushed");
    list =
        referrers(c, "end-12a repository never pushed (MUST NOT 404)", norepo, unknown, NULL, &r);
    if (!check(c, "end-12a repository never pushed: an empty manifests list",
               list != NULL && json_array_size(list) == 0))
        detail_resp(c, r);
    resp_free(r);
    json_decref(list);

    /* a subject that does not exist (yet) */
    char missing_subject[DIGEST_MAX], body[4096];
    digest_of("sha256", "subject pushed later, or never", 30, missing_subject);
    fmt(extra, sizeof(extra),
        "\"artifactType\":\"application/"
        "vnd.example.early.v1\",\"subject\":{\"mediaType\":\"" MT_MANIFEST
        "\",\"digest\":\"%s\",\"size\":1234}",
        missing_subject);
    image_manifest(body, sizeof(body), MT_EMPTY, &empty, &sbom, 1, extra);
    char bd[DIGEST_MAX];
    digest_of("sha256", body, strlen(body), bd);
    r = put_manifest(c, repo, bd, MT_MANIFEST, body, strlen(body));
    check_status(c, r, 201,
                 "end-7a subject referencing a manifest that does not exist: MUST "
                 "accept (201)");
    check_hdr(c, r, "OCI-Subject", missing_subject,
              "end-7a subject that does not exist: OCI-Subject: <subject digest>");
    resp_free(r);
    list =
        referrers(c, "end-12a referrers of a subject not pushed", repo, missing_subject, NULL, &r);
    check(c, "end-12a referrers of the missing subject list the new manifest",
          find_desc(list, bd) != NULL);
    resp_free(r);
    json_decref(list);

    /* a deleted referrer leaves the list */
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, f[1].digest);
    r = req(c, "DELETE", path, NULL, NULL, 0);
    if (check_status(c, r, 202, "end-9 DELETE a referrer manifest: 202")) {
        resp_free(r);
        list =
            referrers(c, "end-12a the list after a referrer's delete", repo, subj.digest, NULL, &r);
        check(c, "end-12a a deleted manifest is no longer listed among the referrers",
              list != NULL && find_desc(list, f[1].digest) == NULL &&
                  find_desc(list, f[0].digest) != NULL);
        json_decref(list);
    }
    resp_free(r);
    /* invalid digest */
    fmt(path, sizeof(path), "/v2/%s/referrers/sha256:not-a-digest", repo);
    r = req(c, "GET", path, NULL, NULL, 0);
    check_status(c, r, 400, "end-12a <digest> with an invalid syntax: MUST be 400");
    resp_free(r);
}

/* ---- catalog ---- */

void sec_catalog(struct ctx *c)
{
    char a[128], b[128];
    repo_name(c, a, sizeof(a), "catalog-a");
    repo_name(c, b, sizeof(b), "catalog-b");
    struct image ia, ib;
    if (!push_image(c, a, "v1", "catalog-a", &ia) || !push_image(c, b, "v1", "catalog-b", &ib))
        return;
    const char *note = "catalog (Docker Registry v2 /v2/_catalog, not in the OCI spec)";
    /* both repositories, in order, across however many pages */
    struct resp *r = req(c, "GET", "/v2/_catalog", NULL, NULL, 0);
    checkf(c, r->status == 200, "%s: GET /v2/_catalog 200", note);
    struct names page;
    bool shape = names_of(r, "repositories", &page, false);
    checkf(c, shape, "%s: body {\"repositories\":[...]}", note);
    resp_free(r);
    char path[PATH_MAX_LEN];
    /* the run's repositories sort after <prefix> itself */
    fmt(path, sizeof(path), "/v2/_catalog?n=50&last=%s", c->prefix);
    r = req(c, "GET", path, NULL, NULL, 0);
    names_of(r, "repositories", &page, true);
    checkf(c, r->status == 200 && names_has(&page, a) && names_has(&page, b),
           "%s: lists the repositories pushed", note);
    checkf(c, sorted(&page), "%s: in lexical order", note);
    resp_free(r);
    r = req(c, "GET", "/v2/_catalog?n=1", NULL, NULL, 0);
    names_of(r, "repositories", &page, true);
    bool present;
    char next[HDR_MAX];
    bool ok = link_next(r, next, sizeof(next), &present);
    checkf(c, r->status == 200 && page.n == 1, "%s: n=1 gives one repository", note);
    checkf(c, present && ok, "%s: n=1 with more to come: Link rel=\"next\"", note);
    resp_free(r);
    fmt(path, sizeof(path), "/v2/_catalog?n=1&last=%s", a);
    r = req(c, "GET", path, NULL, NULL, 0);
    names_of(r, "repositories", &page, true);
    checkf(c, r->status == 200 && page.n == 1 && strcmp(page.v[0], b) == 0,
           "%s: n=1&last=<repo> gives the next repository", note);
    resp_free(r);
    r = req(c, "GET", "/v2/_catalog?n=0", NULL, NULL, 0);
    names_of(r, "repositories", &page, true);
    checkf(c, r->status == 200 && page.n == 0, "%s: n=0 gives an empty list", note);
    resp_free(r);
}
