/*
 * What the subcommands in cli.c and cli_maint.c share besides cli.h: the parser of times and
 * the JSON printer. Internal to server/cli*.c.
 */
#ifndef OCIREG_SERVER_CLI_INT_H
#define OCIREG_SERVER_CLI_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* An absolute time only (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC). */
bool cli_parse_when_abs(const char *s, uint64_t *out);

/* Prints doc (TAKES it) on one line; false when it could not be encoded. */
bool cli_print_json(json_t *doc);

#endif
