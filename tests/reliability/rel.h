/*
 * Helpers of the reliability tests, on top of the integration harness (tests/integration/
 * harness.h: srv_start / srv_kill / srv_restart / run_cli). The harness's http() aborts on a
 * transport error; these tests expect some (a server killed mid-request, a connection the
 * server refuses), so rel_http() reports them instead, on a caller-owned keep-alive handle
 * that threads may use side by side (one handle per thread).
 */
#ifndef OCIREG_TESTS_REL_H
#define OCIREG_TESTS_REL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/integration/harness.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar"

/* Failure report with file:line, then abort (ctest shows it). */
#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                                      \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

/* Seconds on the monotonic clock. */
double rel_now(void);

/* xorshift64* generator; state must not be 0. */
uint64_t rel_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
uint64_t rel_range(uint64_t *state, uint64_t lo, uint64_t hi);
/* Fills buf with pseudo-random bytes from state. */
void rel_fill(uint64_t *state, void *buf, size_t len);

/* A keep-alive client handle (one per thread); request timeout in seconds. */
void *rel_client_new(long timeout_s);
void rel_client_free(void *client);

/*
 * One request to http://127.0.0.1:PORT + path. Never aborts: a transport failure gives
 * status 0 and, in *curl_err (may be NULL), the libcurl code (0 when a response came).
 * hdrs: NULL-terminated "Name: value" list or NULL. OWNED: resp_free().
 */
struct resp *rel_http(void *client, unsigned port, const char *method, const char *path,
                      const char *const *hdrs, const void *body, size_t len, int *curl_err);
const char *rel_curl_strerror(int code);

/* An OCI error body: JSON {"errors":[{"code":"...", ...}]}. */
bool rel_is_json_error(const struct resp *r);
/* The "code" of the first error of a JSON error body, into buf; "" if none. */
const char *rel_error_code(const struct resp *r, char *buf, size_t cap);

/* Upload offset from the Range header of an upload-session response ("0-N" -> N+1). -1 when
 * absent. A "0-0" answer is ambiguous (0 or 1 byte): *ambiguous is set then (may be NULL). */
long long rel_range_offset(const struct resp *r, bool *ambiguous);

/* A manifest (config + layers, sizes given) into out; returns its length. */
size_t rel_manifest(char *out, size_t cap, const char *cfg_digest, size_t cfg_len,
                    const char *const *layer_digests, const size_t *layer_lens, size_t nlayers,
                    const char *annotation);

/* Entries of /proc/PID/fd; -1 if unreadable. */
int rel_fd_count(pid_t pid);
/* Prints the targets of /proc/PID/fd (for a leak report). */
void rel_fd_dump(pid_t pid, FILE *out);
/* CPU time (user + system, all threads) of a process in seconds from /proc/PID/stat; -1 if
 * unreadable. */
double rel_cpu_seconds(pid_t pid);
/* A "VmXXX:" figure of /proc/PID/status in KiB; -1 if absent. */
long rel_status_kb(pid_t pid, const char *field);


/* Runs `ocireg fsck --root ROOT` (online); prints its report, returns the exit status. */
int rel_fsck(struct srv *s);

/* True when built with -fsanitize (RSS and latency bounds are loosened there). */
bool rel_sanitized(void);

#endif
