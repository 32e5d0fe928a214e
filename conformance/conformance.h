/*
 * ocireg's own conformance runner for the OCI distribution API (spec.md of
 * opencontainers/distribution-spec). Each check names the clause it tests and the endpoint id
 * of the spec's endpoints table (end-1 ... end-14); a failed check is recorded and the run goes
 * on. Every section runs in its own child process, so a crash or a harness abort (a transport
 * error) costs one section, not the run.
 */
#ifndef OCIREG_CONFORMANCE_H
#define OCIREG_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define OCTET "Content-Type: application/octet-stream"

/* "sha512:" + 128 hex + NUL fits */
#define DIGEST_MAX 140
/* bounded buffers for paths and header values */
#define PATH_MAX_LEN 2048
#define HDR_MAX 1024

#if defined(__GNUC__)
#define CONF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CONF_PRINTF(f, a)
#endif

struct ctx {
    struct srv *srv;
    const char *section;
    char prefix[96];       /* every repository of the run is <prefix>/<something> */
    size_t manifest_limit; /* the registry's manifest size limit, for the 413 check */
    bool quiet;            /* print failures only */
    int pass, fail;
    int result_fd; /* pipe to the parent: one line per check */
    /* per-section observations of every response, checked at the section's end */
    int err_bodies;   /* 4xx responses with a JSON body seen */
    int err_body_bad; /* ... of which broke the spec's error body format */
    char err_body_why[800];
    int warn_bad; /* responses whose Warning headers broke the spec's rules */
    char warn_why[256];
};

/* ---- check recording (runner.c) ---- */

/* Records one check: PASS or FAIL with its clause. Returns cond. */
bool check(struct ctx *c, const char *clause, bool cond);
bool checkf(struct ctx *c, bool cond, const char *fmt, ...) CONF_PRINTF(3, 4);
/* An indented detail line under the last check (printed for failures, and with -v). */
void detail(struct ctx *c, const char *fmt, ...) CONF_PRINTF(2, 3);
/* Status, the headers of interest and the start of the body of r, as detail lines. */
void detail_resp(struct ctx *c, const struct resp *r);
/* A setup step the checks depend on: recorded only when it fails. */
bool setup(struct ctx *c, const char *what, bool ok, const struct resp *r);

/* ---- HTTP (util.c) ---- */

/* One request to the registry; path may be an absolute URL of the registry (a Location). */
struct resp *req(struct ctx *c, const char *method, const char *path, const char *const *hdrs,
                 const void *body, size_t len);
/* The same with a chunked transfer-encoded (streamed) body. */
struct resp *req_chunked(struct ctx *c, const char *method, const char *path,
                         const char *const *hdrs, const void *body, size_t len);
/* The path of a Location (absolute URLs lose scheme and authority); NULL if unusable. */
const char *loc_path(const char *loc);
/* out = url + ('?' or '&') + query; false when it does not fit. */
bool add_query(char *out, size_t cap, const char *url, const char *query);
/* out = "<prefix>/<suffix>" */
void repo_name(const struct ctx *c, char *out, size_t cap, const char *suffix);
/* snprintf that reports truncation as false. */
bool fmt(char *out, size_t cap, const char *f, ...) CONF_PRINTF(3, 4);

/* Header value or NULL; buf is HDR_MAX long. */
const char *hdr(const struct resp *r, const char *name, char *buf);
bool hdr_is(const struct resp *r, const char *name, const char *want);
/* Every value of a header that may repeat and carry comma-separated lists, joined by ",". */
void hdr_all(const struct resp *r, const char *name, char *out, size_t cap);
/* Whether a comma-separated list (as from hdr_all) holds item. */
bool list_has(const char *list, const char *item);

/* ---- checks of responses ---- */

bool check_status(struct ctx *c, const struct resp *r, long want, const char *clause);
/* Either of two statuses. */
bool check_status2(struct ctx *c, const struct resp *r, long a, long b, const char *clause);
/*
 * An error response: the status (0: any 4xx), a JSON body of the spec's format, and code among
 * its codes. One check.
 */
bool check_error(struct ctx *c, const struct resp *r, long status, const char *code,
                 const char *clause);
bool check_hdr(struct ctx *c, const struct resp *r, const char *name, const char *want,
               const char *clause);
bool check_hdr_present(struct ctx *c, const struct resp *r, const char *name, const char *clause);
/*
 * Validates the spec's error body format: {"errors":[{"code":..,"message":..,"detail":..}]},
 * code uppercase letters and underscores and one of the table's codes. why gets the reason.
 */
bool error_body_valid(const char *body, size_t len, char *why, size_t cap);
/* Whether the JSON error body of r carries code. */
bool error_has_code(const struct resp *r, const char *code);

/* ---- content (util.c) ---- */

struct blob {
    char digest[DIGEST_MAX];
    size_t size;
};

/* "sha256:..." of data, or sha512 when alg is "sha512". */
void digest_of(const char *alg, const void *data, size_t len, char *out);

/* POST then PUT (the upload every push-capable registry has). */
bool push_blob(struct ctx *c, const char *repo, const void *data, size_t len, struct blob *out);
/* PUT of a manifest; digest (sha256 of body) into digest_out when not NULL. */
struct resp *put_manifest(struct ctx *c, const char *repo, const char *ref, const char *ctype,
                          const char *body, size_t len);
bool push_manifest(struct ctx *c, const char *repo, const char *ref, const char *ctype,
                   const char *body, char *digest_out);

/* An image manifest of config + layers (media types as given); extra: more top-level fields. */
bool image_manifest(char *out, size_t cap, const char *cfg_mt, const struct blob *cfg,
                    const struct blob *layers, size_t nlayers, const char *extra);

/* A small image: config + one layer + manifest, tagged tag (or by digest when tag is NULL). */
struct image {
    struct blob cfg, layer;
    char body[4096];
    char digest[DIGEST_MAX];
    size_t size;
};
bool push_image(struct ctx *c, const char *repo, const char *tag, const char *salt,
                struct image *out);

/* JSON body of r or NULL. OWNED: json_decref. */
json_t *resp_json(const struct resp *r);

/* ---- the sections ---- */

void sec_base(struct ctx *c);
void sec_pull_blobs(struct ctx *c);
void sec_pull_manifests(struct ctx *c);
void sec_push_monolithic(struct ctx *c);
void sec_push_sha512(struct ctx *c);
void sec_push_chunked(struct ctx *c);
void sec_push_streamed(struct ctx *c);
void sec_push_cancel(struct ctx *c);
void sec_push_mount(struct ctx *c);
void sec_push_manifests(struct ctx *c);
void sec_push_tag_param(struct ctx *c);
void sec_push_limits(struct ctx *c);
void sec_tags(struct ctx *c);
void sec_referrers(struct ctx *c);
void sec_catalog(struct ctx *c);
void sec_delete_tags(struct ctx *c);
void sec_delete_manifests(struct ctx *c);
void sec_delete_blobs(struct ctx *c);
void sec_err_names(struct ctx *c);
void sec_err_digests(struct ctx *c);
void sec_err_blobs(struct ctx *c);
void sec_err_uploads(struct ctx *c);
void sec_err_manifests(struct ctx *c);
void sec_err_bodies(struct ctx *c);

#endif
