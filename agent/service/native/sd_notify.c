/*
 * sendDatagram(address, message): one AF_UNIX datagram, as sd_notify(3)
 * sends it. Node has no AF_UNIX datagram sockets, and the package that
 * gives it one (node-unix-socket) has no build for linux-arm64, the SoC's
 * architecture; this is the one system call sequence the notify protocol
 * needs, as libsystemd's sd_notify does it: a socket per message, sent
 * without blocking, closed at once.
 *
 * `address` is a path, or an abstract name starting with NUL (the caller
 * turns NOTIFY_SOCKET's "@name" into "\0name"). A failure throws an Error
 * whose `code` is the errno name and whose message says which call failed.
 *
 * Node-API only (node-api-headers), so one build per architecture runs on
 * every Node from 18 on.
 */
#define _GNU_SOURCE /* strerrorname_np, glibc 2.32 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>

static napi_value throw_errno(napi_env env, const char *call, int error)
{
    char message[160];
    snprintf(message, sizeof message, "%s: %s", call, strerror(error));
    /* Node's own errors carry the errno's name as `code` (ENOENT, ECONNREFUSED...): so do these. */
    const char *name = strerrorname_np(error);
    char fallback[24];
    if (name == NULL) {
        snprintf(fallback, sizeof fallback, "E%d", error);
        name = fallback;
    }
    napi_throw_error(env, name, message);
    return NULL;
}

static napi_value send_datagram(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value argv[2];
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
        napi_throw_type_error(env, NULL, "sendDatagram(address: Buffer, message: Buffer)");
        return NULL;
    }
    void *address = NULL, *message = NULL;
    size_t address_length = 0, message_length = 0;
    bool is_buffer = false;
    if (napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer
        || napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer
        || napi_get_buffer_info(env, argv[0], &address, &address_length) != napi_ok
        || napi_get_buffer_info(env, argv[1], &message, &message_length) != napi_ok) {
        napi_throw_type_error(env, NULL, "sendDatagram(address: Buffer, message: Buffer)");
        return NULL;
    }
    struct sockaddr_un to;
    memset(&to, 0, sizeof to);
    to.sun_family = AF_UNIX;
    if (address_length == 0 || address_length > sizeof to.sun_path) return throw_errno(env, "address", ENAMETOOLONG);
    memcpy(to.sun_path, address, address_length);
    /* A path is NUL-terminated in sun_path (room was zeroed); an abstract name is exactly its bytes. */
    socklen_t to_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + address_length + (to.sun_path[0] == '\0' ? 0 : 1));
    if (to_length > sizeof to) to_length = sizeof to;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return throw_errno(env, "socket", errno);
    ssize_t sent = sendto(fd, message, message_length, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&to, to_length);
    int error = errno;
    close(fd);
    if (sent < 0) return throw_errno(env, "sendto", error);
    if ((size_t)sent != message_length) return throw_errno(env, "sendto", EMSGSIZE);
    return NULL;
}

NAPI_MODULE_INIT()
{
    napi_value function;
    if (napi_create_function(env, "sendDatagram", NAPI_AUTO_LENGTH, send_datagram, NULL, &function) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, "sendDatagram", function) != napi_ok) return NULL;
    return exports;
}
