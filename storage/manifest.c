#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "storage/manifest.h"

static bool known_type(const char *mt)
{
    return strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_OCI_INDEX) == 0 ||
           strcmp(mt, MT_DOCKER_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
}

static bool is_index_type(const char *mt)
{
    return strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
}

/* Content-Type may carry parameters ("; charset=utf-8"); compare the bare type. */
static size_t bare_type_len(const char *ct)
{
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n;
}

static bool copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

/* A descriptor: {mediaType, digest, size, ...}. */
static enum store_err parse_descriptor(json_t *d, struct digest *dg, uint64_t *size,
                                       const char **mt, const char **why)
{
    if (!json_is_object(d)) {
        *why = "descriptor is not an object";
        return STORE_EINVAL;
    }
    json_t *jmt = json_object_get(d, "mediaType");
    json_t *jdg = json_object_get(d, "digest");
    json_t *jsz = json_object_get(d, "size");
    if (!json_is_string(jmt) || json_string_length(jmt) == 0 ||
        json_string_length(jmt) > MEDIA_TYPE_MAX) {
        *why = "descriptor mediaType missing or invalid";
        return STORE_EINVAL;
    }
    if (!json_is_string(jdg) ||
        digest_parse(dg, json_string_value(jdg), json_string_length(jdg)) != STORE_OK) {
        *why = "descriptor digest missing or invalid";
        return STORE_EINVAL;
    }
    if (!json_is_integer(jsz) || json_integer_value(jsz) < 0) {
        *why = "descriptor size missing or invalid";
        return STORE_EINVAL;
    }
    *size = (uint64_t)json_integer_value(jsz);
    *mt = json_string_value(jmt);
    return STORE_OK;
}

static bool nondistributable(const char *mt, json_t *d)
{
    if (strstr(mt, "nondistributable") != NULL || strstr(mt, "foreign") != NULL)
        return true;
    json_t *urls = json_object_get(d, "urls");
    return json_is_array(urls) && json_array_size(urls) > 0;
}

static enum store_err add_refs(struct manifest_info *out, json_t *arr, bool is_manifest,
                               const char **why)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return STORE_OK;
    if (n > SIZE_MAX / sizeof(struct manifest_ref) - out->nrefs)
        return STORE_ENOMEM;
    struct manifest_ref *refs = realloc(out->refs, (out->nrefs + n) * sizeof(*refs));
    if (refs == NULL)
        return STORE_ENOMEM;
    out->refs = refs;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(arr, i);
        struct manifest_ref *r = &out->refs[out->nrefs];
        const char *mt;
        enum store_err rc = parse_descriptor(d, &r->digest, &r->size, &mt, why);
        if (rc != STORE_OK)
            return rc;
        r->is_manifest = is_manifest;
        r->optional = !is_manifest && nondistributable(mt, d);
        out->nrefs++;
    }
    return STORE_OK;
}

/* JSON values a manifest may hold: far above real images, far below what would let a
 * 4 MiB body of "[0,0,0,...]" cost hundreds of MiB once parsed. */
#define MANIFEST_MAX_ELEMENTS 100000

/* Counts the separators outside strings: a cheap bound on the number of values. */
static size_t count_elements(const char *p, size_t len)
{
    size_t n = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == ',' || c == '[' || c == '{') {
            n++;
        }
    }
    return n;
}

enum store_err manifest_parse(const char *content_type, const void *bytes, size_t len,
                              struct manifest_info *out, const char **why)
{
    if (count_elements(bytes, len) > MANIFEST_MAX_ELEMENTS) {
        *why = "manifest has too many elements";
        return STORE_EINVAL;
    }
    enum store_err rc = STORE_EINVAL;
    struct manifest_info info;
    memset(&info, 0, sizeof(info));
    json_error_t jerr;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    *why = "manifest is not valid JSON";
    if (root == NULL)
        goto out;
    *why = "manifest is not a JSON object";
    if (!json_is_object(root))
        goto out;

    json_t *sv = json_object_get(root, "schemaVersion");
    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        *why = "schema 1 manifests are not supported; push with a schema 2 or OCI client";
        rc = STORE_ENOENT;
        goto out;
    }
    *why = "schemaVersion must be 2";
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        goto out;

    json_t *jmt = json_object_get(root, "mediaType");
    const char *body_mt = NULL;
    if (jmt != NULL) {
        *why = "mediaType is not a string";
        if (!json_is_string(jmt))
            goto out;
        body_mt = json_string_value(jmt);
    }
    char ct[MEDIA_TYPE_MAX + 1] = "";
    if (content_type != NULL && !copy_str(ct, sizeof(ct), content_type, bare_type_len(content_type))) {
        *why = "Content-Type too long";
        goto out;
    }
    const char *mt = NULL;
    if (body_mt != NULL && ct[0] != '\0' && known_type(ct) && strcmp(body_mt, ct) != 0) {
        *why = "mediaType in the manifest does not match Content-Type";
        goto out;
    }
    if (body_mt != NULL)
        mt = body_mt;
    else if (known_type(ct))
        mt = ct;
    else if (json_object_get(root, "manifests") != NULL)
        mt = MT_OCI_INDEX;
    else
        mt = MT_OCI_MANIFEST;
    if (!known_type(mt)) {
        *why = "unsupported manifest media type";
        rc = STORE_ENOENT;
        goto out;
    }
    copy_str(info.media_type, sizeof(info.media_type), mt, strlen(mt));
    info.is_index = is_index_type(mt);

    json_t *at = json_object_get(root, "artifactType");
    if (at != NULL) {
        *why = "artifactType is not a valid media type";
        if (!json_is_string(at) || json_string_length(at) == 0 ||
            !copy_str(info.artifact_type, sizeof(info.artifact_type), json_string_value(at),
                      json_string_length(at)))
            goto out;
    }

    if (info.is_index) {
        json_t *m = json_object_get(root, "manifests");
        *why = "index has no manifests array";
        if (!json_is_array(m))
            goto out;
        rc = add_refs(&info, m, true, why);
        if (rc != STORE_OK)
            goto out;
        rc = STORE_EINVAL;
    } else {
        json_t *cfg = json_object_get(root, "config");
        struct digest cd;
        uint64_t csize;
        const char *cmt;
        if (cfg == NULL) {
            *why = "manifest has no config";
            goto out;
        }
        rc = parse_descriptor(cfg, &cd, &csize, &cmt, why);
        if (rc != STORE_OK)
            goto out;
        rc = STORE_EINVAL;
        json_t *layers = json_object_get(root, "layers");
        *why = "layers is not an array";
        if (layers != NULL && !json_is_array(layers))
            goto out;
        if (info.artifact_type[0] == '\0')
            copy_str(info.artifact_type, sizeof(info.artifact_type), cmt, strlen(cmt));
        json_t *one = json_array();
        if (one == NULL || json_array_append(one, cfg) != 0) {
            json_decref(one);
            rc = STORE_ENOMEM;
            goto out;
        }
        rc = add_refs(&info, one, false, why);
        json_decref(one);
        if (rc == STORE_OK && layers != NULL)
            rc = add_refs(&info, layers, false, why);
        if (rc != STORE_OK)
            goto out;
        rc = STORE_EINVAL;
    }

    json_t *subj = json_object_get(root, "subject");
    if (subj != NULL) {
        uint64_t ssize;
        const char *smt;
        rc = parse_descriptor(subj, &info.subject, &ssize, &smt, why);
        if (rc != STORE_OK)
            goto out;
        info.has_subject = true;
    }
    *out = info;
    memset(&info, 0, sizeof(info));
    *why = NULL;
    rc = STORE_OK;
out:
    manifest_info_free(&info);
    json_decref(root);
    return rc;
}

void manifest_info_free(struct manifest_info *info)
{
    if (info == NULL)
        return;
    free(info->refs);
    info->refs = NULL;
    info->nrefs = 0;
}
