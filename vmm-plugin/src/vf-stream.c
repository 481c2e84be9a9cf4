/*
 * A VF's state stream: how much is left to save (update_pending), reading it
 * out in exact amounts (save) and writing it in (load). On a connection with
 * attachments the bytes travel raw in a frame beside the JSON: a save's
 * frame is received straight into QEMU's buffer, a load's is sent from it.
 * Otherwise they travel as base64 in the JSON, and the decoded bytes go
 * straight into QEMU's buffer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json-fields.h"
#include "vf-device.h"

int vfm_device_pending(struct vfm_device *device, uint64_t *bytes, struct vfm_failure *failure)
{
    json_object *params = vfm_json_vf_params(device->vf);
    json_object *result = NULL;
    struct vfm_refusal refusal;
    bool stream_open;
    int64_t pending;
    int rc;

    if (params == NULL)
        return vfm_fail(failure, -ENOMEM, "update_pending: out of memory");
    rc = vfm_device_call(device, "vf.pending", params, NULL, NULL, &result, &refusal, failure);
    if (rc == VFM_RPC_REFUSED)
        return vfm_device_refused(device, "update_pending: vf.pending", &refusal, failure);
    if (rc != 0) {
        vfm_fail_prefix(failure, "update_pending");
        return rc;
    }
    if (vfm_json_bool(result, "streamOpen", &stream_open) != 0 || vfm_json_int64(result, "pendingBytes", &pending) != 0 ||
        pending < 0) {
        rc = vfm_fail(failure, -EPROTO, "update_pending: vf.pending result lacks streamOpen or pendingBytes");
    } else {
        /*
         * Only an open save stream has bytes save() can return; a VF running
         * without pre-copy has none yet, whatever its state would weigh.
         */
        *bytes = stream_open ? (uint64_t)pending : 0;
    }
    json_object_put(result);
    return rc;
}

/* Names our session in a slice's params, once we know it. */
static int add_session(const struct vfm_device *device, json_object *params)
{
    return device->session[0] == '\0' ? 0 : vfm_json_add(params, "session", json_object_new_string(device->session));
}

/* The session a slice's result names: learnt from the first slice, the same one from then on. */
static int check_session(struct vfm_device *device, json_object *result, const char *what, struct vfm_failure *failure)
{
    const char *session;
    size_t length;

    if (vfm_json_string(result, "session", &session, &length) != 0 || length == 0 || length >= sizeof(device->session))
        return vfm_fail(failure, -EPROTO, "%s: the result names no session the plugin can keep", what);
    if (device->session[0] == '\0') {
        memcpy(device->session, session, length + 1);
        return 0;
    }
    if (strcmp(device->session, session) != 0)
        return vfm_fail(failure, -EPROTO, "%s: the agent answered for session %s, not ours (%s)", what, session,
                        device->session);
    return 0;
}

/*
 * One vf.save call for at most `want` bytes at save_offset, into buffer;
 * *got and *eof say what came back. Whichever way the bytes came, at most
 * `want` of them are written to buffer: a frame's length is checked before
 * it is read. The offset goes with every call: an agent restarted in the
 * middle of the save reopens the stream under the same session from its
 * start, and without it would hand out the bytes QEMU already has.
 */
static int save_slice(struct vfm_device *device, uint8_t *buffer, uint64_t want, uint64_t *got, bool *eof,
                      struct vfm_failure *failure)
{
    json_object *params;
    json_object *result = NULL;
    struct vfm_refusal refusal;
    struct vfm_rpc_sink sink = { .key = "data", .buffer = buffer };
    uint32_t max_bytes = 0;
    const char *data;
    size_t data_len;
    int64_t length;
    int64_t offset;
    int rc = vfm_rpc_open(&device->rpc, failure);

    if (rc != 0) {
        vfm_fail_prefix(failure, "save: vf.save");
        return rc;
    }
    /* Ask for no more than the agent could frame; the loop in vfm_device_save asks again for the rest. */
    if (vfm_rpc_attachments(&device->rpc, &max_bytes) && want > max_bytes)
        want = max_bytes;
    sink.capacity = (size_t)want;
    params = vfm_json_vf_params(device->vf);
    if (params == NULL || vfm_json_add(params, "maxBytes", json_object_new_int64((int64_t)want)) != 0 ||
        vfm_json_add(params, "offset", json_object_new_int64((int64_t)device->save_offset)) != 0 ||
        add_session(device, params) != 0) {
        json_object_put(params);
        return vfm_fail(failure, -ENOMEM, "save: out of memory");
    }
    rc = vfm_device_call(device, "vf.save", params, NULL, &sink, &result, &refusal, failure);
    if (rc == VFM_RPC_REFUSED)
        return vfm_device_refused(device, "save: vf.save", &refusal, failure);
    if (rc != 0) {
        vfm_fail_prefix(failure, "save");
        return rc;
    }
    if (vfm_json_int64(result, "length", &length) != 0 || vfm_json_bool(result, "eof", eof) != 0 ||
        vfm_json_int64(result, "offset", &offset) != 0 ||
        (!sink.received && vfm_json_string(result, "data", &data, &data_len) != 0)) {
        rc = vfm_fail(failure, -EPROTO, "save: vf.save result lacks data, offset, length or eof");
    } else if (offset < 0 || (uint64_t)offset != device->save_offset) {
        rc = vfm_fail(failure, -EPROTO, "save: vf.save returned the slice at offset %" PRId64 ", not the %" PRIu64
                      " asked for", offset, device->save_offset);
    } else if (length < 0 || (uint64_t)length > want) {
        rc = vfm_fail(failure, -EPROTO, "save: vf.save returned %" PRId64 " bytes, more than the %" PRIu64 " asked for",
                      length, want);
    } else if (sink.received && (uint64_t)length != sink.length) {
        rc = vfm_fail(failure, -EPROTO, "save: vf.save says %" PRId64 " bytes, but its attachment frame holds %zu",
                      length, sink.length);
    } else if (!sink.received && vfm_base64_decode_exact(data, data_len, buffer, (size_t)length) != 0) {
        rc = vfm_fail(failure, -EPROTO, "save: vf.save data is not the base64 of %" PRId64 " bytes", length);
    } else if ((rc = check_session(device, result, "save: vf.save", failure)) == 0) {
        *got = (uint64_t)length;
        device->save_offset += (uint64_t)length;
    }
    json_object_put(result);
    if (rc != 0) {
        /* The agent has moved its stream on by a slice we could not take: this connection is no use to the save. */
        vfm_rpc_close(&device->rpc);
    }
    return rc;
}

int vfm_device_save(struct vfm_device *device, uint8_t *buffer, uint64_t length, struct vfm_failure *failure)
{
    uint64_t done = 0;

    /* QEMU wants exactly `length` bytes; the agent may hand out less per call, so ask until it is all here. */
    while (done < length) {
        uint64_t want = length - done < VFM_MAX_SLICE_BYTES ? length - done : VFM_MAX_SLICE_BYTES;
        uint64_t got = 0;
        bool eof = false;
        int rc = save_slice(device, buffer + done, want, &got, &eof, failure);

        if (rc != 0)
            return rc;
        done += got;
        if (done < length && (eof || got == 0))
            return vfm_fail(failure, -EIO, "save: the state stream ended after %" PRIu64 " of the %" PRIu64
                            " bytes asked for", done, length);
    }
    return 0;
}

/* Makes the scratch buffer hold at least `size` bytes. */
static int reserve_scratch(struct vfm_device *device, size_t size)
{
    char *bigger;

    if (device->scratch_capacity >= size)
        return 0;
    bigger = realloc(device->scratch, size);
    if (bigger == NULL)
        return -ENOMEM;
    device->scratch = bigger;
    device->scratch_capacity = size;
    return 0;
}

/*
 * One vf.load call with the first *length bytes of buffer (or fewer: as
 * many as the agent takes in one frame) at the running offset; *length
 * becomes what was sent.
 */
static int load_slice(struct vfm_device *device, const uint8_t *buffer, size_t *length, struct vfm_failure *failure)
{
    json_object *params;
    json_object *result = NULL;
    struct vfm_refusal refusal;
    struct vfm_rpc_blob blob = { .key = "data" };
    uint32_t max_bytes = 0;
    char what[80];
    int rc = vfm_rpc_open(&device->rpc, failure);

    if (rc != 0) {
        vfm_fail_prefix(failure, "load: vf.load");
        return rc;
    }
    if (vfm_rpc_attachments(&device->rpc, &max_bytes)) {
        /* Sent as it is from QEMU's buffer: no copy, no encoding. */
        if (*length > max_bytes)
            *length = max_bytes;
        blob.bytes = buffer;
        blob.length = *length;
        blob.attached = true;
    } else {
        if (reserve_scratch(device, vfm_base64_encoded_length(*length) + 1) != 0)
            return vfm_fail(failure, -ENOMEM, "load: out of memory for a %zu-byte slice", *length);
        blob.bytes = device->scratch;
        blob.length = vfm_base64_encode(buffer, *length, device->scratch);
    }
    params = vfm_json_vf_params(device->vf);
    if (params == NULL || vfm_json_add(params, "offset", json_object_new_int64((int64_t)device->load_offset)) != 0 ||
        add_session(device, params) != 0) {
        json_object_put(params);
        return vfm_fail(failure, -ENOMEM, "load: out of memory");
    }
    rc = vfm_device_call(device, "vf.load", params, &blob, NULL, &result, &refusal, failure);
    if (rc == VFM_RPC_REFUSED) {
        snprintf(what, sizeof(what), "load: vf.load at offset %" PRIu64, device->load_offset);
        return vfm_device_refused(device, what, &refusal, failure);
    }
    if (rc != 0) {
        vfm_fail_prefix(failure, "load");
        return rc;
    }
    rc = check_session(device, result, "load: vf.load", failure);
    json_object_put(result);
    if (rc != 0)
        return rc;
    device->load_offset += *length;
    return 0;
}

int vfm_device_load(struct vfm_device *device, const uint8_t *buffer, uint64_t length, struct vfm_failure *failure)
{
    uint64_t done = 0;

    /* QEMU sends at most 1 MiB at a time, but nothing in the ABI says so: split anything larger. */
    while (done < length) {
        size_t slice = length - done < VFM_MAX_SLICE_BYTES ? (size_t)(length - done) : VFM_MAX_SLICE_BYTES;
        int rc = load_slice(device, buffer + done, &slice, failure);

        if (rc != 0)
            return rc;
        done += slice;
    }
    return 0;
}
