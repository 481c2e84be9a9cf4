/*
 * The plugin argument (QEMU's x-plugin-arg): where the agent listens, and
 * options for talking to it.
 *
 *   ADDRESS[,OPTION=VALUE...]
 *   ADDRESS := HOST:PORT | tcp:HOST:PORT | tcp://HOST:PORT | unix:PATH
 *              (an IPv6 host in brackets: [::1]:7700)
 *   OPTION  := timeout_ms (1..600000, default 5000)
 *
 * The address ends at the first comma, so a Unix socket path cannot hold one.
 */
#ifndef VFM_AGENT_ADDRESS_H
#define VFM_AGENT_ADDRESS_H

#include <sys/un.h>

#include "failure.h"

#define VFM_DEFAULT_TIMEOUT_MS 5000
#define VFM_MAX_TIMEOUT_MS 600000

enum vfm_address_kind { VFM_ADDRESS_TCP, VFM_ADDRESS_UNIX };

struct vfm_address {
    enum vfm_address_kind kind;
    char host[256];                          /* TCP: name or literal, brackets removed */
    char port[6];                            /* TCP: decimal, as getaddrinfo wants it */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* Unix */
    char display[320];                       /* the address as the user wrote it, for messages */
    int timeout_ms;                          /* bound on connect, each send and each receive */
};

/* Parses `arg`; on failure returns -EINVAL and says why. */
int vfm_address_parse(const char *arg, struct vfm_address *address, struct vfm_failure *failure);

#endif
