/*
 * Manifest parsing: recognises the OCI image manifest and index and the Docker schema 2
 * manifest and manifest list, checks their structure, and lists what they reference.
 * The bytes are never rewritten; this only reads them.
 */
#ifndef OCIREG_STORAGE_MANIFEST_H
#define OCIREG_STORAGE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/digest.h"
#include "storage/err.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

#define MEDIA_TYPE_MAX 255

struct manifest_ref {
    struct digest digest;
    uint64_t size;
    bool is_manifest; /* a child of an index, must be a manifest of the repository */
    bool optional;    /* a non-distributable layer, which may live elsewhere */
};

struct manifest_info {
    char media_type[MEDIA_TYPE_MAX + 1];
    /* artifactType, or for an image manifest without one, its config media type */
    char artifact_type[MEDIA_TYPE_MAX + 1];
    bool is_index;
    bool has_subject;
    struct digest subject;
    size_t nrefs;
    struct manifest_ref *refs; /* OWNED by the struct, freed by manifest_info_free */
};

/*
 * Parses and checks a manifest. content_type is the request's Content-Type (may be NULL).
 * On STORE_OK *out is filled and must be released with manifest_info_free. On STORE_EINVAL
 * *why (static string) says what is wrong; on STORE_ENOENT the media type is not one we
 * accept (also with *why).
 */
enum store_err manifest_parse(const char *content_type, const void *bytes, size_t len,
                              struct manifest_info *out, const char **why);

void manifest_info_free(struct manifest_info *info);

#endif
