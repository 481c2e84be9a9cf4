/* JSON-RPC 2.0 client calls; see rpc-client.h. */
#include "rpc-client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent-contract.h"
#include "attachment-frame.h"
#include "json-fields.h"

#define SERIALIZE_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

void vfm_rpc_init(struct vfm_rpc *rpc, const struct vfm_address *address)
{
    vfm_connection_init(&rpc->conn, address);
    rpc->address = address;
    rpc->next_id = 1;
}

void vfm_rpc_close(struct vfm_rpc *rpc)
{
    vfm_connection_close(&rpc->conn);
}

void vfm_rpc_destroy(struct vfm_rpc *rpc)
{
    vfm_connection_destroy(&rpc->conn);
}

static int open_connection(struct vfm_rpc *rpc, struct vfm_failure *failure);

int vfm_rpc_connect(struct vfm_rpc *rpc, struct vfm_failure *failure)
{
    /* A bad credential file is a configuration fault, not an unreachable agent: its reason stands alone. */
    int rc = vfm_connection_prepare(&rpc->conn, failure);

    if (rc != 0)
        return rc;
    return open_connection(rpc, failure);
}

bool vfm_rpc_attachments(const struct vfm_rpc *rpc, uint32_t *max_bytes)
{
    bool on = vfm_connection_is_open(&rpc->conn) && rpc->conn.attachments;

    if (max_bytes != NULL)
        *max_bytes = on ? rpc->conn.attachment_max : 0;
    return on;
}

/*
 * Builds {"jsonrpc":"2.0","id":N,"method":M,"params":{...}} with params last
 * (json-c serializes members in insertion order). With a text blob, params
 * ends in `"KEY":""`, and the text is split just inside that empty string so
 * the blob can be sent between the two halves without being copied into
 * JSON; with an attached one, params[KEY] is {"attachment": N}.
 */
static int build_request(json_object *root, int64_t id, const char *method, json_object *params,
                         const struct vfm_rpc_blob *blob)
{
    json_object *value = NULL;

    if (vfm_json_add(root, "jsonrpc", json_object_new_string("2.0")) != 0 ||
        vfm_json_add(root, "id", json_object_new_int64(id)) != 0 ||
        vfm_json_add(root, "method", json_object_new_string(method)) != 0) {
        json_object_put(params);
        return -ENOMEM;
    }
    if (blob != NULL && params == NULL && (params = json_object_new_object()) == NULL)
        return -ENOMEM;
    if (blob != NULL && blob->attached) {
        value = json_object_new_object();
        if (value != NULL && vfm_json_add(value, "attachment", json_object_new_int64((int64_t)blob->length)) != 0) {
            json_object_put(value);
            value = NULL;
        }
    } else if (blob != NULL) {
        value = json_object_new_string("");
    }
    /* vfm_json_add releases the value if it fails; params is still ours then. */
    if (blob != NULL && vfm_json_add(params, blob->key, value) != 0) {
        json_object_put(params);
        return -ENOMEM;
    }
    if (params != NULL && vfm_json_add(root, "params", params) != 0)
        return -ENOMEM;    /* vfm_json_add released params */
    return 0;
}

static void copy_string_member(json_object *object, const char *key, char *out, size_t size)
{
    json_object *value;

    out[0] = '\0';
    if (object != NULL && json_object_object_get_ex(object, key, &value) && json_object_is_type(value, json_type_string))
        snprintf(out, size, "%s", json_object_get_string(value));
}

static void read_refusal(json_object *error, struct vfm_refusal *refusal)
{
    json_object *code;
    json_object *data = NULL;

    memset(refusal, 0, sizeof(*refusal));
    if (json_object_object_get_ex(error, "code", &code) && json_object_is_type(code, json_type_int))
        refusal->code = (long)json_object_get_int64(code);
    copy_string_member(error, "message", refusal->message, sizeof(refusal->message));
    if (json_object_object_get_ex(error, "data", &data) && json_object_is_type(data, json_type_object)) {
        copy_string_member(data, "code", refusal->name, sizeof(refusal->name));
        copy_string_member(data, "detail", refusal->detail, sizeof(refusal->detail));
        copy_string_member(data, "state", refusal->state, sizeof(refusal->state));
    }
    if (refusal->name[0] == '\0')
        snprintf(refusal->name, sizeof(refusal->name), "%ld", refusal->code);
}

static int parse_json(const char *line, size_t length, json_object **out, struct vfm_failure *failure)
{
    struct json_tokener *tokener = json_tokener_new();
    json_object *root;
    enum json_tokener_error error;
    size_t end;

    if (tokener == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory parsing a response");
    root = json_tokener_parse_ex(tokener, line, (int)length);
    error = json_tokener_get_error(tokener);
    end = json_tokener_get_parse_end(tokener);
    json_tokener_free(tokener);
    if (root == NULL || error != json_tokener_success) {
        json_object_put(root);
        return vfm_fail(failure, -EPROTO, "the response is not JSON (%s)", json_tokener_error_desc(error));
    }
    for (; end < length; end++) {
        if (strchr(" \t\r", line[end]) == NULL) {
            json_object_put(root);
            return vfm_fail(failure, -EPROTO, "the response has bytes after its JSON value");
        }
    }
    *out = root;
    return 0;
}

/* result[key] must name the frame that came: {"attachment": N}, N its length, nothing else. */
static int check_attachment_member(json_object *result, const struct vfm_rpc_sink *sink, struct vfm_failure *failure)
{
    json_object *value;
    int64_t named;

    if (!json_object_is_type(result, json_type_object) || vfm_json_object(result, sink->key, &value) != 0 ||
        json_object_object_length(value) != 1 || vfm_json_int64(value, "attachment", &named) != 0)
        return vfm_fail(failure, -EPROTO, "the result came with an attachment frame, but its %s is not "
                        "{\"attachment\": N}", sink->key);
    if (named < 0 || (uint64_t)named != sink->length)
        return vfm_fail(failure, -EPROTO, "the result's %s names an attachment of %" PRId64 " bytes, but its frame "
                        "holds %zu", sink->key, named, sink->length);
    return 0;
}

/* Interprets one response line to request `id`; `sink` is the frame that came before it, if one could. */
static int read_response(struct vfm_rpc *rpc, const char *line, size_t length, int64_t id,
                         const struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                         struct vfm_failure *failure)
{
    json_object *root = NULL;
    json_object *member;
    bool id_null = true;
    int rc = parse_json(line, length, &root, failure);

    if (rc != 0)
        return rc;
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return vfm_fail(failure, -EPROTO, "the response is not a JSON object");
    }
    if (json_object_object_get_ex(root, "id", &member) && member != NULL) {
        id_null = false;
        if (!json_object_is_type(member, json_type_int) || json_object_get_int64(member) != id) {
            /* Format first: member belongs to root. */
            rc = vfm_fail(failure, -EPROTO, "the response answers another request (id %s, expected %lld)",
                          json_object_get_string(member), (long long)id);
            json_object_put(root);
            return rc;
        }
    }
    if (json_object_object_get_ex(root, "error", &member) && json_object_is_type(member, json_type_object)) {
        read_refusal(member, refusal);
        json_object_put(root);
        if (sink != NULL && sink->received)
            return vfm_fail(failure, -EPROTO, "an error response (%s) came with an attachment frame", refusal->name);
        /* id null: the agent could not read our request (e.g. MESSAGE_TOO_LARGE) and may close; start afresh. */
        if (id_null)
            vfm_connection_close(&rpc->conn);
        return VFM_RPC_REFUSED;
    }
    if (id_null || !json_object_object_get_ex(root, "result", &member) || member == NULL) {
        json_object_put(root);
        return vfm_fail(failure, -EPROTO, "the response has neither a result nor an error");
    }
    if (sink != NULL) {
        rc = sink->received ? check_attachment_member(member, sink, failure)
                            : vfm_fail(failure, -EPROTO, "the result came without its attachment frame");
        if (rc != 0) {
            json_object_put(root);
            return rc;
        }
    }
    *result = json_object_get(member);
    json_object_put(root);
    return 0;
}

static int transport_failure(struct vfm_rpc *rpc, const char *method, int rc, struct vfm_failure *failure)
{
    /* Whatever was half-sent or half-read, the stream is out of step now: the next call starts a new one. */
    vfm_connection_close(&rpc->conn);
    if (rc == -ETIMEDOUT)
        vfm_fail_prefix(failure, "%s to %s (timeout_ms=%d)", method, rpc->address->display,
                        rpc->address->timeout_ms);
    else
        vfm_fail_prefix(failure, "%s to %s", method, rpc->address->display);
    return rc;
}

/*
 * One request and its response on the open connection, each under its own
 * timeout_ms. `sink` is used only if the connection has attachments.
 * Returns as vfm_rpc_call; a negative return has closed the connection and
 * named the method and the agent.
 */
static int exchange(struct vfm_rpc *rpc, const char *method, json_object *params, const struct vfm_rpc_blob *blob,
                    struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                    struct vfm_failure *failure)
{
    static const char NEWLINE[] = "\n";
    static const char TAIL_TEXT[] = "\"}}\n";
    int64_t id = rpc->next_id++;
    json_object *root = json_object_new_object();
    const char *text;
    size_t text_len = 0;
    uint8_t header[VFM_FRAME_HEADER_BYTES];
    struct vfm_attachment_sink frame = { 0 };
    struct iovec iov[4];
    int count = 0;
    char *line;
    size_t line_len;
    int rc;

    *result = NULL;
    if (sink != NULL) {
        sink->received = false;
        sink->length = 0;
        if (!rpc->conn.attachments)
            sink = NULL;    /* no frame may come: the result carries its data as before */
    }
    if (root == NULL) {
        json_object_put(params);
        return vfm_fail(failure, -ENOMEM, "%s: out of memory", method);
    }
    if (blob != NULL && blob->attached && (!rpc->conn.attachments || blob->length > rpc->conn.attachment_max)) {
        json_object_put(params);
        json_object_put(root);
        return vfm_fail(failure, -EINVAL, "%s: cannot attach %zu bytes on this connection", method, blob->length);
    }
    rc = build_request(root, id, method, params, blob);
    text = rc == 0 ? json_object_to_json_string_length(root, SERIALIZE_FLAGS, &text_len) : NULL;
    if (text == NULL) {
        json_object_put(root);
        return vfm_fail(failure, -ENOMEM, "%s: out of memory building the request", method);
    }
    if (blob != NULL && blob->attached) {
        /* The frame goes first: it belongs to the text that follows it. */
        vfm_frame_header(header, (uint32_t)blob->length);
        iov[count++] = (struct iovec){ .iov_base = header, .iov_len = sizeof(header) };
        iov[count++] = (struct iovec){ .iov_base = (void *)blob->bytes, .iov_len = blob->length };
        iov[count++] = (struct iovec){ .iov_base = (void *)text, .iov_len = text_len };
        iov[count++] = (struct iovec){ .iov_base = (void *)NEWLINE, .iov_len = sizeof(NEWLINE) - 1 };
    } else if (blob != NULL) {
        char suffix[80];
        int suffix_len = snprintf(suffix, sizeof(suffix), "\"%s\":\"\"}}", blob->key);

        /* The split below relies on the empty blob member being the very last thing serialized. */
        if (suffix_len < 0 || (size_t)suffix_len >= sizeof(suffix) || text_len < (size_t)suffix_len ||
            memcmp(text + text_len - (size_t)suffix_len, suffix, (size_t)suffix_len) != 0) {
            json_object_put(root);
            return vfm_fail(failure, -EINVAL, "%s: cannot place the %s payload in the request", method, blob->key);
        }
        iov[count++] = (struct iovec){ .iov_base = (void *)text, .iov_len = text_len - 3 };  /* ... "KEY":"  */
        iov[count++] = (struct iovec){ .iov_base = (void *)blob->bytes, .iov_len = blob->length };
        iov[count++] = (struct iovec){ .iov_base = (void *)TAIL_TEXT, .iov_len = sizeof(TAIL_TEXT) - 1 };
    } else {
        iov[count++] = (struct iovec){ .iov_base = (void *)text, .iov_len = text_len };
        iov[count++] = (struct iovec){ .iov_base = (void *)NEWLINE, .iov_len = sizeof(NEWLINE) - 1 };
    }

    rc = vfm_connection_send(&rpc->conn, iov, count, vfm_deadline_after_ms(rpc->address->timeout_ms), failure);
    json_object_put(root);
    if (rc != 0)
        return transport_failure(rpc, method, rc, failure);
    if (sink != NULL)
        frame = (struct vfm_attachment_sink){ .buffer = sink->buffer, .capacity = sink->capacity };
    rc = vfm_connection_receive(&rpc->conn, vfm_deadline_after_ms(rpc->address->timeout_ms),
                                sink != NULL ? &frame : NULL, &line, &line_len, failure);
    if (rc != 0)
        return transport_failure(rpc, method, rc, failure);
    if (sink != NULL) {
        sink->received = frame.received;
        sink->length = frame.length;
    }
    rc = read_response(rpc, line, line_len, id, sink, result, refusal, failure);
    if (rc < 0) {
        if (sink != NULL)
            sink->received = false;   /* whatever landed in the buffer is not a result */
        return transport_failure(rpc, method, rc, failure);
    }
    return rc;
}

/* The frame format this plugin reads and writes (rpc.enableAttachments' version). */
#define ATTACHMENT_VERSION 1

/*
 * rpc.enableAttachments on a connection just opened. Until its reply has
 * been read no frame may be sent, and since every call here waits for its
 * reply, none is. The agent's maxBytes bounds the frames we send; the
 * frames it sends are bounded by what each call asks for.
 */
static int agree_on_attachments(struct vfm_rpc *rpc, struct vfm_failure *failure)
{
    static const char METHOD[] = "rpc.enableAttachments";
    json_object *params = json_object_new_object();
    json_object *result = NULL;
    struct vfm_refusal refusal;
    int64_t version;
    int64_t max_bytes;
    int rc;

    if (params == NULL)
        return vfm_fail(failure, -ENOMEM, "%s: out of memory", METHOD);
    rc = exchange(rpc, METHOD, params, NULL, NULL, &result, &refusal, failure);
    /* (An error with a null id has closed the connection: then there is nothing to go on with.) */
    /* JSON-RPC's "method not found" is what an agent without attachments answers. */
    if (rc == VFM_RPC_REFUSED && refusal.code == VFM_AGENT_CODE_METHOD_NOT_FOUND && vfm_connection_is_open(&rpc->conn))
        return 0;   /* an agent from before attachments: base64 on this connection, as always */
    if (rc == VFM_RPC_REFUSED) {
        vfm_connection_close(&rpc->conn);
        return vfm_fail(failure, -EPROTO, "%s to %s refused: %s (%s); attachments=off in the plugin argument does "
                        "without", METHOD, rpc->address->display, refusal.name,
                        refusal.detail[0] != '\0' ? refusal.detail : refusal.message);
    }
    if (rc != 0)
        return rc;
    /* Enabled or not, the agent now frames every vf.save result: a reply we cannot follow ends the connection. */
    if (vfm_json_int64(result, "version", &version) != 0 || vfm_json_int64(result, "maxBytes", &max_bytes) != 0 ||
        max_bytes < 1) {
        rc = vfm_fail(failure, -EPROTO, "the result lacks a version or a positive maxBytes");
    } else if (version != ATTACHMENT_VERSION) {
        rc = vfm_fail(failure, -EPROTONOSUPPORT, "attachment version %" PRId64 " (this plugin speaks %d)", version,
                      ATTACHMENT_VERSION);
    } else {
        rpc->conn.attachments = true;
        rpc->conn.attachment_max = max_bytes > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)max_bytes;
    }
    json_object_put(result);
    if (rc != 0)
        return transport_failure(rpc, METHOD, rc, failure);
    return 0;
}

/* Opens the connection (one timeout_ms) and, unless attachments=off, agrees on attachments (one more call). */
static int open_connection(struct vfm_rpc *rpc, struct vfm_failure *failure)
{
    int rc = vfm_connection_open(&rpc->conn, vfm_deadline_after_ms(rpc->address->timeout_ms), failure);

    if (rc != 0) {
        vfm_fail_prefix(failure, "agent unreachable at %s", rpc->address->display);
        return rc;
    }
    return rpc->address->attachments ? agree_on_attachments(rpc, failure) : 0;
}

int vfm_rpc_open(struct vfm_rpc *rpc, struct vfm_failure *failure)
{
    /*
     * An agent restarted since the last call closed the old connection: a call
     * sent on it would be lost with it, so it goes on a new one. Sessions
     * belong to the principal, not the connection, and a restarted agent
     * with a journal still knows ours.
     */
    if (vfm_connection_is_open(&rpc->conn) && vfm_connection_peer_gone(&rpc->conn))
        vfm_connection_close(&rpc->conn);
    return vfm_connection_is_open(&rpc->conn) ? 0 : open_connection(rpc, failure);
}

int vfm_rpc_call(struct vfm_rpc *rpc, const char *method, json_object *params, const struct vfm_rpc_blob *blob,
                 struct vfm_rpc_sink *sink, json_object **result, struct vfm_refusal *refusal,
                 struct vfm_failure *failure)
{
    int rc = vfm_rpc_open(rpc, failure);

    *result = NULL;
    if (rc != 0) {
        json_object_put(params);
        vfm_fail_prefix(failure, "%s", method);
        return rc;
    }
    return exchange(rpc, method, params, blob, sink, result, refusal, failure);
}
