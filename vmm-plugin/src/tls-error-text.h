/*
 * One short, safe line for an OpenSSL failure. OpenSSL keeps its errors in
 * a per-thread queue; every TLS step clears it first and reads it here
 * after a failure, so a reason never comes from another handle's call.
 */
#ifndef VFM_TLS_ERROR_TEXT_H
#define VFM_TLS_ERROR_TEXT_H

#include <stddef.h>

/*
 * The reason of the first error in this thread's queue (e.g. "tlsv1 alert
 * unknown ca"), or `fallback` when the queue is empty; then clears the
 * queue. Only the reason string, never an error's data, which may quote
 * what was being parsed (a key file, say).
 */
const char *vfm_tls_error_reason(const char *fallback, char *buf, size_t len);

#endif
