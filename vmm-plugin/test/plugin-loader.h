/* Loading a migration plugin and changing a device's state exactly as QEMU's RFC code (hw/vfio/migration-plugin.c) does. */
#ifndef HARNESS_PLUGIN_LOADER_H
#define HARNESS_PLUGIN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "vfio-migration-plugin.h"

struct loaded_plugin {
    void *module;
    const VFIOMigrationPluginOps *ops;
};

/*
 * dlopen(RTLD_LAZY | RTLD_LOCAL), then the version check, then the ops
 * table, refusing the plugin as QEMU would. Returns 0, or -1 with the
 * reason in why.
 */
int plugin_load(const char *path, struct loaded_plugin *plugin, char *why, size_t why_len);

void plugin_unload(struct loaded_plugin *plugin);

/*
 * QEMU's vfio_migration_set_state_plugin(mask, value): get_state, then
 * new = (current & mask) | value, refuse RESUMING with other bits (-EINVAL,
 * without calling the plugin), then set_state(new). *failed_op names the op
 * that failed ("get_state", "set_state"); *new_state gets the value set.
 */
int qemu_set_state(const VFIOMigrationPluginOps *ops, void *handle, uint32_t mask, uint32_t value,
                   uint32_t *new_state, const char **failed_op);

#endif
