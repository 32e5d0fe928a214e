/*
 * The admin command line against a running server: durations read the same by every flag,
 * and `repo` refusing flag combinations before writing anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    srv_start(&S, NULL);
    RUN(test_durations);
    RUN(test_repo_flags);
    srv_cleanup(&S);
    return 0;
}
