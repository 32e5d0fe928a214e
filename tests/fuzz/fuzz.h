/*
 * Shared pieces of the libFuzzer targets (tests/fuzz/fuzz_*.c). Each target is one
 * LLVMFuzzerTestOneInput; run them with tests/fuzz/run.sh. A failed FUZZ_CHECK is a bug in the
 * code under test (it aborts, so libFuzzer keeps the input as a crash reproducer).
 */
#ifndef OCIREG_TESTS_FUZZ_H
#define OCIREG_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry points libFuzzer calls; declared here for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * OWNED (free()): a copy of data[0..size) with a NUL after it. Exactly size + 1 bytes, so
 * AddressSanitizer catches a read one past the terminator.
 */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/*
 * OWNED (free()): a copy of data[0..size) with nothing after it, so a parser that reads past
 * the length it was given is caught. Never NULL (one byte is allocated for size 0).
 */
static inline char *fuzz_memdup(const void *data, size_t size)
{
    char *s = malloc(size > 0 ? size : 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    return s;
}

#endif
