/*
 * Export and import of repositories as an OCI image layout in a zstd-compressed tar
 * (oci-layout, index.json with org.opencontainers.image.ref.name "repo:tag", blobs/), and
 * hot backups. Export streams with constant memory; import stages and verifies every blob
 * before it stores any of them, so a corrupt archive leaves nothing behind.
 */
#ifndef OCIREG_STORAGE_ARCHIVE_H
#define OCIREG_STORAGE_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/blobstore.h"
#include "storage/index.h"

struct archive_ref {
    char repo[NAME_MAX_LEN + 1];
    char tag[TAG_MAX_LEN + 1]; /* "" = every tag of repo */
};

struct archive_stats {
    uint64_t images, manifests, blobs, bytes;
};

typedef void (*archive_progress_cb)(uint64_t bytes, void *arg);

/*
 * Writes the images named by refs (n == 0: every tag of every repository) to out_fd.
 * threads: zstd worker threads (0: single-threaded). err (errcap) says what failed.
 */
enum store_err archive_export(struct index *idx, struct blobstore *bs,
                              const struct archive_ref *refs, size_t n, int out_fd,
                              int threads, struct archive_stats *stats,
                              archive_progress_cb progress, void *arg, char *err, size_t errcap);

/*
 * Reads an archive from in_fd into the registry; prefix (may be NULL) is put before every
 * repository name ("PREFIX/repo"). Every blob is verified against its digest, every image
 * against what it references, before anything is stored. Importing twice changes nothing.
 * Work and memory are linear in the archive's distinct content; descriptors in use do not
 * grow with it.
 */
enum store_err archive_import(struct index *idx, struct blobstore *bs, int in_fd,
                              const char *prefix, struct archive_stats *stats, char *err,
                              size_t errcap);

#endif
