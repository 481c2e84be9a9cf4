/* Recording why an operation failed; see failure.h. */
#include "failure.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int vfm_fail(struct vfm_failure *failure, int rc, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(failure->text, sizeof(failure->text), format, args);
    va_end(args);
    return rc;
}

void vfm_fail_prefix(struct vfm_failure *failure, const char *format, ...)
{
    char prefix[256];
    char rest[VFM_FAILURE_TEXT];
    va_list args;

    va_start(args, format);
    vsnprintf(prefix, sizeof(prefix), format, args);
    va_end(args);
    memcpy(rest, failure->text, sizeof(rest));
    /* Too long is possible in theory (long paths in messages): end it with "..." rather than mid-word silently. */
    if (snprintf(failure->text, sizeof(failure->text), "%s: %s", prefix, rest) >= (int)sizeof(failure->text))
        memcpy(failure->text + sizeof(failure->text) - 4, "...", 4);
}

const char *vfm_strerror(int errnum, char *buf, size_t len)
{
    /* _GNU_SOURCE gives the GNU strerror_r, which may return a static string instead of filling buf. */
    return strerror_r(errnum, buf, len);
}
