/*
 * The online garbage collector. Runs against the same root as a live server (LMDB is
 * multi-process safe): every deletion is re-checked inside the write txn that makes it, so a
 * concurrent push, mount or tag always wins.
 *
 * Kept: tagged manifests, manifests younger than the grace period, the children of kept
 * indexes, referrers of kept manifests, and, unless delete_untagged, every manifest. Links no kept manifest references are removed once
 * older than the grace period (a push in progress has uploaded layers but not yet its
 * manifest). Blob files no repository links any more are deleted; so are upload sessions idle
 * longer than upload_max_age and files left by a crash that no record names.
 */
#ifndef OCIREG_STORAGE_GC_H
#define OCIREG_STORAGE_GC_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/blobstore.h"
#include "storage/index.h"

struct gc_options {
    bool dry_run;         /* decide and report, change nothing */
    bool delete_untagged; /* remove untagged manifests no kept index references */
    uint64_t grace;       /* seconds a link (or orphan file) is safe from collection */
    uint64_t upload_max_age; /* seconds an upload session may sit idle */
    uint64_t now;            /* seconds since the epoch */
    /* told of each image a lifecycle rule expires (may be NULL) */
    void (*expired)(const char *repo, int rule_priority, const char *digest, void *arg);
    void *expired_arg;
};

struct gc_report {
    uint64_t repositories;
    uint64_t manifests_kept, manifests_removed, manifest_bytes_removed;
    uint64_t links_kept, links_removed;
    uint64_t blobs_kept, blobs_removed, blob_bytes_removed;
    uint64_t uploads_removed, upload_bytes_removed;
    uint64_t orphans_removed, orphan_bytes_removed;
    uint64_t policy_expired; /* images lifecycle rules expired */
    uint64_t retried; /* repositories or blobs changed during the run: left for next time */
};

/* Progress: the phase ("repositories", "blobs", "uploads", "orphans"), done of total. */
typedef void (*gc_progress_cb)(const char *phase, uint64_t done, uint64_t total, void *arg);

/*
 * Removes blob files no record names (left by a crash between placing a file and committing
 * its record), whatever their age. Run at startup; *removed says how many.
 */
enum store_err gc_sweep_orphans(struct index *idx, struct blobstore *bs, uint64_t *removed);

enum store_err gc_run(struct index *idx, struct blobstore *bs, const struct gc_options *opt,
                      struct gc_report *report, gc_progress_cb progress, void *arg);

#endif
