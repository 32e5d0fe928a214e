/* ocireg: the command line. Subcommands parse their flags into a config and run. */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "server/cli.h"
#include "storage/index.h"
#include "server/httpparse.h"
#include "server/log.h"
#include "server/server.h"

static const char usage_main[] =
    "usage: ocireg [--help] [--version] <command> [<args>]\n"
    "\n"
    "An OCI container registry.\n"
    "\n"
    "Commands:\n"
    "  serve            serve the OCI distribution API\n"
    "  user             add, delete, list users; set passwords; revoke tokens\n"
    "  grant, revoke    give or take a user's actions on repositories\n"
    "  grants           list grants\n"
    "  login-password   print a short-lived password for docker login\n"
    "  usage            per-repository storage and transfer figures (--json for billing)\n"
    "  repo             set repository quotas\n"
    "  gc               reclaim space, online (--dry-run to see what would go)\n"
    "  fsck             verify every blob and recount every figure (--repair)\n"
    "  export, import   repositories to and from zstd OCI-layout archives\n"
    "  backup           a consistent hot copy of the registry\n"
    "\n"
    "Every command takes --root DIR (default: $OCIREG_ROOT, else ./data).\n"
    "Run 'ocireg <command> --help' for the flags of a command.\n";

static const char usage_serve[] =
    "usage: ocireg serve [flags]\n"
    "\n"
    "Serves the OCI distribution API (/v2/) until SIGTERM or SIGINT, then stops accepting,\n"
    "lets in-flight requests finish (bounded by --shutdown-grace) and exits 0.\n"
    "\n"
    "Flags:\n"
    "  --root DIR               storage root (default: $OCIREG_ROOT, else ./data)\n"
    "  --listen HOST:PORT       address to listen on (default 127.0.0.1:5000);\n"
    "                           port 0 picks any free port\n"
    "  --port-file FILE         write the bound port to FILE (atomically) once listening\n"
    "  --threads N              a pool of N worker threads (default: a thread per\n"
    "                           connection, which sends large blobs faster)\n"
    "  --max-manifest-size N    largest manifest accepted, bytes (default 4194304)\n"
    "  --map-size N             LMDB map size, bytes (default 68719476736)\n"
    "  --conn-timeout DURATION  close connections idle this long (default 120s)\n"
    "  --per-ip-limit N         connections allowed per client address (default 0: none)\n"
    "  --max-connections N      connections served at once, each with its thread; more are\n"
    "                           answered 503 with Retry-After (default 1000)\n"
    "  --max-pending-connections N\n"
    "                           connections held while they send their request headers;\n"
    "                           past N the oldest is dropped (default: --max-connections, at\n"
    "                           most a quarter of the open-file limit)\n"
    "  --max-upload-size SIZE   bytes one blob upload session may hold, i.e. the largest blob\n"
    "                           accepted (default 64G; 0: no bound); more is refused 413\n"
    "  --max-repo-upload-size SIZE\n"
    "                           bytes the upload sessions of one repository may hold together\n"
    "                           (default 256G; 0: no bound); more is refused 429\n"
    "  --min-free-space SIZE|N% free space kept for deletes and gc: below it uploads and\n"
    "                           manifest PUTs are refused 507 (default: 256M or 1% of the file\n"
    "                           system, whichever is less; 0: none)\n"
    "  --shutdown-grace DURATION\n"
    "                           time in-flight requests get at shutdown (default 10s)\n"
    "  --log-level LEVEL        error, warn, info or debug (default info)\n"
    "  --auth MODE              none, basic or token; required when --listen is not loopback\n"
    "                           (default none on loopback)\n"
    "  --public-url URL         how clients reach this registry (the token realm is\n"
    "                           URL/auth/token); default: scheme and Host of each request\n"
    "  --token-service NAME     service (token audience) in challenges (default ocireg)\n"
    "  --token-ttl DURATION     lifetime of access tokens (default 5m)\n"
    "  --token-issuer NAME      also trust tokens of this external issuer...\n"
    "  --token-public-key FILE  ...signed with this RS256 or ES256 PEM public key\n"
    "  --tls-cert FILE          serve HTTPS with this PEM certificate (chain)...\n"
    "  --tls-key FILE           ...and this PEM private key\n"
    "  --admin-listen HOST:PORT the admin listener: /metrics, /healthz, /readyz,\n"
    "                           /admin/usage, DELETE /admin/repositories/NAME (default\n"
    "                           127.0.0.1 on the --listen port + 1; port 0 when --listen has\n"
    "                           port 0). With --auth, all but /healthz and /readyz need the\n"
    "                           Basic credentials of an administrator (granted '*' on '*')\n"
    "  --admin-port-file FILE   write the admin listener's port to FILE once listening\n"
    "  --admin-writes           serve DELETE /admin/repositories/NAME (default: refused;\n"
    "                           without --auth, to loopback clients only)\n"
    "  --metrics-public         serve /metrics without credentials even with --auth\n"
    "  --login-failures N       failed logins allowed per client address and minute; past\n"
    "                           them, 429 with Retry-After (default 10; 0: no bound)\n"
    "  --metrics-max-repos N    per-repository series in /metrics at most (default 10000)\n"
    "  --gc-interval DURATION   run the garbage collector this often (e.g. 6h; default 0:\n"
    "                           never; 'ocireg gc' runs it by hand, online)\n"
    "  --gc-delete-untagged     scheduled collections also remove untagged manifests\n"
    "  --gc-grace DURATION      scheduled collections leave links and manifests younger than\n"
    "                           this (default 1h; keep it above the longest push)\n"
    "  --gc-upload-max-age DURATION\n"
    "                           scheduled collections remove upload sessions idle this long\n"
    "                           (default 24h)\n"
    "  --access-log FILE        one JSON line per request to FILE ('-': standard error)\n"
    "  --config FILE            read flags from FILE: lines 'name = value' (or 'name' for a\n"
    "                           switch), '#' comments\n"
    "  --check-config           validate the configuration and exit\n"
    "\n"
    "Every flag can also come from the environment as OCIREG_<NAME> (OCIREG_LISTEN,\n"
    "OCIREG_AUTH, OCIREG_GC_DELETE_UNTAGGED=1, ...). Precedence: command line, then\n"
    "environment, then the config file. A DURATION is a number of seconds or numbers with\n"
    "units d, h, m, s, largest first: 0, 90, 90s, 15m, 6h, 7d, 1h30m.\n"
    "  --help                   show this help\n";

static int bad_usage(const char *usage, const char *what, const char *arg)
{
    fprintf(stderr, "ocireg: %s: '%s'\n%s", what, arg, usage);
    return 2;
}

/* 127.0.0.0/8, ::1 and localhost; anything else is reachable from the network. */
static bool listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t hl = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
    if (hl == 5 && strncmp(listen, "[::1]", 5) == 0)
        return true;
    if (hl == 9 && strncmp(listen, "localhost", 9) == 0)
        return true;
    return hl > 4 && strncmp(listen, "127.", 4) == 0;
}

static bool parse_num(const char *s, uint64_t *out)
{
    return parse_u64(s, strlen(s), out);
}

enum {
    OPT_ROOT = 256,
    OPT_LISTEN,
    OPT_PORT_FILE,
    OPT_THREADS,
    OPT_MAX_MANIFEST,
    OPT_MAP_SIZE,
    OPT_CONN_TIMEOUT,
    OPT_PER_IP,
    OPT_MAX_CONNS,
    OPT_MAX_PENDING,
    OPT_MAX_UPLOAD,
    OPT_MAX_REPO_UPLOAD,
    OPT_MIN_FREE,
    OPT_GRACE,
    OPT_LOG_LEVEL,
    OPT_AUTH,
    OPT_PUBLIC_URL,
    OPT_SERVICE,
    OPT_TOKEN_TTL,
    OPT_TOKEN_ISSUER,
    OPT_TOKEN_KEY,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_ADMIN_LISTEN,
    OPT_ADMIN_PORT_FILE,
    OPT_METRICS_MAX_REPOS,
    OPT_GC_INTERVAL,
    OPT_GC_DELETE_UNTAGGED,
    OPT_GC_GRACE,
    OPT_GC_UPLOAD_MAX_AGE,
    OPT_CONFIG,
    OPT_CHECK_CONFIG,
    OPT_ACCESS_LOG,
    OPT_ADMIN_WRITES,
    OPT_METRICS_PUBLIC,
    OPT_LOGIN_FAILURES,
    OPT_HELP,
};

static const struct option serve_opts[] = {
    {"root", required_argument, NULL, OPT_ROOT},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-manifest-size", required_argument, NULL, OPT_MAX_MANIFEST},
    {"map-size", required_argument, NULL, OPT_MAP_SIZE},
    {"conn-timeout", required_argument, NULL, OPT_CONN_TIMEOUT},
    {"per-ip-limit", required_argument, NULL, OPT_PER_IP},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"max-pending-connections", required_argument, NULL, OPT_MAX_PENDING},
    {"max-upload-size", required_argument, NULL, OPT_MAX_UPLOAD},
    {"max-repo-upload-size", required_argument, NULL, OPT_MAX_REPO_UPLOAD},
    {"min-free-space", required_argument, NULL, OPT_MIN_FREE},
    {"shutdown-grace", required_argument, NULL, OPT_GRACE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"public-url", required_argument, NULL, OPT_PUBLIC_URL},
    {"token-service", required_argument, NULL, OPT_SERVICE},
    {"token-ttl", required_argument, NULL, OPT_TOKEN_TTL},
    {"token-issuer", required_argument, NULL, OPT_TOKEN_ISSUER},
    {"token-public-key", required_argument, NULL, OPT_TOKEN_KEY},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN},
    {"admin-port-file", required_argument, NULL, OPT_ADMIN_PORT_FILE},
    {"metrics-max-repos", required_argument, NULL, OPT_METRICS_MAX_REPOS},
    {"gc-interval", required_argument, NULL, OPT_GC_INTERVAL},
    {"gc-delete-untagged", no_argument, NULL, OPT_GC_DELETE_UNTAGGED},
    {"gc-grace", required_argument, NULL, OPT_GC_GRACE},
    {"gc-upload-max-age", required_argument, NULL, OPT_GC_UPLOAD_MAX_AGE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"admin-writes", no_argument, NULL, OPT_ADMIN_WRITES},
    {"metrics-public", no_argument, NULL, OPT_METRICS_PUBLIC},
    {"login-failures", required_argument, NULL, OPT_LOGIN_FAILURES},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int serve_main(int argc, char **argv)
{
    const struct option *opts = serve_opts;
    bool check_only = false;    struct server_config cfg;
    server_config_defaults(&cfg);
    const char *env_root = getenv("OCIREG_ROOT");
    if (env_root != NULL && env_root[0] != '\0')
        cfg.root = env_root;
    int c;
    uint64_t v;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ROOT:
            cfg.root = optarg;
            break;
        case OPT_LISTEN:
            cfg.listen = optarg;
            break;
        case OPT_PORT_FILE:
            cfg.port_file = optarg;
            break;
        case OPT_THREADS:
            if (!parse_num(optarg, &v) || v == 0 || v > 1024)
                return bad_usage(usage_serve, "--threads: expected 1..1024", optarg);
            cfg.threads = (unsigned)v;
            break;
        case OPT_MAX_MANIFEST:
            if (!parse_num(optarg, &v) || v < 1024 || v > (64u << 20))
                return bad_usage(usage_serve, "--max-manifest-size: expected 1024..67108864",
                                 optarg);
            cfg.max_manifest = v;
            break;
        case OPT_MAP_SIZE:
            if (!parse_num(optarg, &v) || v < (1u << 20))
                return bad_usage(usage_serve, "--map-size: expected bytes >= 1048576",
                                 optarg);
            cfg.map_size = v;
            break;
        case OPT_CONN_TIMEOUT:
            if (!cli_parse_duration(optarg, &v) || v == 0 || v > 86400)
                return bad_usage(usage_serve, "--conn-timeout: expected 1s..24h", optarg);
            cfg.conn_timeout = (unsigned)v;
            break;
        case OPT_PER_IP:
            if (!parse_num(optarg, &v) || v > 65535)
                return bad_usage(usage_serve, "--per-ip-limit: expected 0..65535", optarg);
            cfg.per_ip_limit = (unsigned)v;
            break;
        case OPT_MAX_CONNS:
            if (!parse_num(optarg, &v) || v == 0 || v > 100000)
                return bad_usage(usage_serve, "--max-connections: expected 1..100000", optarg);
            cfg.max_connections = (unsigned)v;
            break;
        case OPT_MAX_PENDING:
            if (!parse_num(optarg, &v) || v == 0 || v > 1000000)
                return bad_usage(usage_serve, "--max-pending-connections: expected 1..1000000",
                                 optarg);
            cfg.max_pending = (unsigned)v;
            break;
        case OPT_MAX_UPLOAD:
            if (!cli_parse_bytes(optarg, &v))
                return bad_usage(usage_serve, "--max-upload-size: expected bytes (e.g. 64G)",
                                 optarg);
            cfg.max_upload_size = v;
            break;
        case OPT_MAX_REPO_UPLOAD:
            if (!cli_parse_bytes(optarg, &v))
                return bad_usage(usage_serve,
                                 "--max-repo-upload-size: expected bytes (e.g. 256G)", optarg);
            cfg.max_repo_upload_size = v;
            break;
        case OPT_MIN_FREE: {
            size_t n = strlen(optarg);
            if (n > 1 && optarg[n - 1] == '%') {
                if (!parse_u64(optarg, n - 1, &v) || v > 90)
                    return bad_usage(usage_serve, "--min-free-space: expected 0% to 90%", optarg);
                cfg.min_free_percent = (unsigned)v;
                cfg.min_free_bytes = 0;
            } else {
                if (!cli_parse_bytes(optarg, &v))
                    return bad_usage(usage_serve,
                                     "--min-free-space: expected bytes (e.g. 256M) or N%",
                                     optarg);
                cfg.min_free_bytes = v;
                cfg.min_free_percent = 0;
            }
            break;
        }
        case OPT_GRACE:
            if (!cli_parse_duration(optarg, &v) || v > 3600)
                return bad_usage(usage_serve, "--shutdown-grace: expected 0s..1h", optarg);
            cfg.shutdown_grace = (unsigned)v;
            break;
        case OPT_LOG_LEVEL: {
            int lv = log_level_parse(optarg);
            if (lv < 0)
                return bad_usage(usage_serve, "--log-level: unknown level", optarg);
            log_set_level((enum log_level)lv);
            break;
        }
        case OPT_AUTH:
            if (strcmp(optarg, "none") == 0)
                cfg.auth = AUTH_MODE_NONE;
            else if (strcmp(optarg, "basic") == 0)
                cfg.auth = AUTH_MODE_BASIC;
            else if (strcmp(optarg, "token") == 0)
                cfg.auth = AUTH_MODE_TOKEN;
            else
                return bad_usage(usage_serve, "--auth: expected none, basic or token", optarg);
            cfg.auth_set = true;
            break;
        case OPT_PUBLIC_URL:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0)
                return bad_usage(usage_serve, "--public-url: expected http(s)://HOST[:PORT]",
                                 optarg);
            cfg.public_url = optarg;
            break;
        case OPT_SERVICE:
            if (optarg[0] == '\0' || strpbrk(optarg, "\"\\ ") != NULL)
                return bad_usage(usage_serve, "--token-service: a name without quotes or spaces",
                                 optarg);
            cfg.service = optarg;
            break;
        case OPT_TOKEN_TTL:
            if (!cli_parse_duration(optarg, &v) || v == 0 || v > 86400)
                return bad_usage(usage_serve, "--token-ttl: expected 1s..24h", optarg);
            cfg.token_ttl = (unsigned)v;
            break;
        case OPT_TOKEN_ISSUER:
            cfg.ext_issuer = optarg;
            break;
        case OPT_TOKEN_KEY:
            cfg.ext_public_key = optarg;
            break;
        case OPT_TLS_CERT:
            cfg.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            cfg.tls_key = optarg;
            break;
        case OPT_ADMIN_LISTEN:
            cfg.admin_listen = optarg;
            break;
        case OPT_ADMIN_PORT_FILE:
            cfg.admin_port_file = optarg;
            break;
        case OPT_METRICS_MAX_REPOS:
            if (!parse_num(optarg, &v) || v > 10000000)
                return bad_usage(usage_serve, "--metrics-max-repos: expected 0..10000000", optarg);
            cfg.metrics_max_repos = (unsigned)v;
            break;
        case OPT_GC_INTERVAL:
            if (!cli_parse_duration(optarg, &v) || v > 365 * 86400)
                return bad_usage(usage_serve, "--gc-interval: expected 0 (never)..365d, like 6h",
                                 optarg);
            cfg.gc_interval = (unsigned)v;
            break;
        case OPT_GC_DELETE_UNTAGGED:
            cfg.gc_delete_untagged = true;
            break;
        case OPT_GC_GRACE:
            if (!cli_parse_duration(optarg, &cfg.gc_grace))
                return bad_usage(usage_serve, "--gc-grace: expected a duration like 1h", optarg);
            break;
        case OPT_GC_UPLOAD_MAX_AGE:
            if (!cli_parse_duration(optarg, &cfg.gc_upload_max_age))
                return bad_usage(usage_serve, "--gc-upload-max-age: expected a duration like 24h",
                                 optarg);
            break;
        case OPT_CONFIG:
            break; /* read before the other flags (see expand_args) */
        case OPT_CHECK_CONFIG:
            check_only = true;
            break;
        case OPT_ACCESS_LOG:
            cfg.access_log = optarg;
            break;
        case OPT_ADMIN_WRITES:
            cfg.admin_writes = true;
            break;
        case OPT_METRICS_PUBLIC:
            cfg.metrics_public = true;
            break;
        case OPT_LOGIN_FAILURES:
            if (!parse_num(optarg, &v) || v > 100000)
                return bad_usage(usage_serve, "--login-failures: expected 0..100000", optarg);
            cfg.login_failures = (unsigned)v;
            break;
        case OPT_HELP:
            fputs(usage_serve, stdout);
            return 0;
        default:
            return bad_usage(usage_serve, "unknown or incomplete flag", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage(usage_serve, "unexpected argument", argv[optind]);
    if ((cfg.ext_issuer == NULL) != (cfg.ext_public_key == NULL))
        return bad_usage(usage_serve, "--token-issuer and --token-public-key go together", "");
    if (cfg.ext_issuer != NULL && cfg.auth != AUTH_MODE_TOKEN)
        return bad_usage(usage_serve, "--token-issuer needs --auth token", "");
    if ((cfg.tls_cert == NULL) != (cfg.tls_key == NULL))
        return bad_usage(usage_serve, "--tls-cert and --tls-key go together", "");
    if (!cfg.auth_set && !listen_is_loopback(cfg.listen)) {
        fprintf(stderr, "ocireg: --listen %s is not a loopback address: choose --auth "
                        "(none, basic or token) explicitly\n",
                cfg.listen);
        return 2;
    }
    if (check_only) {
        printf("configuration ok\n");
        return 0;
    }

    /* Signals are taken synchronously by this thread; the workers inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct server *srv = NULL;
    if (server_start(&srv, &cfg) != 0)
        return 1;
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    log_info("signal %d: shutting down", sig);
    server_stop(srv);
    return 0;
}

/* ---- flags from a config file and the environment ---- */

struct args {
    char **v;
    int n, cap;
};

static bool args_push(struct args *a, const char *s)
{
    if (a->n + 1 >= a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **p = realloc(a->v, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return false;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n] = strdup(s);
    if (a->v[a->n] == NULL)
        return false;
    a->n++;
    a->v[a->n] = NULL;
    return true;
}

static void args_free(struct args *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

static bool args_flag(struct args *a, const char *name, const char *value, bool has_arg)
{
    char buf[4200];
    int n = has_arg ? snprintf(buf, sizeof(buf), "--%s=%s", name, value)
                    : snprintf(buf, sizeof(buf), "--%s", name);
    return n > 0 && (size_t)n < sizeof(buf) && args_push(a, buf);
}

static const struct option *find_opt(const char *name, size_t len)
{
    for (const struct option *o = serve_opts; o->name != NULL; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static bool truthy(const char *v)
{
    return strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
}

/* True when the command line gives --name (as --name, --name=V or --name V). */
static bool on_command_line(const char *name, int argc, char **argv)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
            (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
            return true;
    return false;
}

/* OCIREG_<NAME> of a flag into env[cap]. */
static void env_name(const char *flag, char *env, size_t cap)
{
    size_t n = (size_t)snprintf(env, cap, "OCIREG_");
    for (const char *c = flag; *c && n + 1 < cap; c++)
        env[n++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    env[n] = '\0';
}

/* Set by a source that outranks the config file. */
static bool outranked(const char *flag, int argc, char **argv)
{
    char env[64];
    env_name(flag, env, sizeof(env));
    const char *v = getenv(env);
    return (v != NULL && v[0] != '\0') || on_command_line(flag, argc, argv);
}

/* "name = value" lines; false after printing what is wrong. */
static bool read_config(struct args *a, const char *path, int argc, char **argv)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "ocireg: --config %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[4096];
    int no = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        no++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "#\r\n")] = '\0';
        size_t end = strlen(p);
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            p[--end] = '\0';
        if (*p == '\0')
            continue;
        size_t nl = strcspn(p, " \t=");
        const struct option *o = find_opt(p, nl);
        char *val = p + nl;
        val += strspn(val, " \t");
        bool has_eq = *val == '=';
        if (has_eq)
            val += 1 + strspn(val + 1, " \t");
        if (o == NULL || strcmp(o->name, "config") == 0 || strcmp(o->name, "help") == 0 ||
            (o->has_arg && !has_eq)) {
            fprintf(stderr, "ocireg: %s:%d: unknown setting or missing '= value'\n", path, no);
            ok = false;
        } else if (outranked(o->name, argc, argv)) {
            continue;
        } else if (o->has_arg) {
            ok = args_flag(a, o->name, val, true);
        } else if (!has_eq || truthy(val)) {
            ok = args_flag(a, o->name, "", false);
        }
    }
    fclose(f);
    return ok;
}

/*
 * The argv serve parses: the config file's settings, then OCIREG_* variables, then the
 * command line, each source leaving out what a higher one sets (so a bad value that is
 * overridden is no error).
 */
static bool expand_args(int argc, char **argv, struct args *a)
{
    if (!args_push(a, argv[0]))
        return false;
    for (int i = 1; i < argc; i++) {
        const char *cf = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            cf = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            cf = argv[i] + 9;
        if (cf != NULL && !read_config(a, cf, argc, argv))
            return false;
    }
    for (const struct option *o = serve_opts; o->name != NULL; o++) {
        if (strcmp(o->name, "help") == 0 || strcmp(o->name, "config") == 0 ||
            strcmp(o->name, "check-config") == 0)
            continue;
        char env[64];
        env_name(o->name, env, sizeof(env));
        const char *val = getenv(env);
        if (val == NULL || val[0] == '\0' || on_command_line(o->name, argc, argv))
            continue;
        if (o->has_arg ? !args_flag(a, o->name, val, true)
                       : truthy(val) && !args_flag(a, o->name, "", false))
            return false;
    }
    for (int i = 1; i < argc; i++)
        if (!args_push(a, argv[i]))
            return false;
    return true;
}

static int cmd_serve(int argc, char **argv)
{
    struct args a = {NULL, 0, 0};
    int ret = 2;
    if (expand_args(argc, argv, &a))
        ret = serve_main(a.n, a.v);
    args_free(&a);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("ocireg %s (commit %s, index schema %u, libmicrohttpd %s, %s, lmdb %s)\n",
               OCIREG_VERSION, OCIREG_COMMIT, index_schema_version(), MHD_get_version(),
               OpenSSL_version(OPENSSL_VERSION), mdb_version(NULL, NULL, NULL));
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {
        {"serve", cmd_serve},         {"user", cli_user},     {"grant", cli_grant},
        {"revoke", cli_revoke},       {"grants", cli_grants}, {"login-password", cli_login_password},
        {"usage", cli_usage},         {"repo", cli_repo},     {"gc", cli_gc},
        {"fsck", cli_fsck},           {"export", cli_export}, {"import", cli_import},
        {"backup", cli_backup},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ocireg: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
