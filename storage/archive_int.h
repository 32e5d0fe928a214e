/*
 * What export (archive.c) and import (archive_import.c) share: the layout's names and the
 * limits both hold an archive to. Internal to storage/.
 */
#ifndef OCIREG_STORAGE_ARCHIVE_INT_H
#define OCIREG_STORAGE_ARCHIVE_INT_H

#include <stdio.h>

#include "storage/err.h"

#define REF_NAME "org.opencontainers.image.ref.name"
#define TAR_BLOCK 512
#define MANIFEST_MAX (4u << 20)
/* Indexes nested deeper than this are refused, on export and on import. */
#define ARCHIVE_DEPTH_MAX 8

/* Says what failed in err (errcap bytes) and returns rc. */
static inline enum store_err archive_fail(char *err, size_t errcap, enum store_err rc,
                                          const char *what)
{
    snprintf(err, errcap, "%s", what);
    return rc;
}

#endif
