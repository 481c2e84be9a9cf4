/* Base64 (RFC 4648, with padding) through OpenSSL's EVP block coder, as the agent's JSON carries state bytes. */
#ifndef VFM_BASE64_H
#define VFM_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters the encoding of n bytes takes (without a terminating NUL). */
size_t vfm_base64_encoded_length(size_t n);

/*
 * Encodes in[0..n) into out, which must hold vfm_base64_encoded_length(n) + 1
 * bytes (OpenSSL writes a NUL). n must fit an int. Returns the text length.
 */
size_t vfm_base64_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes `text` into exactly `expected` bytes at out, writing nothing past
 * out[expected - 1]. Returns 0, or -1 if the text is not the padded encoding
 * of exactly `expected` bytes.
 */
int vfm_base64_decode_exact(const char *text, size_t text_len, uint8_t *out, size_t expected);

#endif
