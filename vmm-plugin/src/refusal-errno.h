/* What an agent's refusal (its error.data.code) means to QEMU: a negative errno and a few words. */
#ifndef VFM_REFUSAL_ERRNO_H
#define VFM_REFUSAL_ERRNO_H

/*
 *   ILLEGAL_TRANSITION, STATE_CORRUPT, STATE_INCOMPATIBLE  -EINVAL
 *   VF_BUSY                                                -EBUSY
 *   QUIESCE_TIMEOUT                                        -ETIMEDOUT
 *   SESSION_UNKNOWN                                        -ESTALE
 *   NOT_SESSION_OWNER                                      -EPERM
 *   NO_MIGRATION                                           -ESRCH
 *   anything else                                          -EIO
 */
int vfm_refusal_errno(const char *name);

/* A phrase that tells apart refusals sharing an errno (e.g. "the loaded state is corrupt"); "" if none. */
const char *vfm_refusal_meaning(const char *name);

#endif
