/* JSON-RPC 2.0 client calls; see rpc-client.h. */
#include "rpc-client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json-fields.h"

#define SERIALIZE_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

void vfm_rpc_init(struct vfm_rpc *rpc, const struct vfm_address *address)
{
    vfm_connection_init(&rpc->conn, address);
    rpc->address = address;
    rpc->next_id = 1;
}

void vfm_rpc_destroy(struct vfm_rpc *rpc)
{
    vfm_connection_destroy(&rpc->conn);
}

int vfm_rpc_connect(struct vfm_rpc *rpc, struct vfm_failure *failure)
{
    /* A bad credential file is a configuration fault, not an unreachable agent: its reason stands alone. */
    int rc = vfm_connection_prepare(&rpc->conn, failure);

    if (rc != 0)
        return rc;
    rc = vfm_connection_open(&rpc->conn, vfm_deadline_after_ms(rpc->address->timeout_ms), failure);
    if (rc != 0)
        vfm_fail_prefix(failure, "agent unreachable at %s", rpc->address->display);
    return rc;
}

/*
 * Builds {"jsonrpc":"2.0","id":N,"method":M,"params":{...}} with params last
 * (json-c serializes members in insertion order). With a blob, params ends
 * in `"KEY":""`, and the text is split just inside that empty string so the
 * blob can be sent between the two halves without being copied into JSON.
 */
static int build_request(json_object *root, int64_t id, const char *method, json_object *params,
                         const char *blob_key)
{
    if (vfm_json_add(root, "jsonrpc", json_object_new_string("2.0")) != 0 ||
        vfm_json_add(root, "id", json_object_new_int64(id)) != 0 ||
        vfm_json_add(root, "method", json_object_new_string(method)) != 0) {
        json_object_put(params);
        return -ENOMEM;
    }
    if (blob_key != NULL && params == NULL && (params = json_object_new_object()) == NULL)
        return -ENOMEM;
    /* vfm_json_add releases the empty string if it fails; params is still ours then. */
    if (blob_key != NULL && vfm_json_add(params, blob_key, json_object_new_string("")) != 0) {
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

/* Interprets one response line to request `id`. */
static int read_response(struct vfm_rpc *rpc, const char *line, size_t length, int64_t id, json_object **result,
                         struct vfm_refusal *refusal, struct vfm_failure *failure)
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
        /* id null: the agent could not read our request (e.g. MESSAGE_TOO_LARGE) and may close; start afresh. */
        if (id_null)
            vfm_connection_close(&rpc->conn);
        return VFM_RPC_REFUSED;
    }
    if (id_null || !json_object_object_get_ex(root, "result", &member) || member == NULL) {
        json_object_put(root);
        return vfm_fail(failure, -EPROTO, "the response has neither a result nor an error");
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

int vfm_rpc_call(struct vfm_rpc *rpc, const char *method, json_object *params, const char *blob_key,
                 const char *blob, size_t blob_len, json_object **result, struct vfm_refusal *refusal,
                 struct vfm_failure *failure)
{
    static const char TAIL_PLAIN[] = "\n";
    static const char TAIL_BLOB[] = "\"}}\n";
    int64_t id = rpc->next_id++;
    json_object *root = json_object_new_object();
    const char *text;
    size_t text_len = 0;
    struct iovec iov[3];
    int count;
    char *line;
    size_t line_len;
    int rc;

    *result = NULL;
    if (root == NULL) {
        json_object_put(params);
        return vfm_fail(failure, -ENOMEM, "%s: out of memory", method);
    }
    rc = build_request(root, id, method, params, blob_key);
    text = rc == 0 ? json_object_to_json_string_length(root, SERIALIZE_FLAGS, &text_len) : NULL;
    if (text == NULL) {
        json_object_put(root);
        return vfm_fail(failure, -ENOMEM, "%s: out of memory building the request", method);
    }
    if (blob_key != NULL) {
        char suffix[80];
        int suffix_len = snprintf(suffix, sizeof(suffix), "\"%s\":\"\"}}", blob_key);

        /* The split below relies on the empty blob member being the very last thing serialized. */
        if (suffix_len < 0 || (size_t)suffix_len >= sizeof(suffix) || text_len < (size_t)suffix_len ||
            memcmp(text + text_len - (size_t)suffix_len, suffix, (size_t)suffix_len) != 0) {
            json_object_put(root);
            return vfm_fail(failure, -EINVAL, "%s: cannot place the %s payload in the request", method, blob_key);
        }
        iov[0] = (struct iovec){ .iov_base = (void *)text, .iov_len = text_len - 3 };  /* ... "KEY":"  */
        iov[1] = (struct iovec){ .iov_base = (void *)blob, .iov_len = blob_len };
        iov[2] = (struct iovec){ .iov_base = (void *)TAIL_BLOB, .iov_len = sizeof(TAIL_BLOB) - 1 };
        count = 3;
    } else {
        iov[0] = (struct iovec){ .iov_base = (void *)text, .iov_len = text_len };
        iov[1] = (struct iovec){ .iov_base = (void *)TAIL_PLAIN, .iov_len = sizeof(TAIL_PLAIN) - 1 };
        count = 2;
    }

    if (!vfm_connection_is_open(&rpc->conn)) {
        rc = vfm_connection_open(&rpc->conn, vfm_deadline_after_ms(rpc->address->timeout_ms), failure);
        if (rc != 0) {
            json_object_put(root);
            vfm_fail_prefix(failure, "%s: agent unreachable at %s", method, rpc->address->display);
            return rc;
        }
    }
    rc = vfm_connection_send(&rpc->conn, iov, count, vfm_deadline_after_ms(rpc->address->timeout_ms), failure);
    json_object_put(root);
    if (rc != 0)
        return transport_failure(rpc, method, rc, failure);
    rc = vfm_connection_receive_line(&rpc->conn, vfm_deadline_after_ms(rpc->address->timeout_ms), &line, &line_len,
                                     failure);
    if (rc != 0)
        return transport_failure(rpc, method, rc, failure);
    rc = read_response(rpc, line, line_len, id, result, refusal, failure);
    if (rc < 0)
        return transport_failure(rpc, method, rc, failure);
    return rc;
}
