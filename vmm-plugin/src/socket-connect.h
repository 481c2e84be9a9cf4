/*
 * Opening the stream socket to the agent: TCP (for tcp: and tls: alike) or
 * a Unix socket, non-blocking, connected before a deadline. What then runs
 * over it is the transport's business (transport.h).
 */
#ifndef VFM_SOCKET_CONNECT_H
#define VFM_SOCKET_CONNECT_H

#include <stdint.h>

#include "agent-address.h"
#include "failure.h"

/* Returns the connected socket, or a negative errno with the reason in *failure. */
int vfm_socket_connect(const struct vfm_address *address, int64_t deadline, struct vfm_failure *failure);

#endif
