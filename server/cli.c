#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "auth/token.h"
#include "auth/users.h"
#include "server/cli.h"
#include "server/cli_int.h"
#include "server/httpparse.h"
#include "storage/blobstore.h"
#include "storage/index.h"
#include "storage/names.h"
#include "storage/policy.h"

#define MAP_SIZE ((uint64_t)64 << 30)

static const char usage_user[] =
    "usage: ocireg user add NAME [--robot] [--root DIR]\n"
    "       ocireg user passwd NAME [--root DIR]\n"
    "       ocireg user del NAME [--root DIR]\n"
    "       ocireg user revoke-tokens NAME [--root DIR]\n"
    "       ocireg user list [--root DIR]\n"
    "\n"
    "add and passwd read the password from the first line of standard input; when standard\n"
    "input is a terminal or empty, a random password is generated and printed once.\n"
    "Robot accounts always get a generated password. revoke-tokens ends every refresh token\n"
    "and login password of the user (passwd does too).\n";

static const char usage_grant[] =
    "usage: ocireg grant NAME PATTERN ACTIONS [--root DIR]\n"
    "       ocireg revoke NAME PATTERN [--root DIR]\n"
    "       ocireg grants [NAME] [--root DIR]\n"
    "\n"
    "NAME is a user or 'anonymous' (requests without credentials). PATTERN is a repository\n"
    "name or a glob ('team-a/' followed by '*' covers everything under team-a/). ACTIONS is\n"
    "a comma-separated subset of pull,push,delete, or '*'. Deny by default. Listing the\n"
    "catalog needs pull on the pattern '*'.\n";

static const char usage_login[] =
    "usage: ocireg login-password NAME [--ttl DURATION] [--service NAME] [--root DIR]\n"
    "\n"
    "Prints a short-lived password for NAME (default lifetime 12h; DURATION like 90m, 12h,\n"
    "7d) that docker login, podman login and basic auth accept until it expires or\n"
    "'ocireg user revoke-tokens NAME' is run. --service must match the server's\n"
    "--token-service (default ocireg).\n";

bool cli_parse_duration(const char *s, uint64_t *out)
{
    static const struct {
        char unit;
        uint64_t seconds;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    size_t n = strlen(s), i = 0, next_unit = 0;
    uint64_t total = 0;
    if (n == 0)
        return false;
    /* a bare number is seconds, and stands alone */
    if (strspn(s, "0123456789") == n) {
        if (!parse_u64(s, n, &total) || total > CLI_DURATION_MAX)
            return false;
        *out = total;
        return true;
    }
    while (i < n) {
        size_t digits = strspn(s + i, "0123456789");
        uint64_t v;
        if (digits == 0 || i + digits == n || !parse_u64(s + i, digits, &v))
            return false;
        i += digits;
        /* units largest first, each at most once: "1h30m", not "30m1h" or "1h1h" */
        while (next_unit < sizeof(units) / sizeof(units[0]) && units[next_unit].unit != s[i])
            next_unit++;
        if (next_unit == sizeof(units) / sizeof(units[0]))
            return false;
        uint64_t mul = units[next_unit++].seconds;
        if (v > CLI_DURATION_MAX / mul || total + v * mul > CLI_DURATION_MAX)
            return false;
        total += v * mul;
        i++;
    }
    *out = total;
    return true;
}

/* Parses --root (and the flags in `extra`) out of argv; leaves positionals in pos[]. */
struct common {
    const char *root;
    bool robot;
    const char *ttl;
    const char *service;
    bool json;
    bool users;
    const char *since;
    const char *quota;
    const char *mutability;
    const char *exclude[INDEX_TAG_EXCLUDES_MAX];
    int nexclude;
    const char *pos[64];
    int npos;
};

static int parse_common(int argc, char **argv, struct common *c, const char *usage)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"robot", no_argument, NULL, 'b'},
        {"ttl", required_argument, NULL, 't'},  {"service", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},       {"since", required_argument, NULL, 'S'},
        {"users", no_argument, NULL, 'U'},
        {"quota", required_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'},
        {"tag-mutability", required_argument, NULL, 'M'},
        {"exclude", required_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    memset(c, 0, sizeof(*c));
    c->root = cli_default_root();
    c->service = "ocireg";
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            c->root = optarg;
            break;
        case 'b':
            c->robot = true;
            break;
        case 't':
            c->ttl = optarg;
            break;
        case 's':
            c->service = optarg;
            break;
        case 'j':
            c->json = true;
            break;
        case 'U':
            c->users = true;
            break;
        case 'S':
            c->since = optarg;
            break;
        case 'q':
            c->quota = optarg;
            break;
        case 'M':
            c->mutability = optarg;
            break;
        case 'x':
            if (c->nexclude == INDEX_TAG_EXCLUDES_MAX) {
                fprintf(stderr, "ocireg: at most %d --exclude patterns\n", INDEX_TAG_EXCLUDES_MAX);
                return 2;
            }
            c->exclude[c->nexclude++] = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fprintf(stderr, "ocireg: unknown or incomplete flag '%s'\n%s", argv[optind - 1], usage);
            return 2;
        }
    }
    for (; optind < argc; optind++) {
        if (c->npos == (int)(sizeof(c->pos) / sizeof(c->pos[0]))) {
            fprintf(stderr, "ocireg: too many arguments\n%s", usage);
            return 2;
        }
        c->pos[c->npos++] = argv[optind];
    }
    return -1;
}

const char *cli_default_root(void)
{
    const char *env = getenv("OCIREG_ROOT");
    return env != NULL && env[0] != '\0' ? env : "./data";
}

struct index *cli_open_index(const char *root)
{
    char dir[4096];
    int n = snprintf(dir, sizeof(dir), "%s/index", root);
    struct index *idx = NULL;
    if (n < 0 || (size_t)n >= sizeof(dir))
        return NULL;
    enum store_err rc = blobstore_root_prepare(root);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: cannot create %s: %s\n", root, store_strerror(rc));
        return NULL;
    }
    rc = index_open(&idx, dir, MAP_SIZE);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: cannot open the index under %s: %s\n", root, store_strerror(rc));
        return NULL;
    }
    return idx;
}

/* The password for add/passwd: stdin's first line, or generated and printed. */
static bool read_password(char *buf, size_t cap, bool robot, bool *generated)
{
    *generated = false;
    if (!robot && !isatty(STDIN_FILENO) && fgets(buf, (int)cap, stdin) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[0] != '\0')
            return true;
    }
    auth_password_generate(buf, 33);
    *generated = true;
    return true;
}

static int print_user(const struct auth_user *u, void *arg)
{
    (void)arg;
    char when[32];
    time_t t = (time_t)u->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-32s %-6s %s\n", u->name, u->robot ? "robot" : "user", when);
    return 0;
}

static int report(enum auth_err rc, const char *what, const char *name)
{
    if (rc == AUTH_OK)
        return 0;
    fprintf(stderr, "ocireg: %s %s: %s\n", what, name, auth_strerror(rc));
    return 1;
}

int cli_user(int argc, char **argv)
{
    struct common c;
    int st = parse_common(argc, argv, &c, usage_user);
    if (st >= 0)
        return st;
    const char *verb = c.npos > 0 ? c.pos[0] : "";
    bool list = strcmp(verb, "list") == 0;
    if ((list && c.npos != 1) || (!list && c.npos != 2)) {
        fputs(usage_user, stderr);
        return 2;
    }
    const char *name = list ? "" : c.pos[1];
    if (!list && !auth_user_name_valid(name)) {
        fprintf(stderr, "ocireg: invalid user name '%s' ([a-z0-9][a-z0-9._-]*, not anonymous)\n",
                name);
        return 2;
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    int ret = 0;
    char pw[AUTH_PASSWORD_MAX + 2];
    bool generated = false;
    if (strcmp(verb, "add") == 0) {
        read_password(pw, sizeof(pw), c.robot, &generated);
        ret = report(auth_user_add(idx, name, pw, c.robot), "cannot add user", name);
    } else if (strcmp(verb, "passwd") == 0) {
        struct auth_user u;
        ret = report(auth_user_get(idx, name, &u), "no user", name);
        if (ret == 0) {
            read_password(pw, sizeof(pw), u.robot, &generated);
            ret = report(auth_user_passwd(idx, name, pw), "cannot set the password of", name);
        }
    } else if (strcmp(verb, "del") == 0) {
        ret = report(auth_user_del(idx, name), "cannot delete user", name);
    } else if (strcmp(verb, "revoke-tokens") == 0) {
        ret = report(auth_user_revoke(idx, name), "cannot revoke the tokens of", name);
    } else if (list) {
        ret = report(auth_user_list(idx, print_user, NULL), "cannot list users", "");
    } else {
        fputs(usage_user, stderr);
        ret = 2;
    }
    if (ret == 0 && generated)
        printf("%s\n", pw);
    sodium_memzero(pw, sizeof(pw));
    index_close(idx);
    return ret;
}

int cli_grant(int argc, char **argv)
{
    struct common c;
    int st = parse_common(argc, argv, &c, usage_grant);
    if (st >= 0)
        return st;
    unsigned actions = 0;
    if (c.npos != 3 || !auth_actions_parse(c.pos[2], &actions)) {
        fputs(usage_grant, stderr);
        return 2;
    }
    if (!auth_pattern_valid(c.pos[1])) {
        fprintf(stderr, "ocireg: invalid repository pattern '%s'\n", c.pos[1]);
        return 2;
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    int ret = report(auth_grant(idx, c.pos[0], c.pos[1], actions), "cannot grant to", c.pos[0]);
    index_close(idx);
    return ret;
}

int cli_revoke(int argc, char **argv)
{
    struct common c;
    int st = parse_common(argc, argv, &c, usage_grant);
    if (st >= 0)
        return st;
    if (c.npos != 2) {
        fputs(usage_grant, stderr);
        return 2;
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    int ret = report(auth_revoke(idx, c.pos[0], c.pos[1]), "no such grant for", c.pos[0]);
    index_close(idx);
    return ret;
}

static int print_grant(const char *principal, const char *pattern, unsigned actions, void *arg)
{
    (void)arg;
    char acts[32];
    auth_actions_format(actions, acts, sizeof(acts));
    printf("%-32s %-40s %s\n", principal, pattern, acts);
    return 0;
}

int cli_grants(int argc, char **argv)
{
    struct common c;
    int st = parse_common(argc, argv, &c, usage_grant);
    if (st >= 0)
        return st;
    if (c.npos > 1) {
        fputs(usage_grant, stderr);
        return 2;
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    int ret = report(auth_grant_list(idx, c.npos ? c.pos[0] : NULL, print_grant, NULL),
                     "cannot list grants of", c.npos ? c.pos[0] : "everyone");
    index_close(idx);
    return ret;
}

int cli_login_password(int argc, char **argv)
{
    struct common c;
    int st = parse_common(argc, argv, &c, usage_login);
    if (st >= 0)
        return st;
    uint64_t ttl = 12 * 3600;
    if (c.npos != 1 || (c.ttl != NULL && (!cli_parse_duration(c.ttl, &ttl) || ttl == 0))) {
        fputs(usage_login, stderr);
        return 2;
    }
    struct index *idx = cli_open_index(c.root);
    if (idx == NULL)
        return 1;
    struct auth_user u;
    int ret = report(auth_user_get(idx, c.pos[0], &u), "no user", c.pos[0]);
    index_close(idx);
    if (ret != 0)
        return ret;
    char keydir[4096];
    snprintf(keydir, sizeof(keydir), "%s/keys", c.root);
    struct auth_keys *keys = NULL;
    ret = report(auth_keys_open(&keys, keydir), "cannot open the signing key for", c.pos[0]);
    if (ret != 0)
        return ret;
    struct auth_token_req req = {AUTH_TOKEN_LOGIN, "ocireg", c.service, u.name, u.generation,
                                 NULL, 0, (uint64_t)time(NULL), ttl, u.account};
    char *tok = NULL;
    ret = report(auth_token_issue(keys, &req, &tok), "cannot sign a password for", c.pos[0]);
    if (ret == 0)
        printf("%s\n", tok);
    free(tok);
    auth_keys_close(keys);
    return ret;
}

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

static bool parse_when(const char *s, uint64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0') {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end != NULL && *end == '\0') {
        time_t t = timegm(&tm);
        if (t < 0)
            return false;
        *out = (uint64_t)t;
        return true;
    }
    uint64_t ago;
    if (!cli_parse_duration(s, &ago) || ago > (uint64_t)time(NULL))
        return false;
    *out = (uint64_t)time(NULL) - ago;
    return true;
}

/* An absolute time only (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC). */
bool cli_parse_when_abs(const char *s, uint64_t *out)
{
    return strchr(s, '-') != NULL && parse_when(s, out);
}

bool cli_parse_bytes(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    uint64_t mul = 1;
    if (n > 0) {
        switch (s[n - 1]) {
        case 'K':
            mul = 1ull << 10;
            break;
        case 'M':
            mul = 1ull << 20;
            break;
        case 'G':
            mul = 1ull << 30;
            break;
        case 'T':
            mul = 1ull << 40;
            break;
        default:
            break;
        }
    }
    if (mul != 1)
        n--;
    uint64_t v;
    if (!parse_u64(s, n, &v) || v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

struct usage_out {
    struct index *idx;
    json_t *rows; /* with --json: the rows, printed as one document at the end */
    bool since;
    uint64_t since_hour;
    bool failed; /* a row could not be encoded (out of memory) */
};

/* Prints doc (TAKES it) on one line; false when it could not be encoded. */
bool cli_print_json(json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL)
        return false;
    printf("%s\n", text);
    free(text);
    return true;
}

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
    struct common c;
    int st = parse_common(argc, argv, &c, usage_usage);
    if (st >= 0)
        return st;
    struct usage_out o = {NULL, NULL, c.since != NULL, 0, false};
    if (c.since != NULL) {
        uint64_t t;
        if (!parse_when(c.since, &t)) {
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
static int repo_policy(const struct common *c)
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
    struct common c;
    int st = parse_common(argc, argv, &c, usage_repo);
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
