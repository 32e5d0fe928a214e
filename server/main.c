/* ocireg: the command line. Subcommands parse their flags into a config and run. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/httpparse.h"
#include "server/log.h"
#include "server/server.h"

static const char usage_main[] =
    "usage: ocireg [--help] [--version] <command> [<args>]\n"
    "\n"
    "An OCI container registry.\n"
    "\n"
    "Commands:\n"
    "  serve     serve the OCI distribution API\n"
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
    "  --threads N              worker threads (default: 2 x cores)\n"
    "  --max-manifest-size N    largest manifest accepted, bytes (default 4194304)\n"
    "  --map-size N             LMDB map size, bytes (default 68719476736)\n"
    "  --conn-timeout SECONDS   close connections idle this long (default 120)\n"
    "  --per-ip-limit N         connections allowed per client address (default 0: none)\n"
    "  --shutdown-grace SECONDS time in-flight requests get at shutdown (default 10)\n"
    "  --log-level LEVEL        error, warn, info or debug (default info)\n"
    "  --help                   show this help\n";

static int bad_usage(const char *usage, const char *what, const char *arg)
{
    fprintf(stderr, "ocireg: %s: '%s'\n%s", what, arg, usage);
    return 2;
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
    OPT_GRACE,
    OPT_LOG_LEVEL,
    OPT_HELP,
};

static int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, OPT_ROOT},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"max-manifest-size", required_argument, NULL, OPT_MAX_MANIFEST},
        {"map-size", required_argument, NULL, OPT_MAP_SIZE},
        {"conn-timeout", required_argument, NULL, OPT_CONN_TIMEOUT},
        {"per-ip-limit", required_argument, NULL, OPT_PER_IP},
        {"shutdown-grace", required_argument, NULL, OPT_GRACE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct server_config cfg;
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
            if (!parse_num(optarg, &v) || v == 0 || v > 86400)
                return bad_usage(usage_serve, "--conn-timeout: expected 1..86400", optarg);
            cfg.conn_timeout = (unsigned)v;
            break;
        case OPT_PER_IP:
            if (!parse_num(optarg, &v) || v > 65535)
                return bad_usage(usage_serve, "--per-ip-limit: expected 0..65535", optarg);
            cfg.per_ip_limit = (unsigned)v;
            break;
        case OPT_GRACE:
            if (!parse_num(optarg, &v) || v > 3600)
                return bad_usage(usage_serve, "--shutdown-grace: expected 0..3600",
                                 optarg);
            cfg.shutdown_grace = (unsigned)v;
            break;
        case OPT_LOG_LEVEL: {
            int lv = log_level_parse(optarg);
            if (lv < 0)
                return bad_usage(usage_serve, "--log-level: unknown level", optarg);
            log_set_level((enum log_level)lv);
            break;
        }
        case OPT_HELP:
            fputs(usage_serve, stdout);
            return 0;
        default:
            return bad_usage(usage_serve, "unknown or incomplete flag", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage(usage_serve, "unexpected argument", argv[optind]);

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
        printf("ocireg %s\n", OCIREG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "ocireg: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
