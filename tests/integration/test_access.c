/*
 * Accounts and the doors around the API, against the real binary: nothing issued to a
 * deleted account works for a new account of the same name (refresh tokens, login
 * passwords, access tokens, cached credentials, in token and basic mode); the admin
 * listener needs an administrator's credentials when auth is on and changes only with
 * --admin-writes; the catalog shows a user the repositories it may pull; failed logins are
 * bounded per client address.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include "tests/check.h"
#include "tests/integration/harness.h"

#define HDR_MAX 12000

static struct srv S;
static unsigned admin_port;
static const char ADMIN_PW[] = "admin-pass-1";
static const char ALICE_PW[] = "alice-pass-1";
static const char ROBOT_PW[] = "robot-pass-1";

/* ---- helpers ---- */

static const char *const *with_admin_port(const char *const *more)
{
    static char path[256];
    static const char *args[16];
    snprintf(path, sizeof(path), "%s/aport", S.dir);
    size_t n = 0;
    args[n++] = "--admin-port-file";
    args[n++] = path;
    for (size_t i = 0; more != NULL && more[i] != NULL && n + 1 < 16; i++)
        args[n++] = more[i];
    args[n] = NULL;
    return args;
}

static void restart(const char *const *flags)
{
    srv_stop(&S);
    srv_restart(&S, with_admin_port(flags));
    admin_port = read_port_file(&S, "aport");
}

/* A request to the API (admin false) or the admin listener, with an Authorization value. */
static struct resp *req_to(bool admin, const char *method, const char *path, const char *auth,
                           const void *body, size_t len)
{
    static char h[HDR_MAX + 32];
    const char *hdrs[2] = {NULL, NULL};
    if (auth != NULL) {
        snprintf(h, sizeof(h), "Authorization: %s", auth);
        hdrs[0] = h;
    }
    struct srv a = S;
    if (admin) {
        a.port = admin_port;
        snprintf(a.base, sizeof(a.base), "http://127.0.0.1:%u", admin_port);
    }
    return http(&a, method, path, hdrs, body, len);
}

static struct resp *req(const char *method, const char *path, const char *auth, const void *body,
                        size_t len)
{
    return req_to(false, method, path, auth, body, len);
}

static long status_of(struct resp *r)
{
    long st = r->status;
    resp_free(r);
    return st;
}

static void cli_ok(const char *in, char *out, size_t cap, const char *const *args)
{
    char buf[4096];
    int st = run_cli(&S, in, out != NULL ? out : buf, out != NULL ? cap : sizeof(buf), args);
    if (st != 0)
        fprintf(stderr, "ocireg %s %s: exit %d\n", args[0], args[1] ? args[1] : "", st);
    CHECK_INT(st, ==, 0);
}

/* Monolithic blob upload into repo with credentials; the status. */
static long push_blob(const char *repo, const char *auth, const char *content)
{
    char d[80], path[512];
    sha256_str(content, strlen(content), d);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, d);
    return status_of(req("POST", path, auth, content, strlen(content)));
}

/* The JSON value of "key":"..." in body into out (empty when absent). */
static void json_field(const char *body, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *t = strstr(body, pat);
    out[0] = '\0';
    if (t == NULL)
        return;
    t += strlen(pat);
    size_t n = strcspn(t, "\"");
    CHECK(n < cap);
    memcpy(out, t, n);
    out[n] = '\0';
}

/* POST /auth/token with a form; the status, and the named field of the answer into out. */
static long token_form(const char *form, const char *field, char *out, size_t cap)
{
    struct resp *r = req("POST", "/auth/token", NULL, form, strlen(form));
    long st = r->status;
    if (out != NULL)
        json_field(r->body, field, out, cap);
    resp_free(r);
    return st;
}

/* GET /auth/token with Basic credentials for scope; the status and the token. */
static long get_token(const char *user, const char *pw, const char *scope, char *out, size_t cap)
{
    char auth[HDR_MAX], path[1024];
    basic_auth(user, pw, auth, sizeof(auth));
    snprintf(path, sizeof(path), "/auth/token?service=ocireg&scope=%s", scope);
    struct resp *r = req("GET", path, auth, NULL, 0);
    long st = r->status;
    json_field(r->body, "token", out, cap);
    resp_free(r);
    return st;
}

static void login_password(const char *user, char *out, size_t cap)
{
    cli_ok(NULL, out, cap, (const char *[]){"login-password", user, "--ttl", "1h", NULL});
    out[strcspn(out, "\n")] = '\0';
    CHECK(strlen(out) > 100);
}

/* ---- 1: a deleted account's credentials stay dead ---- */

static void add_robot(void)
{
    cli_ok(ROBOT_PW, NULL, 0, (const char *[]){"user", "add", "robot", NULL});
}

/* user del then user add of the same name, even with the same password */
static void recreate_robot(void)
{
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "robot", NULL});
    add_robot();
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "robot", "other/*", "pull,push", NULL});
}

static void test_recreated_user_token_mode(void)
{
    restart((const char *[]){"--auth", "token", NULL});
    add_robot();
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "robot", "team/*", "pull,push", NULL});
    char refresh[4096], login_pw[4096], access[4096], auth[HDR_MAX], form[8192];
    snprintf(form, sizeof(form),
             "grant_type=password&username=robot&password=%s&service=ocireg&access_type=offline"
             "&scope=repository:team/app:pull,push",
             ROBOT_PW);
    CHECK_INT(token_form(form, "refresh_token", refresh, sizeof(refresh)), ==, 200);
    CHECK(strlen(refresh) > 100);
    login_password("robot", login_pw, sizeof(login_pw));
    CHECK_INT(get_token("robot", login_pw, "repository:team/app:pull,push", access,
                        sizeof(access)),
              ==, 200);
    snprintf(auth, sizeof(auth), "Bearer %s", access);
    CHECK_INT(push_blob("team/app", auth, "robot blob one"), ==, 201);

    recreate_robot();
    /* the old account's access token, refresh token and login password are all dead */
    CHECK_INT(push_blob("team/app", auth, "robot blob two"), ==, 401);
    snprintf(form, sizeof(form),
             "grant_type=refresh_token&refresh_token=%s&service=ocireg"
             "&scope=repository:other/x:pull,push",
             refresh);
    CHECK_INT(token_form(form, NULL, NULL, 0), ==, 401);
    char tok[4096];
    CHECK_INT(get_token("robot", login_pw, "repository:other/x:pull,push", tok, sizeof(tok)), ==,
              401);
    /* the new account works with its own password, and has only its own grants */
    CHECK_INT(get_token("robot", ROBOT_PW, "repository:other/x:pull,push", tok, sizeof(tok)), ==,
              200);
    snprintf(auth, sizeof(auth), "Bearer %s", tok);
    CHECK_INT(push_blob("other/x", auth, "new robot blob"), ==, 201);
    CHECK_INT(get_token("robot", ROBOT_PW, "repository:team/app:pull,push", tok, sizeof(tok)), ==,
              200);
    snprintf(auth, sizeof(auth), "Bearer %s", tok);
    CHECK_INT(push_blob("team/app", auth, "robot blob three"), ==, 401);
    /* a login password of the new account works; revoke-tokens ends it and access tokens */
    login_password("robot", login_pw, sizeof(login_pw));
    CHECK_INT(get_token("robot", login_pw, "repository:other/x:pull,push", tok, sizeof(tok)), ==,
              200);
    snprintf(auth, sizeof(auth), "Bearer %s", tok);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "revoke-tokens", "robot", NULL});
    CHECK_INT(push_blob("other/x", auth, "after revoke"), ==, 401);
    CHECK_INT(get_token("robot", login_pw, "repository:other/x:pull", tok, sizeof(tok)), ==, 401);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "robot", NULL});
}

static void test_recreated_user_basic_mode(void)
{
    restart((const char *[]){"--auth", "basic", NULL});
    add_robot();
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "robot", "team/*", "pull,push", NULL});
    char login_pw[4096], cold_pw[4096], auth[HDR_MAX], cold[HDR_MAX];
    login_password("robot", login_pw, sizeof(login_pw));
    login_password("robot", cold_pw, sizeof(cold_pw));
    /* login_pw is used now (cached as verified), cold_pw never before the re-creation */
    basic_auth("robot", login_pw, auth, sizeof(auth));
    basic_auth("robot", cold_pw, cold, sizeof(cold));
    CHECK_INT(push_blob("team/basic", auth, "basic robot blob"), ==, 201);

    recreate_robot();
    CHECK_INT(push_blob("other/y", auth, "cached old login password"), ==, 401);
    CHECK_INT(push_blob("other/y", cold, "cold old login password"), ==, 401);
    /* and after a restart, with nothing cached at all */
    restart((const char *[]){"--auth", "basic", NULL});
    CHECK_INT(push_blob("other/y", auth, "old login password, fresh server"), ==, 401);
    char pw[HDR_MAX];
    basic_auth("robot", ROBOT_PW, pw, sizeof(pw));
    CHECK_INT(push_blob("other/y", pw, "new robot, its password"), ==, 201);
    CHECK_INT(push_blob("team/basic", pw, "new robot, old grants"), ==, 403);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "robot", NULL});
}

/* ---- 2: the admin listener ---- */

static long admin_status(const char *method, const char *path, const char *auth)
{
    return status_of(req_to(true, method, path, auth, NULL, 0));
}

static void test_admin_listener(void)
{
    char admin[HDR_MAX], alice[HDR_MAX], wrong[HDR_MAX], h[256];
    basic_auth("admin", ADMIN_PW, admin, sizeof(admin));
    basic_auth("alice", ALICE_PW, alice, sizeof(alice));
    basic_auth("admin", "not-the-password", wrong, sizeof(wrong));
    restart((const char *[]){"--auth", "basic", NULL});
    CHECK_INT(push_blob("team/doomed", admin, "doomed blob"), ==, 201);

    /* probes stay open */
    CHECK_INT(admin_status("GET", "/healthz", NULL), ==, 200);
    CHECK_INT(admin_status("GET", "/readyz", NULL), ==, 200);
    /* everything else needs an administrator */
    struct resp *r = req_to(true, "GET", "/metrics", NULL, NULL, 0);
    CHECK_INT(r->status, ==, 401);
    CHECK_STR(resp_hdr(r, "WWW-Authenticate", h, sizeof(h)), "Basic realm=\"ocireg-admin\"");
    CHECK(strstr(r->body, "ocireg_") == NULL);
    resp_free(r);
    r = req_to(true, "GET", "/admin/usage?users", NULL, NULL, 0);
    CHECK_INT(r->status, ==, 401);
    CHECK(strstr(r->body, "alice") == NULL && strstr(r->body, "admin\"") == NULL);
    resp_free(r);
    CHECK_INT(admin_status("GET", "/admin/usage", wrong), ==, 401);
    CHECK_INT(admin_status("GET", "/metrics", alice), ==, 403);
    /* pull and push on everything is not every action on everything */
    char reader[HDR_MAX];
    cli_ok("reader-pass-1\n", NULL, 0, (const char *[]){"user", "add", "reader", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "reader", "*", "pull,push", NULL});
    basic_auth("reader", "reader-pass-1", reader, sizeof(reader));
    CHECK_INT(status_of(req("GET", "/v2/team/doomed/tags/list", reader, NULL, 0)), ==, 200);
    CHECK_INT(admin_status("GET", "/metrics", reader), ==, 403);
    CHECK_INT(admin_status("GET", "/admin/usage?users", reader), ==, 403);
    cli_ok(NULL, NULL, 0, (const char *[]){"user", "del", "reader", NULL});
    r = req_to(true, "GET", "/metrics", admin, NULL, 0);
    CHECK_INT(r->status, ==, 200);
    CHECK(strstr(r->body, "ocireg_repo_stored_bytes{repository=\"team/doomed\"}") != NULL);
    resp_free(r);
    CHECK_INT(admin_status("GET", "/admin/usage?users", admin), ==, 200);

    /* deletes: never without credentials, and only with --admin-writes */
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", NULL), ==, 401);
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", alice), ==, 403);
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", admin), ==, 403);
    CHECK_INT(status_of(req("GET", "/v2/team/doomed/tags/list", admin, NULL, 0)), ==, 200);
    restart((const char *[]){"--auth", "basic", "--admin-writes", NULL});
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", NULL), ==, 401);
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", alice), ==, 403);
    CHECK_INT(status_of(req("GET", "/v2/team/doomed/tags/list", admin, NULL, 0)), ==, 200);
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed", admin), ==, 200);
    CHECK_INT(status_of(req("GET", "/v2/team/doomed/tags/list", admin, NULL, 0)), ==, 404);

    /* --metrics-public opens /metrics alone; token mode asks for the same credentials */
    restart((const char *[]){"--auth", "token", "--metrics-public", NULL});
    CHECK_INT(admin_status("GET", "/metrics", NULL), ==, 200);
    CHECK_INT(admin_status("GET", "/admin/usage", NULL), ==, 401);
    CHECK_INT(admin_status("GET", "/admin/usage", admin), ==, 200);
    char login_pw[4096], lp[HDR_MAX];
    login_password("admin", login_pw, sizeof(login_pw));
    basic_auth("admin", login_pw, lp, sizeof(lp));
    CHECK_INT(admin_status("GET", "/admin/usage", lp), ==, 200);

    /* without auth: open to read, changes opt-in all the same */
    restart((const char *[]){"--auth", "none", NULL});
    CHECK_INT(admin_status("GET", "/metrics", NULL), ==, 200);
    CHECK_INT(push_blob("team/doomed2", NULL, "doomed blob two"), ==, 201);
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed2", NULL), ==, 403);
    restart((const char *[]){"--auth", "none", "--admin-writes", NULL});
    CHECK_INT(admin_status("DELETE", "/admin/repositories/team/doomed2", NULL), ==, 200);
}

/* ---- 4: the catalog a user may see ---- */

static void expect_catalog(const char *path, const char *auth, const char *body,
                           const char *next)
{
    struct resp *r = req("GET", path, auth, NULL, 0);
    if (r->status != 200 || strcmp(r->body, body) != 0)
        fprintf(stderr, "GET %s: %ld %s (wanted %s)\n", path, r->status, r->body, body);
    CHECK_INT(r->status, ==, 200);
    CHECK_STR(r->body, body);
    char h[512];
    const char *link = resp_hdr(r, "Link", h, sizeof(h));
    if (next == NULL) {
        CHECK(link == NULL);
    } else {
        CHECK(link != NULL);
        CHECK_STR(link, next);
    }
    resp_free(r);
}

static void catalog_checks(const char *alice, const char *carol, const char *admin)
{
    expect_catalog("/v2/_catalog", admin,
                   "{\"repositories\":[\"public/p\",\"team-a/one\",\"team-a/two\",\"team-b/x\"]}",
                   NULL);
    expect_catalog("/v2/_catalog", alice,
                   "{\"repositories\":[\"public/p\",\"team-a/one\",\"team-a/two\"]}", NULL);
    /* pages count only what the user may see */
    expect_catalog("/v2/_catalog?n=2", alice, "{\"repositories\":[\"public/p\",\"team-a/one\"]}",
                   "</v2/_catalog?n=2&last=team-a/one>; rel=\"next\"");
    expect_catalog("/v2/_catalog?n=2&last=team-a/one", alice,
                   "{\"repositories\":[\"team-a/two\"]}", NULL);
    expect_catalog("/v2/_catalog?n=1&last=team-a/one", alice,
                   "{\"repositories\":[\"team-a/two\"]}", NULL);
    /* no grants of its own: what anonymous may pull */
    expect_catalog("/v2/_catalog", carol, "{\"repositories\":[\"public/p\"]}", NULL);
}

static void test_catalog_per_user(void)
{
    restart((const char *[]){"--auth", "basic", NULL});
    char admin[HDR_MAX], alice[HDR_MAX], carol[HDR_MAX];
    basic_auth("admin", ADMIN_PW, admin, sizeof(admin));
    basic_auth("alice", ALICE_PW, alice, sizeof(alice));
    basic_auth("carol", "carol-pass-1", carol, sizeof(carol));
    cli_ok("carol-pass-1\n", NULL, 0, (const char *[]){"user", "add", "carol", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "alice", "team-a/*", "pull", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "anonymous", "public/*", "pull", NULL});
    const char *repos[] = {"public/p", "team-a/one", "team-a/two", "team-b/x"};
    for (size_t i = 0; i < 4; i++)
        CHECK_INT(push_blob(repos[i], admin, repos[i]), ==, 201);
    CHECK_INT(status_of(req("GET", "/v2/_catalog", NULL, NULL, 0)), ==, 401);
    catalog_checks(alice, carol, admin);

    restart((const char *[]){"--auth", "token", NULL});
    char tok[4096], ta[HDR_MAX], tc[HDR_MAX], tadm[HDR_MAX];
    CHECK_INT(get_token("alice", ALICE_PW, "registry:catalog:*", tok, sizeof(tok)), ==, 200);
    snprintf(ta, sizeof(ta), "Bearer %s", tok);
    CHECK_INT(get_token("carol", "carol-pass-1", "registry:catalog:*", tok, sizeof(tok)), ==, 200);
    snprintf(tc, sizeof(tc), "Bearer %s", tok);
    CHECK_INT(get_token("admin", ADMIN_PW, "registry:catalog:*", tok, sizeof(tok)), ==, 200);
    snprintf(tadm, sizeof(tadm), "Bearer %s", tok);
    catalog_checks(ta, tc, tadm);
    /* anonymous, without pull on "*", is still asked to sign in */
    struct resp *r = req("GET", "/auth/token?service=ocireg&scope=registry:catalog:*", NULL, NULL,
                         0);
    CHECK_INT(r->status, ==, 200);
    json_field(r->body, "token", tok, sizeof(tok));
    resp_free(r);
    snprintf(ta, sizeof(ta), "Bearer %s", tok);
    CHECK_INT(status_of(req("GET", "/v2/_catalog", ta, NULL, 0)), ==, 401);
    cli_ok(NULL, NULL, 0, (const char *[]){"revoke", "anonymous", "public/*", NULL});
}

/* ---- failed logins per client ---- */

static void test_failed_logins_bounded(void)
{
    restart((const char *[]){"--auth", "basic", "--login-failures", "3", NULL});
    char good[HDR_MAX], bad[HDR_MAX], h[64];
    basic_auth("alice", ALICE_PW, good, sizeof(good));
    /* a good login first: it is remembered, and keeps working through what follows */
    CHECK_INT(status_of(req("GET", "/v2/", good, NULL, 0)), ==, 200);
    /* the same wrong password again and again (a client retrying, or sending it on several
     * connections) is one failure: checked once, remembered */
    basic_auth("alice", "wrong-password-0", bad, sizeof(bad));
    for (int i = 0; i < 10; i++)
        CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 401);
    /* two more different ones reach the bound of 3; the next is refused unchecked */
    for (int i = 1; i < 3; i++) {
        char pw[32];
        snprintf(pw, sizeof(pw), "wrong-password-%d", i);
        basic_auth("alice", pw, bad, sizeof(bad));
        CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 401);
    }
    basic_auth("alice", "wrong-password-3", bad, sizeof(bad));
    struct resp *r = req("GET", "/v2/", bad, NULL, 0);
    EXPECT(r, 429, "TOOMANYREQUESTS");
    const char *after = resp_hdr(r, "Retry-After", h, sizeof(h));
    long secs = after != NULL ? strtol(after, NULL, 10) : 0;
    CHECK(secs >= 1 && secs <= 60);
    resp_free(r);
    /* an unknown user costs the same and is bounded the same */
    char nobody[HDR_MAX];
    basic_auth("nobody", "x", nobody, sizeof(nobody));
    CHECK_INT(status_of(req("GET", "/v2/", nobody, NULL, 0)), ==, 429);
    /* the admin listener shares the bound */
    CHECK_INT(admin_status("GET", "/metrics", bad), ==, 429);
    CHECK_INT(status_of(req("GET", "/v2/", good, NULL, 0)), ==, 200);

    /* a wrong password remembered is forgotten when the password changes to it */
    restart((const char *[]){"--auth", "basic", NULL});
    basic_auth("alice", "next-password", bad, sizeof(bad));
    CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 401);
    cli_ok("next-password\n", NULL, 0, (const char *[]){"user", "passwd", "alice", NULL});
    CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 200);
    cli_ok(ALICE_PW, NULL, 0, (const char *[]){"user", "passwd", "alice", NULL});
    /* and a user added since a wrong guess of its name and password can sign in */
    basic_auth("dave", "dave-pass-1", bad, sizeof(bad));
    CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 401);
    cli_ok("dave-pass-1\n", NULL, 0, (const char *[]){"user", "add", "dave", NULL});
    CHECK_INT(status_of(req("GET", "/v2/", bad, NULL, 0)), ==, 200);

    restart((const char *[]){"--auth", "token", "--login-failures", "2", NULL});
    char tok[4096];
    CHECK_INT(get_token("alice", "wrong-1", "repository:team/app:pull", tok, sizeof(tok)), ==,
              401);
    CHECK_INT(get_token("alice", "wrong-2", "repository:team/app:pull", tok, sizeof(tok)), ==,
              401);
    basic_auth("alice", "wrong-3", bad, sizeof(bad));
    r = req("GET", "/auth/token?service=ocireg", bad, NULL, 0);
    CHECK_INT(r->status, ==, 429);
    CHECK(resp_hdr(r, "Retry-After", h, sizeof(h)) != NULL);
    CHECK(strstr(r->body, "TOOMANYREQUESTS") != NULL);
    resp_free(r);
}

int main(void)
{
    srv_start(&S, (const char *[]){"--auth", "basic", NULL});
    cli_ok(ADMIN_PW, NULL, 0, (const char *[]){"user", "add", "admin", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "admin", "*", "*", NULL});
    cli_ok(ALICE_PW, NULL, 0, (const char *[]){"user", "add", "alice", NULL});
    cli_ok(NULL, NULL, 0, (const char *[]){"grant", "alice", "team/*", "pull,push", NULL});
    RUN(test_catalog_per_user); /* first: it names every repository there is */
    RUN(test_recreated_user_token_mode);
    RUN(test_recreated_user_basic_mode);
    RUN(test_admin_listener);
    RUN(test_failed_logins_bounded);
    srv_stop(&S);
    srv_cleanup(&S);
    return 0;
}
