/* Admin subcommands that work on the storage root directly (online: LMDB is multi-process). */
#ifndef OCIREG_SERVER_CLI_H
#define OCIREG_SERVER_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "storage/gc.h"

struct index;

/* The storage root when --root is not given: $OCIREG_ROOT, else ./data. */
const char *cli_default_root(void);
/* Opens ROOT/index (creating ROOT), or prints why not and returns NULL. OWNED. */
struct index *cli_open_index(const char *root);

/* Each takes argv[0] = its own name; returns the process exit status. */
int cli_user(int argc, char **argv);
int cli_grant(int argc, char **argv);
int cli_revoke(int argc, char **argv);
int cli_grants(int argc, char **argv);
int cli_login_password(int argc, char **argv);
int cli_usage(int argc, char **argv);
int cli_repo(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_fsck(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_backup(int argc, char **argv);

/* Runs the collector on root and prints its report (also used by serve --gc-interval). */
int gc_execute(const char *root, const struct gc_options *opt, bool json);
/* false when the JSON report could not be made (out of memory); nothing is printed then */
bool gc_print(const struct gc_report *r, bool dry_run, bool json, FILE *out);

/* The longest duration any flag takes: 100 years (36500d), far from any overflow. */
#define CLI_DURATION_MAX ((uint64_t)36500 * 86400)

/*
 * A duration into seconds, for every flag that takes one: a bare number of seconds ("0",
 * "90"), or numbers with units d, h, m, s, largest first, each at most once ("0s", "15m",
 * "7d", "1h30m"). False (and *out untouched) when malformed or past CLI_DURATION_MAX; zero
 * is a valid duration, each flag checks its own range.
 */
bool cli_parse_duration(const char *s, uint64_t *out);

/* "1024", "512K", "64M", "10G", "2T" into bytes (K = 1024); false when malformed. */
bool cli_parse_bytes(const char *s, uint64_t *out);

#endif
