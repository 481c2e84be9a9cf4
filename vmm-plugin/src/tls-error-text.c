/* OpenSSL failures as text; see tls-error-text.h. */
#include "tls-error-text.h"

#include <openssl/err.h>
#include <stdio.h>

const char *vfm_tls_error_reason(const char *fallback, char *buf, size_t len)
{
    unsigned long error = ERR_peek_error();
    const char *reason = error != 0 ? ERR_reason_error_string(error) : NULL;

    if (error == 0)
        snprintf(buf, len, "%s", fallback);
    else if (reason != NULL)
        snprintf(buf, len, "%s", reason);
    else
        snprintf(buf, len, "OpenSSL error %lx", error);
    ERR_clear_error();
    return buf;
}
