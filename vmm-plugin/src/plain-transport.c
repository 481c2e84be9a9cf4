/* Bytes in the clear, straight on the socket (tcp:, unix:); see transport.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "transport.h"

struct plain_transport {
    struct vfm_transport base;
    int fd;
};

static int plain_start(struct vfm_transport *base, int fd, int64_t deadline, struct vfm_failure *failure)
{
    (void)deadline;
    (void)failure;
    ((struct plain_transport *)base)->fd = fd;
    return 0;
}

static int io_error(const char *what, struct vfm_failure *failure)
{
    char text[96];
    int rc = -errno;

    return vfm_fail(failure, rc, "%s failed: %s", what, vfm_strerror(-rc, text, sizeof(text)));
}

static int plain_send(struct vfm_transport *base, const struct iovec *iov, int count, size_t *sent, short *events,
                      struct vfm_failure *failure)
{
    /* sendmsg does not write through msg_iov; the cast only drops a const the API lacks. */
    struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)count };
    ssize_t n;

    /* MSG_NOSIGNAL: a peer that went away must give EPIPE here, not kill QEMU with SIGPIPE. */
    do
        n = sendmsg(((struct plain_transport *)base)->fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        *sent = (size_t)n;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *events = POLLOUT;
        return VFM_IO_WAIT;
    }
    return io_error("send", failure);
}

static int plain_receive(struct vfm_transport *base, void *buffer, size_t length, size_t *received, short *events,
                         struct vfm_failure *failure)
{
    ssize_t n;

    do
        n = recv(((struct plain_transport *)base)->fd, buffer, length, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        *received = (size_t)n;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *events = POLLIN;
        return VFM_IO_WAIT;
    }
    return io_error("receive", failure);
}

static void plain_stop(struct vfm_transport *base)
{
    ((struct plain_transport *)base)->fd = -1;
}

static void plain_destroy(struct vfm_transport *base)
{
    free(base);
}

static const struct vfm_transport_ops PLAIN_OPS = {
    .start = plain_start,
    .send = plain_send,
    .receive = plain_receive,
    .stop = plain_stop,
    .destroy = plain_destroy,
};

int vfm_plain_transport_new(struct vfm_transport **out, struct vfm_failure *failure)
{
    struct plain_transport *plain = calloc(1, sizeof(*plain));

    if (plain == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");
    plain->base.ops = &PLAIN_OPS;
    plain->fd = -1;
    *out = &plain->base;
    return 0;
}
