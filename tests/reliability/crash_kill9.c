/*
 * crash_kill9: SIGKILL the server at random moments while several pushers push images.
 *
 * Environment: CRASH_SEED repeats a run, CRASH_KILLS and CRASH_MAX_MS make a longer or
 * faster soak (defaults 24 kills, pauses of 60..450 ms).
 *
 * PUSHERS threads push images (a unique config, one of a few shared layers by monolithic
 * upload or cross-repository mount, a unique layer in PATCH chunks) into a few repositories,
 * in a loop. The main thread SIGKILLs the server KILLS times at random moments and restarts
 * it on the same root each time. A pusher whose request fails because of a kill resumes its
 * chunked upload from the offset the restarted server reports (GET of the session), or takes
 * a clean 404 BLOB_UPLOAD_UNKNOWN; a transport failure without a kill fails the test.
 *
 * Before some kills the main thread also opens an upload session with half of a blob in it;
 * after one to three restarts it checks the session: the offset it had acknowledged, then the
 * rest and a PUT that commits the right bytes, or (every third session) a PUT with a wrong
 * digest that must be refused with nothing stored; or a clean 404 BLOB_UPLOAD_UNKNOWN.
 *
 * Afterwards every blob that got a 201 pulls back with its digest (rehashed), every manifest
 * that got a 201 pulls back byte for byte under its tag and digest, and `ocireg fsck` exits 0.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/reliability/rel.h"

#define PUSHERS 4
#define KILLS 24 /* CRASH_KILLS overrides (a soak), CRASH_MAX_MS the longest pause */
#define NREPO 3
#define NSHARED 6
#define MAX_SESSIONS 3

static const char *const REPOS[NREPO] = {"crash/alpha", "crash/beta", "crash/team/gamma"};

static struct srv S;
static const char *const EXTRA[] = {NULL};

/* kills counts SIGKILLs sent, restarts the restarts done: the server is up when they match */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_up = PTHREAD_COND_INITIALIZER;
static unsigned g_kills, g_restarts, g_port;
static atomic_bool g_stop;

static unsigned char *shared_data[NSHARED];
static size_t shared_len[NSHARED];
static char shared_digest[NSHARED][72];

/* What the server acknowledged. */
struct blobrec {
    char repo[24];
    char digest[72];
};
struct imgrec {
    char repo[24];
    char tag[24];
    char digest[72];
    char blobs[3][72];
    char *body;
    size_t len;
};
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static struct blobrec *g_blobs;
static size_t g_nblobs, g_capblobs;
static struct imgrec *g_imgs;
static size_t g_nimgs, g_capimgs;

static atomic_uint st_resumed, st_refused, st_ambiguous, st_killed_requests, st_mounts,
    st_put_after_kill;

static void record_blob(const char *repo, const char *digest)
{
    pthread_mutex_lock(&rec_mu);
    if (g_nblobs == g_capblobs) {
        g_capblobs = g_capblobs ? 2 * g_capblobs : 256;
        g_blobs = realloc(g_blobs, g_capblobs * sizeof(*g_blobs));
        CHECK(g_blobs != NULL);
    }
    struct blobrec *b = &g_blobs[g_nblobs++];
    snprintf(b->repo, sizeof(b->repo), "%s", repo);
    snprintf(b->digest, sizeof(b->digest), "%s", digest);
    pthread_mutex_unlock(&rec_mu);
}

static void record_image(const struct imgrec *img)
{
    pthread_mutex_lock(&rec_mu);
    if (g_nimgs == g_capimgs) {
        g_capimgs = g_capimgs ? 2 * g_capimgs : 64;
        g_imgs = realloc(g_imgs, g_capimgs * sizeof(*g_imgs));
        CHECK(g_imgs != NULL);
    }
    g_imgs[g_nimgs++] = *img;
    pthread_mutex_unlock(&rec_mu);
}

/* Waits until the server is up; its port, and the kill count now (into *gen). */
static unsigned wait_up(unsigned *gen)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 120;
    pthread_mutex_lock(&g_mu);
    while (g_restarts != g_kills)
        if (pthread_cond_timedwait(&g_up, &g_mu, &dl) != 0)
            FAILF("the server was not restarted within 120 s");
    unsigned port = g_port;
    *gen = g_kills;
    pthread_mutex_unlock(&g_mu);
    return port;
}

static bool killed_since(unsigned gen)
{
    pthread_mutex_lock(&g_mu);
    bool k = g_kills != gen;
    pthread_mutex_unlock(&g_mu);
    return k;
}

struct worker {
    int id;
    void *cl;
    uint64_t seed;
    unsigned char *buf;
};

/* One request once the server is up. A transport failure is allowed only when a SIGKILL
 * was sent since the request started: then *killed is set. */
static struct resp *req(struct worker *w, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len, bool *killed)
{
    unsigned gen;
    unsigned port = wait_up(&gen);
    int err = 0;
    struct resp *r = rel_http(w->cl, port, method, path, hdrs, body, len, &err);
    *killed = false;
    if (r->status == 0) {
        if (!killed_since(gen))
            FAILF("%s %s: %s, and the server was not killed", method, path,
                  rel_curl_strerror(err));
        *killed = true;
        atomic_fetch_add(&st_killed_requests, 1);
    }
    return r;
}

static void fail_resp(const char *what, const struct resp *r)
{
    fprintf(stderr, "%s: unexpected %ld\nheaders:\n%s\nbody: %.1000s\n", what, r->status,
            r->headers, r->body);
    abort();
}

/* Monolithic POST ?digest=. True when acknowledged (201). */
static bool push_mono(struct worker *w, const char *repo, const void *data, size_t len,
                      char *digest)
{
    char path[256];
    sha256_str(data, len, digest);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, digest);
    bool killed;
    struct resp *r = req(w, "POST", path,
                         (const char *[]){"Content-Type: application/octet-stream", NULL}, data,
                         len, &killed);
    bool ok = false;
    if (!killed) {
        if (r->status != 201)
            fail_resp("monolithic upload", r);
        record_blob(repo, digest);
        ok = true;
    }
    resp_free(r);
    return ok;
}

/* A shared layer: monolithic upload, or a mount from another repository (which may hold it
 * or not: then the session the server opens gets the bytes in one PUT). */
static bool push_shared(struct worker *w, const char *repo, int k)
{
    if (rel_range(&w->seed, 0, 1) == 0) {
        char d[72];
        return push_mono(w, repo, shared_data[k], shared_len[k], d);
    }
    const char *from = REPOS[rel_range(&w->seed, 0, NREPO - 1)];
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo,
             shared_digest[k], from);
    bool killed;
    struct resp *r = req(w, "POST", path, NULL, NULL, 0, &killed);
    if (killed) {
        resp_free(r);
        return false;
    }
    if (r->status == 201) {
        atomic_fetch_add(&st_mounts, 1);
        record_blob(repo, shared_digest[k]);
        resp_free(r);
        return true;
    }
    char loc[256];
    if (r->status != 202 || resp_hdr(r, "Location", loc, sizeof(loc)) == NULL)
        fail_resp("mount", r);
    resp_free(r);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, shared_digest[k]);
    r = req(w, "PUT", path, (const char *[]){"Content-Type: application/octet-stream", NULL},
            shared_data[k], shared_len[k], &killed);
    bool ok = false;
    if (!killed) {
        if (r->status != 201)
            fail_resp("PUT after a mount that was not possible", r);
        record_blob(repo, shared_digest[k]);
        ok = true;
    }
    resp_free(r);
    return ok;
}

/* POST, PATCH chunks, PUT. After a kill the session is resumed from the offset the
 * restarted server reports. True when the blob was committed. */
static bool push_chunked(struct worker *w, const char *repo, const unsigned char *data,
                         size_t len, char *digest)
{
    sha256_str(data, len, digest);
    char path[512], loc[256];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    bool killed;
    struct resp *r = req(w, "POST", path, NULL, NULL, 0, &killed);
    if (killed) {
        resp_free(r);
        return false;
    }
    if (r->status != 202 || resp_hdr(r, "Location", loc, sizeof(loc)) == NULL)
        fail_resp("upload start", r);
    resp_free(r);
    size_t off = 0, acked = 0, sent_end = 0;
    for (;;) {
        if (off < len) {
            size_t chunk = (size_t)rel_range(&w->seed, 16 << 10, 192 << 10);
            if (chunk > len - off)
                chunk = len - off;
            char cr[80];
            snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + chunk - 1);
            sent_end = off + chunk;
            r = req(w, "PATCH", loc,
                    (const char *[]){cr, "Content-Type: application/octet-stream", NULL},
                    data + off, chunk, &killed);
            if (!killed) {
                if (r->status != 202 || rel_range_offset(r, NULL) != (long long)(off + chunk))
                    fail_resp("PATCH", r);
                off += chunk;
                acked = off;
                resp_free(r);
                continue;
            }
            resp_free(r);
        } else {
            snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
            r = req(w, "PUT", path, NULL, NULL, 0, &killed);
            if (!killed) {
                char dg[80];
                if (r->status == 400 && strstr(r->body, "DIGEST_INVALID") != NULL)
                    FAILF("upload %s of %zu bytes: after resuming it, the server refused the "
                          "right digest: its session holds other bytes than were sent",
                          loc, len);
                if (r->status != 201 || resp_hdr(r, "Docker-Content-Digest", dg, sizeof(dg)) == NULL ||
                    strcmp(dg, digest) != 0)
                    fail_resp("closing PUT", r);
                resp_free(r);
                record_blob(repo, digest);
                return true;
            }
            resp_free(r);
        }
        /* a kill: ask the restarted server where the session stands */
        do {
            r = req(w, "GET", loc, NULL, NULL, 0, &killed);
            if (killed)
                resp_free(r);
        } while (killed);
        if (r->status == 404) {
            char code[64];
            if (strcmp(rel_error_code(r, code, sizeof(code)), "BLOB_UPLOAD_UNKNOWN") != 0)
                fail_resp("status of a session after a kill", r);
            resp_free(r);
            if (off == len) {
                /* the closing PUT was in flight: it committed, or the session was dropped */
                snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
                do {
                    r = req(w, "HEAD", path, NULL, NULL, 0, &killed);
                    if (killed)
                        resp_free(r);
                } while (killed);
                bool there = r->status == 200;
                if (r->status != 200 && r->status != 404)
                    fail_resp("HEAD of a blob whose PUT a kill interrupted", r);
                resp_free(r);
                if (there) {
                    atomic_fetch_add(&st_put_after_kill, 1);
                    record_blob(repo, digest);
                    return true;
                }
            }
            atomic_fetch_add(&st_refused, 1);
            return false;
        }
        bool amb;
        long long so = rel_range_offset(r, &amb);
        if (r->status != 204 || so < 0)
            fail_resp("status of a session after a kill", r);
        resp_free(r);
        if (amb && acked == 0) {
            /* "0-0": 0 or 1 byte; not worth guessing */
            atomic_fetch_add(&st_ambiguous, 1);
            return false;
        }
        if (so < (long long)acked)
            FAILF("upload %s: after a restart the server reports offset %lld, but it had "
                  "acknowledged %zu bytes",
                  loc, so, acked);
        if (so > (long long)sent_end)
            FAILF("upload %s: after a restart the server reports offset %lld, but only %zu "
                  "bytes were ever sent",
                  loc, so, sent_end);
        off = (size_t)so;
        atomic_fetch_add(&st_resumed, 1);
    }
}

static void *pusher(void *arg)
{
    struct worker *w = arg;
    w->cl = rel_client_new(30);
    w->buf = malloc(512 << 10);
    CHECK(w->buf != NULL);
    unsigned n = 0;
    while (!atomic_load(&g_stop)) {
        n++;
        const char *repo = REPOS[rel_range(&w->seed, 0, NREPO - 1)];
        struct imgrec img = {.len = 0};
        snprintf(img.repo, sizeof(img.repo), "%s", repo);
        snprintf(img.tag, sizeof(img.tag), "w%d-%u", w->id, n);
        char cfg[256];
        int cl = snprintf(cfg, sizeof(cfg),
                          "{\"architecture\":\"amd64\",\"os\":\"linux\",\"worker\":%d,\"n\":%u,"
                          "\"nonce\":\"%016llx\"}",
                          w->id, n, (unsigned long long)rel_rand(&w->seed));
        if (!push_mono(w, repo, cfg, (size_t)cl, img.blobs[0]))
            continue;
        int k = (int)rel_range(&w->seed, 0, NSHARED - 1);
        if (!push_shared(w, repo, k))
            continue;
        snprintf(img.blobs[1], sizeof(img.blobs[1]), "%s", shared_digest[k]);
        size_t ulen = (size_t)rel_range(&w->seed, 1, 512 << 10);
        rel_fill(&w->seed, w->buf, ulen);
        if (!push_chunked(w, repo, w->buf, ulen, img.blobs[2]))
            continue;
        const char *ld[2] = {img.blobs[1], img.blobs[2]};
        size_t ll[2] = {shared_len[k], ulen};
        char body[2048];
        img.len = rel_manifest(body, sizeof(body), img.blobs[0], (size_t)cl, ld, ll, 2, img.tag);
        sha256_str(body, img.len, img.digest);
        char path[256];
        snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, img.tag);
        bool killed;
        struct resp *r = req(w, "PUT", path, (const char *[]){"Content-Type: " MT_MANIFEST, NULL},
                             body, img.len, &killed);
        if (killed) {
            resp_free(r);
            continue;
        }
        char dg[80];
        if (r->status != 201 || resp_hdr(r, "Docker-Content-Digest", dg, sizeof(dg)) == NULL ||
            strcmp(dg, img.digest) != 0)
            fail_resp("manifest PUT (every blob it names was acknowledged)", r);
        resp_free(r);
        img.body = malloc(img.len);
        CHECK(img.body != NULL);
        memcpy(img.body, body, img.len);
        record_image(&img);
    }
    free(w->buf);
    rel_client_free(w->cl);
    return NULL;
}

/* ---- sessions the main thread opens before a kill and checks after restarts ---- */

struct session {
    bool active;
    char repo[24];
    char loc[256];
    unsigned char *data;
    size_t len, acked;
    char digest[72];
    unsigned check_at; /* kill count from which it is checked */
    bool wrong_digest;
};

static struct session sessions[MAX_SESSIONS];
static unsigned n_sessions, n_continued, n_gone, n_wrong_refused;
static void *main_cl;

/* Main-thread requests: no kill can happen meanwhile, so every one must get an answer. */
static struct resp *mreq(const char *method, const char *path, const char *const *hdrs,
                         const void *body, size_t len)
{
    int err = 0;
    struct resp *r = rel_http(main_cl, S.port, method, path, hdrs, body, len, &err);
    if (r->status == 0)
        FAILF("%s %s: %s", method, path, rel_curl_strerror(err));
    return r;
}

static void session_open(uint64_t *seed)
{
    struct session *s = NULL;
    for (int i = 0; i < MAX_SESSIONS && s == NULL; i++)
        if (!sessions[i].active)
            s = &sessions[i];
    if (s == NULL)
        return;
    memset(s, 0, sizeof(*s));
    snprintf(s->repo, sizeof(s->repo), "%s", REPOS[n_sessions % NREPO]);
    s->len = (size_t)rel_range(seed, 64 << 10, 400 << 10);
    s->data = malloc(s->len);
    CHECK(s->data != NULL);
    rel_fill(seed, s->data, s->len);
    sha256_str(s->data, s->len, s->digest);
    s->wrong_digest = n_sessions % 3 == 2;
    n_sessions++;
    char path[256];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", s->repo);
    struct resp *r = mreq("POST", path, NULL, NULL, 0);
    if (r->status != 202 || resp_hdr(r, "Location", s->loc, sizeof(s->loc)) == NULL)
        fail_resp("session start", r);
    resp_free(r);
    s->acked = s->len / 2;
    char cr[80];
    snprintf(cr, sizeof(cr), "Content-Range: 0-%zu", s->acked - 1);
    r = mreq("PATCH", s->loc, (const char *[]){cr, "Content-Type: application/octet-stream", NULL},
             s->data, s->acked);
    if (r->status != 202 || rel_range_offset(r, NULL) != (long long)s->acked)
        fail_resp("session first chunk", r);
    resp_free(r);
    s->check_at = g_kills + 1 + (unsigned)rel_range(seed, 0, 2);
    s->active = true;
}

static long status_of(const char *method, const char *path)
{
    struct resp *r = mreq(method, path, NULL, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

static void session_check(struct session *s)
{
    char path[512];
    s->active = false;
    struct resp *r = mreq("GET", s->loc, NULL, NULL, 0);
    if (r->status == 404) {
        char code[64];
        if (strcmp(rel_error_code(r, code, sizeof(code)), "BLOB_UPLOAD_UNKNOWN") != 0)
            fail_resp("session status after restarts", r);
        resp_free(r);
        n_gone++;
        free(s->data);
        return;
    }
    if (r->status != 204 || rel_range_offset(r, NULL) != (long long)s->acked) {
        fprintf(stderr, "session %s: %zu bytes acknowledged before the kill\n", s->loc, s->acked);
        fail_resp("session status after restarts", r);
    }
    resp_free(r);
    char cr[80];
    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", s->acked, s->len - 1);
    r = mreq("PATCH", s->loc, (const char *[]){cr, "Content-Type: application/octet-stream", NULL},
             s->data + s->acked, s->len - s->acked);
    if (r->status != 202 || rel_range_offset(r, NULL) != (long long)s->len)
        fail_resp("PATCH of the rest of a session after restarts", r);
    resp_free(r);
    if (s->wrong_digest) {
        /* the digest of other bytes: refused, and nothing stored under either digest */
        char other[72];
        s->data[0] ^= 0xff;
        sha256_str(s->data, s->len, other);
        s->data[0] ^= 0xff;
        snprintf(path, sizeof(path), "%s?digest=%s", s->loc, other);
        r = mreq("PUT", path, NULL, NULL, 0);
        if (r->status != 400 || strstr(r->body, "DIGEST_INVALID") == NULL)
            fail_resp("PUT with a wrong digest after restarts", r);
        resp_free(r);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", s->repo, other);
        CHECK_INT(status_of("HEAD", path), ==, 404);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", s->repo, s->digest);
        CHECK_INT(status_of("HEAD", path), ==, 404);
        n_wrong_refused++;
    } else {
        snprintf(path, sizeof(path), "%s?digest=%s", s->loc, s->digest);
        r = mreq("PUT", path, NULL, NULL, 0);
        if (r->status != 201)
            fail_resp("closing PUT of a session after restarts", r);
        resp_free(r);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", s->repo, s->digest);
        r = mreq("GET", path, NULL, NULL, 0);
        char got[72];
        sha256_str(r->body, r->len, got);
        if (r->status != 200 || r->len != s->len || strcmp(got, s->digest) != 0)
            FAILF("blob of a resumed session: status %ld, %zu bytes (want %zu), %s (want %s)",
                  r->status, r->len, s->len, got, s->digest);
        resp_free(r);
        record_blob(s->repo, s->digest);
        n_continued++;
    }
    free(s->data);
}

/* ---- the end: everything acknowledged reads back ---- */

static int cmp_blob(const void *a, const void *b)
{
    const struct blobrec *x = a, *y = b;
    int c = strcmp(x->repo, y->repo);
    return c != 0 ? c : strcmp(x->digest, y->digest);
}

static void verify_all(void)
{
    qsort(g_blobs, g_nblobs, sizeof(*g_blobs), cmp_blob);
    size_t distinct = 0;
    for (size_t i = 0; i < g_nblobs; i++) {
        if (i > 0 && cmp_blob(&g_blobs[i - 1], &g_blobs[i]) == 0)
            continue;
        distinct++;
        char path[256], got[72];
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", g_blobs[i].repo, g_blobs[i].digest);
        struct resp *r = mreq("GET", path, NULL, NULL, 0);
        sha256_str(r->body, r->len, got);
        if (r->status != 200 || strcmp(got, g_blobs[i].digest) != 0)
            FAILF("acknowledged blob %s of %s: status %ld, %zu bytes hashing to %s",
                  g_blobs[i].digest, g_blobs[i].repo, r->status, r->len, got);
        resp_free(r);
    }
    for (size_t i = 0; i < g_nimgs; i++) {
        struct imgrec *m = &g_imgs[i];
        for (int b = 0; b < 3; b++) {
            struct blobrec key;
            snprintf(key.repo, sizeof(key.repo), "%s", m->repo);
            snprintf(key.digest, sizeof(key.digest), "%s", m->blobs[b]);
            CHECK(bsearch(&key, g_blobs, g_nblobs, sizeof(*g_blobs), cmp_blob) != NULL);
        }
        const char *refs[2] = {m->tag, m->digest};
        for (int k = 0; k < 2; k++) {
            char path[256], got[72], dg[80];
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", m->repo, refs[k]);
            struct resp *r = mreq("GET", path, (const char *[]){"Accept: " MT_MANIFEST, NULL},
                                  NULL, 0);
            sha256_str(r->body, r->len, got);
            if (r->status != 200 || r->len != m->len || memcmp(r->body, m->body, m->len) != 0 ||
                strcmp(got, m->digest) != 0 ||
                resp_hdr(r, "Docker-Content-Digest", dg, sizeof(dg)) == NULL ||
                strcmp(dg, m->digest) != 0)
                FAILF("acknowledged manifest %s:%s (%s): status %ld, %zu bytes hashing to %s",
                      m->repo, refs[k], m->digest, r->status, r->len, got);
            resp_free(r);
        }
        free(m->body);
    }
    fprintf(stderr, "verified %zu acknowledged blobs (%zu distinct) and %zu images\n", g_nblobs,
            distinct, g_nimgs);
}

int main(void)
{
    double t0 = rel_now();
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (getenv("CRASH_SEED") != NULL)
        seed = strtoull(getenv("CRASH_SEED"), NULL, 0);
    if (seed == 0)
        seed = 1;
    fprintf(stderr, "crash_kill9: seed %llu (CRASH_SEED=... repeats it)\n",
            (unsigned long long)seed);
    uint64_t fixed = 0x5eed5eed;
    for (int k = 0; k < NSHARED; k++) {
        shared_len[k] = (size_t)rel_range(&fixed, 32 << 10, 256 << 10);
        shared_data[k] = malloc(shared_len[k]);
        CHECK(shared_data[k] != NULL);
        rel_fill(&fixed, shared_data[k], shared_len[k]);
        sha256_str(shared_data[k], shared_len[k], shared_digest[k]);
    }
    S.log_to_file = true;
    srv_start(&S, EXTRA);
    fprintf(stderr, "server directory %s (log: server.log)\n", S.dir);
    g_port = S.port;
    main_cl = rel_client_new(30);

    pthread_t th[PUSHERS];
    struct worker ws[PUSHERS];
    for (int i = 0; i < PUSHERS; i++) {
        ws[i] = (struct worker){.id = i, .seed = seed + 7919u * (uint64_t)(i + 1)};
        CHECK(pthread_create(&th[i], NULL, pusher, &ws[i]) == 0);
    }
    int kills = getenv("CRASH_KILLS") != NULL ? atoi(getenv("CRASH_KILLS")) : KILLS;
    long max_ms = getenv("CRASH_MAX_MS") != NULL ? atol(getenv("CRASH_MAX_MS")) : 450;
    long min_ms = max_ms < 60 ? 0 : 60;
    for (int k = 0; k < kills; k++) {
        /* a random moment: the pushers are somewhere in their uploads */
        long ms = (long)rel_range(&seed, (uint64_t)min_ms, (uint64_t)max_ms);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (rel_range(&seed, 0, 1) == 0)
            session_open(&seed);
        pthread_mutex_lock(&g_mu);
        g_kills++;
        pthread_mutex_unlock(&g_mu);
        srv_kill(&S);
        srv_restart(&S, EXTRA);
        pthread_mutex_lock(&g_mu);
        g_port = S.port;
        g_restarts++;
        pthread_cond_broadcast(&g_up);
        pthread_mutex_unlock(&g_mu);
        for (int i = 0; i < MAX_SESSIONS; i++)
            if (sessions[i].active && sessions[i].check_at <= g_kills)
                session_check(&sessions[i]);
    }
    atomic_store(&g_stop, true);
    for (int i = 0; i < PUSHERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].active)
            session_check(&sessions[i]);
    fprintf(stderr,
            "%u kills in %.1f s: %zu images acknowledged; pushers: %u requests cut by a kill, "
            "%u sessions resumed, %u refused (404), %u left at an ambiguous 0-0, %u PUTs found "
            "committed after a kill, %u mounts; main: %u sessions, %u continued, %u refused "
            "(404), %u wrong digests refused\n",
            g_kills, rel_now() - t0, g_nimgs, atomic_load(&st_killed_requests),
            atomic_load(&st_resumed), atomic_load(&st_refused), atomic_load(&st_ambiguous),
            atomic_load(&st_put_after_kill), atomic_load(&st_mounts), n_sessions, n_continued,
            n_gone, n_wrong_refused);
    CHECK_INT(g_kills, >=, 20);
    CHECK_INT(g_nimgs, >=, 20);

    verify_all();
    int fsck = rel_fsck(&S);
    rel_client_free(main_cl);
    srv_stop(&S);
    srv_cleanup(&S);
    if (fsck != 0)
        FAILF("ocireg fsck exited %d after the kills (want 0: no partial or wrong blob, no "
              "leftover, counts consistent)", fsck);
    for (int k = 0; k < NSHARED; k++)
        free(shared_data[k]);
    free(g_blobs);
    free(g_imgs);
    fprintf(stderr, "crash_kill9: PASS in %.1f s\n", rel_now() - t0);
    return 0;
}
