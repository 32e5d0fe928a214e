/*
 * The API router: splits a request path into a route kind, the repository name and the
 * trailing reference. Repository names contain '/', so the path is parsed from the right.
 * Returns slices into the path; nothing is validated here but the shape.
 */
#ifndef OCIREG_SERVER_ROUTE_H
#define OCIREG_SERVER_ROUTE_H

#include <stddef.h>

enum route_kind {
    ROUTE_NONE,         /* not an API path: 404 */
    ROUTE_BASE,         /* /v2/ */
    ROUTE_CATALOG,      /* /v2/_catalog */
    ROUTE_TAGS,         /* /v2/<name>/tags/list */
    ROUTE_MANIFEST,     /* /v2/<name>/manifests/<ref> */
    ROUTE_BLOB,         /* /v2/<name>/blobs/<digest> */
    ROUTE_UPLOAD_START, /* /v2/<name>/blobs/uploads/ */
    ROUTE_UPLOAD,       /* /v2/<name>/blobs/uploads/<id> */
    ROUTE_REFERRERS,    /* /v2/<name>/referrers/<digest> */
    ROUTE_TOKEN,        /* /auth/token */
};

struct route {
    enum route_kind kind;
    const char *name; /* BORROWED slice of the path */
    size_t name_len;
    const char *ref; /* BORROWED slice: tag, digest or upload id */
    size_t ref_len;
};

/* Parses path (NUL-terminated). Always fills *out; kind ROUTE_NONE when nothing matches. */
void route_parse(const char *path, struct route *out);

/* A stable label for metrics and logs. */
const char *route_label(enum route_kind kind);

#endif
