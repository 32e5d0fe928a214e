/*
 * Content digests ("sha256:<64 hex>", "sha512:<128 hex>") and the incremental hasher that
 * computes them. A parsed struct digest is the only thing a blob path is ever built from.
 */
#ifndef OCIREG_STORAGE_DIGEST_H
#define OCIREG_STORAGE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "storage/err.h"

enum digest_alg { DIGEST_SHA256, DIGEST_SHA512 };

#define DIGEST_HEX_MAX 128
/* "sha512:" + 128 hex + NUL */
#define DIGEST_STR_MAX (7 + DIGEST_HEX_MAX + 1)

struct digest {
    enum digest_alg alg;
    char str[DIGEST_STR_MAX]; /* canonical "alg:hex", NUL-terminated */
};

/*
 * Parses a digest from s[0..len). Returns STORE_OK and fills *out, STORE_EINVAL when the
 * string is not a digest of the OCI grammar, STORE_ENOENT when it is well formed but the
 * algorithm is one we do not support. Only lowercase hex of the exact length is accepted.
 */
enum store_err digest_parse(struct digest *out, const char *s, size_t len);

/* Parses an algorithm name ("sha256", "sha512"); false when unknown. */
bool digest_alg_parse(enum digest_alg *out, const char *s);

const char *digest_alg_name(enum digest_alg alg);

/* The hex part of d->str (BORROWED from d). */
const char *digest_hex(const struct digest *d);

/* True when the two digests are the same. */
bool digest_equal(const struct digest *a, const struct digest *b);

/* Incremental hasher. */
struct hasher;

/* OWNED: free with hasher_free. NULL on allocation failure. */
struct hasher *hasher_new(enum digest_alg alg);
void hasher_free(struct hasher *h);
enum digest_alg hasher_alg(const struct hasher *h);
enum store_err hasher_update(struct hasher *h, const void *data, size_t len);
/* Copies the state of src into dst (same algorithm). */
enum store_err hasher_copy(struct hasher *dst, const struct hasher *src);
/* Writes the digest of everything fed so far; h stays usable (the state is copied). */
enum store_err hasher_peek(const struct hasher *h, struct digest *out);

/* One-shot digest of a buffer. */
enum store_err digest_of(enum digest_alg alg, const void *data, size_t len, struct digest *out);

#endif
