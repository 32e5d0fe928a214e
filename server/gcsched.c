/* serve --gc-interval: the collector on a schedule, inside the server, with its metrics. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/http.h"
#include "server/log.h"
#include "storage/gc.h"

struct gc_sched {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct server *srv;
    /* figures for /metrics */
    uint64_t runs, failures, removed_bytes, removed_blobs, last_run;
    double last_duration;
};

static void *gc_loop(void *arg)
{
    struct gc_sched *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += g->srv->cfg.gc_interval;
        while (!g->stop && pthread_cond_timedwait(&g->cv, &g->mu, &until) == 0) {
        }
        if (g->stop)
            break;
        pthread_mutex_unlock(&g->mu);
        struct gc_options opt = {.delete_untagged = g->srv->cfg.gc_delete_untagged,
                                 .grace = g->srv->cfg.gc_grace,
                                 .upload_max_age = g->srv->cfg.gc_upload_max_age,
                                 .now = (uint64_t)time(NULL)};
        struct gc_report r;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        enum store_err rc = gc_run(g->srv->idx, g->srv->bs, &opt, &r, NULL, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_mutex_lock(&g->mu);
        g->runs++;
        g->last_run = (uint64_t)time(NULL);
        g->last_duration = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (rc != STORE_OK) {
            g->failures++;
            log_error("gc: %s", store_strerror(rc));
            continue;
        }
        g->removed_bytes += r.blob_bytes_removed + r.orphan_bytes_removed;
        g->removed_blobs += r.blobs_removed;
        log_info("gc: %llu manifests and %llu blobs (%llu bytes) removed, %llu uploads and "
                 "%llu orphan files cleared in %.3f s",
                 (unsigned long long)r.manifests_removed, (unsigned long long)r.blobs_removed,
                 (unsigned long long)r.blob_bytes_removed, (unsigned long long)r.uploads_removed,
                 (unsigned long long)r.orphans_removed, g->last_duration);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int gc_sched_start(struct server *srv)
{
    if (srv->cfg.gc_interval == 0)
        return 0;
    struct gc_sched *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -1;
    g->srv = srv;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (pthread_create(&g->thread, NULL, gc_loop, g) != 0) {
        free(g);
        return -1;
    }
    srv->gc = g;
    return 0;
}

void gc_sched_stop(struct server *srv)
{
    struct gc_sched *g = srv->gc;
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    srv->gc = NULL;
}

void gc_sched_metrics(struct server *srv, struct mbuf *b)
{
    struct gc_sched *g = srv->gc;
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    mbuf_printf(b,
                "# HELP ocireg_gc_runs_total Scheduled garbage collections run.\n"
                "# TYPE ocireg_gc_runs_total counter\nocireg_gc_runs_total %llu\n"
                "# HELP ocireg_gc_failures_total Scheduled garbage collections that failed.\n"
                "# TYPE ocireg_gc_failures_total counter\nocireg_gc_failures_total %llu\n"
                "# HELP ocireg_gc_removed_bytes_total Bytes of blob files removed.\n"
                "# TYPE ocireg_gc_removed_bytes_total counter\n"
                "ocireg_gc_removed_bytes_total %llu\n"
                "# HELP ocireg_gc_removed_blobs_total Blob files removed.\n"
                "# TYPE ocireg_gc_removed_blobs_total counter\nocireg_gc_removed_blobs_total %llu\n"
                "# HELP ocireg_gc_last_run_timestamp_seconds When the last collection ended.\n"
                "# TYPE ocireg_gc_last_run_timestamp_seconds gauge\n"
                "ocireg_gc_last_run_timestamp_seconds %llu\n"
                "# HELP ocireg_gc_last_duration_seconds How long the last collection took.\n"
                "# TYPE ocireg_gc_last_duration_seconds gauge\n"
                "ocireg_gc_last_duration_seconds %.6f\n",
                (unsigned long long)g->runs, (unsigned long long)g->failures,
                (unsigned long long)g->removed_bytes, (unsigned long long)g->removed_blobs,
                (unsigned long long)g->last_run, g->last_duration);
    pthread_mutex_unlock(&g->mu);
}
