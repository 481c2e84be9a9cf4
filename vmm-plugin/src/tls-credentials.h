/*
 * The client side of a tls: address, built once at init: the plugin's
 * certificate and key, the CA the agent's certificate must chain to, TLS
 * 1.3 at least, and the agent's name or IP that its certificate must carry.
 * Every file is read here and nowhere else, so a reconnect in the
 * stop-and-copy window reads no file, and a wrong file fails init.
 */
#ifndef VFM_TLS_CREDENTIALS_H
#define VFM_TLS_CREDENTIALS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent-address.h"
#include "failure.h"

/*
 * The name the agent's certificate must carry: servername= if given, else
 * the host (an IPv6 zone such as "%eth0" dropped: no certificate names
 * one). *is_ip: an IP literal, checked against the IP SANs and not sent as
 * SNI (which names hosts only); else a DNS name, checked against the DNS
 * SANs and sent as SNI.
 */
void vfm_tls_peer_name(const struct vfm_address *address, char *name, size_t size, bool *is_ip);

/* Reads the files and builds the context; the reason names the wrong file and says why, never what is in it. */
int vfm_tls_context_new(const struct vfm_address *address, SSL_CTX **out, struct vfm_failure *failure);

#endif
