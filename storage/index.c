#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "storage/index.h"

#define REC_VERSION 1
/* Longest key: repo \0 digest, or repo \0 tag. */
#define KEY_MAX (NAME_MAX_LEN + 1 + DIGEST_STR_MAX)
#define REC_MAX 1024
/* An int status of our own beside LMDB's (which lie in -30800..-30780): quota exceeded. */
#define RC_QUOTA (-30001)
#define RC_NEWER_SCHEMA (-30002)
/* Upload sessions: past the bound of one session, or of a repository's sessions together. */
#define RC_SESSION_BOUND (-30003)
#define RC_REPO_BOUND (-30004)
#define INDEX_SCHEMA_VERSION 2

enum dbi {
    DB_REPOS,
    DB_TAGS,
    DB_MANIFESTS,
    DB_REPO_MANIFESTS,
    DB_LINKS,
    DB_BLOBS,
    DB_REFERRERS,
    DB_UPLOADS,
    DB_USERS,
    DB_GRANTS,
    DB_USAGE,
    DB_COUNT
};

static const char *const db_names[DB_COUNT] = {
    "repos", "tags", "manifests", "repo_manifests", "links", "blobs", "referrers", "uploads",
    "users", "grants", "usage",
};

struct index {
    MDB_env *env;
    MDB_dbi db[DB_COUNT];
};

/* ---- record encoding ---- */

struct wrec {
    unsigned char buf[REC_MAX];
    size_t len;
    bool overflow;
};

static void put_bytes(struct wrec *w, const void *p, size_t n)
{
    if (w->overflow || n > sizeof(w->buf) - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_u8(struct wrec *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

static void put_u64(struct wrec *w, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, 8);
}

static void put_u32(struct wrec *w, uint32_t v)
{
    unsigned char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, 4);
}

/* A string with a 16-bit length. */
static void put_str(struct wrec *w, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xffff) {
        w->overflow = true;
        return;
    }
    put_bytes(w, (unsigned char[]){(unsigned char)n, (unsigned char)(n >> 8)}, 2);
    put_bytes(w, s, n);
}

struct rrec {
    const unsigned char *p;
    size_t len;
    size_t pos;
    bool bad;
};

static struct rrec rrec_of(const MDB_val *v)
{
    struct rrec r = {v->mv_data, v->mv_size, 0, false};
    if (r.len < 1 || r.p[0] != REC_VERSION)
        r.bad = true;
    r.pos = 1;
    return r;
}

static const unsigned char *get_bytes(struct rrec *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_u64(struct rrec *r)
{
    const unsigned char *b = get_bytes(r, 8);
    uint64_t v = 0;
    if (b != NULL)
        for (int i = 7; i >= 0; i--)
            v = (v << 8) | b[i];
    return v;
}

static uint32_t get_u32(struct rrec *r)
{
    const unsigned char *b = get_bytes(r, 4);
    uint32_t v = 0;
    if (b != NULL)
        for (int i = 3; i >= 0; i--)
            v = (v << 8) | b[i];
    return v;
}

static uint8_t get_u8(struct rrec *r)
{
    const unsigned char *b = get_bytes(r, 1);
    return b != NULL ? b[0] : 0;
}

/* Copies a length-prefixed string into out[cap]. */
static void get_str(struct rrec *r, char *out, size_t cap)
{
    const unsigned char *l = get_bytes(r, 2);
    size_t n = l != NULL ? (size_t)(l[0] | (l[1] << 8)) : 0;
    const unsigned char *s = get_bytes(r, n);
    if (s == NULL || n >= cap) {
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

/* ---- keys ---- */

struct key {
    char buf[KEY_MAX];
    MDB_val val;
};

static void key1(struct key *k, const char *a)
{
    size_t n = strlen(a);
    if (n >= sizeof(k->buf))
        n = sizeof(k->buf) - 1;
    memcpy(k->buf, a, n);
    k->val.mv_data = k->buf;
    k->val.mv_size = n;
}

/* "a\0b"; both parts are validated and bounded, so the key always fits. */
static void key2(struct key *k, const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na + 1 + nb > sizeof(k->buf)) {
        na = nb = 0;
    }
    memcpy(k->buf, a, na);
    k->buf[na] = '\0';
    memcpy(k->buf + na + 1, b, nb);
    k->val.mv_data = k->buf;
    k->val.mv_size = na + 1 + nb;
}

static MDB_val wrec_val(struct wrec *w)
{
    return (MDB_val){w->len, w->buf};
}

static uint64_t now_seconds(void)
{
    return (uint64_t)time(NULL);
}

static enum store_err map_mdb(int rc)
{
    switch (rc) {
    case 0:
        return STORE_OK;
    case MDB_NOTFOUND:
        return STORE_ENOENT;
    case MDB_KEYEXIST:
        return STORE_EEXIST;
    case MDB_MAP_FULL:
        return STORE_EMAPFULL;
    case RC_QUOTA:
        return STORE_EQUOTA;
    case RC_NEWER_SCHEMA:
        return STORE_EVERSION;
    case RC_SESSION_BOUND:
        return STORE_ETOOBIG;
    case RC_REPO_BOUND:
        return STORE_EBUSY;
    case ENOMEM:
        return STORE_ENOMEM;
    case ENOSPC:
        return STORE_ENOSPC;
    case EMFILE:
    case ENFILE:
        return STORE_EMFILE;
    default:
        if (rc > 0)
            errno = rc;
        return STORE_EIO;
    }
}

/* ---- environment ---- */

/* usage-table records (below), which the schema migration and the generation clock use */
static void usage_key(struct key *k, char kind, const char *name);
static int fields_get(struct index *idx, MDB_txn *txn, const struct key *k, uint64_t *f, int n);
static int fields_put(struct index *idx, MDB_txn *txn, const struct key *k, const uint64_t *f,
                      int n);

/*
 * The schema version lives under "V" in the usage table. An index without one predates
 * versioning (version 0, whose records are a subset of version 1's): it is migrated in place.
 * A newer version than this binary knows is refused rather than misread.
 */
static int schema_check(struct index *idx, MDB_txn *txn)
{
    MDB_val k = {1, (void *)"V"}, v;
    int rc = mdb_get(txn, idx->db[DB_USAGE], &k, &v);
    uint32_t have = 0;
    if (rc == 0 && v.mv_size == 4) {
        const unsigned char *p = v.mv_data;
        have = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    } else if (rc != MDB_NOTFOUND && rc != 0) {
        return rc;
    }
    if (have > INDEX_SCHEMA_VERSION)
        return RC_NEWER_SCHEMA;
    if (have == INDEX_SCHEMA_VERSION)
        return 0;
    /* 0 -> 1: repos records gained a generation, repo_manifests a last-pulled time; both are
     * read as 0 when absent.
     * 1 -> 2: generations come from one clock (gen_next), which starts past every
     * repository's own; users records may carry an account id (version 2 records, which an
     * older binary cannot read). */
    if (have < 2) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, idx->db[DB_REPOS], &cur);
        if (rc != 0)
            return rc;
        uint64_t top = 0;
        MDB_val rk;
        for (rc = mdb_cursor_get(cur, &rk, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &rk, &v, MDB_NEXT)) {
            struct rrec r = rrec_of(&v);
            (void)get_u64(&r);
            uint64_t gen = r.pos + 8 <= r.len ? get_u64(&r) : 0;
            top = gen > top ? gen : top;
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND)
            return rc;
        struct key ck;
        usage_key(&ck, 'c', "");
        rc = fields_put(idx, txn, &ck, &top, 1);
        if (rc != 0)
            return rc;
    }
    unsigned char nv[4] = {INDEX_SCHEMA_VERSION & 0xff, (INDEX_SCHEMA_VERSION >> 8) & 0xff, 0, 0};
    MDB_val val = {4, nv};
    return mdb_put(txn, idx->db[DB_USAGE], &k, &val, 0);
}

uint32_t index_schema_version(void)
{
    return INDEX_SCHEMA_VERSION;
}

void index_close(struct index *idx)
{
    if (idx == NULL)
        return;
    if (idx->env != NULL)
        mdb_env_close(idx->env);
    free(idx);
}

enum store_err index_open(struct index **out, const char *dir, uint64_t map_size)
{
    int rc;
    MDB_txn *txn = NULL;
    struct index *idx = calloc(1, sizeof(*idx));
    if (idx == NULL)
        return STORE_ENOMEM;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = errno;
        goto fail;
    }
    rc = mdb_env_create(&idx->env);
    if (rc != 0)
        goto fail;
    rc = mdb_env_set_maxdbs(idx->env, DB_COUNT + 4);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(idx->env, 1024);
    if (rc == 0)
        rc = mdb_env_set_mapsize(idx->env, (size_t)map_size);
    if (rc == 0)
        rc = mdb_env_open(idx->env, dir, MDB_NOTLS, 0600);
    if (rc != 0)
        goto fail;
    int dead = 0;
    (void)mdb_reader_check(idx->env, &dead);
    rc = mdb_txn_begin(idx->env, NULL, 0, &txn);
    if (rc != 0)
        goto fail;
    for (int i = 0; i < DB_COUNT; i++) {
        unsigned flags = MDB_CREATE | (i == DB_REFERRERS ? MDB_DUPSORT : 0);
        rc = mdb_dbi_open(txn, db_names[i], flags, &idx->db[i]);
        if (rc != 0)
            goto fail;
    }
    rc = schema_check(idx, txn);
    if (rc != 0)
        goto fail;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0)
        goto fail;
    *out = idx;
    return STORE_OK;
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    index_close(idx);
    return map_mdb(rc);
}

static int txn_begin(struct index *idx, bool write, MDB_txn **txn)
{
    return mdb_txn_begin(idx->env, NULL, write ? 0 : MDB_RDONLY, txn);
}

/*
 * LMDB reports a write that found the disk full as EIO (a short write); ask the file system
 * whether that is what happened, so the client hears 507 rather than 500.
 */
static int disk_full_or(int rc, MDB_env *env)
{
    const char *path = NULL;
    struct statvfs sv;
    if ((rc == EIO || rc == ENOSPC) && mdb_env_get_path(env, &path) == 0 &&
        statvfs(path, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < (4u << 20))
        return ENOSPC;
    return rc;
}

/* Commits when rc is 0, aborts otherwise; returns the final status. */
static enum store_err txn_end(MDB_txn *txn, int rc)
{
    if (rc == 0) {
        MDB_env *env = mdb_txn_env(txn);
        return map_mdb(disk_full_or(mdb_txn_commit(txn), env));
    }
    MDB_env *env = mdb_txn_env(txn);
    mdb_txn_abort(txn);
    return map_mdb(disk_full_or(rc, env));
}

/*
 * Generations come from one clock for the whole index ("c" in the usage table), never from
 * a repository's own count: a repository deleted and made again must not come back to a
 * generation a collector scanned before the delete, or the collector's stale decisions
 * would pass its re-check.
 */
static int gen_next(struct index *idx, MDB_txn *txn, uint64_t *out)
{
    struct key k;
    usage_key(&k, 'c', "");
    uint64_t clock = 0;
    int rc = fields_get(idx, txn, &k, &clock, 1);
    if (rc != 0)
        return rc;
    clock++;
    rc = fields_put(idx, txn, &k, &clock, 1);
    if (rc == 0)
        *out = clock;
    return rc;
}

static int repo_put(struct index *idx, MDB_txn *txn, const char *repo, uint64_t created,
                    uint64_t gen)
{
    struct key k;
    key1(&k, repo);
    struct wrec w = {.len = 0};
    put_u8(&w, REC_VERSION);
    put_u64(&w, created);
    put_u64(&w, gen);
    MDB_val nv = wrec_val(&w);
    return mdb_put(txn, idx->db[DB_REPOS], &k.val, &nv, 0);
}

/* Each manifest change bumps its repository's generation: the garbage collector applies
 * what it decided only if the generation it scanned is still current. */
static int repo_bump(struct index *idx, MDB_txn *txn, const char *repo)
{
    struct key k;
    key1(&k, repo);
    MDB_val v;
    uint64_t created = now_seconds(), gen = 0;
    int rc = mdb_get(txn, idx->db[DB_REPOS], &k.val, &v);
    if (rc == 0) {
        struct rrec r = rrec_of(&v);
        created = get_u64(&r);
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    rc = gen_next(idx, txn, &gen);
    return rc != 0 ? rc : repo_put(idx, txn, repo, created, gen);
}

static int repo_gen_get(struct index *idx, MDB_txn *txn, const char *repo, uint64_t *gen)
{
    struct key k;
    key1(&k, repo);
    MDB_val v;
    *gen = 0;
    int rc = mdb_get(txn, idx->db[DB_REPOS], &k.val, &v);
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    (void)get_u64(&r);
    if (r.pos + 8 <= r.len)
        *gen = get_u64(&r);
    return 0;
}

static int ensure_repo(struct index *idx, MDB_txn *txn, const char *repo)
{
    struct key k;
    key1(&k, repo);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_REPOS], &k.val, &v);
    if (rc != MDB_NOTFOUND)
        return rc;
    uint64_t gen = 0;
    rc = gen_next(idx, txn, &gen);
    return rc != 0 ? rc : repo_put(idx, txn, repo, now_seconds(), gen);
}

bool index_repo_exists(struct index *idx, const char *repo)
{
    MDB_txn *txn;
    if (txn_begin(idx, false, &txn) != 0)
        return false;
    struct key k;
    key1(&k, repo);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_REPOS], &k.val, &v);
    mdb_txn_abort(txn);
    return rc == 0;
}

/* ---- usage: per repository and per user figures, registry totals, quotas ---- */

#define USAGE_FIELDS 6 /* stored, ingress, egress, pulls, pushes, quota */
#define TOTALS_FIELDS 3

/* "r\0repo", "u\0user", "g" (totals), "d" (default quota), "c" (generation clock) */
static void usage_key(struct key *k, char kind, const char *name)
{
    char prefix[2] = {kind, '\0'};
    key2(k, prefix, name);
}

static int fields_get(struct index *idx, MDB_txn *txn, const struct key *k, uint64_t *f, int n)
{
    MDB_val v;
    for (int i = 0; i < n; i++)
        f[i] = 0;
    int rc = mdb_get(txn, idx->db[DB_USAGE], (MDB_val *)&k->val, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    /* records may be shorter (written before a field existed): missing fields read as 0 */
    for (int i = 0; i < n && r.pos + 8 <= r.len; i++)
        f[i] = get_u64(&r);
    return r.bad ? MDB_CORRUPTED : 0;
}

static int fields_put(struct index *idx, MDB_txn *txn, const struct key *k, const uint64_t *f,
                      int n)
{
    struct wrec w = {.len = 0};
    put_u8(&w, REC_VERSION);
    for (int i = 0; i < n; i++)
        put_u64(&w, f[i]);
    MDB_val v = wrec_val(&w);
    return mdb_put(txn, idx->db[DB_USAGE], (MDB_val *)&k->val, &v, 0);
}

static uint64_t add_signed(uint64_t v, int64_t d)
{
    if (d < 0 && (uint64_t)(-d) > v)
        return 0;
    return d < 0 ? v - (uint64_t)(-d) : v + (uint64_t)d;
}

/* The quota of a repository whose usage fields are f: its own, else the default (0: none). */
static int quota_of(struct index *idx, MDB_txn *txn, const uint64_t *f, uint64_t *quota)
{
    *quota = f[5];
    if (*quota != 0)
        return 0;
    struct key dk;
    uint64_t dq[1];
    usage_key(&dk, 'd', "");
    int rc = fields_get(idx, txn, &dk, dq, 1);
    if (rc == 0)
        *quota = dq[0];
    return rc;
}

/* Changes repo's stored bytes by delta; a growth past its quota is STORE_EQUOTA (as an int). */
static int stored_adjust(struct index *idx, MDB_txn *txn, const char *repo, int64_t delta)
{
    struct key k;
    uint64_t f[USAGE_FIELDS];
    usage_key(&k, 'r', repo);
    int rc = fields_get(idx, txn, &k, f, USAGE_FIELDS);
    if (rc != 0)
        return rc;
    if (delta > 0) {
        uint64_t quota;
        rc = quota_of(idx, txn, f, &quota);
        if (rc != 0)
            return rc;
        if (quota != 0 && f[0] + (uint64_t)delta > quota)
            return RC_QUOTA;
    }
    f[0] = add_signed(f[0], delta);
    return fields_put(idx, txn, &k, f, USAGE_FIELDS);
}

/* Registry totals: physical bytes, blobs, manifests. */
static int totals_adjust(struct index *idx, MDB_txn *txn, int64_t bytes, int64_t blobs,
                         int64_t manifests)
{
    struct key k;
    uint64_t f[TOTALS_FIELDS];
    usage_key(&k, 'g', "");
    int rc = fields_get(idx, txn, &k, f, TOTALS_FIELDS);
    if (rc != 0)
        return rc;
    f[0] = add_signed(f[0], bytes);
    f[1] = add_signed(f[1], blobs);
    f[2] = add_signed(f[2], manifests);
    return fields_put(idx, txn, &k, f, TOTALS_FIELDS);
}

/* ---- blobs and links ---- */

/* A link's size and when it was (last) linked; linked_at may be NULL. */
static int link_read(struct index *idx, MDB_txn *txn, const char *repo, const struct digest *d,
                     uint64_t *size, uint64_t *linked_at)
{
    struct key k;
    key2(&k, repo, d->str);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_LINKS], &k.val, &v);
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    uint64_t sz = get_u64(&r);
    uint64_t at = r.pos + 8 <= r.len ? get_u64(&r) : 0;
    if (r.bad)
        return MDB_CORRUPTED;
    *size = sz;
    if (linked_at != NULL)
        *linked_at = at;
    return 0;
}

static int link_get(struct index *idx, MDB_txn *txn, const char *repo, const struct digest *d,
                    uint64_t *size)
{
    return link_read(idx, txn, repo, d, size, NULL);
}

static int blob_get(struct index *idx, MDB_txn *txn, const struct digest *d, uint64_t *size,
                    uint32_t *refs)
{
    struct key k;
    key1(&k, d->str);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_BLOBS], &k.val, &v);
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    *size = get_u64(&r);
    *refs = get_u32(&r);
    return r.bad ? MDB_CORRUPTED : 0;
}

/* Adjusts the link count of blob d by delta, creating its record on first link. */
static int blob_ref(struct index *idx, MDB_txn *txn, const struct digest *d, uint64_t size,
                    int delta)
{
    struct key k;
    key1(&k, d->str);
    MDB_val v;
    uint32_t refs = 0;
    uint64_t created = now_seconds();
    int rc = mdb_get(txn, idx->db[DB_BLOBS], &k.val, &v);
    if (rc == 0) {
        struct rrec r = rrec_of(&v);
        size = get_u64(&r);
        refs = get_u32(&r);
        created = get_u64(&r);
        if (r.bad)
            return MDB_CORRUPTED;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    } else {
        rc = totals_adjust(idx, txn, (int64_t)size, 1, 0);
        if (rc != 0)
            return rc;
    }
    if (delta < 0 && refs > 0)
        refs--;
    else if (delta > 0)
        refs++;
    struct wrec w = {.len = 0};
    put_u8(&w, REC_VERSION);
    put_u64(&w, size);
    put_u32(&w, refs);
    put_u64(&w, created);
    v = wrec_val(&w);
    return mdb_put(txn, idx->db[DB_BLOBS], &k.val, &v, 0);
}

static int upload_record_del(struct index *idx, MDB_txn *txn, const char *id);

/* The upload record goes in the txn that records its blob: no record outlives the upload. */
static int upload_record_drop(struct index *idx, MDB_txn *txn, const char *upload_id)
{
    if (upload_id == NULL)
        return 0;
    int rc = upload_record_del(idx, txn, upload_id);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static enum store_err link_impl(struct index *idx, const char *repo, const struct digest *d,
                                uint64_t *size, const char *from, index_hook hook,
                                index_hook undo, void *arg, const char *upload_id)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    if (hook != NULL) {
        enum store_err herr = hook(arg);
        if (herr != STORE_OK) {
            mdb_txn_abort(txn);
            return herr;
        }
    }
    uint64_t sz = *size;
    if (from != NULL && from[0] == '\0') {
        uint32_t refs = 0;
        rc = blob_get(idx, txn, d, &sz, &refs);
        if (rc == 0 && refs == 0)
            rc = MDB_NOTFOUND;
        if (rc != 0)
            return txn_end(txn, rc);
    } else if (from != NULL) {
        rc = link_get(idx, txn, from, d, &sz);
        if (rc != 0)
            return txn_end(txn, rc);
    }
    uint64_t existing, linked_at;
    struct key lk;
    key2(&lk, repo, d->str);
    rc = link_read(idx, txn, repo, d, &existing, &linked_at);
    if (rc == 0) {
        /*
         * Linked again: the grace period of the garbage collector starts anew. The time
         * always moves forward, even twice in one second, so a collector that decided on
         * the older time sees the link changed (index_gc_repo) and keeps it.
         */
        uint64_t now = now_seconds();
        struct wrec w = {.len = 0};
        put_u8(&w, REC_VERSION);
        put_u64(&w, existing);
        put_u64(&w, now > linked_at ? now : linked_at + 1);
        MDB_val v = wrec_val(&w);
        rc = mdb_put(txn, idx->db[DB_LINKS], &lk.val, &v, 0);
        if (rc == 0)
            rc = upload_record_drop(idx, txn, upload_id);
        if (rc == 0)
            *size = existing;
        return txn_end(txn, rc);
    }
    if (rc != MDB_NOTFOUND)
        return txn_end(txn, rc);
    rc = ensure_repo(idx, txn, repo);
    if (rc == 0) {
        struct key k;
        key2(&k, repo, d->str);
        struct wrec w = {.len = 0};
        put_u8(&w, REC_VERSION);
        put_u64(&w, sz);
        put_u64(&w, now_seconds());
        MDB_val v = wrec_val(&w);
        rc = mdb_put(txn, idx->db[DB_LINKS], &k.val, &v, 0);
    }
    if (rc == 0)
        rc = stored_adjust(idx, txn, repo, (int64_t)sz);
    if (rc == 0)
        rc = blob_ref(idx, txn, d, sz, +1);
    if (rc == 0)
        rc = upload_record_drop(idx, txn, upload_id);
    if (rc != 0 && undo != NULL) {
        /* refused (quota, full map): a file placed for a blob no record names goes again,
         * still under the write lock */
        uint64_t bsz;
        uint32_t refs;
        if (blob_get(idx, txn, d, &bsz, &refs) == MDB_NOTFOUND)
            (void)undo(arg);
    }
    bool failed_before_commit = rc != 0;
    enum store_err err = txn_end(txn, rc);
    if (err != STORE_OK && !failed_before_commit && undo != NULL &&
        txn_begin(idx, true, &txn) == 0) {
        /* the commit itself failed (a full disk): the same, in a txn of its own */
        uint64_t bsz;
        uint32_t refs;
        if (blob_get(idx, txn, d, &bsz, &refs) == MDB_NOTFOUND)
            (void)undo(arg);
        mdb_txn_abort(txn);
    }
    if (err == STORE_OK)
        *size = sz;
    return err;
}

enum store_err index_blob_link(struct index *idx, const char *repo, const struct digest *d,
                               uint64_t *size, const char *from)
{
    return link_impl(idx, repo, d, size, from, NULL, NULL, NULL, NULL);
}

enum store_err index_blob_commit(struct index *idx, const char *repo, const struct digest *d,
                                 uint64_t size, index_hook install, index_hook uninstall,
                                 void *arg, const char *upload_id)
{
    return link_impl(idx, repo, d, &size, NULL, install, uninstall, arg, upload_id);
}

enum store_err index_blob_linked(struct index *idx, const char *repo, const struct digest *d,
                                 uint64_t *size)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = link_get(idx, txn, repo, d, size);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_blob_unlink(struct index *idx, const char *repo, const struct digest *d)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t size;
    rc = link_get(idx, txn, repo, d, &size);
    if (rc == 0) {
        struct key k;
        key2(&k, repo, d->str);
        rc = mdb_del(txn, idx->db[DB_LINKS], &k.val, NULL);
    }
    if (rc == 0)
        rc = stored_adjust(idx, txn, repo, -(int64_t)size);
    if (rc == 0)
        rc = blob_ref(idx, txn, d, size, -1);
    return txn_end(txn, rc);
}

/* ---- uploads ---- */

/*
 * What a repository's upload sessions hold together lives under "w\0repo" in the usage table
 * (one u64), changed in the txn that changes a session's own figure: both are in the index
 * that every server process on the root shares, so the bounds hold across them.
 */
static int held_get(struct index *idx, MDB_txn *txn, const char *repo, uint64_t *bytes)
{
    struct key k;
    usage_key(&k, 'w', repo);
    return fields_get(idx, txn, &k, bytes, 1);
}

static int held_put(struct index *idx, MDB_txn *txn, const char *repo, uint64_t bytes)
{
    struct key k;
    usage_key(&k, 'w', repo);
    if (bytes != 0)
        return fields_put(idx, txn, &k, &bytes, 1);
    int rc = mdb_del(txn, idx->db[DB_USAGE], &k.val, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * May a session of repo hold `to` bytes instead of `from`? A growth is checked against lim
 * (NULL: no bounds) and the repository's quota, which counts its stored bytes and what all its
 * sessions hold. *others: what the repository's other sessions hold.
 */
static int hold_check(struct index *idx, MDB_txn *txn, const char *repo, uint64_t from,
                      uint64_t to, const struct index_upload_limits *lim, uint64_t *others)
{
    uint64_t held;
    int rc = held_get(idx, txn, repo, &held);
    if (rc != 0)
        return rc;
    held = add_signed(held, -(int64_t)from);
    *others = held;
    if (to > from) {
        if (lim != NULL && lim->session != 0 && to > lim->session)
            return RC_SESSION_BOUND;
        if (lim != NULL && lim->repo != 0 && held + to > lim->repo)
            return RC_REPO_BOUND;
        struct key k;
        uint64_t f[USAGE_FIELDS], quota;
        usage_key(&k, 'r', repo);
        rc = fields_get(idx, txn, &k, f, USAGE_FIELDS);
        if (rc == 0)
            rc = quota_of(idx, txn, f, &quota);
        if (rc != 0)
            return rc;
        if (quota != 0 && f[0] + held + to > quota)
            return RC_QUOTA;
    }
    return 0;
}

/* Changes what a session of repo holds from `from` to `to` bytes, checked by hold_check. */
static int hold_change(struct index *idx, MDB_txn *txn, const char *repo, uint64_t from,
                       uint64_t to, const struct index_upload_limits *lim)
{
    uint64_t others;
    int rc = hold_check(idx, txn, repo, from, to, lim, &others);
    return rc != 0 ? rc : held_put(idx, txn, repo, others + to);
}

static void upload_encode(struct wrec *w, const struct index_upload *u)
{
    put_u8(w, REC_VERSION);
    put_u8(w, (uint8_t)u->alg);
    put_u64(w, u->created);
    put_str(w, u->repo);
    put_u64(w, u->held);
}

/* An upload record into *out (written only when it decodes). */
static bool upload_decode(const MDB_val *v, struct index_upload *out)
{
    struct index_upload u;
    struct rrec r = rrec_of(v);
    uint8_t alg = get_u8(&r);
    u.alg = alg == DIGEST_SHA512 ? DIGEST_SHA512 : DIGEST_SHA256;
    u.created = get_u64(&r);
    get_str(&r, u.repo, sizeof(u.repo));
    /* records written before sessions held bytes end here */
    u.held = r.pos + 8 <= r.len ? get_u64(&r) : 0;
    if (r.bad)
        return false;
    *out = u;
    return true;
}

static int upload_record_get(struct index *idx, MDB_txn *txn, const char *id,
                             struct index_upload *out)
{
    struct key k;
    key1(&k, id);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_UPLOADS], &k.val, &v);
    if (rc == 0)
        rc = upload_decode(&v, out) ? 0 : MDB_CORRUPTED;
    return rc;
}

static int upload_record_put(struct index *idx, MDB_txn *txn, const char *id,
                             const struct index_upload *u, unsigned flags)
{
    struct key k;
    key1(&k, id);
    struct wrec w = {.len = 0};
    upload_encode(&w, u);
    MDB_val v = wrec_val(&w);
    return w.overflow ? EINVAL : mdb_put(txn, idx->db[DB_UPLOADS], &k.val, &v, flags);
}

/* Deletes a session's record and gives back what it held. */
static int upload_record_del(struct index *idx, MDB_txn *txn, const char *id)
{
    struct index_upload u;
    int rc = upload_record_get(idx, txn, id, &u);
    if (rc == 0 && u.held != 0)
        rc = hold_change(idx, txn, u.repo, u.held, 0, NULL);
    if (rc == 0 || rc == MDB_CORRUPTED) {
        struct key k;
        key1(&k, id);
        rc = mdb_del(txn, idx->db[DB_UPLOADS], &k.val, NULL);
    }
    return rc;
}

enum store_err index_upload_put(struct index *idx, const char *id, const struct index_upload *u,
                                const struct index_upload_limits *lim)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = upload_record_put(idx, txn, id, u, MDB_NOOVERWRITE);
    if (rc == 0 && u->held != 0)
        rc = hold_change(idx, txn, u->repo, 0, u->held, lim);
    return txn_end(txn, rc);
}

enum store_err index_upload_get(struct index *idx, const char *id, struct index_upload *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = upload_record_get(idx, txn, id, out);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_upload_hold(struct index *idx, const char *id, uint64_t bytes,
                                 const struct index_upload_limits *lim)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct index_upload u;
    rc = upload_record_get(idx, txn, id, &u);
    if (rc == 0 && u.held == bytes) {
        mdb_txn_abort(txn);
        return STORE_OK;
    }
    if (rc == 0)
        rc = hold_change(idx, txn, u.repo, u.held, bytes, lim);
    u.held = bytes;
    if (rc == 0)
        rc = upload_record_put(idx, txn, id, &u, 0);
    return txn_end(txn, rc);
}

enum store_err index_upload_check(struct index *idx, const char *repo, uint64_t bytes,
                                  const struct index_upload_limits *lim)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t others;
    rc = hold_check(idx, txn, repo, 0, bytes, lim, &others);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_upload_held(struct index *idx, const char *repo, uint64_t *bytes)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t b;
    rc = held_get(idx, txn, repo, &b);
    mdb_txn_abort(txn);
    if (rc == 0)
        *bytes = b;
    return map_mdb(rc);
}

enum store_err index_upload_del(struct index *idx, const char *id)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = upload_record_del(idx, txn, id);
    return txn_end(txn, rc);
}

/* ---- manifests ---- */

struct rm_rec {
    uint64_t size;
    uint64_t created;
    uint64_t pulled; /* last manifest GET, to the second the counters were flushed; 0 never */
    char media_type[MEDIA_TYPE_MAX + 1];
    char artifact_type[MEDIA_TYPE_MAX + 1];
    char subject[DIGEST_STR_MAX];
};

static int rm_get(struct index *idx, MDB_txn *txn, const char *repo, const char *digest,
                  struct rm_rec *out)
{
    struct key k;
    key2(&k, repo, digest);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_REPO_MANIFESTS], &k.val, &v);
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    out->size = get_u64(&r);
    out->created = get_u64(&r);
    get_str(&r, out->media_type, sizeof(out->media_type));
    get_str(&r, out->artifact_type, sizeof(out->artifact_type));
    get_str(&r, out->subject, sizeof(out->subject));
    out->pulled = r.pos + 8 <= r.len ? get_u64(&r) : 0;
    return r.bad ? MDB_CORRUPTED : 0;
}

static int rm_put(struct index *idx, MDB_txn *txn, const char *repo, const char *digest,
                  const struct rm_rec *rm)
{
    struct key k;
    key2(&k, repo, digest);
    struct wrec w = {.len = 0};
    put_u8(&w, REC_VERSION);
    put_u64(&w, rm->size);
    put_u64(&w, rm->created);
    put_str(&w, rm->media_type);
    put_str(&w, rm->artifact_type);
    put_str(&w, rm->subject);
    put_u64(&w, rm->pulled);
    MDB_val v = wrec_val(&w);
    return w.overflow ? EINVAL : mdb_put(txn, idx->db[DB_REPO_MANIFESTS], &k.val, &v, 0);
}

/* Adds delta to the refcount of manifest bytes; creates them from bytes when new. */
static int manifest_ref(struct index *idx, MDB_txn *txn, const char *digest, const void *bytes,
                        size_t len, int delta)
{
    struct key k;
    key1(&k, digest);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_MANIFESTS], &k.val, &v);
    if (rc == MDB_NOTFOUND) {
        if (delta < 0 || bytes == NULL)
            return 0;
        MDB_val nv = {5 + len, NULL};
        rc = totals_adjust(idx, txn, (int64_t)len, 0, 1);
        if (rc == 0)
            rc = mdb_put(txn, idx->db[DB_MANIFESTS], &k.val, &nv, MDB_RESERVE);
        if (rc != 0)
            return rc;
        unsigned char *p = nv.mv_data;
        p[0] = REC_VERSION;
        p[1] = 1;
        p[2] = p[3] = p[4] = 0;
        memcpy(p + 5, bytes, len);
        return 0;
    }
    if (rc != 0)
        return rc;
    if (v.mv_size < 5)
        return MDB_CORRUPTED;
    const unsigned char *p = v.mv_data;
    uint32_t refs = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                    (uint32_t)p[4] << 24;
    if (delta < 0 && refs <= 1) {
        rc = totals_adjust(idx, txn, -(int64_t)(v.mv_size - 5), 0, -1);
        return rc != 0 ? rc : mdb_del(txn, idx->db[DB_MANIFESTS], &k.val, NULL);
    }
    refs = delta < 0 ? refs - 1 : refs + 1;
    /* Rewrite in place through a reserved copy: LMDB data may not be modified directly. */
    size_t total = v.mv_size;
    unsigned char *copy = malloc(total);
    if (copy == NULL)
        return ENOMEM;
    memcpy(copy, p, total);
    copy[1] = (unsigned char)refs;
    copy[2] = (unsigned char)(refs >> 8);
    copy[3] = (unsigned char)(refs >> 16);
    copy[4] = (unsigned char)(refs >> 24);
    MDB_val nv = {total, copy};
    rc = mdb_put(txn, idx->db[DB_MANIFESTS], &k.val, &nv, 0);
    free(copy);
    return rc;
}

/* Tag policy: "m\0repo" in the usage table: flags (1 = immutable), exclusion globs. */
static int policy_get(struct index *idx, MDB_txn *txn, const char *repo,
                      struct index_tag_policy *out)
{
    memset(out, 0, sizeof(*out));
    struct key k;
    usage_key(&k, 'm', repo);
    MDB_val v;
    int rc = mdb_get(txn, idx->db[DB_USAGE], &k.val, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    struct rrec r = rrec_of(&v);
    out->immutable = get_u8(&r) & 1;
    size_t n = get_u8(&r);
    for (size_t i = 0; i < n && i < INDEX_TAG_EXCLUDES_MAX && !r.bad; i++)
        get_str(&r, out->exclude[out->nexclude++], sizeof(out->exclude[0]));
    return r.bad ? MDB_CORRUPTED : 0;
}

static bool policy_excludes(const struct index_tag_policy *p, const char *tag)
{
    for (size_t i = 0; i < p->nexclude; i++)
        if (fnmatch(p->exclude[i], tag, 0) == 0)
            return true;
    return false;
}

enum store_err index_tag_policy_set(struct index *idx, const char *repo,
                                    const struct index_tag_policy *p)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    usage_key(&k, 'm', repo);
    struct wrec w = {.len = 0};
    put_u8(&w, REC_VERSION);
    put_u8(&w, p->immutable ? 1 : 0);
    put_u8(&w, (uint8_t)p->nexclude);
    for (size_t i = 0; i < p->nexclude; i++)
        put_str(&w, p->exclude[i]);
    MDB_val v = wrec_val(&w);
    rc = w.overflow ? EINVAL : mdb_put(txn, idx->db[DB_USAGE], &k.val, &v, 0);
    return txn_end(txn, rc);
}

enum store_err index_tag_policy_get(struct index *idx, const char *repo,
                                    struct index_tag_policy *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = policy_get(idx, txn, repo, out);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_manifest_put(struct index *idx, const struct index_manifest_put *m,
                                  size_t *bad_ref)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    const struct manifest_info *info = m->info;
    for (size_t i = 0; i < info->nrefs; i++) {
        const struct manifest_ref *ref = &info->refs[i];
        if (ref->is_manifest) {
            struct rm_rec child;
            rc = rm_get(idx, txn, m->repo, ref->digest.str, &child);
            if (rc == 0 && child.size != ref->size) {
                *bad_ref = i;
                mdb_txn_abort(txn);
                return STORE_ERANGE;
            }
        } else {
            uint64_t size;
            rc = link_get(idx, txn, m->repo, &ref->digest, &size);
            if (rc == MDB_NOTFOUND && ref->optional)
                continue;
            if (rc == 0 && size != ref->size) {
                *bad_ref = i;
                mdb_txn_abort(txn);
                return STORE_ERANGE;
            }
        }
        if (rc == MDB_NOTFOUND)
            *bad_ref = i;
        if (rc != 0)
            return txn_end(txn, rc);
    }
    rc = repo_bump(idx, txn, m->repo);
    if (rc != 0)
        return txn_end(txn, rc);
    struct rm_rec existing;
    rc = rm_get(idx, txn, m->repo, m->digest.str, &existing);
    if (rc == MDB_NOTFOUND) {
        struct key k;
        key2(&k, m->repo, m->digest.str);
        struct wrec w = {.len = 0};
        put_u8(&w, REC_VERSION);
        put_u64(&w, m->len);
        put_u64(&w, now_seconds());
        put_str(&w, info->media_type);
        put_str(&w, info->artifact_type);
        put_str(&w, info->has_subject ? info->subject.str : "");
        MDB_val v = wrec_val(&w);
        rc = w.overflow ? EINVAL : mdb_put(txn, idx->db[DB_REPO_MANIFESTS], &k.val, &v, 0);
        if (rc == 0)
            rc = stored_adjust(idx, txn, m->repo, (int64_t)m->len);
        if (rc == 0)
            rc = manifest_ref(idx, txn, m->digest.str, m->bytes, m->len, +1);
        if (rc == 0 && info->has_subject) {
            key2(&k, m->repo, info->subject.str);
            MDB_val rv = {strlen(m->digest.str), (void *)m->digest.str};
            rc = mdb_put(txn, idx->db[DB_REFERRERS], &k.val, &rv, MDB_NODUPDATA);
            if (rc == MDB_KEYEXIST)
                rc = 0;
        }
    }
    struct index_tag_policy pol;
    if (rc == 0)
        rc = policy_get(idx, txn, m->repo, &pol);
    for (size_t i = 0; rc == 0 && i < m->ntags; i++) {
        struct key k;
        key2(&k, m->repo, m->tags[i]);
        if (pol.immutable && !policy_excludes(&pol, m->tags[i])) {
            MDB_val old;
            int grc = mdb_get(txn, idx->db[DB_TAGS], &k.val, &old);
            if (grc == 0) {
                struct rrec r = rrec_of(&old);
                char dg[DIGEST_STR_MAX];
                get_str(&r, dg, sizeof(dg));
                if (r.bad || strcmp(dg, m->digest.str) != 0) {
                    /* an immutable tag never moves: the whole PUT changes nothing */
                    *bad_ref = i;
                    mdb_txn_abort(txn);
                    return STORE_EEXIST;
                }
            } else if (grc != MDB_NOTFOUND) {
                rc = grc;
                break;
            }
        }
        struct wrec w = {.len = 0};
        put_u8(&w, REC_VERSION);
        put_str(&w, m->digest.str);
        MDB_val v = wrec_val(&w);
        rc = mdb_put(txn, idx->db[DB_TAGS], &k.val, &v, 0);
    }
    return txn_end(txn, rc);
}

enum store_err index_tag_get(struct index *idx, const char *repo, const char *tag,
                             struct digest *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    key2(&k, repo, tag);
    MDB_val v;
    rc = mdb_get(txn, idx->db[DB_TAGS], &k.val, &v);
    if (rc == 0) {
        struct rrec r = rrec_of(&v);
        char s[DIGEST_STR_MAX];
        get_str(&r, s, sizeof(s));
        if (r.bad || digest_parse(out, s, strlen(s)) != STORE_OK)
            rc = MDB_CORRUPTED;
    }
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_manifest_get(struct index *idx, const char *repo, const struct digest *d,
                                  bool want_bytes, struct index_manifest *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct rm_rec rm;
    void *bytes = NULL;
    rc = rm_get(idx, txn, repo, d->str, &rm);
    if (rc == 0 && want_bytes) {
        struct key k;
        key1(&k, d->str);
        MDB_val v;
        rc = mdb_get(txn, idx->db[DB_MANIFESTS], &k.val, &v);
        if (rc == 0 && (v.mv_size < 5 || v.mv_size - 5 != rm.size))
            rc = MDB_CORRUPTED;
        if (rc == 0) {
            bytes = malloc(rm.size ? rm.size : 1);
            if (bytes == NULL)
                rc = ENOMEM;
            else
                memcpy(bytes, (const char *)v.mv_data + 5, rm.size);
        }
    }
    mdb_txn_abort(txn);
    if (rc != 0)
        return map_mdb(rc);
    out->digest = *d;
    memcpy(out->media_type, rm.media_type, sizeof(out->media_type));
    out->size = rm.size;
    out->bytes = bytes;
    return STORE_OK;
}

/* Deletes every tag of repo that points at digest. */
static int untag_digest(struct index *idx, MDB_txn *txn, const char *repo, const char *digest)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, idx->db[DB_TAGS], &cur);
    if (rc != 0)
        return rc;
    struct key prefix;
    key2(&prefix, repo, "");
    MDB_val k = prefix.val, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size < prefix.val.mv_size || memcmp(k.mv_data, prefix.buf, prefix.val.mv_size))
            break;
        struct rrec r = rrec_of(&v);
        char s[DIGEST_STR_MAX];
        get_str(&r, s, sizeof(s));
        if (!r.bad && strcmp(s, digest) == 0) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0)
                break;
            rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
            if (rc == MDB_NOTFOUND)
                break;
            if (rc == 0)
                continue;
            /* after deleting the last item, GET_CURRENT may fail: step on */
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int manifest_delete_txn(struct index *idx, MDB_txn *txn, const char *repo,
                               const char *digest);

enum store_err index_manifest_delete(struct index *idx, const char *repo, const struct digest *d)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = manifest_delete_txn(idx, txn, repo, d->str);
    return txn_end(txn, rc);
}

enum store_err index_tag_delete(struct index *idx, const char *repo, const char *tag)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    key2(&k, repo, tag);
    rc = mdb_del(txn, idx->db[DB_TAGS], &k.val, NULL);
    return txn_end(txn, rc);
}

/* ---- listings ---- */

/* Walks keys of db that start with prefix (of plen bytes), strictly after prefix+last. */
static int list_prefixed(struct index *idx, MDB_txn *txn, enum dbi db, const char *prefix,
                         size_t plen, const char *last, size_t n, index_name_cb cb, void *arg,
                         bool *more)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0)
        return rc;
    char start[KEY_MAX];
    size_t slen = plen;
    memcpy(start, prefix, plen);
    if (last != NULL) {
        size_t ll = strlen(last);
        if (ll > sizeof(start) - plen)
            ll = sizeof(start) - plen;
        memcpy(start + plen, last, ll);
        slen += ll;
    }
    MDB_val k = {slen, start}, v;
    size_t count = 0;
    *more = false;
    if (n == 0) {
        mdb_cursor_close(cur);
        return 0;
    }
    rc = mdb_cursor_get(cur, &k, &v, slen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (last != NULL && k.mv_size == slen && memcmp(k.mv_data, start, slen) == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (count == n) {
            *more = true;
            break;
        }
        char name[KEY_MAX + 1];
        size_t nl = k.mv_size - plen;
        memcpy(name, (const char *)k.mv_data + plen, nl);
        name[nl] = '\0';
        if (cb(name, nl, arg) != 0)
            break;
        count++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

enum store_err index_tags_list(struct index *idx, const char *repo, const char *last, size_t n,
                               index_name_cb cb, void *arg, bool *more)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key rk;
    key1(&rk, repo);
    MDB_val v;
    rc = mdb_get(txn, idx->db[DB_REPOS], &rk.val, &v);
    if (rc == 0) {
        struct key prefix;
        key2(&prefix, repo, "");
        rc = list_prefixed(idx, txn, DB_TAGS, prefix.buf, prefix.val.mv_size, last, n, cb, arg,
                           more);
    }
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_repos_list(struct index *idx, const char *last, size_t n, index_name_cb cb,
                                void *arg, bool *more)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = list_prefixed(idx, txn, DB_REPOS, "", 0, last, n, cb, arg, more);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_referrers_list(struct index *idx, const char *repo,
                                    const struct digest *subject, index_referrer_cb cb, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[DB_REFERRERS], &cur);
    struct key k;
    key2(&k, repo, subject->str);
    MDB_val key = k.val, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &key, &v, MDB_SET_KEY);
    while (rc == 0) {
        char dg[DIGEST_STR_MAX];
        if (v.mv_size >= sizeof(dg)) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(dg, v.mv_data, v.mv_size);
        dg[v.mv_size] = '\0';
        struct rm_rec rm;
        MDB_val mv;
        struct key mk;
        key1(&mk, dg);
        rc = rm_get(idx, txn, repo, dg, &rm);
        if (rc == 0)
            rc = mdb_get(txn, idx->db[DB_MANIFESTS], &mk.val, &mv);
        if (rc == 0 && mv.mv_size < 5)
            rc = MDB_CORRUPTED;
        if (rc == 0) {
            struct index_referrer r = {dg,           rm.media_type, rm.artifact_type, rm.size,
                                       (const char *)mv.mv_data + 5, mv.mv_size - 5};
            if (cb(&r, arg) != 0)
                break;
        } else if (rc != MDB_NOTFOUND) {
            break;
        }
        rc = mdb_cursor_get(cur, &key, &v, MDB_NEXT_DUP);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return map_mdb(rc == MDB_NOTFOUND ? 0 : rc);
}

/* ---- tables of other modules ---- */

static enum dbi kv_db(enum index_table t)
{
    return t == INDEX_USERS ? DB_USERS : DB_GRANTS;
}

enum store_err index_kv_put(struct index *idx, enum index_table t, const void *key, size_t klen,
                            const void *val, size_t vlen, bool no_overwrite)
{
    if (klen == 0 || klen > KEY_MAX)
        return STORE_EINVAL;
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    rc = mdb_put(txn, idx->db[kv_db(t)], &k, &v, no_overwrite ? MDB_NOOVERWRITE : 0);
    return txn_end(txn, rc);
}

enum store_err index_kv_get(struct index *idx, enum index_table t, const void *key, size_t klen,
                            void *buf, size_t cap, size_t *len)
{
    if (klen == 0 || klen > KEY_MAX)
        return STORE_EINVAL;
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(txn, idx->db[kv_db(t)], &k, &v);
    if (rc == 0 && v.mv_size > cap)
        rc = EINVAL;
    if (rc == 0) {
        memcpy(buf, v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_kv_del(struct index *idx, enum index_table t, const void *key, size_t klen)
{
    if (klen == 0 || klen > KEY_MAX)
        return STORE_EINVAL;
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    MDB_val k = {klen, (void *)key};
    rc = mdb_del(txn, idx->db[kv_db(t)], &k, NULL);
    return txn_end(txn, rc);
}

enum store_err index_kv_del_prefix(struct index *idx, enum index_table t, const void *prefix,
                                   size_t plen)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[kv_db(t)], &cur);
    if (rc != 0)
        return txn_end(txn, rc);
    MDB_val k = {plen, (void *)prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
    }
    mdb_cursor_close(cur);
    return txn_end(txn, rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc);
}

/*
 * Visits, in one read txn and in key order, the entries of db whose key starts with prefix
 * (plen 0: all); cb gets BORROWED key and value and stops the walk by returning non-zero.
 */
static enum store_err scan_prefix(struct index *idx, enum dbi db, const void *prefix, size_t plen,
                                  index_kv_cb cb, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return map_mdb(rc);
    }
    MDB_val k = {plen, (void *)prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return map_mdb(rc == MDB_NOTFOUND ? 0 : rc);
}

enum store_err index_kv_scan(struct index *idx, enum index_table t, const void *prefix,
                             size_t plen, index_kv_cb cb, void *arg)
{
    return scan_prefix(idx, kv_db(t), prefix, plen, cb, arg);
}

/* ---- usage ---- */

static void usage_unpack(const uint64_t *f, struct index_usage *u)
{
    u->stored_bytes = f[0];
    u->ingress_bytes = f[1];
    u->egress_bytes = f[2];
    u->pulls = f[3];
    u->pushes = f[4];
    u->quota = f[5];
}

enum store_err index_usage_get(struct index *idx, char kind, const char *name,
                               struct index_usage *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    uint64_t f[USAGE_FIELDS];
    usage_key(&k, kind, name);
    rc = fields_get(idx, txn, &k, f, USAGE_FIELDS);
    mdb_txn_abort(txn);
    if (rc == 0)
        usage_unpack(f, out);
    return map_mdb(rc);
}

enum store_err index_usage_list(struct index *idx, char kind, const char *last, size_t n,
                                index_usage_cb cb, void *arg, bool *more)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[DB_USAGE], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return map_mdb(rc);
    }
    struct key start;
    usage_key(&start, kind, last != NULL ? last : "");
    MDB_val k = start.val, v;
    size_t count = 0;
    *more = false;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= 2 && ((char *)k.mv_data)[0] == kind &&
           ((char *)k.mv_data)[1] == '\0') {
        if (last != NULL && k.mv_size == start.val.mv_size &&
            memcmp(k.mv_data, start.buf, k.mv_size) == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (count == n) {
            *more = true;
            break;
        }
        char name[KEY_MAX + 1];
        memcpy(name, (char *)k.mv_data + 2, k.mv_size - 2);
        name[k.mv_size - 2] = '\0';
        struct rrec r = rrec_of(&v);
        uint64_t f[USAGE_FIELDS] = {0};
        for (int i = 0; i < USAGE_FIELDS && r.pos + 8 <= r.len; i++)
            f[i] = get_u64(&r);
        struct index_usage u;
        usage_unpack(f, &u);
        if (cb(name, &u, arg) != 0)
            break;
        count++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return map_mdb(rc == MDB_NOTFOUND ? 0 : rc);
}

enum store_err index_transfer_add(struct index *idx, const struct index_transfer *t, size_t n)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (t[i].kind == 'p') {
            /* "repo@digest": the manifest was pulled */
            const char *at = strrchr(t[i].name, '@');
            char repo[NAME_MAX_LEN + 1];
            size_t rl = at != NULL ? (size_t)(at - t[i].name) : 0;
            if (at == NULL || rl >= sizeof(repo))
                continue;
            memcpy(repo, t[i].name, rl);
            repo[rl] = '\0';
            struct rm_rec rm;
            int grc = rm_get(idx, txn, repo, at + 1, &rm);
            if (grc == MDB_NOTFOUND)
                continue;
            rc = grc;
            if (rc == 0) {
                rm.pulled = now_seconds();
                rc = rm_put(idx, txn, repo, at + 1, &rm);
            }
            continue;
        }
        struct key k;
        uint64_t f[USAGE_FIELDS];
        usage_key(&k, t[i].kind, t[i].name);
        rc = fields_get(idx, txn, &k, f, USAGE_FIELDS);
        if (rc != 0)
            break;
        f[1] += t[i].ingress_bytes;
        f[2] += t[i].egress_bytes;
        f[3] += t[i].pulls;
        f[4] += t[i].pushes;
        rc = fields_put(idx, txn, &k, f, USAGE_FIELDS);
    }
    return txn_end(txn, rc);
}

enum store_err index_totals_get(struct index *idx, struct index_totals *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    uint64_t f[TOTALS_FIELDS];
    usage_key(&k, 'g', "");
    rc = fields_get(idx, txn, &k, f, TOTALS_FIELDS);
    mdb_txn_abort(txn);
    if (rc == 0) {
        out->physical_bytes = f[0];
        out->blobs = f[1];
        out->manifests = f[2];
    }
    return map_mdb(rc);
}

enum store_err index_quota_set(struct index *idx, const char *repo, uint64_t bytes)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    if (repo == NULL) {
        uint64_t f[1] = {bytes};
        usage_key(&k, 'd', "");
        rc = fields_put(idx, txn, &k, f, 1);
    } else {
        uint64_t f[USAGE_FIELDS];
        usage_key(&k, 'r', repo);
        rc = fields_get(idx, txn, &k, f, USAGE_FIELDS);
        f[5] = bytes;
        if (rc == 0)
            rc = fields_put(idx, txn, &k, f, USAGE_FIELDS);
    }
    return txn_end(txn, rc);
}

enum store_err index_quota_default(struct index *idx, uint64_t *bytes)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    uint64_t f[1];
    usage_key(&k, 'd', "");
    rc = fields_get(idx, txn, &k, f, 1);
    mdb_txn_abort(txn);
    if (rc == 0)
        *bytes = f[0];
    return map_mdb(rc);
}

/* Sums, over repo's links (or its manifests), the sizes; only_exclusive keeps entries whose
 * blob or manifest no other repository holds. */
static int sum_repo(struct index *idx, MDB_txn *txn, enum dbi db, const char *repo,
                    bool only_exclusive, uint64_t *sum)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0)
        return rc;
    struct key prefix;
    key2(&prefix, repo, "");
    MDB_val k = prefix.val, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= prefix.val.mv_size &&
           memcmp(k.mv_data, prefix.buf, prefix.val.mv_size) == 0) {
        struct rrec r = rrec_of(&v);
        uint64_t size = get_u64(&r);
        if (r.bad) {
            rc = MDB_CORRUPTED;
            break;
        }
        bool count = true;
        if (only_exclusive) {
            char dg[DIGEST_STR_MAX];
            size_t dl = k.mv_size - prefix.val.mv_size;
            if (dl >= sizeof(dg)) {
                rc = MDB_CORRUPTED;
                break;
            }
            memcpy(dg, (char *)k.mv_data + prefix.val.mv_size, dl);
            dg[dl] = '\0';
            struct key dk;
            key1(&dk, dg);
            MDB_val bv;
            uint32_t refs = 0;
            if (db == DB_LINKS && mdb_get(txn, idx->db[DB_BLOBS], &dk.val, &bv) == 0) {
                struct rrec br = rrec_of(&bv);
                (void)get_u64(&br);
                refs = get_u32(&br);
            } else if (db == DB_REPO_MANIFESTS &&
                       mdb_get(txn, idx->db[DB_MANIFESTS], &dk.val, &bv) == 0 && bv.mv_size >= 5) {
                const unsigned char *p = bv.mv_data;
                refs = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                       (uint32_t)p[4] << 24;
            }
            count = refs <= 1;
        }
        if (count)
            *sum += size;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static enum store_err repo_sum(struct index *idx, const char *repo, bool exclusive, uint64_t *out)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t sum = 0;
    rc = sum_repo(idx, txn, DB_LINKS, repo, exclusive, &sum);
    if (rc == 0)
        rc = sum_repo(idx, txn, DB_REPO_MANIFESTS, repo, exclusive, &sum);
    mdb_txn_abort(txn);
    if (rc == 0)
        *out = sum;
    return map_mdb(rc);
}

enum store_err index_exclusive_bytes(struct index *idx, const char *repo, uint64_t *out)
{
    return repo_sum(idx, repo, true, out);
}

enum store_err index_recount(struct index *idx, const char *repo, uint64_t *stored)
{
    return repo_sum(idx, repo, false, stored);
}

/* "s" + 8-byte big-endian hour + the usage key: snapshots sort by time. */
static size_t snapshot_key(char *buf, uint64_t hour, const void *ukey, size_t ulen)
{
    buf[0] = 's';
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (char)(hour >> (8 * (7 - i)));
    memcpy(buf + 9, ukey, ulen);
    return 9 + ulen;
}

enum store_err index_snapshot_take(struct index *idx, uint64_t hour)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    /* the marker: this hour was taken */
    char mk[16];
    size_t ml = snapshot_key(mk, hour, "", 0);
    MDB_val mkey = {ml, mk}, mval = {1, (void *)"\1"};
    rc = mdb_put(txn, idx->db[DB_USAGE], &mkey, &mval, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        mdb_txn_abort(txn);
        return STORE_OK;
    }
    if (rc == 0)
        rc = mdb_cursor_open(txn, idx->db[DB_USAGE], &cur);
    if (rc != 0)
        return txn_end(txn, rc);
    /* copy every r and u entry (keys below 's' sort first, snapshots after) */
    char kinds[2] = {'r', 'u'};
    for (int i = 0; rc == 0 && i < 2; i++) {
        char start[2] = {kinds[i], '\0'};
        MDB_val k = {2, start}, v;
        int crc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (crc == 0 && ((char *)k.mv_data)[0] == kinds[i]) {
            char sk[KEY_MAX + 16];
            if (k.mv_size > KEY_MAX)
                break;
            size_t sl = snapshot_key(sk, hour, k.mv_data, k.mv_size);
            MDB_val skey = {sl, sk}, sval = v;
            /* v may move when the tree changes: copy it first */
            unsigned char copy[REC_MAX];
            if (v.mv_size > sizeof(copy)) {
                crc = MDB_CORRUPTED;
                break;
            }
            memcpy(copy, v.mv_data, v.mv_size);
            sval.mv_data = copy;
            rc = mdb_put(txn, idx->db[DB_USAGE], &skey, &sval, 0);
            if (rc != 0)
                break;
            /* re-seek: the put may have invalidated the cursor position */
            MDB_val again = {k.mv_size, NULL};
            char kb[KEY_MAX];
            memcpy(kb, k.mv_data, k.mv_size);
            again.mv_data = kb;
            crc = mdb_cursor_get(cur, &again, &v, MDB_SET_RANGE);
            if (crc == 0)
                crc = mdb_cursor_get(cur, &again, &v, MDB_NEXT);
            k = again;
        }
        if (crc != 0 && crc != MDB_NOTFOUND && rc == 0)
            rc = crc;
    }
    mdb_cursor_close(cur);
    return txn_end(txn, rc);
}

enum store_err index_snapshot_get(struct index *idx, uint64_t hour, char kind, const char *name,
                                  struct index_usage *out, uint64_t *at)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[DB_USAGE], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return map_mdb(rc);
    }
    /* the newest marker at or before hour */
    char mk[16];
    size_t ml = snapshot_key(mk, hour + 1, "", 0);
    MDB_val k = {ml, mk}, v;
    uint64_t found = 0;
    bool have = false;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV) : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (rc == 0 && k.mv_size >= 9 && ((char *)k.mv_data)[0] == 's') {
        if (k.mv_size == 9) {
            for (int i = 0; i < 8; i++)
                found = (found << 8) | ((unsigned char *)k.mv_data)[1 + i];
            have = found <= hour;
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close(cur);
    rc = 0;
    if (!have) {
        mdb_txn_abort(txn);
        return STORE_ENOENT;
    }
    struct key uk;
    usage_key(&uk, kind, name);
    char sk[KEY_MAX + 16];
    size_t sl = snapshot_key(sk, found, uk.buf, uk.val.mv_size);
    MDB_val skey = {sl, sk};
    uint64_t f[USAGE_FIELDS] = {0};
    if (mdb_get(txn, idx->db[DB_USAGE], &skey, &v) == 0) {
        struct rrec r = rrec_of(&v);
        for (int i = 0; i < USAGE_FIELDS && r.pos + 8 <= r.len; i++)
            f[i] = get_u64(&r);
    }
    mdb_txn_abort(txn);
    usage_unpack(f, out);
    *at = found;
    return STORE_OK;
}

/* ---- garbage collection primitives ---- */

enum store_err index_repo_gen(struct index *idx, const char *repo, uint64_t *gen)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = repo_gen_get(idx, txn, repo, gen);
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

/* Visits the entries of db whose key starts with repo\0; the callback gets the rest. */
static enum store_err scan_repo(struct index *idx, enum dbi db, const char *repo,
                                int (*visit)(MDB_txn *txn, const char *rest, size_t rlen,
                                             const MDB_val *v, void *arg),
                                void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return map_mdb(rc);
    }
    struct key prefix;
    key2(&prefix, repo, "");
    MDB_val k = prefix.val, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= prefix.val.mv_size &&
           memcmp(k.mv_data, prefix.buf, prefix.val.mv_size) == 0) {
        char rest[KEY_MAX + 1];
        size_t rl = k.mv_size - prefix.val.mv_size;
        memcpy(rest, (char *)k.mv_data + prefix.val.mv_size, rl);
        rest[rl] = '\0';
        if (visit(txn, rest, rl, &v, arg) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return map_mdb(rc == MDB_NOTFOUND ? 0 : rc);
}

struct scan_ctx {
    struct index *idx;
    void *cb;
    void *arg;
};

static int visit_manifest(MDB_txn *txn, const char *digest, size_t dl, const MDB_val *v,
                          void *arg)
{
    (void)dl;
    struct scan_ctx *c = arg;
    struct rrec r = rrec_of(v);
    uint64_t size = get_u64(&r);
    uint64_t created = get_u64(&r);
    char mt[MEDIA_TYPE_MAX + 1], skip[MEDIA_TYPE_MAX + 1];
    get_str(&r, mt, sizeof(mt));
    get_str(&r, skip, sizeof(skip));
    get_str(&r, skip, sizeof(skip));
    uint64_t pulled = r.pos + 8 <= r.len ? get_u64(&r) : 0;
    if (r.bad)
        return 0;
    struct key k;
    key1(&k, digest);
    MDB_val bv;
    if (mdb_get(txn, c->idx->db[DB_MANIFESTS], &k.val, &bv) != 0 || bv.mv_size != size + 5)
        return 0;
    return ((index_manifest_cb)c->cb)(digest, mt, (const char *)bv.mv_data + 5, size, created,
                                      pulled, c->arg);
}

enum store_err index_manifests_scan(struct index *idx, const char *repo, index_manifest_cb cb,
                                    void *arg)
{
    struct scan_ctx c = {idx, (void *)cb, arg};
    return scan_repo(idx, DB_REPO_MANIFESTS, repo, visit_manifest, &c);
}

static int visit_tag(MDB_txn *txn, const char *tag, size_t tl, const MDB_val *v, void *arg)
{
    (void)txn;
    (void)tl;
    struct scan_ctx *c = arg;
    struct rrec r = rrec_of(v);
    char dg[DIGEST_STR_MAX];
    get_str(&r, dg, sizeof(dg));
    return r.bad ? 0 : ((index_tag_cb)c->cb)(tag, dg, c->arg);
}

enum store_err index_tags_scan(struct index *idx, const char *repo, index_tag_cb cb, void *arg)
{
    struct scan_ctx c = {idx, (void *)cb, arg};
    return scan_repo(idx, DB_TAGS, repo, visit_tag, &c);
}

static int visit_link(MDB_txn *txn, const char *digest, size_t dl, const MDB_val *v, void *arg)
{
    (void)txn;
    (void)dl;
    struct scan_ctx *c = arg;
    struct rrec r = rrec_of(v);
    uint64_t size = get_u64(&r);
    uint64_t at = get_u64(&r);
    return r.bad ? 0 : ((index_link_cb)c->cb)(digest, size, at, c->arg);
}

enum store_err index_links_scan(struct index *idx, const char *repo, index_link_cb cb, void *arg)
{
    struct scan_ctx c = {idx, (void *)cb, arg};
    return scan_repo(idx, DB_LINKS, repo, visit_link, &c);
}

/* The body of index_manifest_delete, inside a caller's txn. */
static int manifest_delete_txn(struct index *idx, MDB_txn *txn, const char *repo,
                               const char *digest)
{
    struct rm_rec rm;
    int rc = rm_get(idx, txn, repo, digest, &rm);
    if (rc == 0) {
        struct key k;
        key2(&k, repo, digest);
        rc = mdb_del(txn, idx->db[DB_REPO_MANIFESTS], &k.val, NULL);
    }
    if (rc == 0)
        rc = stored_adjust(idx, txn, repo, -(int64_t)rm.size);
    if (rc == 0)
        rc = untag_digest(idx, txn, repo, digest);
    if (rc == 0 && rm.subject[0] != '\0') {
        struct key k;
        key2(&k, repo, rm.subject);
        MDB_val dv = {strlen(digest), (void *)digest};
        rc = mdb_del(txn, idx->db[DB_REFERRERS], &k.val, &dv);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0)
        rc = manifest_ref(idx, txn, digest, NULL, 0, -1);
    return rc;
}

enum store_err index_gc_repo(struct index *idx, const char *repo, uint64_t gen,
                             const struct index_gc_link *unlink, size_t nunlink,
                             const struct digest *drop, size_t ndrop, size_t *unlinked)
{
    size_t removed = 0;
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t now_gen = 0;
    rc = repo_gen_get(idx, txn, repo, &now_gen);
    if (rc == 0 && now_gen != gen) {
        /* a manifest arrived since the scan: decide again next time */
        mdb_txn_abort(txn);
        return STORE_EBUSY;
    }
    for (size_t i = 0; rc == 0 && i < ndrop; i++) {
        rc = manifest_delete_txn(idx, txn, repo, drop[i].str);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    for (size_t i = 0; rc == 0 && i < nunlink; i++) {
        uint64_t size = 0, linked_at = 0;
        const struct digest *d = &unlink[i].digest;
        rc = link_read(idx, txn, repo, d, &size, &linked_at);
        /* gone, or linked again since the scan (an upload or mount the client was told
         * succeeded, whose manifest is on its way): left alone */
        if (rc == MDB_NOTFOUND || (rc == 0 && linked_at != unlink[i].linked_at)) {
            rc = 0;
            continue;
        }
        struct key k;
        key2(&k, repo, d->str);
        if (rc == 0)
            rc = mdb_del(txn, idx->db[DB_LINKS], &k.val, NULL);
        if (rc == 0)
            rc = stored_adjust(idx, txn, repo, -(int64_t)size);
        if (rc == 0)
            rc = blob_ref(idx, txn, d, size, -1);
        removed += rc == 0;
    }
    enum store_err err = txn_end(txn, rc);
    if (err == STORE_OK)
        *unlinked = removed;
    return err;
}

struct typed_scan {
    void *cb;
    void *arg;
};

static int visit_blob(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct typed_scan *ts = arg;
    char dg[DIGEST_STR_MAX];
    if (klen >= sizeof(dg))
        return 0;
    memcpy(dg, key, klen);
    dg[klen] = '\0';
    MDB_val v = {vlen, (void *)val};
    struct rrec r = rrec_of(&v);
    uint64_t size = get_u64(&r);
    uint32_t refs = get_u32(&r);
    uint64_t created = get_u64(&r);
    return r.bad ? 0 : ((index_blob_cb)ts->cb)(dg, size, refs, created, ts->arg);
}

enum store_err index_blobs_scan(struct index *idx, index_blob_cb cb, void *arg)
{
    struct typed_scan ts = {(void *)cb, arg};
    return scan_prefix(idx, DB_BLOBS, "", 0, visit_blob, &ts);
}

enum store_err index_gc_blob(struct index *idx, const struct digest *d, index_hook remove_file,
                             void *arg, uint64_t *freed)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    uint64_t size = 0;
    uint32_t refs = 0;
    rc = blob_get(idx, txn, d, &size, &refs);
    if (rc == 0 && refs > 0) {
        /* linked again since the scan: it stays */
        mdb_txn_abort(txn);
        return STORE_EBUSY;
    }
    if (rc == MDB_NOTFOUND) {
        /* an orphan file: no record names it; remove it under the write lock all the same */
        enum store_err herr = remove_file(arg);
        mdb_txn_abort(txn);
        *freed = 0;
        return herr;
    }
    if (rc == 0) {
        enum store_err herr = remove_file(arg);
        if (herr != STORE_OK) {
            mdb_txn_abort(txn);
            return herr;
        }
        struct key k;
        key1(&k, d->str);
        rc = mdb_del(txn, idx->db[DB_BLOBS], &k.val, NULL);
    }
    if (rc == 0)
        rc = totals_adjust(idx, txn, -(int64_t)size, -1, 0);
    enum store_err err = txn_end(txn, rc);
    if (err == STORE_OK)
        *freed = size;
    return err;
}

bool index_blob_known(struct index *idx, const struct digest *d)
{
    MDB_txn *txn;
    if (txn_begin(idx, false, &txn) != 0)
        return true; /* when in doubt, it is known: nothing gets deleted */
    uint64_t size;
    uint32_t refs;
    int rc = blob_get(idx, txn, d, &size, &refs);
    mdb_txn_abort(txn);
    return rc != MDB_NOTFOUND;
}

static int visit_upload(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct typed_scan *ts = arg;
    char id[UPLOAD_ID_LEN + 1];
    struct index_upload u;
    MDB_val v = {vlen, (void *)val};
    if (klen != UPLOAD_ID_LEN || !upload_decode(&v, &u))
        return 0;
    memcpy(id, key, UPLOAD_ID_LEN);
    id[UPLOAD_ID_LEN] = '\0';
    return ((index_upload_cb)ts->cb)(id, &u, ts->arg);
}

enum store_err index_uploads_scan(struct index *idx, index_upload_cb cb, void *arg)
{
    struct typed_scan ts = {(void *)cb, arg};
    return scan_prefix(idx, DB_UPLOADS, "", 0, visit_upload, &ts);
}

/* ---- whole repositories ---- */

/* Deletes every entry of db under repo\0, calling each(rest, value) first (may be NULL). */
static int delete_prefixed(struct index *idx, MDB_txn *txn, enum dbi db, const char *repo,
                           int (*each)(struct index *, MDB_txn *, const char *, const MDB_val *,
                                       const char *repo),
                           bool dups)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0)
        return rc;
    struct key prefix;
    key2(&prefix, repo, "");
    for (;;) {
        MDB_val k = prefix.val, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || k.mv_size < prefix.val.mv_size ||
            memcmp(k.mv_data, prefix.buf, prefix.val.mv_size) != 0)
            break;
        if (each != NULL) {
            char rest[KEY_MAX + 1];
            size_t rl = k.mv_size - prefix.val.mv_size;
            memcpy(rest, (char *)k.mv_data + prefix.val.mv_size, rl);
            rest[rl] = '\0';
            rc = each(idx, txn, rest, &v, repo);
            if (rc != 0)
                break;
        }
        rc = mdb_cursor_del(cur, dups ? MDB_NODUPDATA : 0);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int drop_manifest_ref(struct index *idx, MDB_txn *txn, const char *digest,
                             const MDB_val *v, const char *repo)
{
    (void)v;
    (void)repo;
    return manifest_ref(idx, txn, digest, NULL, 0, -1);
}

static int drop_link_ref(struct index *idx, MDB_txn *txn, const char *digest, const MDB_val *v,
                         const char *repo)
{
    (void)repo;
    struct digest d;
    if (digest_parse(&d, digest, strlen(digest)) != STORE_OK)
        return 0;
    struct rrec r = rrec_of(v);
    uint64_t size = get_u64(&r);
    return blob_ref(idx, txn, &d, size, -1);
}

enum store_err index_repo_delete(struct index *idx, const char *repo)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key rk;
    key1(&rk, repo);
    MDB_val v;
    rc = mdb_get(txn, idx->db[DB_REPOS], &rk.val, &v);
    if (rc == 0)
        rc = delete_prefixed(idx, txn, DB_TAGS, repo, NULL, false);
    if (rc == 0)
        rc = delete_prefixed(idx, txn, DB_REFERRERS, repo, NULL, true);
    if (rc == 0)
        rc = delete_prefixed(idx, txn, DB_REPO_MANIFESTS, repo, drop_manifest_ref, false);
    if (rc == 0)
        rc = delete_prefixed(idx, txn, DB_LINKS, repo, drop_link_ref, false);
    if (rc == 0) {
        /* nothing stored any more; transfer counters stay for the bill */
        struct key uk;
        uint64_t f[USAGE_FIELDS];
        usage_key(&uk, 'r', repo);
        rc = fields_get(idx, txn, &uk, f, USAGE_FIELDS);
        f[0] = 0;
        if (rc == 0)
            rc = fields_put(idx, txn, &uk, f, USAGE_FIELDS);
    }
    if (rc == 0)
        rc = mdb_del(txn, idx->db[DB_REPOS], &rk.val, NULL);
    return txn_end(txn, rc);
}

/* ---- consistency check ---- */

struct dcount {
    char (*d)[DIGEST_STR_MAX];
    size_t n, cap;
    bool failed;
};

static void dcount_add(struct dcount *c, const char *s, size_t len)
{
    if (c->failed || len >= DIGEST_STR_MAX)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        char(*p)[DIGEST_STR_MAX] = realloc(c->d, cap * sizeof(*p));
        if (p == NULL) {
            c->failed = true;
            return;
        }
        c->d = p;
        c->cap = cap;
    }
    memcpy(c->d[c->n], s, len);
    c->d[c->n][len] = '\0';
    c->n++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* How many times s occurs in the sorted list. */
static uint32_t dcount_of(const struct dcount *c, const char *s)
{
    if (c->n == 0)
        return 0;
    char(*hit)[DIGEST_STR_MAX] = bsearch(s, c->d, c->n, sizeof(*c->d), cmp_str);
    if (hit == NULL)
        return 0;
    size_t i = (size_t)(hit - c->d), lo = i, hi = i;
    while (lo > 0 && strcmp(c->d[lo - 1], s) == 0)
        lo--;
    while (hi + 1 < c->n && strcmp(c->d[hi + 1], s) == 0)
        hi++;
    return (uint32_t)(hi - lo + 1);
}

/* Collects the digest part of every key repo\0digest of db. */
static int collect_digests(struct index *idx, MDB_txn *txn, enum dbi db, struct dcount *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, idx->db[db], &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        const char *nul = memchr(k.mv_data, '\0', k.mv_size);
        if (nul != NULL)
            dcount_add(out, nul + 1, k.mv_size - (size_t)(nul + 1 - (const char *)k.mv_data));
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (out->n > 0)
        qsort(out->d, out->n, sizeof(*out->d), cmp_str);
    return rc == MDB_NOTFOUND ? (out->failed ? ENOMEM : 0) : rc;
}

struct repo_sum {
    char repo[NAME_MAX_LEN + 1];
    uint64_t records; /* what the upload records of the repository hold */
    uint64_t figure;  /* what its "w" entry says */
};

struct repo_sums {
    struct repo_sum *v;
    size_t n, cap;
};

static int repo_sum_cmp(const void *a, const void *b)
{
    return strcmp(((const struct repo_sum *)a)->repo, ((const struct repo_sum *)b)->repo);
}

/* The entry of repo (added, zeroed, when absent; the array is sorted later); NULL: no memory. */
static struct repo_sum *repo_sum_of(struct repo_sums *s, const char *repo)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].repo, repo) == 0)
            return &s->v[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct repo_sum *p = realloc(s->v, cap * sizeof(*p));
        if (p == NULL)
            return NULL;
        s->v = p;
        s->cap = cap;
    }
    struct repo_sum *e = &s->v[s->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->repo, sizeof(e->repo), "%s", repo);
    return e;
}

/* What upload sessions hold per repository, against their records (*found counts problems). */
static int fsck_upload_holds(struct index *idx, MDB_txn *txn, bool repair, index_problem_cb cb,
                             void *arg, uint64_t *found)
{
    struct repo_sums sums = {NULL, 0, 0};
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, idx->db[DB_UPLOADS], &cur);
    if (rc != 0)
        return rc;
    int crc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && crc == 0) {
        struct index_upload u;
        if (upload_decode(&v, &u) && u.held > 0) {
            struct repo_sum *e = repo_sum_of(&sums, u.repo);
            if (e == NULL)
                rc = ENOMEM;
            else
                e->records += u.held;
        }
        crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    cur = NULL;
    if (rc == 0)
        rc = mdb_cursor_open(txn, idx->db[DB_USAGE], &cur);
    MDB_val start = {2, (void *)"w"};
    k = start;
    crc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : rc;
    while (rc == 0 && crc == 0 && k.mv_size >= 2 && memcmp(k.mv_data, "w", 2) == 0) {
        char repo[NAME_MAX_LEN + 1];
        struct rrec r = rrec_of(&v);
        uint64_t figure = get_u64(&r);
        if (k.mv_size - 2 < sizeof(repo)) {
            memcpy(repo, (char *)k.mv_data + 2, k.mv_size - 2);
            repo[k.mv_size - 2] = '\0';
            struct repo_sum *e = repo_sum_of(&sums, repo);
            if (e == NULL)
                rc = ENOMEM;
            else
                e->figure = figure;
        }
        crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (rc == 0 && crc != 0 && crc != MDB_NOTFOUND)
        rc = crc;
    if (sums.n > 1)
        qsort(sums.v, sums.n, sizeof(*sums.v), repo_sum_cmp);
    for (size_t i = 0; rc == 0 && i < sums.n; i++) {
        struct repo_sum *e = &sums.v[i];
        if (e->records == e->figure)
            continue;
        (*found)++;
        char msg[NAME_MAX_LEN + 128];
        snprintf(msg, sizeof(msg),
                 "repository %s: upload sessions hold %llu bytes recorded, %llu counted", e->repo,
                 (unsigned long long)e->figure, (unsigned long long)e->records);
        cb("usage", msg, arg);
        if (repair)
            rc = held_put(idx, txn, e->repo, e->records);
    }
    free(sums.v);
    return rc;
}

enum store_err index_fsck_counts(struct index *idx, bool repair, index_problem_cb cb, void *arg,
                                 uint64_t *problems)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = txn_begin(idx, repair, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct dcount links = {NULL, 0, 0, false}, rms = {NULL, 0, 0, false};
    uint64_t found = 0, phys = 0, nblobs = 0, nmanifests = 0;
    char msg[512];
    rc = collect_digests(idx, txn, DB_LINKS, &links);
    if (rc == 0)
        rc = collect_digests(idx, txn, DB_REPO_MANIFESTS, &rms);
    /* blob refcounts against the links */
    if (rc == 0)
        rc = mdb_cursor_open(txn, idx->db[DB_BLOBS], &cur);
    MDB_val k, v;
    int crc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    while (rc == 0 && crc == 0) {
        char dg[DIGEST_STR_MAX];
        if (k.mv_size < sizeof(dg)) {
            memcpy(dg, k.mv_data, k.mv_size);
            dg[k.mv_size] = '\0';
            struct rrec r = rrec_of(&v);
            uint64_t size = get_u64(&r);
            uint32_t refs = get_u32(&r);
            uint64_t created = get_u64(&r);
            uint32_t want = dcount_of(&links, dg);
            phys += size;
            nblobs++;
            if (!r.bad && refs != want) {
                found++;
                snprintf(msg, sizeof(msg), "blob %s: refcount %u, but %u links", dg, refs, want);
                cb("refcount", msg, arg);
                if (repair) {
                    struct wrec w = {.len = 0};
                    put_u8(&w, REC_VERSION);
                    put_u64(&w, size);
                    put_u32(&w, want);
                    put_u64(&w, created);
                    MDB_val nv = wrec_val(&w);
                    rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
                }
            }
        }
        crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    cur = NULL;
    /* manifest refcounts against the repositories holding them */
    if (rc == 0)
        rc = mdb_cursor_open(txn, idx->db[DB_MANIFESTS], &cur);
    crc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    while (rc == 0 && crc == 0) {
        char dg[DIGEST_STR_MAX];
        if (k.mv_size < sizeof(dg) && v.mv_size >= 5) {
            memcpy(dg, k.mv_data, k.mv_size);
            dg[k.mv_size] = '\0';
            const unsigned char *p = v.mv_data;
            uint32_t refs = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                            (uint32_t)p[4] << 24;
            uint32_t want = dcount_of(&rms, dg);
            phys += v.mv_size - 5;
            nmanifests++;
            if (refs != want) {
                found++;
                snprintf(msg, sizeof(msg), "manifest %s: refcount %u, but %u repositories", dg,
                         refs, want);
                cb("refcount", msg, arg);
                if (repair && want > 0) {
                    unsigned char *copy = malloc(v.mv_size);
                    if (copy == NULL) {
                        rc = ENOMEM;
                        break;
                    }
                    memcpy(copy, v.mv_data, v.mv_size);
                    copy[1] = (unsigned char)want;
                    copy[2] = (unsigned char)(want >> 8);
                    copy[3] = (unsigned char)(want >> 16);
                    copy[4] = (unsigned char)(want >> 24);
                    MDB_val nv = {v.mv_size, copy};
                    rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
                    free(copy);
                }
            }
        }
        crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    cur = NULL;
    free(links.d);
    free(rms.d);
    /* registry totals */
    if (rc == 0) {
        struct key gk;
        uint64_t f[TOTALS_FIELDS];
        usage_key(&gk, 'g', "");
        rc = fields_get(idx, txn, &gk, f, TOTALS_FIELDS);
        if (rc == 0 && (f[0] != phys || f[1] != nblobs || f[2] != nmanifests)) {
            found++;
            snprintf(msg, sizeof(msg),
                     "registry totals: %llu bytes, %llu blobs, %llu manifests recorded; %llu, "
                     "%llu, %llu counted",
                     (unsigned long long)f[0], (unsigned long long)f[1], (unsigned long long)f[2],
                     (unsigned long long)phys, (unsigned long long)nblobs,
                     (unsigned long long)nmanifests);
            cb("usage", msg, arg);
            if (repair) {
                uint64_t nf[TOTALS_FIELDS] = {phys, nblobs, nmanifests};
                rc = fields_put(idx, txn, &gk, nf, TOTALS_FIELDS);
            }
        }
    }
    /* per repository stored bytes */
    if (rc == 0)
        rc = mdb_cursor_open(txn, idx->db[DB_REPOS], &cur);
    crc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    while (rc == 0 && crc == 0) {
        char repo[NAME_MAX_LEN + 1];
        if (k.mv_size < sizeof(repo)) {
            memcpy(repo, k.mv_data, k.mv_size);
            repo[k.mv_size] = '\0';
            uint64_t sum = 0;
            rc = sum_repo(idx, txn, DB_LINKS, repo, false, &sum);
            if (rc == 0)
                rc = sum_repo(idx, txn, DB_REPO_MANIFESTS, repo, false, &sum);
            struct key uk;
            uint64_t f[USAGE_FIELDS];
            usage_key(&uk, 'r', repo);
            if (rc == 0)
                rc = fields_get(idx, txn, &uk, f, USAGE_FIELDS);
            if (rc == 0 && f[0] != sum) {
                found++;
                snprintf(msg, sizeof(msg), "repository %s: %llu stored bytes recorded, %llu counted",
                         repo, (unsigned long long)f[0], (unsigned long long)sum);
                cb("usage", msg, arg);
                if (repair) {
                    f[0] = sum;
                    rc = fields_put(idx, txn, &uk, f, USAGE_FIELDS);
                }
            }
        }
        crc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (rc == 0 && crc != 0 && crc != MDB_NOTFOUND)
        rc = crc;
    if (rc == 0)
        rc = fsck_upload_holds(idx, txn, repair, cb, arg, &found);
    *problems = found;
    if (!repair) {
        mdb_txn_abort(txn);
        return map_mdb(rc);
    }
    return txn_end(txn, rc);
}

/* ---- lifecycle policies (text validated by storage/policy.c) ---- */

enum store_err index_policy_put(struct index *idx, const char *repo, const char *json)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    usage_key(&k, 'l', repo);
    if (json == NULL) {
        rc = mdb_del(txn, idx->db[DB_USAGE], &k.val, NULL);
    } else {
        MDB_val v = {strlen(json), (void *)json};
        rc = mdb_put(txn, idx->db[DB_USAGE], &k.val, &v, 0);
    }
    return txn_end(txn, rc);
}

enum store_err index_policy_get(struct index *idx, const char *repo, char **json)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, false, &txn);
    if (rc != 0)
        return map_mdb(rc);
    struct key k;
    usage_key(&k, 'l', repo);
    MDB_val v;
    rc = mdb_get(txn, idx->db[DB_USAGE], &k.val, &v);
    if (rc == 0) {
        char *copy = malloc(v.mv_size + 1);
        if (copy == NULL) {
            rc = ENOMEM;
        } else {
            memcpy(copy, v.mv_data, v.mv_size);
            copy[v.mv_size] = '\0';
            *json = copy;
        }
    }
    mdb_txn_abort(txn);
    return map_mdb(rc);
}

enum store_err index_copy(struct index *idx, const char *dir)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return STORE_EINVAL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return store_err_from_errno(errno);
    /* our own file, not mdb_env_copy2's: that one is created 0666 minus the umask */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1)
        return store_err_from_errno(errno);
    enum store_err rc = map_mdb(mdb_env_copyfd2(idx->env, fd, MDB_CP_COMPACT));
    if (rc == STORE_OK && fsync(fd) != 0)
        rc = store_err_from_errno(errno);
    if (close(fd) != 0 && rc == STORE_OK)
        rc = store_err_from_errno(errno);
    return rc;
}

enum store_err index_probe_write(struct index *idx)
{
    MDB_txn *txn;
    int rc = txn_begin(idx, true, &txn);
    if (rc == 0)
        mdb_txn_abort(txn);
    return map_mdb(rc);
}
