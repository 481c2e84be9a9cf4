/*
 * The plugin argument (QEMU's x-plugin-arg): where the agent listens, and
 * options for talking to it.
 *
 *   ADDRESS[,OPTION=VALUE...]
 *   ADDRESS := HOST:PORT | tcp:HOST:PORT | tcp://HOST:PORT
 *            | tls:HOST:PORT | tls://HOST:PORT | unix:PATH
 *              (an IPv6 host in brackets: [::1]:7700)
 *   OPTION  := timeout_ms=N (1..600000, default 5000)
 *            | lease_ms=N  (50..86400000; default: the agent's leases.defaultMs)
 *            | attachments=on|off                 (default on: binary frames if the agent offers them)
 *            | ca=FILE | cert=FILE | key=FILE     (tls: only, and all three required there)
 *            | servername=NAME                    (tls: only)
 *
 * tls: is mutual TLS (1.3): the plugin presents cert/key (PEM; its first URI
 * SAN, else its CN, is the principal the agent authorizes) and accepts only
 * an agent certificate that chains to ca and names the agent: servername if
 * given (also sent as SNI), else the host, as an IP SAN for an IP literal
 * and as a DNS SAN for a name.
 *
 * lease_ms is the lease the plugin asks for on a VF's migration (leaseMs
 * on the calls that take the VF out of RUNNING, and on its renewals); the
 * agent refuses one longer than its leases.maxMs. It is an option of the
 * migration rather than of the address, but one grammar serves both.
 *
 * attachments=off keeps every state byte in base64 inside the JSON, as
 * with an agent that predates attachment frames (rpc-client.h): for
 * comparing the two, or for a path between that cannot pass them.
 *
 * The address ends at the first comma, and so does each value: a path
 * cannot hold one. Each option may be given once.
 */
#ifndef VFM_AGENT_ADDRESS_H
#define VFM_AGENT_ADDRESS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/un.h>

#include "agent-contract.h"
#include "failure.h"

#define VFM_DEFAULT_TIMEOUT_MS 5000
#define VFM_MAX_TIMEOUT_MS 600000
/* A DNS name is at most 253 characters (RFC 1035, without the final dot). */
#define VFM_MAX_SERVERNAME 253

enum vfm_address_kind { VFM_ADDRESS_TCP, VFM_ADDRESS_TLS, VFM_ADDRESS_UNIX };

struct vfm_address {
    enum vfm_address_kind kind;
    char host[256];                          /* TCP, TLS: name or literal, brackets removed */
    char port[6];                            /* TCP, TLS: decimal, as getaddrinfo wants it */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* Unix */
    char display[320];                       /* the address as the user wrote it, for messages */
    int timeout_ms;                          /* bound on connect (and handshake), each send and each receive */
    int lease_ms;                            /* the lease to ask for (VFM_AGENT_LEASE_MIN_MS..MAX); 0: not given */
    bool attachments;                        /* ask the agent for attachment frames on each connection */
    /* TLS only; empty otherwise. */
    char ca[PATH_MAX];                       /* PEM: the CA certificates the agent's certificate must chain to */
    char cert[PATH_MAX];                     /* PEM: the plugin's certificate, then any intermediates */
    char key[PATH_MAX];                      /* PEM: the plugin's private key, unencrypted */
    char servername[VFM_MAX_SERVERNAME + 1]; /* the name the agent's certificate must carry; empty: the host */
};

/* Parses `arg`; on failure returns -EINVAL and says why. Reads no file. */
int vfm_address_parse(const char *arg, struct vfm_address *address, struct vfm_failure *failure);

#endif
