/*
 * Unit tests of the TLS transport under the connection's deadline loop,
 * against an in-process TLS server on a socketpair whose buffers are made
 * tiny, so that OpenSSL's WANT_WRITE and WANT_READ really happen (loopback
 * TCP against the agent seldom fills a buffer): a large request and a
 * large response in many records, an attachment frame read through
 * SSL_read (whole, and cut short with and without close_notify), a send
 * that cannot finish before its deadline, a handshake that never
 * completes, a peer that goes away. The
 * test process keeps SIGPIPE's default action, so a write of the plugin's
 * that raised it would kill `make check`.
 *
 * The certificate is made here (a self-signed one for "localhost", its own
 * trust anchor) and its files removed at the end.
 */
#include "tls-transport-tests.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attachment-frame.h"
#include "connection.h"
#include "transport.h"

#include "check.h"

#define BIG_BYTES (3u * 1024u * 1024u)

struct identity {
    char dir[64];
    char cert[128];
    char key[128];
};

static char pattern_byte(size_t i)
{
    return (char)('a' + i * 7 % 26);
}

static int write_identity(struct identity *id)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *san;
    X509_NAME *name;
    FILE *out;
    int ok = key != NULL && cert != NULL;

    snprintf(id->dir, sizeof(id->dir), "/tmp/vfmigd-unit-tls-XXXXXX");
    ok = ok && mkdtemp(id->dir) != NULL;
    snprintf(id->cert, sizeof(id->cert), "%s/localhost.crt", id->dir);
    snprintf(id->key, sizeof(id->key), "%s/localhost.key", id->dir);
    ok = ok && X509_set_version(cert, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(cert), 3600) != NULL && X509_set_pubkey(cert, key) == 1;
    name = ok ? X509_get_subject_name(cert) : NULL;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
         X509_set_issuer_name(cert, name) == 1;
    if (ok) {
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
        san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
        ok = san != NULL && X509_add_ext(cert, san, -1) == 1;
        X509_EXTENSION_free(san);
    }
    ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
    if (ok && (out = fopen(id->cert, "w")) != NULL) {
        ok = PEM_write_X509(out, cert) == 1;
        ok = fclose(out) == 0 && ok;
    } else {
        ok = false;
    }
    if (ok && (out = fopen(id->key, "w")) != NULL) {
        ok = PEM_write_PrivateKey(out, key, NULL, NULL, 0, NULL, NULL) == 1;
        ok = fclose(out) == 0 && ok;
    } else {
        ok = false;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

static void remove_identity(const struct identity *id)
{
    unlink(id->cert);
    unlink(id->key);
    rmdir(id->dir);
}

enum server_mode {
    SERVE_SLOW_ECHO,      /* read the request slowly, answer with a BIG_BYTES line */
    SERVE_NEVER_READ,     /* handshake, then read nothing until told to stop */
    SERVE_HANG_UP,        /* handshake, then close the socket */
    SERVE_FRAME,          /* read a line, answer with a BIG_BYTES attachment frame and a line */
    SERVE_FRAME_CUT,      /* ... but end with close_notify halfway through the frame's bytes */
    SERVE_FRAME_DROP,     /* ... but close the socket halfway through, with no close_notify */
};

#define FRAME_LINE "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"data\":{\"attachment\":3145728}}}"


struct server {
    pthread_t thread;
    SSL_CTX *ctx;
    int fd;
    enum server_mode mode;
    int stop_pipe[2];     /* NEVER_READ: the test writes here when done */
    size_t request_bytes; /* SLOW_ECHO: what arrived before the newline */
    bool request_ok;      /* ... and whether it was the pattern */
};

static bool read_request(SSL *ssl, struct server *server)
{
    char buffer[4096];
    size_t pattern_at = 0;
    int reads = 0;

    server->request_ok = true;
    for (;;) {
        int n = SSL_read(ssl, buffer, sizeof(buffer));

        if (n <= 0)
            return false;
        /* Slow at first: the client's tiny send buffer fills and its SSL_write says WANT_WRITE. */
        if (reads++ < 64) {
            struct timespec pause = { .tv_sec = 0, .tv_nsec = 500000 };

            nanosleep(&pause, NULL);
        }
        for (int i = 0; i < n; i++) {
            if (buffer[i] == '\n')
                return true;
            if (server->request_bytes >= 4 && buffer[i] != pattern_byte(pattern_at++))
                server->request_ok = false;
            server->request_bytes++;
        }
    }
}

/* A line in, then a frame of BIG_BYTES (in as many records as SSL_write makes) and its text, or half the frame. */
static void serve_frame(SSL *ssl, enum server_mode mode)
{
    size_t total = VFM_FRAME_HEADER_BYTES + BIG_BYTES + 1 + sizeof(FRAME_LINE);
    size_t send = mode == SERVE_FRAME ? total : VFM_FRAME_HEADER_BYTES + BIG_BYTES / 2;
    uint8_t *out = malloc(total);
    char byte;

    while (SSL_read(ssl, &byte, 1) == 1 && byte != '\n')
        continue;
    if (out == NULL)
        return;
    vfm_frame_header(out, BIG_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++)
        out[VFM_FRAME_HEADER_BYTES + i] = (uint8_t)pattern_byte(i);
    out[VFM_FRAME_HEADER_BYTES + BIG_BYTES] = ' ';
    memcpy(out + VFM_FRAME_HEADER_BYTES + BIG_BYTES + 1, FRAME_LINE "\n", sizeof(FRAME_LINE));
    (void)SSL_write(ssl, out, (int)send);
    if (mode == SERVE_FRAME_CUT)
        (void)SSL_shutdown(ssl);
    free(out);
}

static void *serve(void *opaque)
{
    struct server *server = opaque;
    SSL *ssl = SSL_new(server->ctx);
    sigset_t pipe_only;

    /* The server's own writes may meet a closed peer: that thread-directed SIGPIPE stays blocked here. */
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    if (ssl == NULL || SSL_set_fd(ssl, server->fd) != 1 || SSL_accept(ssl) != 1)
        goto done;
    if (server->mode == SERVE_SLOW_ECHO && read_request(ssl, server)) {
        char *line = malloc(BIG_BYTES + 1);

        if (line != NULL) {
            for (size_t i = 0; i < BIG_BYTES; i++)
                line[i] = pattern_byte(i);
            line[BIG_BYTES] = '\n';
            (void)SSL_write(ssl, line, (int)BIG_BYTES + 1);
            free(line);
        }
    } else if (server->mode == SERVE_FRAME || server->mode == SERVE_FRAME_CUT || server->mode == SERVE_FRAME_DROP) {
        serve_frame(ssl, server->mode);
    } else if (server->mode == SERVE_NEVER_READ) {
        char byte;

        (void)read(server->stop_pipe[0], &byte, 1);
    }
done:
    SSL_free(ssl);
    close(server->fd);
    return NULL;
}

static SSL_CTX *server_context(const struct identity *id)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_file(ctx, id->cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, id->key, SSL_FILETYPE_PEM) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* A socketpair with the smallest buffers the kernel allows; the client end non-blocking, as the plugin's. */
static int tiny_socketpair(int fds[2])
{
    int small = 1;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        (void)setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        (void)setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    return fcntl(fds[0], F_SETFL, O_NONBLOCK);
}

/* Starts a server thread on one end and the plugin's TLS transport on the other (deadline_ms for the handshake). */
static int connect_pair(struct vfm_connection *conn, struct server *server, SSL_CTX *ctx, enum server_mode mode,
                        int deadline_ms, bool with_server, struct vfm_failure *failure)
{
    int fds[2];
    int rc;

    memset(server, 0, sizeof(*server));
    server->ctx = ctx;
    server->mode = mode;
    server->fd = -1;
    server->stop_pipe[0] = server->stop_pipe[1] = -1;
    if (tiny_socketpair(fds) != 0 || pipe(server->stop_pipe) != 0)
        return -1;
    server->fd = fds[1];
    if (with_server && pthread_create(&server->thread, NULL, serve, server) != 0)
        return -1;
    rc = conn->transport->ops->start(conn->transport, fds[0], vfm_deadline_after_ms(deadline_ms), failure);
    if (rc != 0) {
        conn->transport->ops->stop(conn->transport);
        close(fds[0]);
        return rc;
    }
    conn->fd = fds[0];
    return 0;
}

static void finish_server(struct server *server, bool with_server)
{
    if (server->stop_pipe[1] >= 0)
        (void)write(server->stop_pipe[1], "x", 1);
    if (with_server)
        pthread_join(server->thread, NULL);
    else if (server->fd >= 0)
        close(server->fd);
    close(server->stop_pipe[0]);
    close(server->stop_pipe[1]);
}

static double elapsed_ms(int64_t since)
{
    return (double)(vfm_now_ns() - since) / 1e6;
}

static void big_round_trip(struct vfm_connection *conn, SSL_CTX *ctx, int *failures)
{
    struct vfm_failure failure;
    struct server server;
    char *body = malloc(BIG_BYTES);
    struct iovec iov[3];
    char *line = NULL;
    size_t length = 0;
    bool same = true;

    CHECK(body != NULL);
    if (body == NULL)
        return;
    for (size_t i = 0; i < BIG_BYTES; i++)
        body[i] = pattern_byte(i);
    iov[0] = (struct iovec){ .iov_base = "head", .iov_len = 4 };
    iov[1] = (struct iovec){ .iov_base = body, .iov_len = BIG_BYTES };
    iov[2] = (struct iovec){ .iov_base = "\n", .iov_len = 1 };
    CHECK(connect_pair(conn, &server, ctx, SERVE_SLOW_ECHO, 2000, true, &failure) == 0);
    CHECK(vfm_connection_send(conn, iov, 3, vfm_deadline_after_ms(5000), &failure) == 0);
    CHECK(vfm_connection_receive_line(conn, vfm_deadline_after_ms(5000), &line, &length, &failure) == 0);
    CHECK(length == BIG_BYTES);
    for (size_t i = 0; line != NULL && i < length && same; i++)
        same = line[i] == pattern_byte(i);
    CHECK(same);
    vfm_connection_close(conn);
    finish_server(&server, true);
    CHECK(server.request_bytes == BIG_BYTES + 4 && server.request_ok);
    free(body);
}

static void send_deadline(struct vfm_connection *conn, SSL_CTX *ctx, int *failures)
{
    struct vfm_failure failure;
    struct server server;
    char *body = calloc(1, BIG_BYTES);
    struct iovec iov = { .iov_base = body, .iov_len = BIG_BYTES };
    int64_t started;

    CHECK(body != NULL && connect_pair(conn, &server, ctx, SERVE_NEVER_READ, 2000, true, &failure) == 0);
    started = vfm_now_ns();
    CHECK(vfm_connection_send(conn, &iov, 1, vfm_deadline_after_ms(150), &failure) == -ETIMEDOUT);
    CHECK(strcmp(failure.text, "timed out sending") == 0);
    CHECK(elapsed_ms(started) >= 150 && elapsed_ms(started) < 1500);
    CHECK(!vfm_connection_is_open(conn));
    finish_server(&server, true);
    free(body);
}

static void handshake_deadline(struct vfm_connection *conn, SSL_CTX *ctx, int *failures)
{
    struct vfm_failure failure;
    struct server server;
    int64_t started = vfm_now_ns();

    /* Nobody answers the ClientHello. */
    CHECK(connect_pair(conn, &server, ctx, SERVE_NEVER_READ, 150, false, &failure) == -ETIMEDOUT);
    CHECK(strcmp(failure.text, "TLS handshake timed out") == 0);
    CHECK(elapsed_ms(started) >= 150 && elapsed_ms(started) < 1500);
    finish_server(&server, false);
}

static void peer_hangs_up(struct vfm_connection *conn, SSL_CTX *ctx, int *failures)
{
    struct vfm_failure failure;
    struct server server;
    char *body = calloc(1, BIG_BYTES);
    struct iovec iov = { .iov_base = body, .iov_len = BIG_BYTES };
    char *line;
    size_t length;

    /* Closed after the handshake, as the agent does with a certificate it refuses. */
    CHECK(body != NULL && connect_pair(conn, &server, ctx, SERVE_HANG_UP, 2000, true, &failure) == 0);
    CHECK(vfm_connection_receive_line(conn, vfm_deadline_after_ms(2000), &line, &length, &failure) == -ECONNRESET);
    CHECK(strstr(failure.text, "closed the TLS connection before its first response") != NULL);
    finish_server(&server, true);
    /* A write into a closed socket: an error, never SIGPIPE (which would end this process). */
    CHECK(connect_pair(conn, &server, ctx, SERVE_HANG_UP, 2000, true, &failure) == 0);
    pthread_join(server.thread, NULL);
    CHECK(vfm_connection_send(conn, &iov, 1, vfm_deadline_after_ms(2000), &failure) == -ECONNRESET);
    CHECK(!vfm_connection_is_open(conn));
    close(server.stop_pipe[0]);
    close(server.stop_pipe[1]);
    free(body);
}

/* The frame's bytes come out of SSL_read straight into the sink, split across many records. */
static void frame_through_tls(struct vfm_connection *conn, SSL_CTX *ctx, int *failures)
{
    struct vfm_failure failure;
    struct server server;
    uint8_t *sink_memory = malloc(BIG_BYTES + 1);
    struct vfm_attachment_sink sink = { .buffer = sink_memory, .capacity = BIG_BYTES };
    struct iovec iov = { .iov_base = "{}\n", .iov_len = 3 };
    char *line = NULL;
    size_t length = 0;
    bool same = true;

    CHECK(sink_memory != NULL);
    if (sink_memory == NULL)
        return;
    sink_memory[BIG_BYTES] = 0x5A;
    CHECK(connect_pair(conn, &server, ctx, SERVE_FRAME, 2000, true, &failure) == 0);
    CHECK(vfm_connection_send(conn, &iov, 1, vfm_deadline_after_ms(5000), &failure) == 0);
    CHECK(vfm_connection_receive(conn, vfm_deadline_after_ms(5000), &sink, &line, &length, &failure) == 0);
    CHECK(sink.received && sink.length == BIG_BYTES && sink_memory[BIG_BYTES] == 0x5A);
    for (size_t i = 0; i < BIG_BYTES && same; i++)
        same = sink_memory[i] == (uint8_t)pattern_byte(i);
    CHECK(same);
    CHECK(line != NULL && length == strlen(FRAME_LINE) && memcmp(line, FRAME_LINE, length) == 0);
    vfm_connection_close(conn);
    finish_server(&server, true);

    /* Cut halfway through the frame's bytes: an orderly TLS end, then a bare close. */
    for (int drop = 0; drop <= 1; drop++) {
        iov = (struct iovec){ .iov_base = "{}\n", .iov_len = 3 };
        CHECK(connect_pair(conn, &server, ctx, drop ? SERVE_FRAME_DROP : SERVE_FRAME_CUT, 2000, true, &failure) == 0);
        CHECK(vfm_connection_send(conn, &iov, 1, vfm_deadline_after_ms(5000), &failure) == 0);
        CHECK(vfm_connection_receive(conn, vfm_deadline_after_ms(5000), &sink, &line, &length, &failure) == -ECONNRESET);
        CHECK(strstr(failure.text, "in the middle of an attachment frame (1572864 of its 3145728 bytes came)") != NULL);
        if (strstr(failure.text, "in the middle of an attachment frame") == NULL)
            fprintf(stderr, "  got: %s\n", failure.text);
        CHECK(!sink.received && !vfm_connection_is_open(conn) && sink_memory[BIG_BYTES] == 0x5A);
        finish_server(&server, true);
    }
    free(sink_memory);
}

int run_tls_transport_tests(void)
{
    int count = 0;
    int *failures = &count;
    struct identity id;
    struct vfm_address address;
    struct vfm_connection conn;
    struct vfm_failure failure;
    char arg[512];
    SSL_CTX *server_ctx;

    CHECK(write_identity(&id) == 0);
    server_ctx = server_context(&id);
    CHECK(server_ctx != NULL);
    snprintf(arg, sizeof(arg), "tls:localhost:1,ca=%s,cert=%s,key=%s", id.cert, id.cert, id.key);
    CHECK(vfm_address_parse(arg, &address, &failure) == 0);
    vfm_connection_init(&conn, &address);
    CHECK(vfm_connection_prepare(&conn, &failure) == 0);
    if (count == 0) {
        big_round_trip(&conn, server_ctx, failures);
        frame_through_tls(&conn, server_ctx, failures);
        send_deadline(&conn, server_ctx, failures);
        handshake_deadline(&conn, server_ctx, failures);
        peer_hangs_up(&conn, server_ctx, failures);
    } else {
        fprintf(stderr, "  TLS set-up failed: %s\n", failure.text);
    }
    vfm_connection_destroy(&conn);
    SSL_CTX_free(server_ctx);
    remove_identity(&id);
    return count;
}
