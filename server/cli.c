/*
 * ocireg user / grant / revoke / grants / login-password: accounts and what they may do; and
 * what the subcommands of every cli*.c share (the common flags, the storage root, the parsers
 * of times and sizes, the JSON printer).
 */
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

int cli_parse_common(int argc, char **argv, struct cli_common *c, const char *usage)
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
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_user);
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
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_grant);
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
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_grant);
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
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_grant);
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
    struct cli_common c;
    int st = cli_parse_common(argc, argv, &c, usage_login);
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

/* ---- times, sizes and JSON, for the subcommands of every cli*.c ---- */

bool cli_parse_when(const char *s, uint64_t *out)
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
    return strchr(s, '-') != NULL && cli_parse_when(s, out);
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
