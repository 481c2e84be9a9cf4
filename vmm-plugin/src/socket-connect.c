/* Connecting a non-blocking socket before a deadline; see socket-connect.h. */
#include "socket-connect.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"

/* A Unix listener with a full backlog answers EAGAIN; we retry this often until the deadline. */
#define UNIX_RETRY_NS (5 * 1000 * 1000)

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
        rc = vfm_wait_ready(fd, POLLOUT, deadline);
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

        /* Requests are written in one go, but a small request after a big one must not wait for an ACK. */
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

int vfm_socket_connect(const struct vfm_address *address, int64_t deadline, struct vfm_failure *failure)
{
    return address->kind == VFM_ADDRESS_UNIX ? open_unix(address, deadline, failure)
                                             : open_tcp(address, deadline, failure);
}
