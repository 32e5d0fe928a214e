/* Unit tests of the server's pure parsers: routes, Range, Content-Range, numbers, durations. */
#include "server/cli.h"
#include "server/httpparse.h"
#include "server/route.h"
#include "tests/check.h"

static void check_route(const char *path, enum route_kind kind, const char *name, const char *ref)
{
    struct route r;
    route_parse(path, &r);
    if (r.kind != kind) {
        fprintf(stderr, "route %s: kind %d, want %d\n", path, (int)r.kind, (int)kind);
        abort();
    }
    if (name != NULL) {
        CHECK_INT(r.name_len, ==, strlen(name));
        CHECK(memcmp(r.name, name, r.name_len) == 0);
    }
    if (ref != NULL) {
        CHECK_INT(r.ref_len, ==, strlen(ref));
        CHECK(memcmp(r.ref, ref, r.ref_len) == 0);
    }
}

static void test_routes(void)
{
    check_route("/v2/", ROUTE_BASE, NULL, NULL);
    check_route("/v2", ROUTE_BASE, NULL, NULL);
    check_route("/v2/_catalog", ROUTE_CATALOG, NULL, NULL);
    check_route("/auth/token", ROUTE_TOKEN, NULL, NULL);
    check_route("/auth/token/x", ROUTE_NONE, NULL, NULL);
    check_route("/v2/a/b/c/tags/list", ROUTE_TAGS, "a/b/c", NULL);
    check_route("/v2/a/manifests/latest", ROUTE_MANIFEST, "a", "latest");
    check_route("/v2/a/b/manifests/sha256:00", ROUTE_MANIFEST, "a/b", "sha256:00");
    check_route("/v2/x/blobs/sha256:ab", ROUTE_BLOB, "x", "sha256:ab");
    check_route("/v2/x/y/blobs/uploads/", ROUTE_UPLOAD_START, "x/y", NULL);
    check_route("/v2/x/y/blobs/uploads", ROUTE_UPLOAD_START, "x/y", NULL);
    check_route("/v2/x/blobs/uploads/0123", ROUTE_UPLOAD, "x", "0123");
    check_route("/v2/x/referrers/sha256:ab", ROUTE_REFERRERS, "x", "sha256:ab");
    /* repository names that contain the route words */
    check_route("/v2/blobs/blobs/sha256:ab", ROUTE_BLOB, "blobs", "sha256:ab");
    check_route("/v2/manifests/tags/list", ROUTE_TAGS, "manifests", NULL);
    check_route("/v2/a/uploads/blobs/d", ROUTE_BLOB, "a/uploads", "d");
    check_route("/v2/tags/list/manifests/t", ROUTE_MANIFEST, "tags/list", "t");
    /* shapes that are not routes */
    check_route("/", ROUTE_NONE, NULL, NULL);
    check_route("/v1/x/manifests/t", ROUTE_NONE, NULL, NULL);
    check_route("/v2/manifests/t", ROUTE_NONE, NULL, NULL);
    check_route("/v2//manifests/t", ROUTE_NONE, NULL, NULL);
    check_route("/v2/x/unknown/t", ROUTE_NONE, NULL, NULL);
    check_route("/v2/x", ROUTE_NONE, NULL, NULL);
    check_route("/v2/blobs/uploads/", ROUTE_NONE, NULL, NULL);
    check_route("/v2x/a/manifests/t", ROUTE_NONE, NULL, NULL);
}

static void test_u64(void)
{
    uint64_t v;
    CHECK(parse_u64("0", 1, &v) && v == 0);
    CHECK(parse_u64("18446744073709551615", 20, &v) && v == UINT64_MAX);
    CHECK(!parse_u64("18446744073709551616", 20, &v));
    CHECK(!parse_u64("", 0, &v));
    CHECK(!parse_u64("-1", 2, &v));
    CHECK(!parse_u64("+1", 2, &v));
    CHECK(!parse_u64("1 ", 2, &v));
    CHECK(!parse_u64("0x10", 4, &v));
}

static void test_content_range(void)
{
    uint64_t a, b;
    CHECK(parse_content_range("0-99", &a, &b) && a == 0 && b == 99);
    CHECK(parse_content_range("bytes=5-5", &a, &b) && a == 5 && b == 5);
    CHECK(!parse_content_range("9-1", &a, &b));
    CHECK(!parse_content_range("-1-5", &a, &b));
    CHECK(!parse_content_range("1-", &a, &b));
    CHECK(!parse_content_range("-5", &a, &b));
    CHECK(!parse_content_range("1-99999999999999999999", &a, &b));
    CHECK(!parse_content_range("a-b", &a, &b));
    CHECK(!parse_content_range("", &a, &b));
    CHECK(!parse_content_range("0-18446744073709551615", &a, &b));
}

static void test_range(void)
{
    uint64_t f, l;
    CHECK_INT(parse_range(NULL, 10, &f, &l), ==, RANGE_NONE);
    CHECK_INT(parse_range("bytes=0-4", 10, &f, &l), ==, RANGE_OK);
    CHECK(f == 0 && l == 5);
    CHECK_INT(parse_range("bytes=5-", 10, &f, &l), ==, RANGE_OK);
    CHECK(f == 5 && l == 5);
    CHECK_INT(parse_range("bytes=-3", 10, &f, &l), ==, RANGE_OK);
    CHECK(f == 7 && l == 3);
    CHECK_INT(parse_range("bytes=-30", 10, &f, &l), ==, RANGE_OK);
    CHECK(f == 0 && l == 10);
    CHECK_INT(parse_range("bytes=8-100", 10, &f, &l), ==, RANGE_OK);
    CHECK(f == 8 && l == 2);
    CHECK_INT(parse_range("bytes=10-", 10, &f, &l), ==, RANGE_UNSATISFIABLE);
    CHECK_INT(parse_range("bytes=10-20", 10, &f, &l), ==, RANGE_UNSATISFIABLE);
    CHECK_INT(parse_range("bytes=0-0", 0, &f, &l), ==, RANGE_UNSATISFIABLE);
    CHECK_INT(parse_range("bytes=-0", 10, &f, &l), ==, RANGE_UNSATISFIABLE);
    CHECK_INT(parse_range("bytes=5-1", 10, &f, &l), ==, RANGE_UNSATISFIABLE);
    CHECK_INT(parse_range("bytes=0-1,3-4", 10, &f, &l), ==, RANGE_NONE);
    CHECK_INT(parse_range("items=0-1", 10, &f, &l), ==, RANGE_NONE);
    CHECK_INT(parse_range("bytes=x-1", 10, &f, &l), ==, RANGE_NONE);
}

static void test_unescape(void)
{
    char a[] = "sha256%3Aab%2Fc", b[] = "tag%00evil", c[] = "%zz%4", d[] = "%41%";
    CHECK_INT(url_unescape(a), ==, 11);
    CHECK_STR(a, "sha256:ab/c");
    CHECK_INT(url_unescape(b), ==, 10);
    CHECK_STR(b, "tag%00evil");
    url_unescape(c);
    CHECK_STR(c, "%zz%4");
    url_unescape(d);
    CHECK_STR(d, "A%");
}

static void check_duration(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    if (!cli_parse_duration(s, &v) || v != want) {
        fprintf(stderr, "duration \"%s\": %llu, want %llu\n", s, (unsigned long long)v,
                (unsigned long long)want);
        abort();
    }
}

static void check_no_duration(const char *s)
{
    uint64_t v = 12345;
    if (cli_parse_duration(s, &v) || v != 12345) {
        fprintf(stderr, "duration \"%s\" accepted (%llu)\n", s, (unsigned long long)v);
        abort();
    }
}

/* Every flag taking a duration goes through this one parser. */
static void test_durations(void)
{
    check_duration("0", 0);
    check_duration("0s", 0);
    check_duration("0m", 0);
    check_duration("1", 1);
    check_duration("90", 90);
    check_duration("90s", 90);
    check_duration("15m", 900);
    check_duration("6h", 6 * 3600);
    check_duration("7d", 7 * 86400);
    check_duration("1h30m", 5400);
    check_duration("1d12h", 36 * 3600);
    check_duration("2h0m5s", 7205);
    check_duration("36500d", CLI_DURATION_MAX);
    check_duration("3153600000", CLI_DURATION_MAX);
    check_no_duration("");
    check_no_duration("s");
    check_no_duration("h1");
    check_no_duration("-1s");
    check_no_duration("+1s");
    check_no_duration("1x");
    check_no_duration("1.5h");
    check_no_duration(" 1s");
    check_no_duration("1s ");
    check_no_duration("1h 30m");
    check_no_duration("1h30");  /* a bare number only stands alone */
    check_no_duration("30m1h"); /* largest unit first */
    check_no_duration("1h1h");
    check_no_duration("1ss");
    check_no_duration("0x10");
    check_no_duration("36501d"); /* past CLI_DURATION_MAX */
    check_no_duration("3153600001");
    check_no_duration("18446744073709551615");
    check_no_duration("18446744073709551616s");
    check_no_duration("213503982334601d"); /* times 86400 wraps 64 bits */
    check_no_duration("99999999999999999999999h");
}

int main(void)
{
    RUN(test_durations);
    RUN(test_unescape);
    RUN(test_routes);
    RUN(test_u64);
    RUN(test_content_range);
    RUN(test_range);
    return 0;
}
