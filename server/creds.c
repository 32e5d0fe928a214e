/*
 * Credentials: Basic name:password (a password or a login password) checked against the
 * users table, a short-lived cache of the answers so Argon2id runs once per client and
 * credential (a client retrying a wrong password, or sending it on several connections at
 * once, costs one check), and a bound on failed checks per client address, so a few bad
 * logins a second cannot keep the Argon2id slots busy for everyone else.
 */
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "server/http.h"
#include "server/log.h"

/* Checked credentials (good or bad) are remembered this long. */
#define CRED_TTL 60
#define CRED_SLOTS 256
/* Client addresses whose failures are remembered; the quietest is forgotten first. */
#define LIMIT_SLOTS 1024

/* A checked credential, and the state of the user it was checked against: the answer holds
 * only while that state does (a new account, a new password, a user added since). */
struct cred_slot {
    unsigned char key[crypto_generichash_BYTES]; /* keyed hash of name \0 password */
    bool ok;
    bool exists;
    uint64_t account;
    uint32_t generation;
    time_t expires;
};

/* A leaky bucket per client address: each failure adds 1, it drains at the allowed rate. */
struct limit_slot {
    unsigned char addr[16];
    bool used;
    double level;
    struct timespec at; /* when level was last drained */
    unsigned inflight;  /* checks running now: they count as failures until they end */
};

struct cred_cache {
    pthread_mutex_t mu;
    unsigned char hash_key[crypto_generichash_KEYBYTES];
    struct cred_slot slots[CRED_SLOTS];
    unsigned next;
    unsigned per_minute; /* failures allowed per client and minute; 0: no bound */
    struct limit_slot limits[LIMIT_SLOTS];
};

enum store_err creds_init(struct server *srv)
{
    struct cred_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return STORE_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    randombytes_buf(c->hash_key, sizeof(c->hash_key));
    c->per_minute = srv->cfg.login_failures;
    srv->creds = c;
    return STORE_OK;
}

void creds_free(struct server *srv)
{
    struct cred_cache *c = srv->creds;
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    sodium_memzero(c, sizeof(*c));
    free(c);
    srv->creds = NULL;
}

bool creds_parse_basic(const char *hdr, char *name, size_t ncap, char *password, size_t pcap)
{
    if (hdr == NULL || strncasecmp(hdr, "Basic ", 6) != 0)
        return false;
    const char *b64 = hdr + 6;
    while (*b64 == ' ')
        b64++;
    unsigned char raw[AUTH_NAME_MAX + AUTH_PASSWORD_MAX + AUTH_TOKEN_MAX];
    size_t len = 0;
    if (sodium_base642bin(raw, sizeof(raw) - 1, b64, strlen(b64), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    raw[len] = '\0';
    char *colon = memchr(raw, ':', len);
    if (colon == NULL || memchr(raw, '\0', len) != NULL)
        return false;
    size_t nl = (size_t)(colon - (char *)raw), pl = len - nl - 1;
    bool ok = nl < ncap && pl < pcap;
    if (ok) {
        memcpy(name, raw, nl);
        name[nl] = '\0';
        memcpy(password, colon + 1, pl);
        password[pl] = '\0';
    }
    sodium_memzero(raw, sizeof(raw));
    return ok;
}

/* ---- failures per client ---- */

static void client_key(struct MHD_Connection *conn, unsigned char key[16])
{
    memset(key, 0, 16);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff; /* as an IPv4-mapped IPv6 address */
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static void drain(const struct cred_cache *c, struct limit_slot *s, const struct timespec *now)
{
    double dt = (double)(now->tv_sec - s->at.tv_sec) + (double)(now->tv_nsec - s->at.tv_nsec) / 1e9;
    if (dt > 0)
        s->level = fmax(0.0, s->level - dt * c->per_minute / 60.0);
    s->at = *now;
}

/* The slot of key, or a free one, or the quietest idle one (forgotten). NULL: all busy. */
static struct limit_slot *limit_slot(struct cred_cache *c, const unsigned char key[16],
                                     const struct timespec *now)
{
    struct limit_slot *free_slot = NULL, *quietest = NULL;
    for (size_t i = 0; i < LIMIT_SLOTS; i++) {
        struct limit_slot *s = &c->limits[i];
        if (!s->used) {
            if (free_slot == NULL)
                free_slot = s;
            continue;
        }
        drain(c, s, now);
        if (memcmp(s->addr, key, 16) == 0)
            return s;
        if (s->inflight == 0 && (quietest == NULL || s->level < quietest->level))
            quietest = s;
    }
    struct limit_slot *victim = free_slot != NULL ? free_slot : quietest;
    if (victim != NULL) {
        memset(victim, 0, sizeof(*victim));
        victim->used = true;
        memcpy(victim->addr, key, 16);
        victim->at = *now;
    }
    return victim;
}

/* Takes a check for the client; false (and *retry, seconds) when it is over its bound. */
static bool limit_take(struct cred_cache *c, const unsigned char key[16], unsigned *retry)
{
    if (c->per_minute == 0)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    bool ok = false;
    pthread_mutex_lock(&c->mu);
    struct limit_slot *s = limit_slot(c, key, &now);
    if (s != NULL) {
        double over = s->level + s->inflight + 1 - c->per_minute;
        ok = over <= 0;
        if (ok)
            s->inflight++;
        else
            *retry = (unsigned)ceil(over * 60.0 / c->per_minute);
    } else {
        *retry = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void limit_give(struct cred_cache *c, const unsigned char key[16], bool failed)
{
    if (c->per_minute == 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < LIMIT_SLOTS; i++) {
        struct limit_slot *s = &c->limits[i];
        if (s->used && s->inflight > 0 && memcmp(s->addr, key, 16) == 0) {
            drain(c, s, &now);
            s->inflight--;
            if (failed)
                s->level += 1;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- the check ---- */

static void cred_key(struct cred_cache *c, const char *name, const char *password,
                     unsigned char *out)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, c->hash_key, sizeof(c->hash_key), crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)name, strlen(name) + 1);
    crypto_generichash_update(&st, (const unsigned char *)password, strlen(password));
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
}

/* A login password: a token we signed for this account, of kind login, not revoked. */
static bool login_password_ok(struct server *srv, const char *name, const char *password,
                              struct auth_user *u)
{
    if (strchr(password, '.') == NULL)
        return false;
    struct auth_claims c;
    if (auth_token_verify(srv->keys, password, srv->cfg.issuer, srv->cfg.service,
                          (uint64_t)time(NULL), &c) != AUTH_OK)
        return false;
    bool ok = c.kind == AUTH_TOKEN_LOGIN && !c.external && strcmp(c.subject, name) == 0 &&
              auth_user_get(srv->idx, name, u) == AUTH_OK && u->account == c.account &&
              u->generation == c.generation;
    auth_claims_free(&c);
    return ok;
}

/* Remembers the answer for key, against the user's state now (u, or none when !exists). */
static void remember(struct cred_cache *c, const unsigned char *key, bool ok, bool exists,
                     const struct auth_user *u, time_t now)
{
    pthread_mutex_lock(&c->mu);
    struct cred_slot *s = &c->slots[c->next++ % CRED_SLOTS];
    memcpy(s->key, key, sizeof(s->key));
    s->ok = ok;
    s->exists = exists;
    s->generation = exists ? u->generation : 0;
    s->account = exists ? u->account : 0;
    s->expires = now + CRED_TTL;
    pthread_mutex_unlock(&c->mu);
}

enum cred_result creds_check(struct server *srv, struct MHD_Connection *conn, const char *name,
                             const char *password, struct auth_user *out, unsigned *retry_after)
{
    struct cred_cache *c = srv->creds;
    unsigned char key[crypto_generichash_BYTES];
    cred_key(c, name, password, key);
    time_t now = time(NULL);
    bool hit = false;
    struct cred_slot found;
    memset(&found, 0, sizeof(found));
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < CRED_SLOTS && !hit; i++) {
        struct cred_slot *s = &c->slots[i];
        if (s->expires > now && sodium_memcmp(s->key, key, sizeof(key)) == 0) {
            hit = true;
            found = *s;
        }
    }
    pthread_mutex_unlock(&c->mu);
    /* a deleted user, a new account of the name or a changed password ends the remembered
     * answer at once; the credential is then checked afresh below */
    struct auth_user u;
    bool exists = auth_user_get(srv->idx, name, &u) == AUTH_OK;
    if (hit && found.exists == exists &&
        (!exists || (u.account == found.account && u.generation == found.generation))) {
        if (!found.ok)
            return CRED_DENIED; /* the same wrong credential again: no check, no count */
        *out = u;
        return CRED_OK;
    }
    unsigned char client[16];
    client_key(conn, client);
    if (!limit_take(c, client, retry_after)) {
        log_info("credentials: client over its bound of failed logins, refused for %u s",
                 *retry_after);
        return CRED_THROTTLED;
    }
    bool ok = login_password_ok(srv, name, password, &u) ||
              auth_password_check(srv->idx, name, password, &u) == AUTH_OK;
    limit_give(c, client, !ok);
    if (ok) {
        remember(c, key, true, true, &u, now);
        *out = u;
        return CRED_OK;
    }
    /* the state the wrong answer was given against */
    exists = auth_user_get(srv->idx, name, &u) == AUTH_OK;
    remember(c, key, false, exists, &u, now);
    return CRED_DENIED;
}
