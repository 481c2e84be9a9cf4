/*
 * JSON-RPC 2.0 calls to the agent, one at a time, over one connection.
 * Requests are built with json-c; a megabyte payload never goes through
 * json-c: as base64 it is written between the serialized head and tail of
 * the request, as an attachment frame it is written before the request as
 * it is. A connection lost or timed out is reopened by the next call, so a
 * cancel after a failed save still reaches a live agent.
 *
 * Attachments: every connection, once open, asks rpc.enableAttachments
 * (unless the address says attachments=off). An agent that has them says
 * so, and from then on vf.load may send its bytes in a frame and every
 * vf.save result comes with one; an agent without them answers -32601
 * (method not found) and the connection carries base64, as before. Which
 * way a connection went is vfm_rpc_attachments' to say.
 */
#ifndef VFM_RPC_CLIENT_H
#define VFM_RPC_CLIENT_H

#include <json-c/json.h>
#include <stdbool.h>
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

/* A payload put into params[key] without going through json-c. */
struct vfm_rpc_blob {
    const char *key;
    const void *bytes;
    size_t length;
    /*
     * false: bytes are text that needs no JSON escaping (base64), written as
     * the member's string. true: bytes go in an attachment frame before the
     * request, the member says {"attachment": length}; only on a connection
     * with attachments, and at most vfm_rpc_attachments' max bytes.
     */
    bool attached;
};

/*
 * Where a result's attachment goes. On a connection with attachments a
 * success result must come with a frame of at most `capacity` bytes, and
 * result[key] must be {"attachment": N} with N the frame's length; an error
 * must come without one. Anything else is a protocol error. On a connection
 * without attachments no frame may come, and the result is the caller's to
 * read as before (received stays false).
 */
struct vfm_rpc_sink {
    const char *key;
    uint8_t *buffer;
    size_t capacity;
    size_t length;          /* out: the frame's length */
    bool received;          /* out: the result came with a frame */
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
 * wants "unreachable" reported as such), attachments agreed as for
 * vfm_rpc_open.
 */
int vfm_rpc_connect(struct vfm_rpc *rpc, struct vfm_failure *failure);

/*
 * Opens the connection if it is closed, and agrees on attachments on it.
 * A caller that chooses how to send by vfm_rpc_attachments calls this
 * first, since a reopened connection may go the other way.
 */
int vfm_rpc_open(struct vfm_rpc *rpc, struct vfm_failure *failure);

/* Whether the open connection carries attachments; *max_bytes (may be NULL) is the longest frame the agent takes. */
bool vfm_rpc_attachments(const struct vfm_rpc *rpc, uint32_t *max_bytes);

/*
 * Calls `method` with `params` (an object or NULL; always released), with
 * `blob` as one more member of params and `sink` for a result's attachment
 * (either may be NULL). Opens the connection first if it is closed.
 *
 * Returns 0 with *result set (release with json_object_put), VFM_RPC_REFUSED
 * with *refusal filled, or a negative errno with the reason in *failure.
 */
int vfm_rpc_call(struct vfm_rpc *rpc, const char *method, json_object *params, const struct vfm_rpc_blob *blob,
                 struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                 struct vfm_failure *failure);

/* Closes the connection (a result the caller could not use leaves it out of step); the next call reopens it. */
void vfm_rpc_close(struct vfm_rpc *rpc);

void vfm_rpc_destroy(struct vfm_rpc *rpc);

#endif
