/* ocireg export: a tar stream through zstd (the import is in archive_import.c). */
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

#define COPY_BUF (1u << 20)

struct zout {
    ZSTD_CCtx *cctx;
    int fd;
    char *buf;
    size_t cap;
    uint64_t in_bytes;
    archive_progress_cb progress;
    void *arg;
};

static enum store_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return store_err_from_errno(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return STORE_OK;
}

static enum store_err zwrite(struct zout *z, const void *data, size_t len, ZSTD_EndDirective end)
{
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {z->buf, z->cap, 0};
        size_t left = ZSTD_compressStream2(z->cctx, &out, &in, end);
        if (ZSTD_isError(left))
            return STORE_EIO;
        enum store_err rc = write_all(z->fd, z->buf, out.pos);
        if (rc != STORE_OK)
            return rc;
        bool done = end == ZSTD_e_continue ? in.pos == in.size : left == 0;
        if (done)
            break;
    }
    z->in_bytes += len;
    if (z->progress != NULL)
        z->progress(z->in_bytes, z->arg);
    return STORE_OK;
}

static void checksum(unsigned char *h)
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

static enum store_err tar_header(struct zout *z, const char *name, uint64_t size, char type)
{
    unsigned char h[TAR_BLOCK];
    memset(h, 0, sizeof(h));
    size_t nl = strlen(name);
    if (nl > 100 || size > TAR_OCTAL_SIZE_MAX) {
        /* a pax header carries a long path (sha512 blobs) and a size past the octal field */
        char rec[400], num[24];
        size_t rl = 0, n = 1;
        if (nl > 100) {
            n = tar_pax_record(rec, sizeof(rec), "path", name);
            rl += n;
        }
        if (n != 0 && size > TAR_OCTAL_SIZE_MAX) {
            snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
            n = tar_pax_record(rec + rl, sizeof(rec) - rl, "size", num);
            rl += n;
        }
        if (n == 0)
            return STORE_EINVAL;
        enum store_err rc = tar_header(z, "PaxHeader", (uint64_t)rl, 'x');
        if (rc == STORE_OK)
            rc = zwrite(z, rec, rl, ZSTD_e_continue);
        char pad[TAR_BLOCK] = {0};
        if (rc == STORE_OK && rl % TAR_BLOCK)
            rc = zwrite(z, pad, TAR_BLOCK - rl % TAR_BLOCK, ZSTD_e_continue);
        if (rc != STORE_OK)
            return rc;
        nl = nl > 100 ? 100 : nl;
    }
    memcpy(h, name, nl);
    tar_number_put(h + 100, 8, 0644);
    tar_number_put(h + 108, 8, 0);
    tar_number_put(h + 116, 8, 0);
    tar_number_put(h + 124, 12, size);
    tar_number_put(h + 136, 12, 0);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    checksum(h);
    return zwrite(z, h, sizeof(h), ZSTD_e_continue);
}

static enum store_err tar_pad(struct zout *z, uint64_t size)
{
    static const char zeros[TAR_BLOCK];
    if (size % TAR_BLOCK == 0)
        return STORE_OK;
    return zwrite(z, zeros, TAR_BLOCK - size % TAR_BLOCK, ZSTD_e_continue);
}

static enum store_err tar_file(struct zout *z, const char *name, const void *data, size_t len)
{
    enum store_err rc = tar_header(z, name, len, '0');
    if (rc == STORE_OK)
        rc = zwrite(z, data, len, ZSTD_e_continue);
    if (rc == STORE_OK)
        rc = tar_pad(z, len);
    return rc;
}

static void blob_name(char *out, size_t cap, const struct digest *d)
{
    snprintf(out, cap, "blobs/%s/%s", digest_alg_name(d->alg), digest_hex(d));
}

/* A set of digests already written. */
struct seen {
    struct digest *d;
    size_t n, cap;
};

static bool seen_add(struct seen *s, const struct digest *d)
{
    for (size_t i = 0; i < s->n; i++)
        if (digest_equal(&s->d[i], d))
            return false;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct digest *p = realloc(s->d, cap * sizeof(*p));
        if (p == NULL)
            return false;
        s->d = p;
        s->cap = cap;
    }
    s->d[s->n++] = *d;
    return true;
}

struct exporter {
    struct index *idx;
    struct blobstore *bs;
    struct zout z;
    struct seen seen;
    struct archive_stats *st;
    char *copybuf;
    char *err;
    size_t errcap;
};

static enum store_err export_blob(struct exporter *e, const struct digest *d, bool optional)
{
    if (!seen_add(&e->seen, d))
        return STORE_OK;
    int fd = -1;
    uint64_t size = 0;
    enum store_err rc = blobstore_blob_open(e->bs, d, &fd, &size);
    if (rc == STORE_ENOENT && optional)
        return STORE_OK;
    if (rc != STORE_OK) {
        snprintf(e->err, e->errcap, "blob %s: %s", d->str, store_strerror(rc));
        return rc;
    }
    char name[DIGEST_STR_MAX + 16];
    blob_name(name, sizeof(name), d);
    rc = tar_header(&e->z, name, size, '0');
    uint64_t off = 0;
    while (rc == STORE_OK && off < size) {
        ssize_t n = pread(fd, e->copybuf, COPY_BUF, (off_t)off);
        if (n <= 0) {
            rc = n == 0 ? STORE_EIO : store_err_from_errno(errno);
            break;
        }
        rc = zwrite(&e->z, e->copybuf, (size_t)n, ZSTD_e_continue);
        off += (uint64_t)n;
    }
    close(fd);
    if (rc == STORE_OK)
        rc = tar_pad(&e->z, size);
    e->st->blobs++;
    e->st->bytes += size;
    return rc;
}

/* A manifest and everything it references, children first. */
static enum store_err export_manifest(struct exporter *e, const char *repo, const struct digest *d,
                                      char *media_type, size_t mtcap, uint64_t *size, int depth)
{
    if (depth > ARCHIVE_DEPTH_MAX)
        return archive_fail(e->err, e->errcap, STORE_EINVAL, "indexes nested too deep");
    struct index_manifest m;
    enum store_err rc = index_manifest_get(e->idx, repo, d, true, &m);
    if (rc != STORE_OK) {
        snprintf(e->err, e->errcap, "%s@%s: %s", repo, d->str, store_strerror(rc));
        return rc;
    }
    snprintf(media_type, mtcap, "%s", m.media_type);
    *size = m.size;
    struct manifest_info info;
    const char *why;
    rc = manifest_parse(m.media_type, m.bytes, m.size, &info, &why);
    if (rc != STORE_OK) {
        free(m.bytes);
        snprintf(e->err, e->errcap, "%s@%s: %s", repo, d->str, why ? why : "unreadable");
        return rc;
    }
    for (size_t i = 0; rc == STORE_OK && i < info.nrefs; i++) {
        const struct manifest_ref *ref = &info.refs[i];
        if (ref->is_manifest) {
            char cmt[MEDIA_TYPE_MAX + 1];
            uint64_t csize;
            rc = export_manifest(e, repo, &ref->digest, cmt, sizeof(cmt), &csize, depth + 1);
        } else {
            rc = export_blob(e, &ref->digest, ref->optional);
        }
    }
    manifest_info_free(&info);
    if (rc == STORE_OK && seen_add(&e->seen, d)) {
        char name[DIGEST_STR_MAX + 16];
        blob_name(name, sizeof(name), d);
        rc = tar_file(&e->z, name, m.bytes, m.size);
        e->st->manifests++;
    }
    free(m.bytes);
    return rc;
}

struct tag_collect {
    char (*tags)[TAG_MAX_LEN + 1];
    size_t n, cap;
};

static int collect_tag(const char *name, size_t len, void *arg)
{
    struct tag_collect *t = arg;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char(*p)[TAG_MAX_LEN + 1] = realloc(t->tags, cap * sizeof(*p));
        if (p == NULL)
            return 1;
        t->tags = p;
        t->cap = cap;
    }
    snprintf(t->tags[t->n++], TAG_MAX_LEN + 1, "%.*s", (int)len, name);
    return 0;
}

struct repo_collect {
    struct archive_ref *refs;
    size_t n, cap;
};

static int collect_repo(const char *name, size_t len, void *arg)
{
    struct repo_collect *r = arg;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct archive_ref *p = realloc(r->refs, cap * sizeof(*p));
        if (p == NULL)
            return 1;
        r->refs = p;
        r->cap = cap;
    }
    memset(&r->refs[r->n], 0, sizeof(r->refs[0]));
    snprintf(r->refs[r->n++].repo, NAME_MAX_LEN + 1, "%.*s", (int)len, name);
    return 0;
}

static enum store_err export_tag(struct exporter *e, json_t *manifests, const char *repo,
                                 const char *tag)
{
    struct digest d;
    enum store_err rc = index_tag_get(e->idx, repo, tag, &d);
    if (rc != STORE_OK) {
        snprintf(e->err, e->errcap, "%s:%s: %s", repo, tag, store_strerror(rc));
        return rc;
    }
    char mt[MEDIA_TYPE_MAX + 1];
    uint64_t size = 0;
    rc = export_manifest(e, repo, &d, mt, sizeof(mt), &size, 0);
    if (rc != STORE_OK)
        return rc;
    char ref[NAME_MAX_LEN + TAG_MAX_LEN + 2];
    snprintf(ref, sizeof(ref), "%s:%s", repo, tag);
    json_array_append_new(manifests, json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", mt,
                                               "digest", d.str, "size", (json_int_t)size,
                                               "annotations", REF_NAME, ref));
    e->st->images++;
    return STORE_OK;
}

enum store_err archive_export(struct index *idx, struct blobstore *bs,
                              const struct archive_ref *refs, size_t n, int out_fd,
                              int threads, struct archive_stats *stats,
                              archive_progress_cb progress, void *arg, char *err, size_t errcap)
{
    struct archive_stats st = {0, 0, 0, 0};
    struct exporter e = {idx, bs, {NULL, out_fd, NULL, 0, 0, progress, arg}, {NULL, 0, 0}, &st,
                         NULL, err, errcap};
    struct repo_collect all = {NULL, 0, 0};
    json_t *manifests = json_array();
    enum store_err rc = STORE_ENOMEM;
    e.z.cctx = ZSTD_createCCtx();
    e.z.cap = ZSTD_CStreamOutSize();
    e.z.buf = malloc(e.z.cap);
    e.copybuf = malloc(COPY_BUF);
    if (e.z.cctx == NULL || e.z.buf == NULL || e.copybuf == NULL || manifests == NULL)
        goto out;
    ZSTD_CCtx_setParameter(e.z.cctx, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(e.z.cctx, ZSTD_c_checksumFlag, 1);
    if (threads > 0)
        (void)ZSTD_CCtx_setParameter(e.z.cctx, ZSTD_c_nbWorkers, threads); /* needs MT zstd */
    if (n == 0) {
        bool more;
        rc = index_repos_list(idx, NULL, SIZE_MAX, collect_repo, &all, &more);
        if (rc != STORE_OK)
            goto out;
        refs = all.refs;
        n = all.n;
    }
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    rc = tar_file(&e.z, "oci-layout", layout, sizeof(layout) - 1);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        if (refs[i].tag[0] != '\0') {
            rc = export_tag(&e, manifests, refs[i].repo, refs[i].tag);
            continue;
        }
        struct tag_collect tags = {NULL, 0, 0};
        bool more;
        rc = index_tags_list(idx, refs[i].repo, NULL, SIZE_MAX, collect_tag, &tags, &more);
        if (rc != STORE_OK)
            snprintf(err, errcap, "%s: %s", refs[i].repo, store_strerror(rc));
        for (size_t t = 0; rc == STORE_OK && t < tags.n; t++)
            rc = export_tag(&e, manifests, refs[i].repo, tags.tags[t]);
        free(tags.tags);
    }
    if (rc != STORE_OK)
        goto out;
    json_t *index = json_pack("{s:i, s:s, s:O}", "schemaVersion", 2, "mediaType",
                              MT_OCI_INDEX, "manifests", manifests);
    char *text = index != NULL ? json_dumps(index, JSON_COMPACT) : NULL;
    json_decref(index);
    rc = text != NULL ? tar_file(&e.z, "index.json", text, strlen(text)) : STORE_ENOMEM;
    free(text);
    if (rc == STORE_OK) {
        static const char end[2 * TAR_BLOCK];
        rc = zwrite(&e.z, end, sizeof(end), ZSTD_e_end);
    }
    if (rc == STORE_OK)
        *stats = st;
out:
    if (rc != STORE_OK && err[0] == '\0')
        snprintf(err, errcap, "%s", store_strerror(rc));
    json_decref(manifests);
    ZSTD_freeCCtx(e.z.cctx);
    free(e.z.buf);
    free(e.copybuf);
    free(e.seen.d);
    free(all.refs);
    return rc;
}
