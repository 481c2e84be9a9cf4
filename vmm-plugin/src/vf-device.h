/*
 * One VF as QEMU's plugin handle sees it: the connection to its agent, what
 * the agent told us about it, and the little state the v1 ABI needs on top
 * of the agent's v2 state machine. Not thread-safe by itself: the plugin ops
 * serialize the calls on one device (plugin-ops.c); devices share nothing.
 *
 * Every function returns 0 or a negative errno, with the reason in *failure.
 */
#ifndef VFM_VF_DEVICE_H
#define VFM_VF_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "agent-address.h"
#include "agent-contract.h"
#include "failure.h"
#include "rpc-client.h"
#include "state-map.h"

/* vf.save's and our vf.load's largest slice (the agent's vf.save maxBytes limit). */
#define VFM_MAX_SLICE_BYTES VFM_AGENT_SAVE_MAX_BYTES

struct vfm_device {
    char *devid;                 /* as QEMU passed it: the BDF */
    char vf[72];                 /* the agent's id for the VF (from vf.get), used in every call */
    struct vfm_address address;
    struct vfm_rpc rpc;
    bool pre_copy;               /* capabilities.preCopy */
    bool p2p;                    /* capabilities.p2p (the agent routes through RUNNING_P2P itself) */
    bool saving_requested;       /* v1 RUNNING|SAVING was set on a VF without pre-copy */
    bool own_save_session;       /* this handle opened the VF's save stream (PRE_COPY or STOP_COPY) */
    bool own_resume_session;     /* this handle opened the VF's resume session (RESUMING) */
    uint64_t load_offset;        /* where the next vf.load slice goes in the resume stream */
    /*
     * The agent's id of the save or resume session this handle continues,
     * from its first slice's result; "" until then. Every later slice names
     * it, so a session opened under us (a cancel and a new save by another
     * client) is refused, never read or written as if it were ours.
     */
    char session[64];
    /*
     * The state our last successful call left the VF in. The agent never
     * changes a VF's state by itself (VFIO semantics), and this handle is the
     * VF's only controller during a migration, so the get_state QEMU makes
     * before every set_state needs no round trip. Any failure forgets it.
     */
    bool state_known;
    enum vfm_v2_state known_state;
    char *scratch;               /* base64 text of a load slice, kept between calls */
    size_t scratch_capacity;
};

/* init: connect, check the agent's API version, look the VF up. NULL *device on failure. */
int vfm_device_open(const char *devid, const char *arg, struct vfm_device **device, struct vfm_failure *failure);

/* cleanup: closes the connection and frees everything; NULL is a no-op. */
void vfm_device_close(struct vfm_device *device);

int vfm_device_set_state(struct vfm_device *device, uint32_t v1, struct vfm_failure *failure);
int vfm_device_get_state(struct vfm_device *device, uint32_t *v1, struct vfm_failure *failure);

int vfm_device_pending(struct vfm_device *device, uint64_t *bytes, struct vfm_failure *failure);
int vfm_device_save(struct vfm_device *device, uint8_t *buffer, uint64_t length, struct vfm_failure *failure);
int vfm_device_load(struct vfm_device *device, const uint8_t *buffer, uint64_t length, struct vfm_failure *failure);

/* For vf-stream.c: reads the VF's v2 state from the agent. */
int vfm_device_read_state(struct vfm_device *device, enum vfm_v2_state *state, struct vfm_failure *failure);

/*
 * For vf-stream.c: describes a refusal of `what` in *failure and returns its
 * errno. It first re-reads the VF's state (vf.getState), so the message says
 * where the agent left the VF.
 */
int vfm_device_refused(struct vfm_device *device, const char *what, const struct vfm_refusal *refusal,
                       struct vfm_failure *failure);

#endif
