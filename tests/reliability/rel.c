#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <jansson.h>
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/reliability/rel.h"

double rel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t rel_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint64_t rel_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return lo + rel_rand(s) % (hi - lo + 1);
}

void rel_fill(uint64_t *s, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len >= 8) {
        uint64_t v = rel_rand(s);
        memcpy(p, &v, 8);
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t v = rel_rand(s);
        memcpy(p, &v, len);
    }
}

struct client {
    CURL *c;
    long timeout;
};

void *rel_client_new(long timeout_s)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CHECK(cl != NULL);
    cl->c = curl_easy_init();
    CHECK(cl->c != NULL);
    cl->timeout = timeout_s;
    return cl;
}

void rel_client_free(void *client)
{
    struct client *cl = client;
    if (cl == NULL)
        return;
    curl_easy_cleanup(cl->c);
    free(cl);
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

struct resp *rel_http(void *client, unsigned port, const char *method, const char *path,
                      const char *const *hdrs, const void *body, size_t len, int *curl_err)
{
    struct client *cl = client;
    CURL *c = cl->c;
    curl_easy_reset(c); /* options only: the live connection stays cached */
    char url[4096];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    struct growbuf b = {NULL, 0}, h = {NULL, 0};
    struct curl_slist *list = NULL;
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
        list = curl_slist_append(list, hdrs[i]);
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (body != NULL || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
             strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, cl->timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    struct resp *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = b.p != NULL ? b.p : strdup("");
    r->len = b.len;
    r->headers = h.p != NULL ? h.p : strdup("");
    CHECK(r->body != NULL && r->headers != NULL);
    if (rc != CURLE_OK)
        r->status = 0; /* libcurl closes the connection of a failed transfer */
    if (curl_err != NULL)
        *curl_err = (int)rc;
    curl_slist_free_all(list);
    return r;
}

const char *rel_curl_strerror(int code)
{
    return curl_easy_strerror((CURLcode)code);
}

bool rel_is_json_error(const struct resp *r)
{
    char ct[128];
    if (resp_hdr(r, "Content-Type", ct, sizeof(ct)) == NULL ||
        strncasecmp(ct, "application/json", 16) != 0)
        return false;
    const char *p = r->body;
    while (isspace((unsigned char)*p))
        p++;
    return *p == '{' && strstr(p, "\"errors\"") != NULL && strstr(p, "\"code\"") != NULL;
}

const char *rel_error_code(const struct resp *r, char *buf, size_t cap)
{
    buf[0] = '\0';
    const char *p = strstr(r->body, "\"code\"");
    if (p == NULL)
        return buf;
    p = strchr(p + 6, '"');
    if (p == NULL)
        return buf;
    p++;
    size_t n = 0;
    while (p[n] != '\0' && p[n] != '"' && n + 1 < cap) {
        buf[n] = p[n];
        n++;
    }
    buf[n] = '\0';
    return buf;
}

long long rel_range_offset(const struct resp *r, bool *ambiguous)
{
    char v[64];
    if (ambiguous != NULL)
        *ambiguous = false;
    if (resp_hdr(r, "Range", v, sizeof(v)) == NULL)
        return -1;
    const char *p = v;
    if (strncmp(p, "bytes=", 6) == 0)
        p += 6;
    unsigned long long a, b;
    if (sscanf(p, "%llu-%llu", &a, &b) != 2 || a != 0)
        return -1;
    if (b == 0 && ambiguous != NULL)
        *ambiguous = true;
    return (long long)b + 1;
}

size_t rel_manifest(char *out, size_t cap, const char *cfg_digest, size_t cfg_len,
                    const char *const *layer_digests, const size_t *layer_lens, size_t nlayers,
                    const char *annotation)
{
    size_t n = (size_t)snprintf(out, cap,
                                "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST
                                "\",\"config\":{\"mediaType\":\"" MT_CONFIG
                                "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
                                cfg_digest, cfg_len);
    for (size_t i = 0; i < nlayers && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n,
                              "%s{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\",\"size\":%zu}",
                              i ? "," : "", layer_digests[i], layer_lens[i]);
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "]");
    if (annotation != NULL && n < cap)
        n += (size_t)snprintf(out + n, cap - n,
                              ",\"annotations\":{\"org.example.note\":\"%s\"}", annotation);
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "}");
    CHECK(n < cap);
    return n;
}

int rel_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

void rel_fd_dump(pid_t pid, FILE *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char link[sizeof(path) + 260], target[PATH_MAX];
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        fprintf(out, "  fd %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

double rel_cpu_seconds(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    /* the command name may hold spaces and parentheses: fields resume after the last ')' */
    const char *p = strrchr(line, ')');
    unsigned long long utime = 0, stime = 0;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

long rel_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* sha256 of a whole file into out[72]; false if unreadable. */
static bool file_sha256(const char *path, char *out, long long *size, long *nlink)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return false;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    CHECK(buf != NULL);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    sha256_str(buf, n, out);
    free(buf);
    *size = (long long)st.st_size;
    *nlink = (long)st.st_nlink;
    return true;
}

int rel_fsck(struct srv *s)
{
    static char out[1 << 20];
    int rc = run_cli(s, NULL, out, sizeof(out), (const char *const[]){"fsck", "--json", NULL});
    fprintf(stderr, "ocireg fsck --json (exit %d): %.4000s", rc, out);
    json_t *j = json_loads(out, 0, NULL);
    if (j == NULL) {
        fprintf(stderr, "(fsck printed no JSON)\n");
        return rc == 0 ? 1 : rc;
    }
    /* an orphan file: is it a complete blob (a commit cut short) or a partial one? */
    json_t *problems = json_object_get(j, "problems");
    for (size_t i = 0; i < json_array_size(problems); i++) {
        json_t *p = json_array_get(problems, i);
        const char *kind = json_string_value(json_object_get(p, "kind"));
        const char *msg = json_string_value(json_object_get(p, "message"));
        if (kind == NULL || msg == NULL || strcmp(kind, "orphan") != 0 ||
            strncmp(msg, "sha256:", 7) != 0 || strlen(msg) < 71)
            continue;
        char hex[65], path[512], got[72];
        memcpy(hex, msg + 7, 64);
        hex[64] = '\0';
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", s->root, hex, hex);
        long long size = 0;
        long nlink = 0;
        if (file_sha256(path, got, &size, &nlink))
            fprintf(stderr, "  orphan %.19s...: %lld bytes, content %s its digest, %ld link%s\n",
                    msg, size, strcmp(got + 7, hex) == 0 ? "matches" : "DOES NOT match", nlink,
                    nlink > 1 ? "s (its upload file in uploads/ is the same inode)" : "");
    }
    json_decref(j);
    return rc;
}

bool rel_sanitized(void)
{
#ifdef REL_SANITIZED
    return true;
#else
    return false;
#endif
}
