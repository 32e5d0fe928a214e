/*
 * Export and import of repositories as an OCI image layout in a zstd-compressed tar
 * (oci-layout, index.json with org.opencontainers.image.ref.name "repo:tag", blobs/), and
 * hot backups. Export streams with constant memory; import stages and verifies every blob
 * before it stores any of them, so a corrupt archive leaves nothing behind, and bounds what it
 * stages, so a hostile one cannot fill the disk.
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

/* Import limits; the defaults are what `ocireg import` uses without flags. */
#define ARCHIVE_MAX_SIZE_DEFAULT (1ull << 40) /* 1 TiB unpacked */
#define ARCHIVE_RESERVE_AUTO UINT64_MAX       /* 5% of the filesystem, at most: */
#define ARCHIVE_RESERVE_MAX (1ull << 30)

struct archive_import_opts {
    const char *prefix; /* put before every repository name ("PREFIX/repo"); may be NULL */
    uint64_t max_size;  /* the most the archive may unpack to (tar bytes); 0: the default */
    uint64_t reserve;   /* free bytes to leave on the root's filesystem; or ..._AUTO */
};

/* The reserve ARCHIVE_RESERVE_AUTO stands for, on a filesystem of fs_bytes. */
uint64_t archive_reserve_default(uint64_t fs_bytes);

/*
 * Reads an archive from in_fd into the registry. Every blob is verified against its digest,
 * every image against what it references, before anything is stored; importing twice changes
 * nothing. Only blobs are staged (under uploads/, removed before returning) that a descriptor
 * declares, at the size it declares: when in_fd is a regular file, a first pass learns the
 * declarations without writing; from a pipe, those of manifests read before the blob. The
 * archive may unpack to at most opts->max_size bytes (STORE_ETOOBIG), and staging stops before
 * the filesystem's free space would go below opts->reserve (STORE_ENOSPC). Work and memory are
 * linear in the archive's distinct content; descriptors in use do not grow with it.
 */
enum store_err archive_import(struct index *idx, struct blobstore *bs, int in_fd,
                              const struct archive_import_opts *opts, struct archive_stats *stats,
                              char *err, size_t errcap);

#endif
