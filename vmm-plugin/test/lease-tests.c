/*
 * Unit tests of the migration lease (vf-lease.c, lease-renewer.c), run by
 * unit-tests.c against a scripted agent (fake-transport.h): what the
 * calls that take a VF out of RUNNING ask for, the shape of a renewal,
 * when one is due and when none is (outside a migration, after the agent
 * says there is nothing to renew), how a lost connection is survived, and
 * the renewer thread itself: it renews on its own, stops renewing when
 * told to, and its stop wakes it at once.
 */
#include "lease-tests.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "lease-renewer.h"
#include "scripted-rig.h"
#include "vf-device.h"

#include "check.h"

#define NS_PER_MS 1000000

static int count_sent(const struct fake_transport *fake, const char *text)
{
    int count = 0;
    size_t length = strlen(text);

    for (const uint8_t *at = fake->sent, *end = fake->sent + fake->sent_len;
         at != NULL && at < end && (at = memmem(at, (size_t)(end - at), text, length)) != NULL; at += length)
        count++;
    return count;
}

static const char *renewal_reply(char *buffer, size_t size, int id, long lease_ms)
{
    snprintf(buffer, size,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"vf\":\"nvme0\",\"state\":\"STOP_COPY\",\"leaseMs\":%ld,"
             "\"expiresAt\":\"2030-01-01T00:00:00.000Z\"}}\n", id, lease_ms);
    return buffer;
}

/* Every refusal here has a stranded VF's detail and flag: the plugin goes by the code and name alone. */
static const char *lease_refusal(char *buffer, size_t size, int id, int code, const char *name)
{
    return refusal_reply(buffer, size, id, code, name, "VF nvme0 has no lease to renew: it is stranded",
                         "\"stranded\":true");
}

/* vf.renewLease against a script of one reply; returns its rc. */
static int renew_against(struct rig *rig, const char *reply, struct vfm_failure *failure)
{
    play(rig, reply);
    return vfm_device_renew_lease(rig->device, failure);
}

/* lease_ms goes with the calls that take the VF out of RUNNING (and later steps), never with one to RUNNING. */
static void set_state_asks_for_the_lease(int *failures, const struct fake_listener *l)
{
    struct rig rig;
    int64_t at = 0;

    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(!rig.device->in_migration && !vfm_device_renewal_due(rig.device, &at));
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\","
                        "\"state\":\"STOP_COPY\",\"timeoutMs\":4000,\"leaseMs\":900}}\n"));
    CHECK(rig.device->in_migration);
    /* A third of lease_ms after the call, which extended the lease. */
    CHECK(vfm_device_renewal_period_ms(rig.device) == 300);
    CHECK(vfm_device_renewal_due(rig.device, &at) && at == rig.device->lease_touched_ns + 300 * (int64_t)NS_PER_MS);
    CHECK(set_state(&rig, 0, 2, "STOP_COPY", "STOP") == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\","
                        "\"state\":\"STOP\",\"timeoutMs\":4000,\"leaseMs\":900}}\n"));
    CHECK(rig.device->in_migration);
    /* RUNNING ends the migration: no lease asked for, none kept. */
    CHECK(set_state(&rig, 1, 3, "STOP", "RUNNING") == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\","
                        "\"state\":\"RUNNING\",\"timeoutMs\":4000}}\n"));
    CHECK(!rig.device->in_migration && !vfm_device_renewal_due(rig.device, &at));
    /* RUNNING|SAVING on a VF without pre-copy keeps it running: no migration yet. */
    CHECK(set_state(&rig, 3, 4, "RUNNING", "RUNNING") == 0);
    CHECK(count_sent(&rig.fake, "leaseMs") == 0 && !rig.device->in_migration);
    rig_close(&rig);

    /* Without lease_ms nothing is asked: the agent's leases.defaultMs applies. */
    CHECK(rig_open(&rig, l, "") == 0);
    CHECK(set_state(&rig, 4, 1, "RUNNING", "RESUMING") == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vf.setState\",\"params\":{\"vf\":\"nvme0\","
                        "\"state\":\"RESUMING\",\"timeoutMs\":4000}}\n"));
    CHECK(rig.device->in_migration);
    rig_close(&rig);
}

static void renewal_request(int *failures, const struct fake_listener *l)
{
    struct rig rig;
    struct vfm_failure failure;
    char reply[256];
    int64_t at = 0;
    int64_t before;

    /* With lease_ms and a session: both named. */
    CHECK(rig_open(&rig, l, "lease_ms=900") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    snprintf(rig.device->session, sizeof(rig.device->session), "s-7");
    CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 2, 900), &failure) == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vf.renewLease\",\"params\":{\"vf\":\"nvme0\","
                        "\"session\":\"s-7\",\"leaseMs\":900}}\n"));
    CHECK(rig.device->lease_ms == 900 && rig.device->in_migration);
    rig_close(&rig);

    /* Neither: {vf} alone. The lease is not known until the first renewal, which is due soon to learn it. */
    CHECK(rig_open(&rig, l, "") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    CHECK(rig.device->lease_ms == 0 && vfm_device_renewal_period_ms(rig.device) == VFM_LEARN_LEASE_AFTER_MS);
    CHECK(vfm_device_renewal_due(rig.device, &at) &&
          at == rig.device->lease_touched_ns + VFM_LEARN_LEASE_AFTER_MS * (int64_t)NS_PER_MS);
    before = vfm_now_ns();
    CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 2, 1200), &failure) == 0);
    CHECK(sent_is(&rig, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vf.renewLease\",\"params\":{\"vf\":\"nvme0\"}}\n"));
    /* Learnt: a third of it from the renewal, which extended the lease. */
    CHECK(rig.device->lease_ms == 1200 && vfm_device_renewal_period_ms(rig.device) == 400);
    CHECK(rig.device->lease_touched_ns >= before);
    CHECK(vfm_device_renewal_due(rig.device, &at) && at == rig.device->lease_touched_ns + 400 * (int64_t)NS_PER_MS);
    /* What the agent says is kept within the bounds any agent grants. */
    CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 3, 1), &failure) == 0);
    CHECK(rig.device->lease_ms == VFM_AGENT_LEASE_MIN_MS &&
          vfm_device_renewal_period_ms(rig.device) == VFM_MIN_RENEWAL_PERIOD_MS);
    CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 4, 1000000000000L), &failure) == 0);
    CHECK(rig.device->lease_ms == VFM_AGENT_LEASE_MAX_MS);
    /* A result without leaseMs is a failure, not a stop. */
    snprintf(reply, sizeof(reply), "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"vf\":\"nvme0\",\"state\":\"STOP\"}}\n");
    CHECK(renew_against(&rig, reply, &failure) == -EPROTO && strstr(failure.text, "has no leaseMs") != NULL);
    CHECK(rig.device->in_migration);
    /* A new migration learns its lease afresh. */
    CHECK(set_state(&rig, 1, 6, "STOP_COPY", "RUNNING") == 0 && set_state(&rig, 0, 7, "RUNNING", "STOP") == 0);
    CHECK(rig.device->lease_ms == 0);
    rig_close(&rig);
}

/* No renewal is due outside a migration, nor after the agent says there is none to renew, until the next. */
static void no_renewal_outside_a_migration(int *failures, const struct fake_listener *l)
{
    static const struct {
        const char *name;
        int code;
        int rc;
        bool stops;
    } REFUSALS[] = {
        { "NO_MIGRATION", -33015, -ESRCH, true },
        { "SESSION_UNKNOWN", -33014, -ESTALE, true },
        { "NOT_SESSION_OWNER", -33013, -EPERM, true },
        { "VF_BUSY", -33003, -EBUSY, false },
    };
    struct rig rig;
    struct vfm_failure failure;
    char reply[384];
    int64_t at = 0;

    for (size_t i = 0; i < sizeof(REFUSALS) / sizeof(REFUSALS[0]); i++) {
        CHECK(rig_open(&rig, l, "lease_ms=600") == 0);
        CHECK(!vfm_device_renewal_due(rig.device, &at));
        CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0 && vfm_device_renewal_due(rig.device, &at));
        CHECK(renew_against(&rig, lease_refusal(reply, sizeof(reply), 2, REFUSALS[i].code, REFUSALS[i].name), &failure) ==
              REFUSALS[i].rc);
        CHECK(strstr(failure.text, REFUSALS[i].name) != NULL);
        /* One call: not followed by the vf.getState an op's refusal makes, which would extend the lease. */
        CHECK(count_sent(&rig.fake, "\n") == 1 && count_sent(&rig.fake, "vf.getState") == 0);
        if (REFUSALS[i].stops) {
            CHECK(strstr(failure.text, "renewals stop until the next migration") != NULL);
            CHECK(!rig.device->in_migration && !vfm_device_renewal_due(rig.device, &at));
            /* The next migration: a set_state out of RUNNING (or one that moves a stopped VF) renews again. */
            CHECK(set_state(&rig, 0, 3, "STOP_COPY", "STOP") == 0 && vfm_device_renewal_due(rig.device, &at));
        } else {
            /* Tried again soon after the failure, then twice as long after each further one, up to a period (200 ms). */
            CHECK(rig.device->in_migration && vfm_device_renewal_due(rig.device, &at) &&
                  at == rig.device->renewal_failed_ns + VFM_RENEWAL_RETRY_MS * (int64_t)NS_PER_MS);
            CHECK(renew_against(&rig, lease_refusal(reply, sizeof(reply), 3, REFUSALS[i].code, REFUSALS[i].name),
                                &failure) == REFUSALS[i].rc);
            CHECK(vfm_device_renewal_due(rig.device, &at) &&
                  at == rig.device->renewal_failed_ns + 2 * VFM_RENEWAL_RETRY_MS * (int64_t)NS_PER_MS);
            CHECK(renew_against(&rig, lease_refusal(reply, sizeof(reply), 4, REFUSALS[i].code, REFUSALS[i].name),
                                &failure) == REFUSALS[i].rc);
            CHECK(vfm_device_renewal_due(rig.device, &at) && at == rig.device->renewal_failed_ns + 200 * (int64_t)NS_PER_MS);
            /* A success starts afresh: a period after it. */
            CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 5, 600), &failure) == 0);
            CHECK(vfm_device_renewal_due(rig.device, &at) && at == rig.device->lease_touched_ns + 200 * (int64_t)NS_PER_MS);
        }
        rig_close(&rig);
    }

    /* A failed set_state forgets the state, and with it the migration. */
    CHECK(rig_open(&rig, l, "") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0 && rig.device->in_migration);
    lease_refusal(reply, sizeof(reply), 2, -33002, "ILLEGAL_TRANSITION");
    fake_transport_script(&rig.fake, reply, strlen(reply));   /* the vf.getState after it finds the stream ended */
    CHECK(vfm_device_set_state(rig.device, 4, &failure) == -EINVAL);
    CHECK(!rig.device->in_migration && !vfm_device_renewal_due(rig.device, &at));
    /* ... and any op's failure does (plugin-ops.c's leave): so does cleanup. */
    CHECK(set_state(&rig, 2, 4, "RUNNING", "STOP_COPY") == 0 && rig.device->in_migration);
    vfm_device_lease_drop(rig.device);
    CHECK(!vfm_device_renewal_due(rig.device, &at));
    rig_close(&rig);
}

/* A renewal that loses its connection fails, leaves nothing behind, and the next one reconnects. */
static void renewal_reconnects(int *failures, const struct fake_listener *l)
{
    struct rig rig;
    struct vfm_failure failure;
    char reply[256];
    int64_t at = 0;

    CHECK(rig_open(&rig, l, "lease_ms=150") == 0);
    CHECK(set_state(&rig, 2, 1, "RUNNING", "STOP_COPY") == 0);
    CHECK(renew_against(&rig, "", &failure) == -ECONNRESET);
    CHECK(strstr(failure.text, "lease renewal: vf.renewLease") != NULL && strstr(failure.text, "closed") != NULL);
    CHECK(!vfm_connection_is_open(&rig.device->rpc.conn) && rig.device->in_migration);
    /* Not before the retry floor, even with a period shorter than it. */
    CHECK(vfm_device_renewal_period_ms(rig.device) == 50);
    CHECK(vfm_device_renewal_due(rig.device, &at) &&
          at == rig.device->renewal_failed_ns + VFM_RENEWAL_RETRY_MS * (int64_t)NS_PER_MS);
    CHECK(renew_against(&rig, renewal_reply(reply, sizeof(reply), 3, 150), &failure) == 0);
    CHECK(vfm_connection_is_open(&rig.device->rpc.conn));
    CHECK(vfm_device_renewal_due(rig.device, &at) && at == rig.device->lease_touched_ns + 50 * (int64_t)NS_PER_MS);
    rig_close(&rig);
}

/* ---- the renewer thread ---- */

static void sleep_ms(long ms)
{
    struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        continue;
}

/* How many renewals the thread has sent; read under the lock it sends under. */
static int renewals_sent(pthread_mutex_t *lock, const struct rig *rig)
{
    int n;

    pthread_mutex_lock(lock);
    n = count_sent(&rig->fake, "vf.renewLease");
    pthread_mutex_unlock(lock);
    return n;
}

/* Waits (up to 10 s: a loaded machine) until the thread has sent `n` renewals. */
static bool wait_for_renewals(pthread_mutex_t *lock, const struct rig *rig, int n)
{
    int64_t end = vfm_now_ns() + 10000 * (int64_t)NS_PER_MS;

    while (renewals_sent(lock, rig) < n) {
        if (vfm_now_ns() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* Waits (up to 10 s) until the thread has read the whole script and kept its connection: the last call succeeded. */
static bool wait_until_answered(pthread_mutex_t *lock, const struct rig *rig)
{
    int64_t end = vfm_now_ns() + 10000 * (int64_t)NS_PER_MS;

    for (;;) {
        bool done;

        pthread_mutex_lock(lock);
        done = rig->fake.position == rig->fake.script_len && vfm_connection_is_open(&rig->device->rpc.conn);
        pthread_mutex_unlock(lock);
        if (done)
            return true;
        if (vfm_now_ns() > end)
            return false;
        sleep_ms(5);
    }
}

static void renewer_thread(int *failures, const struct fake_listener *l)
{
    static char script[1024];
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    struct vfm_renewer renewer;
    struct vfm_failure failure;
    struct rig rig;
    int64_t started;

    /* lease_ms=150: a renewal every 50 ms while in a migration. */
    CHECK(rig_open(&rig, l, "lease_ms=150") == 0);
    CHECK(vfm_renewer_start(&renewer, &lock, rig.device, &failure) == 0);
    /* Not in a migration: nothing, however long (a few periods here). */
    sleep_ms(200);
    CHECK(renewals_sent(&lock, &rig) == 0 && rig.fake.sent_len == 0);

    /* Into one, as an op would: under the lock, then the renewer is told. The agent renews twice, then has nothing. */
    pthread_mutex_lock(&lock);
    transition_reply(script, sizeof(script), 1, "RUNNING", "STOP_COPY");
    renewal_reply(script + strlen(script), sizeof(script) - strlen(script), 2, 150);
    renewal_reply(script + strlen(script), sizeof(script) - strlen(script), 3, 150);
    lease_refusal(script + strlen(script), sizeof(script) - strlen(script), 4, -33015, "NO_MIGRATION");
    fake_transport_script(&rig.fake, script, strlen(script));
    CHECK(vfm_device_set_state(rig.device, 2, &failure) == 0);
    vfm_renewer_poke(&renewer);
    pthread_mutex_unlock(&lock);
    CHECK(wait_for_renewals(&lock, &rig, 3));
    /* After NO_MIGRATION: no more, however long. */
    sleep_ms(300);
    pthread_mutex_lock(&lock);
    CHECK(count_sent(&rig.fake, "vf.renewLease") == 3 && !rig.device->in_migration);
    CHECK(count_sent(&rig.fake, "\"params\":{\"vf\":\"nvme0\",\"leaseMs\":150}") == 3);
    pthread_mutex_unlock(&lock);

    /* The next migration renews again; the agent's stream ends mid-way (a lost connection), and the thread reconnects. */
    pthread_mutex_lock(&lock);
    transition_reply(script, sizeof(script), 5, "STOP_COPY", "STOP");
    fake_transport_script(&rig.fake, script, strlen(script));
    CHECK(vfm_device_set_state(rig.device, 0, &failure) == 0);
    vfm_renewer_poke(&renewer);
    pthread_mutex_unlock(&lock);
    CHECK(wait_for_renewals(&lock, &rig, 4));   /* its stream ends: the connection closes */
    /* The next renewal's answer, for whichever id the thread is at (it may have failed more than once by now). */
    pthread_mutex_lock(&lock);
    renewal_reply(script, sizeof(script), (int)rig.device->rpc.next_id, 150);
    fake_transport_script(&rig.fake, script, strlen(script));
    pthread_mutex_unlock(&lock);
    CHECK(wait_until_answered(&lock, &rig));
    pthread_mutex_lock(&lock);
    CHECK(rig.device->in_migration && rig.device->lease_ms == 150);
    pthread_mutex_unlock(&lock);

    /* Stopping wakes it at once, mid-period (a lease of a day: a period of 8 hours). */
    pthread_mutex_lock(&lock);
    rig.device->address.lease_ms = VFM_AGENT_LEASE_MAX_MS;
    rig.device->lease_ms = VFM_AGENT_LEASE_MAX_MS;
    vfm_renewer_poke(&renewer);
    pthread_mutex_unlock(&lock);
    sleep_ms(50);
    started = vfm_now_ns();
    vfm_renewer_stop(&renewer);
    CHECK(vfm_now_ns() - started < 2000 * (int64_t)NS_PER_MS);
    rig_close(&rig);

    /* A renewer stopped before it ever renewed: nothing sent, nothing left. */
    CHECK(rig_open(&rig, l, "") == 0);
    CHECK(vfm_renewer_start(&renewer, &lock, rig.device, &failure) == 0);
    vfm_renewer_stop(&renewer);
    CHECK(rig.fake.sent_len == 0);
    rig_close(&rig);
    pthread_mutex_destroy(&lock);
}

int run_lease_tests(void)
{
    static rig_case *const CASES[] = {
        set_state_asks_for_the_lease, renewal_request, no_renewal_outside_a_migration, renewal_reconnects, renewer_thread,
    };

    return rig_run_cases("lease", CASES, sizeof(CASES) / sizeof(CASES[0]));
}
