/*
 * One thread per plugin handle that keeps its VF's migration lease alive
 * while QEMU is between calls (vf-lease.c says when a renewal is due and
 * makes it). It takes the handle's lock for every renewal, as the ops do,
 * so that a renewal and an op never share the connection at once, and it
 * waits on a condition variable of that lock: an op that changes the
 * migration wakes it to look again, and a stop wakes it at once instead of
 * after a period.
 *
 * The thread blocks every signal (QEMU's signals are for its own threads)
 * and is named "vfmigd-lease".
 */
#ifndef VFM_LEASE_RENEWER_H
#define VFM_LEASE_RENEWER_H

#include <pthread.h>
#include <stdbool.h>

#include "failure.h"
#include "vf-device.h"

struct vfm_renewer {
    pthread_mutex_t *lock;       /* the handle's: held around each look at the device and each renewal */
    struct vfm_device *device;   /* outlives the renewer */
    pthread_cond_t wake;         /* on CLOCK_MONOTONIC, as the device's times are */
    pthread_t thread;
    bool stopping;
};

/* Starts the thread for `device`, whose ops hold `lock`; 0 or a negative errno with the reason. */
int vfm_renewer_start(struct vfm_renewer *renewer, pthread_mutex_t *lock, struct vfm_device *device,
                      struct vfm_failure *failure);

/* With the lock held, after an op that may have begun a migration: the thread looks again. */
void vfm_renewer_poke(struct vfm_renewer *renewer);

/*
 * Without the lock: wakes the thread, waits for it to end and releases the
 * renewer. It returns at once unless a renewal is in flight, which ends
 * within the address's timeout_ms.
 */
void vfm_renewer_stop(struct vfm_renewer *renewer);

#endif
