/* Agent refusal names -> errno; see refusal-errno.h. */
#include "refusal-errno.h"

#include <errno.h>
#include <string.h>

#include "agent-contract.h"

struct refusal_kind {
    const char *name;
    int rc;
    const char *meaning;
};

/* The names come from agent-contract.h: one the agent's catalogue no longer has fails the build. */
static const struct refusal_kind KINDS[] = {
    { VFM_AGENT_ERROR_ILLEGAL_TRANSITION, -EINVAL, "the VF's state machine refuses this change" },
    /* QEMU cannot tell these two from an illegal transition by errno alone, hence the words on stderr. */
    { VFM_AGENT_ERROR_STATE_CORRUPT, -EINVAL, "the loaded state is corrupt" },
    { VFM_AGENT_ERROR_STATE_INCOMPATIBLE, -EINVAL, "the loaded state is incompatible with this VF" },
    { VFM_AGENT_ERROR_VF_BUSY, -EBUSY, "too many calls are queued for the VF" },
    { VFM_AGENT_ERROR_QUIESCE_TIMEOUT, -ETIMEDOUT, "in-flight commands did not drain in time" },
    { VFM_AGENT_ERROR_SESSION_UNKNOWN, -ESTALE,
      "the migration session this handle continued is gone (cancelled, or replaced by another)" },
    { VFM_AGENT_ERROR_NOT_SESSION_OWNER, -EPERM, "another principal's migration holds the VF" },
    /* Only vf.renewLease says it: no such migration (any more) for a lease to keep alive. */
    { VFM_AGENT_ERROR_NO_MIGRATION, -ESRCH,
      "the VF is in no migration whose lease could be renewed (it runs, is in ERROR, or its lease ended)" },
    /* Nothing was done: the agent could not reach the VF's device (its firmware, or nvme-emu's device process). */
    { VFM_AGENT_ERROR_DEVICE_UNREACHABLE, -EHOSTDOWN, "the VF's device did not answer the agent; nothing was changed" },
};

static const struct refusal_kind *find(const char *name)
{
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++) {
        if (strcmp(KINDS[i].name, name) == 0)
            return &KINDS[i];
    }
    return NULL;
}

int vfm_refusal_errno(const char *name)
{
    const struct refusal_kind *kind = find(name);

    return kind != NULL ? kind->rc : -EIO;
}

const char *vfm_refusal_meaning(const char *name)
{
    const struct refusal_kind *kind = find(name);

    return kind != NULL ? kind->meaning : "";
}
