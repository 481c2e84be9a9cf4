/* Deadlines and bounded waits; see deadline.h. */
#include "deadline.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <time.h>

int64_t vfm_now_ns(void)
{
    struct timespec now;

    /* CLOCK_MONOTONIC cannot fail on Linux; if it ever did, 0 makes every deadline expire at once rather than never. */
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0;
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t vfm_deadline_after_ms(int ms)
{
    return vfm_now_ns() + (int64_t)ms * 1000000;
}

int vfm_wait_ready(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - vfm_now_ns();
        struct pollfd pfd = { .fd = fd, .events = events };
        int64_t ms;
        int ready;

        if (left <= 0)
            return -ETIMEDOUT;
        ms = (left + 999999) / 1000000;
        ready = poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (ready > 0)
            return 0;
    }
}
