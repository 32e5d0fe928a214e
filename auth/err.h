/* The auth module's one error space. Auth never logs and never speaks HTTP. */
#ifndef OCIREG_AUTH_ERR_H
#define OCIREG_AUTH_ERR_H

#define AUTH_ERR_MAP(X)                                                                            \
    X(OK, "success")                                                                               \
    X(EDENIED, "authentication failed")                                                           \
    X(ENOENT, "no such user")                                                                      \
    X(EEXIST, "already exists")                                                                    \
    X(EINVAL, "invalid argument")                                                                  \
    X(EEXPIRED, "token expired or not yet valid")                                                 \
    X(ENOMEM, "out of memory")                                                                     \
    X(EIO, "storage error")

enum auth_err {
#define AUTH_ERR_ENUM(name, msg) AUTH_##name,
    AUTH_ERR_MAP(AUTH_ERR_ENUM)
#undef AUTH_ERR_ENUM
};

/* Static string, never NULL. */
const char *auth_strerror(enum auth_err err);

#endif
