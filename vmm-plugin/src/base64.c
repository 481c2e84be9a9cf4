/* Base64 through OpenSSL; see base64.h. */
#include "base64.h"

#include <openssl/evp.h>
#include <string.h>

size_t vfm_base64_encoded_length(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t vfm_base64_encode(const uint8_t *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/*
 * How many of the last quad's three decoded bytes are real (0: malformed).
 * EVP_DecodeBlock takes '=' for zero bits and counts the padding bytes, so
 * the padding is checked here: only "xx==" and "xxx=" are padded quads.
 */
static size_t real_bytes_in_last_quad(const char *quad)
{
    if (quad[0] == '=' || quad[1] == '=')
        return 0;
    if (quad[2] == '=')
        return quad[3] == '=' ? 1 : 0;
    return quad[3] == '=' ? 2 : 3;
}

int vfm_base64_decode_exact(const char *text, size_t text_len, uint8_t *out, size_t expected)
{
    uint8_t last[3];
    size_t body_quads;
    size_t tail;

    if (text_len != vfm_base64_encoded_length(expected) || text_len > (size_t)INT32_MAX)
        return -1;
    if (text_len == 0)
        return 0;
    /* '=' may only pad the final quad. */
    if (memchr(text, '=', text_len - 4) != NULL)
        return -1;
    /*
     * All quads but the last decode to exactly three bytes, straight into the
     * caller's buffer. The last one goes through a small buffer, because
     * EVP_DecodeBlock always writes three bytes per quad, padding included,
     * and the caller's buffer ends at the real last byte.
     */
    body_quads = text_len / 4 - 1;
    if (body_quads > 0 && EVP_DecodeBlock(out, (const unsigned char *)text, (int)(body_quads * 4)) != (int)(body_quads * 3))
        return -1;
    if (EVP_DecodeBlock(last, (const unsigned char *)text + body_quads * 4, 4) != 3)
        return -1;
    tail = real_bytes_in_last_quad(text + body_quads * 4);
    if (tail == 0 || body_quads * 3 + tail != expected)
        return -1;
    memcpy(out + body_quads * 3, last, tail);
    return 0;
}
