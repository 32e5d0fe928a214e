#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/fsck.h"

struct fsck_ctx {
    struct index *idx;
    struct blobstore *bs;
    bool repair;
    struct fsck_report *r;
    fsck_problem_cb problem;
    fsck_progress_cb progress;
    void *arg;
    uint64_t total;
    enum store_err err;
};

/* "<what>: <text>" to the problem callback. */
static void say(struct fsck_ctx *c, const char *kind, const char *what, const char *text)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s: %s", what, text);
    c->problem(kind, msg, c->arg);
}

static int count_blob(const char *digest, uint64_t size, uint32_t refs, uint64_t created, void *arg)
{
    (void)digest;
    (void)size;
    (void)refs;
    (void)created;
    ((struct fsck_ctx *)arg)->total++;
    return 0;
}

static int check_blob(const char *digest, uint64_t size, uint32_t refs, uint64_t created,
                      void *arg)
{
    (void)refs;
    (void)created;
    struct fsck_ctx *c = arg;
    struct digest d;
    if (digest_parse(&d, digest, strlen(digest)) != STORE_OK)
        return 0;
    bool ok = false;
    enum store_err rc = blobstore_blob_verify(c->bs, &d, &ok);
    c->r->blobs_checked++;
    if (rc == STORE_ENOENT) {
        c->r->missing++;
        say(c, "missing", digest, "recorded, but its file is missing");
    } else if (rc != STORE_OK) {
        c->err = rc;
        return 1;
    } else {
        c->r->bytes_checked += size;
        if (!ok) {
            c->r->corrupted++;
            say(c, "corrupted", digest,
                c->repair ? "content does not match its digest; quarantined"
                          : "content does not match its digest");
            if (c->repair && blobstore_blob_quarantine(c->bs, &d) != STORE_OK)
                say(c, "corrupted", digest, "could not be quarantined");
        }
    }
    if (c->progress != NULL)
        c->progress(c->r->blobs_checked, c->total, c->arg);
    return 0;
}

struct orphan_arg {
    struct blobstore *bs;
    struct digest d;
};

static enum store_err remove_orphan(void *arg)
{
    struct orphan_arg *o = arg;
    return blobstore_blob_remove(o->bs, &o->d);
}

static int check_file(const char *name, uint64_t size, uint64_t mtime, void *arg)
{
    (void)size;
    (void)mtime;
    struct fsck_ctx *c = arg;
    struct orphan_arg o = {c->bs, {0, ""}};
    if (digest_parse(&o.d, name, strlen(name)) != STORE_OK || index_blob_known(c->idx, &o.d))
        return 0;
    c->r->orphans++;
    say(c, "orphan", name, c->repair ? "a file no record names; removed" : "a file no record names");
    uint64_t freed;
    if (c->repair)
        (void)index_gc_blob(c->idx, &o.d, remove_orphan, &o, &freed);
    return 0;
}

static void count_problem(const char *kind, const char *msg, void *arg)
{
    struct fsck_ctx *c = arg;
    c->problem(kind, msg, c->arg);
}

enum store_err fsck_run(struct index *idx, struct blobstore *bs, bool repair,
                        struct fsck_report *report, fsck_problem_cb problem,
                        fsck_progress_cb progress, void *arg)
{
    struct fsck_report r;
    memset(&r, 0, sizeof(r));
    struct fsck_ctx c = {idx, bs, repair, &r, problem, progress, arg, 0, STORE_OK};
    enum store_err rc = index_blobs_scan(idx, count_blob, &c);
    if (rc == STORE_OK)
        rc = index_blobs_scan(idx, check_blob, &c);
    if (rc == STORE_OK)
        rc = c.err;
    if (rc == STORE_OK)
        rc = blobstore_blob_scan(bs, check_file, &c);
    if (rc == STORE_OK)
        rc = index_fsck_counts(idx, repair, count_problem, &c, &r.count_problems);
    if (rc == STORE_OK)
        *report = r;
    return rc;
}
