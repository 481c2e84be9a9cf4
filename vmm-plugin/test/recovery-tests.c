/*
 * Unit tests of what the plugin does when its agent was restarted in the
 * middle of a migration (from its journal), run by unit-tests.c against a
 * scripted agent (fake-transport.h). A restarted source reopens its save
 * under the same session and makes the stream again from its start: every
 * vf.save names the offset QEMU has reached, and a slice from anywhere else
 * is refused, never handed to QEMU. A restarted destination has lost what
 * was loaded: before the VF leaves RESUMING the plugin names its resume
 * session, and a session the agent no longer has fails set_state with the
 * VF untouched, rather than running it as it was before the migration.
 */
#include "recovery-tests.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "scripted-rig.h"
#include "vf-device.h"

#include "check.h"

/* vf.save's answer: four bytes (`data`, base64) at `offset` of an 8-byte stream, in session `session`. */
static const char *save_reply(char *buffer, size_t size, int id, int offset, const char *data, const char *session)
{
    snprintf(buffer, size,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"data\":\"%s\",\"offset\":%d,\"length\":4,\"remaining\":%d,"
             "\"totalBytes\":8,\"eof\":%s,\"session\":\"%s\"}}\n",
             id, data, offset, 4 - offset, offset == 4 ? "true" : "false", session);
    return buffer;
}

static const char *get_state_reply(char *buffer, size_t size, int id, const char *state)
{
    snprintf(buffer, size, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"vf\":\"nvme0\",\"state\":\"%s\",\"value\":0}}\n",
             id, state);
    return buffer;
}

/* base64 of four bytes 0x00, and of four bytes 0x11 */
#define FOUR_0X00 "AAAAAA=="
#define FOUR_0X11 "EREREQ=="

/* Every vf.save names the offset reached; a restarted agent's stream goes on from there, and a slice from elsewhere is refused. */
static void save_names_its_offset(int *failures, const struct fake_listener *l)
{
    struct rig rig;
    struct vfm_failure failure;
    char reply[512];
    uint8_t buffer[8];

    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    play(&rig, save_reply(reply, sizeof(reply), 2, 0, FOUR_0X00, "s-1"));
    CHECK(vfm_device_save(rig.device, buffer, 4, &failure) == 0);
    CHECK(sent_has(&rig, "\"params\":{\"vf\":\"nvme0\",\"maxBytes\":4,\"offset\":0}"));
    CHECK(rig.device->save_offset == 4 && strcmp(rig.device->session, "s-1") == 0);

    /* The agent dies: the connection ends. A renewal (the renewer's, while QEMU is between calls) reconnects to the restarted agent. */
    play(&rig, "");
    CHECK(vfm_device_renew_lease(rig.device, &failure) == -ECONNRESET);
    play(&rig, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"vf\":\"nvme0\",\"state\":\"STOP_COPY\",\"leaseMs\":900,"
               "\"expiresAt\":\"2030-01-01T00:00:00.000Z\"}}\n");
    CHECK(vfm_device_renew_lease(rig.device, &failure) == 0);
    /* QEMU's next save asks the recovered session for the bytes after the ones it has. */
    play(&rig, save_reply(reply, sizeof(reply), 5, 4, FOUR_0X11, "s-1"));
    CHECK(vfm_device_save(rig.device, buffer + 4, 4, &failure) == 0);
    CHECK(sent_has(&rig, "\"params\":{\"vf\":\"nvme0\",\"maxBytes\":4,\"offset\":4,\"session\":\"s-1\"}"));
    CHECK(buffer[4] == 0x11 && rig.device->save_offset == 8);
    rig_close(&rig);

    /* An agent that answers from another offset (say, its stream made again from the start): refused, not handed to QEMU. */
    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    play(&rig, save_reply(reply, sizeof(reply), 2, 0, FOUR_0X00, "s-1"));
    CHECK(vfm_device_save(rig.device, buffer, 4, &failure) == 0);
    memset(buffer, 0xA5, sizeof(buffer));
    play(&rig, save_reply(reply, sizeof(reply), 3, 0, FOUR_0X00, "s-1"));
    CHECK(vfm_device_save(rig.device, buffer + 4, 4, &failure) == -EPROTO);
    CHECK(strstr(failure.text, "returned the slice at offset 0, not the 4 asked for") != NULL);
    CHECK(rig.device->save_offset == 4 && !vfm_connection_is_open(&rig.device->rpc.conn));
    /* A new save (out of saving and back) starts at 0, in a session learnt afresh. */
    CHECK(set_state(&rig, 1, 4, "STOP_COPY", "RUNNING") == 0 && set_state(&rig, 2, 5, "RUNNING", "STOP_COPY") == 0);
    CHECK(rig.device->save_offset == 0 && rig.device->session[0] == '\0');
    play(&rig, save_reply(reply, sizeof(reply), 6, 0, FOUR_0X00, "s-2"));
    CHECK(vfm_device_save(rig.device, buffer, 4, &failure) == 0);
    CHECK(sent_has(&rig, "\"maxBytes\":4,\"offset\":0}"));
    /* A set_state that stays in saving (PRE_COPY -> STOP_COPY, say) goes on in the same session, from where it was. */
    CHECK(set_state(&rig, 2, 7, "STOP_COPY", "STOP_COPY") == 0 && rig.device->save_offset == 4);
    CHECK(strcmp(rig.device->session, "s-2") == 0);
    rig_close(&rig);
}

/* Leaving RESUMING names the resume session in its vf.setState: gone (an agent restarted since), set_state fails with the VF untouched. */
static void leaving_resume_names_the_session(int *failures, const struct fake_listener *l)
{
    static const uint8_t BYTES[4] = { 1, 2, 3, 4 };
    struct rig rig;
    struct vfm_failure failure;
    char script[1024];
    size_t used;

    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 4, 1, "RUNNING", "RESUMING") == 0);
    play(&rig, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"state\":\"RESUMING\",\"session\":\"r-1\",\"received\":4,"
               "\"complete\":false}}\n");
    CHECK(vfm_device_load(rig.device, BYTES, sizeof(BYTES), &failure) == 0);
    /* The agent was restarted: the session is gone, the VF in STOP. Then the vf.getState a refusal makes. */
    refusal_reply(script, sizeof(script), 3, -33014, "SESSION_UNKNOWN", "VF nvme0 has no session r-1; none is open",
                  "\"state\":\"STOP\"");
    used = strlen(script);
    get_state_reply(script + used, sizeof(script) - used, 4, "STOP");
    play(&rig, script);
    CHECK(vfm_device_set_state(rig.device, 1, &failure) == -ESTALE);
    CHECK(sent_has(&rig, "\"id\":3,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\",\"state\":\"RUNNING\""));
    CHECK(sent_has(&rig, "\"session\":\"r-1\"}"));
    CHECK(memmem(rig.fake.sent, rig.fake.sent_len, "vf.renewLease", 13) == NULL);
    CHECK(strstr(failure.text, "set_state(1): vf.setState RUNNING") != NULL);
    CHECK(strstr(failure.text, "SESSION_UNKNOWN") != NULL && strstr(failure.text, "the VF is now STOP") != NULL);
    /* Where the VF is, is the agent's word from now on. */
    CHECK(!rig.device->state_known && !rig.device->own_resume_session && !rig.device->in_migration);
    rig_close(&rig);

    /* The session still there: the one vf.setState, naming it, applies it. */
    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 4, 1, "RUNNING", "RESUMING") == 0);
    play(&rig, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"state\":\"RESUMING\",\"session\":\"r-1\",\"received\":4,"
               "\"complete\":true}}\n");
    CHECK(vfm_device_load(rig.device, BYTES, sizeof(BYTES), &failure) == 0);
    play(&rig, transition_reply(script, sizeof(script), 3, "RESUMING", "RUNNING"));
    CHECK(vfm_device_set_state(rig.device, 1, &failure) == 0);
    CHECK(sent_has(&rig, "\"id\":3,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\",\"state\":\"RUNNING\""));
    CHECK(sent_has(&rig, "\"session\":\"r-1\"}"));
    CHECK(rig.device->state_known && rig.device->known_state == VFM_V2_RUNNING && !rig.device->own_resume_session);
    rig_close(&rig);

    /* Nothing loaded yet (no session named), or a source: no session is named. */
    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 4, 1, "RUNNING", "RESUMING") == 0);
    CHECK(set_state(&rig, 1, 2, "RESUMING", "RUNNING") == 0);
    CHECK(set_state(&rig, 2, 3, "RUNNING", "STOP_COPY") == 0);
    snprintf(rig.device->session, sizeof(rig.device->session), "s-1");
    CHECK(set_state(&rig, 1, 4, "STOP_COPY", "RUNNING") == 0);
    CHECK(memmem(rig.fake.sent, rig.fake.sent_len, "\"session\"", 9) == NULL);
    rig_close(&rig);
}

int run_recovery_tests(void)
{
    static rig_case *const CASES[] = { save_names_its_offset, leaving_resume_names_the_session };

    return rig_run_cases("recovery", CASES, sizeof(CASES) / sizeof(CASES[0]));
}
