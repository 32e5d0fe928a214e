/*
 * Fuzzes policy_parse (an exact-size, not NUL-terminated copy of the input as the policy text)
 * and, for a policy that parses, policy_evaluate over a fixed set of images, so the tag
 * patterns reach fnmatch. The error buffer's size comes from the last input byte, so short
 * buffers (truncated messages) are exercised too.
 */
#include <stdbool.h>

#include "storage/policy.h"
#include "tests/fuzz/fuzz.h"

#define NOW 1700000000u
#define DAY 86400u

static const char *const tags_release[] = {"v1.0.0", "v1.0", "latest"};
static const char *const tags_dev[] = {"dev-1234", "pr-17"};
static const char *const tags_odd[] = {"_x", "A.b-c",
                                       "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"};
static const char *const tags_rel2[] = {"release-2024.01", "v2"};

static const struct policy_image images[] = {
    {tags_release, 3, NOW - 100 * DAY, 0},
    {tags_dev, 2, NOW - 3 * DAY, NOW - DAY},
    {NULL, 0, NOW - 40 * DAY, 0},
    {NULL, 0, NOW, NOW},
    {tags_odd, 3, 0, 0},
    {tags_rel2, 2, NOW - 10 * DAY, NOW - 200 * DAY},
    {tags_release + 2, 1, NOW - 100 * DAY, 0}, /* same second as the first */
};
#define NIMAGES (sizeof(images) / sizeof(images[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_memdup(data, size);
    size_t errcap = size > 0 && (data[size - 1] & 0x80) ? (size_t)(data[size - 1] & 0x3f) + 1 : 256;
    char *err = malloc(errcap);
    FUZZ_CHECK(err != NULL);
    err[0] = '\0';

    struct policy *p = malloc(sizeof(*p));
    FUZZ_CHECK(p != NULL);
    enum store_err rc = policy_parse(text, size, p, err, errcap);
    if (rc == STORE_OK) {
        FUZZ_CHECK(p->n >= 1 && p->n <= POLICY_RULES_MAX);
        for (size_t i = 0; i < p->n; i++) {
            const struct policy_rule *r = &p->rules[i];
            FUZZ_CHECK(r->priority >= 1 && r->priority <= 999);
            if (i > 0)
                FUZZ_CHECK(p->rules[i - 1].priority < r->priority); /* sorted, unique */
            FUZZ_CHECK(r->number >= 1 && r->number <= 100000);
            FUZZ_CHECK(r->npatterns <= POLICY_PATTERNS_MAX);
            FUZZ_CHECK((r->status == POLICY_TAGGED) == (r->npatterns > 0));
            for (size_t j = 0; j < r->npatterns; j++)
                FUZZ_CHECK(strlen(r->patterns[j]) >= 1 &&
                           strlen(r->patterns[j]) <= TAG_MAX_LEN + 1);
        }
        int expired[NIMAGES];
        policy_evaluate(p, images, NIMAGES, NOW, expired);
        for (size_t i = 0; i < NIMAGES; i++) {
            bool found = expired[i] == 0;
            for (size_t j = 0; j < p->n && !found; j++)
                found = expired[i] == p->rules[j].priority;
            FUZZ_CHECK(found);
        }
    } else {
        FUZZ_CHECK(rc == STORE_EINVAL);
        FUZZ_CHECK(memchr(err, '\0', errcap) != NULL); /* terminated, within its buffer */
        if (errcap > 1)
            FUZZ_CHECK(err[0] != '\0');
    }
    free(p);
    free(err);
    free(text);
    return 0;
}
