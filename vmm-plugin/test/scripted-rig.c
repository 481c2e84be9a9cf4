/* A device talking to a scripted agent, for the unit tests; see scripted-rig.h. */
#include "scripted-rig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int rig_open(struct rig *rig, const struct fake_listener *l, const char *options)
{
    struct vfm_failure failure;
    char arg[192];

    fake_transport_init(&rig->fake);
    rig->device = calloc(1, sizeof(*rig->device));
    if (rig->device == NULL)
        return -1;
    vfm_rpc_init(&rig->device->rpc, &rig->device->address);
    rig->device->rpc.conn.transport = &rig->fake.base;   /* prepare then keeps it; destroy leaves it to us */
    rig->device->devid = strdup("0000:3b:00.2");
    snprintf(rig->device->vf, sizeof(rig->device->vf), "nvme0");
    /*
     * attachments=off: no rpc.enableAttachments on a connection, so the
     * script is only the calls under test, and slices travel as base64.
     */
    snprintf(arg, sizeof(arg), "unix:%s,attachments=off%s%s", l->path, options[0] != '\0' ? "," : "", options);
    if (rig->device->devid == NULL || vfm_address_parse(arg, &rig->device->address, &failure) != 0)
        return -1;
    return 0;
}

void rig_close(struct rig *rig)
{
    vfm_device_close(rig->device);
    fake_transport_free(&rig->fake);
}

void play(struct rig *rig, const char *script)
{
    fake_transport_script(&rig->fake, script, strlen(script));
    fake_transport_reset_sent(&rig->fake);
}

bool sent_is(const struct rig *rig, const char *expected)
{
    bool same = rig->fake.sent_len == strlen(expected) && memcmp(rig->fake.sent, expected, rig->fake.sent_len) == 0;

    if (!same)
        fprintf(stderr, "  sent:     %.*s  expected: %s", (int)rig->fake.sent_len, (const char *)rig->fake.sent, expected);
    return same;
}

bool sent_has(const struct rig *rig, const char *text)
{
    bool has = rig->fake.sent_len > 0 && memmem(rig->fake.sent, rig->fake.sent_len, text, strlen(text)) != NULL;

    if (!has)
        fprintf(stderr, "  sent: %.*s  lacks: %s\n", (int)rig->fake.sent_len, (const char *)rig->fake.sent, text);
    return has;
}

const char *transition_reply(char *buffer, size_t size, int id, const char *from, const char *to)
{
    snprintf(buffer, size,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"vf\":\"nvme0\",\"from\":\"%s\",\"state\":\"%s\",\"value\":1,"
             "\"path\":[]}}\n", id, from, to);
    return buffer;
}

const char *refusal_reply(char *buffer, size_t size, int id, int code, const char *name, const char *detail,
                          const char *more)
{
    snprintf(buffer, size,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"error\":{\"code\":%d,\"message\":\"refused\",\"data\":{\"code\":\"%s\","
             "\"detail\":\"%s\"%s%s}}}\n", id, code, name, detail, more[0] != '\0' ? "," : "", more);
    return buffer;
}

int set_state(struct rig *rig, uint32_t v1, int id, const char *from, const char *to)
{
    /* Static: the fake keeps a pointer to its script, not a copy, and a receive after the call reads what is left. */
    static char reply[256];
    struct vfm_failure failure;

    play(rig, transition_reply(reply, sizeof(reply), id, from, to));
    return vfm_device_set_state(rig->device, v1, &failure);
}

int rig_run_cases(const char *tag, rig_case *const cases[], size_t count)
{
    int failed = 0;
    int *failures = &failed;
    struct fake_listener l;

    CHECK(fake_listener_open(&l, tag) == 0);
    /* Without a listener every rig_open would fail: one failure says it, not one a case. */
    if (failed == 0) {
        for (size_t i = 0; i < count; i++)
            cases[i](failures, &l);
    }
    fake_listener_close(&l);
    return failed;
}
