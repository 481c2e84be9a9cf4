/* A scripted transport for the unit tests; see fake-transport.h. */
#include "fake-transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fake_start(struct vfm_transport *base, int fd, int64_t deadline, struct vfm_failure *failure)
{
    (void)base;
    (void)fd;
    (void)deadline;
    (void)failure;
    return 0;
}

static int fake_send(struct vfm_transport *base, const struct iovec *iov, int count, size_t *sent, short *events,
                     struct vfm_failure *failure)
{
    struct fake_transport *fake = (struct fake_transport *)base;
    size_t total = 0;
    uint8_t *bigger;

    (void)events;
    for (int i = 0; i < count; i++)
        total += iov[i].iov_len;
    bigger = realloc(fake->sent, fake->sent_len + total);
    if (bigger == NULL)
        return vfm_fail(failure, -ENOMEM, "fake: out of memory");
    fake->sent = bigger;
    for (int i = 0; i < count; i++) {
        if (iov[i].iov_len > 0)
            memcpy(fake->sent + fake->sent_len, iov[i].iov_base, iov[i].iov_len);
        fake->sent_len += iov[i].iov_len;
    }
    *sent = total;
    return 0;
}

static int fake_receive(struct vfm_transport *base, void *buffer, size_t length, size_t *received, short *events,
                        struct vfm_failure *failure)
{
    struct fake_transport *fake = (struct fake_transport *)base;
    size_t end = fake->script_len;
    size_t n;

    (void)failure;
    if (fake->wait_first && !fake->waited && fake->position < fake->script_len) {
        fake->waited = true;
        *events = POLLIN;
        return VFM_IO_WAIT;
    }
    fake->waited = false;
    for (int i = 0; i < fake->cut_count; i++) {
        if (fake->cuts[i] > fake->position) {
            end = fake->cuts[i] < fake->script_len ? fake->cuts[i] : fake->script_len;
            break;
        }
    }
    n = end - fake->position;
    if (fake->byte_at_a_time && n > 1)
        n = 1;
    if (n > length)
        n = length;
    if (n > 0)
        memcpy(buffer, fake->script + fake->position, n);
    fake->position += n;
    if (fake->watch != NULL && (const uint8_t *)buffer >= fake->watch &&
        (const uint8_t *)buffer + n <= fake->watch + fake->watch_len)
        fake->received_into_watch += n;
    *received = n;
    return 0;
}

static void fake_stop(struct vfm_transport *base)
{
    (void)base;
}

static void fake_destroy(struct vfm_transport *base)
{
    (void)base;
}

static const struct vfm_transport_ops FAKE_OPS = {
    .start = fake_start,
    .send = fake_send,
    .receive = fake_receive,
    .stop = fake_stop,
    .destroy = fake_destroy,
};

void fake_transport_init(struct fake_transport *fake)
{
    memset(fake, 0, sizeof(*fake));
    fake->base.ops = &FAKE_OPS;
}

void fake_transport_script(struct fake_transport *fake, const void *script, size_t length)
{
    fake->script = script;
    fake->script_len = length;
    fake->cut_count = 0;
    fake->byte_at_a_time = false;
    fake->wait_first = false;
    fake->position = 0;
    fake->waited = false;
    fake->received_into_watch = 0;
}

void fake_transport_reset_sent(struct fake_transport *fake)
{
    fake->sent_len = 0;
}

void fake_transport_free(struct fake_transport *fake)
{
    free(fake->sent);
    fake->sent = NULL;
    fake->sent_len = 0;
}

int fake_listener_open(struct fake_listener *listener, const char *tag)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    snprintf(listener->path, sizeof(listener->path), "/tmp/vfmigd-unit-%d-%s.sock", (int)getpid(), tag);
    unlink(listener->path);
    listener->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memcpy(addr.sun_path, listener->path, strlen(listener->path) + 1);
    if (listener->fd < 0 || bind(listener->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener->fd, 64) != 0)
        return -1;
    return 0;
}

void fake_listener_close(struct fake_listener *listener)
{
    if (listener->fd >= 0)
        close(listener->fd);
    unlink(listener->path);
}
