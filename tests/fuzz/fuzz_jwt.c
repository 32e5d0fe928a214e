/*
 * Fuzzes auth_token_verify. The key directory is made once, in LLVMFuzzerInitialize, in a
 * fresh temp dir: an Ed25519 key from a fixed seed (so a committed token signed with it verifies
 * on every run and a reproducer reproduces) opened with auth_keys_open, plus a fixed P-256 key
 * trusted as an external issuer (ES256). The files are removed once loaded; the keys live until
 * exit. Issuer and audience are "ocireg".
 *
 * The first input byte picks the mode (its low two bits; seeds use '0'..'3'):
 *   0  the rest is the token as it arrives (signatures of mutated tokens fail: this reaches the
 *      framing, base64 and header checks, and the ES256 r||s to DER conversion);
 *   1  the rest is the claims JSON, signed by this harness with our Ed25519 key under a fixed
 *      EdDSA header, so the claim checks are reached;
 *   2  "<header JSON>\n<claims JSON>" signed with our Ed25519 key;
 *   3  "<header JSON>\n<claims JSON>" signed with the external issuer's ES256 key.
 *
 * With OCIREG_FUZZ_JWT_SEEDS=<dir> in the environment it writes seed inputs made by
 * auth_token_issue into <dir> and exits (tests/fuzz/corpus/jwt/ was made this way).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth/token.h"
#include "storage/names.h"
#include "tests/fuzz/fuzz.h"

#define ISSUER "ocireg"
#define AUDIENCE "ocireg"
#define EXTERNAL_ISSUER "https://idp.example.test"
#define NOW 1700000000u

/* 32 bytes: the seed of the Ed25519 key every run uses (fuzzing only). */
static const unsigned char ED_SEED[crypto_sign_SEEDBYTES] = "ocireg fuzz_jwt fixed key seed!";

/* A P-256 key made for this harness alone (openssl genpkey -algorithm EC). */
static const char EC_PEM[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVDcu+K4apNgyo6rE\n"
                             "xrW1tXYRvOmn/l4ool5mmqYeksKhRANCAARPzbSmkMeGNrSqUFD+IPjouMQbLZeP\n"
                             "fcV0S4h5fAN/B7uMUxjkb3IBOCQjZKOuGplQn6hROxVWY4KS5Kw1xRES\n"
                             "-----END PRIVATE KEY-----\n";

static struct auth_keys *keys;
static unsigned char ed_sk[crypto_sign_SECRETKEYBYTES];
static EVP_PKEY *ec_key;

static void release(void)
{
    auth_keys_close(keys);
    keys = NULL;
    EVP_PKEY_free(ec_key);
    ec_key = NULL;
    sodium_memzero(ed_sk, sizeof(ed_sk));
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_jwt: %s\n", what);
    exit(1);
}

/* OWNED (free()): base64url without padding of data[0..len). */
static char *b64url(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* JWS ES256 signature (r || s, 32 bytes each) of msg with the external key. */
static void es256_sign(const char *msg, size_t len, unsigned char out[64])
{
    unsigned char der[80];
    size_t dlen = sizeof(der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FUZZ_CHECK(ctx != NULL);
    FUZZ_CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec_key) == 1);
    FUZZ_CHECK(EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)msg, len) == 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    FUZZ_CHECK(sig != NULL);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    FUZZ_CHECK(BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32);
    ECDSA_SIG_free(sig);
}

/* OWNED (free()): "<b64 header>.<b64 claims>.<b64 signature>", signed with Ed25519 or ES256. */
static char *make_token(const void *hdr, size_t hlen, const void *claims, size_t clen, bool es256)
{
    char *h64 = b64url(hdr, hlen), *c64 = b64url(claims, clen);
    size_t ilen = strlen(h64) + 1 + strlen(c64);
    char *input = malloc(ilen + 1);
    FUZZ_CHECK(input != NULL);
    snprintf(input, ilen + 1, "%s.%s", h64, c64);
    unsigned char sig[crypto_sign_BYTES];
    size_t slen = crypto_sign_BYTES;
    if (es256) {
        es256_sign(input, ilen, sig);
        slen = 64;
    } else {
        crypto_sign_detached(sig, NULL, (const unsigned char *)input, ilen, ed_sk);
    }
    char *s64 = b64url(sig, slen);
    size_t total = ilen + 1 + strlen(s64) + 1;
    char *tok = malloc(total);
    FUZZ_CHECK(tok != NULL);
    snprintf(tok, total, "%s.%s", input, s64);
    free(h64);
    free(c64);
    free(input);
    free(s64);
    return tok;
}

static void write_seed(const char *dir, const char *name, const char *mode, const char *a,
                       const char *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("cannot write a seed");
    fputs(mode, f);
    fputs(a, f);
    if (b != NULL) {
        fputc('\n', f);
        fputs(b, f);
    }
    if (fclose(f) != 0)
        die("cannot write a seed");
}

/* The claims part of a token, decoded. OWNED (free()). */
static char *claims_of(const char *tok)
{
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    size_t cap = (size_t)(d2 - d1), len = 0;
    char *out = malloc(cap + 1);
    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(sodium_base642bin((unsigned char *)out, cap, d1 + 1, (size_t)(d2 - d1 - 1), NULL,
                                 &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
    out[len] = '\0';
    return out;
}

/* Seeds: real tokens from auth_token_issue, their claims, and external ES256 tokens. */
static void write_seeds(const char *dir)
{
    struct auth_access acc[3];
    memset(acc, 0, sizeof(acc));
    acc[0].catalog = true;
    snprintf(acc[1].name, sizeof(acc[1].name), "library/alpine");
    acc[1].actions = AUTH_PULL | AUTH_PUSH;
    snprintf(acc[2].name, sizeof(acc[2].name), "team/app-1");
    acc[2].actions = AUTH_ALL;
    struct auth_token_req req = {AUTH_TOKEN_ACCESS, ISSUER, AUDIENCE, "alice", 0, acc, 3, NOW, 300,
                                 0x0123456789abcdefull};
    static const struct {
        enum auth_token_kind kind;
        const char *subject;
        size_t naccess;
        const char *file;
    } issued[] = {{AUTH_TOKEN_ACCESS, "alice", 3, "access"},
                  {AUTH_TOKEN_ACCESS, "", 0, "anonymous"},
                  {AUTH_TOKEN_REFRESH, "alice", 0, "refresh"},
                  {AUTH_TOKEN_LOGIN, "robot-ci", 0, "login"}};
    for (size_t i = 0; i < sizeof(issued) / sizeof(issued[0]); i++) {
        req.kind = issued[i].kind;
        req.subject = issued[i].subject;
        req.naccess = issued[i].naccess;
        req.generation = (uint32_t)i;
        char *tok = NULL;
        if (auth_token_issue(keys, &req, &tok) != AUTH_OK)
            die("auth_token_issue failed");
        char *claims = claims_of(tok);
        char name[64];
        snprintf(name, sizeof(name), "raw-%s", issued[i].file);
        write_seed(dir, name, "0", tok, NULL);
        snprintf(name, sizeof(name), "claims-%s", issued[i].file);
        write_seed(dir, name, "1", claims, NULL);
        snprintf(name, sizeof(name), "header-%s", issued[i].file);
        char hdr[128];
        snprintf(hdr, sizeof(hdr), "{\"typ\":\"JWT\",\"alg\":\"EdDSA\",\"kid\":\"%s\"}",
                 auth_keys_kid(keys));
        write_seed(dir, name, "2", hdr, claims);
        free(claims);
        free(tok);
    }
    /* an external issuer's access token, as an identity provider would make it */
    static const char ext_hdr[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"idp-1\"}";
    char ext_claims[512];
    snprintf(ext_claims, sizeof(ext_claims),
             "{\"iss\":\"%s\",\"sub\":\"bob\",\"aud\":[\"other\",\"%s\"],\"exp\":%u,\"nbf\":%u,"
             "\"iat\":%u,\"access\":[{\"type\":\"repository\",\"name\":\"library/alpine\","
             "\"actions\":[\"pull\",\"push\"]},{\"type\":\"registry\",\"name\":\"catalog\","
             "\"actions\":[\"*\"]},{\"type\":\"repository\",\"name\":\"x\",\"actions\":"
             "[\"pull,delete\"]}]}",
             EXTERNAL_ISSUER, AUDIENCE, NOW + 300, NOW, NOW);
    write_seed(dir, "es256-external", "3", ext_hdr, ext_claims);
    char *tok = make_token(ext_hdr, strlen(ext_hdr), ext_claims, strlen(ext_claims), true);
    write_seed(dir, "raw-es256-external", "0", tok, NULL);
    free(tok);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        die("sodium_init failed");
    const char *base = getenv("TMPDIR");
    char dir[4096], keyfile[4200], pemfile[4200];
    snprintf(dir, sizeof(dir), "%s/ocireg-fuzz-jwt.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp failed");
    snprintf(keyfile, sizeof(keyfile), "%s/keys/token-ed25519.key", dir);
    snprintf(pemfile, sizeof(pemfile), "%s/external.pem", dir);

    /* our key: written where auth_keys_open looks for it, from the fixed seed */
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_seed_keypair(pk, ed_sk, ED_SEED);
    char keydir[4200];
    snprintf(keydir, sizeof(keydir), "%s/keys", dir);
    if (mkdir(keydir, 0700) != 0)
        die("mkdir failed");
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1 || write(fd, ed_sk, sizeof(ed_sk)) != (ssize_t)sizeof(ed_sk) || close(fd) != 0)
        die("cannot write the key");

    /* the external issuer's key: its public half in a PEM file for auth_keys_trust */
    BIO *bio = BIO_new_mem_buf(EC_PEM, -1);
    ec_key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    FILE *f = fopen(pemfile, "w");
    if (ec_key == NULL || f == NULL || PEM_write_PUBKEY(f, ec_key) != 1)
        die("cannot write the external key");
    if (fclose(f) != 0)
        die("cannot write the external key");

    if (auth_keys_open(&keys, keydir) != AUTH_OK)
        die("auth_keys_open failed");
    if (auth_keys_trust(keys, EXTERNAL_ISSUER, pemfile) != AUTH_OK)
        die("auth_keys_trust failed");
    atexit(release);
    if (unlink(keyfile) != 0 || rmdir(keydir) != 0 || unlink(pemfile) != 0 || rmdir(dir) != 0)
        die("cannot remove the temp dir");

    const char *seeds = getenv("OCIREG_FUZZ_JWT_SEEDS");
    if (seeds != NULL && *seeds != '\0') {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

static void check_claims(const struct auth_claims *c, int mode)
{
    /* exp is a NumericDate: an accepted token's is a time after now less the 60 s leeway, and
     * a date before 1970 (negative) is long past */
    FUZZ_CHECK(c->expires <= (uint64_t)INT64_MAX && c->expires + 60 > NOW);
    FUZZ_CHECK(strlen(c->subject) <= AUTH_NAME_MAX);
    FUZZ_CHECK(c->naccess <= 256);
    if (mode == 1 || mode == 2)
        FUZZ_CHECK(!c->external); /* signed with our key */
    if (mode == 3)
        FUZZ_CHECK(c->external && c->kind == AUTH_TOKEN_ACCESS);
    for (size_t i = 0; i < c->naccess; i++) {
        const struct auth_access *a = &c->access[i];
        if (a->catalog) {
            FUZZ_CHECK(auth_claims_catalog(c));
            continue;
        }
        size_t n = strlen(a->name);
        FUZZ_CHECK(name_valid(a->name, n));
        FUZZ_CHECK((a->actions & ~(unsigned)AUTH_ALL) == 0);
        FUZZ_CHECK(auth_claims_mentions(c, a->name));
        FUZZ_CHECK((auth_claims_allowed(c, a->name) & a->actions) == a->actions);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] & 3;
    const uint8_t *rest = data + 1;
    size_t rlen = size - 1;
    char *tok;
    if (mode == 0) {
        tok = fuzz_strdup(rest, rlen);
    } else if (mode == 1) {
        char hdr[128];
        snprintf(hdr, sizeof(hdr), "{\"typ\":\"JWT\",\"alg\":\"EdDSA\",\"kid\":\"%s\"}",
                 auth_keys_kid(keys));
        tok = make_token(hdr, strlen(hdr), rest, rlen, false);
    } else {
        const uint8_t *nl = memchr(rest, '\n', rlen);
        size_t hlen = nl != NULL ? (size_t)(nl - rest) : rlen;
        const uint8_t *claims = nl != NULL ? nl + 1 : rest + rlen;
        size_t clen = rlen - hlen - (nl != NULL);
        tok = make_token(rest, hlen, claims, clen, mode == 3);
    }

    struct auth_claims c;
    memset(&c, 0xa5, sizeof(c)); /* written only on success */
    enum auth_err rc = auth_token_verify(keys, tok, ISSUER, AUDIENCE, NOW, &c);
    if (rc == AUTH_OK) {
        check_claims(&c, mode);
        auth_claims_free(&c);
        FUZZ_CHECK(c.access == NULL && c.naccess == 0);
    } else {
        FUZZ_CHECK(rc == AUTH_EDENIED || rc == AUTH_EEXPIRED || rc == AUTH_ENOMEM);
    }
    free(tok);
    return 0;
}
