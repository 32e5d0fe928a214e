/*
 * ocireg_conformance: checks a registry against the OCI distribution spec, clause by clause.
 *
 *   ocireg_conformance                      starts ocireg (fresh root, ephemeral port) and runs
 *   ocireg_conformance --url http://H:P     runs against a registry that is already running
 *
 * Every check prints PASS or FAIL with its clause; the run never stops at a failure. Each
 * section runs in a child process: a crash there (or a harness abort on a transport error) is
 * one FAIL for that section. Exit status 0 only when every check passed.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "conformance/conformance.h"

/* ---- check recording ---- */

static void emit(struct ctx *c, bool ok, const char *clause)
{
    if (ok)
        c->pass++;
    else
        c->fail++;
    if (!ok || !c->quiet)
        printf("%s [%s] %s\n", ok ? "PASS" : "FAIL", c->section, clause);
    fflush(stdout);
    char line[600];
    int n = snprintf(line, sizeof(line), "%c %s\t%.500s\n", ok ? 'P' : 'F', c->section, clause);
    if (n > 0 && c->result_fd >= 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        if (write(c->result_fd, line, len) < 0)
            perror("write");
    }
}

bool check(struct ctx *c, const char *clause, bool cond)
{
    emit(c, cond, clause);
    return cond;
}

bool checkf(struct ctx *c, bool cond, const char *f, ...)
{
    char clause[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(clause, sizeof(clause), f, ap);
    va_end(ap);
    emit(c, cond, clause);
    return cond;
}

void detail(struct ctx *c, const char *f, ...)
{
    (void)c;
    char line[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(line, sizeof(line), f, ap);
    va_end(ap);
    printf("        %s\n", line);
    fflush(stdout);
}

void detail_resp(struct ctx *c, const struct resp *r)
{
    if (r == NULL)
        return;
    static const char *const names[] = {"Content-Type",          "Location",      "Range",
                                        "Docker-Content-Digest", "Content-Range", "Link"};
    char hs[1200] = "", buf[HDR_MAX];
    size_t used = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (hdr(r, names[i], buf) == NULL)
            continue;
        int n = snprintf(hs + used, sizeof(hs) - used, " %s: %.200s;", names[i], buf);
        if (n < 0 || (size_t)n >= sizeof(hs) - used)
            break;
        used += (size_t)n;
    }
    char body[241];
    size_t n = r->len < sizeof(body) - 1 ? r->len : sizeof(body) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)r->body[i];
        body[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '.';
    }
    body[n] = '\0';
    detail(c, "got %ld;%s body (%zu bytes): %s%s", r->status, hs, r->len, body,
           r->len > n ? "..." : "");
}

bool setup(struct ctx *c, const char *what, bool ok, const struct resp *r)
{
    if (!ok) {
        char clause[300];
        fmt(clause, sizeof(clause), "setup: %s", what);
        emit(c, false, clause);
        detail_resp(c, r);
    }
    return ok;
}

/* ---- sections ---- */

struct section {
    const char *name;
    void (*run)(struct ctx *c);
};

static const struct section SECTIONS[] = {
    {"base", sec_base},
    {"pull-blobs", sec_pull_blobs},
    {"pull-manifests", sec_pull_manifests},
    {"push-monolithic", sec_push_monolithic},
    {"push-sha512", sec_push_sha512},
    {"push-chunked", sec_push_chunked},
    {"push-streamed", sec_push_streamed},
    {"push-cancel", sec_push_cancel},
    {"push-mount", sec_push_mount},
    {"push-manifests", sec_push_manifests},
    {"push-tag-param", sec_push_tag_param},
    {"push-limits", sec_push_limits},
    {"tags", sec_tags},
    {"referrers", sec_referrers},
    {"delete-tags", sec_delete_tags},
    {"delete-manifests", sec_delete_manifests},
    {"delete-blobs", sec_delete_blobs},
    {"errors-names", sec_err_names},
    {"errors-digests", sec_err_digests},
    {"errors-blobs", sec_err_blobs},
    {"errors-uploads", sec_err_uploads},
    {"errors-manifests", sec_err_manifests},
    {"errors-bodies", sec_err_bodies},
    {"catalog", sec_catalog},
};
#define NSECTIONS (sizeof(SECTIONS) / sizeof(SECTIONS[0]))

/*
 * What a section saw in all of its responses goes to the parent, which turns the whole run's
 * observations into two checks at the end (one cause is then one failure, not one a section).
 */
static void section_end(struct ctx *c)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "O %d %d %d\t%s\t%s\n", c->err_bodies, c->err_body_bad,
                     c->warn_bad, c->err_body_why, c->warn_why);
    if (n > 0 && c->result_fd >= 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        if (len == sizeof(line) - 1)
            line[len - 1] = '\n';
        if (write(c->result_fd, line, len) < 0)
            perror("write");
    }
}

#define MAX_FAILS 400

struct tally {
    int pass, fail;
    int nfails;
    char fails[MAX_FAILS][300];
    /* observations of every response (section_end) */
    int err_bodies, err_body_bad, warn_bad;
    char err_why[2400], warn_why[300];
};

static void record_fail(struct tally *t, const char *s)
{
    t->fail++;
    if (t->nfails < MAX_FAILS) {
        fmt(t->fails[t->nfails], sizeof(t->fails[0]), "%s", s);
        t->nfails++;
    }
}

/* Parses the child's result lines ("P sec\tclause" / "F sec\tclause"). */
static void consume(struct tally *t, char *buf, size_t *len, int *seen)
{
    char *start = buf;
    char *nl;
    while ((nl = memchr(start, '\n', (size_t)(buf + *len - start))) != NULL) {
        *nl = '\0';
        (*seen)++;
        if (start[0] == 'P') {
            t->pass++;
        } else if (start[0] == 'O') {
            int a = 0, b = 0, w = 0;
            char *tab = strchr(start, '\t');
            if (sscanf(start + 2, "%d %d %d", &a, &b, &w) == 3) {
                t->err_bodies += a;
                t->err_body_bad += b;
                t->warn_bad += w;
                char *tab2 = tab != NULL ? strchr(tab + 1, '\t') : NULL;
                if (tab2 != NULL)
                    *tab2 = '\0';
                /* merge the section's distinct reasons ("why [example]; ...") */
                char *item = tab != NULL ? tab + 1 : NULL;
                while (b > 0 && item != NULL && *item != '\0') {
                    char *sep = strstr(item, "; ");
                    if (sep != NULL)
                        *sep = '\0';
                    char key[300];
                    fmt(key, sizeof(key), "%s", item);
                    char *br = strstr(key, " [");
                    if (br != NULL)
                        *br = '\0';
                    size_t u = strlen(t->err_why);
                    if (strstr(t->err_why, key) == NULL &&
                        u + strlen(item) + 8 < sizeof(t->err_why))
                        fmt(t->err_why + u, sizeof(t->err_why) - u, "%s%s", u ? "\n        " : "",
                            item);
                    item = sep != NULL ? sep + 2 : NULL;
                }
                if (w > 0 && tab2 != NULL && t->warn_why[0] == '\0')
                    fmt(t->warn_why, sizeof(t->warn_why), "%s", tab2 + 1);
            }
            (*seen)--;
        } else {
            char s[300];
            char *tab = strchr(start + 2, '\t');
            if (tab != NULL)
                *tab = '\0';
            fmt(s, sizeof(s), "[%s] %s", start + 2, tab ? tab + 1 : "");
            record_fail(t, s);
        }
        start = nl + 1;
    }
    size_t rest = (size_t)(buf + *len - start);
    memmove(buf, start, rest);
    *len = rest;
}

static void run_section(struct ctx *base, const struct section *s, struct tally *t)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        struct ctx c = *base;
        c.section = s->name;
        c.result_fd = fds[1];
        s->run(&c);
        section_end(&c);
        fflush(stdout);
        close(fds[1]);
        exit(0);
    }
    close(fds[1]);
    char buf[8192];
    size_t len = 0;
    int seen = 0;
    for (;;) {
        ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        consume(t, buf, &len, &seen);
        if (len == sizeof(buf) - 1)
            len = 0; /* a line longer than the buffer: drop it */
    }
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char s2[300];
        if (WIFSIGNALED(st))
            fmt(s2, sizeof(s2),
                "[%s] section aborted by signal %d after %d checks "
                "(transport error or crash; see stderr)",
                s->name, WTERMSIG(st), seen);
        else
            fmt(s2, sizeof(s2), "[%s] section exited with status %d after %d checks", s->name,
                WEXITSTATUS(st), seen);
        printf("FAIL %s\n", s2);
        record_fail(t, s2);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ocireg_conformance [--url http://HOST:PORT] [--prefix REPO] "
               "[--manifest-limit BYTES] [--section NAME]... [--quiet] [--list]\n"
               "  --url             run against a registry already running there (default: start "
               "ocireg)\n"
               "  --prefix          repositories are created under this name (default "
               "conformance/run-<time>-<pid>)\n"
               "  --manifest-limit  the registry's manifest size limit, for the 413 check (default "
               "4194304)\n"
               "  --section         run only the named sections (see --list)\n"
               "  --quiet           print failing checks only\n");
}

static struct tally TALLY;

int main(int argc, char **argv)
{
    const char *url = NULL;
    const char *only[NSECTIONS + 1];
    size_t nonly = 0;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.result_fd = -1;
    c.manifest_limit = 4u << 20;
    fmt(c.prefix, sizeof(c.prefix), "conformance/run-%ld-%ld", (long)time(NULL), (long)getpid());
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--url") == 0 && v != NULL) {
            url = v;
            i++;
        } else if (strcmp(a, "--prefix") == 0 && v != NULL) {
            if (!fmt(c.prefix, sizeof(c.prefix), "%s", v)) {
                fprintf(stderr, "--prefix: too long\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--manifest-limit") == 0 && v != NULL) {
            char *end;
            unsigned long long n = strtoull(v, &end, 10);
            if (*end != '\0' || n == 0 || n > (1ull << 30)) {
                fprintf(stderr, "--manifest-limit: a size in bytes up to 1 GiB\n");
                return 2;
            }
            c.manifest_limit = (size_t)n;
            i++;
        } else if (strcmp(a, "--section") == 0 && v != NULL) {
            if (nonly < NSECTIONS)
                only[nonly++] = v;
            i++;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            c.quiet = true;
        } else if (strcmp(a, "--list") == 0) {
            for (size_t s = 0; s < NSECTIONS; s++)
                printf("%s\n", SECTIONS[s].name);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    for (size_t i = 0; i < nonly; i++) {
        bool found = false;
        for (size_t s = 0; s < NSECTIONS; s++)
            found = found || strcmp(only[i], SECTIONS[s].name) == 0;
        if (!found) {
            fprintf(stderr, "unknown section %s (see --list)\n", only[i]);
            return 2;
        }
    }

    struct srv srv;
    memset(&srv, 0, sizeof(srv));
    bool started = false;
    if (url != NULL) {
        size_t ul = strlen(url);
        while (ul > 0 && url[ul - 1] == '/')
            ul--;
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
            fprintf(stderr, "--url: http://HOST:PORT or https://HOST:PORT\n");
            return 2;
        }
        if (ul >= sizeof(srv.base)) {
            fprintf(stderr, "--url: too long\n");
            return 2;
        }
        memcpy(srv.base, url, ul);
        srv.base[ul] = '\0';
        curl_global_init(CURL_GLOBAL_DEFAULT);
        printf("registry: %s (already running)\n", srv.base);
    } else {
        srv_start(&srv, NULL);
        started = true;
        printf("registry: ocireg started at %s, root %s\n", srv.base, srv.root);
    }
    c.srv = &srv;
    printf("repositories under %s/\n", c.prefix);

    for (size_t s = 0; s < NSECTIONS; s++) {
        bool run = nonly == 0;
        for (size_t i = 0; i < nonly; i++)
            run = run || strcmp(only[i], SECTIONS[s].name) == 0;
        if (!run)
            continue;
        if (!c.quiet)
            printf("== %s\n", SECTIONS[s].name);
        run_section(&c, &SECTIONS[s], &TALLY);
    }

    /* the run's observations of every response */
    if (!c.quiet || TALLY.err_body_bad > 0)
        printf("== all responses\n");
    char clause[300];
    fmt(clause, sizeof(clause),
        "error codes: every 4xx JSON body is {\"errors\":[{\"code\",\"message\",\"detail\"}]} "
        "with a code of the spec's table (%d responses)",
        TALLY.err_bodies);
    if (TALLY.err_bodies == 0) {
        /* nothing to judge */
    } else if (TALLY.err_body_bad == 0) {
        TALLY.pass++;
        if (!c.quiet)
            printf("PASS [all] %s\n", clause);
    } else {
        char s2[300];
        printf("FAIL [all] %s\n        %d responses broke it, for these reasons:\n        %s\n",
               clause, TALLY.err_body_bad, TALLY.err_why);
        fmt(s2, sizeof(s2), "[all] %s", clause);
        record_fail(&TALLY, s2);
    }
    const char *wclause = "warnings: Warning headers MUST be 299 - \"text\", no warn-date, "
                          "<= 4096 bytes";
    if (TALLY.warn_bad == 0) {
        TALLY.pass++;
        if (!c.quiet)
            printf("PASS [all] %s\n", wclause);
    } else {
        char s2[300];
        printf("FAIL [all] %s\n        first: %s\n", wclause, TALLY.warn_why);
        fmt(s2, sizeof(s2), "[all] %s", wclause);
        record_fail(&TALLY, s2);
    }

    if (started) {
        /* the server must still be alive after all of it */
        int st;
        if (waitpid(srv.pid, &st, WNOHANG) != 0) {
            printf("FAIL [runner] ocireg exited during the run\n");
            record_fail(&TALLY, "[runner] ocireg exited during the run");
            srv.pid = 0;
        }
        srv_cleanup(&srv);
    }
    curl_global_cleanup();

    printf("\n");
    if (TALLY.nfails > 0) {
        printf("failing checks:\n");
        for (int i = 0; i < TALLY.nfails; i++)
            printf("  %s\n", TALLY.fails[i]);
        if (TALLY.fail > TALLY.nfails)
            printf("  ... and %d more\n", TALLY.fail - TALLY.nfails);
    }
    printf("conformance: %d checks\n", TALLY.pass + TALLY.fail);
    printf("%d passed, %d failed\n", TALLY.pass, TALLY.fail);
    return TALLY.fail == 0 && TALLY.pass > 0 ? 0 : 1;
}
