#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <openssl/evp.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

static void spawn(struct srv *s, const char *const *extra)
{
    char portfile[200];
    snprintf(portfile, sizeof(portfile), "%s/port", s->dir);
    unlink(portfile);
    const char *argv[32] = {OCIREG_BIN, "serve", "--root", s->root, "--listen", "127.0.0.1:0",
                            "--port-file", portfile, "--log-level", s->log_level[0] ? s->log_level : "warn"};
    int argc = 10;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    s->pid = fork();
    CHECK(s->pid != -1);
    if (s->pid == 0) {
        /* a test that aborts must not leave its server running */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (s->log_to_file) {
            char logpath[200];
            snprintf(logpath, sizeof(logpath), "%s/server.log", s->dir);
            int lfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (lfd != -1)
                dup2(lfd, STDERR_FILENO);
        }
        if (s->nofile != 0) {
            struct rlimit rl = {s->nofile, s->nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                _exit(126);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    /* readiness is the port file, written by rename once the server listens */
    struct timespec start, now, tick = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        FILE *f = fopen(portfile, "r");
        if (f != NULL) {
            CHECK(fscanf(f, "%u", &s->port) == 1);
            fclose(f);
            break;
        }
        int st = 0;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            /* it exited before listening: say how, and what it logged */
            fprintf(stderr, "ocireg serve (pid %ld) on the root %s exited before listening: %s %d\n",
                    (long)s->pid, s->root, WIFSIGNALED(st) ? "signal" : "exit status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            char cmd[300];
            snprintf(cmd, sizeof(cmd), "tail -n 30 %s/server.log >&2", s->dir);
            if (s->log_to_file && system(cmd) != 0)
                fprintf(stderr, "(no server log)\n");
            s->pid = 0;
            abort();
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        CHECK(now.tv_sec - start.tv_sec < 30);
        nanosleep(&tick, NULL);
    }
    snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%u", s->port);
}

void srv_start(struct srv *s, const char *const *extra)
{
    bool log_to_file = s->log_to_file;
    unsigned long nofile = s->nofile;
    char level[sizeof(s->log_level)];
    memcpy(level, s->log_level, sizeof(level));
    memset(s, 0, sizeof(*s));
    s->log_to_file = log_to_file;
    s->nofile = nofile;
    memcpy(s->log_level, level, sizeof(level));
    snprintf(s->dir, sizeof(s->dir), "/tmp/ocireg-it-XXXXXX");
    CHECK(mkdtemp(s->dir) != NULL);
    snprintf(s->root, sizeof(s->root), "%s/root", s->dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    spawn(s, extra);
}

void srv_restart(struct srv *s, const char *const *extra)
{
    spawn(s, extra);
}

void srv_stop(struct srv *s)
{
    CHECK(kill(s->pid, SIGTERM) == 0);
    int st = 0;
    CHECK(waitpid(s->pid, &st, 0) == s->pid);
    CHECK(WIFEXITED(st));
    CHECK_INT(WEXITSTATUS(st), ==, 0);
    s->pid = 0;
}

void srv_kill(struct srv *s)
{
    CHECK(kill(s->pid, SIGKILL) == 0);
    int st = 0;
    CHECK(waitpid(s->pid, &st, 0) == s->pid);
    s->pid = 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

void srv_cleanup(struct srv *s)
{
    if (s->pid > 0)
        srv_stop(s);
    nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct growbuf {
    char *p;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t n, void *arg)
{
    struct growbuf *b = arg;
    size_t add = size * n;
    char *np = realloc(b->p, b->len + add + 1);
    CHECK(np != NULL);
    memcpy(np + b->len, ptr, add);
    b->p = np;
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

struct reader {
    const char *p;
    size_t left;
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct reader *r = arg;
    size_t want = size * n;
    /* small pieces so the body really arrives in several chunks */
    if (want > 4096)
        want = 4096;
    if (want > r->left)
        want = r->left;
    memcpy(buf, r->p, want);
    r->p += want;
    r->left -= want;
    return want;
}

static struct resp *do_http(struct srv *s, const char *method, const char *path,
                            const char *const *hdrs, const void *body, size_t len, bool chunked)
{
    CURL *c = curl_easy_init();
    CHECK(c != NULL);
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    struct growbuf b = {NULL, 0}, h = {NULL, 0};
    struct curl_slist *list = NULL;
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
        list = curl_slist_append(list, hdrs[i]);
    list = curl_slist_append(list, "Expect:");
    struct reader rd = {body, len};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (chunked) {
        list = curl_slist_append(list, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &rd);
    } else if (body != NULL || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
               strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(rc));
        abort();
    }
    struct resp *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = b.p != NULL ? b.p : strdup("");
    r->len = b.len;
    r->headers = h.p != NULL ? h.p : strdup("");
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    return r;
}

struct resp *http(struct srv *s, const char *method, const char *path, const char *const *hdrs,
                  const void *body, size_t len)
{
    return do_http(s, method, path, hdrs, body, len, false);
}

struct resp *http_chunked(struct srv *s, const char *method, const char *path,
                          const char *const *hdrs, const void *body, size_t len)
{
    return do_http(s, method, path, hdrs, body, len, true);
}

void resp_free(struct resp *r)
{
    if (r == NULL)
        return;
    free(r->body);
    free(r->headers);
    free(r);
}

static const char *find_hdr(const char *from, const char *name, const char **value_end)
{
    size_t nl = strlen(name);
    const char *line = from;
    while (line != NULL && *line != '\0') {
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL)
            eol = line + strlen(line);
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            *value_end = eol;
            return v;
        }
        line = *eol ? eol + 2 : NULL;
    }
    return NULL;
}

const char *resp_hdr(const struct resp *r, const char *name, char *buf, size_t cap)
{
    const char *end;
    const char *v = find_hdr(r->headers, name, &end);
    if (v == NULL)
        return NULL;
    size_t n = (size_t)(end - v);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

int resp_hdr_count(const struct resp *r, const char *name)
{
    int n = 0;
    const char *end, *from = r->headers;
    while (find_hdr(from, name, &end) != NULL) {
        n++;
        from = *end ? end + 2 : end;
    }
    return n;
}

static void digest_str(const EVP_MD *md, const char *alg, const void *data, size_t len, char *out)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    CHECK(EVP_Digest(data, len, h, &hl, md, NULL) == 1);
    int n = sprintf(out, "%s:", alg);
    for (unsigned i = 0; i < hl; i++)
        n += sprintf(out + n, "%02x", h[i]);
}

void sha256_str(const void *data, size_t len, char *out)
{
    digest_str(EVP_sha256(), "sha256", data, len, out);
}

void sha512_str(const void *data, size_t len, char *out)
{
    digest_str(EVP_sha512(), "sha512", data, len, out);
}

static int file_count;

static int count_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)p;
    (void)st;
    (void)f;
    if (flag == FTW_F)
        file_count++;
    return 0;
}

int count_files(const char *root, const char *sub)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, sub);
    file_count = 0;
    nftw(path, count_entry, 16, FTW_PHYS);
    return file_count;
}

long long dir_bytes(const char *root, const char *sub)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", root, sub);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += st.st_size;
    }
    closedir(d);
    return sum;
}

unsigned read_port_file(const struct srv *s, const char *name)
{
    char path[512];
    unsigned port = 0;
    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL && fscanf(f, "%u", &port) == 1 && port > 0 && port < 65536);
    fclose(f);
    return port;
}

void basic_auth(const char *user, const char *pw, char *out, size_t cap)
{
    char raw[4200];
    int n = snprintf(raw, sizeof(raw), "%s:%s", user, pw);
    CHECK(n > 0 && (size_t)n < sizeof(raw));
    unsigned char b64[4 * (sizeof(raw) + 2) / 3 + 1];
    EVP_EncodeBlock(b64, (const unsigned char *)raw, n);
    snprintf(out, cap, "Basic %s", (const char *)b64);
}

void expect_resp(const struct resp *r, long status, const char *code, const char *file, int line)
{
    bool ok = r->status == status;
    if (ok && code != NULL) {
        char pat[128];
        snprintf(pat, sizeof(pat), "\"code\":\"%s\"", code);
        ok = strstr(r->body, pat) != NULL;
    }
    if (!ok) {
        fprintf(stderr, "%s:%d: expected %ld %s, got %ld\nheaders:\n%s\nbody: %.2000s\n", file, line,
                status, code ? code : "", r->status, r->headers, r->body);
        abort();
    }
}

static int raw_connect(struct srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd != -1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return fd;
}

size_t raw_abandon(struct srv *s, const char *bytes, size_t len, size_t stop_after)
{
    int fd = raw_connect(s);
    CHECK(send(fd, bytes, len, MSG_NOSIGNAL) == (ssize_t)len);
    size_t got = 0;
    char buf[65536];
    while (got < stop_after) {
        ssize_t n = recv(fd, buf, sizeof(buf) < stop_after - got ? sizeof(buf) : stop_after - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    struct linger lg = {1, 0}; /* close with a reset: the server sees the client gone */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    return got;
}

char *raw_exchange(struct srv *s, const char *bytes, size_t len, bool half_close)
{
    int fd = raw_connect(s);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may answer and close before taking it all */
        off += (size_t)n;
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct growbuf b = {NULL, 0};
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        on_data(buf, 1, (size_t)n, &b);
    }
    close(fd);
    return b.p != NULL ? b.p : strdup("");
}

struct resp *http_whole(struct srv *s, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len)
{
    struct growbuf head = {NULL, 0};
    char line[8192];
    snprintf(line, sizeof(line),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: %zu\r\n",
             method, path, len);
    on_data(line, 1, strlen(line), &head);
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++) {
        snprintf(line, sizeof(line), "%s\r\n", hdrs[i]);
        on_data(line, 1, strlen(line), &head);
    }
    on_data("\r\n", 1, 2, &head);
    int fd = raw_connect(s);
    struct timeval tv = {60, 0}; /* as do_http's CURLOPT_TIMEOUT */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char *parts[2] = {head.p, body};
    size_t lens[2] = {head.len, body != NULL ? len : 0};
    bool sending = true;
    for (int k = 0; k < 2 && sending; k++)
        for (size_t off = 0; off < lens[k];) {
            ssize_t n = send(fd, parts[k] + off, lens[k] - off, MSG_NOSIGNAL);
            if (n <= 0) {
                sending = false; /* answered and closed before taking it all */
                break;
            }
            off += (size_t)n;
        }
    free(head.p);
    /* what came before a reset is still read (Linux keeps received data readable) */
    struct growbuf got = {NULL, 0};
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        on_data(buf, 1, (size_t)n, &got);
    }
    close(fd);
    struct resp *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    const char *text = got.p != NULL ? got.p : "";
    const char *end = strstr(text, "\r\n\r\n");
    if (end == NULL || sscanf(text, "HTTP/1.%*d %ld", &r->status) != 1) {
        r->status = 0; /* no answer, or not a whole head */
        end = text + strlen(text);
    } else {
        end += 4;
    }
    r->headers = strndup(text, (size_t)(end - text));
    r->body = strdup(end);
    CHECK(r->headers != NULL && r->body != NULL);
    r->len = strlen(r->body);
    free(got.p);
    return r;
}

int run_cli(struct srv *s, const char *stdin_text, char *out, size_t cap, const char *const *args)
{
    int in[2], outp[2];
    CHECK(pipe(in) == 0 && pipe(outp) == 0);
    pid_t pid = fork();
    CHECK(pid != -1);
    if (pid == 0) {
        const char *argv[32] = {OCIREG_BIN};
        int argc = 1;
        for (size_t i = 0; args[i] != NULL && argc < 29; i++)
            argv[argc++] = args[i];
        argv[argc++] = "--root";
        argv[argc++] = s->root;
        argv[argc] = NULL;
        dup2(in[0], STDIN_FILENO);
        dup2(outp[1], STDOUT_FILENO);
        close(in[1]);
        close(outp[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    if (stdin_text != NULL)
        CHECK(write(in[1], stdin_text, strlen(stdin_text)) == (ssize_t)strlen(stdin_text));
    close(in[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(outp[0], out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(outp[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

void push_blob_data(struct srv *s, const char *repo, const void *data, size_t len, char *out)
{
    char path[512];
    sha256_str(data, len, out);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, out);
    struct resp *r = http(s, "POST", path,
                          (const char *[]){"Content-Type: application/octet-stream", NULL}, data,
                          len);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

struct resp *put_manifest_body(struct srv *s, const char *repo, const char *ref, const char *ct,
                               const char *body)
{
    char path[512], cth[128];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    snprintf(cth, sizeof(cth), "Content-Type: %s", ct);
    return http(s, "PUT", path, (const char *[]){cth, NULL}, body, strlen(body));
}
