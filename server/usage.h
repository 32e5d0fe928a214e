/*
 * Transfer accounting: per repository and per user counters of ingress and egress bytes,
 * pulls and pushes, aggregated in memory and added to the index at least once a second and
 * at shutdown (a kill -9 loses at most the last second); hourly snapshots for usage over a
 * window. Request metrics for /metrics live here too.
 */
#ifndef OCIREG_SERVER_USAGE_H
#define OCIREG_SERVER_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/route.h"
#include "storage/index.h"

struct xfer;

/* Starts the flush thread. OWNED: xfer_stop flushes and frees. */
int xfer_start(struct xfer **out, struct index *idx);
void xfer_stop(struct xfer *x);

/* kind 'r' (repository) or 'u' (user); name is copied. */
void xfer_add(struct xfer *x, char kind, const char *name, uint64_t ingress, uint64_t egress,
              uint64_t pulls, uint64_t pushes);

/* Bytes of a response body the peer acknowledged on socket fd so far (TCP_INFO). */
uint64_t xfer_acked(int fd);

/* ---- request metrics ---- */

struct metrics;
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* method index as enum method in http.h, route, status, seconds taken */
void metrics_observe(struct metrics *m, int method, enum route_kind route, unsigned status,
                     double seconds);

/* A growing text buffer; failed is set (and stays) when an append could not be made. */
struct mbuf {
    char *p;
    size_t len, cap;
    bool failed;
};
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the request metrics in Prometheus text format. */
void metrics_write(struct metrics *m, struct mbuf *b);

#endif
