/*
 * One error space for the storage module (libuv style: the enum and its strings come from one
 * table). Storage never logs and never speaks HTTP; the server maps these to statuses.
 * For STORE_EIO the failing call's errno is left in errno.
 */
#ifndef OCIREG_STORAGE_ERR_H
#define OCIREG_STORAGE_ERR_H

#define STORE_ERR_MAP(X)                                                                           \
    X(OK, "success")                                                                               \
    X(ENOENT, "not found")                                                                         \
    X(EEXIST, "already exists")                                                                    \
    X(EINVAL, "invalid argument")                                                                  \
    X(EDIGEST, "digest mismatch")                                                                  \
    X(ERANGE, "offset or range invalid")                                                           \
    X(EBUSY, "resource busy")                                                                      \
    X(ETOOBIG, "too large")                                                                        \
    X(ENOSPC, "no space left on device")                                                           \
    X(EMAPFULL, "index map full")                                                                  \
    X(EQUOTA, "repository quota exceeded")                                                         \
    X(EVERSION, "index written by a newer ocireg")                                                 \
    X(ENOMEM, "out of memory")                                                                     \
    X(EMFILE, "too many open files")                                                               \
    X(EIO, "input/output error")

enum store_err {
#define STORE_ERR_ENUM(name, msg) STORE_##name,
    STORE_ERR_MAP(STORE_ERR_ENUM)
#undef STORE_ERR_ENUM
};

/* Static string, never NULL. */
const char *store_strerror(enum store_err err);

/*
 * Maps an errno from a failed I/O call to STORE_ENOSPC, STORE_EMFILE (out of descriptors),
 * STORE_ENOMEM, STORE_ENOENT or STORE_EIO (errno preserved).
 */
enum store_err store_err_from_errno(int e);

#endif
