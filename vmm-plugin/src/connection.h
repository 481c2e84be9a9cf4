/*
 * One stream connection to the agent: connect, send a message made of
 * several pieces, receive one newline-terminated line. The socket is
 * non-blocking and every wait is a poll() bounded by a deadline, so a dead
 * or silent agent costs at most the timeout, never a hang. Failures close
 * the socket (a half-read or half-written message leaves the stream out of
 * step); the owner may open it again.
 */
#ifndef VFM_CONNECTION_H
#define VFM_CONNECTION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "agent-address.h"
#include "failure.h"

/* The largest line we accept: a 4 MiB slice in base64 is 5.6 MB, so this leaves room. */
#define VFM_MAX_LINE_BYTES (16u * 1024u * 1024u)

struct vfm_connection {
    int fd;                 /* -1 when closed */
    char *buffer;           /* received bytes; grows up to VFM_MAX_LINE_BYTES + 1 */
    size_t capacity;
    size_t filled;          /* bytes in buffer */
    size_t scanned;         /* bytes of buffer already searched for '\n' (keeps framing linear) */
    size_t consumed;        /* length of the line handed out last, with its '\n'; dropped on the next receive */
};

/* Monotonic time in nanoseconds. */
int64_t vfm_now_ns(void);

/* A deadline `ms` milliseconds from now. */
int64_t vfm_deadline_after_ms(int ms);

void vfm_connection_init(struct vfm_connection *conn);

/* Connects to `address` before `deadline`; returns 0 or a negative errno with the reason. */
int vfm_connection_open(struct vfm_connection *conn, const struct vfm_address *address, int64_t deadline,
                        struct vfm_failure *failure);

/* Writes all of iov[0..count) before `deadline`; consumes (modifies) the iovec array. */
int vfm_connection_send(struct vfm_connection *conn, struct iovec *iov, int count, int64_t deadline,
                        struct vfm_failure *failure);

/*
 * Receives the next line before `deadline`. On success *line points at it
 * inside the connection's buffer, NUL-terminated without its '\n', valid
 * until the next call on this connection.
 */
int vfm_connection_receive_line(struct vfm_connection *conn, int64_t deadline, char **line, size_t *length,
                                struct vfm_failure *failure);

/* Closes the socket and forgets any buffered bytes; the buffer itself is kept for reuse. */
void vfm_connection_close(struct vfm_connection *conn);

/* Closes and frees everything. */
void vfm_connection_destroy(struct vfm_connection *conn);

#endif
