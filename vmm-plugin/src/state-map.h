/*
 * QEMU's VFIO v1 device_state bits <-> the agent's VFIO v2 states.
 *
 *   v1 set       v2 requested                       v2 reported      v1 got
 *   RUNNING 1    RUNNING                            RUNNING(_P2P)    1, or 3 if saving was requested
 *   3            PRE_COPY, or RUNNING + "saving     PRE_COPY(_P2P)   3
 *                requested" without pre-copy
 *   SAVING 2     STOP_COPY                          STOP_COPY        2
 *   STOP 0       STOP                               STOP             0
 *   RESUMING 4   RESUMING                           RESUMING         4
 *   5, 6, 7      refused (-EINVAL)                  ERROR            6 (SAVING|RESUMING)
 *
 * The numbers differ between the two (v1 RUNNING = 1, v2 STOP = 1), so the
 * agent is always spoken to by state name.
 */
#ifndef VFM_STATE_MAP_H
#define VFM_STATE_MAP_H

#include <stdbool.h>
#include <stdint.h>

/* enum vfio_device_mig_state (uAPI values). */
enum vfm_v2_state {
    VFM_V2_ERROR = 0,
    VFM_V2_STOP = 1,
    VFM_V2_RUNNING = 2,
    VFM_V2_STOP_COPY = 3,
    VFM_V2_RESUMING = 4,
    VFM_V2_RUNNING_P2P = 5,
    VFM_V2_PRE_COPY = 6,
    VFM_V2_PRE_COPY_P2P = 7,
};

/* The agent's name for a v2 state. */
const char *vfm_v2_name(enum vfm_v2_state state);

/* Parses an agent state name; returns 0, or -1 for an unknown name. */
int vfm_v2_parse(const char *name, enum vfm_v2_state *state);

/*
 * The v2 state to request for v1 bits `v1`. *saving_requested says whether
 * the VF stays running with saving only remembered (3 without pre-copy).
 * Returns 0, or -EINVAL for values QEMU must never set (RESUMING with other
 * bits, which includes the error encoding 6, and bits outside the mask).
 */
int vfm_v1_to_v2(uint32_t v1, bool pre_copy, enum vfm_v2_state *target, bool *saving_requested);

/* The v1 bits that describe v2 `state`. */
uint32_t vfm_v2_to_v1(enum vfm_v2_state state, bool saving_requested);

#endif
