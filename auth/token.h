/*
 * Tokens: JWTs signed with the registry's Ed25519 key (EdDSA), verified against that key or,
 * when configured, the public key of an external issuer (RS256 or ES256).
 *
 * Three kinds share the format, told apart by the "ocireg_kind" claim: access tokens (the
 * Docker token spec's bearer tokens, with "access"), refresh tokens (docker login's identity
 * token) and login passwords (short-lived passwords for basic auth and docker login).
 * Our tokens carry the user's account id and generation: a token of another account of the
 * same name, or of an older generation, is worth nothing (auth_user_current).
 */
#ifndef OCIREG_AUTH_TOKEN_H
#define OCIREG_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/err.h"
#include "auth/users.h"
#include "storage/names.h"

#define AUTH_TOKEN_MAX 8192

struct auth_keys;

/*
 * Loads the signing key from keydir/token-ed25519.key, creating keydir (0700) and the key
 * (0600) on first use. OWNED: free with auth_keys_close.
 */
enum auth_err auth_keys_open(struct auth_keys **out, const char *keydir);
void auth_keys_close(struct auth_keys *k); /* NULL is a no-op */

/* Also trusts tokens of `issuer` signed with the RS256 or ES256 key in the PEM file. */
enum auth_err auth_keys_trust(struct auth_keys *k, const char *issuer, const char *pem_file);

/* The key id put in the header of every token we sign (BORROWED from k). */
const char *auth_keys_kid(const struct auth_keys *k);

enum auth_token_kind { AUTH_TOKEN_ACCESS, AUTH_TOKEN_REFRESH, AUTH_TOKEN_LOGIN };

struct auth_access {
    bool catalog;                  /* registry:catalog:* */
    char name[NAME_MAX_LEN + 1];   /* repository:<name> */
    unsigned actions;              /* AUTH_PULL | AUTH_PUSH | AUTH_DELETE */
};

struct auth_token_req {
    enum auth_token_kind kind;
    const char *issuer;
    const char *audience;
    const char *subject; /* "" for anonymous */
    uint32_t generation;
    const struct auth_access *access;
    size_t naccess;
    uint64_t now;
    uint64_t ttl;     /* seconds */
    uint64_t account; /* the subject's auth_user.account (0 for anonymous) */
};

/* Signs a token. *out is OWNED (free()). */
enum auth_err auth_token_issue(const struct auth_keys *k, const struct auth_token_req *req,
                               char **out);

struct auth_claims {
    enum auth_token_kind kind;
    char subject[AUTH_NAME_MAX + 1];
    uint32_t generation;
    uint64_t account; /* "ocireg_acct" of our tokens; 0 when absent */
    uint64_t expires;
    bool external; /* signed by the trusted external issuer */
    size_t naccess;
    struct auth_access *access; /* OWNED by the struct: auth_claims_free */
};

/*
 * Verifies signature, algorithm, issuer (ours or the trusted external one), audience and
 * time (60 s of leeway for clock skew). AUTH_EDENIED for anything forged or malformed,
 * AUTH_EEXPIRED for a token outside its validity. On AUTH_OK *out must be freed.
 */
enum auth_err auth_token_verify(const struct auth_keys *k, const char *token, const char *issuer,
                                const char *audience, uint64_t now, struct auth_claims *out);
void auth_claims_free(struct auth_claims *c);

/* Actions the claims grant on repository repo. */
unsigned auth_claims_allowed(const struct auth_claims *c, const char *repo);
bool auth_claims_catalog(const struct auth_claims *c);
/* True when the claims carry an entry for repo, even one granting nothing (a refusal). */
bool auth_claims_mentions(const struct auth_claims *c, const char *repo);

#endif
