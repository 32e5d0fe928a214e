/* Unit tests of the auth module: names, actions, patterns, users, grants, tokens. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/token.h"
#include "auth/users.h"
#include "tests/check.h"

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void test_grammar(void)
{
    CHECK(auth_user_name_valid("alice"));
    CHECK(auth_user_name_valid("ci-bot.1"));
    CHECK(!auth_user_name_valid("anonymous"));
    CHECK(!auth_user_name_valid("Alice"));
    CHECK(!auth_user_name_valid("-x"));
    CHECK(!auth_user_name_valid(""));
    CHECK(!auth_user_name_valid("a:b"));
    unsigned m;
    CHECK(auth_actions_parse("pull", &m) && m == AUTH_PULL);
    CHECK(auth_actions_parse("pull,push", &m) && m == (AUTH_PULL | AUTH_PUSH));
    CHECK(auth_actions_parse("*", &m) && m == AUTH_ALL);
    CHECK(!auth_actions_parse("pull,", &m));
    CHECK(!auth_actions_parse("fly", &m));
    CHECK(!auth_actions_parse("", &m));
    char buf[32];
    auth_actions_format(AUTH_PULL | AUTH_DELETE, buf, sizeof(buf));
    CHECK_STR(buf, "pull,delete");
    CHECK(auth_pattern_valid("team-a/*"));
    CHECK(!auth_pattern_valid("team a"));
    CHECK(!auth_pattern_valid("[a]"));
    CHECK(auth_pattern_match("team-a/*", "team-a/app"));
    CHECK(auth_pattern_match("team-a/*", "team-a/x/y"));
    CHECK(!auth_pattern_match("team-a/*", "team-b/app"));
    CHECK(!auth_pattern_match("team-a/*", "team-a"));
    CHECK(auth_pattern_match("*", "anything/at/all"));
    CHECK(auth_pattern_match("exact", "exact"));
}

static struct index *open_index(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ocireg-auth-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/index", tmpdir);
    struct index *idx = NULL;
    CHECK_INT(index_open(&idx, dir, 64u << 20), ==, STORE_OK);
    return idx;
}

static void test_users_and_grants(void)
{
    struct index *idx = open_index();
    CHECK_INT(auth_user_add(idx, "alice", "pw1", false), ==, AUTH_OK);
    CHECK_INT(auth_user_add(idx, "alice", "pw2", false), ==, AUTH_EEXIST);
    CHECK_INT(auth_user_add(idx, "anonymous", "pw", false), ==, AUTH_EINVAL);
    CHECK_INT(auth_user_add(idx, "bot", "pw", true), ==, AUTH_OK);
    struct auth_user u;
    CHECK_INT(auth_password_check(idx, "alice", "pw1", &u), ==, AUTH_OK);
    CHECK_STR(u.name, "alice");
    CHECK_INT(u.generation, ==, 0);
    CHECK_INT(auth_password_check(idx, "alice", "pw2", NULL), ==, AUTH_EDENIED);
    CHECK_INT(auth_password_check(idx, "nobody", "pw1", NULL), ==, AUTH_EDENIED);
    CHECK_INT(auth_password_check(idx, "alice", "", NULL), ==, AUTH_EDENIED);
    CHECK_INT(auth_user_passwd(idx, "alice", "pw2"), ==, AUTH_OK);
    CHECK_INT(auth_password_check(idx, "alice", "pw2", &u), ==, AUTH_OK);
    CHECK_INT(u.generation, ==, 1);
    CHECK_INT(auth_user_get(idx, "bot", &u), ==, AUTH_OK);
    CHECK(u.robot);

    CHECK_INT(auth_grant(idx, "alice", "team/*", AUTH_PULL | AUTH_PUSH), ==, AUTH_OK);
    CHECK_INT(auth_grant(idx, "nobody", "team/*", AUTH_PULL), ==, AUTH_ENOENT);
    CHECK_INT(auth_grant(idx, "anonymous", "pub/*", AUTH_PULL), ==, AUTH_OK);
    CHECK_INT(auth_grant(idx, "alice", "bad pattern", AUTH_PULL), ==, AUTH_EINVAL);
    CHECK_INT(auth_allowed(idx, "alice", "team/app"), ==, AUTH_PULL | AUTH_PUSH);
    CHECK_INT(auth_allowed(idx, "alice", "pub/x"), ==, AUTH_PULL);
    CHECK_INT(auth_allowed(idx, "alice", "other"), ==, 0);
    CHECK_INT(auth_allowed(idx, NULL, "pub/x"), ==, AUTH_PULL);
    CHECK_INT(auth_allowed(idx, "bot", "team/app"), ==, 0);
    CHECK(!auth_catalog_allowed(idx, "alice"));
    CHECK_INT(auth_grant(idx, "bot", "*", AUTH_PULL), ==, AUTH_OK);
    CHECK(auth_catalog_allowed(idx, "bot"));
    CHECK_INT(auth_revoke(idx, "alice", "team/*"), ==, AUTH_OK);
    CHECK_INT(auth_revoke(idx, "alice", "team/*"), ==, AUTH_ENOENT);
    CHECK_INT(auth_allowed(idx, "alice", "team/app"), ==, 0);
    /* deleting a user deletes its grants */
    CHECK_INT(auth_user_get(idx, "bot", &u), ==, AUTH_OK);
    uint64_t old_account = u.account;
    uint32_t old_generation = u.generation;
    CHECK(old_account != 0);
    CHECK(auth_user_current(idx, "bot", old_account, old_generation));
    CHECK_INT(auth_user_del(idx, "bot"), ==, AUTH_OK);
    CHECK(!auth_user_current(idx, "bot", old_account, old_generation));
    CHECK_INT(auth_user_add(idx, "bot", "pw", true), ==, AUTH_OK);
    CHECK(!auth_catalog_allowed(idx, "bot"));
    /* the same name again is another account: what named the old one never names it */
    CHECK_INT(auth_user_get(idx, "bot", &u), ==, AUTH_OK);
    CHECK(u.account != 0 && u.account != old_account);
    CHECK_INT(u.generation, ==, old_generation);
    CHECK(!auth_user_current(idx, "bot", old_account, old_generation));
    CHECK(auth_user_current(idx, "bot", u.account, u.generation));
    /* the grant set reads a principal's and anonymous grants once */
    CHECK_INT(auth_grant(idx, "alice", "team-a/*", AUTH_PULL), ==, AUTH_OK);
    struct auth_grant_set *gs = NULL;
    CHECK_INT(auth_grants_load(idx, "alice", &gs), ==, AUTH_OK);
    CHECK_INT(auth_grants_allowed(gs, "team-a/app"), ==, AUTH_PULL);
    CHECK_INT(auth_grants_allowed(gs, "pub/x"), ==, AUTH_PULL);
    CHECK_INT(auth_grants_allowed(gs, "team-b/app"), ==, 0);
    CHECK(!auth_grants_catalog(gs));
    auth_grants_free(gs);
    CHECK(!auth_user_is_admin(idx, "alice"));
    CHECK_INT(auth_grant(idx, "alice", "*", AUTH_PULL | AUTH_PUSH), ==, AUTH_OK);
    CHECK(!auth_user_is_admin(idx, "alice"));
    CHECK_INT(auth_grant(idx, "alice", "*", AUTH_ALL), ==, AUTH_OK);
    CHECK(auth_user_is_admin(idx, "alice"));
    /* anonymous holding everything makes nobody an administrator */
    CHECK_INT(auth_grant(idx, "anonymous", "*", AUTH_ALL), ==, AUTH_OK);
    CHECK(!auth_user_is_admin(idx, "bot"));
    index_close(idx);
}

static void test_tokens(void)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/keys", tmpdir);
    struct auth_keys *k = NULL;
    CHECK_INT(auth_keys_open(&k, dir), ==, AUTH_OK);
    struct stat st;
    char file[160];
    snprintf(file, sizeof(file), "%s/token-ed25519.key", dir);
    CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    struct auth_access acc[2] = {{.name = "team/app", .actions = AUTH_PULL | AUTH_PUSH},
                                 {.catalog = true}};
    uint64_t now = (uint64_t)time(NULL);
    struct auth_token_req req = {AUTH_TOKEN_ACCESS, "iss", "svc", "alice", 3, acc, 2, now, 300,
                                 0xfedcba9876543210ull};
    char *tok = NULL;
    CHECK_INT(auth_token_issue(k, &req, &tok), ==, AUTH_OK);
    struct auth_claims c;
    CHECK_INT(auth_token_verify(k, tok, "iss", "svc", now, &c), ==, AUTH_OK);
    CHECK_STR(c.subject, "alice");
    CHECK_INT(c.kind, ==, AUTH_TOKEN_ACCESS);
    CHECK_INT(c.generation, ==, 3);
    CHECK(c.account == 0xfedcba9876543210ull);
    CHECK_INT(auth_claims_allowed(&c, "team/app"), ==, AUTH_PULL | AUTH_PUSH);
    CHECK_INT(auth_claims_allowed(&c, "team/other"), ==, 0);
    CHECK(auth_claims_catalog(&c));
    auth_claims_free(&c);
    CHECK_INT(auth_token_verify(k, tok, "other", "svc", now, &c), ==, AUTH_EDENIED);
    CHECK_INT(auth_token_verify(k, tok, "iss", "other", now, &c), ==, AUTH_EDENIED);
    CHECK_INT(auth_token_verify(k, tok, "iss", "svc", now + 400, &c), ==, AUTH_EEXPIRED);
    CHECK_INT(auth_token_verify(k, tok, "iss", "svc", now - 400, &c), ==, AUTH_EEXPIRED);
    /* a key opened again is the same key */
    struct auth_keys *k2 = NULL;
    CHECK_INT(auth_keys_open(&k2, dir), ==, AUTH_OK);
    CHECK_STR(auth_keys_kid(k), auth_keys_kid(k2));
    CHECK_INT(auth_token_verify(k2, tok, "iss", "svc", now, &c), ==, AUTH_OK);
    auth_claims_free(&c);
    auth_keys_close(k2);
    free(tok);
    auth_keys_close(k);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    RUN(test_grammar);
    RUN(test_users_and_grants);
    RUN(test_tokens);
    return 0;
}
