/* The registry server: configuration, start, graceful stop. Used by main.c. */
#ifndef OCIREG_SERVER_SERVER_H
#define OCIREG_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct server_config {
    const char *root;      /* storage root */
    const char *listen;    /* HOST:PORT; port 0 = any free port */
    const char *port_file; /* NULL, or where to write the bound port (by rename) */
    unsigned threads;      /* worker pool size; 0 = a thread per connection */
    uint64_t max_manifest; /* bytes */
    uint64_t map_size;     /* LMDB map size, bytes */
    unsigned shutdown_grace; /* seconds in-flight requests get at shutdown */
    unsigned conn_timeout;   /* seconds of inactivity before a connection is closed */
    unsigned per_ip_limit;   /* connections per client address; 0 = no limit */
    unsigned max_connections; /* served at once (each holds a thread); more get 503 */
    unsigned max_pending;     /* still sending their headers; past it the oldest is dropped;
                               * 0: max_connections, at most a quarter of RLIMIT_NOFILE */
    uint64_t max_upload_size;      /* bytes one upload session may hold; 0: no bound */
    uint64_t max_repo_upload_size; /* bytes the sessions of one repository hold; 0: no bound */
    /* free space kept for deletes and gc: uploads and manifest PUTs are refused below it; the
     * smaller of the two when both are set, none when both are 0 */
    uint64_t min_free_bytes;
    unsigned min_free_percent; /* of the file system's size */

    enum server_auth { AUTH_MODE_NONE, AUTH_MODE_BASIC, AUTH_MODE_TOKEN } auth;
    bool auth_set;              /* --auth was given: required off loopback */
    const char *public_url;     /* base of the token realm; NULL: from the Host header */
    const char *service;        /* token audience and the challenge's service */
    const char *issuer;         /* iss of the tokens we sign */
    unsigned token_ttl;         /* seconds an access token lives */
    unsigned refresh_ttl;       /* seconds a refresh token lives */
    const char *ext_issuer;     /* trusted external token issuer, or NULL */
    const char *ext_public_key; /* its PEM public key file */
    unsigned login_failures;    /* failed logins per client address and minute; 0: no bound */
    const char *tls_cert;       /* PEM files for native TLS, or NULL */
    const char *tls_key;

    const char *admin_listen;    /* /metrics etc.; NULL: 127.0.0.1, port of --listen + 1 */
    const char *admin_port_file; /* NULL, or where to write the admin port */
    bool admin_writes;           /* DELETE /admin/repositories/NAME is served */
    bool metrics_public;         /* /metrics without credentials even when auth is on */
    unsigned metrics_max_repos;  /* per-repository series in /metrics at most */
    unsigned gc_interval;        /* seconds between scheduled collections; 0 = none */
    uint64_t gc_grace;           /* their --grace, seconds (default 1 h) */
    uint64_t gc_upload_max_age;  /* their --upload-max-age, seconds (default 24 h) */
    const char *access_log;      /* NULL: none; "-": standard error; else a file (appended) */
    bool gc_delete_untagged;
};

void server_config_defaults(struct server_config *cfg);

struct server;

/* Opens storage, binds, starts serving. Returns 0, or -1 after logging why. OWNED. */
int server_start(struct server **out, const struct server_config *cfg);

/* The port actually bound. */
unsigned server_port(const struct server *srv);

/* Stops accepting, waits up to shutdown_grace for in-flight requests, closes storage. */
void server_stop(struct server *srv);

#endif
