/*
 * The admin command line against a running server: durations read the same by every flag,
 * `repo` refusing flag combinations before writing anything, and the modes of everything
 * ocireg creates (storage root, blobs, uploads, quarantine, index, backups, exports, the
 * access log) under a permissive umask, for new roots and for roots an older version made.
 */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static struct srv S;

/* A small image (config + one layer) tagged ref in repo. */
static void image(const char *repo, const char *ref, const char *cfg, const char *layer)
{
    char cd[80], ld[80], body[1024];
    push_blob_data(&S, repo, cfg, strlen(cfg), cd);
    push_blob_data(&S, repo, layer, strlen(layer), ld);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
             "\"%s\",\"size\":%zu}]}",
             cd, strlen(cfg), ld, strlen(layer));
    struct resp *r = put_manifest_body(&S, repo, ref, MT_MANIFEST, body);
    EXPECT(r, 201, NULL);
    resp_free(r);
}

static int cli(char *out, size_t cap, const char *const *args)
{
    return run_cli(&S, NULL, out, cap, args);
}

/* ---- durations ---- */

static void test_durations(void)
{
    char out[4096];
    /* the reported case: 0 and 1s were taken, 0s was "bad arguments" */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "0s", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "0", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--dry-run", "--grace", "1h30m",
                                                     "--upload-max-age", "0s", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "1.5h", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "-1s", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--upload-max-age", "", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"usage", "--since", "0s", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"usage", "--since", "1d12h", NULL}), ==, 0);
    /* serve's duration flags, all through the same parser */
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--gc-interval", "0s", "--token-ttl",
                                   "5m", "--conn-timeout", "2m", "--shutdown-grace", "0s", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--conn-timeout", "120", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--token-ttl", "0s", NULL}),
              ==, 2);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--shutdown-grace", "2h", NULL}),
              ==, 2);
}

/* ---- repo: every flag checked before the first write ---- */

/* quota_bytes of repo as `usage --json` reports it (its own quota, else the default). */
static long long quota_of(const char *repo)
{
    char out[8192];
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"usage", "--json", repo, NULL}), ==, 0);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    json_t *row = json_array_get(json_object_get(j, "repositories"), 0);
    CHECK(row != NULL);
    long long q = json_integer_value(json_object_get(row, "quota_bytes"));
    json_decref(j);
    return q;
}

static void test_repo_flags(void)
{
    char out[4096];
    image("cli/app", "v1", "{\"cli\":1}", "cli layer 1");
    CHECK_INT(quota_of("cli/app"), ==, 0);
    /* the reported case: wrote the default quota, then crashed on the missing REPO */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set-default", "--quota", "10G",
                                                     "--tag-mutability", "immutable", NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set-default", "--quota", "10G",
                                                     "--exclude", "latest", NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    /* delete takes no flags: it used to set the default quota as well */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "delete", "cli/app", "--quota", "1G",
                                                     NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    /* a bad value anywhere: nothing written, not even the good flags */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set", "cli/app", "--quota", "1G",
                                                     "--tag-mutability", "sometimes", NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set", "cli/app", "--quota", "1G",
                                                     "--exclude", "latest", NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set", "cli/app", "--quota", "1Q",
                                                     "--tag-mutability", "immutable", NULL}),
              ==, 2);
    CHECK_INT(quota_of("cli/app"), ==, 0);
    /* v1 is still movable: the refused commands did not make tags immutable either */
    image("cli/app", "v1", "{\"cli\":2}", "cli layer 2");
    /* the valid forms still work */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set", "cli/app", "--quota", "1G",
                                                     "--tag-mutability", "immutable", "--exclude",
                                                     "latest", NULL}),
              ==, 0);
    CHECK_INT(quota_of("cli/app"), ==, 1LL << 30);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set-default", "--quota", "10G", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set", "cli/app", "--quota", "0", NULL}),
              ==, 0);
    CHECK_INT(quota_of("cli/app"), ==, 10LL << 30);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"repo", "set-default", "--quota", "0", NULL}),
              ==, 0);
}

/* ---- file modes ---- */

static int bad_modes;

/* Nothing for "other"; nothing group-writable. */
static int check_mode(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)flag;
    (void)f;
    if ((st->st_mode & 0027) != 0 && !S_ISLNK(st->st_mode)) {
        fprintf(stderr, "mode %04o: %s\n", (unsigned)(st->st_mode & 07777), path);
        bad_modes++;
    }
    return 0;
}

static void check_tree(const char *path)
{
    bad_modes = 0;
    CHECK_INT(nftw(path, check_mode, 16, FTW_PHYS), ==, 0);
    CHECK_INT(bad_modes, ==, 0);
}

/* Pushes, leaves an upload open, quarantines a corrupted blob, backs up and exports; then
 * checks the modes of all that. */
static void exercise_and_check(void)
{
    char out[8192], path[512];
    image("cli/modes", "v1", "{\"modes\":1}", "modes layer");
    image("cli/modes", "v2", "{\"modes\":2}", "layer that will rot");
    struct resp *r = http(&S, "POST", "/v2/cli/modes/blobs/uploads/", NULL, "", 0);
    EXPECT(r, 202, NULL);
    char loc[512];
    resp_hdr(r, "Location", loc, sizeof(loc));
    resp_free(r);
    r = http(&S, "PATCH", loc, NULL, "partial", 7);
    EXPECT(r, 202, NULL);
    resp_free(r);
    char d[80];
    sha256_str("layer that will rot", 19, d);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", S.root, d + 7, d + 7);
    int fd = open(path, O_WRONLY);
    CHECK(fd != -1 && pwrite(fd, "R", 1, 0) == 1);
    close(fd);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"fsck", "--repair", NULL}), ==, 1);
    CHECK_INT(count_files(S.root, "quarantine"), ==, 1);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "0", NULL}), ==, 0);
    char backup[256], archive[256];
    snprintf(backup, sizeof(backup), "%s/backup", S.dir);
    snprintf(archive, sizeof(archive), "%s/export.tar.zst", S.dir);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"backup", backup, NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"export", "cli/modes:v1", "-o", archive,
                                                     NULL}),
              ==, 0);
    CHECK_INT(count_files(S.root, "uploads"), ==, 1);
    check_tree(S.root);
    check_tree(backup);
    check_tree(archive);
    snprintf(path, sizeof(path), "%s/access.log", S.dir);
    check_tree(path);
}

static void test_modes(mode_t mask)
{
    char log[256];
    umask(mask);
    srv_start(&S, NULL);
    snprintf(log, sizeof(log), "%s/access.log", S.dir);
    srv_stop(&S);
    srv_restart(&S, (const char *[]){"--access-log", log, NULL});
    exercise_and_check();
    /* a root an older ocireg made under umask 022: the top levels are closed at open */
    srv_stop(&S);
    static const char *const tops[] = {"", "/blobs", "/uploads", "/index"};
    char path[512];
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", S.root, tops[i]);
        CHECK(chmod(path, 0755) == 0);
    }
    srv_restart(&S, NULL);
    struct stat st;
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", S.root, tops[i]);
        CHECK(stat(path, &st) == 0);
        if ((st.st_mode & 0027) != 0) {
            fprintf(stderr, "still %04o after a restart: %s\n", (unsigned)(st.st_mode & 07777),
                    path);
            abort();
        }
    }
    srv_cleanup(&S);
    umask(022);
}

static void test_modes_umask_022(void)
{
    test_modes(022);
}

static void test_modes_umask_000(void)
{
    test_modes(0);
}

int main(void)
{
    srv_start(&S, NULL);
    RUN(test_durations);
    RUN(test_repo_flags);
    srv_cleanup(&S);
    RUN(test_modes_umask_022);
    RUN(test_modes_umask_000);
    return 0;
}
