/* Parsers for the numeric HTTP headers and parameters a registry sees. Pure functions. */
#ifndef OCIREG_SERVER_HTTPPARSE_H
#define OCIREG_SERVER_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal digits only, no sign, no overflow. */
bool parse_u64(const char *s, size_t len, uint64_t *out);

/* Content-Range of an upload chunk: "<start>-<end>" (optionally "bytes=" or "bytes " first),
 * inclusive, start <= end. */
bool parse_content_range(const char *s, uint64_t *start, uint64_t *end);

enum range_result { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/*
 * A Range request header against a body of `size` bytes. RANGE_NONE means serve the whole
 * body (no header, a syntax we ignore, or several ranges); RANGE_OK fills the first byte and
 * length of the single range; RANGE_UNSATISFIABLE asks for a 416.
 */
enum range_result parse_range(const char *hdr, uint64_t size, uint64_t *first, uint64_t *len);

/*
 * Decodes %XX escapes of a URL path or query value in place and returns the new length.
 * "%00" is left as it is, so a decoded string never holds a NUL that would cut it short;
 * the '%' left behind fails every name, tag and digest grammar.
 */
size_t url_unescape(char *s);

#endif
