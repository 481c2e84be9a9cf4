/*
 * Deadlines: every wait of the plugin is a poll() bounded by one, so a dead
 * or silent agent costs at most the timeout, never a hang.
 */
#ifndef VFM_DEADLINE_H
#define VFM_DEADLINE_H

#include <stdint.h>

/* Monotonic time in nanoseconds. */
int64_t vfm_now_ns(void);

/* A deadline `ms` milliseconds from now. */
int64_t vfm_deadline_after_ms(int ms);

/*
 * Waits until fd is ready for `events` (POLLIN, POLLOUT) or has an error or
 * hang-up to report, or the deadline passes: 0, -ETIMEDOUT or -errno. The
 * next call on the socket says which of ready/error/hang-up it was.
 */
int vfm_wait_ready(int fd, short events, int64_t deadline);

#endif
