/* A deadline-bounded stream connection to the agent; see connection.h. */
#include "connection.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attachment-frame.h"
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

bool vfm_connection_peer_gone(const struct vfm_connection *conn)
{
    /* POLLRDHUP: the peer's FIN; POLLHUP and POLLERR (always reported): both directions gone, or a reset. */
    struct pollfd pfd = { .fd = conn->fd, .events = POLLRDHUP };

    if (conn->fd < 0)
        return false;
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
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
    conn->start = 0;
    conn->scanned = 0;
    conn->attachments = false;
    conn->attachment_max = 0;
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

/* Drops what was handed out already: the unread bytes move to the front of the buffer. */
static void compact(struct vfm_connection *conn)
{
    if (conn->start == 0)
        return;
    memmove(conn->buffer, conn->buffer + conn->start, conn->filled - conn->start);
    conn->filled -= conn->start;
    conn->scanned -= conn->start;
    conn->start = 0;
}

/* Hands out `n` buffered bytes (they are dropped on the next receive). */
static void take(struct vfm_connection *conn, size_t n)
{
    conn->start += n;
    if (conn->scanned < conn->start)
        conn->scanned = conn->start;
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

/*
 * Receives at least one more byte into the buffer before `deadline`. If the
 * agent ends the stream, the failure says `ended`. Any failure closes.
 */
static int receive_more(struct vfm_connection *conn, int64_t deadline, const char *ended, struct vfm_failure *failure)
{
    for (;;) {
        size_t got = 0;
        short events = 0;
        int rc;

        if (conn->filled == conn->capacity) {
            compact(conn);
            rc = conn->filled == conn->capacity ? grow(conn) : 0;
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
            return 0;
        }
        if (rc == 0) {
            vfm_connection_close(conn);
            return vfm_fail(failure, -ECONNRESET, "%s", ended);
        }
        rc = retry_or_fail(conn, rc, events, deadline, "timed out waiting for the response", failure);
        if (rc != 0)
            return rc;
    }
}

/*
 * A frame's `length` bytes into `out`. Whatever came in the buffer with the
 * header is copied; the rest is received straight into `out`, never more
 * than the frame holds, so the text after it stays in the socket (or in
 * the TLS layer) for the line that follows.
 */
static int receive_frame_bytes(struct vfm_connection *conn, int64_t deadline, uint8_t *out, size_t length,
                               struct vfm_failure *failure)
{
    size_t buffered = conn->filled - conn->start;
    size_t done = buffered < length ? buffered : length;

    if (done > 0)
        memcpy(out, conn->buffer + conn->start, done);
    take(conn, done);
    while (done < length) {
        size_t got = 0;
        short events = 0;
        int rc = conn->transport->ops->receive(conn->transport, out + done, length - done, &got, &events, failure);

        if (rc == 0 && got > 0) {
            done += got;
            continue;
        }
        if (rc == 0) {
            vfm_connection_close(conn);
            return vfm_fail(failure, -ECONNRESET,
                            "the agent closed the connection in the middle of an attachment frame (%zu of its %zu bytes "
                            "came)", done, length);
        }
        rc = retry_or_fail(conn, rc, events, deadline, "timed out waiting for the bytes of an attachment frame", failure);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* A frame whose header has just been read: its bytes to the sink, if it may come at all. */
static int receive_frame(struct vfm_connection *conn, int64_t deadline, uint32_t length,
                         struct vfm_attachment_sink *sink, struct vfm_failure *failure)
{
    int rc;

    if (sink == NULL) {
        vfm_connection_close(conn);
        return vfm_fail(failure, -EPROTO, "the agent sent an attachment frame (%" PRIu32 " bytes) before a response "
                        "that takes none", length);
    }
    if (sink->received) {
        vfm_connection_close(conn);
        return vfm_fail(failure, -EPROTO, "the agent sent a second attachment frame before one response");
    }
    /* Checked before a byte is read: a wrong length can neither overrun the buffer nor make us wait for 4 GiB. */
    if (length > sink->capacity) {
        vfm_connection_close(conn);
        return vfm_fail(failure, -EPROTO, "the agent sent an attachment frame of %" PRIu32 " bytes, more than the %zu "
                        "asked for", length, sink->capacity);
    }
    rc = receive_frame_bytes(conn, deadline, sink->buffer, length, failure);
    if (rc != 0)
        return rc;
    sink->received = true;
    sink->length = length;
    return 0;
}

/* The line that starts at conn->start. */
static int receive_rest_of_line(struct vfm_connection *conn, int64_t deadline, char **line, size_t *length,
                                struct vfm_failure *failure)
{
    for (;;) {
        char *newline = conn->filled > conn->scanned
                            ? memchr(conn->buffer + conn->scanned, '\n', conn->filled - conn->scanned)
                            : NULL;
        int rc;

        if (newline != NULL) {
            *newline = '\0';
            *line = conn->buffer + conn->start;
            *length = (size_t)(newline - *line);
            take(conn, *length + 1);
            return 0;
        }
        /* Only the new bytes are searched next time: framing stays linear in the line length. */
        conn->scanned = conn->filled;
        rc = receive_more(conn, deadline, "connection closed by the agent", failure);
        if (rc != 0)
            return rc;
    }
}

int vfm_connection_receive(struct vfm_connection *conn, int64_t deadline, struct vfm_attachment_sink *sink,
                           char **line, size_t *length, struct vfm_failure *failure)
{
    struct vfm_frame_reader reader;

    if (sink != NULL) {
        sink->received = false;
        sink->length = 0;
    }
    if (conn->fd < 0)
        return vfm_fail(failure, -ENOTCONN, "not connected");
    /* Bytes after the previous line (only if the agent sent more than we asked for) start this one. */
    compact(conn);
    vfm_frame_reader_init(&reader);
    for (;;) {
        size_t used = 0;
        enum vfm_frame_status status = vfm_frame_reader_feed(&reader, (const uint8_t *)conn->buffer + conn->start,
                                                             conn->filled - conn->start, &used);
        int rc;

        take(conn, used);
        if (status == VFM_FRAME_TEXT)
            return receive_rest_of_line(conn, deadline, line, length, failure);
        if (status == VFM_FRAME_HEADER) {
            rc = receive_frame(conn, deadline, reader.length, sink, failure);
            /* What follows the frame is its text, after optional whitespace; another frame is refused above. */
            vfm_frame_reader_init(&reader);
        } else {
            rc = receive_more(conn, deadline,
                              reader.have > 0 ? "the agent closed the connection inside an attachment frame's header"
                                              : "connection closed by the agent",
                              failure);
        }
        if (rc != 0)
            return rc;
    }
}

int vfm_connection_receive_line(struct vfm_connection *conn, int64_t deadline, char **line, size_t *length,
                                struct vfm_failure *failure)
{
    return vfm_connection_receive(conn, deadline, NULL, line, length, failure);
}
