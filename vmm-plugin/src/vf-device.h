/*
 * One VF as QEMU's plugin handle sees it: the connection to its agent, what
 * the agent told us about it, and the little state the v1 ABI needs on top
 * of the agent's v2 state machine. Not thread-safe by itself: the plugin ops
 * and the handle's lease renewer serialize the calls on one device under
 * the handle's lock (plugin-ops.c, lease-renewer.c); devices share nothing.
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
     * Where the next vf.save slice starts in the save stream, named in every
     * call: an agent restarted from its journal makes the stream of the
     * stopped VF again from its start, and hands out the rest from here.
     */
    uint64_t save_offset;
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
    /*
     * The VF's migration lease, as this handle keeps it (vf-lease.c). The
     * VF is in a migration from a successful set_state that leaves it out
     * of RUNNING until one that reaches RUNNING, a failure (which forgets
     * the state), a renewal the agent answers with nothing to renew, or
     * cleanup; while it is, the renewer calls vf.renewLease a third of a
     * lease after the last call that extended it.
     */
    bool in_migration;
    int lease_ms;                /* this migration's lease as the last renewal reported it; 0: not known yet */
    int64_t lease_touched_ns;    /* when the last call that extended the lease was sent (monotonic) */
    int64_t renewal_failed_ns;   /* when the last renewal that failed was sent */
    int renewal_failures;        /* renewals failed since the last call that extended the lease */
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

/*
 * Calls `method` on the VF as vfm_rpc_call does. For every call the owner
 * makes on its VF during a migration (vf.setState, vf.getState, vf.pending,
 * vf.save, vf.load, vf.renewLease): the agent extends the lease on each one
 * it answers, so the renewer waits from the last of them.
 */
int vfm_device_call(struct vfm_device *device, const char *method, json_object *params, const struct vfm_rpc_blob *blob,
                    struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                    struct vfm_failure *failure);

/*
 * The lease (vf-lease.c); the handle's lock held, as for the ops.
 *
 * vfm_device_lease_follow: after a set_state that succeeded, which left
 * the VF in `state`. vfm_device_lease_drop: after a failure, or at
 * cleanup: renewals stop until a set_state takes the VF out of RUNNING.
 */
void vfm_device_lease_follow(struct vfm_device *device, enum vfm_v2_state state);
void vfm_device_lease_drop(struct vfm_device *device);

/* Whether a renewal is to be made, and when (*at_ns, monotonic; maybe already past). */
bool vfm_device_renewal_due(const struct vfm_device *device, int64_t *at_ns);

/* The time between renewals: a third of the lease, at least VFM_MIN_RENEWAL_PERIOD_MS. */
int64_t vfm_device_renewal_period_ms(const struct vfm_device *device);

/*
 * One vf.renewLease {vf, session (once known), leaseMs (lease_ms, if
 * given)}. 0, or a negative errno with the reason; no failure is the
 * handle's: the next op reports what is really wrong. A refusal that says
 * this migration is not ours to keep (NO_MIGRATION, SESSION_UNKNOWN,
 * NOT_SESSION_OWNER) stops renewals until the next migration; anything
 * else is tried again (VFM_RENEWAL_RETRY_MS; a lost connection is
 * reopened by that call, as by any op).
 */
int vfm_device_renew_lease(struct vfm_device *device, struct vfm_failure *failure);

/* The shortest period: a third of the shortest lease the agent grants. */
#define VFM_MIN_RENEWAL_PERIOD_MS (VFM_AGENT_LEASE_MIN_MS / 3)
/*
 * While the lease is not known (no lease_ms, and no renewal of this
 * migration answered yet) the first renewal is due this soon after the
 * last call, to learn it: the agent's leases.defaultMs may be as short as
 * VFM_AGENT_LEASE_MIN_MS, and the plugin cannot know it otherwise.
 */
#define VFM_LEARN_LEASE_AFTER_MS VFM_MIN_RENEWAL_PERIOD_MS
/*
 * A failed renewal is tried again this long after it, then twice as long
 * after each further failure, up to a period: a lost connection is
 * reopened well within the lease, and an agent that stays unreachable is
 * not hammered.
 */
#define VFM_RENEWAL_RETRY_MS 100

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
