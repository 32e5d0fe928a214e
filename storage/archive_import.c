/* ocireg import: an OCI image layout tar, compressed with zstd, into the registry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "storage/archive.h"
#include "storage/archive_int.h"
#include "storage/manifest.h"

#define INDEX_JSON_MAX (16u << 20)


/* A verified blob: its data file stays under uploads/, its handle is closed (no descriptor
 * is held per blob, so an import of any size works under the usual open-file limit). */
struct staged {
    struct digest d;
    char id[UPLOAD_ID_LEN + 1];
    uint64_t size;
};

struct importer {
    struct index *idx;
    struct blobstore *bs;
    struct staged *s;
    size_t n, cap;
    char *index_json;
    size_t index_len;
    char *err;
    size_t errcap;
};

static struct staged *find_staged(struct importer *im, const struct digest *d)
{
    for (size_t i = 0; i < im->n; i++)
        if (digest_equal(&im->s[i].d, d))
            return &im->s[i];
    return NULL;
}

/* The tar reader: one entry at a time, its data handed over in pieces. */
struct tar_reader {
    unsigned char hdr[TAR_BLOCK];
    size_t hdr_have;
    uint64_t left, pad;
    char name[300];
    char pax_path[300];
    char type;
    bool in_data, done;
    /* the entry being read */
    struct upload *up;
    struct digest d;
    bool want_blob, want_index, want_pax;
    char pax[1024];
    size_t pax_len;
    enum store_err rc;
};

static uint64_t parse_octal(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(p[i] - '0');
    return v;
}

static void entry_begin(struct importer *im, struct tar_reader *t)
{
    t->type = (char)t->hdr[156];
    t->left = parse_octal(t->hdr + 124, 12);
    t->pad = (TAR_BLOCK - t->left % TAR_BLOCK) % TAR_BLOCK;
    if (t->pax_path[0] != '\0') {
        snprintf(t->name, sizeof(t->name), "%s", t->pax_path);
        t->pax_path[0] = '\0';
    } else {
        char prefix[156] = "", nm[101];
        memcpy(nm, t->hdr, 100);
        nm[100] = '\0';
        if (memcmp(t->hdr + 257, "ustar", 5) == 0) {
            memcpy(prefix, t->hdr + 345, 155);
            prefix[155] = '\0';
        }
        snprintf(t->name, sizeof(t->name), "%s%s%s", prefix, prefix[0] ? "/" : "", nm);
    }
    const char *name = t->name;
    if (strncmp(name, "./", 2) == 0)
        name += 2;
    t->want_blob = t->want_index = t->want_pax = false;
    if (t->type == 'x') {
        t->want_pax = true;
        t->pax_len = 0;
        return;
    }
    if (t->type != '0' && t->type != '\0')
        return; /* directories, links: nothing to load */
    if (strcmp(name, "index.json") == 0) {
        if (t->left > INDEX_JSON_MAX) {
            t->rc = archive_fail(im->err, im->errcap, STORE_ETOOBIG, "index.json too large");
            return;
        }
        t->want_index = true;
        im->index_len = 0;
        free(im->index_json);
        im->index_json = malloc(t->left + 1);
        if (im->index_json == NULL)
            t->rc = STORE_ENOMEM;
        return;
    }
    if (strncmp(name, "blobs/", 6) != 0)
        return;
    /* blobs/<alg>/<hex>: the name is the claimed digest */
    const char *alg = name + 6, *slash = strchr(alg, '/');
    char ds[DIGEST_STR_MAX + 8];
    if (slash == NULL)
        return;
    snprintf(ds, sizeof(ds), "%.*s:%s", (int)(slash - alg), alg, slash + 1);
    if (digest_parse(&t->d, ds, strlen(ds)) != STORE_OK) {
        snprintf(im->err, im->errcap, "%s: not a digest ocireg supports", name);
        t->rc = STORE_EINVAL;
        return;
    }
    if (find_staged(im, &t->d) != NULL)
        return; /* a duplicate entry: the first is kept */
    char id[UPLOAD_ID_LEN + 1];
    if (!upload_id_new(id)) {
        t->rc = STORE_EIO;
        return;
    }
    t->rc = upload_open(im->bs, id, t->d.alg, true, &t->up);
    t->want_blob = t->rc == STORE_OK;
}

static void entry_data(struct importer *im, struct tar_reader *t, const char *p, size_t n)
{
    if (t->want_blob)
        t->rc = upload_write(t->up, p, n);
    else if (t->want_index) {
        memcpy(im->index_json + im->index_len, p, n);
        im->index_len += n;
    } else if (t->want_pax && t->pax_len + n < sizeof(t->pax)) {
        memcpy(t->pax + t->pax_len, p, n);
        t->pax_len += n;
    }
}

static void entry_end(struct importer *im, struct tar_reader *t)
{
    if (t->want_blob) {
        enum store_err rc = upload_verify(t->up, &t->d);
        if (rc == STORE_EDIGEST) {
            snprintf(im->err, im->errcap, "%s: content does not match its digest", t->d.str);
            t->rc = rc;
        } else if (rc != STORE_OK) {
            t->rc = rc;
        } else if (im->n == im->cap) {
            size_t cap = im->cap ? im->cap * 2 : 64;
            struct staged *s = realloc(im->s, cap * sizeof(*s));
            if (s == NULL)
                t->rc = STORE_ENOMEM;
            else {
                im->s = s;
                im->cap = cap;
            }
        }
        if (t->rc == STORE_OK) {
            struct staged *s = &im->s[im->n++];
            s->d = t->d;
            memcpy(s->id, upload_id(t->up), sizeof(s->id));
            s->size = upload_offset(t->up);
        } else {
            (void)upload_remove(im->bs, upload_id(t->up));
        }
        upload_close(t->up);
        t->up = NULL;
    } else if (t->want_index) {
        im->index_json[im->index_len] = '\0';
    } else if (t->want_pax) {
        /* records "LEN key=value\n": only path matters */
        t->pax[t->pax_len] = '\0';
        char *path = strstr(t->pax, " path=");
        if (path != NULL) {
            path += 6;
            path[strcspn(path, "\n")] = '\0';
            snprintf(t->pax_path, sizeof(t->pax_path), "%s", path);
        }
    }
    t->want_blob = t->want_index = t->want_pax = false;
}

/* Feeds decompressed bytes to the tar reader. */
static void tar_feed(struct importer *im, struct tar_reader *t, const char *p, size_t n)
{
    while (n > 0 && t->rc == STORE_OK && !t->done) {
        if (!t->in_data) {
            size_t take = TAR_BLOCK - t->hdr_have < n ? TAR_BLOCK - t->hdr_have : n;
            memcpy(t->hdr + t->hdr_have, p, take);
            t->hdr_have += take;
            p += take;
            n -= take;
            if (t->hdr_have < TAR_BLOCK)
                return;
            t->hdr_have = 0;
            bool zero = true;
            for (int i = 0; i < TAR_BLOCK && zero; i++)
                zero = t->hdr[i] == 0;
            if (zero) {
                t->done = true;
                return;
            }
            unsigned want = (unsigned)parse_octal(t->hdr + 148, 8);
            memset(t->hdr + 148, ' ', 8);
            unsigned sum = 0;
            for (int i = 0; i < TAR_BLOCK; i++)
                sum += t->hdr[i];
            if (sum != want) {
                t->rc = archive_fail(im->err, im->errcap, STORE_EINVAL, "a tar header is damaged");
                return;
            }
            entry_begin(im, t);
            t->in_data = true;
            if (t->left == 0 && t->pad == 0) {
                entry_end(im, t);
                t->in_data = false;
            }
            continue;
        }
        if (t->left > 0) {
            size_t take = t->left < n ? (size_t)t->left : n;
            entry_data(im, t, p, take);
            t->left -= take;
            p += take;
            n -= take;
            if (t->left == 0)
                entry_end(im, t);
        } else {
            size_t take = t->pad < n ? (size_t)t->pad : n;
            t->pad -= take;
            p += take;
            n -= take;
        }
        if (t->left == 0 && t->pad == 0)
            t->in_data = false;
    }
}

struct plan_item {
    char repo[NAME_MAX_LEN + 1];
    char tag[TAG_MAX_LEN + 1];
    struct digest d;
    char media_type[MEDIA_TYPE_MAX + 1];
};

struct install_arg {
    struct staged *s;
    struct blobstore *bs;
};

static enum store_err install(void *arg)
{
    struct install_arg *ia = arg;
    return blobstore_upload_install(ia->bs, ia->s->id, &ia->s->d);
}

static enum store_err uninstall(void *arg)
{
    struct install_arg *ia = arg;
    return blobstore_blob_remove(ia->bs, &ia->s->d);
}

/* Stores manifest d of repo (children first) with its blobs; tag may be NULL. */
static enum store_err store_manifest(struct importer *im, const char *repo, const struct digest *d,
                                     const char *media_type, const char *tag, bool apply,
                                     struct archive_stats *st, int depth)
{
    struct staged *s = find_staged(im, d);
    if (s == NULL || depth > ARCHIVE_DEPTH_MAX) {
        snprintf(im->err, im->errcap, "%s: manifest %s is not in the archive", repo, d->str);
        return STORE_EINVAL;
    }
    char *bytes = malloc(s->size + 1);
    if (bytes == NULL || s->size > MANIFEST_MAX) {
        free(bytes);
        return archive_fail(im->err, im->errcap, STORE_ETOOBIG, "manifest too large");
    }
    enum store_err rc = blobstore_upload_read(im->bs, s->id, bytes, s->size);
    struct manifest_info info;
    const char *why = NULL;
    if (rc == STORE_OK)
        rc = manifest_parse(media_type, bytes, s->size, &info, &why);
    if (rc != STORE_OK) {
        snprintf(im->err, im->errcap, "%s: manifest %s: %s", repo, d->str,
                 why != NULL ? why : store_strerror(rc));
        free(bytes);
        return rc;
    }
    for (size_t i = 0; rc == STORE_OK && i < info.nrefs; i++) {
        const struct manifest_ref *ref = &info.refs[i];
        if (ref->is_manifest) {
            struct staged *c = find_staged(im, &ref->digest);
            char cmt[MEDIA_TYPE_MAX + 1] = "";
            /* a child's media type: from its descriptor in the parent */
            json_t *doc = json_loadb(bytes, s->size, 0, NULL);
            json_t *arr = json_object_get(doc, "manifests");
            size_t j;
            json_t *desc;
            json_array_foreach(arr, j, desc)
            {
                const char *dg = json_string_value(json_object_get(desc, "digest"));
                const char *mt = json_string_value(json_object_get(desc, "mediaType"));
                if (dg != NULL && mt != NULL && strcmp(dg, ref->digest.str) == 0)
                    snprintf(cmt, sizeof(cmt), "%s", mt);
            }
            json_decref(doc);
            (void)c;
            rc = store_manifest(im, repo, &ref->digest, cmt, NULL, apply, st, depth + 1);
            continue;
        }
        struct staged *b = find_staged(im, &ref->digest);
        if (b == NULL) {
            if (ref->optional)
                continue;
            snprintf(im->err, im->errcap, "%s: blob %s is not in the archive", repo,
                     ref->digest.str);
            rc = STORE_EINVAL;
            break;
        }
        if (b->size != ref->size) {
            snprintf(im->err, im->errcap, "%s: blob %s has %llu bytes, its descriptor says %llu",
                     repo, ref->digest.str, (unsigned long long)b->size,
                     (unsigned long long)ref->size);
            rc = STORE_EINVAL;
            break;
        }
        if (apply) {
            struct install_arg ia = {b, im->bs};
            rc = index_blob_commit(im->idx, repo, &b->d, b->size, install, uninstall, &ia, NULL);
        }
    }
    if (rc == STORE_OK && apply) {
        const char *tags[1] = {tag};
        struct index_manifest_put m = {repo, *d, &info, bytes, s->size, tags, tag != NULL};
        size_t bad = 0;
        rc = index_manifest_put(im->idx, &m, &bad);
        if (rc != STORE_OK)
            snprintf(im->err, im->errcap, "%s: storing manifest %s: %s", repo, d->str,
                     store_strerror(rc));
        else
            st->manifests++;
    }
    manifest_info_free(&info);
    free(bytes);
    return rc;
}

enum store_err archive_import(struct index *idx, struct blobstore *bs, int in_fd,
                              const char *prefix, struct archive_stats *stats, char *err,
                              size_t errcap)
{
    struct importer im = {idx, bs, NULL, 0, 0, NULL, 0, err, errcap};
    struct tar_reader t;
    memset(&t, 0, sizeof(t));
    struct archive_stats st = {0, 0, 0, 0};
    struct plan_item *plan = NULL;
    size_t nplan = 0;
    json_t *index = NULL;
    enum store_err rc = STORE_ENOMEM;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t icap = ZSTD_DStreamInSize(), ocap = ZSTD_DStreamOutSize();
    char *ibuf = malloc(icap), *obuf = malloc(ocap);
    if (dctx == NULL || ibuf == NULL || obuf == NULL)
        goto out;
    rc = STORE_OK;
    size_t last = 1;
    for (;;) {
        ssize_t r = read(in_fd, ibuf, icap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = store_err_from_errno(errno);
            goto out;
        }
        if (r == 0)
            break;
        ZSTD_inBuffer in = {ibuf, (size_t)r, 0};
        while (in.pos < in.size && t.rc == STORE_OK) {
            ZSTD_outBuffer out = {obuf, ocap, 0};
            last = ZSTD_decompressStream(dctx, &out, &in);
            if (ZSTD_isError(last)) {
                rc = archive_fail(err, errcap, STORE_EINVAL, "the archive is not valid zstd data");
                goto out;
            }
            tar_feed(&im, &t, obuf, out.pos);
        }
        if (t.rc != STORE_OK) {
            rc = t.rc;
            if (err[0] == '\0')
                snprintf(err, errcap, "%s", store_strerror(rc));
            goto out;
        }
    }
    if (last != 0) {
        rc = archive_fail(err, errcap, STORE_EINVAL, "the archive ends early");
        goto out;
    }
    if (im.index_json == NULL) {
        rc = archive_fail(err, errcap, STORE_EINVAL, "the archive has no index.json");
        goto out;
    }
    index = json_loads(im.index_json, JSON_REJECT_DUPLICATES, NULL);
    json_t *mans = json_object_get(index, "manifests");
    if (!json_is_array(mans)) {
        rc = archive_fail(err, errcap, STORE_EINVAL, "index.json has no manifests");
        goto out;
    }
    plan = calloc(json_array_size(mans) + 1, sizeof(*plan));
    if (plan == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    size_t i;
    json_t *desc;
    json_array_foreach(mans, i, desc)
    {
        const char *ref = json_string_value(
            json_object_get(json_object_get(desc, "annotations"), REF_NAME));
        const char *dg = json_string_value(json_object_get(desc, "digest"));
        const char *mt = json_string_value(json_object_get(desc, "mediaType"));
        const char *colon = ref != NULL ? strrchr(ref, ':') : NULL;
        struct plan_item *p = &plan[nplan];
        if (dg == NULL || mt == NULL || digest_parse(&p->d, dg, strlen(dg)) != STORE_OK) {
            rc = archive_fail(err, errcap, STORE_EINVAL, "index.json: a descriptor is invalid");
            goto out;
        }
        if (colon == NULL)
            continue; /* an image without a "repo:tag" name has nowhere to go */
        int n = snprintf(p->repo, sizeof(p->repo), "%s%s%.*s", prefix ? prefix : "",
                         prefix ? "/" : "", (int)(colon - ref), ref);
        snprintf(p->tag, sizeof(p->tag), "%s", colon + 1);
        snprintf(p->media_type, sizeof(p->media_type), "%s", mt);
        if (n < 0 || (size_t)n >= sizeof(p->repo) || !name_valid(p->repo, strlen(p->repo)) ||
            !tag_valid(p->tag, strlen(p->tag))) {
            snprintf(err, errcap, "index.json: '%s' is no repository:tag", ref);
            rc = STORE_EINVAL;
            goto out;
        }
        nplan++;
    }
    /* first every image is checked against the archive; only then is anything stored */
    for (int apply = 0; rc == STORE_OK && apply < 2; apply++)
        for (size_t k = 0; rc == STORE_OK && k < nplan; k++)
            rc = store_manifest(&im, plan[k].repo, &plan[k].d, plan[k].media_type, plan[k].tag,
                                apply == 1, &st, 0);
    if (rc == STORE_OK) {
        st.images = nplan;
        st.blobs = im.n;
        for (size_t k = 0; k < im.n; k++)
            st.bytes += im.s[k].size;
        *stats = st;
    }
out:
    if (t.up != NULL) {
        (void)upload_remove(bs, upload_id(t.up));
        upload_close(t.up);
    }
    for (size_t k = 0; k < im.n; k++)
        (void)upload_remove(bs, im.s[k].id);
    free(im.s);
    free(im.index_json);
    free(plan);
    json_decref(index);
    ZSTD_freeDCtx(dctx);
    free(ibuf);
    free(obuf);
    return rc;
}
