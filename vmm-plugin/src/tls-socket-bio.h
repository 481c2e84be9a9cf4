/*
 * The bottom of the TLS stack: a BIO on the connection's socket that sends
 * with MSG_NOSIGNAL. OpenSSL's own socket BIO write()s, and a write to a
 * peer that has gone away raises SIGPIPE, which would kill QEMU; Linux has
 * no per-socket way to turn that off, and changing signal masks in QEMU's
 * threads is not ours to do. Everything else is a plain non-blocking
 * read/send: "would block" sets OpenSSL's retry flags, so SSL_* calls
 * report WANT_READ/WANT_WRITE and connection.c polls.
 */
#ifndef VFM_TLS_SOCKET_BIO_H
#define VFM_TLS_SOCKET_BIO_H

#include <openssl/bio.h>
#include <stdbool.h>

/* What the BIO knows of its socket; owned by the transport, which outlives the BIO. */
struct vfm_tls_socket {
    int fd;
    bool eof;        /* the agent ended the stream (recv returned 0) */
    int error;       /* errno of the last failed send or recv, 0 if none */
};

/*
 * The method table, one per TLS transport (so nothing is global; it takes
 * no BIO type index, of which OpenSSL has only ~127 for a whole process).
 * NULL when out of memory; free with BIO_meth_free after the last BIO.
 */
BIO_METHOD *vfm_tls_socket_bio_method(void);

/* A BIO of that method over `socket`, or NULL when out of memory. */
BIO *vfm_tls_socket_bio(BIO_METHOD *method, struct vfm_tls_socket *socket);

#endif
