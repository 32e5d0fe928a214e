/*
 * ocireg import: an OCI image layout tar, compressed with zstd, into the registry.
 *
 * Work is linear in the archive's distinct content: every digest the archive holds or
 * declares has one record in a hash map; a manifest is checked once (per media type it is
 * referenced as) and stored once per repository, however many indexes list it.
 *
 * What an import may write is bounded. From a regular file a first pass reads the archive
 * without writing anything and learns the size every descriptor declares (index.json and
 * each manifest in the archive); the second pass stages declared blobs only, and refuses one
 * whose entry is not its declared size before writing a byte of it. From a pipe (one pass) a
 * blob is checked when a manifest read earlier declared it. Either way the archive may unpack
 * to at most max_size bytes, and no blob is staged that would leave less than the reserve
 * free on the root's filesystem.
 *
 * Staged blobs are upload data files whose handles are closed once their digest is verified:
 * the number of open descriptors stays the same whatever the number of blobs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "storage/archive.h"
#include "storage/archive_int.h"
#include "storage/manifest.h"

#define INDEX_JSON_MAX (16u << 20)
/* While a large blob is written, the free space is looked at again after this many bytes. */
#define SPACE_CHECK_STEP (64u << 20)
#define NO_SIZE UINT64_MAX

/* ---- one record per digest the archive holds or declares ---- */

struct rec {
    struct digest d;
    uint64_t declared;          /* the size its descriptors give; NO_SIZE: none seen */
    uint64_t size;              /* bytes of its entry (first pass) or of its staged file */
    char id[UPLOAD_ID_LEN + 1]; /* its staged data file ("" = not staged) */
    bool in_survey;             /* the first pass saw its entry */
    bool counted;               /* in the stats */
    uint8_t checked;            /* the media-type variants it was checked as (bits) */
    uint8_t height;             /* nested indexes below it, once checked */
    uint32_t stored_in;         /* the repository it was last stored in (1 + its number) */
};

struct recs {
    struct rec *v; /* in order of first mention */
    size_t n, cap;
    uint32_t *slot; /* open addressing: 1 + index into v, 0 = free */
    size_t nslots;  /* a power of two, at least twice n */
    uint64_t key;   /* random per import: digests a manifest declares are chosen by its author */
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t rec_hash(const struct recs *r, const struct digest *d)
{
    uint64_t h = r->key;
    size_t len = strlen(d->str);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = 0;
        memcpy(&w, d->str + i, len - i < 8 ? len - i : 8);
        h = mix64(h ^ w);
    }
    return (size_t)h;
}

/* The record of d, or NULL. BORROWED: valid until the next rec_add. */
static struct rec *rec_find(const struct recs *r, const struct digest *d)
{
    if (r->nslots == 0)
        return NULL;
    for (size_t i = rec_hash(r, d) & (r->nslots - 1);; i = (i + 1) & (r->nslots - 1)) {
        uint32_t s = r->slot[i];
        if (s == 0)
            return NULL;
        if (digest_equal(&r->v[s - 1].d, d))
            return &r->v[s - 1];
    }
}

static void rec_place(struct recs *r, size_t idx)
{
    size_t i = rec_hash(r, &r->v[idx].d) & (r->nslots - 1);
    while (r->slot[i] != 0)
        i = (i + 1) & (r->nslots - 1);
    r->slot[i] = (uint32_t)(idx + 1);
}

/* The record of d, made when missing. BORROWED: valid until the next rec_add. */
static enum store_err rec_add(struct recs *r, const struct digest *d, struct rec **out)
{
    struct rec *found = rec_find(r, d);
    if (found != NULL) {
        *out = found;
        return STORE_OK;
    }
    if (r->n >= UINT32_MAX - 1)
        return STORE_ETOOBIG;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct rec *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL)
            return STORE_ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    if (2 * (r->n + 1) > r->nslots) {
        size_t nslots = r->nslots ? r->nslots * 2 : 512;
        uint32_t *slot = calloc(nslots, sizeof(*slot));
        if (slot == NULL)
            return STORE_ENOMEM;
        free(r->slot);
        r->slot = slot;
        r->nslots = nslots;
        for (size_t i = 0; i < r->n; i++)
            rec_place(r, i);
    }
    struct rec *e = &r->v[r->n];
    memset(e, 0, sizeof(*e));
    e->d = *d;
    e->declared = NO_SIZE;
    rec_place(r, r->n++);
    *out = e;
    return STORE_OK;
}

/* ---- the importer ---- */

struct importer {
    struct index *idx;
    struct blobstore *bs;
    uint64_t max_size, reserve;
    struct recs recs;
    bool survey;   /* this pass only reads (the first of two) */
    bool surveyed; /* a first pass ran: every declaration is known */
    char *index_json;
    size_t index_len;
    char *small; /* the data of an entry small enough to be a manifest (MANIFEST_MAX) */
    size_t small_len;
    char *err;
    size_t errcap;
};

/*
 * A descriptor of d with size: remembered, and held against what is known of d already. Two
 * sizes for one digest, or a staged blob of another size, refuse the archive.
 */
static enum store_err declare(struct importer *im, const struct digest *d, uint64_t size)
{
    struct rec *r;
    enum store_err rc = rec_add(&im->recs, d, &r);
    if (rc != STORE_OK)
        return rc;
    if (r->declared != NO_SIZE && r->declared != size) {
        snprintf(im->err, im->errcap, "blob %s is declared with two sizes, %llu and %llu", d->str,
                 (unsigned long long)r->declared, (unsigned long long)size);
        return STORE_EINVAL;
    }
    r->declared = size;
    if (r->id[0] != '\0' && r->size != size) {
        snprintf(im->err, im->errcap, "blob %s has %llu bytes, its descriptor says %llu", d->str,
                 (unsigned long long)r->size, (unsigned long long)size);
        return STORE_EINVAL;
    }
    return STORE_OK;
}

/* The descriptors of a blob that parses as a manifest or index (anything else declares none). */
static enum store_err declare_refs(struct importer *im, const char *bytes, size_t len)
{
    struct manifest_info info;
    const char *why;
    if (manifest_parse(NULL, bytes, len, &info, &why) != STORE_OK)
        return STORE_OK;
    enum store_err rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < info.nrefs; i++)
        rc = declare(im, &info.refs[i].digest, info.refs[i].size);
    manifest_info_free(&info);
    return rc;
}

/* The descriptors of index.json: what its images are. */
static enum store_err declare_index(struct importer *im)
{
    json_t *index = json_loadb(im->index_json, im->index_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *mans = json_object_get(index, "manifests");
    enum store_err rc = STORE_OK;
    size_t i;
    json_t *desc;
    json_array_foreach(mans, i, desc)
    {
        const char *dg = json_string_value(json_object_get(desc, "digest"));
        json_t *size = json_object_get(desc, "size");
        struct digest d;
        if (dg != NULL && json_is_integer(size) && json_integer_value(size) >= 0 &&
            digest_parse(&d, dg, strlen(dg)) == STORE_OK)
            rc = declare(im, &d, (uint64_t)json_integer_value(size));
        if (rc != STORE_OK)
            break;
    }
    json_decref(index);
    return rc;
}

/* Free space left after writing `more` bytes must stay above the reserve. */
static enum store_err space_check(struct importer *im, const struct digest *d, uint64_t more)
{
    uint64_t avail = 0, total = 0;
    enum store_err rc = blobstore_space(im->bs, &avail, &total);
    if (rc != STORE_OK)
        return rc;
    if (avail >= more && avail - more >= im->reserve)
        return STORE_OK;
    snprintf(im->err, im->errcap,
             "blob %s: %llu more bytes would leave less than the --reserve of %llu bytes free "
             "(%llu available)",
             d->str, (unsigned long long)more, (unsigned long long)im->reserve,
             (unsigned long long)avail);
    return STORE_ENOSPC;
}

/* The tar reader: one entry at a time, its data handed over in pieces. */
struct tar_reader {
    unsigned char hdr[TAR_BLOCK];
    size_t hdr_have;
    uint64_t pos; /* tar bytes consumed */
    uint64_t left, pad;
    char name[300];
    char pax_path[300];
    bool pax_has_size; /* the next entry's size, from a pax "size" record */
    uint64_t pax_size;
    char type;
    bool in_data, done;
    /* the entry being read */
    struct upload *up;
    struct digest d;
    uint64_t unchecked; /* bytes written since the free space was last looked at */
    bool want_blob, want_small, want_index, want_pax;
    char pax[1024];
    size_t pax_len;
    enum store_err rc;
};


/* A blobs/<alg>/<hex> entry of t->left bytes: read it (first pass), stage it, or skip it. */
static void blob_begin(struct importer *im, struct tar_reader *t)
{
    struct rec *r;
    t->rc = rec_add(&im->recs, &t->d, &r);
    if (t->rc != STORE_OK)
        return;
    if (im->survey) {
        if (r->in_survey)
            return; /* a duplicate entry: the first is kept */
        r->in_survey = true;
        r->size = t->left;
        t->want_small = t->left <= MANIFEST_MAX;
        im->small_len = 0;
        return;
    }
    if (r->id[0] != '\0')
        return; /* a duplicate entry: the first is kept */
    if (r->declared == NO_SIZE && im->surveyed)
        return; /* nothing in the archive refers to it */
    if (r->declared != NO_SIZE && r->declared != t->left) {
        snprintf(im->err, im->errcap,
                 "blob %s: the archive holds %llu bytes, its descriptor says %llu", t->d.str,
                 (unsigned long long)t->left, (unsigned long long)r->declared);
        t->rc = STORE_EINVAL;
        return;
    }
    t->rc = space_check(im, &t->d, t->left);
    if (t->rc != STORE_OK)
        return;
    char id[UPLOAD_ID_LEN + 1];
    if (!upload_id_new(id)) {
        t->rc = STORE_EIO;
        return;
    }
    t->rc = upload_open(im->bs, id, t->d.alg, true, &t->up);
    t->want_blob = t->rc == STORE_OK;
    t->want_small = t->want_blob && !im->surveyed && t->left <= MANIFEST_MAX;
    t->unchecked = 0;
    im->small_len = 0;
}

static void entry_begin(struct importer *im, struct tar_reader *t)
{
    t->type = (char)t->hdr[156];
    if (!tar_number_get(t->hdr + 124, 12, &t->left)) {
        t->rc = archive_fail(im->err, im->errcap, STORE_EINVAL, "a tar header is damaged");
        return;
    }
    if (t->pax_has_size) {
        t->left = t->pax_size;
        t->pax_has_size = false;
    }
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
    t->want_blob = t->want_small = t->want_index = t->want_pax = false;
    /* the whole entry is known to fit, or the archive is refused before it is read */
    if (t->left > im->max_size || t->pos > im->max_size - t->left) {
        snprintf(im->err, im->errcap,
                 "%s: the archive unpacks to more than the --max-size of %llu bytes", name,
                 (unsigned long long)im->max_size);
        t->rc = STORE_ETOOBIG;
        return;
    }
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
    blob_begin(im, t);
}

static void entry_data(struct importer *im, struct tar_reader *t, const char *p, size_t n)
{
    if (t->want_blob) {
        t->unchecked += n;
        if (t->unchecked >= SPACE_CHECK_STEP) {
            /* someone else may be filling the disk too */
            t->unchecked = 0;
            t->rc = space_check(im, &t->d, t->left);
        }
        if (t->rc == STORE_OK)
            t->rc = upload_write(t->up, p, n);
    }
    if (t->want_small) {
        memcpy(im->small + im->small_len, p, n);
        im->small_len += n;
    } else if (t->want_index) {
        memcpy(im->index_json + im->index_len, p, n);
        im->index_len += n;
    } else if (t->want_pax && t->pax_len + n < sizeof(t->pax)) {
        memcpy(t->pax + t->pax_len, p, n);
        t->pax_len += n;
    }
}

/* The end of a blob entry of the first pass: a manifest's descriptors are learnt. */
static void survey_end(struct importer *im, struct tar_reader *t)
{
    struct digest got;
    t->rc = digest_of(t->d.alg, im->small, im->small_len, &got);
    if (t->rc != STORE_OK)
        return;
    if (!digest_equal(&got, &t->d)) {
        snprintf(im->err, im->errcap, "%s: content does not match its digest", t->d.str);
        t->rc = STORE_EDIGEST;
        return;
    }
    t->rc = declare_refs(im, im->small, im->small_len);
}

/* The end of a staged blob entry: verified, its file closed, and remembered. */
static void stage_end(struct importer *im, struct tar_reader *t)
{
    if (t->rc == STORE_OK) {
        t->rc = upload_verify(t->up, &t->d);
        if (t->rc == STORE_EDIGEST)
            snprintf(im->err, im->errcap, "%s: content does not match its digest", t->d.str);
    }
    struct rec *r = rec_find(&im->recs, &t->d);
    if (t->rc == STORE_OK && r != NULL) {
        memcpy(r->id, upload_id(t->up), sizeof(r->id));
        r->size = upload_offset(t->up);
    } else {
        (void)upload_remove(im->bs, upload_id(t->up));
    }
    upload_close(t->up);
    t->up = NULL;
    /* one pass only: what a manifest declares is learnt as it comes */
    if (t->rc == STORE_OK && t->want_small)
        t->rc = declare_refs(im, im->small, im->small_len);
}

/* The records "LEN key=value\n" of a pax header: path and size matter to the next entry. */
static enum store_err pax_records(struct importer *im, struct tar_reader *t)
{
    size_t pos = 0;
    while (pos < t->pax_len) {
        const char *rec = t->pax + pos;
        size_t avail = t->pax_len - pos, digits = 0;
        uint64_t len = 0;
        while (digits < avail && digits < 6 && rec[digits] >= '0' && rec[digits] <= '9')
            len = len * 10 + (uint64_t)(rec[digits++] - '0');
        if (digits == 0 || digits >= avail || rec[digits] != ' ' || len <= digits + 1 ||
            len > avail || rec[len - 1] != '\n')
            return archive_fail(im->err, im->errcap, STORE_EINVAL, "a pax header is damaged");
        const char *kv = rec + digits + 1, *end = rec + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (eq == NULL)
            return archive_fail(im->err, im->errcap, STORE_EINVAL, "a pax header is damaged");
        size_t kl = (size_t)(eq - kv), vl = (size_t)(end - eq - 1);
        if (kl == 4 && memcmp(kv, "path", 4) == 0) {
            if (vl >= sizeof(t->pax_path))
                return archive_fail(im->err, im->errcap, STORE_EINVAL, "a path is too long");
            memcpy(t->pax_path, eq + 1, vl);
            t->pax_path[vl] = '\0';
        } else if (kl == 4 && memcmp(kv, "size", 4) == 0) {
            if (!tar_decimal_get(eq + 1, vl, &t->pax_size))
                return archive_fail(im->err, im->errcap, STORE_EINVAL, "a pax size is damaged");
            t->pax_has_size = true;
        }
        pos += (size_t)len;
    }
    return STORE_OK;
}

static void entry_end(struct importer *im, struct tar_reader *t)
{
    if (t->want_blob) {
        stage_end(im, t);
    } else if (t->want_small) {
        survey_end(im, t);
    } else if (t->want_index) {
        im->index_json[im->index_len] = '\0';
        t->rc = declare_index(im);
    } else if (t->want_pax) {
        t->rc = pax_records(im, t);
    }
    t->want_blob = t->want_small = t->want_index = t->want_pax = false;
}

/* Feeds decompressed bytes to the tar reader. */
static void tar_feed(struct importer *im, struct tar_reader *t, const char *p, size_t n)
{
    while (n > 0 && t->rc == STORE_OK && !t->done) {
        if (!t->in_data) {
            size_t take = TAR_BLOCK - t->hdr_have < n ? TAR_BLOCK - t->hdr_have : n;
            memcpy(t->hdr + t->hdr_have, p, take);
            t->hdr_have += take;
            t->pos += take;
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
            uint64_t want = 0;
            bool sum_ok = tar_number_get(t->hdr + 148, 8, &want);
            memset(t->hdr + 148, ' ', 8);
            unsigned sum = 0;
            for (int i = 0; i < TAR_BLOCK; i++)
                sum += t->hdr[i];
            if (!sum_ok || sum != want) {
                t->rc = archive_fail(im->err, im->errcap, STORE_EINVAL, "a tar header is damaged");
                return;
            }
            entry_begin(im, t);
            t->in_data = true;
            if (t->left == 0 && t->pad == 0) {
                if (t->rc == STORE_OK)
                    entry_end(im, t);
                t->in_data = false;
            }
            continue;
        }
        if (t->left > 0) {
            size_t take = t->left < n ? (size_t)t->left : n;
            entry_data(im, t, p, take);
            t->left -= take;
            t->pos += take;
            p += take;
            n -= take;
            if (t->left == 0 && t->rc == STORE_OK)
                entry_end(im, t);
        } else {
            size_t take = t->pad < n ? (size_t)t->pad : n;
            t->pad -= take;
            t->pos += take;
            p += take;
            n -= take;
        }
        if (t->left == 0 && t->pad == 0)
            t->in_data = false;
    }
}

/* Reads the archive from in_fd once, through the tar reader (a first pass when im->survey). */
static enum store_err read_pass(struct importer *im, ZSTD_DCtx *dctx, int in_fd, char *ibuf,
                                size_t icap, char *obuf, size_t ocap)
{
    struct tar_reader t;
    memset(&t, 0, sizeof(t));
    enum store_err rc = STORE_OK;
    uint64_t unpacked = 0;
    size_t last = 1;
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    while (rc == STORE_OK) {
        ssize_t r = read(in_fd, ibuf, icap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = store_err_from_errno(errno);
            break;
        }
        if (r == 0)
            break;
        ZSTD_inBuffer in = {ibuf, (size_t)r, 0};
        while (in.pos < in.size && t.rc == STORE_OK) {
            ZSTD_outBuffer out = {obuf, ocap, 0};
            last = ZSTD_decompressStream(dctx, &out, &in);
            if (ZSTD_isError(last)) {
                rc = archive_fail(im->err, im->errcap, STORE_EINVAL,
                                  "the archive is not valid zstd data");
                break;
            }
            /* what follows the tar's end is unpacked too: it counts */
            unpacked += out.pos;
            if (unpacked > im->max_size) {
                snprintf(im->err, im->errcap,
                         "the archive unpacks to more than the --max-size of %llu bytes",
                         (unsigned long long)im->max_size);
                rc = STORE_ETOOBIG;
                break;
            }
            tar_feed(im, &t, obuf, out.pos);
        }
        if (rc == STORE_OK)
            rc = t.rc;
    }
    if (rc == STORE_OK && last != 0)
        rc = archive_fail(im->err, im->errcap, STORE_EINVAL, "the archive ends early");
    if (t.up != NULL) {
        (void)upload_remove(im->bs, upload_id(t.up));
        upload_close(t.up);
    }
    return rc;
}

/* ---- checking and storing the images ---- */

struct plan_item {
    char repo[NAME_MAX_LEN + 1];
    char tag[TAG_MAX_LEN + 1];
    struct digest d;
    char media_type[MEDIA_TYPE_MAX + 1];
    size_t pos; /* in index.json */
};

/* Repositories together (each is stored in turn), index.json's order within each. */
static int plan_cmp(const void *a, const void *b)
{
    const struct plan_item *x = a, *y = b;
    int c = strcmp(x->repo, y->repo);
    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * manifest_parse reads the media type of a manifest's descriptor only when it is one it
 * knows: a manifest checked as one of these variants is good as that variant.
 */
static uint8_t variant(const char *mt)
{
    static const char *const known[] = {MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST,
                                        MT_DOCKER_LIST};
    size_t n = strcspn(mt, ";");
    while (n > 0 && (mt[n - 1] == ' ' || mt[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i]) == n && strncmp(mt, known[i], n) == 0)
            return (uint8_t)(2u << i);
    return 1;
}

struct install_arg {
    struct blobstore *bs;
    const struct rec *r;
};

static enum store_err install(void *arg)
{
    struct install_arg *ia = arg;
    return blobstore_upload_install(ia->bs, ia->r->id, &ia->r->d);
}

static enum store_err uninstall(void *arg)
{
    struct install_arg *ia = arg;
    return blobstore_blob_remove(ia->bs, &ia->r->d);
}

/* One walk over the images: checking them (repo_no == 0), or storing them into one repository. */
struct walk {
    const char *repo;
    uint32_t repo_no;
    struct archive_stats *st;
};

/* The media type of each child of an index, from its descriptor (NULL when not an index). */
static json_t *child_descriptors(const char *bytes, size_t len, json_t **doc)
{
    *doc = json_loadb(bytes, len, 0, NULL);
    json_t *arr = json_object_get(*doc, "manifests");
    return json_is_array(arr) ? arr : NULL;
}

/*
 * Checks, or stores, manifest d (children first) with its blobs; tag may be NULL. Each
 * manifest is checked once per variant and stored once per repository: the work is linear
 * in the distinct manifests, however often indexes list them. *height: the nested indexes
 * below d.
 */
static enum store_err walk_manifest(struct importer *im, const struct walk *w,
                                    const struct digest *d, const char *media_type, const char *tag,
                                    int depth, uint8_t *height)
{
    struct rec *r = rec_find(&im->recs, d);
    if (r == NULL || r->id[0] == '\0') {
        snprintf(im->err, im->errcap, "%s: manifest %s is not in the archive", w->repo, d->str);
        return STORE_EINVAL;
    }
    uint8_t var = variant(media_type);
    if (w->repo_no == 0 && (r->checked & var)) {
        *height = r->height;
        if (depth + r->height > ARCHIVE_DEPTH_MAX)
            return archive_fail(im->err, im->errcap, STORE_EINVAL, "indexes nested too deep");
        return STORE_OK;
    }
    if (w->repo_no != 0 && tag == NULL && r->stored_in == w->repo_no)
        return STORE_OK;
    if (depth > ARCHIVE_DEPTH_MAX)
        return archive_fail(im->err, im->errcap, STORE_EINVAL, "indexes nested too deep");
    if (r->size > MANIFEST_MAX)
        return archive_fail(im->err, im->errcap, STORE_ETOOBIG, "manifest too large");
    /* (records are only looked up from here on: r stays valid) */
    const struct digest dg = *d;
    size_t size = (size_t)r->size;
    char *bytes = malloc(size + 1);
    if (bytes == NULL)
        return STORE_ENOMEM;
    enum store_err rc = blobstore_upload_read(im->bs, r->id, bytes, size);
    struct manifest_info info;
    const char *why = NULL;
    if (rc == STORE_OK)
        rc = manifest_parse(media_type, bytes, size, &info, &why);
    if (rc != STORE_OK) {
        snprintf(im->err, im->errcap, "%s: manifest %s: %s", w->repo, dg.str,
                 why != NULL ? why : store_strerror(rc));
        free(bytes);
        return rc;
    }
    json_t *doc = NULL, *children = info.is_index ? child_descriptors(bytes, size, &doc) : NULL;
    uint8_t h = 0;
    for (size_t i = 0; rc == STORE_OK && i < info.nrefs; i++) {
        const struct manifest_ref *ref = &info.refs[i];
        if (ref->is_manifest) {
            /* an index's refs are its "manifests" array, in order */
            const char *cmt =
                json_string_value(json_object_get(json_array_get(children, i), "mediaType"));
            uint8_t ch = 0;
            rc = walk_manifest(im, w, &ref->digest, cmt != NULL ? cmt : "", NULL, depth + 1, &ch);
            if (ch + 1 > h)
                h = (uint8_t)(ch + 1);
            continue;
        }
        struct rec *b = rec_find(&im->recs, &ref->digest);
        if (b == NULL || b->id[0] == '\0') {
            if (ref->optional)
                continue;
            snprintf(im->err, im->errcap, "%s: blob %s is not in the archive", w->repo,
                     ref->digest.str);
            rc = STORE_EINVAL;
            break;
        }
        if (b->size != ref->size) {
            snprintf(im->err, im->errcap, "%s: blob %s has %llu bytes, its descriptor says %llu",
                     w->repo, ref->digest.str, (unsigned long long)b->size,
                     (unsigned long long)ref->size);
            rc = STORE_EINVAL;
            break;
        }
        if (w->repo_no == 0 || b->stored_in == w->repo_no)
            continue;
        struct install_arg ia = {im->bs, b};
        rc = index_blob_commit(im->idx, w->repo, &b->d, b->size, install, uninstall, &ia, NULL);
        if (rc == STORE_OK) {
            b->stored_in = w->repo_no;
            if (!b->counted) {
                b->counted = true;
                w->st->blobs++;
                w->st->bytes += b->size;
            }
        }
    }
    json_decref(doc);
    if (rc == STORE_OK && w->repo_no == 0) {
        r->checked |= var;
        r->height = h;
    } else if (rc == STORE_OK) {
        const char *tags[1] = {tag};
        struct index_manifest_put m = {w->repo, dg, &info, bytes, size, tags, tag != NULL};
        size_t bad = 0;
        rc = index_manifest_put(im->idx, &m, &bad);
        if (rc != STORE_OK) {
            snprintf(im->err, im->errcap, "%s: storing manifest %s: %s", w->repo, dg.str,
                     store_strerror(rc));
        } else {
            r->stored_in = w->repo_no;
            if (!r->counted) {
                r->counted = true;
                w->st->manifests++;
            }
        }
    }
    *height = h;
    manifest_info_free(&info);
    free(bytes);
    return rc;
}

/* The images index.json names "repo:tag" (prefix before each repository), sorted by repo. */
static enum store_err read_plan(struct importer *im, const char *prefix, struct plan_item **out,
                                size_t *nout)
{
    if (im->index_json == NULL)
        return archive_fail(im->err, im->errcap, STORE_EINVAL, "the archive has no index.json");
    enum store_err rc = STORE_EINVAL;
    struct plan_item *plan = NULL;
    size_t nplan = 0;
    json_t *index = json_loadb(im->index_json, im->index_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *mans = json_object_get(index, "manifests");
    if (!json_is_array(mans)) {
        archive_fail(im->err, im->errcap, STORE_EINVAL, "index.json has no manifests");
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
        const char *ref =
            json_string_value(json_object_get(json_object_get(desc, "annotations"), REF_NAME));
        const char *dg = json_string_value(json_object_get(desc, "digest"));
        const char *mt = json_string_value(json_object_get(desc, "mediaType"));
        const char *colon = ref != NULL ? strrchr(ref, ':') : NULL;
        struct plan_item *p = &plan[nplan];
        if (dg == NULL || mt == NULL || digest_parse(&p->d, dg, strlen(dg)) != STORE_OK) {
            archive_fail(im->err, im->errcap, STORE_EINVAL, "index.json: a descriptor is invalid");
            goto out;
        }
        if (colon == NULL)
            continue; /* an image without a "repo:tag" name has nowhere to go */
        int n = snprintf(p->repo, sizeof(p->repo), "%s%s%.*s", prefix ? prefix : "",
                         prefix ? "/" : "", (int)(colon - ref), ref);
        snprintf(p->tag, sizeof(p->tag), "%s", colon + 1);
        snprintf(p->media_type, sizeof(p->media_type), "%s", mt);
        p->pos = i;
        if (n < 0 || (size_t)n >= sizeof(p->repo) || !name_valid(p->repo, strlen(p->repo)) ||
            !tag_valid(p->tag, strlen(p->tag))) {
            snprintf(im->err, im->errcap, "index.json: '%s' is no repository:tag", ref);
            goto out;
        }
        nplan++;
    }
    qsort(plan, nplan, sizeof(*plan), plan_cmp);
    *out = plan;
    *nout = nplan;
    plan = NULL;
    rc = STORE_OK;
out:
    free(plan);
    json_decref(index);
    return rc;
}

/* First every image is checked against the archive; only then is anything stored. */
static enum store_err store_plan(struct importer *im, const struct plan_item *plan, size_t n,
                                 struct archive_stats *st)
{
    enum store_err rc = STORE_OK;
    uint8_t h;
    for (size_t k = 0; rc == STORE_OK && k < n; k++) {
        struct walk w = {plan[k].repo, 0, st};
        rc = walk_manifest(im, &w, &plan[k].d, plan[k].media_type, plan[k].tag, 0, &h);
    }
    uint32_t repo_no = 0;
    for (size_t k = 0; rc == STORE_OK && k < n; k++) {
        if (k == 0 || strcmp(plan[k].repo, plan[k - 1].repo) != 0)
            repo_no++;
        struct walk w = {plan[k].repo, repo_no, st};
        rc = walk_manifest(im, &w, &plan[k].d, plan[k].media_type, plan[k].tag, 0, &h);
    }
    return rc;
}

uint64_t archive_reserve_default(uint64_t fs_bytes)
{
    uint64_t twentieth = fs_bytes / 20;
    return twentieth < ARCHIVE_RESERVE_MAX ? twentieth : ARCHIVE_RESERVE_MAX;
}

enum store_err archive_import(struct index *idx, struct blobstore *bs, int in_fd,
                              const struct archive_import_opts *opts, struct archive_stats *stats,
                              char *err, size_t errcap)
{
    struct importer im;
    memset(&im, 0, sizeof(im));
    im.idx = idx;
    im.bs = bs;
    im.max_size = opts->max_size ? opts->max_size : ARCHIVE_MAX_SIZE_DEFAULT;
    im.err = err;
    im.errcap = errcap;
    struct archive_stats st = {0, 0, 0, 0};
    struct plan_item *plan = NULL;
    size_t nplan = 0;
    enum store_err rc = STORE_ENOMEM;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t icap = ZSTD_DStreamInSize(), ocap = ZSTD_DStreamOutSize();
    char *ibuf = malloc(icap), *obuf = malloc(ocap);
    im.small = malloc(MANIFEST_MAX);
    if (dctx == NULL || ibuf == NULL || obuf == NULL || im.small == NULL)
        goto out;
    if (getrandom(&im.recs.key, sizeof(im.recs.key), 0) != (ssize_t)sizeof(im.recs.key)) {
        rc = STORE_EIO;
        goto out;
    }
    uint64_t avail, total;
    rc = blobstore_space(bs, &avail, &total);
    if (rc != STORE_OK)
        goto out;
    im.reserve =
        opts->reserve != ARCHIVE_RESERVE_AUTO ? opts->reserve : archive_reserve_default(total);
    /* a regular file is read twice: first to learn every declared size, writing nothing */
    struct stat sb;
    off_t start = lseek(in_fd, 0, SEEK_CUR);
    if (fstat(in_fd, &sb) == 0 && S_ISREG(sb.st_mode) && start != (off_t)-1) {
        im.survey = true;
        rc = read_pass(&im, dctx, in_fd, ibuf, icap, obuf, ocap);
        if (rc == STORE_OK && im.index_json == NULL)
            rc = archive_fail(err, errcap, STORE_EINVAL, "the archive has no index.json");
        /* an entry that is not its declared size: refused before anything is written */
        for (size_t i = 0; rc == STORE_OK && i < im.recs.n; i++) {
            const struct rec *r = &im.recs.v[i];
            if (r->in_survey && r->declared != NO_SIZE && r->declared != r->size) {
                snprintf(err, errcap,
                         "blob %s: the archive holds %llu bytes, its descriptor says %llu",
                         r->d.str, (unsigned long long)r->size, (unsigned long long)r->declared);
                rc = STORE_EINVAL;
            }
        }
        if (rc != STORE_OK)
            goto out;
        if (lseek(in_fd, start, SEEK_SET) == (off_t)-1) {
            rc = store_err_from_errno(errno);
            goto out;
        }
        im.survey = false;
        im.surveyed = true;
    }
    rc = read_pass(&im, dctx, in_fd, ibuf, icap, obuf, ocap);
    if (rc == STORE_OK)
        rc = read_plan(&im, opts->prefix, &plan, &nplan);
    if (rc == STORE_OK)
        rc = store_plan(&im, plan, nplan, &st);
    if (rc == STORE_OK) {
        st.images = nplan;
        *stats = st;
    }
out:
    if (rc != STORE_OK && err[0] == '\0')
        snprintf(err, errcap, "%s", store_strerror(rc));
    for (size_t k = 0; k < im.recs.n; k++)
        if (im.recs.v[k].id[0] != '\0')
            (void)upload_remove(bs, im.recs.v[k].id);
    free(im.recs.v);
    free(im.recs.slot);
    free(im.index_json);
    free(im.small);
    free(plan);
    ZSTD_freeDCtx(dctx);
    free(ibuf);
    free(obuf);
    return rc;
}
