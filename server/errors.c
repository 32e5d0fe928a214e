#include "server/errors.h"

struct api_err_info {
    unsigned status;
    const char *code;
    const char *message;
};

static const struct api_err_info table[] = {
#define API_ERR_ROW(name, st, msg) {st, #name, msg},
    API_ERR_MAP(API_ERR_ROW)
#undef API_ERR_ROW
};

unsigned api_err_status(enum api_err e)
{
    return table[e].status;
}

const char *api_err_code(enum api_err e)
{
    /*
     * A JSON 4xx body must carry a code of the spec's table: our finer rows borrow the
     * nearest one (the status and detail still tell them apart). 5xx bodies say UNKNOWN.
     */
    switch (e) {
    case API_MANIFEST_TOO_BIG:
    case API_BLOB_TOO_BIG:
        return "SIZE_INVALID";
    case API_TAG_IMMUTABLE:
        return "TAG_INVALID";
    case API_RANGE_INVALID:
        return "BLOB_UPLOAD_INVALID";
    case API_PAGINATION_NUMBER_INVALID:
    case API_NOT_FOUND:
        return "UNSUPPORTED";
    case API_INSUFFICIENT_STORAGE:
    case API_UNAVAILABLE:
    case API_UNKNOWN:
        return "UNKNOWN";
    default:
        return table[e].code;
    }
}

const char *api_err_message(enum api_err e)
{
    return table[e].message;
}

enum api_err api_err_from_store(enum store_err e)
{
    switch (e) {
    case STORE_ENOSPC:
    case STORE_EMAPFULL:
        return API_INSUFFICIENT_STORAGE;
    case STORE_EBUSY:
    case STORE_EMFILE: /* out of descriptors: passes once connections close */
        return API_UNAVAILABLE;
    default:
        return API_UNKNOWN;
    }
}
