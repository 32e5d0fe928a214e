/*
 * The LMDB index: repositories, tags, manifests (their bytes), repository membership of
 * manifests, blob links, blobs, referrers and upload sessions. Every function runs in one
 * transaction of its own, so each change is atomic; readers never see half of a change.
 *
 * Tables (keys are byte strings, parts separated by NUL so prefix scans give sorted lists):
 *   repos          repo                      -> created
 *   tags           repo\0tag                 -> digest
 *   manifests      digest                    -> refcount, bytes
 *   repo_manifests repo\0digest              -> size, created, media type, artifactType, subject
 *   links          repo\0blobdigest          -> size, linked-at
 *   blobs          digest                    -> size, refcount (links), created
 *   referrers      repo\0subject (dupsort)   -> referrer digest
 *   uploads        id                        -> algorithm, created, repo, bytes held
 * Records are little-endian structs led by a version byte.
 *
 * Strings passed in (repo, tag, id) must already be validated (storage/names.h).
 */
#ifndef OCIREG_STORAGE_INDEX_H
#define OCIREG_STORAGE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/digest.h"
#include "storage/err.h"
#include "storage/manifest.h"
#include "storage/names.h"

struct index;

/*
 * Opens (creating) the environment in directory `dir`, migrating an older schema in place;
 * STORE_EVERSION when a newer ocireg wrote it. OWNED: close with index_close.
 */
enum store_err index_open(struct index **out, const char *dir, uint64_t map_size);
void index_close(struct index *idx); /* NULL is a no-op */

/* A consistent copy of the whole index into an empty directory dir (LMDB's own hot copy). */
enum store_err index_copy(struct index *idx, const char *dir);

/* Takes (and gives back) the write lock: can the index take changes now? */
enum store_err index_probe_write(struct index *idx);

/* The schema version this binary reads and writes. */
uint32_t index_schema_version(void);

/* ---- blobs and links ---- */

/*
 * Links blob d (of `size` bytes, already in the blob store) into repo. With `from` set, this
 * is a mount: the blob must be linked in `from` (STORE_ENOENT otherwise) and its size is
 * taken from there (*size is written). With `from` the empty string, the blob may be linked
 * in any repository (a mount without a source). Linking twice is not an error.
 */
enum store_err index_blob_link(struct index *idx, const char *repo, const struct digest *d,
                               uint64_t *size, const char *from);

/* Called inside a write txn; an error aborts the txn. */
typedef enum store_err (*index_hook)(void *arg);

/*
 * Records a freshly uploaded blob: in one txn, runs install (which puts the file in place:
 * upload_install) and links it into repo. The garbage collector removes blob files inside
 * its txn too, so a file is never removed between being put in place and being recorded.
 * When the txn fails (quota, full map, disk), uninstall (may be NULL) runs before the abort
 * if no record names the blob, so the file does not stay behind. upload_id (may be NULL):
 * the upload record that the same txn removes.
 */
enum store_err index_blob_commit(struct index *idx, const char *repo, const struct digest *d,
                                 uint64_t size, index_hook install, index_hook uninstall,
                                 void *arg, const char *upload_id);

/* STORE_OK with *size when d is linked in repo, STORE_ENOENT otherwise. */
enum store_err index_blob_linked(struct index *idx, const char *repo, const struct digest *d,
                                 uint64_t *size);

/* Removes the link of d from repo; STORE_ENOENT when it was not linked. */
enum store_err index_blob_unlink(struct index *idx, const char *repo, const struct digest *d);

/* ---- upload sessions ---- */

/*
 * A session holds bytes (at least its data, perhaps some ahead of it): they count against its
 * repository's quota with the repository's stored bytes, until the session is committed
 * (index_blob_commit with its id) or deleted. What the sessions of a repository hold together
 * is kept beside, changed in the same txns.
 */
struct index_upload {
    char repo[NAME_MAX_LEN + 1];
    enum digest_alg alg;
    uint64_t created;
    uint64_t held; /* bytes held (records of older versions: 0) */
};

/* Bounds of what sessions hold; 0: none. */
struct index_upload_limits {
    uint64_t session; /* one session */
    uint64_t repo;    /* the sessions of one repository together */
};

/*
 * Records session id, holding u->held bytes from the start: checked as index_upload_hold
 * checks a growth (lim may be NULL: the quota only).
 */
enum store_err index_upload_put(struct index *idx, const char *id, const struct index_upload *u,
                                const struct index_upload_limits *lim);
enum store_err index_upload_get(struct index *idx, const char *id, struct index_upload *out);
/* Deletes the record, giving back what it held. */
enum store_err index_upload_del(struct index *idx, const char *id);
/*
 * Makes session id hold `bytes`, more or less than before. A growth past lim->session is
 * STORE_ETOOBIG, past lim->repo (with what the repository's other sessions hold) STORE_EBUSY,
 * past the repository's quota (stored bytes and what all its sessions hold) STORE_EQUOTA;
 * nothing changes then. STORE_ENOENT when the session has no record.
 */
enum store_err index_upload_hold(struct index *idx, const char *id, uint64_t bytes,
                                 const struct index_upload_limits *lim);
/*
 * Could a new session of repo hold `bytes` now? The refusals of index_upload_hold, in a read
 * txn, holding nothing: for a small body that lives only as long as its request.
 */
enum store_err index_upload_check(struct index *idx, const char *repo, uint64_t bytes,
                                  const struct index_upload_limits *lim);
/* What the upload sessions of repo hold together, bytes. */
enum store_err index_upload_held(struct index *idx, const char *repo, uint64_t *bytes);

/* ---- manifests and tags ---- */

struct index_manifest_put {
    const char *repo;
    struct digest digest;
    const struct manifest_info *info;
    const void *bytes;
    size_t len;
    const char *const *tags; /* validated tags to point at this manifest */
    size_t ntags;
};

/*
 * Stores a manifest, its membership in repo, its tags and its referrer entry, in one txn.
 * Every reference of info (but optional ones) must be in the repository: otherwise
 * STORE_ENOENT with *bad_ref set to its index; a blob whose size differs from the
 * descriptor's gives STORE_ERANGE with *bad_ref. Moving an immutable tag gives STORE_EEXIST
 * with *bad_ref the index of the tag; nothing is stored then.
 */
enum store_err index_manifest_put(struct index *idx, const struct index_manifest_put *m,
                                  size_t *bad_ref);

struct index_manifest {
    struct digest digest;
    char media_type[MEDIA_TYPE_MAX + 1];
    uint64_t size;
    void *bytes; /* OWNED (free()); NULL when not asked for */
};

#define INDEX_TAG_EXCLUDES_MAX 16

/* Tag mutability of a repository: immutable tags never move, but for those matching an
 * exclusion glob. */
struct index_tag_policy {
    bool immutable;
    size_t nexclude;
    char exclude[INDEX_TAG_EXCLUDES_MAX][TAG_MAX_LEN + 1];
};
enum store_err index_tag_policy_set(struct index *idx, const char *repo,
                                    const struct index_tag_policy *p);
enum store_err index_tag_policy_get(struct index *idx, const char *repo,
                                    struct index_tag_policy *out);

/* Looks up a manifest of repo by digest. want_bytes: copy the bytes out too. */
enum store_err index_manifest_get(struct index *idx, const char *repo, const struct digest *d,
                                  bool want_bytes, struct index_manifest *out);

/* Resolves a tag of repo. */
enum store_err index_tag_get(struct index *idx, const char *repo, const char *tag,
                             struct digest *out);

/* Removes a manifest from repo with the tags pointing at it and its referrer entry. */
enum store_err index_manifest_delete(struct index *idx, const char *repo, const struct digest *d);

/* Removes one tag; STORE_ENOENT when it does not exist. */
enum store_err index_tag_delete(struct index *idx, const char *repo, const char *tag);

/* ---- listings ---- */

/* Called for each entry, with a BORROWED string valid during the call. Non-zero stops. */
typedef int (*index_name_cb)(const char *name, size_t len, void *arg);

/*
 * Lists up to n tags of repo in byte order after `last` (NULL: from the start).
 * *more tells whether entries remain. STORE_ENOENT when the repository does not exist.
 */
enum store_err index_tags_list(struct index *idx, const char *repo, const char *last, size_t n,
                               index_name_cb cb, void *arg, bool *more);

/* Lists repositories the same way. */
enum store_err index_repos_list(struct index *idx, const char *last, size_t n, index_name_cb cb,
                                void *arg, bool *more);

/*
 * Deletes a repository in one txn: its tags, manifests, referrer entries and links (blobs
 * other repositories link stay; the rest wait for gc). Its transfer counters are kept.
 */
enum store_err index_repo_delete(struct index *idx, const char *repo);

/* True when the repository exists. */
bool index_repo_exists(struct index *idx, const char *repo);

struct index_referrer {
    const char *digest;     /* BORROWED, valid during the callback */
    const char *media_type; /* BORROWED */
    const char *artifact_type; /* BORROWED, "" when none */
    uint64_t size;
    const void *bytes; /* BORROWED: the referrer manifest itself */
    size_t len;
};

typedef int (*index_referrer_cb)(const struct index_referrer *r, void *arg);

/* Lists the manifests of repo whose subject is `subject`. */
enum store_err index_referrers_list(struct index *idx, const char *repo,
                                    const struct digest *subject, index_referrer_cb cb, void *arg);

/* ---- usage: billing figures ---- */

/*
 * Per repository ('r') or per user ('u'). stored_bytes is the size of the distinct blobs
 * linked into the repository plus its manifests, kept exact in the txns that change them.
 * The transfer counters are monotonic, added in batches by index_transfer_add.
 */
struct index_usage {
    uint64_t stored_bytes;
    uint64_t ingress_bytes;
    uint64_t egress_bytes;
    uint64_t pulls;
    uint64_t pushes;
    uint64_t quota; /* bytes; 0 = none (the default quota may still apply) */
};

struct index_totals {
    uint64_t physical_bytes; /* blob files and manifests, each counted once */
    uint64_t blobs;
    uint64_t manifests;
};

struct index_transfer {
    char kind; /* 'r' repository, 'u' user, 'p' a pull of manifest "repo@digest" (its time) */
    const char *name;
    uint64_t ingress_bytes, egress_bytes, pulls, pushes;
};

/* Figures of one repository or user (zeros when it has none). */
enum store_err index_usage_get(struct index *idx, char kind, const char *name,
                               struct index_usage *out);

typedef int (*index_usage_cb)(const char *name, const struct index_usage *u, void *arg);
/* Lists the entries of a kind in name order after last (NULL: from the start), n at most. */
enum store_err index_usage_list(struct index *idx, char kind, const char *last, size_t n,
                                index_usage_cb cb, void *arg, bool *more);

/* Adds transfer deltas, all in one txn. */
enum store_err index_transfer_add(struct index *idx, const struct index_transfer *t, size_t n);

enum store_err index_totals_get(struct index *idx, struct index_totals *out);

/* Sets repo's quota (repo NULL: the default for repositories without one); 0 removes it.
 * A change that would grow a repository past its quota fails with STORE_EQUOTA. */
enum store_err index_quota_set(struct index *idx, const char *repo, uint64_t bytes);
enum store_err index_quota_default(struct index *idx, uint64_t *bytes);

/* The part of repo's stored bytes that no other repository references. */
enum store_err index_exclusive_bytes(struct index *idx, const char *repo, uint64_t *out);

/* Recounts repo's stored bytes from its links and manifests (for fsck and tests). */
enum store_err index_recount(struct index *idx, const char *repo, uint64_t *stored);

/* Stores a copy of every usage entry under hour (seconds / 3600), once per hour. */
enum store_err index_snapshot_take(struct index *idx, uint64_t hour);
/* The newest snapshot of an entry taken at or before hour; *at says when (STORE_ENOENT:
 * none, the entry's figures then count from zero). */
enum store_err index_snapshot_get(struct index *idx, uint64_t hour, char kind, const char *name,
                                  struct index_usage *out, uint64_t *at);

/* ---- garbage collection primitives (storage/gc.c drives them) ---- */

/* A counter bumped by every manifest PUT in repo. */
enum store_err index_repo_gen(struct index *idx, const char *repo, uint64_t *gen);

/* Visitors get BORROWED data valid during the call; non-zero stops the walk. */
typedef int (*index_manifest_cb)(const char *digest, const char *media_type, const void *bytes,
                                 size_t len, uint64_t created, uint64_t pulled, void *arg);
enum store_err index_manifests_scan(struct index *idx, const char *repo, index_manifest_cb cb,
                                    void *arg);
typedef int (*index_tag_cb)(const char *tag, const char *digest, void *arg);
enum store_err index_tags_scan(struct index *idx, const char *repo, index_tag_cb cb, void *arg);
typedef int (*index_link_cb)(const char *digest, uint64_t size, uint64_t linked_at, void *arg);
enum store_err index_links_scan(struct index *idx, const char *repo, index_link_cb cb, void *arg);

/* A link the collector decided to remove, with the linked_at time it saw. */
struct index_gc_link {
    struct digest digest;
    uint64_t linked_at;
};

/*
 * In one txn, if repo's generation is still gen: deletes the manifests in drop (with their
 * tags and referrer entries) and the links in unlink whose linked_at is still the one seen
 * (a link refreshed since, by an upload or mount, stays; *unlinked counts those that went).
 * STORE_EBUSY when the generation moved.
 */
enum store_err index_gc_repo(struct index *idx, const char *repo, uint64_t gen,
                             const struct index_gc_link *unlink, size_t nunlink,
                             const struct digest *drop, size_t ndrop, size_t *unlinked);

typedef int (*index_blob_cb)(const char *digest, uint64_t size, uint32_t refs, uint64_t created,
                             void *arg);
enum store_err index_blobs_scan(struct index *idx, index_blob_cb cb, void *arg);

/*
 * Deletes blob d if no repository links it, re-checked inside the write txn, which also runs
 * remove_file (blobstore_blob_remove); *freed is its size. STORE_EBUSY when it is linked
 * again. For a digest with no record (an orphan file) only remove_file runs.
 */
enum store_err index_gc_blob(struct index *idx, const struct digest *d, index_hook remove_file,
                             void *arg, uint64_t *freed);
/* True when the blobs table has a record of d. */
bool index_blob_known(struct index *idx, const struct digest *d);

typedef int (*index_upload_cb)(const char *id, const struct index_upload *u, void *arg);
enum store_err index_uploads_scan(struct index *idx, index_upload_cb cb, void *arg);

/* ---- lifecycle policies ---- */

/* Stores repo's policy text (NULL removes it); storage/policy.c validates it first. */
enum store_err index_policy_put(struct index *idx, const char *repo, const char *json);
/* *json is OWNED (free()); STORE_ENOENT when the repository has none. */
enum store_err index_policy_get(struct index *idx, const char *repo, char **json);

/* ---- consistency check ---- */

/* Called for each problem found: kind ("refcount", "usage") and a message (BORROWED). */
typedef void (*index_problem_cb)(const char *kind, const char *msg, void *arg);

/*
 * Recounts blob and manifest refcounts, registry totals and every repository's stored
 * bytes from the links and manifests, reporting each difference; with repair, fixes them
 * in the same txn. *problems is the number found.
 */
enum store_err index_fsck_counts(struct index *idx, bool repair, index_problem_cb cb, void *arg,
                                 uint64_t *problems);

/* ---- tables kept for other modules (auth: users, grants); records are theirs ---- */

enum index_table { INDEX_USERS, INDEX_GRANTS };

/* Keys of at most NAME_MAX_LEN + 1 + DIGEST_STR_MAX bytes. no_overwrite: STORE_EEXIST if set. */
enum store_err index_kv_put(struct index *idx, enum index_table t, const void *key, size_t klen,
                            const void *val, size_t vlen, bool no_overwrite);
/* Copies the value into buf[cap] (STORE_EINVAL when larger); *len its size. */
enum store_err index_kv_get(struct index *idx, enum index_table t, const void *key, size_t klen,
                            void *buf, size_t cap, size_t *len);
enum store_err index_kv_del(struct index *idx, enum index_table t, const void *key, size_t klen);
/* Deletes every key starting with prefix, in one txn. */
enum store_err index_kv_del_prefix(struct index *idx, enum index_table t, const void *prefix,
                                   size_t plen);

/* Called with BORROWED key and value, valid during the call. Non-zero stops. */
typedef int (*index_kv_cb)(const void *key, size_t klen, const void *val, size_t vlen, void *arg);
/* Visits, in key order, every entry whose key starts with prefix (plen 0: all). */
enum store_err index_kv_scan(struct index *idx, enum index_table t, const void *prefix,
                             size_t plen, index_kv_cb cb, void *arg);

#endif
