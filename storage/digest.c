#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "storage/digest.h"

struct hasher {
    enum digest_alg alg;
    EVP_MD_CTX *ctx;
};

static const EVP_MD *alg_md(enum digest_alg alg)
{
    return alg == DIGEST_SHA512 ? EVP_sha512() : EVP_sha256();
}

static size_t alg_hexlen(enum digest_alg alg)
{
    return alg == DIGEST_SHA512 ? 128 : 64;
}

const char *digest_alg_name(enum digest_alg alg)
{
    return alg == DIGEST_SHA512 ? "sha512" : "sha256";
}

bool digest_alg_parse(enum digest_alg *out, const char *s)
{
    if (strcmp(s, "sha256") == 0) {
        *out = DIGEST_SHA256;
        return true;
    }
    if (strcmp(s, "sha512") == 0) {
        *out = DIGEST_SHA512;
        return true;
    }
    return false;
}

static bool is_alg_component(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alg_separator(char c)
{
    return c == '+' || c == '.' || c == '_' || c == '-';
}

static bool is_encoded(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '=' || c == '_' || c == '-';
}

enum store_err digest_parse(struct digest *out, const char *s, size_t len)
{
    size_t colon = 0;
    while (colon < len && s[colon] != ':')
        colon++;
    if (colon == 0 || colon >= len - 1 || len > 256)
        return STORE_EINVAL;
    /* algorithm := component (separator component)* */
    bool need_component = true;
    for (size_t i = 0; i < colon; i++) {
        if (is_alg_component(s[i])) {
            need_component = false;
        } else if (is_alg_separator(s[i]) && !need_component) {
            need_component = true;
        } else {
            return STORE_EINVAL;
        }
    }
    if (need_component)
        return STORE_EINVAL;
    for (size_t i = colon + 1; i < len; i++)
        if (!is_encoded(s[i]))
            return STORE_EINVAL;

    enum digest_alg alg;
    if (colon == 6 && memcmp(s, "sha256", 6) == 0)
        alg = DIGEST_SHA256;
    else if (colon == 6 && memcmp(s, "sha512", 6) == 0)
        alg = DIGEST_SHA512;
    else
        return STORE_ENOENT;
    size_t hexlen = len - colon - 1;
    if (hexlen != alg_hexlen(alg))
        return STORE_EINVAL;
    for (size_t i = colon + 1; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return STORE_EINVAL;
    }
    out->alg = alg;
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    return STORE_OK;
}

const char *digest_hex(const struct digest *d)
{
    return d->str + 7;
}

bool digest_equal(const struct digest *a, const struct digest *b)
{
    return a->alg == b->alg && strcmp(a->str, b->str) == 0;
}

struct hasher *hasher_new(enum digest_alg alg)
{
    struct hasher *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->alg = alg;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, alg_md(alg), NULL) != 1) {
        hasher_free(h);
        return NULL;
    }
    return h;
}

void hasher_free(struct hasher *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

enum digest_alg hasher_alg(const struct hasher *h)
{
    return h->alg;
}

enum store_err hasher_update(struct hasher *h, const void *data, size_t len)
{
    if (len == 0)
        return STORE_OK;
    return EVP_DigestUpdate(h->ctx, data, len) == 1 ? STORE_OK : STORE_EIO;
}

enum store_err hasher_copy(struct hasher *dst, const struct hasher *src)
{
    if (dst->alg != src->alg)
        return STORE_EINVAL;
    return EVP_MD_CTX_copy_ex(dst->ctx, src->ctx) == 1 ? STORE_OK : STORE_ENOMEM;
}

static void hex_encode(char *out, const unsigned char *in, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[in[i] >> 4];
        out[2 * i + 1] = hexd[in[i] & 15];
    }
    out[2 * n] = '\0';
}

enum store_err hasher_peek(const struct hasher *h, struct digest *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    if (tmp == NULL)
        return STORE_ENOMEM;
    enum store_err rc = STORE_EIO;
    if (EVP_MD_CTX_copy_ex(tmp, h->ctx) != 1 || EVP_DigestFinal_ex(tmp, md, &mdlen) != 1)
        goto out;
    out->alg = h->alg;
    memcpy(out->str, digest_alg_name(h->alg), 6);
    out->str[6] = ':';
    hex_encode(out->str + 7, md, mdlen);
    rc = STORE_OK;
out:
    EVP_MD_CTX_free(tmp);
    return rc;
}

enum store_err digest_of(enum digest_alg alg, const void *data, size_t len, struct digest *out)
{
    struct hasher *h = hasher_new(alg);
    if (h == NULL)
        return STORE_ENOMEM;
    enum store_err rc = hasher_update(h, data, len);
    if (rc == STORE_OK)
        rc = hasher_peek(h, out);
    hasher_free(h);
    return rc;
}
