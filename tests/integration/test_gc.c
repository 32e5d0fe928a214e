/*
 * The online garbage collector against a running server: multi-arch children kept,
 * referrers kept with their subject and removed after it, untagged manifests, the grace
 * period, shared layers across repositories, dry runs, abandoned uploads, crash orphans,
 * exact accounting afterwards, and a stress run of pushes racing repeated collections in
 * which every acknowledged image still pulls.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"

static struct srv S;

/* Runs ocireg gc with the given flags (plus --json); returns the report. OWNED json. */
static json_t *gc(const char *const *flags)
{
    const char *args[16] = {"gc", "--json"};
    int n = 2;
    for (size_t i = 0; flags[i] != NULL && n < 15; i++)
        args[n++] = flags[i];
    args[n] = NULL;
    char out[4096];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), args), ==, 0);
    json_t *j = json_loads(out, 0, NULL);
    if (j == NULL) {
        fprintf(stderr, "gc printed: %s\n", out);
        abort();
    }
    return j;
}

static long long field(json_t *j, const char *name)
{
    return json_integer_value(json_object_get(j, name));
}

static long status_of(const char *method, const char *path)
{
    struct resp *r = http(&S, method, path, NULL, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

/* An image: config and one layer of the given contents; its manifest PUT under ref. */
static void image(const char *repo, const char *ref, const char *cfg, const char *layer,
                  const char *extra, char *mdigest, char *body, size_t cap)
{
    char cd[80], ld[80];
    push_blob_data(&S, repo, cfg, strlen(cfg), cd);
    push_blob_data(&S, repo, layer, strlen(layer), ld);
    snprintf(body, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
             "\"%s\",\"size\":%zu}]%s}",
             cd, strlen(cfg), ld, strlen(layer), extra ? extra : "");
    sha256_str(body, strlen(body), mdigest);
    struct resp *r = put_manifest_body(&S, repo, ref != NULL ? ref : mdigest, MT_MANIFEST, body);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

static void blob_path(char *out, size_t cap, const char *repo, const char *data)
{
    char d[80];
    sha256_str(data, strlen(data), d);
    snprintf(out, cap, "/v2/%s/blobs/%s", repo, d);
}

static void test_keep_rules(void)
{
    char m_amd[80], m_arm[80], b1[1024], b2[1024], idx_body[2048], idx_d[80], path[256];
    /* a two-platform index, its children untagged */
    image("gc/multi", NULL, "{\"os\":\"linux\",\"arch\":\"amd64\"}", "amd64 layer", NULL, m_amd,
          b1, sizeof(b1));
    image("gc/multi", NULL, "{\"os\":\"linux\",\"arch\":\"arm64\"}", "arm64 layer", NULL, m_arm,
          b2, sizeof(b2));
    snprintf(idx_body, sizeof(idx_body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":["
             "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu},"
             "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu}]}",
             m_amd, strlen(b1), m_arm, strlen(b2));
    struct resp *r = put_manifest_body(&S, "gc/multi", "v1", MT_INDEX, idx_body);
    EXPECT(r, 201, NULL);
    resp_free(r);
    sha256_str(idx_body, strlen(idx_body), idx_d);
    /* a signature of the amd64 image (untagged referrer), and a stray untagged image */
    char sig_d[80], sig[1024], stray_d[80], stray[1024], extra[256];
    snprintf(extra, sizeof(extra),
             ",\"subject\":{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu}",
             m_amd, strlen(b1));
    image("gc/multi", NULL, "{}", "signature bytes", extra, sig_d, sig, sizeof(sig));
    image("gc/multi", NULL, "{\"stray\":1}", "stray layer", NULL, stray_d, stray, sizeof(stray));
    /* a blob linked but referenced by nothing, and one more repository sharing a layer */
    char d[80];
    push_blob_data(&S, "gc/multi", "loose blob", 10, d);
    char shared_d[80], shared[1024];
    image("gc/other", "keep", "{\"other\":1}", "amd64 layer", NULL, shared_d, shared,
          sizeof(shared));

    /* dry run: the figures of a real run, nothing changed */
    json_t *dry = gc((const char *[]){"--dry-run", "--delete-untagged", "--grace", "0", NULL});
    CHECK_INT(field(dry, "manifests_removed"), ==, 1); /* the stray */
    CHECK_INT(field(dry, "links_removed"), ==, 3);     /* stray config+layer, loose blob */
    CHECK_INT(field(dry, "blobs_removed"), ==, 3);
    snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", stray_d);
    CHECK_INT(status_of("GET", path), ==, 200);
    /* with the default grace (1 h), nothing young goes */
    json_t *young = gc((const char *[]){"--delete-untagged", NULL});
    CHECK_INT(field(young, "links_removed"), ==, 0);
    CHECK_INT(field(young, "blobs_removed"), ==, 0);
    json_decref(young);
    json_t *real = gc((const char *[]){"--delete-untagged", "--grace", "0", NULL});
    CHECK_INT(field(real, "manifests_removed"), ==, field(dry, "manifests_removed"));
    CHECK_INT(field(real, "links_removed"), ==, field(dry, "links_removed"));
    CHECK_INT(field(real, "blobs_removed"), ==, field(dry, "blobs_removed"));
    CHECK_INT(field(real, "blob_bytes_removed"), ==, field(dry, "blob_bytes_removed"));
    json_decref(dry);
    json_decref(real);
    CHECK_INT(status_of("GET", path), ==, 404);
    blob_path(path, sizeof(path), "gc/multi", "loose blob");
    CHECK_INT(status_of("GET", path), ==, 404);
    /* kept: the index, both children, the signature, every layer they use */
    CHECK_INT(status_of("GET", "/v2/gc/multi/manifests/v1"), ==, 200);
    const char *kept[] = {m_amd, m_arm, sig_d};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", kept[i]);
        CHECK_INT(status_of("GET", path), ==, 200);
    }
    blob_path(path, sizeof(path), "gc/multi", "arm64 layer");
    CHECK_INT(status_of("GET", path), ==, 200);
    blob_path(path, sizeof(path), "gc/multi", "signature bytes");
    CHECK_INT(status_of("GET", path), ==, 200);

    /* the subject goes: its signature follows; the layer shared with gc/other stays */
    snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", idx_d);
    CHECK_INT(status_of("DELETE", path), ==, 202);
    snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", m_amd);
    CHECK_INT(status_of("DELETE", path), ==, 202);
    json_t *after = gc((const char *[]){"--delete-untagged", "--grace", "0", NULL});
    json_decref(after);
    snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", sig_d);
    CHECK_INT(status_of("GET", path), ==, 404);
    snprintf(path, sizeof(path), "/v2/gc/multi/manifests/%s", m_arm);
    CHECK_INT(status_of("GET", path), ==, 404); /* untagged, no index holds it any more */
    blob_path(path, sizeof(path), "gc/other", "amd64 layer");
    CHECK_INT(status_of("GET", path), ==, 200);
    CHECK_INT(status_of("GET", "/v2/gc/other/manifests/keep"), ==, 200);

    /* without --delete-untagged, untagged manifests stay */
    char u_d[80], u[1024];
    image("gc/untagged", NULL, "{\"u\":1}", "untagged layer", NULL, u_d, u, sizeof(u));
    json_decref(gc((const char *[]){"--grace", "0", NULL}));
    snprintf(path, sizeof(path), "/v2/gc/untagged/manifests/%s", u_d);
    CHECK_INT(status_of("GET", path), ==, 200);

    /* the accounting is exact afterwards: every file on disk is a blob the index counts */
    char out[4096];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"usage", "--json", NULL}), ==, 0);
    json_t *u_all = json_loads(out, 0, NULL);
    CHECK(u_all != NULL);
    long long blobs = json_integer_value(json_object_get(json_object_get(u_all, "registry"), "blobs"));
    CHECK_INT(blobs, ==, count_files(S.root, "blobs"));
    json_decref(u_all);
}

static void test_uploads_and_orphans(void)
{
    char loc[512];
    struct resp *r = http(&S, "POST", "/v2/gc/up/blobs/uploads/", NULL, "", 0);
    EXPECT(r, 202, NULL);
    resp_hdr(r, "Location", loc, sizeof(loc));
    resp_free(r);
    r = http(&S, "PATCH", loc, NULL, "partial", 7);
    EXPECT(r, 202, NULL);
    resp_free(r);
    /* a blob file a crash left behind: named by its digest, recorded nowhere */
    char d[80], path[512];
    sha256_str("orphan", 6, d);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s", S.root, d + 7);
    mkdir(path, 0755);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", d + 7);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd != -1 && write(fd, "orphan", 6) == 6);
    close(fd);
    json_t *j = gc((const char *[]){"--grace", "0", "--upload-max-age", "0", NULL});
    CHECK_INT(field(j, "uploads_removed"), ==, 1);
    CHECK_INT(field(j, "upload_bytes_removed"), ==, 7);
    CHECK_INT(field(j, "orphans_removed"), ==, 1);
    json_decref(j);
    CHECK(access(path, F_OK) != 0);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
    r = http(&S, "GET", loc, NULL, NULL, 0);
    EXPECT(r, 404, "BLOB_UPLOAD_UNKNOWN");
    resp_free(r);
}

/* Pushes images with a shared base layer in a loop; records each acknowledged manifest. */
static void pusher(int id, const char *logpath)
{
    FILE *log = fopen(logpath, "w");
    CHECK(log != NULL);
    for (int i = 0; i < 40; i++) {
        char cfg[64], layer[64], body[1024], md[80], repo[32], tag[16];
        snprintf(repo, sizeof(repo), "stress/p%d", id);
        snprintf(cfg, sizeof(cfg), "{\"p\":%d,\"i\":%d}", id, i);
        snprintf(layer, sizeof(layer), "layer %d of pusher %d", i, id);
        snprintf(tag, sizeof(tag), "t%d", i % 5); /* tags move: old images become untagged */
        char cd[80], ld[80], bd[80];
        push_blob_data(&S, repo, cfg, strlen(cfg), cd);
        push_blob_data(&S, repo, "shared base layer", 17, bd);
        push_blob_data(&S, repo, layer, strlen(layer), ld);
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
                 "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
                 "\"%s\",\"size\":17},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"%s\",\"size\":%zu}]}",
                 cd, strlen(cfg), bd, ld, strlen(layer));
        struct resp *r = put_manifest_body(&S, repo, tag, MT_MANIFEST, body);
        if (r->status == 201) {
            sha256_str(body, strlen(body), md);
            fprintf(log, "%s %s %s\n", repo, tag, md);
        }
        resp_free(r);
    }
    fclose(log);
}

static void test_stress(void)
{
    char logs[3][256];
    pid_t pids[3];
    for (int p = 0; p < 3; p++) {
        snprintf(logs[p], sizeof(logs[p]), "%s/pusher%d.log", S.dir, p);
        pids[p] = fork();
        CHECK(pids[p] != -1);
        if (pids[p] == 0) {
            pusher(p, logs[p]);
            _exit(0);
        }
    }
    /* collections race the pushes; the default grace (1h) keeps pushes in progress safe: an
     * image untagged by a moving tag is younger than the grace too, so nothing at all goes */
    int running = 3;
    while (running > 0) {
        json_t *j = gc((const char *[]){"--delete-untagged", NULL});
        CHECK_INT(field(j, "manifests_removed"), ==, 0);
        CHECK_INT(field(j, "blobs_removed"), ==, 0);
        CHECK_INT(field(j, "links_removed"), ==, 0);
        json_decref(j);
        for (int p = 0; p < 3; p++) {
            int st;
            if (pids[p] > 0 && waitpid(pids[p], &st, WNOHANG) == pids[p]) {
                CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                pids[p] = 0;
                running--;
            }
        }
    }
    /* the last acknowledged image of every tag pulls, manifest and blobs */
    int checked = 0;
    for (int p = 0; p < 3; p++) {
        FILE *f = fopen(logs[p], "r");
        CHECK(f != NULL);
        char repo[32], tag[16], md[80], last[5][80] = {{0}};
        while (fscanf(f, "%31s %15s %79s", repo, tag, md) == 3)
            snprintf(last[atoi(tag + 1)], sizeof(last[0]), "%s", md);
        fclose(f);
        for (int t = 0; t < 5; t++) {
            char path[256];
            snprintf(path, sizeof(path), "/v2/stress/p%d/manifests/t%d", p, t);
            struct resp *r = http(&S, "GET", path, NULL, NULL, 0);
            EXPECT(r, 200, NULL);
            char h[128];
            CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), last[t]);
            json_t *m = json_loads(r->body, 0, NULL);
            resp_free(r);
            json_t *layers = json_object_get(m, "layers");
            for (size_t i = 0; i < json_array_size(layers); i++) {
                snprintf(path, sizeof(path), "/v2/stress/p%d/blobs/%s", p,
                         json_string_value(json_object_get(json_array_get(layers, i), "digest")));
                CHECK_INT(status_of("GET", path), ==, 200);
            }
            json_decref(m);
            checked++;
        }
    }
    CHECK_INT(checked, ==, 15);
    /* a final collection with no grace leaves exactly what the tags reference */
    json_decref(gc((const char *[]){"--delete-untagged", "--grace", "0", NULL}));
    int files = count_files(S.root, "blobs");
    /* per pusher: 5 tags x (config + own layer), the shared base stored once overall, and
     * gc/other's two blobs (gc/untagged's image is untagged, so it went too) */
    CHECK_INT(files, ==, 3 * 5 * 2 + 1 + 2);
    (void)files;
}

static void test_immutable_tags_and_repo_delete(void)
{
    char m1[80], m2[80], b1[1024], b2[1024], out[512];
    image("gc/imm", "v1", "{\"imm\":1}", "imm layer one", NULL, m1, b1, sizeof(b1));
    image("gc/imm", "latest", "{\"imm\":1}", "imm layer one", NULL, m1, b1, sizeof(b1));
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "set", "gc/imm", "--tag-mutability", "immutable",
                                       "--exclude", "latest", NULL}),
              ==, 0);
    char cd[80], ld[80];
    push_blob_data(&S, "gc/imm", "{\"imm\":2}", 9, cd);
    push_blob_data(&S, "gc/imm", "imm layer two", 13, ld);
    snprintf(b2, sizeof(b2),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":9},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
             "\"%s\",\"size\":13}]}",
             cd, ld);
    sha256_str(b2, strlen(b2), m2);
    /* v1 may not move, and the refused PUT stores nothing at all */
    struct resp *r = put_manifest_body(&S, "gc/imm", "v1", MT_MANIFEST, b2);
    EXPECT(r, 409, "TAG_INVALID");
    CHECK(strstr(r->body, "immutable") != NULL);
    resp_free(r);
    char path[256];
    snprintf(path, sizeof(path), "/v2/gc/imm/manifests/%s", m2);
    CHECK_INT(status_of("GET", path), ==, 404);
    r = http(&S, "GET", "/v2/gc/imm/manifests/v1", NULL, NULL, 0);
    char h[128];
    CHECK_STR(resp_hdr(r, "Docker-Content-Digest", h, sizeof(h)), m1);
    resp_free(r);
    /* re-pushing the same image under v1 is fine; excluded tags and new tags move freely */
    r = put_manifest_body(&S, "gc/imm", "v1", MT_MANIFEST, b1);
    EXPECT(r, 201, NULL);
    resp_free(r);
    r = put_manifest_body(&S, "gc/imm", "latest", MT_MANIFEST, b2);
    EXPECT(r, 201, NULL);
    resp_free(r);
    r = put_manifest_body(&S, "gc/imm", "v2", MT_MANIFEST, b2);
    EXPECT(r, 201, NULL);
    resp_free(r);

    /* delete the whole repository: a layer shared with another repository stays */
    char om[80], ob[1024];
    image("gc/imm-other", "keep", "{\"o\":1}", "imm layer one", NULL, om, ob, sizeof(ob));
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"repo", "delete", "gc/imm", NULL}),
              ==, 0);
    CHECK_INT(status_of("GET", "/v2/gc/imm/manifests/v1"), ==, 404);
    CHECK_INT(status_of("GET", "/v2/gc/imm/tags/list"), ==, 404);
    json_decref(gc((const char *[]){"--grace", "0", NULL}));
    char bp[256];
    blob_path(bp, sizeof(bp), "gc/imm-other", "imm layer one");
    CHECK_INT(status_of("GET", bp), ==, 200);
    blob_path(bp, sizeof(bp), "gc/imm", "imm layer two");
    CHECK_INT(status_of("GET", bp), ==, 404);
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"repo", "delete", "gc/imm", NULL}),
              ==, 1);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL && fputs(text, f) >= 0);
    fclose(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * gc (as gc() does), its standard error, where it names each image a lifecycle rule expires,
 * kept in the file errpath (the child inherits this process's fd 2 for the run). OWNED json.
 */
static json_t *gc_listing(const char *const *flags, const char *errpath)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved != -1 && fd != -1 && dup2(fd, STDERR_FILENO) != -1);
    close(fd);
    json_t *j = gc(flags);
    fflush(stderr);
    CHECK(dup2(saved, STDERR_FILENO) != -1);
    close(saved);
    return j;
}

/* The images gc_listing's file says rule expired in repo, sorted, one "digest\n" each. */
static void expired_by(const char *errpath, const char *repo, int rule, char *out, size_t cap)
{
    char prefix[256], line[512], *lines[16];
    int n = 0;
    snprintf(prefix, sizeof(prefix), "gc: lifecycle rule %d of %s expires ", rule, repo);
    FILE *f = fopen(errpath, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL && n < 16)
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            lines[n++] = strdup(line + strlen(prefix));
    fclose(f);
    qsort(lines, (size_t)n, sizeof(lines[0]), cmp_str);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s", lines[i]);
        free(lines[i]);
    }
}

/* The image of image() under more tags: the same manifest PUT under each. */
static void retag(const char *repo, const char *body, const char *const *tags)
{
    for (size_t i = 0; tags[i] != NULL; i++) {
        struct resp *r = put_manifest_body(&S, repo, tags[i], MT_MANIFEST, body);
        EXPECT(r, 201, NULL);
        resp_free(r);
    }
}

/*
 * Several entries in tagPatternList or tagPrefixList select only the images carrying tags
 * that match every entry (the cloud format's rule). Run before test_lifecycle, so that no
 * other repository has a policy yet and policy_expired counts this repository's alone.
 */
static void test_lifecycle_tag_lists(void)
{
    char pol[256], out[4096], b[1024];
    char both[80], stable[80], dep_only[80], rel_only[80], ab[80], a_only[80], b_only[80];
    image("gc/lists", "release-1", "{\"lists\":1}", "lists layer 1", NULL, both, b, sizeof(b));
    retag("gc/lists", b, (const char *[]){"1-deprecated", NULL});
    image("gc/lists", "release-2", "{\"lists\":2}", "lists layer 2", NULL, stable, b, sizeof(b));
    retag("gc/lists", b, (const char *[]){"stable", NULL});
    image("gc/lists", "3-deprecated", "{\"lists\":3}", "lists layer 3", NULL, dep_only, b,
          sizeof(b));
    image("gc/lists", "release-4", "{\"lists\":4}", "lists layer 4", NULL, rel_only, b,
          sizeof(b));
    image("gc/lists", "alpha-1", "{\"lists\":5}", "lists layer 5", NULL, ab, b, sizeof(b));
    retag("gc/lists", b, (const char *[]){"beta-1", NULL});
    image("gc/lists", "alpha-2", "{\"lists\":6}", "lists layer 6", NULL, a_only, b, sizeof(b));
    image("gc/lists", "beta-2", "{\"lists\":7}", "lists layer 7", NULL, b_only, b, sizeof(b));
    snprintf(pol, sizeof(pol), "%s/lists.json", S.dir);
    write_file(pol,
               "{\"rules\":["
               "{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\",\"tagPatternList\":"
               "[\"release-*\",\"*-deprecated\"],\"countType\":\"sinceImagePushed\","
               "\"countUnit\":\"days\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}},"
               "{\"rulePriority\":2,\"selection\":{\"tagStatus\":\"tagged\",\"tagPrefixList\":"
               "[\"alpha\",\"beta\"],\"countType\":\"sinceImagePushed\",\"countUnit\":"
               "\"days\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/lists", pol, NULL}),
              ==, 0);
    /* two days on, each rule expires the one image carrying tags for all of its entries */
    time_t later = time(NULL) + 2 * 86400;
    struct tm tm;
    gmtime_r(&later, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *j = gc((const char *[]){"--grace", "0", "--as-of", when, NULL});
    CHECK_INT(field(j, "policy_expired"), ==, 2);
    json_decref(j);
    const struct {
        const char *what;
        const char *digest;
        long status;
    } want[] = {
        {"release-1 + 1-deprecated: both patterns", both, 404},
        {"release-2 + stable: release-* only", stable, 200},
        {"3-deprecated: *-deprecated only", dep_only, 200},
        {"release-4: release-* only", rel_only, 200},
        {"alpha-1 + beta-1: both prefixes", ab, 404},
        {"alpha-2: alpha only", a_only, 200},
        {"beta-2: beta only", b_only, 200},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v2/gc/lists/manifests/%s", want[i].digest);
        long st = status_of("GET", path);
        if (st != want[i].status) {
            fprintf(stderr, "%s: GET answered %ld, want %ld\n", want[i].what, st,
                    want[i].status);
            abort();
        }
    }
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "delete", "gc/lists", NULL}),
              ==, 0);
}

static void test_lifecycle(void)
{
    char pol[256], out[4096];
    snprintf(pol, sizeof(pol), "%s/policy.json", S.dir);
    /* refused, naming the bad field */
    write_file(pol, "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"any\","
                    "\"countType\":\"sinceImagePushed\",\"countNumber\":3},"
                    "\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/life", pol, NULL}),
              ==, 1);
    write_file(pol, "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"sometimes\","
                    "\"countType\":\"imageCountMoreThan\",\"countNumber\":3},"
                    "\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/life", pol, NULL}),
              ==, 1);
    /* three release images a second apart, a dev image, an untagged one */
    char d1[80], d2[80], d3[80], dd[80], du[80], b[1024];
    image("gc/life", "v1", "{\"life\":1}", "life layer 1", NULL, d1, b, sizeof(b));
    sleep(1);
    image("gc/life", "v2", "{\"life\":2}", "life layer 2", NULL, d2, b, sizeof(b));
    sleep(1);
    image("gc/life", "v3", "{\"life\":3}", "life layer 3", NULL, d3, b, sizeof(b));
    image("gc/life", "dev-1", "{\"life\":4}", "life layer 4", NULL, dd, b, sizeof(b));
    image("gc/life", NULL, "{\"life\":5}", "life layer 5", NULL, du, b, sizeof(b));
    write_file(pol,
               "{\"rules\":["
               "{\"rulePriority\":1,\"description\":\"keep two releases\",\"selection\":"
               "{\"tagStatus\":\"tagged\",\"tagPatternList\":[\"v*\"],\"countType\":"
               "\"imageCountMoreThan\",\"countNumber\":2},\"action\":{\"type\":\"expire\"}},"
               "{\"rulePriority\":2,\"selection\":{\"tagStatus\":\"untagged\",\"countType\":"
               "\"sinceImagePushed\",\"countUnit\":\"days\",\"countNumber\":1},"
               "\"action\":{\"type\":\"expire\"}},"
               "{\"rulePriority\":3,\"selection\":{\"tagStatus\":\"tagged\",\"tagPrefixList\":"
               "[\"dev-\"],\"countType\":\"sinceImagePulled\",\"countUnit\":\"days\","
               "\"countNumber\":7},\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/life", pol, NULL}),
              ==, 0);
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "get", "gc/life", NULL}),
              ==, 0);
    CHECK(strstr(out, "keep two releases") != NULL);
    /* today: only the oldest release goes (the dry run says so and changes nothing) */
    char errs[256], listed[1024], want[1024];
    snprintf(errs, sizeof(errs), "%s/gc-expired.txt", S.dir);
    json_t *j = gc_listing((const char *[]){"--dry-run", "--grace", "0", NULL}, errs);
    CHECK_INT(field(j, "policy_expired"), ==, 1);
    json_decref(j);
    expired_by(errs, "gc/life", 1, listed, sizeof(listed));
    snprintf(want, sizeof(want), "%s\n", d1);
    CHECK_STR(listed, want);
    char path[256];
    snprintf(path, sizeof(path), "/v2/gc/life/manifests/%s", d1);
    CHECK_INT(status_of("GET", path), ==, 200);
    j = gc((const char *[]){"--grace", "0", NULL});
    CHECK_INT(field(j, "policy_expired"), ==, 1);
    CHECK_INT(field(j, "manifests_removed"), ==, 1);
    json_decref(j);
    CHECK_INT(status_of("GET", path), ==, 404);
    CHECK_INT(status_of("GET", "/v2/gc/life/manifests/v1"), ==, 404);
    CHECK_INT(status_of("GET", "/v2/gc/life/manifests/v2"), ==, 200);
    CHECK_INT(status_of("GET", "/v2/gc/life/manifests/v3"), ==, 200);
    /* eight days on: the untagged image (pushed) and the dev image (never pulled) go too */
    time_t later = time(NULL) + 8 * 86400;
    struct tm tm;
    gmtime_r(&later, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    j = gc_listing((const char *[]){"--dry-run", "--grace", "0", "--as-of", when, NULL}, errs);
    CHECK_INT(field(j, "policy_expired"), ==, 2);
    json_decref(j);
    expired_by(errs, "gc/life", 1, listed, sizeof(listed));
    CHECK_STR(listed, ""); /* v2 and v3 are the two releases kept */
    expired_by(errs, "gc/life", 2, listed, sizeof(listed));
    snprintf(want, sizeof(want), "%s\n", du);
    CHECK_STR(listed, want);
    expired_by(errs, "gc/life", 3, listed, sizeof(listed));
    snprintf(want, sizeof(want), "%s\n", dd);
    CHECK_STR(listed, want);
    CHECK_INT(status_of("GET", "/v2/gc/life/manifests/dev-1"), ==, 200);
}

/* Waits, polling the clock, until the current second is past t. */
static void wait_past(time_t t)
{
    for (int i = 0; time(NULL) <= t; i++) {
        CHECK(i < 500);
        usleep(10000);
    }
}

/* Waits (with a deadline) until the pulls of repo reach the index (flushed every second). */
static void wait_pulls(const char *repo, int pulls)
{
    char out[4096], want[32];
    snprintf(want, sizeof(want), "\"pulls\":%d,", pulls);
    for (int i = 0;; i++) {
        CHECK(i < 500);
        CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                          (const char *[]){"usage", "--json", repo, NULL}),
                  ==, 0);
        if (strstr(out, want) != NULL)
            return;
        usleep(20000);
    }
}

static void iso_time(char *out, size_t cap, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * sinceImagePulled counts from the last pull, not the push; and no lifecycle rule expires an
 * image younger than the grace period (a push may still be completing: its index or its tag
 * may be on the way).
 */
static void test_lifecycle_pulls_and_grace(void)
{
    char pol[256], out[4096], da[80], db[80], b[1024], when[32], path[256];
    snprintf(pol, sizeof(pol), "%s/policy-pulled.json", S.dir);
    image("gc/pulled", "dev-a", "{\"pulled\":\"a\"}", "pulled layer a", NULL, da, b, sizeof(b));
    image("gc/pulled", "dev-b", "{\"pulled\":\"b\"}", "pulled layer b", NULL, db, b, sizeof(b));
    time_t pushed_by = time(NULL);
    /* dev-a is pulled in a later second than both pushes; dev-b never */
    wait_past(pushed_by);
    CHECK_INT(status_of("GET", "/v2/gc/pulled/manifests/dev-a"), ==, 200);
    wait_pulls("gc/pulled", 1);
    write_file(pol, "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\","
                    "\"tagPrefixList\":[\"dev-\"],\"countType\":\"sinceImagePulled\","
                    "\"countUnit\":\"days\",\"countNumber\":7},\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/pulled", pol, NULL}),
              ==, 0);
    /* seven days after the pushes: dev-b's week is over, dev-a's (from its pull) is not */
    iso_time(when, sizeof(when), pushed_by + 7 * 86400);
    json_decref(gc((const char *[]){"--grace", "0", "--as-of", when, NULL}));
    snprintf(path, sizeof(path), "/v2/gc/pulled/manifests/%s", db);
    CHECK_INT(status_of("GET", path), ==, 404);
    CHECK_INT(status_of("GET", "/v2/gc/pulled/manifests/dev-b"), ==, 404);
    snprintf(path, sizeof(path), "/v2/gc/pulled/manifests/%s", da);
    CHECK_INT(status_of("GET", path), ==, 200);
    CHECK_INT(status_of("GET", "/v2/gc/pulled/manifests/dev-a"), ==, 200);

    /* two releases, the older one a second before the other; a rule keeps one */
    char d1[80], d2[80];
    image("gc/young", "v1", "{\"young\":1}", "young layer 1", NULL, d1, b, sizeof(b));
    wait_past(time(NULL));
    image("gc/young", "v2", "{\"young\":2}", "young layer 2", NULL, d2, b, sizeof(b));
    write_file(pol, "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\","
                    "\"tagPatternList\":[\"v*\"],\"countType\":\"imageCountMoreThan\","
                    "\"countNumber\":1},\"action\":{\"type\":\"expire\"}}]}");
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "policy", "set", "gc/young", pol, NULL}),
              ==, 0);
    /* within the default grace (1 h) the rule expires nothing, dry run or not */
    json_decref(gc((const char *[]){"--dry-run", NULL}));
    json_decref(gc((const char *[]){NULL}));
    snprintf(path, sizeof(path), "/v2/gc/young/manifests/%s", d1);
    CHECK_INT(status_of("GET", path), ==, 200);
    CHECK_INT(status_of("GET", "/v2/gc/young/manifests/v1"), ==, 200);
    /* nor with a grace longer than the images' age, two hours on */
    iso_time(when, sizeof(when), time(NULL) + 2 * 3600);
    json_decref(gc((const char *[]){"--grace", "3h", "--as-of", when, NULL}));
    CHECK_INT(status_of("GET", path), ==, 200);
    /* past the grace, the older release goes and the newer stays */
    json_decref(gc((const char *[]){"--grace", "1h", "--as-of", when, NULL}));
    CHECK_INT(status_of("GET", path), ==, 404);
    CHECK_INT(status_of("GET", "/v2/gc/young/manifests/v1"), ==, 404);
    snprintf(path, sizeof(path), "/v2/gc/young/manifests/%s", d2);
    CHECK_INT(status_of("GET", path), ==, 200);
    CHECK_INT(status_of("GET", "/v2/gc/young/manifests/v2"), ==, 200);
}

static void blob_file(char *out, size_t cap, const char *data)
{
    char d[80];
    sha256_str(data, strlen(data), d);
    snprintf(out, cap, "%s/blobs/sha256/%.2s/%s", S.root, d + 7, d + 7);
}

static void test_fsck(void)
{
    char out[8192];
    int rc = run_cli(&S, NULL, out, sizeof(out), (const char *[]){"fsck", NULL});
    if (rc != 0) {
        fprintf(stderr, "fsck of a healthy registry: %s\n", out);
        abort();
    }
    CHECK(strstr(out, "0 corrupted, 0 missing, 0 orphan files, 0 count problems") != NULL);
    /* a flipped byte */
    char m[80], body[1024], path[512];
    image("gc/fsck", "v1", "{\"fsck\":1}", "bytes that will rot", NULL, m, body, sizeof(body));
    blob_file(path, sizeof(path), "bytes that will rot");
    int fd = open(path, O_WRONLY);
    CHECK(fd != -1 && pwrite(fd, "R", 1, 3) == 1);
    close(fd);
    /* a missing file */
    char gone[512];
    blob_file(gone, sizeof(gone), "{\"fsck\":1}");
    CHECK(unlink(gone) == 0);
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"fsck", NULL}), ==, 1);
    CHECK(strstr(out, "corrupted") != NULL && strstr(out, "does not match") != NULL);
    CHECK(strstr(out, "missing") != NULL);
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"fsck", "--repair", "--json",
                                                                     NULL}),
              ==, 1);
    CHECK(strstr(out, "\"corrupted\":1") != NULL);
    /* the corrupted blob is out of service: never served */
    char bp[256];
    blob_path(bp, sizeof(bp), "gc/fsck", "bytes that will rot");
    CHECK_INT(status_of("GET", bp), ==, 404);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/quarantine", S.root);
    CHECK_INT(count_files(S.root, "quarantine"), ==, 1);
}

/*
 * serve --gc-interval with the collector's own settings, from each source a serve flag can
 * come from: --gc-grace from the environment, --gc-upload-max-age from the config file. A
 * blob just pushed and linked by no manifest, and an upload session just started, are what
 * the default grace (1 h) and maximum upload age (24 h) would keep.
 */
static void test_scheduled(void)
{
    char aport[256], conf[256], d[80], loc[512];
    snprintf(aport, sizeof(aport), "%s/aport", S.dir);
    snprintf(conf, sizeof(conf), "%s/ocireg.conf", S.dir);
    write_file(conf, "gc-upload-max-age = 0s\n");
    push_blob_data(&S, "gc/sched", "linked by no manifest", 21, d);
    struct resp *up = http(&S, "POST", "/v2/gc/sched/blobs/uploads/", NULL, "", 0);
    EXPECT(up, 202, NULL);
    resp_hdr(up, "Location", loc, sizeof(loc));
    resp_free(up);
    up = http(&S, "PATCH", loc, NULL, "partial", 7);
    EXPECT(up, 202, NULL);
    resp_free(up);
    char bp[256];
    snprintf(bp, sizeof(bp), "/v2/gc/sched/blobs/%s", d);
    CHECK_INT(status_of("GET", bp), ==, 200);
    srv_stop(&S);
    CHECK(setenv("OCIREG_GC_GRACE", "0s", 1) == 0);
    srv_restart(&S, (const char *[]){"--gc-interval", "1s", "--admin-port-file", aport,
                                     "--config", conf, NULL});
    CHECK(unsetenv("OCIREG_GC_GRACE") == 0);
    FILE *f = fopen(aport, "r");
    unsigned port = 0;
    CHECK(f != NULL && fscanf(f, "%u", &port) == 1);
    fclose(f);
    struct srv a = S;
    snprintf(a.base, sizeof(a.base), "http://127.0.0.1:%u", port);
    /* the first scheduled run comes a second after the start: wait for it, with a deadline */
    for (int i = 0;; i++) {
        CHECK(i < 500);
        struct resp *r = http(&a, "GET", "/metrics", NULL, NULL, 0);
        static const char key[] = "\nocireg_gc_runs_total ";
        const char *p = strstr(r->body, key);
        bool ran = p != NULL && atoi(p + sizeof(key) - 1) >= 1;
        resp_free(r);
        if (ran)
            break;
        usleep(20000);
    }
    /* what the tags reference is still all there; the young link and session are not */
    CHECK_INT(status_of("GET", "/v2/gc/other/manifests/keep"), ==, 200);
    CHECK_INT(status_of("GET", bp), ==, 404);
    CHECK_INT(count_files(S.root, "uploads"), ==, 0);
    up = http(&S, "GET", loc, NULL, NULL, 0);
    EXPECT(up, 404, "BLOB_UPLOAD_UNKNOWN");
    resp_free(up);
}

int main(void)
{
    srv_start(&S, NULL);
    RUN(test_keep_rules);
    RUN(test_uploads_and_orphans);
    RUN(test_stress);
    RUN(test_immutable_tags_and_repo_delete);
    RUN(test_fsck);
    RUN(test_lifecycle_tag_lists);
    RUN(test_lifecycle);
    RUN(test_lifecycle_pulls_and_grace);
    RUN(test_scheduled);
    srv_cleanup(&S);
    return 0;
}
