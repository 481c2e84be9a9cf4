/* v1 bits <-> v2 states; the table is in state-map.h. */
#include "state-map.h"

#include <errno.h>
#include <string.h>

#include "agent-contract.h"
#include "vfio-migration-plugin.h"

/* The agent's names (agent-contract.h) at the uAPI's numbers, which must be the agent's too. */
_Static_assert(VFM_V2_ERROR == VFM_AGENT_STATE_VALUE_ERROR && VFM_V2_STOP == VFM_AGENT_STATE_VALUE_STOP &&
                   VFM_V2_RUNNING == VFM_AGENT_STATE_VALUE_RUNNING &&
                   VFM_V2_STOP_COPY == VFM_AGENT_STATE_VALUE_STOP_COPY &&
                   VFM_V2_RESUMING == VFM_AGENT_STATE_VALUE_RESUMING &&
                   VFM_V2_RUNNING_P2P == VFM_AGENT_STATE_VALUE_RUNNING_P2P &&
                   VFM_V2_PRE_COPY == VFM_AGENT_STATE_VALUE_PRE_COPY &&
                   VFM_V2_PRE_COPY_P2P == VFM_AGENT_STATE_VALUE_PRE_COPY_P2P,
               "the plugin's v2 state numbers are the agent's");
static const char *const V2_NAMES[] = {
    [VFM_V2_ERROR] = VFM_AGENT_STATE_ERROR,
    [VFM_V2_STOP] = VFM_AGENT_STATE_STOP,
    [VFM_V2_RUNNING] = VFM_AGENT_STATE_RUNNING,
    [VFM_V2_STOP_COPY] = VFM_AGENT_STATE_STOP_COPY,
    [VFM_V2_RESUMING] = VFM_AGENT_STATE_RESUMING,
    [VFM_V2_RUNNING_P2P] = VFM_AGENT_STATE_RUNNING_P2P,
    [VFM_V2_PRE_COPY] = VFM_AGENT_STATE_PRE_COPY,
    [VFM_V2_PRE_COPY_P2P] = VFM_AGENT_STATE_PRE_COPY_P2P,
};

#define V2_COUNT (sizeof(V2_NAMES) / sizeof(V2_NAMES[0]))

const char *vfm_v2_name(enum vfm_v2_state state)
{
    return (unsigned)state < V2_COUNT ? V2_NAMES[state] : "?";
}

int vfm_v2_parse(const char *name, enum vfm_v2_state *state)
{
    for (unsigned i = 0; i < V2_COUNT; i++) {
        if (strcmp(V2_NAMES[i], name) == 0) {
            *state = (enum vfm_v2_state)i;
            return 0;
        }
    }
    return -1;
}

int vfm_v1_to_v2(uint32_t v1, bool pre_copy, enum vfm_v2_state *target, bool *saving_requested)
{
    *saving_requested = false;
    if ((v1 & ~VFIO_DEVICE_STATE_MASK) != 0 || !VFIO_DEVICE_STATE_VALID(v1))
        return -EINVAL;
    switch (v1) {
    case VFIO_DEVICE_STATE_RUNNING:
        *target = VFM_V2_RUNNING;
        return 0;
    case VFIO_DEVICE_STATE_RUNNING | VFIO_DEVICE_STATE_SAVING:
        /* Without pre-copy nothing can be read while the VF runs: it keeps running, and saving is only noted. */
        *target = pre_copy ? VFM_V2_PRE_COPY : VFM_V2_RUNNING;
        *saving_requested = !pre_copy;
        return 0;
    case VFIO_DEVICE_STATE_SAVING:
        /* The agent routes RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY and captures the state on the last arc. */
        *target = VFM_V2_STOP_COPY;
        return 0;
    case VFIO_DEVICE_STATE_STOP:
        *target = VFM_V2_STOP;
        return 0;
    case VFIO_DEVICE_STATE_RESUMING:
        *target = VFM_V2_RESUMING;
        return 0;
    default:
        return -EINVAL;
    }
}

uint32_t vfm_v2_to_v1(enum vfm_v2_state state, bool saving_requested)
{
    switch (state) {
    case VFM_V2_RUNNING:
    case VFM_V2_RUNNING_P2P:
        return saving_requested ? VFIO_DEVICE_STATE_RUNNING | VFIO_DEVICE_STATE_SAVING : VFIO_DEVICE_STATE_RUNNING;
    case VFM_V2_PRE_COPY:
    case VFM_V2_PRE_COPY_P2P:
        return VFIO_DEVICE_STATE_RUNNING | VFIO_DEVICE_STATE_SAVING;
    case VFM_V2_STOP_COPY:
        return VFIO_DEVICE_STATE_SAVING;
    case VFM_V2_STOP:
        return VFIO_DEVICE_STATE_STOP;
    case VFM_V2_RESUMING:
        return VFIO_DEVICE_STATE_RESUMING;
    case VFM_V2_ERROR:
    default:
        return VFIO_DEVICE_STATE_SAVING | VFIO_DEVICE_STATE_RESUMING;
    }
}
