/*
 * A transport for unit tests (transport.h) that plays a scripted agent:
 * what it "receives" is a byte string handed out in pieces the test chooses
 * (so a frame can be split at any byte), and what is sent to it is kept for
 * the test to read. The script ending is the agent ending the stream.
 * Receives that land inside a watched region (a sink's buffer) are counted,
 * which shows whether the connection had the bytes delivered straight into
 * the caller's buffer or through its own.
 */
#ifndef FAKE_TRANSPORT_H
#define FAKE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#define FAKE_MAX_CUTS 8

struct fake_transport {
    struct vfm_transport base;
    const uint8_t *script;       /* what the agent sends, in order (not copied) */
    size_t script_len;
    size_t cuts[FAKE_MAX_CUTS];  /* offsets in the script where one receive must stop, ascending */
    int cut_count;
    bool byte_at_a_time;         /* every receive gets at most one byte */
    bool wait_first;             /* each receive says VFM_IO_WAIT once before it delivers (poll must return at once) */
    size_t position;             /* bytes of the script handed out */
    bool waited;
    /* What the plugin sent, all of it. */
    uint8_t *sent;
    size_t sent_len;
    /* Bytes that receive calls placed inside [watch, watch + watch_len). */
    const uint8_t *watch;
    size_t watch_len;
    size_t received_into_watch;
};

/* A fake with no script yet. The test owns it: a connection's destroy leaves it alone. */
void fake_transport_init(struct fake_transport *fake);

/* Replaces the script and forgets the cuts, the pace and what was handed out. */
void fake_transport_script(struct fake_transport *fake, const void *script, size_t length);

/* Forgets what was sent. */
void fake_transport_reset_sent(struct fake_transport *fake);

void fake_transport_free(struct fake_transport *fake);

/*
 * A listening Unix socket nobody accepts on, so that a connection's real
 * connect succeeds (the fake then does the talking): `tag` keeps each test
 * file's path its own.
 */
struct fake_listener {
    int fd;
    char path[108];
};

int fake_listener_open(struct fake_listener *listener, const char *tag);
void fake_listener_close(struct fake_listener *listener);

#endif
