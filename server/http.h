/*
 * Internals shared by the request handlers: the server state, the per-request state kept in
 * libmicrohttpd's *req_cls (freed in the completion callback), and response helpers.
 */
#ifndef OCIREG_SERVER_HTTP_H
#define OCIREG_SERVER_HTTP_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <microhttpd.h>

#include "server/errors.h"
#include "server/route.h"
#include "server/server.h"
#include "server/usage.h"
#include "storage/blobstore.h"
#include "storage/digest.h"
#include "storage/index.h"
#include "storage/names.h"
#include "auth/token.h"
#include "auth/users.h"

struct upload_cache;
struct cred_cache;
struct gc_sched;
struct acceptor;

struct server {
    struct server_config cfg;
    struct index *idx;
    struct blobstore *bs;
    struct upload_cache *uploads;
    struct auth_keys *keys;   /* token signing key; NULL in mode none */
    struct cred_cache *creds; /* recently verified basic credentials */
    char *tls_cert;           /* PEM text, OWNED */
    char *tls_key;
    struct MHD_Daemon *daemon;
    int listen_fd;
    unsigned port;
    atomic_int inflight;
    atomic_bool stopping;
    struct metrics *metrics;
    struct xfer *xfer;
    struct MHD_Daemon *admin;
    int admin_fd;
    unsigned admin_port;
    struct gc_sched *gc; /* serve --gc-interval */
    struct acceptor *acceptor;
    FILE *access_log; /* OWNED unless stderr */
};

/* The accept loop of the API listener (acceptor.c); stop closes nothing but its own. */
int acceptor_start(struct server *srv, int listen_fd);
void acceptor_stop(struct server *srv);
/* Frees it; only once libmicrohttpd has stopped. */
void acceptor_free(struct server *srv);
/* libmicrohttpd closed a connection the accept loop handed over (per-address counts). */
void acceptor_connection_closed(struct server *srv, struct MHD_Connection *c);
/* TAKES fd (a duplicate of a connection libmicrohttpd closes with a body still coming): it
 * is drained until the client closes, so the answer already sent is not lost to a reset. */
void acceptor_linger(struct server *srv, int fd);

/* The scheduled collector (gcsched.c). */
int gc_sched_start(struct server *srv);
void gc_sched_stop(struct server *srv);
void gc_sched_metrics(struct server *srv, struct mbuf *b);

/* Starts the admin listener on fd (admin.c). */
int admin_start(struct server *srv, int fd);

enum method { M_GET, M_HEAD, M_PUT, M_POST, M_PATCH, M_DELETE, M_OTHER };

#define REF_MAX 256

struct request;
typedef enum store_err (*body_fn)(struct request *r, const char *data, size_t len);
typedef enum MHD_Result (*done_fn)(struct request *r);

struct request {
    struct server *srv;
    struct MHD_Connection *conn;
    enum method method;
    unsigned status;        /* of the response queued */
    char request_id[40];    /* X-Request-Id: the client's (when sane) or ours */
    struct timespec start;  /* headers received */
    uint64_t egress_len;    /* body bytes of a counted download (blob or manifest GET) */
    bool count_egress;
    int sock_fd;
    uint64_t acked_start;
    struct route route;
    bool encoded_slash; /* the path as sent held %2F (see uri_seen in http.c) */
    char name[NAME_MAX_LEN + 1];
    char ref[REF_MAX + 1];
    bool ref_is_digest;
    struct digest digest; /* the path's digest when ref_is_digest */

    body_fn on_body; /* NULL: a body is refused */
    done_fn on_done;
    bool responded;
    bool linger;    /* answered before its body was read: drain it when the connection closes */
    bool succeeded; /* the request did what it was asked; otherwise uploads roll back */
    enum store_err body_err;
    uint64_t received;

    /* blob uploads */
    struct upload *up;
    struct upload *retired; /* committed, its name gone: closed once the answer is out */
    char upload_id[UPLOAD_ID_LEN + 1];
    bool has_range;
    uint64_t range_start, range_end;
    bool has_length;
    uint64_t length;
    bool has_put_digest;
    struct digest put_digest;
    bool monolithic; /* POST ?digest=: the session exists only for this request */
    enum digest_alg post_alg;
    bool has_record;   /* the session has its index record */
    uint64_t held;     /* bytes the session's record holds (index_upload_hold), or may take */
    bool hold_refused; /* body_err is a refusal of index_upload_hold or the space reserve */

    /* who is asking (auth modes basic and token) */
    char principal[AUTH_NAME_MAX + 1]; /* "" when anonymous */
    bool has_claims;
    struct auth_claims claims; /* token mode: what the bearer token grants */
    struct auth_grant_set *grants; /* a partial catalog: the requester's grants, OWNED */

    /* manifest and token-request bodies */
    char *buf;
    size_t buf_len, buf_cap;
    bool too_big;
};

/* Header or query value, BORROWED from the connection (valid during the request). */
const char *req_header(struct request *r, const char *name);
const char *req_arg(struct request *r, const char *name);

/* Queues a response; adds the API version header; destroys resp. */
enum MHD_Result reply(struct request *r, unsigned status, struct MHD_Response *resp);
/* An empty-bodied response. */
struct MHD_Response *resp_empty(void);
/* Adds a header, ignoring allocation failure (the response is still valid). */
void resp_header(struct MHD_Response *resp, const char *name, const char *value);
/* The spec's error response for e, to add headers to before reply(). */
struct MHD_Response *resp_error(struct request *r, enum api_err e, const char *detail);
/* Spec error body {"errors":[{code,message,detail}]}; detail may be NULL. */
enum MHD_Result reply_error(struct request *r, enum api_err e, const char *detail);
/* For storage failures: logs and answers with the mapped 5xx. */
enum MHD_Result reply_store_error(struct request *r, enum store_err e, const char *what);
/* 503 UNAVAILABLE with Retry-After: the server is at a capacity limit for now. */
enum MHD_Result reply_retry_later(struct request *r, const char *detail);
/*
 * STORE_ENOSPC when writing `more` bytes would take the storage root's file system below the
 * free-space reserve (--min-free-space), whose size goes to *reserve; STORE_OK otherwise.
 */
enum store_err server_space_check(struct server *srv, uint64_t more, uint64_t *reserve);
/* 507 naming the free-space reserve. */
enum MHD_Result reply_space_reserve(struct request *r, uint64_t reserve);

/*
 * Accounting of what a request moved: counts egress of the body about to be sent (at
 * completion: all of it, or what the client acknowledged if it hung up), and adds ingress,
 * pulls and pushes for r's repository and user now.
 */
void req_count_download(struct request *r, uint64_t body_len);
void req_count(struct request *r, uint64_t ingress, uint64_t pulls, uint64_t pushes);

/* Handlers (api_*.c). Each is called once the body, if any, is in (on_done), or at the
 * header stage (prepare) to set up body handling. */
enum MHD_Result api_blob(struct request *r);
enum MHD_Result api_upload_prepare(struct request *r);
enum MHD_Result api_manifest_prepare(struct request *r);
enum MHD_Result api_tags(struct request *r);
enum MHD_Result api_catalog(struct request *r);
enum MHD_Result api_referrers(struct request *r);

/* ---- access control (authz.c) ---- */

enum store_err authz_init(struct server *srv);
void authz_free(struct server *srv);
/*
 * Decides whether the routed request may go on. Returns true to go on; false after queueing
 * the 401/403 answer (*ret is what to return to libmicrohttpd).
 */
bool authz_check(struct request *r, enum MHD_Result *ret);
/* Whether the requester may take `action` (AUTH_PULL...) on repo; true in mode none. */
bool authz_can(struct request *r, const char *repo, unsigned action);
/* Releases what authz_check kept in the request. */
void authz_request_done(struct request *r);
/*
 * The catalog a requester may see: all of it (*all), or only the repositories for which
 * authz_catalog_shows is true (a user without pull on "*": the ones it may pull).
 */
enum store_err authz_catalog_begin(struct request *r, bool *all);
bool authz_catalog_shows(struct request *r, const char *repo);

/* ---- credentials (creds.c) ---- */

enum cred_result { CRED_OK, CRED_DENIED, CRED_THROTTLED };

enum store_err creds_init(struct server *srv);
void creds_free(struct server *srv);
/* Splits "Basic base64(name:password)"; false when it is not that or does not fit. */
bool creds_parse_basic(const char *hdr, char *name, size_t ncap, char *password, size_t pcap);
/*
 * Checks a password or a login password of name for the client of conn. CRED_OK fills *u;
 * CRED_THROTTLED (nothing checked) when the client is over --login-failures, with the
 * seconds to wait in *retry_after.
 */
enum cred_result creds_check(struct server *srv, struct MHD_Connection *conn, const char *name,
                             const char *password, struct auth_user *u, unsigned *retry_after);
/* creds_check of an Authorization: Basic header; the user's name into principal[cap]. */
enum cred_result authz_basic(struct server *srv, struct MHD_Connection *conn, const char *hdr,
                             char *principal, size_t cap, unsigned *retry_after);
/* 429 TOOMANYREQUESTS with Retry-After. */
enum MHD_Result reply_throttled(struct request *r, unsigned retry_after);
/* The token endpoint, /auth/token (GET and POST). */
enum MHD_Result api_token_prepare(struct request *r);

/* Called from the completion callback: roll back or release upload state. */
void api_upload_complete(struct request *r);

/* ---- upload session cache (uploads.c) ---- */

/* Sessions in use by requests (max_busy at most: the connections served) and idle handles
 * (a fixed number, least recently used closed first), counted apart. */
enum store_err upload_cache_new(struct upload_cache **out, unsigned max_busy);
void upload_cache_free(struct upload_cache *c);
/*
 * Takes exclusive use of session id: a cached handle, or one opened (rehashing) from disk.
 * STORE_EBUSY when another request holds it (*in_use set) or when max_busy sessions are in
 * use (*in_use cleared: the server is at capacity); in_use may be NULL.
 */
enum store_err upload_cache_acquire(struct upload_cache *c, struct blobstore *bs, const char *id,
                                    enum digest_alg alg, bool create, struct upload **out,
                                    bool *in_use);
/* Gives the handle back (keep) or closes it (the session ended). TAKES u. */
void upload_cache_release(struct upload_cache *c, struct upload *u, bool keep);
/* Takes u out of the cache for good without closing it; returns u for the caller to close. */
struct upload *upload_cache_detach(struct upload_cache *c, struct upload *u);
/* The offset of session id when it was last released (0 when unknown). */
uint64_t upload_cache_acked(struct upload_cache *c, const char *id);

#endif
