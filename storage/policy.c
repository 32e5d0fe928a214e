#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "storage/policy.h"

static enum store_err bad(char *err, size_t cap, size_t rule, const char *field, const char *what)
{
    if (rule == (size_t)-1)
        snprintf(err, cap, "%s: %s", field, what);
    else
        snprintf(err, cap, "rules[%zu].%s: %s", rule, field, what);
    return STORE_EINVAL;
}

static int cmp_rule(const void *a, const void *b)
{
    return ((const struct policy_rule *)a)->priority - ((const struct policy_rule *)b)->priority;
}

static enum store_err parse_rule(json_t *jr, size_t i, struct policy_rule *r, char *err,
                                 size_t cap)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(jr))
        return bad(err, cap, i, "", "must be an object");
    json_t *prio = json_object_get(jr, "rulePriority");
    if (!json_is_integer(prio) || json_integer_value(prio) < 1 ||
        json_integer_value(prio) > 999)
        return bad(err, cap, i, "rulePriority", "must be an integer from 1 to 999");
    r->priority = (int)json_integer_value(prio);
    json_t *desc = json_object_get(jr, "description");
    if (desc != NULL && !json_is_string(desc))
        return bad(err, cap, i, "description", "must be a string");
    json_t *action = json_object_get(jr, "action");
    const char *type = json_string_value(json_object_get(action, "type"));
    if (type == NULL || strcmp(type, "expire") != 0)
        return bad(err, cap, i, "action.type", "must be \"expire\"");
    json_t *sel = json_object_get(jr, "selection");
    if (!json_is_object(sel))
        return bad(err, cap, i, "selection", "must be an object");
    const char *status = json_string_value(json_object_get(sel, "tagStatus"));
    if (status != NULL && strcmp(status, "tagged") == 0)
        r->status = POLICY_TAGGED;
    else if (status != NULL && strcmp(status, "untagged") == 0)
        r->status = POLICY_UNTAGGED;
    else if (status != NULL && strcmp(status, "any") == 0)
        r->status = POLICY_ANY;
    else
        return bad(err, cap, i, "selection.tagStatus", "must be tagged, untagged or any");
    static const char *const lists[] = {"tagPatternList", "tagPrefixList"};
    for (int li = 0; li < 2; li++) {
        json_t *l = json_object_get(sel, lists[li]);
        if (l == NULL)
            continue;
        char field[64];
        snprintf(field, sizeof(field), "selection.%s", lists[li]);
        if (r->status != POLICY_TAGGED)
            return bad(err, cap, i, field, "only goes with tagStatus \"tagged\"");
        if (!json_is_array(l) || json_array_size(l) == 0)
            return bad(err, cap, i, field, "must be a non-empty array of strings");
        size_t j;
        json_t *v;
        json_array_foreach(l, j, v)
        {
            const char *s = json_string_value(v);
            if (s == NULL || s[0] == '\0' || strlen(s) > TAG_MAX_LEN)
                return bad(err, cap, i, field, "holds a value that is no tag pattern");
            for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || strchr("._-*", *c) != NULL))
                    return bad(err, cap, i, field, "holds a value that is no tag pattern");
            if (r->npatterns == POLICY_PATTERNS_MAX)
                return bad(err, cap, i, field, "has too many entries (16 at most)");
            snprintf(r->patterns[r->npatterns++], sizeof(r->patterns[0]), li == 0 ? "%s" : "%s*",
                     s);
        }
    }
    if (r->status == POLICY_TAGGED && r->npatterns == 0)
        return bad(err, cap, i, "selection.tagPatternList",
                   "is required with tagStatus \"tagged\"");
    const char *ct = json_string_value(json_object_get(sel, "countType"));
    if (ct != NULL && strcmp(ct, "imageCountMoreThan") == 0)
        r->count = POLICY_COUNT_MORE_THAN;
    else if (ct != NULL && strcmp(ct, "sinceImagePushed") == 0)
        r->count = POLICY_SINCE_PUSHED;
    else if (ct != NULL && strcmp(ct, "sinceImagePulled") == 0)
        r->count = POLICY_SINCE_PULLED;
    else
        return bad(err, cap, i, "selection.countType",
                   "must be imageCountMoreThan, sinceImagePushed or sinceImagePulled");
    json_t *unit = json_object_get(sel, "countUnit");
    if (r->count != POLICY_COUNT_MORE_THAN) {
        if (!json_is_string(unit) || strcmp(json_string_value(unit), "days") != 0)
            return bad(err, cap, i, "selection.countUnit", "must be \"days\"");
    } else if (unit != NULL) {
        return bad(err, cap, i, "selection.countUnit", "does not go with imageCountMoreThan");
    }
    json_t *num = json_object_get(sel, "countNumber");
    if (!json_is_integer(num) || json_integer_value(num) < 1 ||
        json_integer_value(num) > 100000)
        return bad(err, cap, i, "selection.countNumber", "must be an integer from 1 to 100000");
    r->number = (uint64_t)json_integer_value(num);
    return STORE_OK;
}

enum store_err policy_parse(const char *json, size_t len, struct policy *out, char *err,
                            size_t errcap)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errcap, "not valid JSON: %s (line %d)", jerr.text, jerr.line);
        return STORE_EINVAL;
    }
    enum store_err rc = STORE_OK;
    json_t *rules = json_object_get(root, "rules");
    memset(out, 0, sizeof(*out));
    if (!json_is_array(rules) || json_array_size(rules) == 0) {
        rc = bad(err, errcap, (size_t)-1, "rules", "must be a non-empty array");
        goto out;
    }
    if (json_array_size(rules) > POLICY_RULES_MAX) {
        rc = bad(err, errcap, (size_t)-1, "rules", "has too many rules (32 at most)");
        goto out;
    }
    size_t i;
    json_t *jr;
    json_array_foreach(rules, i, jr)
    {
        rc = parse_rule(jr, i, &out->rules[out->n], err, errcap);
        if (rc != STORE_OK)
            goto out;
        for (size_t j = 0; j < out->n; j++)
            if (out->rules[j].priority == out->rules[out->n].priority) {
                rc = bad(err, errcap, i, "rulePriority", "is used by another rule");
                goto out;
            }
        out->n++;
    }
    qsort(out->rules, out->n, sizeof(out->rules[0]), cmp_rule);
out:
    json_decref(root);
    return rc;
}

static bool selects(const struct policy_rule *r, const struct policy_image *img)
{
    switch (r->status) {
    case POLICY_UNTAGGED:
        return img->ntags == 0;
    case POLICY_ANY:
        return true;
    case POLICY_TAGGED:
        /* every entry of the list must match one of the image's tags (one tag may match
         * several entries): ["release-*", "*-deprecated"] leaves release-2 + stable alone */
        if (img->ntags == 0 || r->npatterns == 0)
            return false;
        for (size_t p = 0; p < r->npatterns; p++) {
            size_t t = 0;
            while (t < img->ntags && fnmatch(r->patterns[p], img->tags[t], 0) != 0)
                t++;
            if (t == img->ntags)
                return false;
        }
        return true;
    }
    return false;
}

struct by_age {
    size_t i;
    uint64_t pushed;
};

/* Newest first; images pushed in the same second keep their (digest) order. */
static int newest_first(const void *a, const void *b)
{
    const struct by_age *x = a, *y = b;
    if (x->pushed != y->pushed)
        return x->pushed < y->pushed ? 1 : -1;
    return x->i < y->i ? -1 : x->i > y->i ? 1 : 0;
}

void policy_evaluate(const struct policy *p, const struct policy_image *img, size_t n,
                     uint64_t now, int *expired)
{
    bool *claimed = calloc(n ? n : 1, sizeof(*claimed));
    struct by_age *cand = calloc(n ? n : 1, sizeof(*cand));
    for (size_t i = 0; i < n; i++)
        expired[i] = 0;
    if (claimed == NULL || cand == NULL) {
        free(claimed);
        free(cand);
        return; /* when in doubt, nothing expires */
    }
    for (size_t ri = 0; ri < p->n; ri++) {
        const struct policy_rule *r = &p->rules[ri];
        size_t nc = 0;
        for (size_t i = 0; i < n; i++)
            if (!claimed[i] && selects(r, &img[i])) {
                claimed[i] = true;
                cand[nc++] = (struct by_age){i, img[i].pushed};
            }
        if (r->count == POLICY_COUNT_MORE_THAN) {
            qsort(cand, nc, sizeof(*cand), newest_first);
            for (size_t c = (size_t)r->number; c < nc; c++)
                expired[cand[c].i] = r->priority;
            continue;
        }
        uint64_t age = r->number * 86400;
        for (size_t c = 0; c < nc; c++) {
            const struct policy_image *im = &img[cand[c].i];
            uint64_t when = im->pushed;
            if (r->count == POLICY_SINCE_PULLED && im->pulled > when)
                when = im->pulled;
            if (when + age <= now)
                expired[cand[c].i] = r->priority;
        }
    }
    free(claimed);
    free(cand);
}
