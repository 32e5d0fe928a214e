/* ocireg gc / fsck: reclaiming space and checking the storage, both while the server runs. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "server/cli.h"
#include "server/cli_int.h"
#include "storage/blobstore.h"
#include "storage/fsck.h"
#include "storage/gc.h"
#include "storage/index.h"

/* ---- gc ---- */

static const char usage_gc[] =
    "usage: ocireg gc [--dry-run] [--delete-untagged] [--grace DURATION]\n"
    "                 [--upload-max-age DURATION] [--as-of TIME] [--json] [--root DIR]\n"
    "\n"
    "Reclaims space while the server runs. Keeps tagged manifests, the children of kept\n"
    "indexes and the referrers of kept manifests (and, without --delete-untagged, every\n"
    "manifest); unlinks blobs no kept manifest of their repository references once linked\n"
    "longer than --grace (default 1h, so pushes in progress are safe); deletes blob files\n"
    "no repository links, upload sessions idle longer than --upload-max-age (default 24h),\n"
    "and files a crash left behind. --dry-run changes nothing and reports the same figures.\n"
    "Lifecycle policies (ocireg repo policy set) are applied; each expired image is listed on\n"
    "standard error. --as-of YYYY-MM-DD[THH:MM:SSZ] judges every age as of that time (with\n"
    "--dry-run: what the rules will expire by then).\n";

static void print_expired(const char *repo, int rule, const char *digest, void *arg)
{
    (void)arg;
    /* to stderr: stdout carries the report (JSON with --json) */
    fprintf(stderr, "gc: lifecycle rule %d of %s expires %s\n", rule, repo, digest);
}

static void gc_progress(const char *phase, uint64_t done, uint64_t total, void *arg)
{
    (void)arg;
    if (!isatty(STDERR_FILENO))
        return;
    fprintf(stderr, "\rgc: %s %llu/%llu%s", phase, (unsigned long long)done,
            (unsigned long long)total, done == total ? "\n" : "");
}

int cli_gc(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},        {"dry-run", no_argument, NULL, 'n'},
        {"delete-untagged", no_argument, NULL, 'u'},   {"grace", required_argument, NULL, 'g'},
        {"upload-max-age", required_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'},
        {"as-of", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    const char *root = cli_default_root();
    struct gc_options opt = {.grace = 3600,
                             .upload_max_age = 86400,
                             .now = (uint64_t)time(NULL),
                             .expired = print_expired};
    bool json = false;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            root = optarg;
            break;
        case 'n':
            opt.dry_run = true;
            break;
        case 'u':
            opt.delete_untagged = true;
            break;
        case 'g':
            /* 0 is allowed here: "collect everything now" */
            if (!cli_parse_duration(optarg, &opt.grace))
                goto bad_duration;
            break;
        case 'a':
            if (!cli_parse_duration(optarg, &opt.upload_max_age))
                goto bad_duration;
            break;
        case 'j':
            json = true;
            break;
        case 'o':
            if (!cli_parse_when_abs(optarg, &opt.now))
                goto bad;
            break;
        case 'h':
            fputs(usage_gc, stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    return gc_execute(root, &opt, json);
bad_duration:
    fprintf(stderr, "ocireg: %s: expected a duration (0, 90s, 15m, 6h, 7d, 1h30m): '%s'\n",
            ch == 'g' ? "--grace" : "--upload-max-age", optarg);
    return 2;
bad:
    fprintf(stderr, "ocireg: bad arguments\n%s", usage_gc);
    return 2;
}

int gc_execute(const char *root, const struct gc_options *opt, bool json)
{
    struct index *idx = cli_open_index(root);
    if (idx == NULL)
        return 1;
    struct blobstore *bs = NULL;
    enum store_err rc = blobstore_open(&bs, root);
    struct gc_report r;
    if (rc == STORE_OK)
        rc = gc_run(idx, bs, opt, &r, gc_progress, NULL);
    blobstore_close(bs);
    index_close(idx);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: gc: %s\n", store_strerror(rc));
        return 1;
    }
    if (!gc_print(&r, opt->dry_run, json, stdout)) {
        fprintf(stderr, "ocireg: gc: cannot print the report: %s\n", store_strerror(STORE_ENOMEM));
        return 1;
    }
    return 0;
}

bool gc_print(const struct gc_report *r, bool dry_run, bool json, FILE *out)
{
    if (json) {
        json_t *doc = json_pack(
            "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "dry_run", dry_run, "repositories", (json_int_t)r->repositories, "manifests_kept",
            (json_int_t)r->manifests_kept, "manifests_removed", (json_int_t)r->manifests_removed,
            "manifest_bytes_removed", (json_int_t)r->manifest_bytes_removed, "links_kept",
            (json_int_t)r->links_kept, "links_removed", (json_int_t)r->links_removed, "blobs_kept",
            (json_int_t)r->blobs_kept, "blobs_removed", (json_int_t)r->blobs_removed,
            "blob_bytes_removed", (json_int_t)r->blob_bytes_removed, "uploads_removed",
            (json_int_t)r->uploads_removed, "upload_bytes_removed",
            (json_int_t)r->upload_bytes_removed, "orphans_removed", (json_int_t)r->orphans_removed,
            "orphan_bytes_removed", (json_int_t)r->orphan_bytes_removed, "policy_expired",
            (json_int_t)r->policy_expired, "retried", (json_int_t)r->retried);
        char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (text == NULL)
            return false;
        fprintf(out, "%s\n", text);
        free(text);
        return true;
    }
    fprintf(out,
            "%s%llu repositories: manifests %llu kept, %llu removed (%llu bytes); links %llu "
            "kept, %llu removed; blobs %llu kept, %llu removed (%llu bytes); uploads %llu "
            "removed (%llu bytes); orphan files %llu removed (%llu bytes)%s\n",
            dry_run ? "dry run (nothing changed): " : "", (unsigned long long)r->repositories,
            (unsigned long long)r->manifests_kept, (unsigned long long)r->manifests_removed,
            (unsigned long long)r->manifest_bytes_removed, (unsigned long long)r->links_kept,
            (unsigned long long)r->links_removed, (unsigned long long)r->blobs_kept,
            (unsigned long long)r->blobs_removed, (unsigned long long)r->blob_bytes_removed,
            (unsigned long long)r->uploads_removed, (unsigned long long)r->upload_bytes_removed,
            (unsigned long long)r->orphans_removed, (unsigned long long)r->orphan_bytes_removed,
            r->retried ? "; some changed during the run and wait for the next one" : "");
    return true;
}

/* ---- fsck ---- */

static const char usage_fsck[] =
    "usage: ocireg fsck [--repair] [--json] [--root DIR]\n"
    "\n"
    "Rehashes every blob against its digest, checks that every record has its file, finds\n"
    "files no record names, and recounts refcounts and usage figures. --repair fixes the\n"
    "counts, removes orphan files and moves corrupted blobs to ROOT/quarantine so they are\n"
    "never served. Exit status 0 when nothing was found, 1 otherwise. Safe while the server\n"
    "runs.\n";

struct fsck_out {
    json_t *problems; /* with --json: printed in one document at the end */
    bool failed;      /* a problem could not be recorded (out of memory) */
};

static void fsck_problem(const char *kind, const char *msg, void *arg)
{
    struct fsck_out *o = arg;
    if (o->problems == NULL) {
        printf("%-10s %s\n", kind, msg);
        return;
    }
    json_t *p = json_pack("{s:s, s:s}", "kind", kind, "message", msg);
    if (p == NULL || json_array_append_new(o->problems, p) != 0)
        o->failed = true;
}

static void fsck_progress(uint64_t done, uint64_t total, void *arg)
{
    (void)arg;
    if (isatty(STDERR_FILENO) && (done % 64 == 0 || done == total))
        fprintf(stderr, "\rfsck: %llu/%llu blobs%s", (unsigned long long)done,
                (unsigned long long)total, done == total ? "\n" : "");
}

int cli_fsck(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"repair", no_argument, NULL, 'R'},
        {"json", no_argument, NULL, 'j'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *root = cli_default_root();
    bool repair = false, json = false;
    struct fsck_out o = {NULL, false};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            root = optarg;
            break;
        case 'R':
            repair = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage_fsck, stdout);
            return 0;
        default:
            fprintf(stderr, "ocireg: bad arguments\n%s", usage_fsck);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ocireg: bad arguments\n%s", usage_fsck);
        return 2;
    }
    if (json) {
        o.problems = json_array();
        if (o.problems == NULL)
            return 1;
    }
    struct index *idx = cli_open_index(root);
    if (idx == NULL) {
        json_decref(o.problems);
        return 1;
    }
    struct blobstore *bs = NULL;
    enum store_err rc = blobstore_open(&bs, root);
    struct fsck_report r;
    if (rc == STORE_OK)
        rc = fsck_run(idx, bs, repair, &r, fsck_problem, fsck_progress, &o);
    blobstore_close(bs);
    index_close(idx);
    if (rc == STORE_OK && o.failed)
        rc = STORE_ENOMEM;
    if (rc != STORE_OK) {
        /* what was found before the failure still goes out */
        if (json && !cli_print_json(json_pack("{s:O}", "problems", o.problems)))
            fprintf(stderr, "ocireg: fsck: cannot print the problems found\n");
        json_decref(o.problems);
        fprintf(stderr, "ocireg: fsck: %s\n", store_strerror(rc));
        return 1;
    }
    uint64_t found = r.corrupted + r.missing + r.orphans + r.count_problems;
    bool printed = true;
    if (json)
        printed = cli_print_json(
            json_pack("{s:O, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "problems", o.problems,
                      "blobs_checked", (json_int_t)r.blobs_checked, "bytes_checked",
                      (json_int_t)r.bytes_checked, "corrupted", (json_int_t)r.corrupted, "missing",
                      (json_int_t)r.missing, "orphans", (json_int_t)r.orphans, "count_problems",
                      (json_int_t)r.count_problems, "repaired", repair));
    else
        printf("fsck: %llu blobs (%llu bytes) checked: %llu corrupted, %llu missing, %llu "
               "orphan files, %llu count problems%s\n",
               (unsigned long long)r.blobs_checked, (unsigned long long)r.bytes_checked,
               (unsigned long long)r.corrupted, (unsigned long long)r.missing,
               (unsigned long long)r.orphans, (unsigned long long)r.count_problems,
               repair && found ? " (repaired what can be)" : "");
    json_decref(o.problems);
    if (!printed) {
        fprintf(stderr, "ocireg: fsck: cannot print the report: %s\n",
                store_strerror(STORE_ENOMEM));
        return 1;
    }
    return found == 0 ? 0 : 1;
}
