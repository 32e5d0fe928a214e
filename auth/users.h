/*
 * Users, their passwords (Argon2id) and grants (repository pattern -> actions), kept in the
 * index's users and grants tables. The principal "anonymous" is no user: its grants apply to
 * requests without credentials (and to everyone).
 */
#ifndef OCIREG_AUTH_USERS_H
#define OCIREG_AUTH_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/err.h"
#include "storage/index.h"

#define AUTH_NAME_MAX 64
#define AUTH_PASSWORD_MAX 1024
#define AUTH_ANONYMOUS "anonymous"

enum auth_action {
    AUTH_PULL = 1,
    AUTH_PUSH = 2,
    AUTH_DELETE = 4,
    AUTH_ALL = 7,
};

/* [a-z0-9][a-z0-9._-]{0,63}, and not "anonymous". */
bool auth_user_name_valid(const char *name);

/* Parses "pull,push,delete" (any subset) or "*" into a mask; false when malformed. */
bool auth_actions_parse(const char *s, unsigned *mask);
/* Writes "pull,push" style text for a mask into buf[cap]. */
void auth_actions_format(unsigned mask, char *buf, size_t cap);

/* A repository glob: name characters and STAR (matching any run, slashes included). */
bool auth_pattern_valid(const char *pattern);
bool auth_pattern_match(const char *pattern, const char *repo);

struct auth_user {
    char name[AUTH_NAME_MAX + 1];
    bool robot;
    uint32_t generation; /* bumped to revoke refresh tokens and login passwords */
    uint64_t created;
    /* Random, given when the user is added and never again: a user deleted and added anew
     * is another account, and nothing issued to the old one names the new one. 0 only for
     * accounts made before ids existed. */
    uint64_t account;
};

/* Adds a user with an Argon2id hash of password. AUTH_EEXIST if the name is taken. */
enum auth_err auth_user_add(struct index *idx, const char *name, const char *password, bool robot);
enum auth_err auth_user_del(struct index *idx, const char *name);
/* Replaces the password; also revokes refresh tokens and login passwords. */
enum auth_err auth_user_passwd(struct index *idx, const char *name, const char *password);
/* Revokes refresh tokens and login passwords without changing the password. */
enum auth_err auth_user_revoke(struct index *idx, const char *name);
enum auth_err auth_user_get(struct index *idx, const char *name, struct auth_user *out);
/* True when name is a user, of that account, at that generation: what a token or cached
 * credential issued to it still needs to be worth anything. */
bool auth_user_current(struct index *idx, const char *name, uint64_t account, uint32_t generation);

typedef int (*auth_user_cb)(const struct auth_user *u, void *arg);
enum auth_err auth_user_list(struct index *idx, auth_user_cb cb, void *arg);

/*
 * Checks a password. Unknown users and wrong passwords take the same time and give the same
 * AUTH_EDENIED. On success *out (may be NULL) is filled.
 */
enum auth_err auth_password_check(struct index *idx, const char *name, const char *password,
                                  struct auth_user *out);

/* Fills out[len] with a random password of printable characters, NUL-terminated. */
void auth_password_generate(char *out, size_t len);

/* Grants (principal is a user name or AUTH_ANONYMOUS). */
enum auth_err auth_grant(struct index *idx, const char *principal, const char *pattern,
                         unsigned actions);
enum auth_err auth_revoke(struct index *idx, const char *principal, const char *pattern);

typedef int (*auth_grant_cb)(const char *principal, const char *pattern, unsigned actions,
                             void *arg);
/* Lists grants of principal (NULL: everyone's). */
enum auth_err auth_grant_list(struct index *idx, const char *principal, auth_grant_cb cb,
                              void *arg);

/*
 * Actions principal (NULL: anonymous) may take on repo: the union of its grants and the
 * anonymous grants whose pattern matches.
 */
unsigned auth_allowed(struct index *idx, const char *principal, const char *repo);

/* True when principal may list the whole catalog: it holds pull on the pattern "*". */
bool auth_catalog_allowed(struct index *idx, const char *principal);

/*
 * The grants of principal (NULL: anonymous) and of anonymous, read once, for deciding on
 * many repositories (a catalog). OWNED: free with auth_grants_free.
 */
struct auth_grant_set;
enum auth_err auth_grants_load(struct index *idx, const char *principal,
                               struct auth_grant_set **out);
void auth_grants_free(struct auth_grant_set *g); /* NULL is a no-op */
unsigned auth_grants_allowed(const struct auth_grant_set *g, const char *repo);
/* Pull on the pattern "*": the whole catalog. */
bool auth_grants_catalog(const struct auth_grant_set *g);
/* The user itself (not anonymous) holds every action on the pattern "*" (ocireg grant NAME
 * '*' '*'): an administrator, who may use the admin listener when auth is on. */
bool auth_user_is_admin(struct index *idx, const char *name);

#endif
