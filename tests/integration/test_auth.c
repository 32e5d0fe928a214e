/*
 * Access control against the real binary: token and basic modes, the token endpoint, grants
 * with globs, anonymous pull, insufficient scope, mounts, login passwords, every kind of bad
 * token (expired, early, wrong audience or issuer, alg none, HS256 keyed with the public key,
 * tampered, another repository's, refresh or login tokens as bearer), external RS256/ES256
 * issuers, unauthorized uploads refused before their body, DELETE only with delete, and no
 * secrets in the log.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define HDR_MAX 12000

static struct srv S;
static char keydir[64];
static char es_pem[128], rs_pem[128];
static EVP_PKEY *es_key, *rs_key;
static const char ALICE_PW[] = "alice-pass-1";
static char bob_pw[64];
/* alice's account id and generation, as our tokens carry them (alice_account_of). */
static char alice_acct[17] = "0000000000000000";
static long long alice_gen;


/* ---- helpers ---- */

static struct resp *req(const char *method, const char *path, const char *auth, const void *body,
                        size_t len)
{
    static char h[HDR_MAX + 32]; /* "Authorization: " and a value of up to HDR_MAX */
    const char *hdrs[2] = {NULL, NULL};
    if (auth != NULL) {
        snprintf(h, sizeof(h), "Authorization: %s", auth);
        hdrs[0] = h;
    }
    return http(&S, method, path, hdrs, body, len);
}

/* GET /auth/token?service=ocireg&QUERY with optional Basic credentials; token into out. */
static long get_token(const char *user, const char *pw, const char *query, char *out, size_t cap)
{
    char auth[HDR_MAX], path[1024];
    if (user != NULL)
        basic_auth(user, pw, auth, sizeof(auth));
    snprintf(path, sizeof(path), "/auth/token?service=ocireg&%s", query);
    struct resp *r = req("GET", path, user != NULL ? auth : NULL, NULL, 0);
    long st = r->status;
    out[0] = '\0';
    const char *t = strstr(r->body, "\"token\":\"");
    if (st == 200 && t != NULL) {
        t += 9;
        size_t n = strcspn(t, "\"");
        CHECK(n < cap);
        memcpy(out, t, n);
        out[n] = '\0';
    }
    resp_free(r);
    return st;
}

static void bearer(const char *tok, char *out, size_t cap)
{
    snprintf(out, cap, "Bearer %s", tok);
}

/* Reads alice's current account id and generation from a token the server issues her, so a
 * token the test signs itself can be a well-made one. */
static void alice_account_of(void)
{
    char tok[4096];
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:team/app:pull", tok, sizeof(tok)),
              ==, 200);
    const char *p = strchr(tok, '.');
    CHECK(p != NULL);
    p++;
    size_t plen = strcspn(p, ".");
    char payload[4096];
    size_t n = 0;
    CHECK(sodium_base642bin((unsigned char *)payload, sizeof(payload) - 1, p, plen, NULL, &n,
                            NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
    payload[n] = '\0';
    const char *a = strstr(payload, "\"ocireg_acct\":\"");
    const char *g = strstr(payload, "\"ocireg_gen\":");
    CHECK(a != NULL && g != NULL);
    memcpy(alice_acct, a + 15, 16);
    alice_acct[16] = '\0';
    alice_gen = strtoll(g + 13, NULL, 10);
}

static void b64url(const void *data, size_t len, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

enum signer { SIGN_OURS, SIGN_NONE, SIGN_HS256, SIGN_ES256, SIGN_RS256 };

/* A JWT with the given header and claims, signed as asked. */
static void make_jwt(const char *header, const char *claims, enum signer how, char *out,
                     size_t cap)
{
    char h64[512], c64[4096], input[5000], s64[1024] = "";
    b64url(header, strlen(header), h64, sizeof(h64));
    b64url(claims, strlen(claims), c64, sizeof(c64));
    snprintf(input, sizeof(input), "%s.%s", h64, c64);
    unsigned char sig[1024];
    size_t slen = 0;
    if (how == SIGN_OURS) {
        char path[256];
        snprintf(path, sizeof(path), "%s/keys/token-ed25519.key", S.root);
        unsigned char sk[64];
        int fd = open(path, O_RDONLY);
        CHECK(fd != -1 && read(fd, sk, 64) == 64);
        close(fd);
        crypto_sign_detached(sig, NULL, (unsigned char *)input, strlen(input), sk);
        slen = 64;
    } else if (how == SIGN_HS256) {
        /* the classic confusion: HMAC keyed with the RSA public key's PEM text */
        FILE *f = fopen(rs_pem, "r");
        char pem[4096];
        size_t pl = fread(pem, 1, sizeof(pem), f);
        fclose(f);
        unsigned int ml = 0;
        HMAC(EVP_sha256(), pem, (int)pl, (unsigned char *)input, strlen(input), sig, &ml);
        slen = ml;
    } else if (how == SIGN_ES256 || how == SIGN_RS256) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char der[1024];
        size_t dl = sizeof(der);
        CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL,
                                 how == SIGN_ES256 ? es_key : rs_key) == 1);
        CHECK(EVP_DigestSign(ctx, der, &dl, (unsigned char *)input, strlen(input)) == 1);
        EVP_MD_CTX_free(ctx);
        if (how == SIGN_RS256) {
            memcpy(sig, der, dl);
            slen = dl;
        } else {
            const unsigned char *p = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
            CHECK(es != NULL);
            const BIGNUM *r, *s;
            ECDSA_SIG_get0(es, &r, &s);
            BN_bn2binpad(r, sig, 32);
            BN_bn2binpad(s, sig + 32, 32);
            ECDSA_SIG_free(es);
            slen = 64;
        }
    }
    if (slen > 0)
        b64url(sig, slen, s64, sizeof(s64));
    snprintf(out, cap, "%s.%s", input, s64);
}

static void claims(char *out, size_t cap, const char *iss, const char *aud, long long exp_delta,
                   long long nbf_delta, const char *kind, const char *repo)
{
    long long now = (long long)time(NULL);
    snprintf(out, cap,
             "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"exp\":%lld,\"nbf\":%lld,\"iat\":"
             "%lld,\"jti\":\"j\",\"ocireg_kind\":\"%s\",\"ocireg_gen\":%lld,\"ocireg_acct\":\"%s\","
             "\"access\":[{\"type\":\"repository\",\"name\":\"%s\",\"actions\":[\"pull\",\"push\"]}]}",
             iss, aud, now + exp_delta, now + nbf_delta, now, kind, alice_gen, alice_acct, repo);
}

/* Status of GET /v2/team/app/tags/list with this bearer token. */
static long try_token(const char *tok)
{
    char auth[HDR_MAX];
    bearer(tok, auth, sizeof(auth));
    struct resp *r = req("GET", "/v2/team/app/tags/list", auth, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

static void cli_ok(const char *stdin_text, char *out, size_t cap, const char *const *args)
{
    char buf[512];
    int rc = run_cli(&S, stdin_text, out != NULL ? out : buf, out != NULL ? cap : sizeof(buf),
                     args);
    CHECK_INT(rc, ==, 0);
}

/* Monolithic push of data to repo with the given Authorization; returns the status. */
static long push_blob(const char *repo, const char *auth, const char *data, char *digest)
{
    char path[512];
    sha256_str(data, strlen(data), digest);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, digest);
    struct resp *r = req("POST", path, auth, data, strlen(data));
    long st = r->status;
    resp_free(r);
    return st;
}

/* An image of one config blob pushed to repo:tag with auth; the manifest digest into md. */
static void push_image_auth(const char *repo, const char *tag, const char *auth, const char *cfg,
                            char *md)
{
    char cd[80], body[1024], path[512], ah[HDR_MAX + 32];
    CHECK_INT(push_blob(repo, auth, cfg, cd), ==, 201);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
             "\"%s\",\"size\":%zu},\"layers\":[]}",
             cd, strlen(cfg));
    sha256_str(body, strlen(body), md);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag);
    snprintf(ah, sizeof(ah), "Authorization: %s", auth);
    struct resp *r =
        http(&S, "PUT", path,
             (const char *[]){ah, "Content-Type: application/vnd.oci.image.manifest.v1+json", NULL},
             body, strlen(body));
    EXPECT(r, 201, NULL);
    resp_free(r);
}

static long status_with(const char *method, const char *path, const char *auth)
{
    struct resp *r = req(method, path, auth, NULL, 0);
    long st = r->status;
    resp_free(r);
    return st;
}

static void make_keys(void)
{
    snprintf(keydir, sizeof(keydir), "/tmp/ocireg-keys-XXXXXX");
    CHECK(mkdtemp(keydir) != NULL);
    snprintf(es_pem, sizeof(es_pem), "%s/es256.pem", keydir);
    snprintf(rs_pem, sizeof(rs_pem), "%s/rs256.pem", keydir);
    es_key = EVP_EC_gen("P-256");
    rs_key = EVP_RSA_gen(2048);
    CHECK(es_key != NULL && rs_key != NULL);
    FILE *f = fopen(es_pem, "w");
    CHECK(f != NULL && PEM_write_PUBKEY(f, es_key) == 1);
    fclose(f);
    f = fopen(rs_pem, "w");
    CHECK(f != NULL && PEM_write_PUBKEY(f, rs_key) == 1);
    fclose(f);
}

/* ---- token mode ---- */

static void test_token_challenges(void)
{
    char h[512];
    struct resp *r = req("GET", "/v2/", NULL, NULL, 0);
    EXPECT(r, 401, "UNAUTHORIZED");
    CHECK(resp_hdr(r, "WWW-Authenticate", h, sizeof(h)) != NULL);
    char want[256];
    snprintf(want, sizeof(want), "Bearer realm=\"http://127.0.0.1:%u/auth/token\",service=\"ocireg\"",
             S.port);
    CHECK_STR(h, want);
    resp_free(r);
    r = req("GET", "/v2/team/app/tags/list", NULL, NULL, 0);
    EXPECT(r, 401, "UNAUTHORIZED");
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, ",scope=\"repository:team/app:pull\"") != NULL);
    resp_free(r);
    r = req("POST", "/v2/team/app/blobs/uploads/", NULL, "", 0);
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, ",scope=\"repository:team/app:pull,push\"") != NULL);
    resp_free(r);
    r = req("GET", "/v2/_catalog", NULL, NULL, 0);
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, ",scope=\"registry:catalog:*\"") != NULL);
    resp_free(r);
}

static void test_token_flow(void)
{
    char tok[4096], auth[HDR_MAX], d[80], path[512], h[512];
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:team/app:pull,push", tok, sizeof(tok)),
              ==, 200);
    bearer(tok, auth, sizeof(auth));
    CHECK_INT(push_blob("team/app", auth, "team blob", d), ==, 201);
    snprintf(path, sizeof(path), "/v2/team/app/blobs/%s", d);
    struct resp *r = req("GET", path, auth, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    /* the token names team/app: it does nothing for team/other */
    r = req("GET", "/v2/team/other/tags/list", auth, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, "error=\"insufficient_scope\"") != NULL);
    resp_free(r);
    /* a partial grant is no error: private/x is simply left out */
    CHECK_INT(get_token("alice", ALICE_PW,
                        "scope=repository:team/app:pull&scope=repository:private/x:pull", tok,
                        sizeof(tok)),
              ==, 200);
    bearer(tok, auth, sizeof(auth));
    r = req("GET", "/v2/private/x/tags/list", auth, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
    /* pull only: pushing with it is refused before the body */
    r = req("POST", "/v2/team/app/blobs/uploads/", auth, "", 0);
    EXPECT(r, 401, NULL);
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, "insufficient_scope") != NULL);
    resp_free(r);
}

/* DELETE of a manifest, a tag or a blob needs delete: pull and push are not enough. */
static void test_delete_needs_delete(void)
{
    char tok[4096], auth[4200], del[4200], md[80], cd[80], mpath[256], bpath[256], h[512];
    /* alice may pull and push in team: the delete she asks for is left out of her token */
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:team/del:pull,push,delete", tok,
                        sizeof(tok)),
              ==, 200);
    bearer(tok, auth, sizeof(auth));
    push_image_auth("team/del", "v1", auth, "{\"del\":1}", md);
    sha256_str("{\"del\":1}", 9, cd);
    snprintf(mpath, sizeof(mpath), "/v2/team/del/manifests/%s", md);
    snprintf(bpath, sizeof(bpath), "/v2/team/del/blobs/%s", cd);
    const char *paths[] = {mpath, "/v2/team/del/manifests/v1", bpath};
    for (int i = 0; i < 3; i++) {
        struct resp *r = req("DELETE", paths[i], auth, NULL, 0);
        EXPECT(r, 401, "UNAUTHORIZED");
        CHECK(resp_hdr(r, "WWW-Authenticate", h, sizeof(h)) != NULL);
        CHECK(strstr(h, "scope=\"repository:team/del:delete\"") != NULL);
        CHECK(strstr(h, "error=\"insufficient_scope\"") != NULL);
        resp_free(r);
        CHECK_INT(status_with("DELETE", paths[i], NULL), ==, 401);
        /* nothing went */
        CHECK_INT(status_with("GET", paths[i], auth), ==, 200);
    }
    /* granted delete, the same requests succeed */
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "alice", "team/del", "delete", NULL});
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:team/del:pull,push,delete", tok,
                        sizeof(tok)),
              ==, 200);
    bearer(tok, del, sizeof(del));
    CHECK_INT(status_with("DELETE", "/v2/team/del/manifests/v1", del), ==, 202);
    CHECK_INT(status_with("GET", "/v2/team/del/manifests/v1", del), ==, 404);
    CHECK_INT(status_with("DELETE", mpath, del), ==, 202);
    CHECK_INT(status_with("GET", mpath, del), ==, 404);
    CHECK_INT(status_with("DELETE", bpath, del), ==, 202);
    CHECK_INT(status_with("GET", bpath, del), ==, 404);
    cli_ok(NULL, NULL, 0, (const char *[]){"revoke", "alice", "team/del", NULL});
}

static void test_token_endpoint_forms(void)
{
    char tok[4096];
    /* same answer for an unknown user and a wrong password */
    struct resp *a = req("GET", "/auth/token?service=ocireg&scope=repository:team/app:pull",
                         "Basic bm9ib2R5Onh4eA==", NULL, 0); /* nobody:xxx */
    char wrong[512];
    basic_auth("alice", "wrong", wrong, sizeof(wrong));
    struct resp *b = req("GET", "/auth/token?service=ocireg&scope=repository:team/app:pull",
                         wrong, NULL, 0);
    EXPECT(a, 401, NULL);
    EXPECT(b, 401, NULL);
    CHECK_STR(a->body, b->body);
    resp_free(a);
    resp_free(b);
    /* unknown service */
    CHECK_INT(get_token("alice", ALICE_PW, "service=other", tok, sizeof(tok)), ==, 400);
    /* GET with offline_token: a refresh token comes along */
    char auth[512];
    basic_auth("alice", ALICE_PW, auth, sizeof(auth));
    struct resp *r = req("GET", "/auth/token?service=ocireg&offline_token=true&client_id=t",
                         auth, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "\"refresh_token\":\"") != NULL);
    resp_free(r);
    /* the OAuth2 POST forms */
    char form[8192];
    snprintf(form, sizeof(form),
             "grant_type=password&username=alice&password=%s&service=ocireg&client_id=t&"
             "access_type=offline&scope=repository%%3Ateam%%2Fapp%%3Apull",
             ALICE_PW);
    r = http(&S, "POST", "/auth/token",
             (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, form,
             strlen(form));
    EXPECT(r, 200, NULL);
    const char *rt = strstr(r->body, "\"refresh_token\":\"");
    CHECK(rt != NULL);
    char refresh[4096];
    rt += 17;
    size_t n = strcspn(rt, "\"");
    memcpy(refresh, rt, n);
    refresh[n] = '\0';
    resp_free(r);
    /* a refresh token is no bearer token */
    CHECK_INT(try_token(refresh), ==, 401);
    snprintf(form, sizeof(form),
             "grant_type=refresh_token&refresh_token=%s&service=ocireg&client_id=t&"
             "scope=repository:team/app:pull",
             refresh);
    r = http(&S, "POST", "/auth/token",
             (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, form,
             strlen(form));
    EXPECT(r, 200, NULL);
    const char *t = strstr(r->body, "\"access_token\":\"");
    CHECK(t != NULL);
    t += 16;
    n = strcspn(t, "\"");
    memcpy(tok, t, n);
    tok[n] = '\0';
    resp_free(r);
    CHECK_INT(try_token(tok), !=, 401);
    snprintf(form, sizeof(form), "grant_type=password&username=alice&password=nope&service=ocireg");
    r = http(&S, "POST", "/auth/token", NULL, form, strlen(form));
    EXPECT(r, 401, NULL);
    resp_free(r);
    /* revoking alice's tokens ends the refresh token */
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "revoke-tokens", "alice", NULL});
    snprintf(form, sizeof(form), "grant_type=refresh_token&refresh_token=%s&service=ocireg",
             refresh);
    r = http(&S, "POST", "/auth/token", NULL, form, strlen(form));
    EXPECT(r, 401, NULL);
    resp_free(r);
}

static void test_anonymous_and_catalog(void)
{
    char tok[4096], auth[HDR_MAX];
    /* no anonymous grant yet: an anonymous token grants nothing */
    CHECK_INT(get_token(NULL, NULL, "scope=repository:public/x:pull", tok, sizeof(tok)), ==, 200);
    bearer(tok, auth, sizeof(auth));
    struct resp *r = req("GET", "/v2/public/x/tags/list", auth, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "anonymous", "public/*", "pull", NULL});
    CHECK_INT(get_token(NULL, NULL, "scope=repository:public/x:pull,push", tok, sizeof(tok)), ==,
              200);
    bearer(tok, auth, sizeof(auth));
    r = req("GET", "/v2/public/x/tags/list", auth, NULL, 0);
    EXPECT(r, 404, "NAME_UNKNOWN"); /* allowed in; the repository just does not exist */
    resp_free(r);
    r = req("POST", "/v2/public/x/blobs/uploads/", auth, "", 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
    /* without pull on everything, the part of the catalog alice may pull (public/x is no
     * repository yet); anonymous gets no catalog scope at all */
    CHECK_INT(get_token("alice", ALICE_PW, "scope=registry:catalog:*", tok, sizeof(tok)), ==, 200);
    bearer(tok, auth, sizeof(auth));
    r = req("GET", "/v2/_catalog", auth, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_STR(r->body, "{\"repositories\":[\"team/app\"]}");
    resp_free(r);
    CHECK_INT(get_token(NULL, NULL, "scope=registry:catalog:*", tok, sizeof(tok)), ==, 200);
    bearer(tok, auth, sizeof(auth));
    r = req("GET", "/v2/_catalog", auth, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "add", "admin", NULL});
    char out[128];
    cli_ok("admin-pw\n", out, sizeof(out), (const char *[]){"user", "passwd", "admin", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "admin", "*", "*", NULL});
    CHECK_INT(get_token("admin", "admin-pw", "scope=registry:catalog:*", tok, sizeof(tok)), ==, 200);
    bearer(tok, auth, sizeof(auth));
    r = req("GET", "/v2/_catalog", auth, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK(strstr(r->body, "team/app") != NULL);
    resp_free(r);
}

static void test_mount_needs_pull_on_from(void)
{
    char tok[4096], auth[HDR_MAX], d[80], path[512];
    sha256_str("team blob", 9, d);
    /* bob may push to bob/..., pull team/..., nothing on secret/... */
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "bob", "bob/*", "pull,push", NULL});
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:team/app:pull,push", tok, sizeof(tok)),
              ==, 200);
    char alice_auth[HDR_MAX];
    bearer(tok, alice_auth, sizeof(alice_auth));
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "alice", "secret/*", "pull,push", NULL});
    CHECK_INT(get_token("alice", ALICE_PW, "scope=repository:secret/s:pull,push", tok, sizeof(tok)),
              ==, 200);
    bearer(tok, alice_auth, sizeof(alice_auth));
    char sd[80];
    CHECK_INT(push_blob("secret/s", alice_auth, "secret bytes", sd), ==, 201);

    CHECK_INT(get_token("bob", bob_pw,
                        "scope=repository:bob/x:pull,push&scope=repository:secret/s:pull&"
                        "scope=repository:team/app:pull",
                        tok, sizeof(tok)),
              ==, 200);
    bearer(tok, auth, sizeof(auth));
    /* from a repository bob may not pull: an ordinary upload session, no existence leak */
    snprintf(path, sizeof(path), "/v2/bob/x/blobs/uploads/?mount=%s&from=secret/s", sd);
    struct resp *r = req("POST", path, auth, "", 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    /* nor without from, under access control */
    snprintf(path, sizeof(path), "/v2/bob/x/blobs/uploads/?mount=%s", sd);
    r = req("POST", path, auth, "", 0);
    EXPECT(r, 202, NULL);
    resp_free(r);
    /* a token that never asked about from: challenged for both scopes */
    char only[4096], only_auth[HDR_MAX], h[512];
    CHECK_INT(get_token("bob", bob_pw, "scope=repository:bob/y:pull,push", only, sizeof(only)), ==,
              200);
    bearer(only, only_auth, sizeof(only_auth));
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s&from=team/app", d);
    r = req("POST", path, only_auth, "", 0);
    EXPECT(r, 401, NULL);
    resp_hdr(r, "WWW-Authenticate", h, sizeof(h));
    CHECK(strstr(h, "scope=\"repository:bob/y:pull,push repository:team/app:pull\"") != NULL);
    resp_free(r);
    /* from a repository bob may pull: mounted */
    snprintf(path, sizeof(path), "/v2/bob/x/blobs/uploads/?mount=%s&from=team/app", d);
    r = req("POST", path, auth, "", 0);
    EXPECT(r, 201, NULL);
    resp_free(r);
    /* bob can pull team/app but not push to it */
    CHECK_INT(get_token("bob", bob_pw, "scope=repository:team/app:pull,push", tok, sizeof(tok)), ==,
              200);
    bearer(tok, auth, sizeof(auth));
    char bd[80];
    CHECK_INT(push_blob("team/app", auth, "bob was here", bd), ==, 401);
    snprintf(path, sizeof(path), "/v2/team/app/blobs/%s", d);
    r = req("GET", path, auth, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
}

static void test_body_never_read_unauthorized(void)
{
    int before = count_files(S.root, "uploads");
    char raw[512];
    int n = snprintf(raw, sizeof(raw),
                     "PATCH /v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef HTTP/1.1\r\n"
                     "Host: x\r\nContent-Length: 1073741824\r\n\r\n0123456789");
    /* no half close: the answer must come while the client still "sends" */
    char *out = raw_exchange(&S, raw, (size_t)n, false);
    CHECK(strncmp(out, "HTTP/1.1 401", 12) == 0);
    free(out);
    n = snprintf(raw, sizeof(raw),
                 "POST /v2/team/app/blobs/uploads/?digest=sha256:"
                 "0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1\r\n"
                 "Host: x\r\nAuthorization: Bearer not.a.token\r\nContent-Length: 1073741824\r\n\r\nx");
    out = raw_exchange(&S, raw, (size_t)n, false);
    CHECK(strncmp(out, "HTTP/1.1 401", 12) == 0);
    free(out);
    CHECK_INT(count_files(S.root, "uploads"), ==, before);
}

static void test_bad_tokens(void)
{
    char c[2048], tok[8192];
    static const char ours[] = "{\"typ\":\"JWT\",\"alg\":\"EdDSA\"}";
    alice_account_of();
    /* the forger's control: a well-made token of ours works */
    claims(c, sizeof(c), "ocireg", "ocireg", 300, 0, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 200);
    /* tampered: the payload of another token under this signature */
    char other[2048], tok2[8192];
    claims(other, sizeof(other), "ocireg", "ocireg", 300, 0, "access", "team/zzz");
    make_jwt(ours, other, SIGN_OURS, tok2, sizeof(tok2));
    char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    char *e1 = strchr(tok2, '.'), *e2 = strrchr(tok2, '.');
    char forged[8192];
    snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(e2 - e1), e1, d2);
    CHECK_INT(try_token(forged), ==, 401);
    /* one flipped signature character */
    snprintf(forged, sizeof(forged), "%s", tok);
    size_t last = strlen(forged) - 2;
    forged[last] = forged[last] == 'A' ? 'B' : 'A';
    CHECK_INT(try_token(forged), ==, 401);
    claims(c, sizeof(c), "ocireg", "ocireg", -120, -600, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* expired */
    claims(c, sizeof(c), "ocireg", "ocireg", 3600, 600, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* not yet valid */
    /* times before 1970 (exp -100 or -1, nbf -100): no time; a cast must not make a negative
     * exp the far future */
    long long now = (long long)time(NULL);
    static const long long exps[] = {-100, -1, -100000};
    for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
        claims(c, sizeof(c), "ocireg", "ocireg", exps[i] - now, -60, "access", "team/app");
        make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
        CHECK_INT(try_token(tok), ==, 401);
    }
    claims(c, sizeof(c), "ocireg", "ocireg", 300, -100 - now, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    claims(c, sizeof(c), "ocireg", "elsewhere", 300, 0, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* wrong audience */
    claims(c, sizeof(c), "mallory", "ocireg", 300, 0, "access", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* wrong issuer */
    claims(c, sizeof(c), "ocireg", "ocireg", 300, 0, "login", "team/app");
    make_jwt(ours, c, SIGN_OURS, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* a login password is no bearer token */
    claims(c, sizeof(c), "ocireg", "ocireg", 300, 0, "access", "team/app");
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"none\"}", c, SIGN_NONE, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    claims(c, sizeof(c), "ext", "ocireg", 300, 0, "access", "team/app");
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", c, SIGN_HS256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    CHECK_INT(try_token("garbage"), ==, 401);
    CHECK_INT(try_token("a.b.c"), ==, 401);
    CHECK_INT(try_token("..."), ==, 401);

    /* the external ES256 issuer: its tokens work, with its own iss only, and not with a
     * negative exp */
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", c, SIGN_ES256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 200);
    char neg[2048];
    claims(neg, sizeof(neg), "ext", "ocireg", -100 - now, -60, "access", "team/app");
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", neg, SIGN_ES256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    claims(c, sizeof(c), "ocireg", "ocireg", 300, 0, "access", "team/app");
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", c, SIGN_ES256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    claims(c, sizeof(c), "ext", "ocireg", 300, 0, "access", "team/app");
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"RS256\"}", c, SIGN_RS256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401); /* not the configured key */

    /* the same with an RS256 issuer */
    srv_stop(&S);
    srv_restart(&S, (const char *[]){"--auth", "token", "--token-issuer", "ext",
                                     "--token-public-key", rs_pem, NULL});
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"RS256\"}", c, SIGN_RS256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 200);
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", c, SIGN_HS256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
    make_jwt("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", c, SIGN_ES256, tok, sizeof(tok));
    CHECK_INT(try_token(tok), ==, 401);
}

static void test_login_password(void)
{
    char pw[4096], tok[4096];
    cli_ok(NULL, pw, sizeof(pw), (const char *[]){"login-password", "alice", "--ttl", "1h", NULL});
    pw[strcspn(pw, "\n")] = '\0';
    CHECK(strlen(pw) > 100);
    CHECK_INT(get_token("alice", pw, "scope=repository:team/app:pull", tok, sizeof(tok)), ==, 200);
    CHECK_INT(try_token(tok), ==, 200);
    /* not for another user */
    CHECK_INT(get_token("bob", pw, "scope=repository:team/app:pull", tok, sizeof(tok)), ==, 401);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "revoke-tokens", "alice", NULL});
    CHECK_INT(get_token("alice", pw, "scope=repository:team/app:pull", tok, sizeof(tok)), ==, 401);
    CHECK_INT(run_cli(&S, NULL, pw, sizeof(pw), (const char *[]){"login-password", "nobody", NULL}),
              ==, 1);
}

/* ---- basic mode ---- */

static void test_basic_mode(void)
{
    srv_stop(&S);
    srv_restart(&S, (const char *[]){"--auth", "basic", NULL});
    char auth[512], h[256], d[80];
    struct resp *r = req("GET", "/v2/", NULL, NULL, 0);
    EXPECT(r, 401, "UNAUTHORIZED");
    CHECK_STR(resp_hdr(r, "WWW-Authenticate", h, sizeof(h)), "Basic realm=\"ocireg\"");
    resp_free(r);
    basic_auth("alice", ALICE_PW, auth, sizeof(auth));
    r = req("GET", "/v2/", auth, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    CHECK_INT(push_blob("team/basic", auth, "basic blob", d), ==, 201);
    basic_auth("alice", "wrong", auth, sizeof(auth));
    CHECK_INT(push_blob("team/basic", auth, "basic blob", d), ==, 401);
    /* bob: pull on team/..., no push */
    basic_auth("bob", bob_pw, auth, sizeof(auth));
    CHECK_INT(push_blob("team/basic", auth, "bob blob", d), ==, 403);
    /* nor delete, for bob or alice (pull, push): refused, nothing goes */
    char alice[512], md[80], mpath[256], bpath[256];
    basic_auth("alice", ALICE_PW, alice, sizeof(alice));
    push_image_auth("team/basic-del", "v1", alice, "{\"basic-del\":1}", md);
    snprintf(mpath, sizeof(mpath), "/v2/team/basic-del/manifests/%s", md);
    sha256_str("{\"basic-del\":1}", 15, d);
    snprintf(bpath, sizeof(bpath), "/v2/team/basic-del/blobs/%s", d);
    const char *doomed[] = {mpath, "/v2/team/basic-del/manifests/v1", bpath};
    for (int i = 0; i < 3; i++) {
        r = req("DELETE", doomed[i], alice, NULL, 0);
        EXPECT(r, 403, "DENIED");
        resp_free(r);
        CHECK_INT(status_with("DELETE", doomed[i], auth), ==, 403);
        CHECK_INT(status_with("DELETE", doomed[i], NULL), ==, 401);
        CHECK_INT(status_with("GET", doomed[i], alice), ==, 200);
    }
    /* a user whose name starts another's holds none of that one's grants */
    cli_ok("ali-pass-1\n", NULL, 0, (const char *[]){"user", "add", "ali", NULL});
    char ali[512];
    basic_auth("ali", "ali-pass-1", ali, sizeof(ali));
    CHECK_INT(status_with("GET", bpath, ali), ==, 403);
    CHECK_INT(push_blob("team/basic", ali, "ali blob", d), ==, 403);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "ali", NULL});
    sha256_str("basic blob", 10, d);
    char path[256];
    snprintf(path, sizeof(path), "/v2/team/basic/blobs/%s", d);
    r = req("GET", path, auth, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    /* anonymous: public/... only */
    r = req("GET", "/v2/public/x/tags/list", NULL, NULL, 0);
    EXPECT(r, 404, "NAME_UNKNOWN");
    resp_free(r);
    r = req("GET", path, NULL, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
    /* a login password works as the password */
    char pw[4096];
    cli_ok(NULL, pw, sizeof(pw), (const char *[]){"login-password", "alice", NULL});
    pw[strcspn(pw, "\n")] = '\0';
    char big[HDR_MAX];
    basic_auth("alice", pw, big, sizeof(big));
    r = req("GET", path, big, NULL, 0);
    EXPECT(r, 200, NULL);
    resp_free(r);
    /* a deleted user is out at once, even with cached credentials */
    basic_auth("bob", bob_pw, auth, sizeof(auth));
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "bob", NULL});
    r = req("GET", path, auth, NULL, 0);
    EXPECT(r, 401, NULL);
    resp_free(r);
}

/*
 * Transfer figures per authenticated user, to the byte: carol, new, pushes an image (a config
 * blob and a manifest) and pulls both back. The counters reach the index within a second or so.
 */
static void test_usage_per_user(void)
{
    static const char cfg[] = "{\"carol\":\"config of the image carol pushes\"}";
    cli_ok("carol-pass-1\n", NULL, 0, (const char *[]){"user", "add", "carol", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "carol", "team/carol", "pull,push", NULL});
    char carol[512], md[80], cd[80], path[256];
    basic_auth("carol", "carol-pass-1", carol, sizeof(carol));
    push_image_auth("team/carol", "v1", carol, cfg, md);
    snprintf(path, sizeof(path), "/v2/team/carol/manifests/v1");
    struct resp *r = req("GET", path, carol, NULL, 0);
    EXPECT(r, 200, NULL);
    size_t manifest_len = r->len;
    resp_free(r);
    sha256_str(cfg, strlen(cfg), cd);
    snprintf(path, sizeof(path), "/v2/team/carol/blobs/%s", cd);
    r = req("GET", path, carol, NULL, 0);
    EXPECT(r, 200, NULL);
    CHECK_INT(r->len, ==, strlen(cfg));
    resp_free(r);
    char want[256], out[4096];
    snprintf(want, sizeof(want),
             "{\"user\":\"carol\",\"ingress_bytes\":%zu,\"egress_bytes\":%zu,\"pulls\":1,"
             "\"pushes\":1}",
             strlen(cfg) + manifest_len, strlen(cfg) + manifest_len);
    for (int i = 0;; i++) {
        CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                          (const char *[]){"usage", "--users", "--json", NULL}),
                  ==, 0);
        if (strstr(out, want) != NULL)
            break;
        if (i == 500) {
            fprintf(stderr, "usage --users printed: %s\nwant the row %s\n", out, want);
            abort();
        }
        usleep(20000);
    }
}

/*
 * An external issuer's subjects are whatever it says ("CORP\\jdoe", quotes, tabs, non-ASCII):
 * `usage --users --json` must still be JSON, naming each of them exactly.
 */
static void test_usage_json_user_names(void)
{
    static const char *const names[] = {"CORP\\jdoe", "say \"hi\"", "tab\there", "j\u00fcrgen"};
    enum { N = sizeof(names) / sizeof(names[0]) };
    srv_stop(&S);
    srv_restart(&S, (const char *[]){"--auth", "token", "--token-issuer", "ext",
                                     "--token-public-key", es_pem, NULL});
    long long now = (long long)time(NULL);
    for (size_t i = 0; i < N; i++) {
        json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:[{s:s, s:s, s:[s, s]}]}",
                              "iss", "ext", "sub", names[i], "aud", "ocireg", "exp",
                              (json_int_t)(now + 300), "nbf", (json_int_t)now, "iat",
                              (json_int_t)now, "ocireg_kind", "access", "access", "type",
                              "repository", "name", "team/names", "actions", "pull", "push");
        char *text = json_dumps(c, JSON_COMPACT);
        CHECK(text != NULL);
        char tok[8192], auth[8300], data[64], d[80];
        make_jwt("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", text, SIGN_ES256, tok, sizeof(tok));
        free(text);
        json_decref(c);
        bearer(tok, auth, sizeof(auth));
        snprintf(data, sizeof(data), "pushed by user %zu", i);
        CHECK_INT(push_blob("team/names", auth, data, d), ==, 201);
    }
    /* the counters reach the index within a second or so; every answer must parse */
    char out[16384];
    for (int tries = 0;; tries++) {
        CHECK(tries < 500);
        CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                          (const char *[]){"usage", "--users", "--json", NULL}),
                  ==, 0);
        json_error_t err;
        json_t *j = json_loads(out, 0, &err);
        if (j == NULL) {
            fprintf(stderr, "usage --users --json is no JSON (%s): %s\n", err.text, out);
            abort();
        }
        size_t found = 0, k;
        json_t *row;
        json_array_foreach(json_object_get(j, "users"), k, row)
        {
            const char *user = json_string_value(json_object_get(row, "user"));
            for (size_t i = 0; user != NULL && i < N; i++)
                if (strcmp(user, names[i]) == 0 &&
                    json_integer_value(json_object_get(row, "ingress_bytes")) > 0)
                    found++;
        }
        json_decref(j);
        if (found == N)
            break;
        usleep(20000);
    }
}

static void test_no_secrets_in_log(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/server.log", S.dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        CHECK(strstr(line, ALICE_PW) == NULL);
        CHECK(strstr(line, bob_pw) == NULL);
        CHECK(strstr(line, "Bearer ") == NULL);
        CHECK(strstr(line, "Basic ") == NULL || strstr(line, "realm") != NULL);
        CHECK(strstr(line, "eyJ") == NULL); /* the start of every JWT */
    }
    fclose(f);
    CHECK(lines > 10); /* the log was written, at debug level */
}

int main(void)
{
    make_keys();
    S.log_to_file = true;
    snprintf(S.log_level, sizeof(S.log_level), "debug");
    srv_start(&S, (const char *[]){"--auth", "token", "--token-issuer", "ext",
                                   "--token-public-key", es_pem, NULL});
    cli_ok(ALICE_PW, NULL, 0, (const char *[]){"user", "add", "alice", NULL});
    char out[128];
    cli_ok(NULL, out, sizeof(out), (const char *[]){"user", "add", "bob", NULL});
    snprintf(bob_pw, sizeof(bob_pw), "%.*s", (int)strcspn(out, "\n"), out);
    CHECK(strlen(bob_pw) >= 20);
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "alice", "team/*", "pull,push", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "bob", "team/*", "pull", NULL});
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"grant", "alice", "team/*", "fly", NULL}),
              ==, 2);
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out), (const char *[]){"user", "add", "anonymous", NULL}),
              ==, 2);
    RUN(test_token_challenges);
    RUN(test_token_flow);
    RUN(test_anonymous_and_catalog); /* before anything else makes a repository */
    RUN(test_delete_needs_delete);
    RUN(test_mount_needs_pull_on_from);
    RUN(test_body_never_read_unauthorized);
    RUN(test_token_endpoint_forms);
    RUN(test_login_password);
    RUN(test_bad_tokens);
    RUN(test_basic_mode);
    RUN(test_usage_per_user);
    RUN(test_usage_json_user_names);
    RUN(test_no_secrets_in_log);
    srv_cleanup(&S);
    unlink(es_pem);
    unlink(rs_pem);
    rmdir(keydir);
    EVP_PKEY_free(es_key);
    EVP_PKEY_free(rs_key);
    return 0;
}
