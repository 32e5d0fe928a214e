/* ocireg export / import / backup: moving repositories between registries and machines. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/cli.h"
#include "server/httpparse.h"
#include "storage/archive.h"
#include "storage/blobstore.h"
#include "storage/index.h"

static const char usage_export[] =
    "usage: ocireg export [REPO[:TAG]...] -o FILE.tar.zst [--threads N] [--root DIR]\n"
    "\n"
    "Writes the images (every tag of REPO, or REPO:TAG; nothing named: everything) as an OCI\n"
    "image layout in a zstd-compressed tar; each image is named REPO:TAG in index.json\n"
    "(org.opencontainers.image.ref.name). After 'zstd -d', skopeo reads it as\n"
    "oci-archive:FILE.tar:REPO:TAG. Streams with constant memory; --threads compresses in\n"
    "parallel (default: the number of cores). Safe while the server runs.\n";

static const char usage_import[] =
    "usage: ocireg import FILE.tar.zst|- [--into PREFIX] [--max-size BYTES] [--reserve BYTES]\n"
    "                    [--root DIR]\n"
    "\n"
    "Loads an archive made by ocireg export (or any OCI layout tar compressed with zstd whose\n"
    "index.json names images REPO:TAG; - reads standard input). Every blob is checked against\n"
    "its digest and every image against what it references before anything is stored: a\n"
    "damaged archive is refused and leaves nothing behind. --into puts PREFIX/ before every\n"
    "repository name. Importing the same archive twice changes nothing. Safe while the server\n"
    "runs.\n"
    "\n"
    "A hostile archive cannot fill the disk: only blobs that a descriptor declares are staged,\n"
    "and one whose data is not the size declared is refused before it is written (a file is\n"
    "read twice for that, the first time writing nothing; from standard input, declarations\n"
    "count from the manifest that makes them on). --max-size refuses an archive that unpacks to\n"
    "more (default 1T); --reserve is the free space to leave on the root's filesystem (default\n"
    "5% of it, at most 1G). BYTES take K, M, G, T (powers of 1024).\n";

static const char usage_backup[] =
    "usage: ocireg backup DIR [--root DIR]\n"
    "\n"
    "Makes a consistent hot copy of the registry in DIR (which must not exist): the index by\n"
    "LMDB's own copy, then every blob the copy references (hard links on the same\n"
    "filesystem, else copies) and the token signing keys. 'ocireg serve --root DIR' serves\n"
    "it as it was.\n";

/* The index (cli_open_index) and the blob store of root; false after saying why not. */
static bool open_storage(const char *root, struct index **idx, struct blobstore **bs)
{
    enum store_err rc = blobstore_open(bs, root);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: cannot open %s: %s\n", root, store_strerror(rc));
        return false;
    }
    *idx = cli_open_index(root);
    if (*idx == NULL) {
        blobstore_close(*bs);
        *bs = NULL;
        return false;
    }
    return true;
}

static void progress(uint64_t bytes, void *arg)
{
    uint64_t *last = arg;
    if (!isatty(STDERR_FILENO) || bytes - *last < (64u << 20))
        return;
    *last = bytes;
    fprintf(stderr, "\r%llu MiB", (unsigned long long)(bytes >> 20));
}

int cli_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"output", required_argument, NULL, 'o'},
        {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *root = cli_default_root(), *outpath = NULL;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        uint64_t v;
        switch (ch) {
        case 'r':
            root = optarg;
            break;
        case 'o':
            outpath = optarg;
            break;
        case 't':
            if (!parse_u64(optarg, strlen(optarg), &v) || v > 64)
                goto bad;
            threads = (long)v;
            break;
        case 'h':
            fputs(usage_export, stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (outpath == NULL)
        goto bad;
    size_t n = (size_t)(argc - optind);
    struct archive_ref *refs = calloc(n ? n : 1, sizeof(*refs));
    if (refs == NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        const char *arg = argv[optind + (int)i];
        const char *colon = strrchr(arg, ':');
        size_t rl = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
        if (!name_valid(arg, rl) || (colon != NULL && !tag_valid(colon + 1, strlen(colon + 1)))) {
            fprintf(stderr, "ocireg: '%s' is not REPO or REPO:TAG\n", arg);
            free(refs);
            return 2;
        }
        snprintf(refs[i].repo, sizeof(refs[i].repo), "%.*s", (int)rl, arg);
        if (colon != NULL)
            snprintf(refs[i].tag, sizeof(refs[i].tag), "%s", colon + 1);
    }
    struct index *idx = NULL;
    struct blobstore *bs = NULL;
    if (!open_storage(root, &idx, &bs)) {
        free(refs);
        return 1;
    }
    /* written under a temporary name and renamed: no half archive under the real name */
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%ld.part", outpath, (long)getpid());
    /* the archive holds the images themselves: as private as the blobs they came from */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, STORE_FILE_MODE);
    int ret = 1;
    char err[512] = "";
    struct archive_stats st;
    uint64_t last = 0;
    if (fd == -1) {
        fprintf(stderr, "ocireg: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    enum store_err rc = archive_export(idx, bs, refs, n, fd, (int)threads, &st, progress, &last,
                                       err, sizeof(err));
    if (rc == STORE_OK && fsync(fd) != 0)
        rc = store_err_from_errno(errno);
    if (close(fd) != 0 && rc == STORE_OK)
        rc = store_err_from_errno(errno);
    if (rc == STORE_OK && rename(tmp, outpath) != 0)
        rc = store_err_from_errno(errno);
    if (rc != STORE_OK) {
        unlink(tmp);
        fprintf(stderr, "ocireg: export: %s\n", err[0] ? err : store_strerror(rc));
        goto out;
    }
    if (last > 0)
        fputc('\n', stderr);
    printf("exported %llu images (%llu manifests, %llu blobs, %llu bytes) to %s\n",
           (unsigned long long)st.images, (unsigned long long)st.manifests,
           (unsigned long long)st.blobs, (unsigned long long)st.bytes, outpath);
    ret = 0;
out:
    free(refs);
    index_close(idx);
    blobstore_close(bs);
    return ret;
bad:
    fprintf(stderr, "ocireg: bad arguments\n%s", usage_export);
    return 2;
}

int cli_import(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},     {"into", required_argument, NULL, 'i'},
        {"max-size", required_argument, NULL, 'm'}, {"reserve", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *root = cli_default_root();
    struct archive_import_opts o = {NULL, ARCHIVE_MAX_SIZE_DEFAULT, ARCHIVE_RESERVE_AUTO};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            root = optarg;
            break;
        case 'i':
            o.prefix = optarg;
            if (!name_valid(o.prefix, strlen(o.prefix))) {
                fprintf(stderr, "ocireg: --into %s is no repository name prefix\n", o.prefix);
                return 2;
            }
            break;
        case 'm':
            if (!cli_parse_bytes(optarg, &o.max_size) || o.max_size == 0) {
                fprintf(stderr, "ocireg: --max-size %s is no size in bytes\n", optarg);
                return 2;
            }
            break;
        case 's':
            if (!cli_parse_bytes(optarg, &o.reserve) || o.reserve == ARCHIVE_RESERVE_AUTO) {
                fprintf(stderr, "ocireg: --reserve %s is no size in bytes\n", optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage_import, stdout);
            return 0;
        default:
            fprintf(stderr, "ocireg: bad arguments\n%s", usage_import);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "ocireg: bad arguments\n%s", usage_import);
        return 2;
    }
    const char *path = argv[optind];
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        fprintf(stderr, "ocireg: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct index *idx = NULL;
    struct blobstore *bs = NULL;
    if (!open_storage(root, &idx, &bs)) {
        if (fd != STDIN_FILENO)
            close(fd);
        return 1;
    }
    char err[512] = "";
    struct archive_stats st;
    enum store_err rc = archive_import(idx, bs, fd, &o, &st, err, sizeof(err));
    if (fd != STDIN_FILENO)
        close(fd);
    index_close(idx);
    blobstore_close(bs);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: import refused, nothing stored: %s\n",
                err[0] ? err : store_strerror(rc));
        return 1;
    }
    printf("imported %llu images (%llu manifests, %llu blobs, %llu bytes)\n",
           (unsigned long long)st.images, (unsigned long long)st.manifests,
           (unsigned long long)st.blobs, (unsigned long long)st.bytes);
    return 0;
}

struct backup_ctx {
    struct blobstore *src, *dst;
    uint64_t copied, missing;
    enum store_err rc;
};

static int backup_blob(const char *digest, uint64_t size, uint32_t refs, uint64_t created,
                       void *arg)
{
    (void)size;
    (void)created;
    struct backup_ctx *b = arg;
    struct digest d;
    if (refs == 0 || digest_parse(&d, digest, strlen(digest)) != STORE_OK)
        return 0;
    enum store_err rc = blobstore_blob_copy_to(b->src, &d, b->dst);
    if (rc == STORE_ENOENT) {
        /* collected since the index was copied: a blob the copy still names */
        b->missing++;
        fprintf(stderr, "ocireg: backup: %s is gone from the live registry\n", digest);
        return 0;
    }
    if (rc != STORE_OK) {
        b->rc = rc;
        return 1;
    }
    b->copied++;
    return 0;
}

int cli_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *root = cli_default_root();
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'r') {
            root = optarg;
        } else if (ch == 'h') {
            fputs(usage_backup, stdout);
            return 0;
        } else {
            fprintf(stderr, "ocireg: bad arguments\n%s", usage_backup);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "ocireg: bad arguments\n%s", usage_backup);
        return 2;
    }
    const char *dest = argv[optind];
    if (mkdir(dest, STORE_DIR_MODE) != 0) {
        fprintf(stderr, "ocireg: backup: cannot create %s: %s\n", dest, strerror(errno));
        return 1;
    }
    struct index *idx = NULL, *copy = NULL;
    struct blobstore *bs = NULL, *dbs = NULL;
    if (!open_storage(root, &idx, &bs))
        return 1;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/index", dest);
    enum store_err rc = index_copy(idx, dir);
    index_close(idx);
    struct backup_ctx b = {bs, NULL, 0, 0, STORE_OK};
    if (rc == STORE_OK && open_storage(dest, &copy, &dbs)) {
        b.dst = dbs;
        rc = index_blobs_scan(copy, backup_blob, &b);
        if (rc == STORE_OK)
            rc = b.rc;
    } else if (rc == STORE_OK) {
        rc = STORE_EIO;
    }
    index_close(copy);
    blobstore_close(dbs);
    blobstore_close(bs);
    /* the signing key, so tokens and login passwords stay valid */
    char src[4096], dst[4096];
    snprintf(src, sizeof(src), "%s/keys/token-ed25519.key", root);
    snprintf(dst, sizeof(dst), "%s/keys", dest);
    int kin = open(src, O_RDONLY | O_CLOEXEC);
    if (rc == STORE_OK && kin != -1) {
        char key[256];
        ssize_t kn = read(kin, key, sizeof(key));
        mkdir(dst, 0700);
        snprintf(dst, sizeof(dst), "%s/keys/token-ed25519.key", dest);
        int kout = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (kn <= 0 || kout == -1 || write(kout, key, (size_t)kn) != kn || fsync(kout) != 0)
            rc = STORE_EIO;
        if (kout != -1)
            close(kout);
    }
    if (kin != -1)
        close(kin);
    if (rc != STORE_OK) {
        fprintf(stderr, "ocireg: backup: %s\n", store_strerror(rc));
        return 1;
    }
    printf("backup of %s in %s: index copied, %llu blobs%s\n", root, dest,
           (unsigned long long)b.copied, b.missing ? " (some collected meanwhile)" : "");
    return 0;
}
