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

/*
 * Modes of what the store creates, whatever the umask: images may be private, so nothing
 * for "other" and nothing group-writable. The index under ROOT/index is 0700/0600.
 */
#define STORE_DIR_MODE 0750
#define STORE_FILE_MODE 0640

/*
 * Creates root (STORE_DIR_MODE) when missing, and takes group write and every permission
 * of "other" off root and its top-level directories blobs/, uploads/ and index/, so a root
 * an older version made under umask 022 (0644 blob files) is closed at the top. That part
 * is best effort: a directory owned by another user, or a shared one (sticky, like /tmp),
 * is left as it is. blobstore_open calls it; so does whatever opens only the index.
 */
enum store_err blobstore_root_prepare(const char *root);

/* Creates the directories under root when missing (blobstore_root_prepare first).
 * OWNED: close with blobstore_close. */
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

/* Reads the first len bytes received (len <= upload_offset). */
enum store_err upload_read(struct upload *u, void *buf, uint64_t len);

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
 * with another algorithm is rehashed) and fsyncs it. STORE_EDIGEST on a mismatch.
 */
enum store_err upload_verify(struct upload *u, const struct digest *expected);

/*
 * Links the verified data into blobs/ under d (an existing blob of that digest is complete
 * and kept) and fsyncs the directory. The data file stays until upload_remove. Run it
 * inside the index txn that records the blob (index_blob_commit), so the garbage collector,
 * which deletes files inside its own txn, can never remove the file in between.
 */
enum store_err upload_install(struct upload *u, const struct digest *d);

/*
 * upload_install for a session whose handle is closed: links the data file of upload `id`
 * (verified and fsync'd by upload_verify earlier) into blobs/ under d. Lets a caller that
 * stages many blobs keep no descriptor open per blob.
 */
enum store_err blobstore_upload_install(struct blobstore *bs, const char *id,
                                        const struct digest *d);

/* Reads the first len bytes of the data file of upload `id` (opened and closed here). */
enum store_err blobstore_upload_read(struct blobstore *bs, const char *id, void *buf, size_t len);

/* upload_verify, upload_install, then removes the data file. */
enum store_err upload_commit(struct upload *u, const struct digest *expected);

/* Rehashes a blob file: *ok tells whether its content matches its digest. */
enum store_err blobstore_blob_verify(struct blobstore *bs, const struct digest *d, bool *ok);

/* Moves a blob file out of service to ROOT/quarantine/<alg>-<hex> (kept for inspection). */
enum store_err blobstore_blob_quarantine(struct blobstore *bs, const struct digest *d);

/* Puts blob d of bs into dst too: a hard link when possible, else a copy (fsync'd). */
enum store_err blobstore_blob_copy_to(struct blobstore *bs, const struct digest *d,
                                      struct blobstore *dst);

/* Removes a blob file (and fsyncs its directory); a missing file is not an error. */
enum store_err blobstore_blob_remove(struct blobstore *bs, const struct digest *d);

/* Called with a name (a canonical digest, or an upload id), size and mtime; non-zero stops. */
typedef int (*blobstore_file_cb)(const char *name, uint64_t size, uint64_t mtime, void *arg);
/* Every blob file, and every upload data file. */
enum store_err blobstore_blob_scan(struct blobstore *bs, blobstore_file_cb cb, void *arg);
enum store_err blobstore_uploads_scan(struct blobstore *bs, blobstore_file_cb cb, void *arg);

/* Counts the upload sessions' data files and their bytes. */
enum store_err blobstore_uploads_stat(struct blobstore *bs, uint64_t *count, uint64_t *bytes);

/* Bytes available to us and the size of the filesystem that holds the root. */
enum store_err blobstore_space(struct blobstore *bs, uint64_t *avail, uint64_t *total);

/* Writes and removes a small file under the storage root: can this registry take data? */
enum store_err blobstore_probe_write(struct blobstore *bs);

/* True when upload `id` has a data file. */
bool blobstore_upload_present(struct blobstore *bs, const char *id);

/* Removes the data file of upload `id`; a missing file is not an error. */
enum store_err upload_remove(struct blobstore *bs, const char *id);

#endif
