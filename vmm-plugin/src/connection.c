/* A deadline-bounded stream connection to the agent; see connection.h. */
#include "connection.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "socket-connect.h"
#include "transport.h"

#define INITIAL_BUFFER_BYTES (64u * 1024u)

void vfm_connection_init(struct vfm_connection *conn, const struct vfm_address *address)
{
    memset(conn, 0, sizeof(*conn));
    conn->address = address;
    conn->fd = -1;
}

int vfm_connection_prepare(struct vfm_connection *conn, struct vfm_failure *failure)
{
    if (conn->transport != NULL)
        return 0;
    if (conn->address->kind == VFM_ADDRESS_TLS)
        return vfm_tls_transport_new(conn->address, &conn->transport, failure);
    return vfm_plain_transport_new(&conn->transport, failure);
}

bool vfm_connection_is_open(const struct vfm_connection *conn)
{
    return conn->fd >= 0;
}

void vfm_connection_close(struct vfm_connection *conn)
{
    if (conn->fd >= 0) {
        conn->transport->ops->stop(conn->transport);
        /* Nothing useful can be done if close fails: the descriptor is gone either way (Linux semantics). */
        (void)close(conn->fd);
        conn->fd = -1;
    }
    conn->filled = 0;
    conn->scanned = 0;
    conn->consumed = 0;
}

void vfm_connection_destroy(struct vfm_connection *conn)
{
    vfm_connection_close(conn);
    if (conn->transport != NULL)
        conn->transport->ops->destroy(conn->transport);
    conn->transport = NULL;
    free(conn->buffer);
    conn->buffer = NULL;
    conn->capacity = 0;
}

int vfm_connection_open(struct vfm_connection *conn, int64_t deadline, struct vfm_failure *failure)
{
    int fd;
    int rc;

    vfm_connection_close(conn);
    if (conn->transport == NULL)
        return vfm_fail(failure, -EINVAL, "the connection was not prepared");
    fd = vfm_socket_connect(conn->address, deadline, failure);
    if (fd < 0)
        return fd;
    /* One deadline for the socket and the transport's own opening (the TLS handshake): connect is one bounded step. */
    rc = conn->transport->ops->start(conn->transport, fd, deadline, failure);
    if (rc != 0) {
        conn->transport->ops->stop(conn->transport);
        (void)close(fd);
        return rc;
    }
    conn->fd = fd;
    return 0;
}

/*
 * After a transport attempt that did not complete (rc is VFM_IO_WAIT or a
 * negative errno whose reason the transport recorded): 0 to try again (the
 * socket became ready before the deadline), else the connection is closed
 * and the failure described.
 */
static int retry_or_fail(struct vfm_connection *conn, int rc, short events, int64_t deadline, const char *timeout_text,
                         struct vfm_failure *failure)
{
    char text[96];

    if (rc == VFM_IO_WAIT) {
        rc = vfm_wait_ready(conn->fd, events, deadline);
        if (rc == 0)
            return 0;
        if (rc == -ETIMEDOUT)
            vfm_fail(failure, rc, "%s", timeout_text);
        else
            vfm_fail(failure, rc, "poll failed: %s", vfm_strerror(-rc, text, sizeof(text)));
    }
    vfm_connection_close(conn);
    return rc;
}

/* Drops the first `sent` bytes from the iovec array; returns how many entries remain. */
static int advance(struct iovec **iov, int count, size_t sent)
{
    while (count > 0 && sent >= (*iov)->iov_len) {
        sent -= (*iov)->iov_len;
        (*iov)++;
        count--;
    }
    if (count > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + sent;
        (*iov)->iov_len -= sent;
    }
    return count;
}

int vfm_connection_send(struct vfm_connection *conn, struct iovec *iov, int count, int64_t deadline,
                        struct vfm_failure *failure)
{
    if (conn->fd < 0)
        return vfm_fail(failure, -ENOTCONN, "not connected");
    count = advance(&iov, count, 0);
    while (count > 0) {
        size_t sent = 0;
        short events = 0;
        int rc = conn->transport->ops->send(conn->transport, iov, count, &sent, &events, failure);

        if (rc == 0) {
            count = advance(&iov, count, sent);
            continue;
        }
        rc = retry_or_fail(conn, rc, events, deadline, "timed out sending", failure);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Makes room for at least one more byte; the buffer never grows past one maximal line. */
static int grow(struct vfm_connection *conn)
{
    size_t capacity = conn->capacity == 0 ? INITIAL_BUFFER_BYTES : conn->capacity * 2;
    char *bigger;

    if (capacity > VFM_MAX_LINE_BYTES + 1)
        capacity = VFM_MAX_LINE_BYTES + 1;
    if (capacity <= conn->filled)
        return -EMSGSIZE;
    bigger = realloc(conn->buffer, capacity);
    if (bigger == NULL)
        return -ENOMEM;
    conn->buffer = bigger;
    conn->capacity = capacity;
    return 0;
}

int vfm_connection_receive_line(struct vfm_connection *conn, int64_t deadline, char **line, size_t *length,
                                struct vfm_failure *failure)
{
    if (conn->fd < 0)
        return vfm_fail(failure, -ENOTCONN, "not connected");
    if (conn->consumed > 0) {
        /* Bytes after the previous line (only if the agent sent more than we asked for) start the next one. */
        memmove(conn->buffer, conn->buffer + conn->consumed, conn->filled - conn->consumed);
        conn->filled -= conn->consumed;
        conn->scanned = 0;
        conn->consumed = 0;
    }
    for (;;) {
        char *newline = conn->filled > conn->scanned
                            ? memchr(conn->buffer + conn->scanned, '\n', conn->filled - conn->scanned)
                            : NULL;
        size_t got = 0;
        short events = 0;
        int rc;

        if (newline != NULL) {
            *newline = '\0';
            *line = conn->buffer;
            *length = (size_t)(newline - conn->buffer);
            conn->consumed = *length + 1;
            conn->scanned = conn->consumed;
            return 0;
        }
        /* Only the new bytes are searched next time: framing stays linear in the line length. */
        conn->scanned = conn->filled;
        if (conn->filled == conn->capacity) {
            rc = grow(conn);
            if (rc != 0) {
                vfm_connection_close(conn);
                if (rc == -EMSGSIZE)
                    return vfm_fail(failure, rc, "a response is longer than %u bytes", VFM_MAX_LINE_BYTES);
                return vfm_fail(failure, rc, "out of memory for a response");
            }
        }
        rc = conn->transport->ops->receive(conn->transport, conn->buffer + conn->filled, conn->capacity - conn->filled,
                                           &got, &events, failure);
        if (rc == 0 && got > 0) {
            conn->filled += got;
            continue;
        }
        if (rc == 0) {
            vfm_connection_close(conn);
            return vfm_fail(failure, -ECONNRESET, "connection closed by the agent");
        }
        rc = retry_or_fail(conn, rc, events, deadline, "timed out waiting for the response", failure);
        if (rc != 0)
            return rc;
    }
}
