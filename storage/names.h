/*
 * Validators for every name that reaches the index or the filesystem from a request.
 * All take a length (request strings are slices, not always NUL-terminated) and accept
 * exactly the OCI distribution grammar.
 */
#ifndef OCIREG_STORAGE_NAMES_H
#define OCIREG_STORAGE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128
#define UPLOAD_ID_LEN 32

/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*, <= 255 bytes */
bool name_valid(const char *s, size_t len);

/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
bool tag_valid(const char *s, size_t len);

/* Upload ids are made by the server: exactly 32 lowercase hex digits. */
bool upload_id_valid(const char *s, size_t len);

/* Fills out[UPLOAD_ID_LEN + 1] with a fresh random id. Returns false if no randomness. */
bool upload_id_new(char *out);

#endif
