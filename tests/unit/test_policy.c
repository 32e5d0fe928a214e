/* Unit tests of lifecycle policies: which images each rule selects. */
#include <string.h>

#include "storage/policy.h"
#include "tests/check.h"

#define DAY 86400ull

static void parse(const char *json, struct policy *p)
{
    char err[256] = "";
    enum store_err rc = policy_parse(json, strlen(json), p, err, sizeof(err));
    if (rc != STORE_OK) {
        fprintf(stderr, "policy refused: %s\n%s\n", err, json);
        abort();
    }
}

/* One rule expiring what it selects once pushed a day ago, with the given tag lists. */
static void one_rule(const char *lists, struct policy *p)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\",%s,"
             "\"countType\":\"sinceImagePushed\",\"countUnit\":\"days\",\"countNumber\":1},"
             "\"action\":{\"type\":\"expire\"}}]}",
             lists);
    parse(json, p);
}

struct img {
    const char *tags[3];
    size_t ntags;
    int want; /* the priority expected in expired[], 0 when it stays */
};

static void check_expired(const struct policy *p, const struct img *imgs, size_t n)
{
    struct policy_image in[16];
    int expired[16];
    CHECK(n <= 16);
    for (size_t i = 0; i < n; i++)
        in[i] = (struct policy_image){imgs[i].tags, imgs[i].ntags, 1000 * DAY, 0};
    policy_evaluate(p, in, n, 1010 * DAY, expired);
    for (size_t i = 0; i < n; i++)
        if (expired[i] != imgs[i].want) {
            fprintf(stderr, "image %zu (%s%s%s): expired by rule %d, want %d\n", i,
                    imgs[i].ntags > 0 ? imgs[i].tags[0] : "untagged",
                    imgs[i].ntags > 1 ? ", " : "", imgs[i].ntags > 1 ? imgs[i].tags[1] : "",
                    expired[i], imgs[i].want);
            abort();
        }
}

/*
 * The format's rule: with several entries in tagPatternList (or tagPrefixList) only images
 * carrying tags that match every entry are selected; one tag may match several entries.
 */
static void test_tag_lists_match_all(void)
{
    static struct policy p;
    one_rule("\"tagPatternList\":[\"release-*\",\"*-deprecated\"]", &p);
    const struct img pat[] = {
        {{"release-1", "1-deprecated"}, 2, 1},   /* both patterns: expires */
        {{"release-2", "stable"}, 2, 0},         /* release-* only: stays */
        {{"3-deprecated"}, 1, 0},                /* *-deprecated only: stays */
        {{"release-4"}, 1, 0},                   /* stays */
        {{"release-5-deprecated"}, 1, 1},        /* one tag matching both: expires */
        {{"stable", "latest", "release-6"}, 3, 0}, /* stays */
        {{NULL}, 0, 0},                          /* untagged: not for a tagged rule */
    };
    check_expired(&p, pat, sizeof(pat) / sizeof(pat[0]));

    one_rule("\"tagPrefixList\":[\"alpha\",\"beta\"]", &p);
    const struct img pre[] = {
        {{"alpha-1", "beta-1"}, 2, 1}, /* both prefixes: expires */
        {{"alpha-2"}, 1, 0},           /* stays */
        {{"beta-2", "gamma"}, 2, 0},   /* stays */
        {{"alphabeta"}, 1, 0},         /* starts with alpha only: stays */
    };
    check_expired(&p, pre, sizeof(pre) / sizeof(pre[0]));

    /* a single entry is the common case and selects any image with a matching tag */
    one_rule("\"tagPatternList\":[\"v*\"]", &p);
    const struct img single[] = {
        {{"v1", "stable"}, 2, 1},
        {{"stable"}, 1, 0},
    };
    check_expired(&p, single, sizeof(single) / sizeof(single[0]));
}

/* An image a rule does not select stays for the next rule, which may select it. */
static void test_unselected_falls_through(void)
{
    static struct policy p;
    parse("{\"rules\":["
          "{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\",\"tagPatternList\":"
          "[\"release-*\",\"*-deprecated\"],\"countType\":\"sinceImagePushed\",\"countUnit\":"
          "\"days\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}},"
          "{\"rulePriority\":2,\"selection\":{\"tagStatus\":\"any\",\"countType\":"
          "\"sinceImagePushed\",\"countUnit\":\"days\",\"countNumber\":5},"
          "\"action\":{\"type\":\"expire\"}}]}",
          &p);
    const struct img imgs[] = {
        {{"release-1", "1-deprecated"}, 2, 1},
        {{"release-2", "stable"}, 2, 2},
    };
    check_expired(&p, imgs, sizeof(imgs) / sizeof(imgs[0]));
}

int main(void)
{
    RUN(test_tag_lists_match_all);
    RUN(test_unselected_falls_through);
    return 0;
}
