/*
 * What the subcommands in cli.c (accounts), cli_repo.c (usage, repository settings) and
 * cli_maint.c (gc, fsck) share besides cli.h: the common flags, the parsers of times and the
 * JSON printer. Internal to server/cli*.c.
 */
#ifndef OCIREG_SERVER_CLI_INT_H
#define OCIREG_SERVER_CLI_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "storage/index.h"

/* Parses --root (and the flags in `extra`) out of argv; leaves positionals in pos[]. */
struct cli_common {
    const char *root;
    bool robot;
    const char *ttl;
    const char *service;
    bool json;
    bool users;
    const char *since;
    const char *quota;
    const char *mutability;
    const char *exclude[INDEX_TAG_EXCLUDES_MAX];
    int nexclude;
    const char *pos[64];
    int npos;
};

/* Fills c from argv; -1 when the subcommand goes on, else the exit status to return (0 after
 * --help has printed usage, 2 after a bad flag or too many arguments). */
int cli_parse_common(int argc, char **argv, struct cli_common *c, const char *usage);

/* WHEN into seconds since the epoch: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC), or a duration
 * ago (36h, 30d); false when malformed. */
bool cli_parse_when(const char *s, uint64_t *out);
/* An absolute time only (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC). */
bool cli_parse_when_abs(const char *s, uint64_t *out);

/* Prints doc (TAKES it) on one line; false when it could not be encoded. */
bool cli_print_json(json_t *doc);

#endif
