/*
 * The one table of API errors: each OCI error code with its HTTP status and message, and
 * the mapping of storage errors onto it.
 */
#ifndef OCIREG_SERVER_ERRORS_H
#define OCIREG_SERVER_ERRORS_H

#include "storage/err.h"

#define API_ERR_MAP(X)                                                                             \
    X(BLOB_UNKNOWN, 404, "blob unknown to registry")                                               \
    X(BLOB_UPLOAD_INVALID, 400, "blob upload invalid")                                             \
    X(BLOB_UPLOAD_UNKNOWN, 404, "blob upload unknown to registry")                                 \
    X(DIGEST_INVALID, 400, "provided digest did not match uploaded content")                      \
    X(MANIFEST_BLOB_UNKNOWN, 404, "manifest references a manifest or blob unknown to registry")   \
    X(MANIFEST_INVALID, 400, "manifest invalid")                                                   \
    X(MANIFEST_UNKNOWN, 404, "manifest unknown to registry")                                       \
    X(NAME_INVALID, 400, "invalid repository name")                                                \
    X(NAME_UNKNOWN, 404, "repository name not known to registry")                                  \
    X(SIZE_INVALID, 400, "provided length did not match content length")                          \
    X(UNAUTHORIZED, 401, "authentication required")                                                \
    X(DENIED, 403, "requested access to the resource is denied")                                  \
    X(UNSUPPORTED, 405, "the operation is unsupported")                                            \
    X(TOOMANYREQUESTS, 429, "too many requests")                                                   \
    X(TAG_INVALID, 400, "manifest tag did not match URI")                                          \
    X(TAG_IMMUTABLE, 409, "tag is immutable")                                                      \
    X(RANGE_INVALID, 416, "invalid content range")                                                 \
    X(PAGINATION_NUMBER_INVALID, 400, "invalid number of results requested")                      \
    X(MANIFEST_TOO_BIG, 413, "manifest exceeds the size limit")                                    \
    X(BLOB_TOO_BIG, 413, "blob exceeds the size limit")                                            \
    X(INSUFFICIENT_STORAGE, 507, "insufficient storage")                                           \
    X(UNAVAILABLE, 503, "service unavailable")                                                     \
    X(NOT_FOUND, 404, "no such API endpoint")                                                    \
    X(UNKNOWN, 500, "unknown error")

enum api_err {
#define API_ERR_ENUM(name, status, msg) API_##name,
    API_ERR_MAP(API_ERR_ENUM)
#undef API_ERR_ENUM
};

unsigned api_err_status(enum api_err e);
const char *api_err_code(enum api_err e);
const char *api_err_message(enum api_err e);

/* For a storage failure with no more specific meaning in context (disk full, I/O). */
enum api_err api_err_from_store(enum store_err e);

#endif
