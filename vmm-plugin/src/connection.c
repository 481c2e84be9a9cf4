/* A deadline-bounded stream connection to the agent; see connection.h. */
#include "connection.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INITIAL_BUFFER_BYTES (64u * 1024u)
/* A Unix listener with a full backlog answers EAGAIN; we retry this often until the deadline. */
#define UNIX_RETRY_NS (5 * 1000 * 1000)

int64_t vfm_now_ns(void)
{
    struct timespec now;

    /* CLOCK_MONOTONIC cannot fail on Linux; if it ever did, 0 makes every deadline expire at once rather than never. */
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0;
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t vfm_deadline_after_ms(int ms)
{
    return vfm_now_ns() + (int64_t)ms * 1000000;
}

void vfm_connection_init(struct vfm_connection *conn)
{
    memset(conn, 0, sizeof(*conn));
    conn->fd = -1;
}

void vfm_connection_close(struct vfm_connection *conn)
{
    if (conn->fd >= 0) {
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
    free(conn->buffer);
    conn->buffer = NULL;
    conn->capacity = 0;
}

/* Waits until fd is ready for `events` (or has an error to report) or the deadline passes. */
static int wait_for(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - vfm_now_ns();
        struct pollfd pfd = { .fd = fd, .events = events };
        int64_t ms;
        int ready;

        if (left <= 0)
            return -ETIMEDOUT;
        ms = (left + 999999) / 1000000;
        ready = poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (ready > 0)
            return 0;   /* ready, or POLLERR/POLLHUP: the next call on the socket says which */
    }
}

/*
 * After a send or receive that did not complete (errno set): 0 to try again
 * (interrupted, or the socket became ready before the deadline), else the
 * connection is closed and the failure described.
 */
static int retry_or_fail(struct vfm_connection *conn, short events, int64_t deadline, const char *timeout_text,
                         const char *error_verb, struct vfm_failure *failure)
{
    char text[96];
    int rc;

    if (errno == EINTR)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        rc = wait_for(conn->fd, events, deadline);
        if (rc == 0)
            return 0;
    } else {
        rc = -errno;
    }
    vfm_connection_close(conn);
    if (rc == -ETIMEDOUT)
        return vfm_fail(failure, rc, "%s", timeout_text);
    return vfm_fail(failure, rc, "%s: %s", error_verb, vfm_strerror(-rc, text, sizeof(text)));
}

static int sleep_ns(int64_t ns)
{
    struct timespec pause = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

    while (nanosleep(&pause, &pause) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* One connect attempt on a fresh non-blocking socket; returns the fd or a negative errno. */
static int connect_one(int family, const struct sockaddr *addr, socklen_t addr_len, int64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        if (connect(fd, addr, addr_len) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && family == AF_UNIX) {
            if (vfm_now_ns() >= deadline) {
                rc = -ETIMEDOUT;
                break;
            }
            rc = sleep_ns(UNIX_RETRY_NS);
            if (rc != 0)
                break;
            continue;
        }
        if (errno != EINPROGRESS) {
            rc = -errno;
            break;
        }
        rc = wait_for(fd, POLLOUT, deadline);
        if (rc == 0) {
            int so_error = 0;
            socklen_t len = sizeof(so_error);

            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
                rc = -errno;
            else if (so_error != 0)
                rc = -so_error;
        }
        break;
    }
    if (rc == 0 && family != AF_UNIX) {
        int one = 1;

        /* Requests are written in one sendmsg, but a small request after a big one must not wait for an ACK. */
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
            rc = -errno;
    }
    if (rc != 0) {
        (void)close(fd);
        return rc;
    }
    return fd;
}

static int open_unix(const struct vfm_address *address, int64_t deadline, struct vfm_failure *failure)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    char text[128];
    int fd;

    memcpy(addr.sun_path, address->path, strlen(address->path) + 1);
    fd = connect_one(AF_UNIX, (const struct sockaddr *)&addr, sizeof(addr), deadline);
    if (fd < 0)
        return vfm_fail(failure, fd, "%s", vfm_strerror(-fd, text, sizeof(text)));
    return fd;
}

static int open_tcp(const struct vfm_address *address, int64_t deadline, struct vfm_failure *failure)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *list = NULL;
    char text[128];
    int rc;
    int fd = -ENOENT;

    rc = getaddrinfo(address->host, address->port, &hints, &list);
    if (rc != 0) {
        if (rc == EAI_SYSTEM)
            return vfm_fail(failure, -errno, "%s", vfm_strerror(errno, text, sizeof(text)));
        return vfm_fail(failure, -EHOSTUNREACH, "%s", gai_strerror(rc));
    }
    /* Try every address the name has (e.g. ::1 then 127.0.0.1), all within the one deadline. */
    for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(list);
    if (fd < 0)
        return vfm_fail(failure, fd, "%s", vfm_strerror(-fd, text, sizeof(text)));
    return fd;
}

int vfm_connection_open(struct vfm_connection *conn, const struct vfm_address *address, int64_t deadline,
                        struct vfm_failure *failure)
{
    int fd;

    vfm_connection_close(conn);
    fd = address->kind == VFM_ADDRESS_UNIX ? open_unix(address, deadline, failure)
                                           : open_tcp(address, deadline, failure);
    if (fd < 0)
        return fd;
    conn->fd = fd;
    return 0;
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
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)count };
        /* MSG_NOSIGNAL: a peer that went away must give EPIPE here, not kill QEMU with SIGPIPE. */
        ssize_t sent = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
        int rc;

        if (sent >= 0) {
            count = advance(&iov, count, (size_t)sent);
            continue;
        }
        rc = retry_or_fail(conn, POLLOUT, deadline, "timed out sending", "send failed", failure);
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
        ssize_t got;
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
        got = recv(conn->fd, conn->buffer + conn->filled, conn->capacity - conn->filled, 0);
        if (got > 0) {
            conn->filled += (size_t)got;
            continue;
        }
        if (got == 0) {
            vfm_connection_close(conn);
            return vfm_fail(failure, -ECONNRESET, "connection closed by the agent");
        }
        rc = retry_or_fail(conn, POLLIN, deadline, "timed out waiting for the response", "receive failed", failure);
        if (rc != 0)
            return rc;
    }
}
