/*
 * disk_full: the storage root on a 24 MiB tmpfs, and an LMDB map of 1 MiB.
 *
 * Disk: 1 MiB blobs are pushed (monolithic and chunked, alternately) until the file system
 * is full. A refused upload gets a 5xx JSON error body (507: ENOSPC is insufficient
 * storage), nothing of it becomes visible (its digest is 404, a chunked session stays at the
 * offset it had acknowledged), blobs stored before still read back, the server answers
 * GET /v2/ and `ocireg fsck` is clean. Smaller blobs then take it to the edge, where a few
 * pages are freed at a time (one-page ballast files of the test), so that an upload file
 * fits but the index cannot grow: refused the same way. Then blobs are deleted through the
 * API (when even that is refused for lack of a page, the test frees 2 MiB of ballast
 * first), `ocireg gc --grace 0` frees their files, and pushes succeed again.
 *
 * Map: with --map-size 1048576, manifests under new tags are pushed until the index is full:
 * a clear 5xx JSON error (507), no crash, the server still answers, what was acknowledged
 * still reads back, the refused tag and digest are 404, and the server stops cleanly.
 *
 * Reserve: with --min-free-space 4M on a fresh 24 MiB tmpfs, images (a 1 MiB layer and a
 * manifest each) are pushed until the reserve refuses one (507 naming --min-free-space); then
 * a manifest DELETE and `ocireg gc --grace 0` succeed at once and free space, and pushes work
 * again: space can always be reclaimed through the registry. With a reserve larger than the
 * file system, a manifest PUT that needs no new blob is refused 507 too; a DELETE is not.
 *
 * The tmpfs is mounted in a private mount namespace of this test (unshare): it disappears
 * with the test and its servers whatever happens. Without root or when mounting is not
 * permitted the test is skipped (exit 77, a "SKIP:" line).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/check.h"
#include "tests/reliability/rel.h"

#define BLOB (1u << 20)
#define REPO "full/app"
#define CFG "{\"architecture\":\"amd64\",\"os\":\"linux\"}"

static struct srv S;
static uint64_t seed = 0x6469736b66756c6cULL;
/* Failures that let the test go on (to see what else breaks); reported at the end. */
static int deferred;

#define DEFER(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: FAIL (the test goes on): ", __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        deferred++;                                                                                \
    } while (0)

static void show(const char *what, const struct resp *r)
{
    fprintf(stderr, "%s: %ld\nheaders:\n%s\nbody: %.1000s\n", what, r->status, r->headers,
            r->body);
}

static long status_of(struct srv *s, const char *method, const char *path)
{
    struct resp *r = http(s, method, path, NULL, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

static void server_alive(struct srv *s)
{
    int st;
    CHECK(waitpid(s->pid, &st, WNOHANG) == 0);
    CHECK_INT(status_of(s, "GET", "/v2/"), ==, 200);
}

/* The refusal of a full disk or index: 5xx with an OCI JSON error body; 507 is what ENOSPC and
 * a full map are mapped to. */
static void expect_storage_error(const struct resp *r, const char *what)
{
    if (r->status < 500 || r->status > 599 || !rel_is_json_error(r)) {
        show(what, r);
        FAILF("%s: want a 5xx with a JSON error body", what);
    }
    if (r->status != 507) {
        show(what, r);
        DEFER("%s: %ld, want 507 (insufficient storage)", what, r->status);
    }
}

static void blob_absent(struct srv *s, const char *digest)
{
    char path[256];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", REPO, digest);
    struct resp *r = http(s, "GET", path, NULL, NULL, 0);
    if (r->status != 404) {
        show("GET of a blob whose upload failed", r);
        FAILF("the refused blob %s is visible", digest);
    }
    EXPECT(r, 404, "BLOB_UNKNOWN");
    resp_free(r);
}

static void blob_reads_back(struct srv *s, const char *digest)
{
    char path[256], got[72];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", REPO, digest);
    struct resp *r = http(s, "GET", path, NULL, NULL, 0);
    sha256_str(r->body, r->len, got);
    if (r->status != 200 || strcmp(got, digest) != 0)
        FAILF("stored blob %s: status %ld, %zu bytes hashing to %s", digest, r->status, r->len,
              got);
    resp_free(r);
}

/* A monolithic push; the response. Sent with http_whole, as the PATCHes below: below the
 * free-space reserve a body of known length is refused before it is read, and libcurl, still
 * sending it, may report only the reset that follows the answer. */
static struct resp *push_mono(struct srv *s, const unsigned char *data, size_t len, char *digest)
{
    char path[256];
    sha256_str(data, len, digest);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", REPO, digest);
    return http_whole(s, "POST", path,
                      (const char *[]){"Content-Type: application/octet-stream", NULL}, data, len);
}

/*
 * A chunked push (256 KiB PATCHes, then PUT). Returns the response that ended it (a refusal,
 * or the 201); a refused PATCH is checked here: the session stays at the offset acknowledged
 * before it, and is then deleted.
 */
static struct resp *push_chunked(struct srv *s, const unsigned char *data, size_t len,
                                 char *digest, bool *refused_patch)
{
    char path[512], loc[256];
    *refused_patch = false;
    sha256_str(data, len, digest);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", REPO);
    struct resp *r = http(s, "POST", path, NULL, NULL, 0);
    if (r->status != 202)
        return r; /* refused at the start: for the caller to judge */
    CHECK(resp_hdr(r, "Location", loc, sizeof(loc)) != NULL);
    resp_free(r);
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off < (256u << 10) ? len - off : (256u << 10);
        char cr[64];
        snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + chunk - 1);
        r = http_whole(s, "PATCH", loc,
                       (const char *[]){cr, "Content-Type: application/octet-stream", NULL},
                       data + off, chunk);
        if (r->status != 202) {
            *refused_patch = true;
            struct resp *st = http(s, "GET", loc, NULL, NULL, 0);
            bool amb;
            long long so = rel_range_offset(st, &amb);
            /* at 0 the server answers "0-0", which says 0 or 1 byte */
            if (st->status != 204 || (off == 0 ? !amb : so != (long long)off)) {
                show("session status after a refused PATCH", st);
                FAILF("after a refused PATCH at offset %zu the session must stay at %zu", off,
                      off);
            }
            resp_free(st);
            struct resp *del = http(s, "DELETE", loc, NULL, NULL, 0);
            if (del->status != 204) {
                show("DELETE of the session", del);
                FAILF("cannot delete a session on a full disk");
            }
            resp_free(del);
            return r;
        }
        resp_free(r);
        off += chunk;
    }
    snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
    r = http(s, "PUT", path, NULL, NULL, 0);
    if (r->status != 201) {
        /* refused at commit: the session stays, holding all its bytes; drop it */
        struct resp *del = http(s, "DELETE", loc, NULL, NULL, 0);
        fprintf(stderr, "  (closing PUT refused %ld; session DELETE %ld)\n", r->status,
                del->status);
        resp_free(del);
    }
    return r;
}

/*
 * Ballast on the tmpfs, beside the server's directories (it never looks at them): one-page
 * files freed a few at a time to reach the edge where an upload file still fits but the index
 * cannot grow, and a 2 MiB file freed when the full disk leaves no other way to free space.
 */
#define NBALLAST 48
static int ballast_next;

static void ballast_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/ballast/%s", S.root, name);
}

static void ballast_write(const char *name, size_t size)
{
    char path[300];
    ballast_path(path, sizeof(path), name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    unsigned char buf[4096];
    memset(buf, 0xba, sizeof(buf));
    for (size_t done = 0; done < size; done += sizeof(buf))
        CHECK(fwrite(buf, 1, sizeof(buf), f) == sizeof(buf));
    CHECK(fclose(f) == 0);
}

static void ballast_make(void)
{
    char path[300];
    ballast_path(path, sizeof(path), "");
    CHECK(mkdir(path, 0755) == 0);
    for (int i = 0; i < NBALLAST; i++) {
        char name[16];
        snprintf(name, sizeof(name), "page%02d", i);
        ballast_write(name, 4096);
    }
    ballast_write("big", 2u << 20);
}

static void ballast_free(const char *name)
{
    char path[300];
    ballast_path(path, sizeof(path), name);
    CHECK(unlink(path) == 0);
}

/* At the edge: a few pages freed at a time, then small pushes; every refusal clean. */
static void edge_sweep(void)
{
    int stored = 0, refused = 0;
    for (int k = 1; k <= 8 && ballast_next + k <= NBALLAST; k++) {
        for (int j = 0; j < k; j++) {
            char name[16];
            snprintf(name, sizeof(name), "page%02d", ballast_next++);
            ballast_free(name);
        }
        for (int t = 0; t < 5; t++) {
            unsigned char tiny[12288];
            size_t len = (size_t)rel_range(&seed, 1, sizeof(tiny));
            rel_fill(&seed, tiny, len);
            char digest[72];
            struct resp *r = push_mono(&S, tiny, len, digest);
            if (r->status == 201) {
                stored++;
            } else {
                refused++;
                char what[96];
                snprintf(what, sizeof(what), "%zu-byte blob with %d pages just freed", len, k);
                if (r->status != 507)
                    fprintf(stderr, "  %s: %ld %.200s\n", what, r->status, r->body);
                expect_storage_error(r, what);
                blob_absent(&S, digest);
            }
            resp_free(r);
        }
    }
    fprintf(stderr, "  at the edge (1..8 pages freed at a time): %d small blobs stored, %d "
                    "refused\n",
            stored, refused);
}

static void disk_phase(void)
{
    unsigned char *data = malloc(BLOB);
    CHECK(data != NULL);
    char stored[64][72];
    int nstored = 0;
    int refusals = 0, mono_refused = 0, chunk_refused = 0;
    /* the config of the manifest pushed once the disk is full */
    char cfg[72];
    push_blob_data(&S, REPO, CFG, strlen(CFG), cfg);
    /* fill: until both kinds of upload have been refused at least once */
    for (int i = 0; i < 60 && (mono_refused == 0 || chunk_refused == 0); i++) {
        rel_fill(&seed, data, BLOB);
        char digest[72];
        /* alternate; once one kind was refused, the other until it is refused too */
        bool mono = mono_refused == 0 && chunk_refused == 0 ? i % 2 == 0 : mono_refused == 0;
        bool patch_refused = false;
        struct resp *r = mono ? push_mono(&S, data, BLOB, digest)
                              : push_chunked(&S, data, BLOB, digest, &patch_refused);
        if (r->status == 201) {
            CHECK(nstored < 64);
            snprintf(stored[nstored++], 72, "%s", digest);
            resp_free(r);
            continue;
        }
        refusals++;
        fprintf(stderr, "  blob %d (%s upload%s) refused: %ld %.300s\n", i,
                mono ? "monolithic" : "chunked", patch_refused ? ", at a PATCH" : "", r->status,
                r->body);
        expect_storage_error(r, mono ? "monolithic upload on a full disk"
                                     : "chunked upload on a full disk");
        resp_free(r);
        if (mono)
            mono_refused++;
        else
            chunk_refused++;
        blob_absent(&S, digest);
        server_alive(&S);
    }
    struct statvfs vfs;
    CHECK(statvfs(S.root, &vfs) == 0);
    fprintf(stderr, "disk: %d blobs of 1 MiB stored, %d refusals; %llu KiB free on the tmpfs\n",
            nstored, refusals, (unsigned long long)vfs.f_bavail * vfs.f_frsize / 1024);
    if (mono_refused == 0 || chunk_refused == 0)
        FAILF("a 24 MiB tmpfs never filled up (%d blobs stored)", nstored);
    CHECK_INT(nstored, >=, 5);

    /* top it off: smaller blobs until those are refused too (the index then has no room to
     * grow either) */
    int small = 0;
    for (size_t size = 64u << 10; size >= 1024; size /= 8) {
        for (int i = 0; i < 200; i++) {
            rel_fill(&seed, data, size);
            char digest[72];
            struct resp *r = push_mono(&S, data, size, digest);
            if (r->status == 201) {
                small++;
                resp_free(r);
                continue;
            }
            fprintf(stderr, "  %zu-byte blob refused after %d small ones: %ld %.200s\n", size,
                    small, r->status, r->body);
            expect_storage_error(r, "small blob on a full disk");
            resp_free(r);
            blob_absent(&S, digest);
            break;
        }
    }
    server_alive(&S);
    edge_sweep();
    server_alive(&S);

    /* full: reads still work, a manifest push is stored or refused cleanly */
    for (int i = 0; i < nstored; i++)
        blob_reads_back(&S, stored[i]);
    bool manifest_stored = false;
    {
        /* a tiny blob: refused too, or stored */
        unsigned char tiny[16];
        char tdg[72];
        rel_fill(&seed, tiny, sizeof(tiny));
        struct resp *r0 = push_mono(&S, tiny, sizeof(tiny), tdg);
        fprintf(stderr, "  16-byte blob on the full disk: %ld\n", r0->status);
        if (r0->status != 201) {
            expect_storage_error(r0, "tiny blob on a full disk");
            blob_absent(&S, tdg);
        }
        resp_free(r0);
        /* a manifest whose blobs are all there: only the index has to grow */
        char body[1024], mdg[72];
        const char *ld[1] = {stored[1]};
        size_t ll[1] = {BLOB};
        size_t n = rel_manifest(body, sizeof(body), cfg, strlen(CFG), ld, ll, 1, "full");
        sha256_str(body, n, mdg);
        struct resp *r = put_manifest_body(&S, REPO, "when-full", MT_MANIFEST, body);
        fprintf(stderr, "  manifest PUT on the full disk: %ld %.200s\n", r->status, r->body);
        if (r->status == 201) {
            resp_free(r);
            r = http(&S, "GET", "/v2/" REPO "/manifests/when-full",
                     (const char *[]){"Accept: " MT_MANIFEST, NULL}, NULL, 0);
            CHECK(r->status == 200 && r->len == n && memcmp(r->body, body, n) == 0);
            manifest_stored = true;
        } else {
            expect_storage_error(r, "manifest PUT on a full disk");
            char path[256];
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", REPO, mdg);
            CHECK_INT(status_of(&S, "GET", path), ==, 404);
            CHECK_INT(status_of(&S, "GET", "/v2/" REPO "/manifests/when-full"), ==, 404);
        }
        resp_free(r);
    }
    server_alive(&S);
    int fsck_full = rel_fsck(&S);
    if (fsck_full != 0)
        DEFER("ocireg fsck exited %d on the full disk after the refused uploads (want 0: "
              "nothing partial or left over)",
              fsck_full);

    /* free space: delete half of the blobs through the API, collect them */
    int deleted = 0;
    bool freed_big = false;
    for (int i = 0; i < nstored; i += 2) {
        char path[256];
        snprintf(path, sizeof(path), "/v2/%s/blobs/%.71s", REPO, stored[i]);
        struct resp *r = http(&S, "DELETE", path, NULL, NULL, 0);
        if (r->status != 202 && !freed_big) {
            /* the index cannot grow by a page: refused, cleanly; free space another way */
            fprintf(stderr, "  blob DELETE on the full disk: %ld %.200s; freeing 2 MiB of "
                            "ballast\n",
                    r->status, r->body);
            expect_storage_error(r, "blob DELETE on a full disk");
            resp_free(r);
            ballast_free("big");
            freed_big = true;
            r = http(&S, "DELETE", path, NULL, NULL, 0);
        }
        if (r->status != 202) {
            show("blob DELETE", r);
            FAILF("a blob cannot be deleted%s", freed_big ? " even after 2 MiB were freed" : "");
        }
        resp_free(r);
        deleted++;
    }
    char out[8192];
    int rc = run_cli(&S, NULL, out, sizeof(out),
                     (const char *const[]){"gc", "--grace", "0", "--json", NULL});
    fprintf(stderr, "ocireg gc --grace 0 (exit %d): %s", rc, out);
    CHECK_INT(rc, ==, 0);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    CHECK_INT(json_integer_value(json_object_get(j, "blobs_removed")), >=, deleted);
    json_decref(j);
    CHECK(statvfs(S.root, &vfs) == 0);
    fprintf(stderr, "after gc: %llu KiB free\n",
            (unsigned long long)vfs.f_bavail * vfs.f_frsize / 1024);

    /* pushes succeed again, both kinds */
    for (int i = 0; i < 3; i++) {
        rel_fill(&seed, data, BLOB);
        char digest[72];
        bool refused_patch;
        struct resp *r = i % 2 == 0 ? push_mono(&S, data, BLOB, digest)
                                    : push_chunked(&S, data, BLOB, digest, &refused_patch);
        if (r->status != 201) {
            show("push after gc freed space", r);
            FAILF("push %d after deleting %d blobs and gc: %ld", i, deleted, r->status);
        }
        resp_free(r);
        blob_reads_back(&S, digest);
    }
    /* (gc --grace 0 also took the blobs no manifest references; when-full's stay) */
    if (manifest_stored) {
        CHECK_INT(status_of(&S, "GET", "/v2/" REPO "/manifests/when-full"), ==, 200);
        blob_reads_back(&S, stored[1]);
    }
    server_alive(&S);
    int fsck = rel_fsck(&S);
    if (fsck != 0)
        DEFER("ocireg fsck exited %d after space was freed (want 0)", fsck);
    free(data);
}

static uint64_t free_bytes(const char *path)
{
    struct statvfs vfs;
    CHECK(statvfs(path, &vfs) == 0);
    return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

/* An image of REPO: a shared config, a 1 MiB layer and a manifest tagged tag. Returns the
 * status of the first refused request (0: all stored); *mdg is the manifest's digest. */
static long push_image(struct srv *s, const char *cfg, const char *tag, char *mdg,
                       struct resp **refusal)
{
    static unsigned char layer[BLOB];
    rel_fill(&seed, layer, BLOB);
    char ld_s[72];
    struct resp *r = push_mono(s, layer, BLOB, ld_s);
    if (r->status != 201) {
        *refusal = r;
        return r->status;
    }
    resp_free(r);
    char body[1024];
    const char *ld[1] = {ld_s};
    size_t ll[1] = {BLOB};
    size_t n = rel_manifest(body, sizeof(body), cfg, strlen(CFG), ld, ll, 1, tag);
    sha256_str(body, n, mdg);
    r = put_manifest_body(s, REPO, tag, MT_MANIFEST, body);
    if (r->status != 201) {
        *refusal = r;
        return r->status;
    }
    resp_free(r);
    return 0;
}

static void reserve_phase(void)
{
    struct srv R = {.log_to_file = true};
    srv_start(&R, NULL);
    srv_stop(&R);
    if (mount("tmpfs", R.root, "tmpfs", 0, "size=24m,mode=0755") != 0)
        FAILF("cannot mount a second tmpfs on %s: %s", R.root, strerror(errno));
    const char *const args[] = {"--min-free-space", "4M", NULL};
    srv_restart(&R, args);
    fprintf(stderr, "reserve: server directory %s, --min-free-space 4M\n", R.dir);
    char cfg[72], digests[32][72];
    push_blob_data(&R, REPO, CFG, strlen(CFG), cfg);
    int pushed = 0;
    struct resp *refusal = NULL;
    long st = 0;
    while (pushed < 32) {
        char tag[16];
        snprintf(tag, sizeof(tag), "r%d", pushed);
        st = push_image(&R, cfg, tag, digests[pushed], &refusal);
        if (st != 0)
            break;
        pushed++;
    }
    uint64_t left = free_bytes(R.root);
    fprintf(stderr, "  %d images stored, then %ld %.300s; %llu KiB free\n", pushed, st,
            refusal != NULL ? refusal->body : "", (unsigned long long)left / 1024);
    if (st == 0)
        FAILF("reserve: 32 images of 1 MiB fit in a 24 MiB tmpfs?");
    if (st != 507 || strstr(refusal->body, "--min-free-space") == NULL) {
        show("push below the free-space reserve", refusal);
        FAILF("reserve: want 507 naming --min-free-space");
    }
    resp_free(refusal);
    CHECK_INT(pushed, >=, 5);
    CHECK_INT(left, >=, 3u << 20);
    /* reclaiming works at once, through the registry and gc */
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v2/%s/manifests/%.71s", REPO, digests[i]);
        struct resp *r = http(&R, "DELETE", path, NULL, NULL, 0);
        if (r->status != 202) {
            show("manifest DELETE below the free-space reserve", r);
            FAILF("reserve: a manifest DELETE was refused");
        }
        resp_free(r);
    }
    char out[8192];
    int rc = run_cli(&R, NULL, out, sizeof(out),
                     (const char *const[]){"gc", "--grace", "0", "--json", NULL});
    fprintf(stderr, "  ocireg gc --grace 0 (exit %d): %s", rc, out);
    CHECK_INT(rc, ==, 0);
    uint64_t after = free_bytes(R.root);
    fprintf(stderr, "  after 3 manifest DELETEs and gc: %llu KiB free\n",
            (unsigned long long)after / 1024);
    CHECK_INT(after, >=, left + (5u << 19)); /* the 3 MiB of layers, less index pages */
    char mdg[72];
    st = push_image(&R, cfg, "again", mdg, &refusal);
    if (st != 0) {
        show("push after gc freed space", refusal);
        FAILF("reserve: a push after gc was refused");
    }
    /* a reserve larger than the file system: a manifest PUT is refused too, even one that needs
     * no new blob (the image just pushed, under another tag), while a DELETE goes through */
    srv_stop(&R);
    srv_restart(&R, (const char *const[]){"--min-free-space", "64M", NULL});
    char mpath[256];
    snprintf(mpath, sizeof(mpath), "/v2/%s/manifests/%.71s", REPO, mdg);
    struct resp *m =
        http(&R, "GET", mpath, (const char *const[]){"Accept: " MT_MANIFEST, NULL}, NULL, 0);
    CHECK_INT(m->status, ==, 200);
    struct resp *r = put_manifest_body(&R, REPO, "retag", MT_MANIFEST, m->body);
    if (r->status != 507 || strstr(r->body, "--min-free-space") == NULL) {
        show("manifest PUT below the free-space reserve", r);
        FAILF("reserve: want 507 naming --min-free-space for a manifest PUT");
    }
    resp_free(r);
    resp_free(m);
    r = http(&R, "DELETE", mpath, NULL, NULL, 0);
    CHECK_INT(r->status, ==, 202);
    resp_free(r);
    server_alive(&R);
    int fsck = rel_fsck(&R);
    if (fsck != 0)
        DEFER("ocireg fsck exited %d after the reserve phase (want 0)", fsck);
    srv_stop(&R);
    CHECK(umount(R.root) == 0);
    srv_cleanup(&R);
}

static void map_phase(void)
{
    struct srv M = {.log_to_file = true};
    srv_start(&M, (const char *const[]){"--map-size", "1048576", NULL});
    char cfg[72], layer[72];
    const char *cfgtext = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    push_blob_data(&M, REPO, cfgtext, strlen(cfgtext), cfg);
    unsigned char lbuf[4096];
    rel_fill(&seed, lbuf, sizeof(lbuf));
    push_blob_data(&M, REPO, lbuf, sizeof(lbuf), layer);
    const char *ld[1] = {layer};
    size_t ll[1] = {sizeof(lbuf)};
    static char body[8192], first[8192], last[8192];
    static char pad[3001];
    size_t first_len = 0, last_len = 0;
    char last_tag[32] = "";
    int acked = 0;
    struct resp *r = NULL;
    for (int i = 0; i < 5000; i++) {
        for (size_t k = 0; k + 1 < sizeof(pad); k++)
            pad[k] = "abcdefghijklmnopqrstuvwxyz0123456789"[rel_rand(&seed) % 36];
        size_t n = rel_manifest(body, sizeof(body), cfg, strlen(cfgtext), ld, ll, 1, pad);
        char tag[32];
        snprintf(tag, sizeof(tag), "t%d", i);
        r = put_manifest_body(&M, REPO, tag, MT_MANIFEST, body);
        if (r->status != 201)
            break;
        resp_free(r);
        r = NULL;
        acked++;
        if (i == 0) {
            memcpy(first, body, n);
            first_len = n;
        }
        memcpy(last, body, n);
        last_len = n;
        snprintf(last_tag, sizeof(last_tag), "%s", tag);
    }
    if (r == NULL)
        FAILF("5000 manifests of 3 KiB fit in a 1 MiB LMDB map?");
    fprintf(stderr, "map: %d manifests acknowledged, then %ld %.300s\n", acked, r->status,
            r->body);
    expect_storage_error(r, "manifest PUT with the LMDB map full");
    resp_free(r);
    char refused_digest[72], path[256];
    sha256_str(body, strlen(body), refused_digest);
    server_alive(&M);
    snprintf(path, sizeof(path), "/v2/%s/manifests/t%d", REPO, acked);
    CHECK_INT(status_of(&M, "GET", path), ==, 404);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", REPO, refused_digest);
    CHECK_INT(status_of(&M, "GET", path), ==, 404);
    /* what was acknowledged reads back */
    r = http(&M, "GET", "/v2/" REPO "/manifests/t0", (const char *[]){"Accept: " MT_MANIFEST, NULL},
             NULL, 0);
    CHECK(r->status == 200 && r->len == first_len && memcmp(r->body, first, first_len) == 0);
    resp_free(r);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", REPO, last_tag);
    r = http(&M, "GET", path, (const char *[]){"Accept: " MT_MANIFEST, NULL}, NULL, 0);
    CHECK(r->status == 200 && r->len == last_len && memcmp(r->body, last, last_len) == 0);
    resp_free(r);
    r = http(&M, "GET", "/v2/" REPO "/tags/list", NULL, NULL, 0);
    CHECK_INT(r->status, ==, 200);
    resp_free(r);
    /* more writes on the full map: refused the same way, never a crash */
    for (int i = 0; i < 5; i++) {
        rel_fill(&seed, lbuf, sizeof(lbuf));
        char d[72];
        r = push_mono(&M, lbuf, sizeof(lbuf), d);
        fprintf(stderr, "  blob push with the map full: %ld %.200s\n", r->status, r->body);
        if (r->status != 201) {
            expect_storage_error(r, "blob push with the LMDB map full");
            blob_absent(&M, d);
        }
        resp_free(r);
        r = put_manifest_body(&M, REPO, "more", MT_MANIFEST, body);
        if (r->status != 201)
            expect_storage_error(r, "manifest PUT with the LMDB map full");
        resp_free(r);
        server_alive(&M);
    }
    srv_stop(&M); /* exit 0 even though its last counter flush cannot be stored */
    int fsck = rel_fsck(&M);
    srv_cleanup(&M);
    if (fsck != 0)
        DEFER("ocireg fsck exited %d after the LMDB map filled up (want 0)", fsck);
}

int main(void)
{
    double t0 = rel_now();
    if (geteuid() != 0) {
        printf("SKIP: disk_full mounts a tmpfs and needs root\n");
        return 77;
    }
    /* a mount namespace of our own: the tmpfs goes away with this process and its children */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        printf("SKIP: cannot make a private mount namespace: %s\n", strerror(errno));
        return 77;
    }
    S.log_to_file = true;
    if (getenv("REL_LOG_LEVEL") != NULL)
        snprintf(S.log_level, sizeof(S.log_level), "%s", getenv("REL_LOG_LEVEL"));
    srv_start(&S, NULL);
    fprintf(stderr, "server directory %s (log: server.log)\n", S.dir);
    srv_stop(&S);
    if (mount("tmpfs", S.root, "tmpfs", 0, "size=24m,mode=0755") != 0) {
        printf("SKIP: cannot mount a tmpfs on %s: %s\n", S.root, strerror(errno));
        srv_cleanup(&S);
        return 77;
    }
    ballast_make();
    srv_restart(&S, NULL);
    disk_phase();
    double t1 = rel_now();
    srv_stop(&S);
    CHECK(umount(S.root) == 0);
    srv_cleanup(&S);
    reserve_phase();
    map_phase();
    if (deferred > 0)
        FAILF("%d failures (above)", deferred);
    fprintf(stderr, "disk_full: PASS in %.1f s (disk %.1f s, map %.1f s)\n", rel_now() - t0,
            t1 - t0, rel_now() - t1);
    return 0;
}
