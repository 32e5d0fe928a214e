#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "storage/blobstore.h"
#include "storage/names.h"

/* Unflushed bytes after which writeback of an upload is started. */
#define WRITEBACK_STEP (8u << 20)
#define REHASH_BUF (1u << 20)

struct blobstore {
    int root_fd;
    int alg_fd[2]; /* blobs/sha256, blobs/sha512 */
    int uploads_fd;
};

struct upload {
    struct blobstore *bs;
    char id[UPLOAD_ID_LEN + 1];
    int fd;
    uint64_t offset;
    uint64_t written_back;
    struct hasher *hash;
    uint64_t mark_offset;
    struct hasher *mark_hash;
};

static int mkdir_open(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, STORE_DIR_MODE) != 0 && errno != EEXIST)
        return -1;
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static enum store_err fsync_fd(int fd)
{
    while (fsync(fd) != 0) {
        if (errno != EINTR)
            return store_err_from_errno(errno);
    }
    return STORE_OK;
}

void blobstore_close(struct blobstore *bs)
{
    if (bs == NULL)
        return;
    int fds[] = {bs->root_fd, bs->alg_fd[0], bs->alg_fd[1], bs->uploads_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] != -1)
            close(fds[i]);
    free(bs);
}

/* Takes group write and everything of "other" off a directory we own (not a shared one). */
static void close_to_others(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & S_ISVTX) == 0 &&
        (st.st_mode & 0027) != 0)
        (void)fchmod(fd, st.st_mode & 07750);
}

enum store_err blobstore_root_prepare(const char *root)
{
    static const char *const tops[] = {"blobs", "uploads", "index"};
    if (mkdir(root, STORE_DIR_MODE) != 0 && errno != EEXIST)
        return store_err_from_errno(errno);
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return store_err_from_errno(errno);
    close_to_others(fd);
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        int sub = openat(fd, tops[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub != -1) {
            close_to_others(sub);
            close(sub);
        }
    }
    close(fd);
    return STORE_OK;
}

enum store_err blobstore_open(struct blobstore **out, const char *root)
{
    enum store_err rc = STORE_EIO;
    int blobs_fd = -1;
    struct blobstore *bs = calloc(1, sizeof(*bs));
    if (bs == NULL)
        return STORE_ENOMEM;
    bs->root_fd = bs->alg_fd[0] = bs->alg_fd[1] = bs->uploads_fd = -1;
    if (blobstore_root_prepare(root) != STORE_OK)
        goto fail;
    bs->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bs->root_fd == -1)
        goto fail;
    blobs_fd = mkdir_open(bs->root_fd, "blobs");
    if (blobs_fd == -1)
        goto fail;
    bs->alg_fd[DIGEST_SHA256] = mkdir_open(blobs_fd, "sha256");
    bs->alg_fd[DIGEST_SHA512] = mkdir_open(blobs_fd, "sha512");
    bs->uploads_fd = mkdir_open(bs->root_fd, "uploads");
    if (bs->alg_fd[0] == -1 || bs->alg_fd[1] == -1 || bs->uploads_fd == -1)
        goto fail;
    *out = bs;
    bs = NULL;
    rc = STORE_OK;
fail:
    if (rc != STORE_OK)
        rc = store_err_from_errno(errno);
    if (blobs_fd != -1)
        close(blobs_fd);
    blobstore_close(bs);
    return rc;
}

/* "ab" directory name and the file name (the full hex) of a digest. */
static void blob_names(const struct digest *d, char prefix[3])
{
    const char *hex = digest_hex(d);
    prefix[0] = hex[0];
    prefix[1] = hex[1];
    prefix[2] = '\0';
}

enum store_err blobstore_blob_open(struct blobstore *bs, const struct digest *d, int *fd,
                                   uint64_t *size)
{
    char prefix[3];
    blob_names(d, prefix);
    int dfd = openat(bs->alg_fd[d->alg], prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1)
        return store_err_from_errno(errno);
    int f = openat(dfd, digest_hex(d), O_RDONLY | O_CLOEXEC);
    int saved = errno;
    close(dfd);
    if (f == -1)
        return store_err_from_errno(saved);
    struct stat st;
    if (fstat(f, &st) != 0) {
        saved = errno;
        close(f);
        return store_err_from_errno(saved);
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return STORE_OK;
}

void upload_close(struct upload *u)
{
    if (u == NULL)
        return;
    if (u->fd != -1)
        close(u->fd);
    hasher_free(u->hash);
    hasher_free(u->mark_hash);
    free(u);
}

/* Feeds the first `len` bytes of fd to h. */
static enum store_err rehash(int fd, uint64_t len, struct hasher *h)
{
    enum store_err rc = STORE_OK;
    char *buf = malloc(REHASH_BUF);
    if (buf == NULL)
        return STORE_ENOMEM;
    uint64_t off = 0;
    while (off < len && rc == STORE_OK) {
        size_t want = len - off < REHASH_BUF ? (size_t)(len - off) : REHASH_BUF;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n == 0 ? STORE_EIO : store_err_from_errno(errno);
            break;
        }
        rc = hasher_update(h, buf, (size_t)n);
        off += (uint64_t)n;
    }
    free(buf);
    return rc;
}

enum store_err upload_open(struct blobstore *bs, const char *id, enum digest_alg alg, bool create,
                           struct upload **out)
{
    enum store_err rc = STORE_EINVAL;
    struct upload *u = NULL;
    if (!upload_id_valid(id, strlen(id)))
        goto fail;
    rc = STORE_ENOMEM;
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        goto fail;
    u->bs = bs;
    u->fd = -1;
    memcpy(u->id, id, UPLOAD_ID_LEN + 1);
    u->hash = hasher_new(alg);
    u->mark_hash = hasher_new(alg);
    if (u->hash == NULL || u->mark_hash == NULL)
        goto fail;
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    u->fd = openat(bs->uploads_fd, id, flags, STORE_FILE_MODE);
    if (u->fd == -1) {
        rc = store_err_from_errno(errno);
        goto fail;
    }
    struct stat st;
    if (fstat(u->fd, &st) != 0) {
        rc = store_err_from_errno(errno);
        goto fail;
    }
    u->offset = (uint64_t)st.st_size;
    rc = rehash(u->fd, u->offset, u->hash);
    if (rc != STORE_OK)
        goto fail;
    u->written_back = u->offset;
    rc = upload_mark(u);
    if (rc != STORE_OK)
        goto fail;
    *out = u;
    return STORE_OK;
fail:
    upload_close(u);
    return rc;
}

uint64_t upload_offset(const struct upload *u)
{
    return u->offset;
}

const char *upload_id(const struct upload *u)
{
    return u->id;
}

bool upload_stale(const struct upload *u)
{
    struct stat st;
    if (fstat(u->fd, &st) != 0)
        return true;
    return st.st_nlink == 0 || (uint64_t)st.st_size != u->offset;
}

enum store_err upload_write(struct upload *u, const void *data, size_t len)
{
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = pwrite(u->fd, p, left, (off_t)u->offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return store_err_from_errno(errno);
        }
        enum store_err rc = hasher_update(u->hash, p, (size_t)n);
        if (rc != STORE_OK)
            return rc;
        p += n;
        left -= (size_t)n;
        u->offset += (uint64_t)n;
    }
    return STORE_OK;
}

enum store_err upload_mark(struct upload *u)
{
    enum store_err rc = hasher_copy(u->mark_hash, u->hash);
    if (rc == STORE_OK)
        u->mark_offset = u->offset;
    return rc;
}

enum store_err upload_rollback(struct upload *u)
{
    while (ftruncate(u->fd, (off_t)u->mark_offset) != 0) {
        if (errno != EINTR)
            return store_err_from_errno(errno);
    }
    enum store_err rc = hasher_copy(u->hash, u->mark_hash);
    if (rc != STORE_OK)
        return rc;
    u->offset = u->mark_offset;
    if (u->written_back > u->offset)
        u->written_back = u->offset;
    return STORE_OK;
}

void upload_writeback(struct upload *u)
{
    if (u->offset - u->written_back < WRITEBACK_STEP)
        return;
    (void)sync_file_range(u->fd, (off_t)u->written_back, (off_t)(u->offset - u->written_back),
                          SYNC_FILE_RANGE_WRITE);
    u->written_back = u->offset;
}

enum store_err upload_verify(struct upload *u, const struct digest *expected)
{
    struct digest got;
    enum store_err rc;
    if (expected->alg == hasher_alg(u->hash)) {
        rc = hasher_peek(u->hash, &got);
    } else {
        struct hasher *h = hasher_new(expected->alg);
        if (h == NULL)
            return STORE_ENOMEM;
        rc = rehash(u->fd, u->offset, h);
        if (rc == STORE_OK)
            rc = hasher_peek(h, &got);
        hasher_free(h);
    }
    if (rc != STORE_OK)
        return rc;
    if (!digest_equal(&got, expected))
        return STORE_EDIGEST;
    return fsync_fd(u->fd);
}

/* Links uploads/<id> into blobs/ under d and fsyncs the directory (see upload_install). */
static enum store_err install_file(struct blobstore *bs, const char *id, const struct digest *d)
{
    char prefix[3];
    blob_names(d, prefix);
    int alg_fd = bs->alg_fd[d->alg];
    enum store_err rc;
    bool made_dir = mkdirat(alg_fd, prefix, STORE_DIR_MODE) == 0;
    if (!made_dir && errno != EEXIST)
        return store_err_from_errno(errno);
    if (made_dir) {
        rc = fsync_fd(alg_fd);
        if (rc != STORE_OK)
            return rc;
    }
    int dfd = openat(alg_fd, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1)
        return store_err_from_errno(errno);
    /* link, not rename: an existing blob of this digest is complete and stays untouched */
    if (linkat(bs->uploads_fd, id, dfd, digest_hex(d), 0) != 0 && errno != EEXIST) {
        rc = store_err_from_errno(errno);
        close(dfd);
        return rc;
    }
    rc = fsync_fd(dfd);
    close(dfd);
    return rc;
}

enum store_err upload_install(struct upload *u, const struct digest *d)
{
    return install_file(u->bs, u->id, d);
}

enum store_err blobstore_upload_install(struct blobstore *bs, const char *id,
                                        const struct digest *d)
{
    if (!upload_id_valid(id, strlen(id)))
        return STORE_EINVAL;
    return install_file(bs, id, d);
}

enum store_err blobstore_upload_read(struct blobstore *bs, const char *id, void *buf, size_t len)
{
    if (!upload_id_valid(id, strlen(id)))
        return STORE_EINVAL;
    int fd = openat(bs->uploads_fd, id, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return store_err_from_errno(errno);
    enum store_err rc = STORE_OK;
    size_t off = 0;
    while (off < len) {
        ssize_t n = pread(fd, (char *)buf + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* a data file shorter than what was staged: changed behind our back */
            rc = n == 0 ? STORE_EIO : store_err_from_errno(errno);
            break;
        }
        off += (size_t)n;
    }
    close(fd);
    return rc;
}

enum store_err blobstore_space(struct blobstore *bs, uint64_t *avail, uint64_t *total)
{
    struct statvfs sv;
    if (fstatvfs(bs->root_fd, &sv) != 0)
        return store_err_from_errno(errno);
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    *total = (uint64_t)sv.f_blocks * sv.f_frsize;
    return STORE_OK;
}

enum store_err upload_commit(struct upload *u, const struct digest *expected)
{
    enum store_err rc = upload_verify(u, expected);
    if (rc == STORE_OK)
        rc = upload_install(u, expected);
    if (rc == STORE_OK && unlinkat(u->bs->uploads_fd, u->id, 0) != 0 && errno != ENOENT)
        rc = store_err_from_errno(errno);
    return rc;
}

enum store_err blobstore_blob_remove(struct blobstore *bs, const struct digest *d)
{
    char prefix[3];
    blob_names(d, prefix);
    int dfd = openat(bs->alg_fd[d->alg], prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1)
        return errno == ENOENT ? STORE_OK : store_err_from_errno(errno);
    enum store_err rc = STORE_OK;
    if (unlinkat(dfd, digest_hex(d), 0) != 0 && errno != ENOENT)
        rc = store_err_from_errno(errno);
    if (rc == STORE_OK)
        rc = fsync_fd(dfd);
    close(dfd);
    return rc;
}

enum store_err blobstore_blob_scan(struct blobstore *bs, blobstore_file_cb cb, void *arg)
{
    for (int alg = 0; alg < 2; alg++) {
        int fd = openat(bs->alg_fd[alg], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *top = fd != -1 ? fdopendir(fd) : NULL;
        if (top == NULL) {
            if (fd != -1)
                close(fd);
            return store_err_from_errno(errno);
        }
        struct dirent *pe;
        while ((pe = readdir(top)) != NULL) {
            if (strlen(pe->d_name) != 2 || pe->d_name[0] == '.')
                continue;
            int sub = openat(bs->alg_fd[alg], pe->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            DIR *d = sub != -1 ? fdopendir(sub) : NULL;
            if (d == NULL) {
                if (sub != -1)
                    close(sub);
                continue;
            }
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                char name[DIGEST_STR_MAX];
                int n = snprintf(name, sizeof(name), "%s:%s", alg == DIGEST_SHA512 ? "sha512"
                                                                                  : "sha256",
                                 e->d_name);
                struct digest dg;
                struct stat st;
                if (n < 0 || (size_t)n >= sizeof(name) ||
                    digest_parse(&dg, name, (size_t)n) != STORE_OK ||
                    strncmp(digest_hex(&dg), pe->d_name, 2) != 0 ||
                    fstatat(sub, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                    continue;
                if (cb(name, (uint64_t)st.st_size, (uint64_t)st.st_mtime, arg) != 0)
                    break;
            }
            closedir(d);
        }
        closedir(top);
    }
    return STORE_OK;
}

enum store_err blobstore_uploads_scan(struct blobstore *bs, blobstore_file_cb cb, void *arg)
{
    int fd = openat(bs->uploads_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd != -1 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd != -1)
            close(fd);
        return store_err_from_errno(errno);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!upload_id_valid(e->d_name, strlen(e->d_name)) ||
            fstatat(bs->uploads_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (cb(e->d_name, (uint64_t)st.st_size, (uint64_t)st.st_mtime, arg) != 0)
            break;
    }
    closedir(d);
    return STORE_OK;
}

enum store_err upload_remove(struct blobstore *bs, const char *id)
{
    if (!upload_id_valid(id, strlen(id)))
        return STORE_EINVAL;
    if (unlinkat(bs->uploads_fd, id, 0) != 0 && errno != ENOENT)
        return store_err_from_errno(errno);
    return STORE_OK;
}

enum store_err blobstore_uploads_stat(struct blobstore *bs, uint64_t *count, uint64_t *bytes)
{
    int fd = openat(bs->uploads_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return store_err_from_errno(errno);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return store_err_from_errno(errno);
    }
    uint64_t n = 0, sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!upload_id_valid(e->d_name, strlen(e->d_name)))
            continue;
        if (fstatat(bs->uploads_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            n++;
            sum += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    *count = n;
    *bytes = sum;
    return STORE_OK;
}

bool blobstore_upload_present(struct blobstore *bs, const char *id)
{
    struct stat st;
    return upload_id_valid(id, strlen(id)) &&
           fstatat(bs->uploads_fd, id, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

enum store_err blobstore_blob_verify(struct blobstore *bs, const struct digest *d, bool *ok)
{
    int fd = -1;
    uint64_t size = 0;
    enum store_err rc = blobstore_blob_open(bs, d, &fd, &size);
    if (rc != STORE_OK)
        return rc;
    struct hasher *h = hasher_new(d->alg);
    if (h == NULL) {
        close(fd);
        return STORE_ENOMEM;
    }
    rc = rehash(fd, size, h);
    struct digest got;
    if (rc == STORE_OK)
        rc = hasher_peek(h, &got);
    hasher_free(h);
    close(fd);
    if (rc == STORE_OK)
        *ok = digest_equal(&got, d);
    return rc;
}

enum store_err blobstore_blob_quarantine(struct blobstore *bs, const struct digest *d)
{
    int qfd = mkdir_open(bs->root_fd, "quarantine");
    if (qfd == -1)
        return store_err_from_errno(errno);
    char prefix[3], name[DIGEST_STR_MAX + 8];
    blob_names(d, prefix);
    snprintf(name, sizeof(name), "%s-%s", digest_alg_name(d->alg), digest_hex(d));
    enum store_err rc = STORE_OK;
    int dfd = openat(bs->alg_fd[d->alg], prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1 || renameat(dfd, digest_hex(d), qfd, name) != 0)
        rc = store_err_from_errno(errno);
    if (rc == STORE_OK)
        rc = fsync_fd(dfd);
    if (dfd != -1)
        close(dfd);
    close(qfd);
    return rc;
}

enum store_err upload_read(struct upload *u, void *buf, uint64_t len)
{
    if (len > u->offset)
        return STORE_ERANGE;
    uint64_t off = 0;
    while (off < len) {
        ssize_t n = pread(u->fd, (char *)buf + off, (size_t)(len - off), (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? STORE_EIO : store_err_from_errno(errno);
        off += (uint64_t)n;
    }
    return STORE_OK;
}

enum store_err blobstore_blob_copy_to(struct blobstore *bs, const struct digest *d,
                                      struct blobstore *dst)
{
    char prefix[3];
    blob_names(d, prefix);
    int dalg = dst->alg_fd[d->alg];
    if (mkdirat(dalg, prefix, STORE_DIR_MODE) != 0 && errno != EEXIST)
        return store_err_from_errno(errno);
    int sdir = openat(bs->alg_fd[d->alg], prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ddir = openat(dalg, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    enum store_err rc = STORE_OK;
    if (sdir == -1 || ddir == -1) {
        rc = store_err_from_errno(errno);
        goto out;
    }
    /* a hard link when both are on one filesystem (blob files never change), else a copy */
    if (linkat(sdir, digest_hex(d), ddir, digest_hex(d), 0) == 0 || errno == EEXIST)
        goto out;
    int in = openat(sdir, digest_hex(d), O_RDONLY | O_CLOEXEC);
    int outfd = in != -1 ? openat(ddir, digest_hex(d), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                                  STORE_FILE_MODE)
                         : -1;
    if (in == -1 || outfd == -1) {
        rc = store_err_from_errno(errno);
    } else {
        char *buf = malloc(REHASH_BUF);
        ssize_t n = 0;
        while (buf != NULL && (n = read(in, buf, REHASH_BUF)) > 0) {
            if (write(outfd, buf, (size_t)n) != n) {
                n = -1;
                break;
            }
        }
        if (buf == NULL || n < 0 || fsync(outfd) != 0)
            rc = buf == NULL ? STORE_ENOMEM : store_err_from_errno(errno);
        free(buf);
    }
    if (in != -1)
        close(in);
    if (outfd != -1)
        close(outfd);
out:
    if (rc == STORE_OK && ddir != -1)
        rc = fsync_fd(ddir);
    if (sdir != -1)
        close(sdir);
    if (ddir != -1)
        close(ddir);
    return rc;
}

enum store_err blobstore_probe_write(struct blobstore *bs)
{
    char name[64];
    snprintf(name, sizeof(name), ".probe-%ld", (long)getpid());
    int fd = openat(bs->uploads_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1)
        return store_err_from_errno(errno);
    enum store_err rc = write(fd, "x", 1) == 1 ? STORE_OK : store_err_from_errno(errno);
    close(fd);
    unlinkat(bs->uploads_fd, name, 0);
    return rc;
}
