/*
 * Lifecycle policies, in the style of a cloud registry's lifecycle rules:
 *
 *   {"rules": [{"rulePriority": 1,
 *               "description": "keep the last 10 release images",
 *               "selection": {"tagStatus": "tagged", "tagPatternList": ["v*"],
 *                             "countType": "imageCountMoreThan", "countNumber": 10},
 *               "action": {"type": "expire"}},
 *              {"rulePriority": 2,
 *               "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
 *                             "countUnit": "days", "countNumber": 14},
 *               "action": {"type": "expire"}}]}
 *
 * Rules apply in priority order (lowest first); an image a rule selects is never looked at
 * by a later rule. tagStatus: tagged (needs tagPatternList or tagPrefixList), untagged, any.
 * A tagged rule selects an image only when every entry of its lists matches one of the
 * image's tags: ["release-*", "*-deprecated"] selects release-1 + 1-deprecated, not
 * release-2 + stable (the cloud format's rule: several entries mean all of them).
 * countType: imageCountMoreThan (expires all but the newest countNumber), sinceImagePushed
 * and sinceImagePulled (countUnit "days"). The collector applies them (storage/gc.c).
 */
#ifndef OCIREG_STORAGE_POLICY_H
#define OCIREG_STORAGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/err.h"
#include "storage/names.h"

#define POLICY_RULES_MAX 32
#define POLICY_PATTERNS_MAX 16

enum policy_status { POLICY_TAGGED, POLICY_UNTAGGED, POLICY_ANY };
enum policy_count { POLICY_COUNT_MORE_THAN, POLICY_SINCE_PUSHED, POLICY_SINCE_PULLED };

struct policy_rule {
    int priority;
    enum policy_status status;
    size_t npatterns;
    char patterns[POLICY_PATTERNS_MAX][TAG_MAX_LEN + 2]; /* globs; a prefix gets a '*' */
    enum policy_count count;
    uint64_t number; /* images, or days */
};

struct policy {
    size_t n;
    struct policy_rule rules[POLICY_RULES_MAX]; /* sorted by priority */
};

/*
 * Parses and checks a policy. STORE_EINVAL with err naming the bad field, e.g.
 * "rules[1].selection.countUnit: must be \"days\"".
 */
enum store_err policy_parse(const char *json, size_t len, struct policy *out, char *err,
                            size_t errcap);

/* One image as the rules see it. */
struct policy_image {
    const char *const *tags;
    size_t ntags;
    uint64_t pushed; /* seconds since the epoch */
    uint64_t pulled; /* 0: never pulled */
};

/*
 * Decides which images expire: expired[i] is set to the priority of the rule that expires
 * image i, 0 when none does.
 */
void policy_evaluate(const struct policy *p, const struct policy_image *img, size_t n,
                     uint64_t now, int *expired);

#endif
