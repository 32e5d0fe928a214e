/*
 * Fuzzes manifest_parse. The input is "<Content-Type>\n<body>": the bytes before the first
 * newline are the request's Content-Type (NUL-terminated); with no newline at all the whole
 * input is the body and there is no Content-Type (NULL). The body is an exact-size copy, as
 * upload data is not NUL-terminated.
 */
#include <stdbool.h>

#include "storage/manifest.h"
#include "tests/fuzz/fuzz.h"

/* Longer Content-Types are refused before the body is looked at; keep room to reach that. */
#define CT_SCAN_MAX 512

static bool known(const char *mt)
{
    return strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_OCI_INDEX) == 0 ||
           strcmp(mt, MT_DOCKER_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < CT_SCAN_MAX ? size : CT_SCAN_MAX);
    char *ct = NULL;
    const uint8_t *body = data;
    size_t blen = size;
    if (nl != NULL) {
        ct = fuzz_strdup(data, (size_t)(nl - data));
        body = nl + 1;
        blen = size - (size_t)(nl - data) - 1;
    }
    char *bytes = fuzz_memdup(body, blen);

    struct manifest_info info;
    memset(&info, 0xa5, sizeof(info)); /* written only on success */
    const char *why = NULL;
    enum store_err rc = manifest_parse(ct, bytes, blen, &info, &why);
    if (rc == STORE_OK) {
        FUZZ_CHECK(why == NULL);
        FUZZ_CHECK(strlen(info.media_type) <= MEDIA_TYPE_MAX && known(info.media_type));
        FUZZ_CHECK(strlen(info.artifact_type) <= MEDIA_TYPE_MAX);
        FUZZ_CHECK(info.is_index == (strcmp(info.media_type, MT_OCI_INDEX) == 0 ||
                                     strcmp(info.media_type, MT_DOCKER_LIST) == 0));
        /* an image manifest always references its config first */
        if (!info.is_index)
            FUZZ_CHECK(info.nrefs >= 1 && !info.refs[0].is_manifest);
        for (size_t i = 0; i < info.nrefs; i++) {
            const struct manifest_ref *r = &info.refs[i];
            struct digest again;
            FUZZ_CHECK(r->is_manifest == info.is_index);
            FUZZ_CHECK(!(r->is_manifest && r->optional));
            FUZZ_CHECK(digest_parse(&again, r->digest.str, strlen(r->digest.str)) == STORE_OK &&
                       digest_equal(&again, &r->digest));
        }
        if (info.has_subject)
            FUZZ_CHECK(strlen(info.subject.str) > 7);
        manifest_info_free(&info);
        FUZZ_CHECK(info.refs == NULL && info.nrefs == 0);
    } else {
        FUZZ_CHECK(rc == STORE_EINVAL || rc == STORE_ENOENT || rc == STORE_ENOMEM);
        FUZZ_CHECK(why != NULL || rc == STORE_ENOMEM);
    }
    free(bytes);
    free(ct);
    return 0;
}
