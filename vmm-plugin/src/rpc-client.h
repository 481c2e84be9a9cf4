/*
 * JSON-RPC 2.0 calls to the agent, one at a time, over one connection.
 * Requests are built with json-c; a megabyte payload (vf.load's base64) is
 * not put through json-c but written between the serialized head and tail
 * of the request. A connection lost or timed out is reopened by the next
 * call, so a cancel after a failed save still reaches a live agent.
 */
#ifndef VFM_RPC_CLIENT_H
#define VFM_RPC_CLIENT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "agent-address.h"
#include "connection.h"
#include "failure.h"

/* vfm_rpc_call's return when the agent answered with an error object (see struct vfm_refusal). */
#define VFM_RPC_REFUSED 1

/* The agent's error object, flattened: every field is NUL-terminated, empty when absent. */
struct vfm_refusal {
    long code;              /* error.code */
    char name[48];          /* error.data.code: the stable name, e.g. ILLEGAL_TRANSITION */
    char message[96];       /* error.message */
    char detail[384];       /* error.data.detail */
    char state[16];         /* error.data.state: the VF's state after a refused change, if given */
};

struct vfm_rpc {
    struct vfm_connection conn;
    const struct vfm_address *address;  /* owned by the caller, outlives this */
    int64_t next_id;
};

void vfm_rpc_init(struct vfm_rpc *rpc, const struct vfm_address *address);

/*
 * Prepares the transport (for tls:, reads the certificate files: only here,
 * at init, never later in a migration) and opens the connection now (init
 * wants "unreachable" reported as such).
 */
int vfm_rpc_connect(struct vfm_rpc *rpc, struct vfm_failure *failure);

/*
 * Calls `method` with `params` (an object or NULL; always released). If
 * `blob_key` is non-NULL, params gets one more string member, `blob_key`,
 * whose text is blob[0..blob_len) written as is (it must need no JSON
 * escaping, as base64 does not).
 *
 * Returns 0 with *result set (release with json_object_put), VFM_RPC_REFUSED
 * with *refusal filled, or a negative errno with the reason in *failure.
 */
int vfm_rpc_call(struct vfm_rpc *rpc, const char *method, json_object *params, const char *blob_key,
                 const char *blob, size_t blob_len, json_object **result, struct vfm_refusal *refusal,
                 struct vfm_failure *failure);

void vfm_rpc_destroy(struct vfm_rpc *rpc);

#endif
