/*
 * How a failure travels up to the op QEMU called: a negative errno as the
 * return value, and one human-readable reason in a caller-owned buffer, so
 * the op can print exactly one line and nothing is shared between handles.
 */
#ifndef VFM_FAILURE_H
#define VFM_FAILURE_H

#include <stddef.h>

#define VFM_FAILURE_TEXT 768

struct vfm_failure {
    char text[VFM_FAILURE_TEXT];
};

/* Records the reason (printf-style) and returns rc, so callers can `return vfm_fail(...)`. */
int vfm_fail(struct vfm_failure *failure, int rc, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts `prefix: ` in front of the recorded reason; keeps the rest if it does not fit. */
void vfm_fail_prefix(struct vfm_failure *failure, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* strerror(), but thread-safe: the text lands in buf. */
const char *vfm_strerror(int errnum, char *buf, size_t len);

#endif
