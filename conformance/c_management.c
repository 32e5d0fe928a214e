/*
 * Spec "Content Management": deleting tags and manifests (end-9) and blobs (end-10).
 */
#include <stdio.h>
#include <string.h>

#include "conformance/conformance.h"

static long status_of(struct ctx *c, const char *method, const char *repo, const char *kind,
                      const char *ref)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/%s/%s", repo, kind, ref);
    struct resp *r = req(c, method, path, NULL, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

static bool tag_listed(struct ctx *c, const char *repo, const char *tag, long *status)
{
    char path[PATH_MAX_LEN];
    fmt(path, sizeof(path), "/v2/%s/tags/list", repo);
    struct resp *r = req(c, "GET", path, NULL, NULL, 0);
    *status = r->status;
    bool found = false;
    json_t *j = resp_json(r);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "tags"), i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), tag) == 0)
            found = true;
    }
    json_decref(j);
    resp_free(r);
    return found;
}

void sec_delete_tags(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN];
    repo_name(c, repo, sizeof(repo), "delete-tags");
    struct image img;
    if (!push_image(c, repo, "keep", "delete-tags", &img) ||
        !push_manifest(c, repo, "gone", MT_MANIFEST, img.body, NULL))
        return;
    fmt(path, sizeof(path), "/v2/%s/manifests/gone", repo);
    struct resp *r = req(c, "DELETE", path, NULL, NULL, 0);
    check_status(c, r, 202, "end-9 DELETE /manifests/<tag>: 202 Accepted");
    resp_free(r);
    check(c, "end-9 once deleted, GET /manifests/<tag> returns 404",
          status_of(c, "GET", repo, "manifests", "gone") == 404);
    check(c, "end-9 once deleted, HEAD /manifests/<tag> returns 404",
          status_of(c, "HEAD", repo, "manifests", "gone") == 404);
    check(c, "end-9 deleting a tag leaves the manifest: GET by digest 200",
          status_of(c, "GET", repo, "manifests", img.digest) == 200);
    check(c, "end-9 deleting a tag leaves the other tags: GET 200",
          status_of(c, "GET", repo, "manifests", "keep") == 200);
    long st;
    bool gone_listed = tag_listed(c, repo, "gone", &st);
    bool keep_listed = tag_listed(c, repo, "keep", &st);
    check(c, "end-8a the deleted tag is no longer listed; the other one is",
          st == 200 && !gone_listed && keep_listed);
    check(c, "end-9 DELETE of a tag that no longer exists: 404",
          status_of(c, "DELETE", repo, "manifests", "gone") == 404);
}

void sec_delete_manifests(struct ctx *c)
{
    char repo[128], path[PATH_MAX_LEN];
    repo_name(c, repo, sizeof(repo), "delete-manifests");
    struct image img, other;
    if (!push_image(c, repo, "a", "delete-manifests", &img) ||
        !push_manifest(c, repo, "b", MT_MANIFEST, img.body, NULL) ||
        !push_image(c, repo, "other", "delete-manifests-other", &other))
        return;
    fmt(path, sizeof(path), "/v2/%s/manifests/%s", repo, img.digest);
    struct resp *r = req(c, "DELETE", path, NULL, NULL, 0);
    check_status(c, r, 202, "end-9 DELETE /manifests/<digest>: 202 Accepted");
    resp_free(r);
    check(c, "end-9 once deleted, GET /manifests/<digest> returns 404",
          status_of(c, "GET", repo, "manifests", img.digest) == 404);
    check(c, "end-9 once deleted, HEAD /manifests/<digest> returns 404",
          status_of(c, "HEAD", repo, "manifests", img.digest) == 404);
    check(c, "end-9 once deleted, GET of a tag that pointed to the digest returns 404 (a)",
          status_of(c, "GET", repo, "manifests", "a") == 404);
    check(c, "end-9 once deleted, GET of a tag that pointed to the digest returns 404 (b)",
          status_of(c, "GET", repo, "manifests", "b") == 404);
    check(c, "end-9 other manifests of the repository stay: GET 200",
          status_of(c, "GET", repo, "manifests", "other") == 200);
    long st;
    bool a = tag_listed(c, repo, "a", &st);
    check(c, "end-8a tags of the deleted manifest are no longer listed", st == 200 && !a);
    check(c, "end-9 DELETE of a manifest already deleted: 404",
          status_of(c, "DELETE", repo, "manifests", img.digest) == 404);
    char never[128];
    repo_name(c, never, sizeof(never), "delete-never-pushed");
    check(c, "end-9 DELETE manifest of a repository that does not exist: MUST be 404",
          status_of(c, "DELETE", never, "manifests", img.digest) == 404);
}

void sec_delete_blobs(struct ctx *c)
{
    char repo[128], repo2[128], path[PATH_MAX_LEN];
    repo_name(c, repo, sizeof(repo), "delete-blobs");
    repo_name(c, repo2, sizeof(repo2), "delete-blobs-2");
    static const char data[] = "a blob that will be deleted";
    struct blob b, b2;
    if (!push_blob(c, repo, data, sizeof(data) - 1, &b) ||
        !push_blob(c, repo2, data, sizeof(data) - 1, &b2))
        return;
    fmt(path, sizeof(path), "/v2/%s/blobs/%s", repo, b.digest);
    struct resp *r = req(c, "DELETE", path, NULL, NULL, 0);
    check_status(c, r, 202, "end-10 DELETE /blobs/<digest>: 202 Accepted");
    resp_free(r);
    check(c, "end-10 once deleted, GET /blobs/<digest> returns 404",
          status_of(c, "GET", repo, "blobs", b.digest) == 404);
    check(c, "end-10 once deleted, HEAD /blobs/<digest> returns 404",
          status_of(c, "HEAD", repo, "blobs", b.digest) == 404);
    check(c, "end-10 DELETE of a blob no longer there: MUST be 404 (blob not found)",
          status_of(c, "DELETE", repo, "blobs", b.digest) == 404);
    check(c, "end-10 the delete was of <name>'s blob: another repository still serves it (200)",
          status_of(c, "GET", repo2, "blobs", b2.digest) == 200);
    char unknown[DIGEST_MAX];
    digest_of("sha256", "never a blob here", 17, unknown);
    check(c, "end-10 DELETE of an unknown blob: MUST be 404",
          status_of(c, "DELETE", repo, "blobs", unknown) == 404);
}
