/*
 * fsck: rehashes every blob file against its digest, checks every blob record has its file,
 * finds files no record names, and recounts refcounts and usage figures (index_fsck_counts).
 * With repair: counts are fixed, orphans removed, corrupted blobs quarantined so they are
 * never served (GETs of them answer BLOB_UNKNOWN). Missing files can only be reported.
 */
#ifndef OCIREG_STORAGE_FSCK_H
#define OCIREG_STORAGE_FSCK_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/blobstore.h"
#include "storage/index.h"

struct fsck_report {
    uint64_t blobs_checked, bytes_checked;
    uint64_t corrupted, missing, orphans, count_problems;
};

/* Called per problem: kind ("corrupted", "missing", "orphan", "refcount", "usage"), text. */
typedef void (*fsck_problem_cb)(const char *kind, const char *msg, void *arg);
typedef void (*fsck_progress_cb)(uint64_t done, uint64_t total, void *arg);

enum store_err fsck_run(struct index *idx, struct blobstore *bs, bool repair,
                        struct fsck_report *report, fsck_problem_cb problem,
                        fsck_progress_cb progress, void *arg);

#endif
