/*
 * Mutual TLS over the connection's socket (tls:); see transport.h. The
 * context (credentials, CA, the agent's name) is built once, at init; each
 * connection gets a fresh SSL on it. OpenSSL never blocks here: the socket
 * is non-blocking under a BIO of our own (tls-socket-bio.h, which also keeps
 * SIGPIPE away), and WANT_READ/WANT_WRITE go back to connection.c's poll,
 * so the handshake, every record and every retry stay inside the deadline.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "tls-credentials.h"
#include "tls-error-text.h"
#include "tls-socket-bio.h"
#include "transport.h"

/* The largest TLS record payload: one SSL_write of this much is one record. */
#define RECORD_BYTES 16384

/*
 * The agent checks a client certificate only once the handshake is over
 * (TLS 1.3 lets the client finish first) and then closes a connection it
 * refuses without a word. So that refusal shows up here as a connection
 * ended before any response; say what that usually means.
 */
#define ENDED_BEFORE_ANSWER                                                                                        \
    "the agent closed the TLS connection before its first response (as it does when it refuses this plugin's " \
    "certificate: its audit log says why)"

struct tls_transport {
    struct vfm_transport base;
    SSL_CTX *ctx;
    BIO_METHOD *bio_method;
    struct vfm_tls_socket socket;   /* what the BIO of the current SSL reads and writes */
    SSL *ssl;                       /* the current connection's; NULL between connections */
    bool fatal;                     /* the SSL failed: OpenSSL forbids SSL_shutdown on it */
    bool pending;                   /* the last call would have blocked: a record may be half-written */
    bool answered;                  /* the agent has sent data on this connection */
    bool peer_is_ip;
    char peer_name[256];            /* what the agent's certificate must name (also the SNI, for a DNS name) */
    char staging[RECORD_BYTES];     /* a request's pieces gathered into one record (SSL has no writev) */
};

static int tls_failure(struct tls_transport *tls, int rc, const char *what, struct vfm_failure *failure)
{
    tls->fatal = true;
    return vfm_fail(failure, rc, "%s", what);
}

/* Why the handshake failed: our verdict on the agent's certificate, else what OpenSSL or the socket says. */
static int handshake_failure(struct tls_transport *tls, int error, struct vfm_failure *failure)
{
    long verdict = SSL_get_verify_result(tls->ssl);
    char reason[128];
    char text[96];
    unsigned long first;
    bool not_tls;

    tls->fatal = true;
    if (verdict != X509_V_OK) {
        char detail[320] = "";

        ERR_clear_error();
        if (verdict == X509_V_ERR_HOSTNAME_MISMATCH || verdict == X509_V_ERR_IP_ADDRESS_MISMATCH)
            snprintf(detail, sizeof(detail), ": the agent's certificate does not name %s\"%s\"",
                     tls->peer_is_ip ? "the IP " : "", tls->peer_name);
        return vfm_fail(failure, -EPROTO, "TLS handshake failed: certificate verify failed (%s%s)",
                        X509_verify_cert_error_string(verdict), detail);
    }
    if (tls->socket.eof || error == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return vfm_fail(failure, -ECONNRESET, "TLS handshake failed: the agent closed the connection");
    }
    if (error == SSL_ERROR_SYSCALL && tls->socket.error != 0) {
        ERR_clear_error();
        return vfm_fail(failure, -tls->socket.error, "TLS handshake failed: %s",
                        vfm_strerror(tls->socket.error, text, sizeof(text)));
    }
    /* E.g. the agent's alert, such as "tlsv1 alert unknown ca"; or what OpenSSL makes of a peer that is not TLS. */
    first = ERR_peek_error();
    not_tls = ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) == SSL_R_WRONG_VERSION_NUMBER;
    return vfm_fail(failure, -EPROTO, "TLS handshake failed: %s%s",
                    vfm_tls_error_reason("the connection broke", reason, sizeof(reason)),
                    not_tls ? " (the peer does not speak TLS: is this the agent's tls:// listener?)" : "");
}

static int tls_start(struct vfm_transport *base, int fd, int64_t deadline, struct vfm_failure *failure)
{
    struct tls_transport *tls = (struct tls_transport *)base;
    char text[96];
    BIO *bio;

    tls->socket = (struct vfm_tls_socket){ .fd = fd };
    tls->fatal = false;
    tls->pending = false;
    tls->answered = false;
    ERR_clear_error();
    tls->ssl = SSL_new(tls->ctx);
    if (tls->ssl == NULL)
        return tls_failure(tls, -ENOMEM, "out of memory for a TLS connection", failure);
    bio = vfm_tls_socket_bio(tls->bio_method, &tls->socket);
    if (bio == NULL)
        return tls_failure(tls, -ENOMEM, "out of memory for a TLS connection", failure);
    SSL_set_bio(tls->ssl, bio, bio);   /* the SSL owns the BIO from here on */
    if (!tls->peer_is_ip && SSL_set_tlsext_host_name(tls->ssl, tls->peer_name) != 1)
        return tls_failure(tls, -EINVAL, "cannot send the server name", failure);
    for (;;) {
        int result;
        int error;
        int rc;

        ERR_clear_error();
        tls->socket.error = 0;
        result = SSL_connect(tls->ssl);
        if (result == 1)
            return 0;
        error = SSL_get_error(tls->ssl, result);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)
            return handshake_failure(tls, error, failure);
        rc = vfm_wait_ready(fd, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (rc == -ETIMEDOUT)
            return vfm_fail(failure, rc, "TLS handshake timed out");
        if (rc != 0)
            return vfm_fail(failure, rc, "TLS handshake: poll failed: %s", vfm_strerror(-rc, text, sizeof(text)));
    }
}

/*
 * A send or receive that did not complete: VFM_IO_WAIT, the end of the
 * stream (receive, 0 with *received = 0), or a negative errno with the
 * reason.
 */
static int io_outcome(struct tls_transport *tls, int result, bool receiving, size_t *received, short *events,
                      struct vfm_failure *failure)
{
    const char *what = receiving ? "receive" : "send";
    int error = SSL_get_error(tls->ssl, result);
    int cause = tls->socket.error;
    bool ended;
    char reason[128];
    char text[96];

    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        tls->pending = true;
        *events = error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return VFM_IO_WAIT;
    }
    /* Only the agent's close_notify leaves the session sound enough for ours. */
    tls->fatal = error != SSL_ERROR_ZERO_RETURN;
    /*
     * The end of the stream comes first: after it OpenSSL may still try to
     * send an alert, whose EPIPE would only hide what happened.
     */
    ended = error == SSL_ERROR_ZERO_RETURN || tls->socket.eof;
    if (!tls->answered && (ended || cause == ECONNRESET || cause == EPIPE)) {
        ERR_clear_error();
        return vfm_fail(failure, -ECONNRESET, ENDED_BEFORE_ANSWER);
    }
    if (ended && receiving) {
        ERR_clear_error();
        *received = 0;
        return 0;
    }
    if (ended) {
        ERR_clear_error();
        return vfm_fail(failure, -ECONNRESET, "%s failed: the agent closed the connection", what);
    }
    if (cause != 0) {
        ERR_clear_error();
        return vfm_fail(failure, -cause, "%s failed: %s", what, vfm_strerror(cause, text, sizeof(text)));
    }
    return vfm_fail(failure, -EPROTO, "%s failed: TLS: %s", what,
                    vfm_tls_error_reason("the connection broke", reason, sizeof(reason)));
}

static int tls_send(struct vfm_transport *base, const struct iovec *iov, int count, size_t *sent, short *events,
                    struct vfm_failure *failure)
{
    struct tls_transport *tls = (struct tls_transport *)base;
    size_t length = 0;
    size_t written = 0;
    int result;

    /*
     * Up to one record's worth of the pieces, copied: a small request is one
     * record, not one per piece. After a WANT_* the caller comes back with the
     * same pieces, so this gathers the same bytes, as SSL_write's retry needs.
     */
    for (int i = 0; i < count && length < sizeof(tls->staging); i++) {
        size_t take = iov[i].iov_len < sizeof(tls->staging) - length ? iov[i].iov_len : sizeof(tls->staging) - length;

        memcpy(tls->staging + length, iov[i].iov_base, take);
        length += take;
    }
    ERR_clear_error();
    tls->socket.error = 0;
    result = SSL_write_ex(tls->ssl, tls->staging, length, &written);
    if (result == 1) {
        tls->pending = false;
        *sent = written;
        return 0;
    }
    return io_outcome(tls, result, false, NULL, events, failure);
}

static int tls_receive(struct vfm_transport *base, void *buffer, size_t length, size_t *received, short *events,
                       struct vfm_failure *failure)
{
    struct tls_transport *tls = (struct tls_transport *)base;
    size_t got = 0;
    int result;

    ERR_clear_error();
    tls->socket.error = 0;
    result = SSL_read_ex(tls->ssl, buffer, length, &got);
    if (result == 1) {
        tls->pending = false;
        tls->answered = true;
        *received = got;
        return 0;
    }
    return io_outcome(tls, result, true, received, events, failure);
}

static void tls_stop(struct vfm_transport *base)
{
    struct tls_transport *tls = (struct tls_transport *)base;

    if (tls->ssl == NULL)
        return;
    /*
     * close_notify marks an orderly end for the agent. One non-blocking try,
     * and only on a sound session with no half-written record: waiting for
     * the agent's reply would buy nothing.
     */
    if (!tls->fatal && !tls->pending && SSL_is_init_finished(tls->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(tls->ssl);
    }
    SSL_free(tls->ssl);   /* and its BIO */
    tls->ssl = NULL;
    tls->socket.fd = -1;
    /* Nothing of this connection stays in the thread's error queue for another caller to find. */
    ERR_clear_error();
}

static void tls_destroy(struct vfm_transport *base)
{
    struct tls_transport *tls = (struct tls_transport *)base;

    tls_stop(base);
    SSL_CTX_free(tls->ctx);
    BIO_meth_free(tls->bio_method);
    free(tls);
}

static const struct vfm_transport_ops TLS_OPS = {
    .start = tls_start,
    .send = tls_send,
    .receive = tls_receive,
    .stop = tls_stop,
    .destroy = tls_destroy,
};

int vfm_tls_transport_new(const struct vfm_address *address, struct vfm_transport **out, struct vfm_failure *failure)
{
    struct tls_transport *tls = calloc(1, sizeof(*tls));
    int rc;

    if (tls == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");
    tls->base.ops = &TLS_OPS;
    tls->socket.fd = -1;
    vfm_tls_peer_name(address, tls->peer_name, sizeof(tls->peer_name), &tls->peer_is_ip);
    rc = vfm_tls_context_new(address, &tls->ctx, failure);
    if (rc == 0) {
        /*
         * Read whatever the socket holds, not a record header and then its
         * body: half the recv calls for a megabyte response. Safe with our
         * poll loop, which waits only after OpenSSL says WANT_READ, that is,
         * when nothing it buffered makes a record yet.
         */
        SSL_CTX_set_read_ahead(tls->ctx, 1);
        tls->bio_method = vfm_tls_socket_bio_method();
        if (tls->bio_method == NULL)
            rc = vfm_fail(failure, -ENOMEM, "out of memory");
    }
    if (rc != 0) {
        SSL_CTX_free(tls->ctx);
        free(tls);
        vfm_fail_prefix(failure, "TLS credentials for %s", address->display);
        return rc;
    }
    *out = &tls->base;
    return 0;
}
