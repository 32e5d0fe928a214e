#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/log.h"
#include "server/usage.h"

#define XFER_SLOTS_MIN 256

struct xfer_entry {
    char kind;
    char name[NAME_MAX_LEN + DIGEST_STR_MAX + 2]; /* "" = free slot */
    uint64_t ingress, egress, pulls, pushes;
};

struct xfer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct xfer_entry *slots;
    size_t cap, used;
    struct index *idx;
    pthread_t thread;
    bool stop;
    uint64_t last_hour;
};

static uint64_t hash_name(char kind, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (unsigned char)kind;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static struct xfer_entry *slot_for(struct xfer_entry *slots, size_t cap, char kind,
                                   const char *name)
{
    size_t i = (size_t)(hash_name(kind, name) & (cap - 1));
    for (;;) {
        struct xfer_entry *e = &slots[i];
        if (e->name[0] == '\0' || (e->kind == kind && strcmp(e->name, name) == 0))
            return e;
        i = (i + 1) & (cap - 1);
    }
}

/* Doubles the table (mu held); false when out of memory. */
static bool grow(struct xfer *x)
{
    size_t cap = x->cap * 2;
    struct xfer_entry *n = calloc(cap, sizeof(*n));
    if (n == NULL)
        return false;
    for (size_t i = 0; i < x->cap; i++)
        if (x->slots[i].name[0] != '\0')
            *slot_for(n, cap, x->slots[i].kind, x->slots[i].name) = x->slots[i];
    free(x->slots);
    x->slots = n;
    x->cap = cap;
    return true;
}

void xfer_add(struct xfer *x, char kind, const char *name, uint64_t ingress, uint64_t egress,
              uint64_t pulls, uint64_t pushes)
{
    if (x == NULL || name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN + DIGEST_STR_MAX + 1)
        return;
    pthread_mutex_lock(&x->mu);
    if ((x->used + 1) * 4 > x->cap * 3 && !grow(x)) {
        pthread_mutex_unlock(&x->mu);
        log_error("usage: out of memory, %s %s transfer not counted", kind == 'r' ? "repository"
                                                                                 : "user",
                  name);
        return;
    }
    struct xfer_entry *e = slot_for(x->slots, x->cap, kind, name);
    if (e->name[0] == '\0') {
        e->kind = kind;
        snprintf(e->name, sizeof(e->name), "%s", name);
        x->used++;
    }
    e->ingress += ingress;
    e->egress += egress;
    e->pulls += pulls;
    e->pushes += pushes;
    pthread_mutex_unlock(&x->mu);
}

/* Moves the counters to the index: taken out under the lock, written outside it. */
static void flush(struct xfer *x)
{
    pthread_mutex_lock(&x->mu);
    if (x->used == 0) {
        pthread_mutex_unlock(&x->mu);
        return;
    }
    struct xfer_entry *old = x->slots;
    size_t cap = x->cap;
    struct xfer_entry *fresh = calloc(XFER_SLOTS_MIN, sizeof(*fresh));
    if (fresh == NULL) {
        pthread_mutex_unlock(&x->mu);
        return; /* try again next second */
    }
    x->slots = fresh;
    x->cap = XFER_SLOTS_MIN;
    x->used = 0;
    pthread_mutex_unlock(&x->mu);

    size_t n = 0;
    struct index_transfer *batch = calloc(cap, sizeof(*batch));
    for (size_t i = 0; batch != NULL && i < cap; i++) {
        struct xfer_entry *e = &old[i];
        if (e->name[0] == '\0')
            continue;
        batch[n++] = (struct index_transfer){e->kind, e->name, e->ingress, e->egress, e->pulls,
                                             e->pushes};
    }
    enum store_err rc = batch != NULL ? index_transfer_add(x->idx, batch, n) : STORE_ENOMEM;
    if (rc != STORE_OK) {
        log_error("usage: cannot record transfer counters: %s (kept for the next flush)",
                  store_strerror(rc));
        for (size_t i = 0; i < cap; i++)
            if (old[i].name[0] != '\0')
                xfer_add(x, old[i].kind, old[i].name, old[i].ingress, old[i].egress,
                         old[i].pulls, old[i].pushes);
    }
    free(batch);
    free(old);
}

static void snapshot_if_new_hour(struct xfer *x)
{
    uint64_t hour = (uint64_t)time(NULL) / 3600;
    if (hour == x->last_hour)
        return;
    enum store_err rc = index_snapshot_take(x->idx, hour);
    if (rc == STORE_OK)
        x->last_hour = hour;
    else
        log_error("usage: cannot take the hourly snapshot: %s", store_strerror(rc));
}

static void *run(void *arg)
{
    struct xfer *x = arg;
    pthread_mutex_lock(&x->mu);
    while (!x->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&x->cv, &x->mu, &until);
        pthread_mutex_unlock(&x->mu);
        flush(x);
        snapshot_if_new_hour(x);
        pthread_mutex_lock(&x->mu);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

int xfer_start(struct xfer **out, struct index *idx)
{
    struct xfer *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->slots = calloc(XFER_SLOTS_MIN, sizeof(*x->slots));
    x->cap = XFER_SLOTS_MIN;
    x->idx = idx;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    if (x->slots == NULL || pthread_create(&x->thread, NULL, run, x) != 0) {
        free(x->slots);
        free(x);
        return -1;
    }
    *out = x;
    return 0;
}

void xfer_stop(struct xfer *x)
{
    if (x == NULL)
        return;
    pthread_mutex_lock(&x->mu);
    x->stop = true;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->thread, NULL);
    flush(x);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x->slots);
    free(x);
}

uint64_t xfer_acked(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return 0;
    return ti.tcpi_bytes_acked;
}

/* ---- request metrics ---- */

#define N_METHODS 7
#define N_ROUTES (ROUTE_TOKEN + 1)
static const unsigned codes[] = {200, 201, 202, 204, 206, 400, 401, 403, 404,
                                 405, 413, 414, 416, 429, 431, 500, 503, 507};
#define N_CODES (sizeof(codes) / sizeof(codes[0]) + 1) /* last: any other */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,   5,     10};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))
static const char *const method_names[N_METHODS] = {"GET",   "HEAD",   "PUT",  "POST",
                                                    "PATCH", "DELETE", "OTHER"};

struct metrics {
    atomic_ullong requests[N_METHODS][N_ROUTES][N_CODES];
    atomic_ullong hist[N_ROUTES][N_BUCKETS + 1];
    atomic_ullong sum_us[N_ROUTES];
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

void metrics_observe(struct metrics *m, int method, enum route_kind route, unsigned status,
                     double seconds)
{
    if (m == NULL || method < 0 || method >= N_METHODS || (int)route >= (int)N_ROUTES)
        return;
    size_t c = N_CODES - 1;
    for (size_t i = 0; i < N_CODES - 1; i++)
        if (codes[i] == status)
            c = i;
    atomic_fetch_add(&m->requests[method][route][c], 1);
    size_t b = N_BUCKETS;
    for (size_t i = 0; i < N_BUCKETS; i++)
        if (seconds <= buckets[i]) {
            b = i;
            break;
        }
    atomic_fetch_add(&m->hist[route][b], 1);
    atomic_fetch_add(&m->sum_us[route], (unsigned long long)(seconds * 1e6));
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p != NULL && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void metrics_write(struct metrics *m, struct mbuf *b)
{
    mbuf_printf(b, "# HELP ocireg_http_requests_total HTTP requests answered, by method, route "
                   "and status code.\n# TYPE ocireg_http_requests_total counter\n");
    for (int me = 0; me < N_METHODS; me++)
        for (int ro = 0; ro < (int)N_ROUTES; ro++)
            for (size_t c = 0; c < N_CODES; c++) {
                unsigned long long v = atomic_load(&m->requests[me][ro][c]);
                if (v == 0)
                    continue;
                char code[8];
                if (c < N_CODES - 1)
                    snprintf(code, sizeof(code), "%u", codes[c]);
                else
                    snprintf(code, sizeof(code), "other");
                mbuf_printf(b,
                            "ocireg_http_requests_total{method=\"%s\",route=\"%s\",code=\"%s\"} "
                            "%llu\n",
                            method_names[me], route_label((enum route_kind)ro), code, v);
            }
    mbuf_printf(b, "# HELP ocireg_http_request_duration_seconds Time from request headers to "
                   "the response, by route.\n"
                   "# TYPE ocireg_http_request_duration_seconds histogram\n");
    for (int ro = 0; ro < (int)N_ROUTES; ro++) {
        unsigned long long cum = 0;
        for (size_t i = 0; i <= N_BUCKETS; i++)
            cum += atomic_load(&m->hist[ro][i]);
        if (cum == 0)
            continue;
        const char *label = route_label((enum route_kind)ro);
        cum = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += atomic_load(&m->hist[ro][i]);
            mbuf_printf(b, "ocireg_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                        label, buckets[i], cum);
        }
        cum += atomic_load(&m->hist[ro][N_BUCKETS]);
        mbuf_printf(b, "ocireg_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                    label, cum);
        mbuf_printf(b, "ocireg_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
                    (double)atomic_load(&m->sum_us[ro]) / 1e6);
        mbuf_printf(b, "ocireg_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label,
                    cum);
    }
}
