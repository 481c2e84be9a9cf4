/*
 * How bytes move over a connected socket: in the clear (plain-transport.c,
 * for tcp: and unix:) or in mutual TLS (tls-transport.c). Only connection.c
 * sees this; it frames lines and owns the socket, the deadlines and the one
 * poll loop. A transport makes single non-blocking attempts and, when one
 * would block, says what to wait for (TLS may need to read to write, and
 * the other way round), so both share the same deadline discipline.
 *
 * A transport is made once per connection object, at init, with everything
 * it needs that could fail for reasons of configuration (TLS: reading and
 * checking the certificate files); reconnecting reuses it.
 */
#ifndef VFM_TRANSPORT_H
#define VFM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "agent-address.h"
#include "failure.h"

/* send/receive: nothing moved; poll for *events, then try again with the same arguments. */
#define VFM_IO_WAIT 1

struct vfm_transport;

struct vfm_transport_ops {
    /*
     * Takes up a connected non-blocking socket (still the caller's to close)
     * and finishes opening before `deadline` (TLS: the handshake). On
     * failure the caller calls stop and closes the socket.
     */
    int (*start)(struct vfm_transport *transport, int fd, int64_t deadline, struct vfm_failure *failure);
    /*
     * One attempt to send from iov[0..count) (at least one byte in it): 0
     * with *sent > 0, VFM_IO_WAIT with *events, or a negative errno with the
     * reason. No SIGPIPE, whatever the peer did.
     */
    int (*send)(struct vfm_transport *transport, const struct iovec *iov, int count, size_t *sent, short *events,
                struct vfm_failure *failure);
    /* One attempt to receive: 0 with *received (0: the agent ended the stream), VFM_IO_WAIT or a negative errno. */
    int (*receive)(struct vfm_transport *transport, void *buffer, size_t length, size_t *received, short *events,
                   struct vfm_failure *failure);
    /* Forgets the connection (TLS: says close_notify if that needs no wait); start may follow on a new socket. */
    void (*stop)(struct vfm_transport *transport);
    void (*destroy)(struct vfm_transport *transport);
};

struct vfm_transport {
    const struct vfm_transport_ops *ops;
};

int vfm_plain_transport_new(struct vfm_transport **out, struct vfm_failure *failure);

/* Reads and checks address->ca, cert and key; the reason names the file that is wrong, never its contents. */
int vfm_tls_transport_new(const struct vfm_address *address, struct vfm_transport **out, struct vfm_failure *failure);

#endif
