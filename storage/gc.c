#include <stdlib.h>
#include <string.h>

#include "storage/gc.h"
#include "storage/manifest.h"
#include "storage/policy.h"

/* A growable array of digests. */
struct dlist {
    struct digest *d;
    size_t n, cap;
    bool failed;
};

static void dlist_add(struct dlist *l, const char *s)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct digest *p = realloc(l->d, cap * sizeof(*p));
        if (p == NULL) {
            l->failed = true;
            return;
        }
        l->d = p;
        l->cap = cap;
    }
    if (digest_parse(&l->d[l->n], s, strlen(s)) == STORE_OK)
        l->n++;
}

static int cmp_digest(const void *a, const void *b)
{
    return strcmp(((const struct digest *)a)->str, ((const struct digest *)b)->str);
}

static bool dlist_has(const struct dlist *sorted, const char *s)
{
    struct digest key;
    if (sorted->n == 0 || digest_parse(&key, s, strlen(s)) != STORE_OK)
        return false;
    return bsearch(&key, sorted->d, sorted->n, sizeof(key), cmp_digest) != NULL;
}

static size_t dlist_count(const struct dlist *sorted, const char *s)
{
    size_t n = 0;
    for (size_t i = 0; i < sorted->n; i++)
        n += strcmp(sorted->d[i].str, s) == 0;
    return n;
}

/* One manifest of the repository under collection. */
struct mnode {
    struct digest digest;
    uint64_t size;
    uint64_t created;
    uint64_t pulled;
    bool tagged;
    bool kept;
    int expired; /* priority of the lifecycle rule that expires it; 0 none */
    char **tags; /* OWNED */
    size_t ntags;
    struct manifest_info info;
    bool parsed;
};

struct repo_scan {
    struct mnode *m;
    size_t n, cap;
    bool failed;
};

static int scan_manifest(const char *digest, const char *media_type, const void *bytes, size_t len,
                         uint64_t created, uint64_t pulled, void *arg)
{
    struct repo_scan *rs = arg;
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 32;
        struct mnode *p = realloc(rs->m, cap * sizeof(*p));
        if (p == NULL) {
            rs->failed = true;
            return 1;
        }
        rs->m = p;
        rs->cap = cap;
    }
    struct mnode *node = &rs->m[rs->n];
    memset(node, 0, sizeof(*node));
    if (digest_parse(&node->digest, digest, strlen(digest)) != STORE_OK)
        return 0;
    node->size = len;
    node->created = created;
    node->pulled = pulled;
    const char *why;
    /* a manifest we cannot read references nothing we know of, but it is still kept below */
    node->parsed = manifest_parse(media_type, bytes, len, &node->info, &why) == STORE_OK;
    rs->n++;
    return 0;
}

static struct mnode *find_node(struct repo_scan *rs, const char *digest)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->m[i].digest.str, digest) == 0)
            return &rs->m[i];
    return NULL;
}

static int scan_tag(const char *tag, const char *digest, void *arg)
{
    struct mnode *n = find_node(arg, digest);
    if (n == NULL)
        return 0;
    n->tagged = true;
    char **tags = realloc(n->tags, (n->ntags + 1) * sizeof(*tags));
    if (tags == NULL)
        return 0; /* a tag not seen only makes a rule select less */
    n->tags = tags;
    n->tags[n->ntags] = strdup(tag);
    if (n->tags[n->ntags] != NULL)
        n->ntags++;
    return 0;
}

/* Applies the repository's lifecycle policy: marks the images its rules expire. */
static void apply_policy(struct index *idx, const char *repo, struct repo_scan *rs,
                         const struct gc_options *opt, struct gc_report *r)
{
    char *text = NULL;
    if (index_policy_get(idx, repo, &text) != STORE_OK)
        return;
    struct policy *pol = malloc(sizeof(*pol));
    struct policy_image *img = calloc(rs->n ? rs->n : 1, sizeof(*img));
    size_t *which = calloc(rs->n ? rs->n : 1, sizeof(*which));
    int *expired = calloc(rs->n ? rs->n : 1, sizeof(*expired));
    char err[256];
    if (pol == NULL || img == NULL || which == NULL || expired == NULL ||
        policy_parse(text, strlen(text), pol, err, sizeof(err)) != STORE_OK)
        goto out;
    /* images: top-level manifests; index children and referrers follow their parent */
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        struct mnode *m = &rs->m[i];
        bool child = m->parsed && m->info.has_subject;
        for (size_t j = 0; !child && j < rs->n; j++)
            for (size_t k = 0; rs->m[j].parsed && k < rs->m[j].info.nrefs; k++)
                if (rs->m[j].info.refs[k].is_manifest &&
                    digest_equal(&rs->m[j].info.refs[k].digest, &m->digest)) {
                    child = true;
                    break;
                }
        if (child)
            continue;
        img[n] = (struct policy_image){(const char *const *)m->tags, m->ntags, m->created,
                                       m->pulled};
        which[n++] = i;
    }
    policy_evaluate(pol, img, n, opt->now, expired);
    for (size_t i = 0; i < n; i++) {
        struct mnode *m = &rs->m[which[i]];
        /* never what a push may still be completing */
        if (expired[i] == 0 || m->created + opt->grace > opt->now)
            continue;
        m->expired = expired[i];
        r->policy_expired++;
        if (opt->expired != NULL)
            opt->expired(repo, expired[i], m->digest.str, opt->expired_arg);
    }
out:
    free(text);
    free(pol);
    free(img);
    free(which);
    free(expired);
}

/*
 * Marks what stays: roots (tagged, unreadable, or younger than the grace: the children of
 * a multi-arch push arrive before their index), then children of kept indexes and
 * referrers of kept manifests.
 */
static void mark(struct repo_scan *rs, const struct gc_options *opt)
{
    for (size_t i = 0; i < rs->n; i++)
        rs->m[i].kept = rs->m[i].expired == 0 &&
                        (!opt->delete_untagged || rs->m[i].tagged || !rs->m[i].parsed ||
                         rs->m[i].created + opt->grace > opt->now);
    bool changed = true;
    while (changed) {
        changed = false;
        for (size_t i = 0; i < rs->n; i++) {
            struct mnode *n = &rs->m[i];
            if (!n->parsed)
                continue;
            if (n->kept) {
                for (size_t j = 0; j < n->info.nrefs; j++) {
                    if (!n->info.refs[j].is_manifest)
                        continue;
                    struct mnode *c = find_node(rs, n->info.refs[j].digest.str);
                    if (c != NULL && !c->kept) {
                        c->kept = true;
                        changed = true;
                    }
                }
            } else if (n->info.has_subject) {
                struct mnode *s = find_node(rs, n->info.subject.str);
                if (s != NULL && s->kept) {
                    n->kept = true;
                    changed = true;
                }
            }
        }
    }
}

struct link_scan {
    const struct dlist *referenced; /* sorted */
    const struct gc_options *opt;
    struct index_gc_link *unlink; /* with the time each was seen linked */
    size_t n, cap;
    bool failed;
    uint64_t kept;
};

static int scan_link(const char *digest, uint64_t size, uint64_t linked_at, void *arg)
{
    (void)size;
    struct link_scan *ls = arg;
    bool young = linked_at + ls->opt->grace > ls->opt->now;
    if (young || dlist_has(ls->referenced, digest)) {
        ls->kept++;
        return 0;
    }
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 64;
        struct index_gc_link *p = realloc(ls->unlink, cap * sizeof(*p));
        if (p == NULL) {
            ls->failed = true;
            return 1;
        }
        ls->unlink = p;
        ls->cap = cap;
    }
    if (digest_parse(&ls->unlink[ls->n].digest, digest, strlen(digest)) == STORE_OK)
        ls->unlink[ls->n++].linked_at = linked_at;
    return 0;
}

static void free_scan(struct repo_scan *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        if (rs->m[i].parsed)
            manifest_info_free(&rs->m[i].info);
        for (size_t t = 0; t < rs->m[i].ntags; t++)
            free(rs->m[i].tags[t]);
        free(rs->m[i].tags);
    }
    free(rs->m);
}

/* Collects one repository; the links it removes are added to *unlinked (for dry runs). */
static enum store_err gc_repo(struct index *idx, const char *repo, const struct gc_options *opt,
                              struct gc_report *r, struct dlist *unlinked)
{
    uint64_t gen = 0;
    enum store_err rc = index_repo_gen(idx, repo, &gen);
    if (rc != STORE_OK)
        return rc;
    struct repo_scan rs = {NULL, 0, 0, false};
    struct dlist referenced = {NULL, 0, 0, false}, drop = {NULL, 0, 0, false};
    struct link_scan ls = {&referenced, opt, NULL, 0, 0, false, 0};
    rc = index_manifests_scan(idx, repo, scan_manifest, &rs);
    if (rc == STORE_OK)
        rc = index_tags_scan(idx, repo, scan_tag, &rs);
    if (rc != STORE_OK || rs.failed)
        goto out;
    apply_policy(idx, repo, &rs, opt, r);
    mark(&rs, opt);
    uint64_t dropped_bytes = 0;
    for (size_t i = 0; i < rs.n; i++) {
        struct mnode *n = &rs.m[i];
        if (!n->kept) {
            dlist_add(&drop, n->digest.str);
            dropped_bytes += n->size;
            continue;
        }
        for (size_t j = 0; n->parsed && j < n->info.nrefs; j++)
            if (!n->info.refs[j].is_manifest)
                dlist_add(&referenced, n->info.refs[j].digest.str);
    }
    if (referenced.failed || drop.failed) {
        rc = STORE_ENOMEM;
        goto out;
    }
    if (referenced.n > 0)
        qsort(referenced.d, referenced.n, sizeof(*referenced.d), cmp_digest);
    rc = index_links_scan(idx, repo, scan_link, &ls);
    if (rc != STORE_OK || ls.failed) {
        rc = rc != STORE_OK ? rc : STORE_ENOMEM;
        goto out;
    }
    size_t unlinked_n = ls.n; /* a dry run removes what it decided */
    if (!opt->dry_run && (ls.n > 0 || drop.n > 0)) {
        rc = index_gc_repo(idx, repo, gen, ls.unlink, ls.n, drop.d, drop.n, &unlinked_n);
        if (rc == STORE_EBUSY) {
            r->retried++;
            rc = STORE_OK;
            r->manifests_kept += rs.n;
            r->links_kept += ls.kept + ls.n;
            goto out;
        }
        if (rc != STORE_OK)
            goto out;
    }
    r->manifests_kept += rs.n - drop.n;
    r->manifests_removed += drop.n;
    r->manifest_bytes_removed += dropped_bytes;
    r->links_kept += ls.kept + (ls.n - unlinked_n);
    r->links_removed += unlinked_n;
    for (size_t i = 0; i < ls.n; i++)
        dlist_add(unlinked, ls.unlink[i].digest.str);
out:
    free_scan(&rs);
    free(referenced.d);
    free(drop.d);
    free(ls.unlink);
    return rc;
}

struct name_list {
    char **names;
    size_t n, cap;
    bool failed;
};

static int add_repo(const char *name, size_t len, void *arg)
{
    struct name_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->names, cap * sizeof(*p));
        if (p == NULL) {
            l->failed = true;
            return 1;
        }
        l->names = p;
        l->cap = cap;
    }
    l->names[l->n] = strndup(name, len);
    if (l->names[l->n] == NULL) {
        l->failed = true;
        return 1;
    }
    l->n++;
    return 0;
}

struct blob_pass {
    struct dlist dead; /* refcount 0 (or 0 once the dry run's unlinks are counted) */
    const struct dlist *unlinked; /* sorted; dry runs only */
    bool dry_run;
    uint64_t kept;
    uint64_t dead_bytes_dry;
};

static int scan_blob(const char *digest, uint64_t size, uint32_t refs, uint64_t created,
                     void *arg)
{
    (void)created;
    struct blob_pass *bp = arg;
    size_t pending = bp->dry_run ? dlist_count(bp->unlinked, digest) : 0;
    if (refs <= pending) {
        dlist_add(&bp->dead, digest);
        bp->dead_bytes_dry += size;
    } else {
        bp->kept++;
    }
    return 0;
}

struct remove_arg {
    struct blobstore *bs;
    const struct digest *d;
};

static enum store_err remove_file(void *arg)
{
    struct remove_arg *ra = arg;
    return blobstore_blob_remove(ra->bs, ra->d);
}

struct orphan_pass {
    struct index *idx;
    const struct gc_options *opt;
    struct dlist found;
    uint64_t bytes;
};

static int scan_blob_file(const char *name, uint64_t size, uint64_t mtime, void *arg)
{
    struct orphan_pass *op = arg;
    struct digest d;
    if (digest_parse(&d, name, strlen(name)) != STORE_OK)
        return 0;
    /* young files may belong to a commit in progress: left to a later run */
    if (mtime + op->opt->grace > op->opt->now || index_blob_known(op->idx, &d))
        return 0;
    dlist_add(&op->found, name);
    op->bytes += size;
    return 0;
}

struct upload_pass {
    struct index *idx;
    struct blobstore *bs;
    const struct gc_options *opt;
    struct gc_report *r;
};

static int scan_upload_file(const char *id, uint64_t size, uint64_t mtime, void *arg)
{
    struct upload_pass *up = arg;
    /* idle since its last byte for longer than the limit (with or without a record) */
    if (mtime + up->opt->upload_max_age > up->opt->now)
        return 0;
    if (!up->opt->dry_run) {
        if (upload_remove(up->bs, id) != STORE_OK)
            return 0;
        (void)index_upload_del(up->idx, id);
    }
    up->r->uploads_removed++;
    up->r->upload_bytes_removed += size;
    return 0;
}

static int scan_upload_record(const char *id, const struct index_upload *u, void *arg)
{
    struct upload_pass *up = arg;
    /* a record whose data file is gone is a dead session */
    if (!blobstore_upload_present(up->bs, id) &&
        u->created + up->opt->upload_max_age <= up->opt->now && !up->opt->dry_run)
        (void)index_upload_del(up->idx, id);
    return 0;
}

enum store_err gc_run(struct index *idx, struct blobstore *bs, const struct gc_options *opt,
                      struct gc_report *report, gc_progress_cb progress, void *arg)
{
    struct gc_report r;
    memset(&r, 0, sizeof(r));
    struct name_list repos = {NULL, 0, 0, false};
    struct dlist unlinked = {NULL, 0, 0, false};
    struct blob_pass bp = {{NULL, 0, 0, false}, &unlinked, opt->dry_run, 0, 0};
    struct orphan_pass op = {idx, opt, {NULL, 0, 0, false}, 0};
    bool more = false;
    enum store_err rc = index_repos_list(idx, NULL, SIZE_MAX, add_repo, &repos, &more);
    if (rc == STORE_OK && repos.failed)
        rc = STORE_ENOMEM;
    for (size_t i = 0; rc == STORE_OK && i < repos.n; i++) {
        rc = gc_repo(idx, repos.names[i], opt, &r, &unlinked);
        r.repositories++;
        if (progress != NULL)
            progress("repositories", i + 1, repos.n, arg);
    }
    if (rc != STORE_OK)
        goto out;

    if (unlinked.n > 0)
        qsort(unlinked.d, unlinked.n, sizeof(*unlinked.d), cmp_digest);
    rc = index_blobs_scan(idx, scan_blob, &bp);
    if (rc != STORE_OK || bp.dead.failed) {
        rc = rc != STORE_OK ? rc : STORE_ENOMEM;
        goto out;
    }
    r.blobs_kept = bp.kept;
    for (size_t i = 0; i < bp.dead.n; i++) {
        if (opt->dry_run) {
            r.blobs_removed++;
            continue;
        }
        struct remove_arg ra = {bs, &bp.dead.d[i]};
        uint64_t freed = 0;
        enum store_err e = index_gc_blob(idx, &bp.dead.d[i], remove_file, &ra, &freed);
        if (e == STORE_EBUSY) {
            r.retried++;
            r.blobs_kept++;
        } else if (e == STORE_OK) {
            r.blobs_removed++;
            r.blob_bytes_removed += freed;
        } else {
            rc = e;
            goto out;
        }
        if (progress != NULL)
            progress("blobs", i + 1, bp.dead.n, arg);
    }
    if (opt->dry_run)
        r.blob_bytes_removed = bp.dead_bytes_dry;

    struct upload_pass up = {idx, bs, opt, &r};
    rc = blobstore_uploads_scan(bs, scan_upload_file, &up);
    if (rc == STORE_OK)
        rc = index_uploads_scan(idx, scan_upload_record, &up);
    if (rc != STORE_OK)
        goto out;

    rc = blobstore_blob_scan(bs, scan_blob_file, &op);
    if (rc != STORE_OK)
        goto out;
    for (size_t i = 0; i < op.found.n; i++) {
        if (!opt->dry_run) {
            struct remove_arg ra = {bs, &op.found.d[i]};
            uint64_t freed = 0;
            if (index_gc_blob(idx, &op.found.d[i], remove_file, &ra, &freed) != STORE_OK)
                continue;
        }
        r.orphans_removed++;
    }
    r.orphan_bytes_removed = op.bytes;
    *report = r;
out:
    for (size_t i = 0; i < repos.n; i++)
        free(repos.names[i]);
    free(repos.names);
    free(unlinked.d);
    free(bp.dead.d);
    free(op.found.d);
    return rc;
}

enum store_err gc_sweep_orphans(struct index *idx, struct blobstore *bs, uint64_t *removed)
{
    struct gc_options opt = {.now = UINT64_MAX / 2}; /* no grace: every file is old enough */
    struct orphan_pass op = {idx, &opt, {NULL, 0, 0, false}, 0};
    enum store_err rc = blobstore_blob_scan(bs, scan_blob_file, &op);
    uint64_t n = 0;
    for (size_t i = 0; rc == STORE_OK && i < op.found.n; i++) {
        struct remove_arg ra = {bs, &op.found.d[i]};
        uint64_t freed = 0;
        /* the write lock is taken: a commit in progress elsewhere finishes first and wins */
        if (index_gc_blob(idx, &op.found.d[i], remove_file, &ra, &freed) == STORE_OK)
            n++;
    }
    free(op.found.d);
    *removed = n;
    return rc;
}
