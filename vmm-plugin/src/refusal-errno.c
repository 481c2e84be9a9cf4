/* Agent refusal names -> errno; see refusal-errno.h. */
#include "refusal-errno.h"

#include <errno.h>
#include <string.h>

struct refusal_kind {
    const char *name;
    int rc;
    const char *meaning;
};

static const struct refusal_kind KINDS[] = {
    { "ILLEGAL_TRANSITION", -EINVAL, "the VF's state machine refuses this change" },
    /* QEMU cannot tell these two from an illegal transition by errno alone, hence the words on stderr. */
    { "STATE_CORRUPT", -EINVAL, "the loaded state is corrupt" },
    { "STATE_INCOMPATIBLE", -EINVAL, "the loaded state is incompatible with this VF" },
    { "VF_BUSY", -EBUSY, "too many calls are queued for the VF" },
    { "QUIESCE_TIMEOUT", -ETIMEDOUT, "in-flight commands did not drain in time" },
    { "SESSION_UNKNOWN", -ESTALE, "the migration session this handle continued is gone (cancelled, or replaced by another)" },
    { "NOT_SESSION_OWNER", -EPERM, "another principal's migration holds the VF" },
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
