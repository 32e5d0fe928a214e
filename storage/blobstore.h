/*
 * The blob store: immutable, content-addressed files under ROOT/blobs/<alg>/<xx>/<hex>, and
 * the partial data of upload sessions under ROOT/uploads/<id>.
 *
 * A blob becomes a file under blobs/ only after its bytes are hashed, the digest checked,
 * the file fsync'd; then it is linked into place and the directory fsync'd. Recording it in
 * the index is the caller's next step. Paths are built only from parsed digests and
 * validated upload ids.
 */
#ifndef OCIREG_STORAGE_BLOBSTORE_H
#define OCIREG_STORAGE_BLOBSTORE_H

#include <stdint.h>

#include "storage/digest.h"
#include "storage/err.h"

struct blobstore;

/* Creates the directories under root when missing. OWNED: close with blobstore_close. */
enum store_err blobstore_open(struct blobstore **out, const char *root);
void blobstore_close(struct blobstore *bs); /* NULL is a no-op */

/* Opens a blob for reading. *fd is OWNED by the caller (close it). */
enum store_err blobstore_blob_open(struct blobstore *bs, const struct digest *d, int *fd,
                                   uint64_t *size);

/*
 * An upload session's data file with its running hash. Only one request uses a session at
 * a time; the server serialises them.
 */
struct upload;

/*
 * Opens the data file of upload `id` (validated with upload_id_valid), creating it when
 * `create` is set. Reopening an existing file rehashes its contents, so a session survives a
 * restart. OWNED: close with upload_close.
 */
enum store_err upload_open(struct blobstore *bs, const char *id, enum digest_alg alg, bool create,
                           struct upload **out);
void upload_close(struct upload *u); /* NULL is a no-op; the data file stays */

/* Bytes received so far. */
uint64_t upload_offset(const struct upload *u);
const char *upload_id(const struct upload *u); /* BORROWED from u */

/* True when the file on disk no longer matches this handle (written by another process). */
bool upload_stale(const struct upload *u);

/* Appends and hashes. On failure the session must be rolled back to the last mark. */
enum store_err upload_write(struct upload *u, const void *data, size_t len);

/* Remembers the current offset and hash state; upload_rollback returns to it. */
enum store_err upload_mark(struct upload *u);
enum store_err upload_rollback(struct upload *u);

/*
 * Hints the kernel to start writing back what was written so far, so the final fsync is
 * short. Cheap; errors are ignored (the final fsync reports them).
 */
void upload_writeback(struct upload *u);

/*
 * Checks the data against `expected` (its algorithm decides the hash used: a session hashed
 * with another algorithm is rehashed). On a match the file is fsync'd and linked into
 * blobs/ (an existing blob of the same digest is kept), the directory fsync'd, and the data
 * file removed. STORE_EDIGEST on a mismatch, leaving the data file in place.
 */
enum store_err upload_commit(struct upload *u, const struct digest *expected);

/* Counts the upload sessions' data files and their bytes. */
enum store_err blobstore_uploads_stat(struct blobstore *bs, uint64_t *count, uint64_t *bytes);

/* Removes the data file of upload `id`; a missing file is not an error. */
enum store_err upload_remove(struct blobstore *bs, const char *id);

#endif
