#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth/token.h"

#define KEY_FILE "token-ed25519.key"
#define LEEWAY 60
#define ISSUER_MAX 256

struct auth_keys {
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char kid[24];
    EVP_PKEY *external;
    char external_issuer[ISSUER_MAX];
};

void auth_keys_close(struct auth_keys *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->external);
    sodium_memzero(k->sk, sizeof(k->sk));
    free(k);
}

static enum auth_err read_key(int dirfd, unsigned char *sk)
{
    int fd = openat(dirfd, KEY_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1)
        return errno == ENOENT ? AUTH_ENOENT : AUTH_EIO;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && st.st_size == crypto_sign_SECRETKEYBYTES) {
        if ((st.st_mode & 077) != 0)
            (void)fchmod(fd, 0600); /* keys are the owner's alone */
        n = read(fd, sk, crypto_sign_SECRETKEYBYTES);
    }
    close(fd);
    return n == crypto_sign_SECRETKEYBYTES ? AUTH_OK : AUTH_EIO;
}

static enum auth_err create_key(int dirfd, unsigned char *sk, unsigned char *pk)
{
    crypto_sign_keypair(pk, sk);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", KEY_FILE, (long)getpid());
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1)
        return AUTH_EIO;
    bool ok = write(fd, sk, crypto_sign_SECRETKEYBYTES) == crypto_sign_SECRETKEYBYTES &&
              fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    /* link, not rename: a second process creating its own key at once must not win */
    if (ok && linkat(dirfd, tmp, dirfd, KEY_FILE, 0) != 0) {
        ok = false;
        if (errno == EEXIST) {
            unlinkat(dirfd, tmp, 0);
            return read_key(dirfd, sk);
        }
    }
    unlinkat(dirfd, tmp, 0);
    if (ok)
        ok = fsync(dirfd) == 0;
    return ok ? AUTH_OK : AUTH_EIO;
}

enum auth_err auth_keys_open(struct auth_keys **out, const char *keydir)
{
    if (sodium_init() < 0)
        return AUTH_ENOMEM;
    struct auth_keys *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return AUTH_ENOMEM;
    enum auth_err rc = AUTH_EIO;
    if (mkdir(keydir, 0700) != 0 && errno != EEXIST)
        goto fail;
    int dirfd = open(keydir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd == -1)
        goto fail;
    rc = read_key(dirfd, k->sk);
    if (rc == AUTH_ENOENT)
        rc = create_key(dirfd, k->sk, k->pk);
    close(dirfd);
    if (rc != AUTH_OK)
        goto fail;
    crypto_sign_ed25519_sk_to_pk(k->pk, k->sk);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, k->pk, sizeof(k->pk));
    sodium_bin2base64(k->kid, sizeof(k->kid), h, 15, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *out = k;
    return AUTH_OK;
fail:
    auth_keys_close(k);
    return rc;
}

const char *auth_keys_kid(const struct auth_keys *k)
{
    return k->kid;
}

enum auth_err auth_keys_trust(struct auth_keys *k, const char *issuer, const char *pem_file)
{
    if (strlen(issuer) == 0 || strlen(issuer) >= sizeof(k->external_issuer))
        return AUTH_EINVAL;
    FILE *f = fopen(pem_file, "r");
    if (f == NULL)
        return AUTH_ENOENT;
    EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (pkey == NULL)
        return AUTH_EINVAL;
    int id = EVP_PKEY_base_id(pkey);
    if (id != EVP_PKEY_RSA && id != EVP_PKEY_EC) {
        EVP_PKEY_free(pkey);
        return AUTH_EINVAL;
    }
    EVP_PKEY_free(k->external);
    k->external = pkey;
    snprintf(k->external_issuer, sizeof(k->external_issuer), "%s", issuer);
    return AUTH_OK;
}

/* ---- encoding ---- */

static const char *const kind_names[] = {"access", "refresh", "login"};

static char *b64url(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    if (out != NULL)
        sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

static json_t *access_json(const struct auth_access *a)
{
    json_t *actions = json_array();
    if (a->catalog) {
        json_array_append_new(actions, json_string("*"));
        return json_pack("{s:s, s:s, s:o}", "type", "registry", "name", "catalog", "actions",
                         actions);
    }
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{AUTH_PULL, "pull"}, {AUTH_PUSH, "push"}, {AUTH_DELETE, "delete"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (a->actions & names[i].bit)
            json_array_append_new(actions, json_string(names[i].name));
    return json_pack("{s:s, s:s, s:o}", "type", "repository", "name", a->name, "actions",
                     actions);
}

enum auth_err auth_token_issue(const struct auth_keys *k, const struct auth_token_req *req,
                               char **out)
{
    enum auth_err rc = AUTH_ENOMEM;
    char *h64 = NULL, *p64 = NULL, *s64 = NULL, *htext = NULL, *ptext = NULL, *input = NULL;
    unsigned char jti[16];
    randombytes_buf(jti, sizeof(jti));
    char jtis[sizeof(jti) * 2 + 1];
    sodium_bin2hex(jtis, sizeof(jtis), jti, sizeof(jti));
    char acct[17];
    snprintf(acct, sizeof(acct), "%016llx", (unsigned long long)req->account);
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "typ", "JWT", "alg", "EdDSA", "kid", k->kid);
    json_t *access = json_array();
    for (size_t i = 0; access != NULL && i < req->naccess; i++)
        json_array_append_new(access, access_json(&req->access[i]));
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:I, s:s, s:o}", "iss",
                               req->issuer, "sub", req->subject, "aud", req->audience, "exp",
                               (json_int_t)(req->now + req->ttl), "nbf", (json_int_t)req->now,
                               "iat", (json_int_t)req->now, "jti", jtis, "ocireg_kind",
                               kind_names[req->kind], "ocireg_gen", (json_int_t)req->generation,
                               "ocireg_acct", acct, "access", access);
    if (hdr == NULL || claims == NULL)
        goto out;
    htext = json_dumps(hdr, JSON_COMPACT);
    ptext = json_dumps(claims, JSON_COMPACT);
    if (htext == NULL || ptext == NULL)
        goto out;
    h64 = b64url(htext, strlen(htext));
    p64 = b64url(ptext, strlen(ptext));
    if (h64 == NULL || p64 == NULL)
        goto out;
    size_t ilen = strlen(h64) + 1 + strlen(p64);
    input = malloc(ilen + 1);
    if (input == NULL)
        goto out;
    snprintf(input, ilen + 1, "%s.%s", h64, p64);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const unsigned char *)input, ilen, k->sk);
    s64 = b64url(sig, sizeof(sig));
    if (s64 == NULL)
        goto out;
    size_t total = ilen + 1 + strlen(s64) + 1;
    char *tok = malloc(total);
    if (tok == NULL)
        goto out;
    snprintf(tok, total, "%s.%s", input, s64);
    *out = tok;
    rc = AUTH_OK;
out:
    json_decref(hdr);
    json_decref(claims);
    free(htext);
    free(ptext);
    free(h64);
    free(p64);
    free(s64);
    free(input);
    return rc;
}

/* ---- verification ---- */

/* Exactly 16 lower-case hex digits, as auth_token_issue writes them. */
static bool parse_account(const char *s, uint64_t *out)
{
    if (s == NULL || strlen(s) != 16)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        unsigned d = ch >= '0' && ch <= '9' ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                                              : 16u;
        if (d == 16)
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

static bool unb64url(const char *s, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    return sodium_base642bin(out, cap, s, len, NULL, outlen, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0;
}

static bool verify_external(const struct auth_keys *k, const char *alg, const char *input,
                            size_t ilen, const unsigned char *sig, size_t slen)
{
    if (k->external == NULL)
        return false;
    int id = EVP_PKEY_base_id(k->external);
    bool rsa = strcmp(alg, "RS256") == 0, es = strcmp(alg, "ES256") == 0;
    /* the algorithm must fit the configured key: no RS256 with an EC key, no HS256 at all */
    if (!((rsa && id == EVP_PKEY_RSA) || (es && id == EVP_PKEY_EC)))
        return false;
    unsigned char der[80];
    const unsigned char *vsig = sig;
    size_t vlen = slen;
    if (es) {
        /* JWS carries r || s; OpenSSL wants DER */
        if (slen != 64)
            return false;
        ECDSA_SIG *es_sig = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (es_sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es_sig, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es_sig);
            return false;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es_sig, NULL) <= (int)sizeof(der) ? i2d_ECDSA_SIG(es_sig, &p) : -1;
        ECDSA_SIG_free(es_sig);
        if (n <= 0)
            return false;
        vsig = der;
        vlen = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL &&
              EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->external) == 1 &&
              EVP_DigestVerify(ctx, vsig, vlen, (const unsigned char *)input, ilen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static bool aud_matches(json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), audience) == 0)
            return true;
    }
    return false;
}

static enum auth_err parse_access(json_t *arr, struct auth_claims *c)
{
    if (arr == NULL || json_is_null(arr))
        return AUTH_OK;
    if (!json_is_array(arr) || json_array_size(arr) > 256)
        return AUTH_EDENIED;
    c->access = calloc(json_array_size(arr) + 1, sizeof(*c->access));
    if (c->access == NULL)
        return AUTH_ENOMEM;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *acts = json_object_get(e, "actions");
        if (type == NULL || name == NULL || !json_is_array(acts))
            return AUTH_EDENIED;
        struct auth_access *a = &c->access[c->naccess];
        size_t j;
        json_t *act;
        if (strcmp(type, "registry") == 0 && strcmp(name, "catalog") == 0) {
            a->catalog = true;
        } else if (strcmp(type, "repository") == 0 && name_valid(name, strlen(name))) {
            snprintf(a->name, sizeof(a->name), "%s", name);
            json_array_foreach(acts, j, act)
            {
                const char *s = json_string_value(act);
                unsigned m = 0;
                if (s != NULL && auth_actions_parse(s, &m))
                    a->actions |= m;
            }
        } else {
            continue; /* a scope of a kind we do not serve grants nothing */
        }
        c->naccess++;
    }
    return AUTH_OK;
}

enum auth_err auth_token_verify(const struct auth_keys *k, const char *token, const char *issuer,
                                const char *audience, uint64_t now, struct auth_claims *out)
{
    size_t len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len > AUTH_TOKEN_MAX)
        return AUTH_EDENIED;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return AUTH_EDENIED;
    unsigned char hbuf[1024], pbuf[AUTH_TOKEN_MAX], sig[512];
    size_t hlen, plen, slen;
    if (!unb64url(token, (size_t)(d1 - token), hbuf, sizeof(hbuf), &hlen) ||
        !unb64url(d1 + 1, (size_t)(d2 - d1 - 1), pbuf, sizeof(pbuf), &plen) ||
        !unb64url(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig), &slen))
        return AUTH_EDENIED;

    enum auth_err rc = AUTH_EDENIED;
    struct auth_claims c;
    memset(&c, 0, sizeof(c));
    json_t *hdr = json_loadb((const char *)hbuf, hlen, JSON_REJECT_DUPLICATES, NULL);
    json_t *claims = json_loadb((const char *)pbuf, plen, JSON_REJECT_DUPLICATES, NULL);
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (alg == NULL || !json_is_object(claims))
        goto out;
    size_t ilen = (size_t)(d2 - token);
    bool ours = false;
    if (strcmp(alg, "EdDSA") == 0) {
        const char *kid = json_string_value(json_object_get(hdr, "kid"));
        ours = slen == crypto_sign_BYTES && (kid == NULL || strcmp(kid, k->kid) == 0) &&
               crypto_sign_verify_detached(sig, (const unsigned char *)token, ilen, k->pk) == 0;
        if (!ours)
            goto out;
    } else if (!verify_external(k, alg, token, ilen, sig, slen)) {
        goto out;
    }
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    if (iss == NULL || strcmp(iss, ours ? issuer : k->external_issuer) != 0)
        goto out;
    if (!aud_matches(json_object_get(claims, "aud"), audience))
        goto out;
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    /* times before 1970 are no times: a negative exp must not wrap into the far future */
    if (!json_is_integer(exp) || json_integer_value(exp) < 0 ||
        (nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) < 0)))
        goto out;
    rc = AUTH_EEXPIRED;
    if ((uint64_t)json_integer_value(exp) + LEEWAY <= now ||
        (nbf != NULL && (uint64_t)json_integer_value(nbf) > now + LEEWAY))
        goto out;
    rc = AUTH_EDENIED;
    c.expires = (uint64_t)json_integer_value(exp);
    c.external = !ours;
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (sub != NULL && strlen(sub) < sizeof(c.subject))
        memcpy(c.subject, sub, strlen(sub) + 1);
    const char *kind = json_string_value(json_object_get(claims, "ocireg_kind"));
    c.kind = AUTH_TOKEN_ACCESS;
    if (ours) {
        /* our own tokens always say what they are; an external issuer's are access tokens */
        if (kind == NULL)
            goto out;
        if (strcmp(kind, "refresh") == 0)
            c.kind = AUTH_TOKEN_REFRESH;
        else if (strcmp(kind, "login") == 0)
            c.kind = AUTH_TOKEN_LOGIN;
        else if (strcmp(kind, "access") != 0)
            goto out;
        json_t *gen = json_object_get(claims, "ocireg_gen");
        if (gen != NULL && (!json_is_integer(gen) || json_integer_value(gen) < 0 ||
                            json_integer_value(gen) > (json_int_t)UINT32_MAX))
            goto out;
        c.generation = gen != NULL ? (uint32_t)json_integer_value(gen) : 0;
        json_t *acct = json_object_get(claims, "ocireg_acct");
        if (acct != NULL && !parse_account(json_string_value(acct), &c.account))
            goto out;
    }
    rc = parse_access(json_object_get(claims, "access"), &c);
    if (rc != AUTH_OK)
        goto out;
    *out = c;
    memset(&c, 0, sizeof(c));
out:
    auth_claims_free(&c);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

void auth_claims_free(struct auth_claims *c)
{
    if (c == NULL)
        return;
    free(c->access);
    c->access = NULL;
    c->naccess = 0;
}

unsigned auth_claims_allowed(const struct auth_claims *c, const char *repo)
{
    unsigned m = 0;
    for (size_t i = 0; i < c->naccess; i++)
        if (!c->access[i].catalog && strcmp(c->access[i].name, repo) == 0)
            m |= c->access[i].actions;
    return m;
}

bool auth_claims_catalog(const struct auth_claims *c)
{
    for (size_t i = 0; i < c->naccess; i++)
        if (c->access[i].catalog)
            return true;
    return false;
}

bool auth_claims_mentions(const struct auth_claims *c, const char *repo)
{
    for (size_t i = 0; i < c->naccess; i++)
        if (!c->access[i].catalog && strcmp(c->access[i].name, repo) == 0)
            return true;
    return false;
}
