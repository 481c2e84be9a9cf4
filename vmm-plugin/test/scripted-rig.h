/*
 * A device talking to a scripted agent (fake-transport.h), shared by the
 * unit tests that drive vf-device.c call by call (lease-tests.c,
 * recovery-tests.c): the rig, the script it plays, what it sent, the
 * agent's replies those tests have in common, and the run of their cases
 * against one listener.
 */
#ifndef SCRIPTED_RIG_H
#define SCRIPTED_RIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fake-transport.h"
#include "vf-device.h"

/* A device as init leaves it (VF nvme0, no pre-copy), whose connection goes to the listener and talks to the fake. */
struct rig {
    struct vfm_device *device;
    struct fake_transport fake;
};

/*
 * Opens a rig on `l` with attachments=off and the address options
 * `options` ("lease_ms=900", say; "" for none). Returns 0, or -1.
 */
int rig_open(struct rig *rig, const struct fake_listener *l, const char *options);
void rig_close(struct rig *rig);

/* Plays `script` (several replies in a row may be given; not copied) and forgets what was sent before. */
void play(struct rig *rig, const char *script);

/* Whether what was sent since the last play is `expected`, to the byte; says what it was otherwise. */
bool sent_is(const struct rig *rig, const char *expected);

/* Whether what was sent since the last play holds `text`; says what it was otherwise. */
bool sent_has(const struct rig *rig, const char *text);

/* The agent's answer to request `id`: a vf.setState from `from` to `to`. */
const char *transition_reply(char *buffer, size_t size, int id, const char *from, const char *to);

/*
 * The agent's refusal of request `id`: error `code`, named `name`, with
 * `detail` and `more` (further members of its data, as JSON: "" for none,
 * "\"state\":\"STOP\"", say).
 */
const char *refusal_reply(char *buffer, size_t size, int id, int code, const char *name, const char *detail,
                          const char *more);

/* vfm_device_set_state(v1) against a script that answers it from `from` to `to` (request `id`); returns its rc. */
int set_state(struct rig *rig, uint32_t v1, int id, const char *from, const char *to);

/* One test case: it counts its failed checks in *failures (check.h), with rigs on `l`. */
typedef void rig_case(int *failures, const struct fake_listener *l);

/* Runs `cases` in order on one listener (its path made with `tag`); returns how many checks failed. */
int rig_run_cases(const char *tag, rig_case *const cases[], size_t count);

#endif
