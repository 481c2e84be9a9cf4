/* QEMU's way of loading a plugin and setting a device state; see plugin-loader.h. */
#include "plugin-loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int plugin_load(const char *path, struct loaded_plugin *plugin, char *why, size_t why_len)
{
    VFIOLMPluginGetVersion get_version;
    VFIOLMPluginGetOps get_ops;
    int version;

    memset(plugin, 0, sizeof(*plugin));
    /* GModule's G_MODULE_BIND_LOCAL without BIND_LAZY cleared: RTLD_LAZY | RTLD_LOCAL. */
    plugin->module = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (plugin->module == NULL) {
        snprintf(why, why_len, "cannot load %s: %s", path, dlerror());
        return -1;
    }
    /* POSIX's sanctioned way to turn dlsym's void * into a function pointer. */
    *(void **)&get_version = dlsym(plugin->module, "vfio_lm_get_plugin_version");
    if (get_version == NULL) {
        snprintf(why, why_len, "%s has no vfio_lm_get_plugin_version", path);
        goto refuse;
    }
    version = get_version();
    if (version != VFIO_LM_PLUGIN_API_VERSION) {
        snprintf(why, why_len, "%s speaks plugin API version %d, QEMU speaks %d", path, version,
                 VFIO_LM_PLUGIN_API_VERSION);
        goto refuse;
    }
    *(void **)&get_ops = dlsym(plugin->module, "vfio_lm_get_plugin_ops");
    if (get_ops == NULL) {
        snprintf(why, why_len, "%s has no vfio_lm_get_plugin_ops", path);
        goto refuse;
    }
    plugin->ops = get_ops();
    if (plugin->ops == NULL) {
        snprintf(why, why_len, "%s returned no ops table", path);
        goto refuse;
    }
    return 0;

refuse:
    plugin_unload(plugin);
    return -1;
}

void plugin_unload(struct loaded_plugin *plugin)
{
    if (plugin->module != NULL && dlclose(plugin->module) != 0)
        fprintf(stderr, "vfmigd-harness: dlclose: %s\n", dlerror());
    plugin->module = NULL;
    plugin->ops = NULL;
}

int qemu_set_state(const VFIOMigrationPluginOps *ops, void *handle, uint32_t mask, uint32_t value,
                   uint32_t *new_state, const char **failed_op)
{
    uint32_t state = 0;
    int rc = ops->get_state(handle, &state);

    if (rc != 0) {
        *failed_op = "get_state";
        return rc;
    }
    state = (state & mask) | value;
    *new_state = state;
    if (!VFIO_DEVICE_STATE_VALID(state)) {
        *failed_op = "set_state";
        return -EINVAL;
    }
    rc = ops->set_state(handle, state);
    if (rc != 0)
        *failed_op = "set_state";
    return rc;
}
