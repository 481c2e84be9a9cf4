/* A MSG_NOSIGNAL socket BIO for OpenSSL; see tls-socket-bio.h. */
#include "tls-socket-bio.h"

#include <errno.h>
#include <sys/socket.h>

static bool would_block(int error)
{
    return error == EAGAIN || error == EWOULDBLOCK;
}

static int socket_write(BIO *bio, const char *data, size_t length, size_t *written)
{
    struct vfm_tls_socket *socket = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    do
        n = send(socket->fd, data, length, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        *written = (size_t)n;
        return 1;
    }
    socket->error = errno;
    if (would_block(errno))
        BIO_set_retry_write(bio);
    return 0;
}

static int socket_read(BIO *bio, char *data, size_t length, size_t *read)
{
    struct vfm_tls_socket *socket = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    do
        n = recv(socket->fd, data, length, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        *read = (size_t)n;
        return 1;
    }
    if (n == 0) {
        /* Reported through BIO_CTRL_EOF: OpenSSL then tells a truncated stream from a closed one. */
        socket->eof = true;
        return 0;
    }
    socket->error = errno;
    if (would_block(errno))
        BIO_set_retry_read(bio);
    return 0;
}

static long socket_ctrl(BIO *bio, int command, long number, void *pointer)
{
    struct vfm_tls_socket *socket = BIO_get_data(bio);

    (void)number;
    (void)pointer;
    switch (command) {
    case BIO_CTRL_FLUSH:
        return 1;   /* nothing is held here: every write went to the kernel */
    case BIO_CTRL_EOF:
        return socket != NULL && socket->eof;
    default:
        return 0;   /* not supported, which OpenSSL takes as "no" (e.g. to kernel TLS) */
    }
}

BIO_METHOD *vfm_tls_socket_bio_method(void)
{
    /* Type: a source/sink with no index of its own; nothing looks this BIO up by type. */
    BIO_METHOD *method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "vfmigd socket");

    if (method == NULL)
        return NULL;
    if (BIO_meth_set_write_ex(method, socket_write) != 1 || BIO_meth_set_read_ex(method, socket_read) != 1 ||
        BIO_meth_set_ctrl(method, socket_ctrl) != 1) {
        BIO_meth_free(method);
        return NULL;
    }
    return method;
}

BIO *vfm_tls_socket_bio(BIO_METHOD *method, struct vfm_tls_socket *socket)
{
    BIO *bio = BIO_new(method);

    if (bio == NULL)
        return NULL;
    BIO_set_data(bio, socket);
    BIO_set_init(bio, 1);
    return bio;
}
