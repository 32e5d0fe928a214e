#include <errno.h>

#include "storage/err.h"

const char *store_strerror(enum store_err err)
{
    switch (err) {
#define STORE_ERR_CASE(name, msg)                                                                  \
    case STORE_##name:                                                                             \
        return msg;
        STORE_ERR_MAP(STORE_ERR_CASE)
#undef STORE_ERR_CASE
    }
    return "unknown error";
}

enum store_err store_err_from_errno(int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return STORE_ENOSPC;
    if (e == ENOMEM)
        return STORE_ENOMEM;
    if (e == EMFILE || e == ENFILE)
        return STORE_EMFILE;
    if (e == ENOENT)
        return STORE_ENOENT;
    return STORE_EIO;
}
