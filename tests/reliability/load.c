/*
 * load: CLIENTS concurrent keep-alive connections (one thread each) for LOAD_SECONDS
 * (environment; default 20) mixing pushes (monolithic and chunked blobs, manifests under new
 * tags), pulls (whole and ranged blob GETs and manifest GETs by tag and by digest, every body
 * checked against its digest or the bytes pushed), tag lists (checked against what the thread
 * pushed and deleted), the catalog, and deletes (manifest and its blobs, then 404s).
 *
 * Must hold: no 5xx, no wrong byte, no unexpected status, no transport error; the server's
 * peak RSS (VmHWM) under 96 MiB: 200 connections, each with a thread and libmicrohttpd's
 * 64 KiB pool, which it touches whole on a busy connection, plus the rest (not checked in
 * sanitizer builds, whose shadow memory and quarantine are most of it); after the clients have closed, the server's open descriptors
 * go back to what they were before the load; `ocireg fsck` is clean afterwards; SIGTERM
 * stops it with exit status 0.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/check.h"
#include "tests/reliability/rel.h"

#define CLIENTS 200
#define NREPO 8
#define MAXIMG 65536
#define MAX_LAYER (256u << 10)
#define RSS_LIMIT_KB (96L * 1024)

static struct srv S;
static double g_deadline;

enum { LIVE = 0, DELETING = 1, DELETED = 2 };

struct image {
    char repo[16];
    char tag[24];
    char mdigest[72];
    char cfg[72];
    char layer[72];
    uint64_t layer_seed; /* the layer's bytes: rel_fill from this seed */
    size_t layer_len;
    atomic_int state;
    int owner;
};

static _Atomic(struct image *) pool[MAXIMG];
static atomic_int pool_n;

/* ---- counters and the first few reports of each kind ---- */

enum { C_OPS, C_5XX, C_WRONG, C_UNEXPECTED, C_TRANSPORT, C_PUSH, C_PULL_BLOB, C_PULL_RANGE,
       C_PULL_MANIFEST, C_TAGS, C_CATALOG, C_DELETE, C_404_DELETED, C_N };
static const char *const counter_names[C_N] = {
    "requests", "5xx", "wrong bytes", "unexpected status", "transport errors", "pushes",
    "blob pulls", "ranged blob pulls", "manifest pulls", "tag lists", "catalog lists",
    "deletes", "404s of images being deleted"};
static atomic_long counters[C_N];
static atomic_int reports;
static atomic_long max_latency_us;

static void bump(int c)
{
    atomic_fetch_add(&counters[c], 1);
}

static void report(int kind, const char *what, const struct resp *r)
{
    bump(kind);
    if (atomic_fetch_add(&reports, 1) < 12)
        fprintf(stderr, "[%s] %s: status %ld, body %.300s\n", counter_names[kind], what,
                r != NULL ? r->status : 0L, r != NULL ? r->body : "");
}

struct client {
    int id;
    void *cl;
    uint64_t seed;
    unsigned char *buf;
    char repo[16];
    int own[4096]; /* indexes into pool of this client's images */
    int nown;
    unsigned pushed;
};

/* A request; a transport error or a 5xx is counted here, and NULL returned for them. */
static struct resp *req(struct client *c, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len)
{
    int err = 0;
    double t0 = rel_now();
    struct resp *r = rel_http(c->cl, S.port, method, path, hdrs, body, len, &err);
    long us = (long)((rel_now() - t0) * 1e6);
    long prev = atomic_load(&max_latency_us);
    while (us > prev && !atomic_compare_exchange_weak(&max_latency_us, &prev, us)) {
    }
    bump(C_OPS);
    if (r->status == 0) {
        char what[600];
        snprintf(what, sizeof(what), "%s %s: %s", method, path, rel_curl_strerror(err));
        report(C_TRANSPORT, what, NULL);
        resp_free(r);
        return NULL;
    }
    if (r->status >= 500) {
        char what[600];
        snprintf(what, sizeof(what), "%s %s", method, path);
        report(C_5XX, what, r);
        resp_free(r);
        return NULL;
    }
    return r;
}

/* Status must be want; otherwise counted. True when it is. Frees r unless keep. */
static bool expect(struct resp *r, long want, const char *what)
{
    if (r == NULL)
        return false;
    if (r->status != want) {
        report(C_UNEXPECTED, what, r);
        return false;
    }
    return true;
}

static bool push_blob(struct client *c, const void *data, size_t len, char *digest)
{
    char path[512], loc[256];
    sha256_str(data, len, digest);
    if (rel_range(&c->seed, 0, 9) < 6) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", c->repo, digest);
        struct resp *r = req(c, "POST", path,
                             (const char *[]){"Content-Type: application/octet-stream", NULL},
                             data, len);
        bool ok = expect(r, 201, "monolithic upload");
        resp_free(r);
        return ok;
    }
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", c->repo);
    struct resp *r = req(c, "POST", path, NULL, NULL, 0);
    if (!expect(r, 202, "upload start") || resp_hdr(r, "Location", loc, sizeof(loc)) == NULL) {
        resp_free(r);
        return false;
    }
    resp_free(r);
    size_t off = 0;
    while (off < len) {
        size_t chunk = (size_t)rel_range(&c->seed, 4096, 65536);
        if (chunk > len - off)
            chunk = len - off;
        char cr[64];
        snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + chunk - 1);
        r = req(c, "PATCH", loc,
                (const char *[]){cr, "Content-Type: application/octet-stream", NULL},
                (const char *)data + off, chunk);
        bool ok = expect(r, 202, "PATCH");
        if (ok && rel_range_offset(r, NULL) != (long long)(off + chunk)) {
            report(C_UNEXPECTED, "PATCH: wrong Range in the answer", r);
            ok = false;
        }
        resp_free(r);
        if (!ok)
            return false;
        off += chunk;
    }
    snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
    r = req(c, "PUT", path, NULL, NULL, 0);
    bool ok = expect(r, 201, "closing PUT");
    resp_free(r);
    return ok;
}

static void op_push(struct client *c)
{
    if (atomic_load(&pool_n) >= MAXIMG || c->nown >= (int)(sizeof(c->own) / sizeof(c->own[0])))
        return;
    struct image *img = calloc(1, sizeof(*img));
    CHECK(img != NULL);
    img->owner = c->id;
    snprintf(img->repo, sizeof(img->repo), "%s", c->repo);
    snprintf(img->tag, sizeof(img->tag), "c%d-%u", c->id, ++c->pushed);
    char cfg[200];
    int cl = snprintf(cfg, sizeof(cfg), "{\"architecture\":\"amd64\",\"os\":\"linux\",\"c\":%d,"
                                        "\"n\":%u,\"nonce\":%llu}",
                      c->id, c->pushed, (unsigned long long)rel_rand(&c->seed));
    img->layer_seed = rel_rand(&c->seed) | 1;
    img->layer_len = rel_range(&c->seed, 0, 19) == 0 ? (size_t)rel_range(&c->seed, 96 << 10, MAX_LAYER)
                                                    : (size_t)rel_range(&c->seed, 1, 96 << 10);
    uint64_t s = img->layer_seed;
    rel_fill(&s, c->buf, img->layer_len);
    if (!push_blob(c, cfg, (size_t)cl, img->cfg) ||
        !push_blob(c, c->buf, img->layer_len, img->layer)) {
        free(img);
        return;
    }
    const char *ld[1] = {img->layer};
    size_t ll[1] = {img->layer_len};
    char body[1024], path[256], dg[80];
    size_t n = rel_manifest(body, sizeof(body), img->cfg, (size_t)cl, ld, ll, 1, img->tag);
    sha256_str(body, n, img->mdigest);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", img->repo, img->tag);
    struct resp *r = req(c, "PUT", path, (const char *[]){"Content-Type: " MT_MANIFEST, NULL},
                         body, n);
    bool ok = expect(r, 201, "manifest PUT");
    if (ok && (resp_hdr(r, "Docker-Content-Digest", dg, sizeof(dg)) == NULL ||
               strcmp(dg, img->mdigest) != 0)) {
        report(C_WRONG, "manifest PUT: Docker-Content-Digest", r);
        ok = false;
    }
    resp_free(r);
    if (!ok) {
        free(img);
        return;
    }
    int i = atomic_fetch_add(&pool_n, 1);
    if (i >= MAXIMG) {
        free(img);
        return;
    }
    atomic_store(&pool[i], img);
    c->own[c->nown++] = i;
    bump(C_PUSH);
}

static struct image *pick(struct client *c)
{
    int n = atomic_load(&pool_n);
    if (n > MAXIMG)
        n = MAXIMG;
    if (n == 0)
        return NULL;
    int i = (int)rel_range(&c->seed, 0, (uint64_t)n - 1);
    return atomic_load(&pool[i]); /* NULL while its slot is being filled */
}

/* A 404 is fine only for an image whose delete has begun. */
static void not_found(struct image *img, const char *what, struct resp *r)
{
    if (atomic_load(&img->state) != LIVE)
        bump(C_404_DELETED);
    else
        report(C_UNEXPECTED, what, r);
}

static void op_pull_blob(struct client *c)
{
    struct image *img = pick(c);
    if (img == NULL)
        return;
    char path[256];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", img->repo, img->layer);
    bool ranged = rel_range(&c->seed, 0, 4) == 0 && img->layer_len > 1;
    size_t first = 0, last = img->layer_len - 1;
    char range[64];
    if (ranged) {
        first = (size_t)rel_range(&c->seed, 0, img->layer_len - 1);
        last = (size_t)rel_range(&c->seed, first, img->layer_len - 1);
        snprintf(range, sizeof(range), "Range: bytes=%zu-%zu", first, last);
    }
    struct resp *r = req(c, "GET", path, ranged ? (const char *[]){range, NULL} : NULL, NULL, 0);
    if (r == NULL)
        return;
    if (r->status == 404) {
        not_found(img, "blob GET", r);
    } else if (r->status == (ranged ? 206 : 200)) {
        if (ranged) {
            uint64_t s = img->layer_seed;
            rel_fill(&s, c->buf, img->layer_len);
            if (r->len != last - first + 1 || memcmp(r->body, c->buf + first, r->len) != 0)
                report(C_WRONG, "ranged blob GET: bytes differ from those pushed", r);
            bump(C_PULL_RANGE);
        } else {
            char got[72];
            sha256_str(r->body, r->len, got);
            if (strcmp(got, img->layer) != 0)
                report(C_WRONG, "blob GET: body does not hash to its digest", r);
            bump(C_PULL_BLOB);
        }
    } else {
        report(C_UNEXPECTED, ranged ? "ranged blob GET" : "blob GET", r);
    }
    resp_free(r);
}

static void op_pull_manifest(struct client *c)
{
    struct image *img = pick(c);
    if (img == NULL)
        return;
    char path[256], got[72], dg[80];
    bool by_tag = rel_range(&c->seed, 0, 1) == 0;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", img->repo,
             by_tag ? img->tag : img->mdigest);
    struct resp *r = req(c, "GET", path, (const char *[]){"Accept: " MT_MANIFEST, NULL}, NULL, 0);
    if (r == NULL)
        return;
    if (r->status == 404) {
        not_found(img, "manifest GET", r);
    } else if (r->status == 200) {
        sha256_str(r->body, r->len, got);
        if (strcmp(got, img->mdigest) != 0 ||
            resp_hdr(r, "Docker-Content-Digest", dg, sizeof(dg)) == NULL ||
            strcmp(dg, img->mdigest) != 0)
            report(C_WRONG, "manifest GET: body or Docker-Content-Digest differs", r);
        bump(C_PULL_MANIFEST);
    } else {
        report(C_UNEXPECTED, "manifest GET", r);
    }
    resp_free(r);
}

static void op_tags(struct client *c)
{
    char path[128];
    snprintf(path, sizeof(path), "/v2/%s/tags/list?n=100000", c->repo);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    if (r != NULL && r->status == 404 && strstr(r->body, "\"NAME_UNKNOWN\"") != NULL) {
        /* fine while this client has no image there (nor perhaps anyone else yet) */
        for (int k = 0; k < c->nown; k++)
            if (atomic_load(&atomic_load(&pool[c->own[k]])->state) == LIVE) {
                report(C_UNEXPECTED, "tags list: NAME_UNKNOWN though this client has an image "
                                     "there", r);
                break;
            }
        bump(C_TAGS);
        resp_free(r);
        return;
    }
    if (!expect(r, 200, "tags list")) {
        resp_free(r);
        return;
    }
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *tags = j != NULL ? json_object_get(j, "tags") : NULL;
    if (tags == NULL || (!json_is_array(tags) && !json_is_null(tags))) {
        report(C_WRONG, "tags list: not {\"tags\":[...]}", r);
    } else {
        /* this client's own images: it neither pushes nor deletes while it lists */
        for (int k = 0; k < c->nown; k++) {
            struct image *img = atomic_load(&pool[c->own[k]]);
            if (atomic_load(&img->state) == DELETING)
                continue; /* a delete that failed half-way (counted): either way */
            bool found = false;
            for (size_t t = 0; t < json_array_size(tags) && !found; t++)
                found = strcmp(json_string_value(json_array_get(tags, t)), img->tag) == 0;
            if (found != (atomic_load(&img->state) == LIVE)) {
                char what[200];
                snprintf(what, sizeof(what), "tags list: tag %s %s", img->tag,
                         found ? "listed after its manifest was deleted" : "missing");
                report(C_WRONG, what, r);
                break;
            }
        }
        bump(C_TAGS);
    }
    json_decref(j);
    resp_free(r);
}

static void op_catalog(struct client *c)
{
    struct resp *r = req(c, "GET", "/v2/_catalog?n=1000", NULL, NULL, 0);
    if (expect(r, 200, "catalog")) {
        if (strstr(r->body, "\"repositories\"") == NULL)
            report(C_WRONG, "catalog: no repositories", r);
        bump(C_CATALOG);
    }
    resp_free(r);
}

static void op_delete(struct client *c)
{
    int live[4096], n = 0;
    for (int k = 0; k < c->nown; k++)
        if (atomic_load(&atomic_load(&pool[c->own[k]])->state) == LIVE)
            live[n++] = c->own[k];
    if (n < 2)
        return;
    struct image *img = atomic_load(&pool[live[rel_range(&c->seed, 0, (uint64_t)n - 1)]]);
    atomic_store(&img->state, DELETING);
    char path[256];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", img->repo, img->mdigest);
    struct resp *r = req(c, "DELETE", path, NULL, NULL, 0);
    bool ok = expect(r, 202, "manifest DELETE");
    resp_free(r);
    const char *blobs[2] = {img->layer, img->cfg};
    for (int b = 0; b < 2 && ok; b++) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", img->repo, blobs[b]);
        r = req(c, "DELETE", path, NULL, NULL, 0);
        ok = expect(r, 202, "blob DELETE");
        resp_free(r);
    }
    if (!ok)
        return;
    atomic_store(&img->state, DELETED);
    const char *gone[3][2] = {{"manifests", img->tag}, {"manifests", img->mdigest},
                              {"blobs", img->layer}};
    for (int g = 0; g < 3; g++) {
        snprintf(path, sizeof(path), "/v2/%s/%s/%s", img->repo, gone[g][0], gone[g][1]);
        r = req(c, "GET", path, NULL, NULL, 0);
        char what[300];
        snprintf(what, sizeof(what), "GET %s after its delete", path);
        expect(r, 404, what);
        resp_free(r);
    }
    bump(C_DELETE);
}

static void *client(void *arg)
{
    struct client *c = arg;
    c->cl = rel_client_new(60);
    c->buf = malloc(MAX_LAYER);
    CHECK(c->buf != NULL);
    snprintf(c->repo, sizeof(c->repo), "load/r%d", c->id % NREPO);
    while (rel_now() < g_deadline) {
        unsigned op = (unsigned)rel_range(&c->seed, 0, 99);
        if (op < 25)
            op_push(c);
        else if (op < 55)
            op_pull_blob(c);
        else if (op < 75)
            op_pull_manifest(c);
        else if (op < 88)
            op_tags(c);
        else if (op < 90)
            op_catalog(c);
        else
            op_delete(c);
    }
    rel_client_free(c->cl); /* closes its connection */
    free(c->buf);
    return NULL;
}

int main(void)
{
    double t0 = rel_now();
    double seconds = 20;
    const char *env = getenv("LOAD_SECONDS");
    if (env != NULL && atof(env) > 0)
        seconds = atof(env);
    S.log_to_file = true;
    srv_start(&S, NULL);
    fprintf(stderr, "server directory %s (log: server.log); %d clients for %.0f s\n", S.dir,
            CLIENTS, seconds);
    int fd_before = rel_fd_count(S.pid);
    CHECK(fd_before > 0);

    static struct client cs[CLIENTS];
    pthread_t th[CLIENTS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512u << 10);
    g_deadline = rel_now() + seconds;
    double start = rel_now();
    for (int i = 0; i < CLIENTS; i++) {
        cs[i].id = i;
        cs[i].seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ (uint64_t)time(NULL);
        CHECK(pthread_create(&th[i], &attr, client, &cs[i]) == 0);
    }
    /* midway: every client connected at once */
    int fd_peak = 0;
    while (rel_now() < g_deadline) {
        int n = rel_fd_count(S.pid);
        if (n > fd_peak)
            fd_peak = n;
        struct timespec tick = {0, 200 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    double elapsed = rel_now() - start;
    long hwm = rel_status_kb(S.pid, "VmHWM"), rss = rel_status_kb(S.pid, "VmRSS");

    /* the clients have closed their connections: the server's descriptors come back */
    int fd_after = rel_fd_count(S.pid);
    double until = rel_now() + 10;
    while (fd_after > fd_before && rel_now() < until) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
        fd_after = rel_fd_count(S.pid);
    }

    long total = atomic_load(&counters[C_OPS]);
    fprintf(stderr, "%ld requests in %.1f s (%.0f/s), slowest %.3f s; server fds %d before, "
                    "%d at peak, %d after; VmHWM %ld KiB, VmRSS %ld KiB; %d images pushed\n",
            total, elapsed, (double)total / elapsed, (double)atomic_load(&max_latency_us) / 1e6,
            fd_before, fd_peak, fd_after, hwm, rss, atomic_load(&pool_n));
    for (int k = 0; k < C_N; k++)
        fprintf(stderr, "  %-30s %ld\n", counter_names[k], atomic_load(&counters[k]));

    int failures = 0;
    for (int k = C_5XX; k <= C_TRANSPORT; k++)
        if (atomic_load(&counters[k]) != 0) {
            fprintf(stderr, "FAIL: %ld %s\n", atomic_load(&counters[k]), counter_names[k]);
            failures++;
        }
    if (atomic_load(&counters[C_PUSH]) < CLIENTS / 2 || atomic_load(&counters[C_DELETE]) == 0 ||
        atomic_load(&counters[C_PULL_BLOB]) == 0) {
        fprintf(stderr, "FAIL: too little work done to judge\n");
        failures++;
    }
    if (fd_peak < fd_before + CLIENTS / 2) {
        fprintf(stderr, "FAIL: the server never held the %d client connections (peak %d fds)\n",
                CLIENTS, fd_peak);
        failures++;
    }
    if (fd_after > fd_before) {
        fprintf(stderr, "FAIL: %d descriptors leaked (%d before the load, %d 10 s after every "
                        "client closed); the server's descriptors now:\n",
                fd_after - fd_before, fd_before, fd_after);
        rel_fd_dump(S.pid, stderr);
        failures++;
    }
    if (hwm < 0) {
        fprintf(stderr, "FAIL: no VmHWM for the server\n");
        failures++;
    } else if (hwm >= RSS_LIMIT_KB) {
        if (rel_sanitized())
            fprintf(stderr, "(sanitizer build: peak RSS %ld KiB not held to %ld KiB)\n", hwm,
                    RSS_LIMIT_KB);
        else {
            fprintf(stderr, "FAIL: peak RSS (VmHWM) %ld KiB, limit %ld KiB\n", hwm, RSS_LIMIT_KB);
            failures++;
        }
    }
    if (rel_fsck(&S) != 0) {
        fprintf(stderr, "FAIL: ocireg fsck after the load\n");
        failures++;
    }
    srv_stop(&S);
    srv_cleanup(&S);
    for (int i = 0; i < atomic_load(&pool_n) && i < MAXIMG; i++)
        free(atomic_load(&pool[i]));
    if (failures > 0)
        FAILF("%d checks failed (above)", failures);
    fprintf(stderr, "load: PASS in %.1f s\n", rel_now() - t0);
    return 0;
}
