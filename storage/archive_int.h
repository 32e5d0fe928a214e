/*
 * What export (archive.c) and import (archive_import.c) share: the layout's names and the
 * limits both hold an archive to. Internal to storage/.
 */
#ifndef OCIREG_STORAGE_ARCHIVE_INT_H
#define OCIREG_STORAGE_ARCHIVE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "storage/err.h"

#define REF_NAME "org.opencontainers.image.ref.name"
#define TAR_BLOCK 512
#define MANIFEST_MAX (4u << 20)
/* Indexes nested deeper than this are refused, on export and on import. */
#define ARCHIVE_DEPTH_MAX 8

/* Sizes from 8 GiB on do not fit the size field in octal: they go into a pax "size" record,
 * and into the field as base-256. */
#define TAR_OCTAL_SIZE_MAX ((uint64_t)077777777777)

/* A number into a header field of width bytes: octal (NUL-terminated) when it fits, else
 * base-256 (tarhdr.c). */
void tar_number_put(unsigned char *field, size_t width, uint64_t v);
/* A header field's number, octal (spaces or NULs around) or base-256; false when malformed. */
bool tar_number_get(const unsigned char *p, size_t n, uint64_t *out);
/* A pax record's decimal value (digits only, no sign, no overflow). */
bool tar_decimal_get(const char *p, size_t n, uint64_t *out);
/* One pax extended-header record "LEN key=value\n" into out[cap]; its length, 0 if it does
 * not fit. */
size_t tar_pax_record(char *out, size_t cap, const char *key, const char *value);

/* Says what failed in err (errcap bytes) and returns rc. */
static inline enum store_err archive_fail(char *err, size_t errcap, enum store_err rc,
                                          const char *what)
{
    snprintf(err, errcap, "%s", what);
    return rc;
}

#endif
