/*
 * The admin command line against a running server: durations read the same by every flag.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

static struct srv S;

static int cli(char *out, size_t cap, const char *const *args)
{
    return run_cli(&S, NULL, out, cap, args);
}

/* ---- durations ---- */

static void test_durations(void)
{
    char out[4096];
    /* the reported case: 0 and 1s were taken, 0s was "bad arguments" */
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "0s", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "0", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--dry-run", "--grace", "1h30m",
                                                     "--upload-max-age", "0s", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "1.5h", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--grace", "-1s", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"gc", "--upload-max-age", "", NULL}), ==, 2);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"usage", "--since", "0s", NULL}), ==, 0);
    CHECK_INT(cli(out, sizeof(out), (const char *[]){"usage", "--since", "1d12h", NULL}), ==, 0);
    /* serve's duration flags, all through the same parser */
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--gc-interval", "0s", "--token-ttl",
                                   "5m", "--conn-timeout", "2m", "--shutdown-grace", "0s", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--conn-timeout", "120", NULL}),
              ==, 0);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--token-ttl", "0s", NULL}),
              ==, 2);
    CHECK_INT(cli(out, sizeof(out),
                  (const char *[]){"serve", "--check-config", "--shutdown-grace", "2h", NULL}),
              ==, 2);
}

int main(void)
{
    srv_start(&S, NULL);
    RUN(test_durations);
    srv_cleanup(&S);
    return 0;
}
