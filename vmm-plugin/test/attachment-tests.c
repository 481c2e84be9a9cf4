/*
 * Unit tests of attachment frames, run by unit-tests.c: the header reader
 * on its own, the connection's receive against a scripted agent
 * (fake-transport.h) with the agent's bytes split at every boundary, and
 * the RPC layer's checks and negotiation. What a hostile or broken agent
 * may try is covered here: a length over the limit, a frame cut short, a
 * frame where none belongs or a second one, a JSON text whose attachment
 * disagrees with its frame, an error that comes with a frame.
 */
#include "attachment-tests.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attachment-frame.h"
#include "connection.h"
#include "fake-transport.h"
#include "rpc-client.h"

#include "check.h"

/* Like CHECK, with the context of a loop (which split failed) printed once. */
#define CHECK_AT(cond, at)                                                                            \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed at %s: %s\n", __FILE__, __LINE__, (at), #cond);      \
            (*failures)++;                                                                            \
        }                                                                                             \
    } while (0)

#define GUARD 0xA5
#define GUARD_BYTES 16

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 131 + 7);
}

/* A growable byte string for scripts. */
struct bytes {
    uint8_t *data;
    size_t len;
};

static void append(struct bytes *b, const void *data, size_t len)
{
    uint8_t *bigger = realloc(b->data, b->len + len);

    if (bigger == NULL)
        abort();
    b->data = bigger;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void append_text(struct bytes *b, const char *text)
{
    append(b, text, strlen(text));
}

static void append_frame(struct bytes *b, uint32_t length, size_t actual)
{
    uint8_t header[VFM_FRAME_HEADER_BYTES];

    vfm_frame_header(header, length);
    append(b, header, sizeof(header));
    for (size_t i = 0; i < actual; i++) {
        uint8_t byte = pattern(i);

        append(b, &byte, 1);
    }
}

/* ---- the header reader ---- */

static void reader_header_split_everywhere(int *failures)
{
    static const uint8_t message[] = { ' ', '\r', '\n', '\t', 0x00, 0x81, 0x02, 0x03, 0xFF, 'x', 'y' };
    const size_t header_end = 9;   /* whitespace and header; "xy" is the frame's data, not the reader's */

    for (size_t cut = 0; cut <= sizeof(message); cut++) {
        struct vfm_frame_reader reader;
        size_t used = 0;
        size_t at = 0;
        enum vfm_frame_status status;
        char where[32];

        snprintf(where, sizeof(where), "cut %zu", cut);
        vfm_frame_reader_init(&reader);
        status = vfm_frame_reader_feed(&reader, message, cut, &used);
        if (cut < header_end) {
            CHECK_AT(status == VFM_FRAME_MORE && used == cut, where);
            at = used;
            status = vfm_frame_reader_feed(&reader, message + at, sizeof(message) - at, &used);
        }
        at += used;
        CHECK_AT(status == VFM_FRAME_HEADER, where);
        CHECK_AT(at == header_end, where);
        CHECK_AT(reader.length == 0x810203FFu, where);
    }
    /* One byte at a time. */
    {
        struct vfm_frame_reader reader;
        enum vfm_frame_status status = VFM_FRAME_MORE;
        size_t i = 0;
        size_t used;

        vfm_frame_reader_init(&reader);
        while (status == VFM_FRAME_MORE && i < sizeof(message)) {
            status = vfm_frame_reader_feed(&reader, message + i, 1, &used);
            i += used;
        }
        CHECK(status == VFM_FRAME_HEADER && i == header_end && reader.length == 0x810203FFu);
    }
}

static void reader_text_and_limits(int *failures)
{
    struct vfm_frame_reader reader;
    uint8_t header[VFM_FRAME_HEADER_BYTES];
    size_t used = 99;

    vfm_frame_reader_init(&reader);
    CHECK(vfm_frame_reader_feed(&reader, (const uint8_t *)"{\"id\":1}", 8, &used) == VFM_FRAME_TEXT && used == 0);
    vfm_frame_reader_init(&reader);
    CHECK(vfm_frame_reader_feed(&reader, (const uint8_t *)" \n {", 4, &used) == VFM_FRAME_TEXT && used == 3);
    vfm_frame_reader_init(&reader);
    CHECK(vfm_frame_reader_feed(&reader, (const uint8_t *)" \r\n", 3, &used) == VFM_FRAME_MORE && used == 3);
    CHECK(vfm_frame_reader_feed(&reader, (const uint8_t *)"", 0, &used) == VFM_FRAME_MORE && used == 0);
    /* The largest length a header can say is read as it is, without overflow (the limit is the caller's). */
    vfm_frame_header(header, UINT32_MAX);
    CHECK(header[0] == 0 && header[1] == 0xFF && header[4] == 0xFF);
    vfm_frame_reader_init(&reader);
    CHECK(vfm_frame_reader_feed(&reader, header, sizeof(header), &used) == VFM_FRAME_HEADER && used == 5 &&
          reader.length == UINT32_MAX);
    vfm_frame_header(header, 0);
    vfm_frame_reader_init(&reader);
    CHECK(vfm_frame_reader_feed(&reader, header, sizeof(header), &used) == VFM_FRAME_HEADER && reader.length == 0);
}

/* ---- the connection's receive, against a scripted agent ---- */

struct rig {
    struct vfm_address address;
    struct vfm_connection conn;
    struct fake_transport fake;
};

/* A connection "open" on /dev/null (poll says ready at once) with the fake as its transport. */
static int rig_open(struct rig *rig)
{
    struct vfm_failure failure;

    if (vfm_address_parse("unix:/nonexistent", &rig->address, &failure) != 0)
        return -1;
    fake_transport_init(&rig->fake);
    vfm_connection_init(&rig->conn, &rig->address);
    rig->conn.transport = &rig->fake.base;
    rig->conn.fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    return rig->conn.fd >= 0 ? 0 : -1;
}

static void rig_reopen(struct rig *rig)
{
    if (rig->conn.fd < 0)
        rig->conn.fd = open("/dev/null", O_RDWR | O_CLOEXEC);
}

static void rig_close(struct rig *rig)
{
    vfm_connection_destroy(&rig->conn);
    fake_transport_free(&rig->fake);
}

static bool payload_ok(const uint8_t *buffer, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buffer[i] != pattern(i))
            return false;
    }
    return true;
}

static bool guard_ok(const uint8_t *guard)
{
    for (size_t i = 0; i < GUARD_BYTES; i++) {
        if (guard[i] != GUARD)
            return false;
    }
    return true;
}

#define LINE "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"data\":{\"attachment\":300}}}"

/* Frame, whitespace, its text, then a plain line: split once at every byte, and delivered a byte at a time. */
static void receive_split_everywhere(int *failures)
{
    enum { N = 300 };
    struct bytes script = { 0 };
    uint8_t sink_memory[N + GUARD_BYTES];
    struct rig rig;

    append_text(&script, "\n");
    append_frame(&script, N, N);
    append_text(&script, " \r\n" LINE "\n" "{\"id\":4}\n");
    CHECK(rig_open(&rig) == 0);
    for (size_t cut = 0; cut <= script.len + 1; cut++) {
        struct vfm_attachment_sink sink = { .buffer = sink_memory, .capacity = N };
        struct vfm_failure failure;
        char *line = NULL;
        size_t length = 0;
        char where[48];
        bool at_a_time = cut == script.len + 1;
        int rc;

        snprintf(where, sizeof(where), at_a_time ? "a byte at a time" : "cut %zu", cut);
        memset(sink_memory, GUARD, sizeof(sink_memory));
        rig_reopen(&rig);
        fake_transport_script(&rig.fake, script.data, script.len);
        if (at_a_time)
            rig.fake.byte_at_a_time = true;
        else
            rig.fake.cuts[rig.fake.cut_count++] = cut;
        rig.fake.wait_first = cut % 3 == 0;   /* and now and then the transport says "would block" first */
        rig.fake.watch = sink_memory;
        rig.fake.watch_len = sizeof(sink_memory);
        rc = vfm_connection_receive(&rig.conn, vfm_deadline_after_ms(2000), &sink, &line, &length, &failure);
        CHECK_AT(rc == 0, where);
        if (rc != 0) {
            fprintf(stderr, "  %s\n", failure.text);
            continue;
        }
        CHECK_AT(sink.received && sink.length == N, where);
        CHECK_AT(payload_ok(sink_memory, N), where);
        CHECK_AT(guard_ok(sink_memory + N), where);
        CHECK_AT(length == strlen(LINE) && memcmp(line, LINE, length) == 0, where);
        if (at_a_time)
            CHECK_AT(rig.fake.received_into_watch == N, where);   /* none of it went through the line buffer */
        /* The next text, already buffered or not, with no frame. */
        rc = vfm_connection_receive(&rig.conn, vfm_deadline_after_ms(2000), &sink, &line, &length, &failure);
        CHECK_AT(rc == 0 && !sink.received && length == 8 && memcmp(line, "{\"id\":4}", 8) == 0, where);
        vfm_connection_close(&rig.conn);
    }
    rig_close(&rig);
    free(script.data);
}

/* Runs one receive of `script` with a sink of `capacity` (or none); returns its rc and leaves the reason. */
static int receive_once(struct rig *rig, const struct bytes *script, size_t capacity, bool with_sink,
                        uint8_t *sink_memory, struct vfm_attachment_sink *sink, struct vfm_failure *failure)
{
    char *line;
    size_t length;

    memset(sink_memory, GUARD, capacity + GUARD_BYTES);
    *sink = (struct vfm_attachment_sink){ .buffer = sink_memory, .capacity = capacity };
    rig_reopen(rig);
    fake_transport_script(&rig->fake, script->data, script->len);
    rig->fake.watch = sink_memory;
    rig->fake.watch_len = capacity + GUARD_BYTES;
    return vfm_connection_receive(&rig->conn, vfm_deadline_after_ms(2000), with_sink ? sink : NULL, &line, &length,
                                  failure);
}

static void receive_refusals(int *failures)
{
    enum { CAP = 64 };
    uint8_t sink_memory[CAP + 1 + GUARD_BYTES];
    struct vfm_attachment_sink sink;
    struct vfm_failure failure;
    struct rig rig;

    CHECK(rig_open(&rig) == 0);
    /* Over the limit, by one byte and by everything a header can say: refused before a byte of it is read. */
    {
        static const uint32_t over[] = { CAP + 1, UINT32_MAX };

        for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
            struct bytes script = { 0 };

            append_frame(&script, over[i], CAP + 1);
            append_text(&script, LINE "\n");
            CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == -EPROTO);
            CHECK(strstr(failure.text, "more than the 64 asked for") != NULL);
            CHECK(!sink.received && guard_ok(sink_memory) && rig.fake.received_into_watch == 0);
            CHECK(!vfm_connection_is_open(&rig.conn));
            free(script.data);
        }
    }
    /* Cut in the middle of the frame's bytes, and inside its header. */
    {
        struct bytes script = { 0 };

        append_frame(&script, CAP, CAP / 2);
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == -ECONNRESET);
        CHECK(strstr(failure.text, "in the middle of an attachment frame (32 of its 64 bytes came)") != NULL);
        CHECK(!sink.received && !vfm_connection_is_open(&rig.conn));
        script.len = 3;
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == -ECONNRESET);
        CHECK(strstr(failure.text, "inside an attachment frame's header") != NULL);
        /* Whole, but the stream ends before its text. */
        script.len = 0;
        append_frame(&script, CAP, CAP);
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == -ECONNRESET);
        CHECK(strstr(failure.text, "connection closed by the agent") != NULL);
        free(script.data);
    }
    /* A frame where none is expected (no sink: any response but vf.save's), and a second frame before one text. */
    {
        struct bytes script = { 0 };

        append_frame(&script, 4, 4);
        append_text(&script, LINE "\n");
        CHECK(receive_once(&rig, &script, CAP, false, sink_memory, &sink, &failure) == -EPROTO);
        CHECK(strstr(failure.text, "attachment frame (4 bytes) before a response that takes none") != NULL);
        CHECK(rig.fake.received_into_watch == 0 && guard_ok(sink_memory) && !vfm_connection_is_open(&rig.conn));
        script.len = 0;
        append_frame(&script, 4, 4);
        append_text(&script, "\n");
        append_frame(&script, 4, 4);
        append_text(&script, LINE "\n");
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == -EPROTO);
        CHECK(strstr(failure.text, "second attachment frame") != NULL && !vfm_connection_is_open(&rig.conn));
        free(script.data);
    }
    /* The boundaries that are fine: an empty frame, a frame exactly the capacity, a sink with no frame. */
    {
        struct bytes script = { 0 };

        append_frame(&script, 0, 0);
        append_text(&script, LINE "\n");
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == 0 && sink.received &&
              sink.length == 0 && guard_ok(sink_memory));
        script.len = 0;
        append_frame(&script, CAP, CAP);
        append_text(&script, LINE "\n");
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == 0 && sink.received &&
              sink.length == CAP && payload_ok(sink_memory, CAP) && guard_ok(sink_memory + CAP));
        script.len = 0;
        append_text(&script, LINE "\n");
        CHECK(receive_once(&rig, &script, CAP, true, sink_memory, &sink, &failure) == 0 && !sink.received);
        free(script.data);
    }
    rig_close(&rig);
}

/* ---- the RPC layer ---- */

struct rpc_rig {
    struct vfm_address address;
    struct vfm_rpc rpc;
    struct fake_transport fake;
};

/* An rpc whose connection goes to the listener and then talks to the fake; `options` e.g. ",attachments=off". */
static int rpc_rig_init(struct rpc_rig *rig, const struct fake_listener *l, const char *options)
{
    struct vfm_failure failure;
    char arg[160];

    snprintf(arg, sizeof(arg), "unix:%s%s", l->path, options);
    if (vfm_address_parse(arg, &rig->address, &failure) != 0)
        return -1;
    fake_transport_init(&rig->fake);
    vfm_rpc_init(&rig->rpc, &rig->address);
    rig->rpc.conn.transport = &rig->fake.base;   /* prepare then keeps it */
    return 0;
}

static void rpc_rig_destroy(struct rpc_rig *rig)
{
    vfm_rpc_destroy(&rig->rpc);
    fake_transport_free(&rig->fake);
}

static const char ENABLED[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":1,\"maxBytes\":1000}}\n";

static bool sent_text_contains(const struct fake_transport *fake, const char *text)
{
    return memmem(fake->sent, fake->sent_len, text, strlen(text)) != NULL;
}

static void negotiation(int *failures, const struct fake_listener *l)
{
    struct rpc_rig rig;
    struct vfm_failure failure;
    uint32_t max = 0;

    /* An agent with attachments. */
    CHECK(rpc_rig_init(&rig, l, "") == 0);
    fake_transport_script(&rig.fake, ENABLED, strlen(ENABLED));
    CHECK(vfm_rpc_connect(&rig.rpc, &failure) == 0);
    CHECK(vfm_rpc_attachments(&rig.rpc, &max) && max == 1000);
    CHECK(rig.fake.sent_len > 0 && rig.fake.sent[rig.fake.sent_len - 1] == '\n' &&
          sent_text_contains(&rig.fake, "\"method\":\"rpc.enableAttachments\",\"params\":{}"));
    /* The agreement dies with the connection. */
    vfm_rpc_close(&rig.rpc);
    CHECK(!vfm_rpc_attachments(&rig.rpc, &max) && max == 0);
    rpc_rig_destroy(&rig);

    /* An agent from before attachments: method not found, and the connection goes on in base64. */
    {
        static const char OLD[] =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n";

        CHECK(rpc_rig_init(&rig, l, "") == 0);
        fake_transport_script(&rig.fake, OLD, strlen(OLD));
        CHECK(vfm_rpc_connect(&rig.rpc, &failure) == 0);
        CHECK(vfm_connection_is_open(&rig.rpc.conn) && !vfm_rpc_attachments(&rig.rpc, NULL));
        rpc_rig_destroy(&rig);
    }
    /* attachments=off: not even asked. */
    CHECK(rpc_rig_init(&rig, l, ",attachments=off") == 0);
    fake_transport_script(&rig.fake, "", 0);
    CHECK(vfm_rpc_connect(&rig.rpc, &failure) == 0 && rig.fake.sent_len == 0 && !vfm_rpc_attachments(&rig.rpc, NULL));
    rpc_rig_destroy(&rig);

    /* Replies that cannot be followed: the connection ends with a clear reason. */
    {
        static const struct {
            const char *reply;
            int rc;
            const char *reason;
        } BAD[] = {
            { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":2,\"maxBytes\":1000}}\n", -EPROTONOSUPPORT,
              "rpc.enableAttachments to unix:/tmp/vfmigd-unit-" },
            { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":2,\"maxBytes\":1000}}\n", -EPROTONOSUPPORT,
              "attachment version 2 (this plugin speaks 1)" },
            { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":1,\"maxBytes\":0}}\n", -EPROTO,
              "lacks a version or a positive maxBytes" },
            { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":1}}\n", -EPROTO,
              "lacks a version or a positive maxBytes" },
            { "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"Internal error\"}}\n", -EPROTO,
              "refused: -32603 (Internal error); attachments=off in the plugin argument does without" },
        };

        for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
            CHECK(rpc_rig_init(&rig, l, "") == 0);
            fake_transport_script(&rig.fake, BAD[i].reply, strlen(BAD[i].reply));
            CHECK(vfm_rpc_connect(&rig.rpc, &failure) == BAD[i].rc);
            CHECK(strstr(failure.text, BAD[i].reason) != NULL);
            if (strstr(failure.text, BAD[i].reason) == NULL)
                fprintf(stderr, "  got: %s\n", failure.text);
            CHECK(!vfm_connection_is_open(&rig.rpc.conn));
            rpc_rig_destroy(&rig);
        }
    }
}

/* An rpc open with attachments agreed (maxBytes 1000) whose next reply is `reply`. */
static int rpc_with_attachments(struct rpc_rig *rig, const struct fake_listener *l, struct bytes *script)
{
    struct vfm_failure failure;
    struct bytes whole = { 0 };

    append_text(&whole, ENABLED);
    append(&whole, script->data, script->len);
    free(script->data);
    *script = whole;
    if (rpc_rig_init(rig, l, "") != 0)
        return -1;
    fake_transport_script(&rig->fake, script->data, script->len);
    return vfm_rpc_connect(&rig->rpc, &failure);
}

static void request_with_attachment(int *failures, const struct fake_listener *l)
{
    struct rpc_rig rig;
    struct bytes script = { 0 };
    struct vfm_failure failure;
    struct vfm_refusal refusal;
    json_object *result = NULL;
    uint8_t raw[200];
    struct vfm_rpc_blob blob = { .key = "data", .bytes = raw, .length = sizeof(raw), .attached = true };
    static const char EXPECTED[] =
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vf.load\",\"params\":{\"vf\":\"nvme0\",\"offset\":0,"
        "\"data\":{\"attachment\":200}}}\n";
    json_object *params;

    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = pattern(i);
    append_text(&script, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"received\":200}}\n");
    CHECK(rpc_with_attachments(&rig, l, &script) == 0);
    fake_transport_reset_sent(&rig.fake);
    params = json_object_new_object();
    json_object_object_add(params, "vf", json_object_new_string("nvme0"));
    json_object_object_add(params, "offset", json_object_new_int64(0));
    CHECK(vfm_rpc_call(&rig.rpc, "vf.load", params, &blob, NULL, &result, &refusal, &failure) == 0);
    json_object_put(result);
    /* The frame, the bytes as they were, then the text that names them. */
    CHECK(rig.fake.sent_len == VFM_FRAME_HEADER_BYTES + sizeof(raw) + strlen(EXPECTED));
    CHECK(rig.fake.sent_len >= 5 && memcmp(rig.fake.sent, "\x00\x00\x00\x00\xC8", 5) == 0);
    CHECK(rig.fake.sent_len >= 5 + sizeof(raw) && payload_ok(rig.fake.sent + 5, sizeof(raw)));
    CHECK(rig.fake.sent_len == 5 + sizeof(raw) + strlen(EXPECTED) &&
          memcmp(rig.fake.sent + 5 + sizeof(raw), EXPECTED, strlen(EXPECTED)) == 0);
    /* More than the agent's maxBytes is never sent. */
    {
        uint8_t big[1001] = { 0 };
        struct vfm_rpc_blob too_big = { .key = "data", .bytes = big, .length = sizeof(big), .attached = true };

        fake_transport_reset_sent(&rig.fake);
        CHECK(vfm_rpc_call(&rig.rpc, "vf.load", json_object_new_object(), &too_big, NULL, &result, &refusal,
                           &failure) == -EINVAL && rig.fake.sent_len == 0);
    }
    rpc_rig_destroy(&rig);
    free(script.data);
}

/* vf.save-like calls whose reply disagrees with its frame, or comes with one where it must not. */
static void result_checks(int *failures, const struct fake_listener *l)
{
    static const struct {
        const char *what;
        uint32_t frame;      /* UINT32_MAX: no frame */
        const char *text;
        int rc;
        const char *reason;
    } CASES[] = {
        { "agrees", 16, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":16},\"length\":16}}", 0, NULL },
        { "says more than its frame", 16,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":17},\"length\":17}}", -EPROTO,
          "names an attachment of 17 bytes, but its frame holds 16" },
        { "says less than its frame", 16,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":15},\"length\":15}}", -EPROTO,
          "names an attachment of 15 bytes, but its frame holds 16" },
        { "base64 after a frame", 16, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":\"AAAA\",\"length\":3}}",
          -EPROTO, "its data is not {\"attachment\": N}" },
        { "extra members", 16,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":16,\"x\":1},\"length\":16}}", -EPROTO,
          "its data is not {\"attachment\": N}" },
        { "names one but sends none", UINT32_MAX,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":16},\"length\":16}}", -EPROTO,
          "the result came without its attachment frame" },
        { "an error with a frame", 16,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32000,\"message\":\"x\",\"data\":{\"code\":\"VF_BUSY\"}}}",
          -EPROTO, "an error response (VF_BUSY) came with an attachment frame" },
        { "an error without one", UINT32_MAX,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32000,\"message\":\"x\",\"data\":{\"code\":\"VF_BUSY\"}}}",
          VFM_RPC_REFUSED, NULL },
        { "a frame bigger than asked", 33,
          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"data\":{\"attachment\":33},\"length\":33}}", -EPROTO,
          "vf.save to unix:/tmp/vfmigd-unit-" },
    };

    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        struct rpc_rig rig;
        struct bytes script = { 0 };
        struct vfm_failure failure;
        struct vfm_refusal refusal;
        json_object *result = NULL;
        uint8_t sink_memory[32 + GUARD_BYTES];
        struct vfm_rpc_sink sink = { .key = "data", .buffer = sink_memory, .capacity = 32 };
        int rc;

        if (CASES[i].frame != UINT32_MAX)
            append_frame(&script, CASES[i].frame, CASES[i].frame);
        append_text(&script, CASES[i].text);
        append_text(&script, "\n");
        memset(sink_memory, GUARD, sizeof(sink_memory));
        CHECK(rpc_with_attachments(&rig, l, &script) == 0);
        rc = vfm_rpc_call(&rig.rpc, "vf.save", json_object_new_object(), NULL, &sink, &result, &refusal, &failure);
        CHECK_AT(rc == CASES[i].rc, CASES[i].what);
        if (CASES[i].reason != NULL) {
            CHECK_AT(strstr(failure.text, CASES[i].reason) != NULL, CASES[i].what);
            if (strstr(failure.text, CASES[i].reason) == NULL)
                fprintf(stderr, "  got: %s\n", failure.text);
        }
        if (rc < 0)
            CHECK_AT(!vfm_connection_is_open(&rig.rpc.conn) && !sink.received && result == NULL, CASES[i].what);
        if (rc == 0)
            CHECK_AT(sink.received && sink.length == 16 && payload_ok(sink_memory, 16), CASES[i].what);
        CHECK_AT(guard_ok(sink_memory + 32), CASES[i].what);
        json_object_put(result);
        rpc_rig_destroy(&rig);
        free(script.data);
    }
    /* On a connection without attachments a frame is never expected, sink or not. */
    {
        static const char OLD_AND_FRAMED[] =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n"
            "\x00\x00\x00\x00\x01x{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
        struct rpc_rig rig;
        struct vfm_failure failure;
        struct vfm_refusal refusal;
        json_object *result = NULL;
        uint8_t sink_memory[32];
        struct vfm_rpc_sink sink = { .key = "data", .buffer = sink_memory, .capacity = sizeof(sink_memory) };

        CHECK(rpc_rig_init(&rig, l, "") == 0);
        fake_transport_script(&rig.fake, OLD_AND_FRAMED, sizeof(OLD_AND_FRAMED) - 1);
        CHECK(vfm_rpc_connect(&rig.rpc, &failure) == 0 && !vfm_rpc_attachments(&rig.rpc, NULL));
        CHECK(vfm_rpc_call(&rig.rpc, "vf.save", json_object_new_object(), NULL, &sink, &result, &refusal, &failure) ==
              -EPROTO);
        CHECK(strstr(failure.text, "before a response that takes none") != NULL && !sink.received);
        rpc_rig_destroy(&rig);
    }
}

int run_attachment_tests(void)
{
    int count = 0;
    int *failures = &count;
    struct fake_listener l;

    reader_header_split_everywhere(failures);
    reader_text_and_limits(failures);
    receive_split_everywhere(failures);
    receive_refusals(failures);
    CHECK(fake_listener_open(&l, "attachments") == 0);
    if (count == 0) {
        negotiation(failures, &l);
        request_with_attachment(failures, &l);
        result_checks(failures, &l);
    }
    fake_listener_close(&l);
    return count;
}
