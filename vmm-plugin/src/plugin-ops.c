/*
 * The two symbols QEMU looks up, and the ops table behind them. Each op
 * takes its handle's lock (QEMU may reach one device from its main thread
 * and from the migration thread, and the handle's lease renewer shares the
 * device too), does the work in vf-device, and on failure prints exactly
 * one line to stderr. Handles share nothing, so devices run concurrently;
 * the ops table is the only global and is const.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "lease-renewer.h"
#include "vf-device.h"
#include "vfio-migration-plugin.h"

#define EXPORTED __attribute__((visibility("default")))

struct plugin_handle {
    pthread_mutex_t lock;
    struct vfm_device *device;
    struct vfm_renewer renewer;   /* keeps the lease while QEMU is between calls; ends at cleanup */
};

static void report(const struct plugin_handle *handle, const struct vfm_failure *failure)
{
    /* One fprintf per line: stdio locks the stream, so lines from several devices do not interleave. */
    fprintf(stderr, "vfmigd-plugin: %s: %s\n", handle->device->devid, failure->text);
}

static int enter(struct plugin_handle *handle)
{
    if (handle == NULL)
        return -EINVAL;
    return -pthread_mutex_lock(&handle->lock);
}

/* Releases the handle and reports a failure; returns rc. */
static int leave(struct plugin_handle *handle, int rc, const struct vfm_failure *failure)
{
    /* Unlocking a mutex this thread holds cannot fail; there is nothing to do if it did. */
    if (rc != 0 && handle->device != NULL) {
        handle->device->state_known = false; /* after a failure, only the agent knows where the VF is */
        vfm_device_lease_drop(handle->device); /* ... and whether it is in a migration: renewals stop */
    }
    (void)pthread_mutex_unlock(&handle->lock);
    if (rc != 0)
        report(handle, failure);
    return rc;
}

static void *plugin_init(char *devid, char *arg)
{
    struct plugin_handle *handle = calloc(1, sizeof(*handle));
    struct vfm_failure failure;
    int rc;

    if (handle == NULL) {
        fprintf(stderr, "vfmigd-plugin: out of memory\n");
        return NULL;
    }
    rc = pthread_mutex_init(&handle->lock, NULL);
    if (rc != 0) {
        fprintf(stderr, "vfmigd-plugin: cannot create a lock (error %d)\n", rc);
        free(handle);
        return NULL;
    }
    rc = vfm_device_open(devid, arg, &handle->device, &failure);
    if (rc == 0)
        rc = vfm_renewer_start(&handle->renewer, &handle->lock, handle->device, &failure);
    if (rc != 0) {
        fprintf(stderr, "vfmigd-plugin: %s\n", failure.text);
        vfm_device_close(handle->device);
        (void)pthread_mutex_destroy(&handle->lock);
        free(handle);
        return NULL;
    }
    return handle;
}

static int plugin_save(void *opaque, uint8_t *state, uint64_t len)
{
    struct plugin_handle *handle = opaque;
    struct vfm_failure failure;
    int rc = enter(handle);

    if (rc != 0)
        return rc;
    rc = state == NULL && len > 0 ? vfm_fail(&failure, -EINVAL, "save: no buffer")
                                  : vfm_device_save(handle->device, state, len, &failure);
    return leave(handle, rc, &failure);
}

static int plugin_load(void *opaque, uint8_t *state, uint64_t len)
{
    struct plugin_handle *handle = opaque;
    struct vfm_failure failure;
    int rc = enter(handle);

    if (rc != 0)
        return rc;
    rc = state == NULL && len > 0 ? vfm_fail(&failure, -EINVAL, "load: no buffer")
                                  : vfm_device_load(handle->device, state, len, &failure);
    return leave(handle, rc, &failure);
}

static int plugin_update_pending(void *opaque, uint64_t *pending_bytes)
{
    struct plugin_handle *handle = opaque;
    struct vfm_failure failure;
    int rc = enter(handle);

    if (rc != 0)
        return rc;
    rc = pending_bytes == NULL ? vfm_fail(&failure, -EINVAL, "update_pending: no result pointer")
                               : vfm_device_pending(handle->device, pending_bytes, &failure);
    return leave(handle, rc, &failure);
}

static int plugin_set_state(void *opaque, uint32_t value)
{
    struct plugin_handle *handle = opaque;
    struct vfm_failure failure;
    int rc = enter(handle);

    if (rc != 0)
        return rc;
    rc = vfm_device_set_state(handle->device, value, &failure);
    /* In a migration now, or no longer: the renewer looks again. */
    vfm_renewer_poke(&handle->renewer);
    return leave(handle, rc, &failure);
}

static int plugin_get_state(void *opaque, uint32_t *value)
{
    struct plugin_handle *handle = opaque;
    struct vfm_failure failure;
    int rc = enter(handle);

    if (rc != 0)
        return rc;
    rc = value == NULL ? vfm_fail(&failure, -EINVAL, "get_state: no result pointer")
                       : vfm_device_get_state(handle->device, value, &failure);
    return leave(handle, rc, &failure);
}

static int plugin_cleanup(void *opaque)
{
    struct plugin_handle *handle = opaque;

    /* QEMU calls cleanup even when init failed, with the NULL it got. */
    if (handle == NULL)
        return 0;
    /* QEMU lets go of the device: no more renewals, so that the lease, once it runs out, brings the VF back. */
    vfm_renewer_stop(&handle->renewer);
    vfm_device_close(handle->device);
    (void)pthread_mutex_destroy(&handle->lock);
    free(handle);
    return 0;
}

static const VFIOMigrationPluginOps PLUGIN_OPS = {
    .init = plugin_init,
    .save = plugin_save,
    .load = plugin_load,
    .update_pending = plugin_update_pending,
    .set_state = plugin_set_state,
    .get_state = plugin_get_state,
    .cleanup = plugin_cleanup,
};

EXPORTED int vfio_lm_get_plugin_version(void)
{
    return VFIO_LM_PLUGIN_API_VERSION;
}

EXPORTED VFIOMigrationPluginOps *vfio_lm_get_plugin_ops(void)
{
    /* The ABI's pointer is not const; the table is read-only all the same (QEMU only reads it). */
    return (VFIOMigrationPluginOps *)&PLUGIN_OPS;
}
