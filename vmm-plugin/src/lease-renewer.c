/* The lease renewal thread of one plugin handle; see lease-renewer.h. */
#include "lease-renewer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "deadline.h"

#define NS_PER_S 1000000000

static void *renewer_main(void *opaque)
{
    struct vfm_renewer *renewer = opaque;

    (void)pthread_mutex_lock(renewer->lock);
    while (!renewer->stopping) {
        struct vfm_failure ignored;
        int64_t at;

        if (!vfm_device_renewal_due(renewer->device, &at)) {
            /* Outside a migration: nothing to do until an op begins one, or cleanup. */
            (void)pthread_cond_wait(&renewer->wake, renewer->lock);
        } else if (vfm_now_ns() < at) {
            struct timespec until = { .tv_sec = (time_t)(at / NS_PER_S), .tv_nsec = (long)(at % NS_PER_S) };

            /* Woken early (an op, a stop) or not: the loop looks again, the calls since having moved `at` on. */
            (void)pthread_cond_timedwait(&renewer->wake, renewer->lock, &until);
        } else {
            /*
             * Not fatal, and not reported: the next op reports what is really
             * wrong. The device has noted when to try again, or that there is
             * nothing to renew until the next migration.
             */
            (void)vfm_device_renew_lease(renewer->device, &ignored);
        }
    }
    (void)pthread_mutex_unlock(renewer->lock);
    return NULL;
}

static int make_condition(pthread_cond_t *cond)
{
    pthread_condattr_t attributes;
    int rc = pthread_condattr_init(&attributes);

    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &attributes);
    (void)pthread_condattr_destroy(&attributes);
    return rc;
}

int vfm_renewer_start(struct vfm_renewer *renewer, pthread_mutex_t *lock, struct vfm_device *device,
                      struct vfm_failure *failure)
{
    sigset_t all;
    sigset_t old;
    char text[96];
    int rc;

    renewer->lock = lock;
    renewer->device = device;
    renewer->stopping = false;
    rc = make_condition(&renewer->wake);
    if (rc != 0)
        return vfm_fail(failure, -rc, "cannot create the lease renewal's condition variable: %s",
                        vfm_strerror(rc, text, sizeof(text)));
    /* The thread inherits the mask it is created with: all blocked, then ours back. */
    (void)sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&renewer->thread, NULL, renewer_main, renewer);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        (void)pthread_cond_destroy(&renewer->wake);
        return vfm_fail(failure, -rc, "cannot start the lease renewal thread: %s", vfm_strerror(rc, text, sizeof(text)));
    }
    /* Only a name for ps and gdb: a failure changes nothing. */
    (void)pthread_setname_np(renewer->thread, "vfmigd-lease");
    return 0;
}

void vfm_renewer_poke(struct vfm_renewer *renewer)
{
    (void)pthread_cond_signal(&renewer->wake);
}

void vfm_renewer_stop(struct vfm_renewer *renewer)
{
    (void)pthread_mutex_lock(renewer->lock);
    renewer->stopping = true;
    (void)pthread_cond_signal(&renewer->wake);
    (void)pthread_mutex_unlock(renewer->lock);
    (void)pthread_join(renewer->thread, NULL);
    (void)pthread_cond_destroy(&renewer->wake);
}
