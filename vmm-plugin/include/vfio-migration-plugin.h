/*
 * The out-of-band VFIO migration plugin ABI, as QEMU's 2022 RFC
 * ("Add a plugin to support out-of-band live migration for VFIO pass-through
 * device", include/hw/vfio/vfio-migration-plugin.h) defines it. The RFC was
 * not merged upstream, so this header is our own copy of that contract: the
 * member order of VFIOMigrationPluginOps and the two symbol names are the ABI
 * and must not change.
 *
 * QEMU dlopen()s the plugin with local binding, checks that
 * vfio_lm_get_plugin_version() returns VFIO_LM_PLUGIN_API_VERSION, then takes
 * the ops table from vfio_lm_get_plugin_ops(). Every op returns 0 on success
 * and a negative errno on failure, except init, which returns a handle or NULL.
 */
#ifndef VFIO_MIGRATION_PLUGIN_H
#define VFIO_MIGRATION_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VFIO_LM_PLUGIN_API_VERSION 0

/*
 * VFIO migration protocol v1 device_state bits (include/uapi/linux/vfio.h,
 * today VFIO_DEVICE_STATE_V1_*). QEMU's plugin path speaks only these; note
 * that v1 RUNNING is 1 while the v2 enum the agent speaks has STOP = 1.
 */
#ifndef VFIO_DEVICE_STATE_STOP
#define VFIO_DEVICE_STATE_STOP      0u
#define VFIO_DEVICE_STATE_RUNNING   (1u << 0)
#define VFIO_DEVICE_STATE_SAVING    (1u << 1)
#define VFIO_DEVICE_STATE_RESUMING  (1u << 2)
#define VFIO_DEVICE_STATE_MASK      (VFIO_DEVICE_STATE_RUNNING | VFIO_DEVICE_STATE_SAVING | \
                                     VFIO_DEVICE_STATE_RESUMING)

/* With RESUMING set, the only valid value is RESUMING alone. */
#define VFIO_DEVICE_STATE_VALID(state) \
    ((state) & VFIO_DEVICE_STATE_RESUMING ? \
     ((state) & VFIO_DEVICE_STATE_MASK) == VFIO_DEVICE_STATE_RESUMING : 1)

/* SAVING|RESUMING is how v1 encodes "the device failed". */
#define VFIO_DEVICE_STATE_IS_ERROR(state) \
    (((state) & VFIO_DEVICE_STATE_MASK) == (VFIO_DEVICE_STATE_SAVING | VFIO_DEVICE_STATE_RESUMING))
#endif

typedef struct VFIOMigrationPluginOps {
    /* devid: the device's name (its BDF for PCI); arg: x-plugin-arg. */
    void *(*init)(char *devid, char *arg);
    /* Fill exactly len bytes of device state. */
    int (*save)(void *handle, uint8_t *state, uint64_t len);
    /* Consume len bytes of device state. */
    int (*load)(void *handle, uint8_t *state, uint64_t len);
    /* Bytes of state the following save calls will return. */
    int (*update_pending)(void *handle, uint64_t *pending_bytes);
    /* value: v1 device_state bits. */
    int (*set_state)(void *handle, uint32_t value);
    int (*get_state)(void *handle, uint32_t *value);
    /* End of migration: release everything the handle holds. */
    int (*cleanup)(void *handle);
} VFIOMigrationPluginOps;

typedef int (*VFIOLMPluginGetVersion)(void);
typedef VFIOMigrationPluginOps *(*VFIOLMPluginGetOps)(void);

#ifdef __cplusplus
}
#endif

#endif /* VFIO_MIGRATION_PLUGIN_H */
