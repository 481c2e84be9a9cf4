/*
 * One stream connection to the agent: connect, send a message made of
 * several pieces, receive one newline-terminated line, with the attachment
 * frame that may come before it (attachment-frame.h). The socket is
 * non-blocking and every wait is a poll() bounded by a deadline, so a dead
 * or silent agent costs at most the timeout, never a hang; for tls: the
 * handshake is inside the connect deadline. Failures close the connection
 * (a half-read or half-written message leaves the stream out of step); the
 * owner may open it again, and nothing is read from disk then.
 *
 * Whether the bytes travel in the clear or in TLS is decided by the
 * address and hidden here (transport.h): callers see the same calls.
 */
#ifndef VFM_CONNECTION_H
#define VFM_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "agent-address.h"
#include "deadline.h"
#include "failure.h"

/* The largest line we accept: a 4 MiB slice in base64 is 5.6 MB, so this leaves room. */
#define VFM_MAX_LINE_BYTES (16u * 1024u * 1024u)

struct vfm_transport;

struct vfm_connection {
    const struct vfm_address *address;  /* owned by the caller, outlives this */
    struct vfm_transport *transport;    /* made by vfm_connection_prepare; NULL before */
    int fd;                 /* -1 when closed */
    char *buffer;           /* received bytes; grows up to VFM_MAX_LINE_BYTES + 1 */
    size_t capacity;
    size_t filled;          /* bytes in buffer */
    size_t start;           /* the first byte not yet handed out (what is before it is dropped on the next receive) */
    size_t scanned;         /* buffer[start..scanned) holds no '\n' (keeps framing linear); scanned >= start */
    /*
     * Set by the RPC layer once the agent has agreed to attachment frames on
     * this connection (rpc.enableAttachments); cleared with every close, as
     * the agreement dies with the connection.
     */
    bool attachments;
    uint32_t attachment_max;  /* the agent's maxBytes: the longest frame it takes */
};

/*
 * Where an attachment frame that comes before a line goes. A frame is taken
 * only when a sink is given; its length is checked against `capacity`
 * before a byte of it is read, so the agent cannot make us write past the
 * buffer or wait for more than was asked.
 */
struct vfm_attachment_sink {
    uint8_t *buffer;        /* the frame's bytes land here, at most `capacity` of them */
    size_t capacity;
    size_t length;          /* out: the frame's length */
    bool received;          /* out: a frame came before the line */
};

/* A closed connection to `address` that holds nothing yet (vfm_connection_destroy is safe from here on). */
void vfm_connection_init(struct vfm_connection *conn, const struct vfm_address *address);

/*
 * Makes everything a connection to the address needs that depends on
 * configuration (for tls:, reads and checks the CA, certificate and key
 * and builds the TLS context), so that opening later reads no file. Once;
 * later calls do nothing. 0 or a negative errno with the reason.
 */
int vfm_connection_prepare(struct vfm_connection *conn, struct vfm_failure *failure);

/* Connects (and for tls: completes the handshake) before `deadline`; needs prepare. */
int vfm_connection_open(struct vfm_connection *conn, int64_t deadline, struct vfm_failure *failure);

bool vfm_connection_is_open(const struct vfm_connection *conn);

/*
 * Whether the agent has closed or reset this open connection while it was
 * idle (between calls, so nothing of ours is lost with it): an agent that
 * restarted. Asks the socket without waiting and without reading, so bytes
 * the transport has not read yet (a TLS session ticket) stay where they are.
 */
bool vfm_connection_peer_gone(const struct vfm_connection *conn);

/* Writes all of iov[0..count) before `deadline`; consumes (modifies) the iovec array. */
int vfm_connection_send(struct vfm_connection *conn, struct iovec *iov, int count, int64_t deadline,
                        struct vfm_failure *failure);

/*
 * Receives the next line before `deadline`. On success *line points at it
 * inside the connection's buffer, NUL-terminated without its '\n', valid
 * until the next call on this connection. Whitespace before the line is
 * skipped. If an attachment frame comes first, its bytes go to `sink`
 * (NULL: none may come; a frame then, a second one, or one longer than the
 * sink takes is a protocol error that closes the connection).
 */
int vfm_connection_receive(struct vfm_connection *conn, int64_t deadline, struct vfm_attachment_sink *sink,
                           char **line, size_t *length, struct vfm_failure *failure);

/* vfm_connection_receive with no frame allowed. */
int vfm_connection_receive_line(struct vfm_connection *conn, int64_t deadline, char **line, size_t *length,
                                struct vfm_failure *failure);

/* Closes the socket and forgets any buffered bytes; the buffer and the transport are kept for reuse. */
void vfm_connection_close(struct vfm_connection *conn);

/* Closes and frees everything. */
void vfm_connection_destroy(struct vfm_connection *conn);

#endif
