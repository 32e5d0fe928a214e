/* Admin subcommands that work on the storage root directly (online: LMDB is multi-process). */
#ifndef OCIREG_SERVER_CLI_H
#define OCIREG_SERVER_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Each takes argv[0] = its own name; returns the process exit status. */
int cli_user(int argc, char **argv);
int cli_grant(int argc, char **argv);
int cli_revoke(int argc, char **argv);
int cli_grants(int argc, char **argv);
int cli_login_password(int argc, char **argv);
int cli_usage(int argc, char **argv);
int cli_repo(int argc, char **argv);

/* "90", "90s", "30m", "12h", "7d" into seconds; false when malformed or zero. */
bool cli_parse_duration(const char *s, uint64_t *out);

#endif
