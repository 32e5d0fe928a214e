/* ocireg usage / repo: per-repository figures, quotas, tag mutability and lifecycle policies. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/cli.h"
#include "server/cli_int.h"
#include "storage/index.h"
#include "storage/names.h"
#include "storage/policy.h"

/* ---- usage and quotas ---- */

static const char usage_usage[] =
    "usage: ocireg usage [--json] [--since WHEN] [--users] [REPO...] [--root DIR]\n"
    "\n"
    "Per-repository figures for billing: stored bytes (distinct blobs and manifests the\n"
    "repository references), exclusive bytes (what deleting it would free), ingress and egress\n"
    "bytes, pulls (manifest GETs) and pushes (manifest PUTs); then the registry's totals.\n"
    "Works while the server runs (its transfer counters reach the index every second).\n"
    "--since WHEN reports transfer counters as deltas from the hourly snapshot at or before\n"
    "WHEN: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC), or a duration ago (36h, 30d).\n"
    "--users reports the transfer counters per authenticated user instead.\n";

static const char usage_repo[] =
    "usage: ocireg repo set REPO [--quota BYTES] [--tag-mutability immutable|mutable\n"
    "                            [--exclude TAG-GLOB]...] [--root DIR]\n"
    "       ocireg repo set-default --quota BYTES [--root DIR]\n"
    "       ocireg repo delete REPO [--root DIR]\n"
    "       ocireg repo policy set REPO FILE | get REPO | delete REPO [--root DIR]\n"
    "\n"
    "An immutable tag is never moved to another manifest (409, TAG_INVALID) unless it matches\n"
    "an --exclude glob (e.g. 'latest', 'dev-*'). delete removes the repository's tags,\n"
    "manifests and links; blobs other repositories use stay, the rest go with the next gc.\n"
    "policy set stores a lifecycle policy (JSON rules: rulePriority, selection.tagStatus\n"
    "tagged|untagged|any, tagPatternList or tagPrefixList (several entries: the image's\n"
    "tags must match all of them), countType imageCountMoreThan|sinceImagePushed|\n"
    "sinceImagePulled, countUnit days, countNumber, action.type expire); gc applies it and\n"
    "gc --dry-run shows what each rule would expire. An invalid policy is refused with the\n"
    "name of the bad field.\n"
    "\n"
    "A push that would take the repository's stored bytes over its quota (or the default for\n"
    "repositories without one) is refused with 403 DENIED. BYTES 0 removes the quota; a\n"
    "suffix K, M, G or T multiplies by 1024s. Every flag is checked before anything is\n"
    "written: a refused command (exit status 2) changes nothing.\n";

struct usage_out {
    struct index *idx;
    json_t *rows; /* with --json: the rows, printed as one document at the end */
    bool since;
    uint64_t since_hour;
    bool failed; /* a row could not be encoded (out of memory) */
};

static void usage_json_row(struct usage_out *o, json_t *row)
{
    if (row == NULL || json_array_append_new(o->rows, row) != 0)
        o->failed = true;
}

static void print_usage_row(struct usage_out *o, const char *name, const struct index_usage *now)
{
    struct index_usage u = *now, base = {0};
    uint64_t at = 0;
    if (o->since && index_snapshot_get(o->idx, o->since_hour, 'r', name, &base, &at) == STORE_OK) {
        u.ingress_bytes -= base.ingress_bytes <= u.ingress_bytes ? base.ingress_bytes : 0;
        u.egress_bytes -= base.egress_bytes <= u.egress_bytes ? base.egress_bytes : 0;
        u.pulls -= base.pulls <= u.pulls ? base.pulls : 0;
        u.pushes -= base.pushes <= u.pushes ? base.pushes : 0;
    }
    uint64_t exclusive = 0, quota = u.quota;
    (void)index_exclusive_bytes(o->idx, name, &exclusive);
    if (quota == 0)
        (void)index_quota_default(o->idx, &quota);
    if (o->rows != NULL) {
        usage_json_row(
            o, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "repository", name,
                         "stored_bytes", (json_int_t)u.stored_bytes, "exclusive_bytes",
                         (json_int_t)exclusive, "ingress_bytes", (json_int_t)u.ingress_bytes,
                         "egress_bytes", (json_int_t)u.egress_bytes, "pulls", (json_int_t)u.pulls,
                         "pushes", (json_int_t)u.pushes, "quota_bytes", (json_int_t)quota));
    } else {
        printf("%-40s %14llu %14llu %14llu %14llu %8llu %8llu %14llu\n", name,
               (unsigned long long)u.stored_bytes, (unsigned long long)exclusive,
               (unsigned long long)u.ingress_bytes, (unsigned long long)u.egress_bytes,
               (unsigned long long)u.pulls, (unsigned long long)u.pushes,
               (unsigned long long)quota);
    }
}

static int usage_row(const char *name, const struct index_usage *u, void *arg)
{
    print_usage_row(arg, name, u);
    return 0;
}

static int user_row(const char *name, const struct index_usage *now, void *arg)
{
    struct usage_out *o = arg;
    struct index_usage u = *now, base = {0};
    uint64_t at = 0;
    if (o->since && index_snapshot_get(o->idx, o->since_hour, 'u', name, &base, &at) == STORE_OK) {
        u.ingress_bytes -= base.ingress_bytes <= u.ingress_bytes ? base.ingress_bytes : 0;
        u.egress_bytes -= base.egress_bytes <= u.egress_bytes ? base.egress_bytes : 0;
        u.pulls -= base.pulls <= u.pulls ? base.pulls : 0;
        u.pushes -= base.pushes <= u.pushes ? base.pushes : 0;
    }
    /* user names come from token subjects, any text an external issuer chose: jansson
     * escapes them */
    if (o->rows != NULL)
        usage_json_row(o, json_pack("{s:s, s:I, s:I, s:I, s:I}", "user", name, "ingress_bytes",
                                    (json_int_t)u.ingress_bytes, "egress_bytes",
                                    (json_int_t)u.egress_bytes, "pulls", (json_int_t)u.pulls,
                                    "pushes", (json_int_t)u.pushes));
    else
        printf("%-40s %14llu %14llu %8llu %8llu\n", name, (unsigned long long)u.ingress_bytes,
               (unsigned long long)u.egress_bytes, (unsigned long long)u.pulls,
               (unsigned long long)u.pushes);
    return 0;
}

int cli_usage(int argc, char **argv)
{
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_usage);
    if (st >= 0)
        return st;
    struct usage_out o = {NULL, NULL, c.since != NULL, 0, false};
    if (c.since != NULL) {
        uint64_t t;
        if (!cli_parse_when(c.since, &t)) {
            fprintf(stderr, "ocireg: --since: cannot read '%s'\n%s", c.since, usage_usage);
            return 2;
        }
        o.since_hour = t / 3600;
    }
    for (int i = 0; i < c.npos; i++)
        if (!name_valid(c.pos[i], strlen(c.pos[i]))) {
            fprintf(stderr, "ocireg: invalid repository name '%s'\n", c.pos[i]);
            return 2;
        }
    if (c.json) {
        o.rows = json_array();
        if (o.rows == NULL)
            return 1;
    }
    o.idx = cli_open_index(c.root);
    if (o.idx == NULL) {
        json_decref(o.rows);
        return 1;
    }
    if (c.users) {
        bool more;
        if (!c.json)
            printf("%-40s %14s %14s %8s %8s\n", "USER", "INGRESS", "EGRESS", "PULLS", "PUSHES");
        enum store_err urc = index_usage_list(o.idx, 'u', NULL, SIZE_MAX, user_row, &o, &more);
        index_close(o.idx);
        if (urc == STORE_OK && c.json &&
            !cli_print_json(o.failed ? NULL : json_pack("{s:O}", "users", o.rows)))
            urc = STORE_ENOMEM;
        json_decref(o.rows);
        if (urc != STORE_OK)
            fprintf(stderr, "ocireg: usage: %s\n", store_strerror(urc));
        return urc == STORE_OK ? 0 : 1;
    }
    if (!c.json)
        printf("%-40s %14s %14s %14s %14s %8s %8s %14s\n", "REPOSITORY", "STORED", "EXCLUSIVE",
               "INGRESS", "EGRESS", "PULLS", "PUSHES", "QUOTA");
    enum store_err rc = STORE_OK;
    if (c.npos > 0) {
        for (int i = 0; i < c.npos && rc == STORE_OK; i++) {
            struct index_usage u;
            rc = index_usage_get(o.idx, 'r', c.pos[i], &u);
            if (rc == STORE_OK)
                print_usage_row(&o, c.pos[i], &u);
        }
    } else {
        bool more;
        rc = index_usage_list(o.idx, 'r', NULL, SIZE_MAX, usage_row, &o, &more);
    }
    struct index_totals t = {0, 0, 0};
    (void)index_totals_get(o.idx, &t);
    if (c.json && rc == STORE_OK) {
        json_t *doc =
            o.failed ? NULL
                     : json_pack("{s:O, s:{s:I, s:I, s:I}}", "repositories", o.rows, "registry",
                                 "physical_bytes", (json_int_t)t.physical_bytes, "blobs",
                                 (json_int_t)t.blobs, "manifests", (json_int_t)t.manifests);
        if (!cli_print_json(doc))
            rc = STORE_ENOMEM;
    } else if (!c.json) {
        printf("registry: %llu bytes on disk in %llu blobs and %llu manifests\n",
               (unsigned long long)t.physical_bytes, (unsigned long long)t.blobs,
               (unsigned long long)t.manifests);
    }
    index_close(o.idx);
    json_decref(o.rows);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: usage: %s\n", store_strerror(rc));
        return 1;
    }
    return 0;
}

/* ocireg repo policy set REPO FILE | get REPO | delete REPO */
static int repo_policy(const struct cli_common *c)
{
    const char *op = c->npos > 1 ? c->pos[1] : "";
    bool set = strcmp(op, "set") == 0 && c->npos == 4;
    bool get = strcmp(op, "get") == 0 && c->npos == 3;
    bool del = strcmp(op, "delete") == 0 && c->npos == 3;
    if (!set && !get && !del) {
        fputs(usage_repo, stderr);
        return 2;
    }
    const char *repo = c->pos[2];
    if (!name_valid(repo, strlen(repo))) {
        fprintf(stderr, "ocireg: invalid repository name '%s'\n", repo);
        return 2;
    }
    char *text = NULL;
    if (set) {
        FILE *f = strcmp(c->pos[3], "-") == 0 ? stdin : fopen(c->pos[3], "r");
        if (f == NULL) {
            fprintf(stderr, "ocireg: cannot read %s: %s\n", c->pos[3], strerror(errno));
            return 1;
        }
        size_t cap = 1 << 16;
        text = malloc(cap + 1);
        size_t len = text != NULL ? fread(text, 1, cap, f) : 0;
        if (f != stdin)
            fclose(f);
        if (text == NULL || len == cap) {
            free(text);
            fprintf(stderr, "ocireg: policy file too large (64 KiB at most)\n");
            return 1;
        }
        text[len] = '\0';
        struct policy *pol = malloc(sizeof(*pol));
        char err[256];
        enum store_err prc = pol != NULL ? policy_parse(text, len, pol, err, sizeof(err))
                                         : STORE_ENOMEM;
        free(pol);
        if (prc != STORE_OK) {
            fprintf(stderr, "ocireg: invalid policy: %s\n",
                    prc == STORE_EINVAL ? err : store_strerror(prc));
            free(text);
            return 1;
        }
    }
    struct index *idx = cli_open_index(c->root);
    if (idx == NULL) {
        free(text);
        return 1;
    }
    enum store_err rc;
    if (get) {
        char *stored = NULL;
        rc = index_policy_get(idx, repo, &stored);
        if (rc == STORE_OK)
            printf("%s\n", stored);
        free(stored);
    } else {
        rc = index_policy_put(idx, repo, set ? text : NULL);
    }
    index_close(idx);
    free(text);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: repo policy %s %s: %s\n", op, repo, store_strerror(rc));
        return 1;
    }
    return 0;
}

int cli_repo(int argc, char **argv)
{
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_repo);
    if (st >= 0)
        return st;
    const char *verb = c.npos > 0 ? c.pos[0] : "";
    if (strcmp(verb, "policy") == 0)
        return repo_policy(&c);
    bool def = c.npos == 1 && strcmp(verb, "set-default") == 0;
    bool one = c.npos == 2 && strcmp(verb, "set") == 0;
    bool del = c.npos == 2 && strcmp(verb, "delete") == 0;
    /* every flag is checked before the first write: a refused command changes nothing */
    const char *why = NULL;
    if (!def && !one && !del)
        why = "";
    else if (del && (c.quota != NULL || c.mutability != NULL || c.nexclude > 0))
        why = "repo delete takes no --quota, --tag-mutability or --exclude";
    else if (def && (c.mutability != NULL || c.nexclude > 0))
        why = "repo set-default takes --quota only: tag mutability is set per repository";
    else if ((def && c.quota == NULL) || (one && c.quota == NULL && c.mutability == NULL))
        why = "";
    else if (c.nexclude > 0 && c.mutability == NULL)
        why = "--exclude goes with --tag-mutability";
    uint64_t bytes = 0;
    if (why == NULL && c.quota != NULL && !cli_parse_bytes(c.quota, &bytes))
        why = "--quota: expected BYTES with an optional K, M, G or T suffix";
    if (why == NULL && c.mutability != NULL && strcmp(c.mutability, "immutable") != 0 &&
        strcmp(c.mutability, "mutable") != 0)
        why = "--tag-mutability: expected immutable or mutable";
    if (why != NULL) {
        if (why[0] != '\0')
            fprintf(stderr, "ocireg: %s (see 'ocireg repo --help'); nothing changed\n", why);
        else
            fputs(usage_repo, stderr);
        return 2;
    }
    if ((one || del) && !name_valid(c.pos[1], strlen(c.pos[1]))) {
        fprintf(stderr, "ocireg: invalid repository name '%s'\n", c.pos[1]);
        return 2;
    }
    struct index_tag_policy pol;
    memset(&pol, 0, sizeof(pol));
    pol.immutable = c.mutability != NULL && strcmp(c.mutability, "immutable") == 0;
    for (int i = 0; i < c.nexclude; i++) {
        if (strlen(c.exclude[i]) > TAG_MAX_LEN) {
            fprintf(stderr, "ocireg: --exclude pattern too long\n");
            return 2;
        }
        snprintf(pol.exclude[pol.nexclude++], sizeof(pol.exclude[0]), "%s", c.exclude[i]);
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    enum store_err rc = STORE_OK;
    if (del)
        rc = index_repo_delete(idx, c.pos[1]);
    if (rc == STORE_OK && !del && c.quota != NULL)
        rc = index_quota_set(idx, one ? c.pos[1] : NULL, bytes);
    if (rc == STORE_OK && one && c.mutability != NULL)
        rc = index_tag_policy_set(idx, c.pos[1], &pol);
    index_close(idx);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: repo %s: %s\n", verb, store_strerror(rc));
        return 1;
    }
    return 0;
}
