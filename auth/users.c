#include <fnmatch.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "auth/users.h"
#include "storage/names.h"

/* Version 1: flags, generation, created, hash. Version 2 adds the account id after created. */
#define REC_VERSION 2
#define GRANT_REC_VERSION 1
#define USER_REC_HEAD_V1 14
#define USER_REC_HEAD 22
#define USER_REC_MAX (USER_REC_HEAD + crypto_pwhash_STRBYTES)
/* Argon2id verifications at once: each takes MEMLIMIT_INTERACTIVE (64 MiB) of memory. */
#define PWHASH_PARALLEL 2

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_ok;
static sem_t pwhash_slots;
/* A hash of a random password: unknown users are checked against it, so they cost the same. */
static char dummy_hash[crypto_pwhash_STRBYTES];

static void init(void)
{
    if (sodium_init() < 0)
        return;
    sem_init(&pwhash_slots, 0, PWHASH_PARALLEL);
    char pw[33];
    auth_password_generate(pw, sizeof(pw));
    if (crypto_pwhash_str(dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return;
    init_ok = 1;
}

static bool ready(void)
{
    pthread_once(&init_once, init);
    return init_ok;
}

const char *auth_strerror(enum auth_err err)
{
    switch (err) {
#define AUTH_ERR_CASE(name, msg)                                                                   \
    case AUTH_##name:                                                                              \
        return msg;
        AUTH_ERR_MAP(AUTH_ERR_CASE)
#undef AUTH_ERR_CASE
    }
    return "unknown error";
}

static enum auth_err from_store(enum store_err e)
{
    switch (e) {
    case STORE_OK:
        return AUTH_OK;
    case STORE_ENOENT:
        return AUTH_ENOENT;
    case STORE_EEXIST:
        return AUTH_EEXIST;
    case STORE_EINVAL:
        return AUTH_EINVAL;
    case STORE_ENOMEM:
        return AUTH_ENOMEM;
    default:
        return AUTH_EIO;
    }
}

bool auth_user_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > AUTH_NAME_MAX || strcmp(name, AUTH_ANONYMOUS) == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static bool principal_valid(const char *p)
{
    return strcmp(p, AUTH_ANONYMOUS) == 0 || auth_user_name_valid(p);
}

bool auth_actions_parse(const char *s, unsigned *mask)
{
    if (strcmp(s, "*") == 0) {
        *mask = AUTH_ALL;
        return true;
    }
    unsigned m = 0;
    const char *p = s;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        if (n == 4 && strncmp(p, "pull", 4) == 0)
            m |= AUTH_PULL;
        else if (n == 4 && strncmp(p, "push", 4) == 0)
            m |= AUTH_PUSH;
        else if (n == 6 && strncmp(p, "delete", 6) == 0)
            m |= AUTH_DELETE;
        else if (n == 1 && *p == '*')
            m |= AUTH_ALL;
        else
            return false;
        p += n;
        if (*p == ',') {
            p++;
            if (*p == '\0')
                return false;
        }
    }
    if (m == 0)
        return false;
    *mask = m;
    return true;
}

void auth_actions_format(unsigned mask, char *buf, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{AUTH_PULL, "pull"}, {AUTH_PUSH, "push"}, {AUTH_DELETE, "delete"}};
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((mask & names[i].bit) == 0)
            continue;
        int n = snprintf(buf + len, cap - len, "%s%s", len ? "," : "", names[i].name);
        if (n < 0 || (size_t)n >= cap - len)
            return;
        len += (size_t)n;
    }
}

bool auth_pattern_valid(const char *pattern)
{
    size_t n = strlen(pattern);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || c == '/' || c == '*';
        if (!ok)
            return false;
    }
    return true;
}

bool auth_pattern_match(const char *pattern, const char *repo)
{
    /* no FNM_PATHNAME: the pattern team-a/STAR covers every repository under team-a/ */
    return fnmatch(pattern, repo, 0) == 0;
}

/* ---- users ---- */

struct user_rec {
    struct auth_user user;
    char hash[crypto_pwhash_STRBYTES];
};

/* Decodes the fixed head of a user record (both versions); the hash is left to the caller.
 * Returns the head's length, 0 when the record is not one we know. */
static size_t user_decode(const unsigned char *buf, size_t len, struct auth_user *u)
{
    if (len < 1 || (buf[0] != 1 && buf[0] != REC_VERSION))
        return 0;
    size_t head = buf[0] == 1 ? USER_REC_HEAD_V1 : USER_REC_HEAD;
    if (len < head)
        return 0;
    u->robot = buf[1] & 1;
    u->generation = 0;
    for (int i = 3; i >= 0; i--)
        u->generation = (u->generation << 8) | buf[2 + i];
    u->created = 0;
    for (int i = 7; i >= 0; i--)
        u->created = (u->created << 8) | buf[6 + i];
    /* version 1 accounts predate ids: 0, which no account made since is ever given */
    u->account = 0;
    if (head == USER_REC_HEAD)
        for (int i = 7; i >= 0; i--)
            u->account = (u->account << 8) | buf[14 + i];
    return head;
}

static enum auth_err user_load(struct index *idx, const char *name, struct user_rec *out)
{
    unsigned char buf[USER_REC_MAX];
    size_t len = 0;
    enum store_err rc = index_kv_get(idx, INDEX_USERS, name, strlen(name), buf, sizeof(buf), &len);
    if (rc != STORE_OK)
        return from_store(rc);
    memset(out, 0, sizeof(*out));
    size_t head = user_decode(buf, len, &out->user);
    if (head == 0 || len - head >= sizeof(out->hash))
        return AUTH_EIO;
    snprintf(out->user.name, sizeof(out->user.name), "%s", name);
    memcpy(out->hash, buf + head, len - head);
    out->hash[len - head] = '\0';
    return AUTH_OK;
}

static enum auth_err user_store(struct index *idx, const struct user_rec *u, bool create)
{
    unsigned char buf[USER_REC_MAX];
    size_t hl = strlen(u->hash);
    buf[0] = REC_VERSION;
    buf[1] = u->user.robot ? 1 : 0;
    for (int i = 0; i < 4; i++)
        buf[2 + i] = (unsigned char)(u->user.generation >> (8 * i));
    for (int i = 0; i < 8; i++)
        buf[6 + i] = (unsigned char)(u->user.created >> (8 * i));
    for (int i = 0; i < 8; i++)
        buf[14 + i] = (unsigned char)(u->user.account >> (8 * i));
    memcpy(buf + USER_REC_HEAD, u->hash, hl);
    const char *name = u->user.name;
    return from_store(
        index_kv_put(idx, INDEX_USERS, name, strlen(name), buf, USER_REC_HEAD + hl, create));
}

static enum auth_err hash_password(const char *password, char *out)
{
    size_t n = strlen(password);
    if (n == 0 || n > AUTH_PASSWORD_MAX)
        return AUTH_EINVAL;
    if (crypto_pwhash_str(out, password, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return AUTH_ENOMEM;
    return AUTH_OK;
}

enum auth_err auth_user_add(struct index *idx, const char *name, const char *password, bool robot)
{
    if (!ready())
        return AUTH_ENOMEM;
    if (!auth_user_name_valid(name))
        return AUTH_EINVAL;
    struct user_rec u;
    memset(&u, 0, sizeof(u));
    snprintf(u.user.name, sizeof(u.user.name), "%s", name);
    u.user.robot = robot;
    u.user.created = (uint64_t)time(NULL);
    /* a fresh random id: whatever was issued to an earlier account of this name names
     * another account and is never valid for this one */
    while (u.user.account == 0)
        randombytes_buf(&u.user.account, sizeof(u.user.account));
    enum auth_err rc = hash_password(password, u.hash);
    if (rc == AUTH_OK)
        rc = user_store(idx, &u, true);
    sodium_memzero(u.hash, sizeof(u.hash));
    return rc;
}

enum auth_err auth_user_del(struct index *idx, const char *name)
{
    if (!auth_user_name_valid(name))
        return AUTH_EINVAL;
    enum auth_err rc = from_store(index_kv_del(idx, INDEX_USERS, name, strlen(name)));
    if (rc != AUTH_OK)
        return rc;
    char prefix[AUTH_NAME_MAX + 2];
    size_t n = strlen(name);
    memcpy(prefix, name, n);
    prefix[n] = '\0';
    return from_store(index_kv_del_prefix(idx, INDEX_GRANTS, prefix, n + 1));
}

enum auth_err auth_user_passwd(struct index *idx, const char *name, const char *password)
{
    if (!ready())
        return AUTH_ENOMEM;
    if (!auth_user_name_valid(name))
        return AUTH_EINVAL;
    struct user_rec u;
    enum auth_err rc = user_load(idx, name, &u);
    if (rc == AUTH_OK)
        rc = hash_password(password, u.hash);
    if (rc == AUTH_OK) {
        u.user.generation++;
        rc = user_store(idx, &u, false);
    }
    sodium_memzero(u.hash, sizeof(u.hash));
    return rc;
}

enum auth_err auth_user_revoke(struct index *idx, const char *name)
{
    if (!auth_user_name_valid(name))
        return AUTH_EINVAL;
    struct user_rec u;
    enum auth_err rc = user_load(idx, name, &u);
    if (rc == AUTH_OK) {
        u.user.generation++;
        rc = user_store(idx, &u, false);
    }
    return rc;
}

bool auth_user_current(struct index *idx, const char *name, uint64_t account, uint32_t generation)
{
    struct auth_user u;
    return auth_user_get(idx, name, &u) == AUTH_OK && u.account == account &&
           u.generation == generation;
}

enum auth_err auth_user_get(struct index *idx, const char *name, struct auth_user *out)
{
    if (!auth_user_name_valid(name))
        return AUTH_ENOENT;
    struct user_rec u;
    enum auth_err rc = user_load(idx, name, &u);
    if (rc == AUTH_OK)
        *out = u.user;
    return rc;
}

struct list_ctx {
    struct index *idx;
    auth_user_cb cb;
    void *arg;
};

static int list_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct list_ctx *ctx = arg;
    char name[AUTH_NAME_MAX + 1];
    if (klen > AUTH_NAME_MAX)
        return 0;
    memcpy(name, key, klen);
    name[klen] = '\0';
    struct auth_user u;
    memset(&u, 0, sizeof(u));
    if (user_decode(val, vlen, &u) == 0)
        return 0;
    memcpy(u.name, name, klen + 1);
    return ctx->cb(&u, ctx->arg);
}

enum auth_err auth_user_list(struct index *idx, auth_user_cb cb, void *arg)
{
    struct list_ctx ctx = {idx, cb, arg};
    return from_store(index_kv_scan(idx, INDEX_USERS, "", 0, list_one, &ctx));
}

enum auth_err auth_password_check(struct index *idx, const char *name, const char *password,
                                  struct auth_user *out)
{
    if (!ready())
        return AUTH_ENOMEM;
    struct user_rec u;
    size_t plen = strlen(password);
    bool known = auth_user_name_valid(name) && user_load(idx, name, &u) == AUTH_OK;
    const char *hash = known ? u.hash : dummy_hash;
    if (plen > AUTH_PASSWORD_MAX)
        plen = 0; /* still verify (and fail) so the time taken says nothing */
    while (sem_wait(&pwhash_slots) != 0) {
    }
    bool match = crypto_pwhash_str_verify(hash, password, plen) == 0;
    sem_post(&pwhash_slots);
    if (known)
        sodium_memzero(u.hash, sizeof(u.hash));
    if (!known || !match || plen == 0)
        return AUTH_EDENIED;
    if (out != NULL)
        *out = u.user;
    return AUTH_OK;
}

void auth_password_generate(char *out, size_t len)
{
    static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    if (len == 0)
        return;
    if (sodium_init() < 0) {
        out[0] = '\0';
        return;
    }
    for (size_t i = 0; i + 1 < len; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[len - 1] = '\0';
}

/* ---- grants ---- */

static size_t grant_key(char *key, size_t cap, const char *principal, const char *pattern)
{
    size_t a = strlen(principal), b = strlen(pattern);
    if (a + 1 + b > cap)
        return 0;
    memcpy(key, principal, a);
    key[a] = '\0';
    memcpy(key + a + 1, pattern, b);
    return a + 1 + b;
}

enum auth_err auth_grant(struct index *idx, const char *principal, const char *pattern,
                         unsigned actions)
{
    if (!principal_valid(principal) || !auth_pattern_valid(pattern) || actions == 0 ||
        (actions & ~(unsigned)AUTH_ALL) != 0)
        return AUTH_EINVAL;
    if (strcmp(principal, AUTH_ANONYMOUS) != 0) {
        struct auth_user u;
        enum auth_err rc = auth_user_get(idx, principal, &u);
        if (rc != AUTH_OK)
            return rc;
    }
    char key[AUTH_NAME_MAX + 1 + NAME_MAX_LEN + 1];
    size_t klen = grant_key(key, sizeof(key), principal, pattern);
    unsigned char val[2] = {GRANT_REC_VERSION, (unsigned char)actions};
    return from_store(index_kv_put(idx, INDEX_GRANTS, key, klen, val, sizeof(val), false));
}

enum auth_err auth_revoke(struct index *idx, const char *principal, const char *pattern)
{
    if (!principal_valid(principal) || !auth_pattern_valid(pattern))
        return AUTH_EINVAL;
    char key[AUTH_NAME_MAX + 1 + NAME_MAX_LEN + 1];
    size_t klen = grant_key(key, sizeof(key), principal, pattern);
    return from_store(index_kv_del(idx, INDEX_GRANTS, key, klen));
}

struct grant_ctx {
    auth_grant_cb cb;
    void *arg;
};

static int grant_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct grant_ctx *ctx = arg;
    char buf[AUTH_NAME_MAX + 1 + NAME_MAX_LEN + 1];
    if (klen >= sizeof(buf) || vlen < 2)
        return 0;
    memcpy(buf, key, klen);
    buf[klen] = '\0';
    const char *pattern = buf + strlen(buf) + 1;
    if (pattern > buf + klen)
        return 0;
    return ctx->cb(buf, pattern, ((const unsigned char *)val)[1], ctx->arg);
}

enum auth_err auth_grant_list(struct index *idx, const char *principal, auth_grant_cb cb,
                              void *arg)
{
    struct grant_ctx ctx = {cb, arg};
    char prefix[AUTH_NAME_MAX + 2];
    size_t plen = 0;
    if (principal != NULL) {
        if (!principal_valid(principal))
            return AUTH_EINVAL;
        plen = grant_key(prefix, sizeof(prefix), principal, "");
    }
    return from_store(index_kv_scan(idx, INDEX_GRANTS, prefix, plen, grant_one, &ctx));
}

struct auth_grant_set {
    struct grant_entry {
        char pattern[NAME_MAX_LEN + 1];
        unsigned actions;
    } *e;
    size_t n, cap;
    bool failed;
};

static int set_add(const char *principal, const char *pattern, unsigned actions, void *arg)
{
    (void)principal;
    struct auth_grant_set *g = arg;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct grant_entry *p = realloc(g->e, cap * sizeof(*p));
        if (p == NULL) {
            g->failed = true;
            return 1;
        }
        g->e = p;
        g->cap = cap;
    }
    snprintf(g->e[g->n].pattern, sizeof(g->e[g->n].pattern), "%s", pattern);
    g->e[g->n++].actions = actions;
    return 0;
}

enum auth_err auth_grants_load(struct index *idx, const char *principal,
                               struct auth_grant_set **out)
{
    struct auth_grant_set *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return AUTH_ENOMEM;
    enum auth_err rc = auth_grant_list(idx, AUTH_ANONYMOUS, set_add, g);
    if (rc == AUTH_OK && principal != NULL && strcmp(principal, AUTH_ANONYMOUS) != 0)
        rc = auth_grant_list(idx, principal, set_add, g);
    if (rc == AUTH_OK && g->failed)
        rc = AUTH_ENOMEM;
    if (rc != AUTH_OK) {
        auth_grants_free(g);
        return rc;
    }
    *out = g;
    return AUTH_OK;
}

void auth_grants_free(struct auth_grant_set *g)
{
    if (g == NULL)
        return;
    free(g->e);
    free(g);
}

unsigned auth_grants_allowed(const struct auth_grant_set *g, const char *repo)
{
    unsigned mask = 0;
    for (size_t i = 0; i < g->n; i++)
        if (auth_pattern_match(g->e[i].pattern, repo))
            mask |= g->e[i].actions;
    return mask;
}

bool auth_grants_catalog(const struct auth_grant_set *g)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->e[i].pattern, "*") == 0 && (g->e[i].actions & AUTH_PULL))
            return true;
    return false;
}

static int admin_one(const char *principal, const char *pattern, unsigned actions, void *arg)
{
    (void)principal;
    if (strcmp(pattern, "*") == 0 && (actions & AUTH_ALL) == AUTH_ALL)
        *(bool *)arg = true;
    return 0;
}

bool auth_user_is_admin(struct index *idx, const char *name)
{
    bool admin = false;
    if (!auth_user_name_valid(name))
        return false;
    (void)auth_grant_list(idx, name, admin_one, &admin);
    return admin;
}

unsigned auth_allowed(struct index *idx, const char *principal, const char *repo)
{
    struct auth_grant_set *g = NULL;
    if (auth_grants_load(idx, principal, &g) != AUTH_OK)
        return 0;
    unsigned mask = auth_grants_allowed(g, repo);
    auth_grants_free(g);
    return mask;
}

bool auth_catalog_allowed(struct index *idx, const char *principal)
{
    struct auth_grant_set *g = NULL;
    if (auth_grants_load(idx, principal, &g) != AUTH_OK)
        return false;
    bool ok = auth_grants_catalog(g);
    auth_grants_free(g);
    return ok;
}
