/*
 * Integration-test harness: starts the real ocireg binary on an ephemeral loopback port
 * (it reports the port through --port-file) with a fresh storage root, and a small libcurl
 * client. Every failure aborts with file:line.
 */
#ifndef OCIREG_TESTS_HARNESS_H
#define OCIREG_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct srv {
    pid_t pid;
    char dir[128];  /* temp dir holding root/ and the port file */
    char root[160]; /* storage root */
    unsigned port;
    char base[64]; /* http://127.0.0.1:PORT */
    /* set before srv_start: the server's stderr goes to dir/server.log; its --log-level */
    bool log_to_file;
    char log_level[8];
    /* set before srv_start: the server's RLIMIT_NOFILE (soft and hard); 0 inherits ours */
    unsigned long nofile;
};

/*
 * Starts a server with a fresh root; extra flags may be NULL-terminated list or NULL.
 * Only log_to_file, log_level and nofile of *s are read; the rest is filled in.
 */
void srv_start(struct srv *s, const char *const *extra);
/* Starts again on the same root (after a stop or a kill). */
void srv_restart(struct srv *s, const char *const *extra);
/* SIGTERM and wait; checks a clean exit 0. */
void srv_stop(struct srv *s);
/* SIGKILL and wait. */
void srv_kill(struct srv *s);
/*
 * Runs `ocireg ARGS... --root ROOT` with stdin_text on its standard input (NULL: /dev/null)
 * and its standard output in out[cap]. Returns the exit status.
 */
int run_cli(struct srv *s, const char *stdin_text, char *out, size_t cap, const char *const *args);
/* Removes the temp dir. */
void srv_cleanup(struct srv *s);

struct resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* raw header block */
};

/*
 * One request. path is appended to the server base. hdrs is a NULL-terminated list of
 * "Name: value" (may be NULL). body may be NULL. OWNED: free with resp_free.
 */
struct resp *http(struct srv *s, const char *method, const char *path, const char *const *hdrs,
                  const void *body, size_t len);
/* The same with a streamed (chunked transfer-encoding) body. */
struct resp *http_chunked(struct srv *s, const char *method, const char *path,
                          const char *const *hdrs, const void *body, size_t len);
void resp_free(struct resp *r);
/*
 * The same on a raw connection (Connection: close), the body sent whole without waiting for
 * an answer: for requests the server may refuse before it reads their body. It then answers
 * and closes with the body unread, which resets the connection while the client may still
 * be sending; libcurl reports only the failed send then, this reads the answer that came
 * before the reset. status is 0 when none came. OWNED: free with resp_free.
 */
struct resp *http_whole(struct srv *s, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len);

/*
 * Sends raw bytes on a new connection, then (with half_close) shuts the write side, and
 * returns everything the server sent until it closed or 10 s passed. OWNED (free()).
 */
char *raw_exchange(struct srv *s, const char *bytes, size_t len, bool half_close);

/* Sends a request, reads `stop_after` bytes of the answer, then resets the connection.
 * Returns the bytes read (headers included). */
size_t raw_abandon(struct srv *s, const char *bytes, size_t len, size_t stop_after);

/* Value of a response header (case-insensitive name), copied into buf; NULL if absent. */
const char *resp_hdr(const struct resp *r, const char *name, char *buf, size_t cap);
/* Number of times a header appears. */
int resp_hdr_count(const struct resp *r, const char *name);

/* "sha256:<hex>" of data into out[72]; sha512 into out[136]. */
void sha256_str(const void *data, size_t len, char *out);
void sha512_str(const void *data, size_t len, char *out);

/* Files under root/sub (recursively), for "nothing was stored" checks. */
int count_files(const char *root, const char *sub);

/* Bytes of the files directly in root/sub (the data files of the upload sessions, say). */
long long dir_bytes(const char *root, const char *sub);

/* The port a server wrote to the file s->dir/name (--admin-port-file, --port-file). */
unsigned read_port_file(const struct srv *s, const char *name);

/* The Authorization value "Basic base64(user:pw)" into out. */
void basic_auth(const char *user, const char *pw, char *out, size_t cap);

/* Monolithic blob push (must answer 201); the digest into out[72]. */
void push_blob_data(struct srv *s, const char *repo, const void *data, size_t len, char *out);
/* PUT of a manifest with its Content-Type. */
struct resp *put_manifest_body(struct srv *s, const char *repo, const char *ref, const char *ct,
                               const char *body);

/* Checks status and, for errors, the OCI code in the body. */
#define EXPECT(r, st, code) expect_resp((r), (st), (code), __FILE__, __LINE__)
void expect_resp(const struct resp *r, long status, const char *code, const char *file, int line);

#endif
