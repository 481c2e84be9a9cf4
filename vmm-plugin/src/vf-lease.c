/*
 * The lease on a VF's migration, kept alive while QEMU is between calls
 * (moving RAM can take longer than a lease): when a renewal is due, and
 * the call. The thread that makes it is lease-renewer.c's; everything here
 * runs under the handle's lock, as the ops do.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "deadline.h"
#include "json-fields.h"
#include "refusal-errno.h"
#include "vf-device.h"

#define NS_PER_MS 1000000

int vfm_device_call(struct vfm_device *device, const char *method, json_object *params, const struct vfm_rpc_blob *blob,
                    struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                    struct vfm_failure *failure)
{
    /* Taken before the call (and any reconnect it makes): the agent extends the lease later than this, never sooner. */
    int64_t sent = vfm_now_ns();
    int rc = vfm_rpc_call(&device->rpc, method, params, blob, sink, result, refusal, failure);

    if (rc == 0) {
        /* The lease runs from here: whatever renewals failed before, the next is a period away. */
        device->lease_touched_ns = sent;
        device->renewal_failures = 0;
    }
    return rc;
}

void vfm_device_lease_follow(struct vfm_device *device, enum vfm_v2_state state)
{
    bool was = device->in_migration;

    device->in_migration = state != VFM_V2_RUNNING;
    /* A new migration's lease is learnt afresh: the agent may have been restarted with another default. */
    if (device->in_migration && !was) {
        device->lease_ms = 0;
        device->renewal_failures = 0;
    }
}

void vfm_device_lease_drop(struct vfm_device *device)
{
    device->in_migration = false;
}

int64_t vfm_device_renewal_period_ms(const struct vfm_device *device)
{
    int lease = device->lease_ms > 0 ? device->lease_ms : device->address.lease_ms;
    int64_t period = lease > 0 ? lease / 3 : VFM_LEARN_LEASE_AFTER_MS;

    return period < VFM_MIN_RENEWAL_PERIOD_MS ? VFM_MIN_RENEWAL_PERIOD_MS : period;
}

/* After `failures` failed renewals in a row: VFM_RENEWAL_RETRY_MS, doubled for each further one, up to a period. */
static int64_t retry_after_ms(int failures, int64_t period)
{
    int64_t wait = VFM_RENEWAL_RETRY_MS;

    for (int i = 1; i < failures && wait < period; i++)
        wait *= 2;
    return wait < period ? wait : (period > VFM_RENEWAL_RETRY_MS ? period : VFM_RENEWAL_RETRY_MS);
}

bool vfm_device_renewal_due(const struct vfm_device *device, int64_t *at_ns)
{
    int64_t period = vfm_device_renewal_period_ms(device);

    if (!device->in_migration)
        return false;
    if (device->renewal_failures > 0)
        *at_ns = device->renewal_failed_ns + retry_after_ms(device->renewal_failures, period) * NS_PER_MS;
    else
        *at_ns = device->lease_touched_ns + period * NS_PER_MS;
    return true;
}

/* The refusals that say the lease we keep is not (or no longer) this handle's migration's. */
static bool ends_renewals(const char *name)
{
    return strcmp(name, VFM_AGENT_ERROR_NO_MIGRATION) == 0 || strcmp(name, VFM_AGENT_ERROR_SESSION_UNKNOWN) == 0 ||
           strcmp(name, VFM_AGENT_ERROR_NOT_SESSION_OWNER) == 0;
}

static int renew(struct vfm_device *device, struct vfm_failure *failure)
{
    json_object *params = vfm_json_vf_params(device->vf);
    json_object *result = NULL;
    struct vfm_refusal refusal;
    int64_t lease;
    int rc;

    if (params == NULL ||
        (device->session[0] != '\0' &&
         vfm_json_add(params, "session", json_object_new_string(device->session)) != 0) ||
        (device->address.lease_ms > 0 && vfm_json_add(params, "leaseMs", json_object_new_int(device->address.lease_ms)) != 0)) {
        json_object_put(params);
        return vfm_fail(failure, -ENOMEM, "lease renewal: out of memory");
    }
    rc = vfm_device_call(device, "vf.renewLease", params, NULL, NULL, &result, &refusal, failure);
    if (rc == VFM_RPC_REFUSED) {
        const char *meaning = vfm_refusal_meaning(refusal.name);

        /* No vf.getState here, unlike an op's refusal: this is no op's failure, and that call would extend the lease. */
        if (ends_renewals(refusal.name))
            device->in_migration = false;
        return vfm_fail(failure, vfm_refusal_errno(refusal.name), "lease renewal: vf.renewLease refused: %s%s%s (%s)%s",
                        refusal.name, meaning[0] != '\0' ? ", " : "", meaning,
                        refusal.detail[0] != '\0' ? refusal.detail : refusal.message,
                        device->in_migration ? "" : "; renewals stop until the next migration");
    }
    if (rc != 0) {
        vfm_fail_prefix(failure, "lease renewal");
        return rc;
    }
    if (vfm_json_int64(result, "leaseMs", &lease) != 0) {
        rc = vfm_fail(failure, -EPROTO, "lease renewal: the vf.renewLease result has no leaseMs");
    } else {
        /* Within the bounds any agent grants, whatever this one says: a period is never 0 nor years. */
        if (lease < VFM_AGENT_LEASE_MIN_MS)
            lease = VFM_AGENT_LEASE_MIN_MS;
        if (lease > VFM_AGENT_LEASE_MAX_MS)
            lease = VFM_AGENT_LEASE_MAX_MS;
        device->lease_ms = (int)lease;
    }
    json_object_put(result);
    return rc;
}

int vfm_device_renew_lease(struct vfm_device *device, struct vfm_failure *failure)
{
    int64_t tried = vfm_now_ns();
    int rc = renew(device, failure);

    if (rc != 0 && device->in_migration) {
        /* Later than any call it may have made: a result we could not use extended the lease all the same. */
        device->renewal_failed_ns = tried > device->lease_touched_ns ? tried : device->lease_touched_ns + 1;
        if (device->renewal_failures < 64)
            device->renewal_failures++;
    }
    return rc;
}
