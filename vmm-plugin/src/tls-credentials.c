/* The TLS context of a tls: address; see tls-credentials.h. */
#include "tls-credentials.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls-error-text.h"

/* PEM certificate bundles and keys are a few KiB; anything far bigger is not one. */
#define MAX_PEM_FILE_BYTES (1024 * 1024)

void vfm_tls_peer_name(const struct vfm_address *address, char *name, size_t size, bool *is_ip)
{
    unsigned char binary[sizeof(struct in6_addr)];
    char *zone;

    snprintf(name, size, "%s", address->servername[0] != '\0' ? address->servername : address->host);
    zone = strchr(name, '%');
    if (zone != NULL) {
        *zone = '\0';
        if (inet_pton(AF_INET6, name, binary) != 1)
            *zone = '%';   /* not an IPv6 literal with a zone after all: keep the name as written */
    }
    *is_ip = inet_pton(AF_INET, name, binary) == 1 || inet_pton(AF_INET6, name, binary) == 1;
}

/* A file's contents, read once into memory; errors say which option's file and why. */
struct pem_file {
    const char *option;     /* "ca", "cert", "key" */
    const char *path;
    char *data;
    size_t length;
};

static int read_pem_file(struct pem_file *file, struct vfm_failure *failure)
{
    char text[96];
    struct stat info;
    ssize_t n = 0;
    /* O_NONBLOCK: a FIFO given by mistake must not hang init waiting for a writer. */
    int fd = open(file->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int rc;

    if (fd < 0) {
        rc = -errno;
        return vfm_fail(failure, rc, "%s=%s: cannot read it: %s", file->option, file->path,
                        vfm_strerror(-rc, text, sizeof(text)));
    }
    if (fstat(fd, &info) != 0) {
        rc = -errno;
        (void)close(fd);
        return vfm_fail(failure, rc, "%s=%s: cannot read it: %s", file->option, file->path,
                        vfm_strerror(-rc, text, sizeof(text)));
    }
    if (!S_ISREG(info.st_mode) || info.st_size > MAX_PEM_FILE_BYTES) {
        (void)close(fd);
        return vfm_fail(failure, -EINVAL, "%s=%s: not a PEM file (%s)", file->option, file->path,
                        S_ISREG(info.st_mode) ? "larger than 1 MiB" : "not a regular file");
    }
    file->data = malloc((size_t)info.st_size + 1);
    if (file->data == NULL) {
        (void)close(fd);
        return vfm_fail(failure, -ENOMEM, "out of memory");
    }
    file->length = 0;
    while ((off_t)file->length < info.st_size) {
        n = read(fd, file->data + file->length, (size_t)info.st_size - file->length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        file->length += (size_t)n;
    }
    if ((off_t)file->length < info.st_size) {
        rc = n < 0 ? -errno : -EIO;
        (void)close(fd);
        return vfm_fail(failure, rc, "%s=%s: cannot read it: %s", file->option, file->path,
                        n < 0 ? vfm_strerror(-rc, text, sizeof(text)) : "it shrank while being read");
    }
    (void)close(fd);
    return 0;
}

/* Frees a file's contents; a key's bytes are wiped first, so no copy of it lingers in freed memory. */
static void release_pem_file(struct pem_file *file)
{
    if (file->data != NULL)
        OPENSSL_cleanse(file->data, file->length);
    free(file->data);
    file->data = NULL;
}

/*
 * An encrypted key must fail init plainly, not make OpenSSL prompt for a
 * passphrase on QEMU's terminal. `asked` (a bool, or NULL) records that a
 * passphrase was wanted, so the message can say the key is encrypted.
 */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (asked != NULL)
        *(bool *)asked = true;
    return -1;
}

/* After a loop of PEM reads: the end of the file (no further PEM block) is the only good way for it to stop. */
static bool reached_end(void)
{
    unsigned long error = ERR_peek_last_error();

    if (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return true;
    }
    return false;
}

static int file_fault(const struct pem_file *file, const char *what, struct vfm_failure *failure)
{
    char reason[128];

    return vfm_fail(failure, -EINVAL, "%s=%s: %s (%s)", file->option, file->path, what,
                    vfm_tls_error_reason("no detail", reason, sizeof(reason)));
}

/* Every certificate in the ca file becomes a trust anchor; nothing else is trusted (no system store). */
static int load_ca(SSL_CTX *ctx, const struct pem_file *file, struct vfm_failure *failure)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(file->data, (int)file->length);
    int count = 0;
    X509 *cert;

    if (bio == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");
    while ((cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        int added = X509_STORE_add_cert(store, cert);

        X509_free(cert);
        if (added != 1) {
            BIO_free(bio);
            return file_fault(file, "a CA certificate is unusable", failure);
        }
        count++;
    }
    BIO_free(bio);
    if (count == 0 || !reached_end())
        return file_fault(file, count == 0 ? "holds no PEM certificate" : "a PEM block does not parse", failure);
    return 0;
}

/* The plugin's certificate, then any intermediates after it (sent along, as the agent's file does). */
static int load_certificate(SSL_CTX *ctx, const struct pem_file *file, struct vfm_failure *failure)
{
    BIO *bio = BIO_new_mem_buf(file->data, (int)file->length);
    X509 *cert;
    int rc = 0;

    if (bio == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");
    cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    if (cert == NULL) {
        BIO_free(bio);
        return file_fault(file, "holds no PEM certificate", failure);
    }
    if (SSL_CTX_use_certificate(ctx, cert) != 1)
        rc = file_fault(file, "the certificate is unusable", failure);
    X509_free(cert);
    while (rc == 0 && (cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        /* add0 takes the reference on success only. */
        if (SSL_CTX_add0_chain_cert(ctx, cert) != 1) {
            X509_free(cert);
            rc = file_fault(file, "an intermediate certificate is unusable", failure);
        }
    }
    BIO_free(bio);
    if (rc == 0 && !reached_end())
        rc = file_fault(file, "a PEM block after the certificate does not parse", failure);
    return rc;
}

static int load_key(SSL_CTX *ctx, const struct pem_file *file, const struct pem_file *cert_file,
                    struct vfm_failure *failure)
{
    BIO *bio = BIO_new_mem_buf(file->data, (int)file->length);
    bool encrypted = false;
    EVP_PKEY *key;
    int rc = 0;

    if (bio == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &encrypted);
    BIO_free(bio);
    if (key == NULL && encrypted) {
        ERR_clear_error();
        return vfm_fail(failure, -EINVAL, "key=%s is encrypted: the plugin cannot ask for a passphrase, give it the key "
                        "unencrypted (readable by QEMU's user only)", file->path);
    }
    if (key == NULL)
        return file_fault(file, "holds no PEM private key", failure);
    /* Checked here, so that the message names both files rather than OpenSSL's "key values mismatch". */
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1) {
        ERR_clear_error();
        rc = vfm_fail(failure, -EINVAL, "key=%s is not the private key of the certificate in cert=%s", file->path,
                      cert_file->path);
    } else if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        rc = file_fault(file, "the key is unusable", failure);
    }
    EVP_PKEY_free(key);
    return rc;
}

/* Chain to the CA and carry the agent's name (or IP): OpenSSL checks both during the handshake. */
static int set_verification(SSL_CTX *ctx, const struct vfm_address *address, struct vfm_failure *failure)
{
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    char name[sizeof(address->host) > sizeof(address->servername) ? sizeof(address->host) : sizeof(address->servername)];
    char reason[128];
    bool is_ip;
    int ok;

    vfm_tls_peer_name(address, name, sizeof(name), &is_ip);
    if (is_ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, name);
    } else {
        /* "*.mgmt" may stand for "dpu-7.mgmt", but "dpu*.mgmt" for nothing: partial wildcards are a known pitfall. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = X509_VERIFY_PARAM_set1_host(param, name, 0);
    }
    if (ok != 1)
        return vfm_fail(failure, -EINVAL, "cannot check the agent's certificate for %s (%s)", name,
                        vfm_tls_error_reason("rejected", reason, sizeof(reason)));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

int vfm_tls_context_new(const struct vfm_address *address, SSL_CTX **out, struct vfm_failure *failure)
{
    struct pem_file ca = { .option = "ca", .path = address->ca };
    struct pem_file cert = { .option = "cert", .path = address->cert };
    struct pem_file key = { .option = "key", .path = address->key };
    char reason[128];
    SSL_CTX *ctx;
    int rc;

    *out = NULL;
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return vfm_fail(failure, -ENOMEM, "cannot make a TLS context (%s)",
                        vfm_tls_error_reason("out of memory", reason, sizeof(reason)));
    /* The agent speaks 1.3 whatever its config; 1.2 here would only open a door for a downgrade. */
    rc = SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 ? 0
             : vfm_fail(failure, -EINVAL, "this OpenSSL cannot do TLS 1.3");
    if (rc == 0)
        rc = read_pem_file(&ca, failure);
    if (rc == 0)
        rc = read_pem_file(&cert, failure);
    if (rc == 0)
        rc = read_pem_file(&key, failure);
    if (rc == 0)
        rc = load_ca(ctx, &ca, failure);
    if (rc == 0)
        rc = load_certificate(ctx, &cert, failure);
    if (rc == 0)
        rc = load_key(ctx, &key, &cert, failure);
    if (rc == 0)
        rc = set_verification(ctx, address, failure);
    release_pem_file(&ca);
    release_pem_file(&cert);
    release_pem_file(&key);
    if (rc != 0) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return rc;
    }
    *out = ctx;
    return 0;
}
