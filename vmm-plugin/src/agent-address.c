/* Parsing the plugin argument; the grammar is in agent-address.h. */
#include "agent-address.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One entry per option. New ones (TLS: ca=, cert=, key=) add a field to
 * struct vfm_address and a row here; anything not in the table is refused,
 * so a typo never silently falls back to a default.
 */
struct option_spec {
    const char *name;
    int (*apply)(struct vfm_address *address, const char *value, struct vfm_failure *failure);
};

static int parse_decimal(const char *text, long min, long max, long *out)
{
    char *end = NULL;
    long value;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

static int apply_timeout_ms(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    long ms;

    if (parse_decimal(value, 1, VFM_MAX_TIMEOUT_MS, &ms) != 0)
        return vfm_fail(failure, -EINVAL, "timeout_ms=%s is not a whole number of milliseconds in 1..%d",
                        value, VFM_MAX_TIMEOUT_MS);
    address->timeout_ms = (int)ms;
    return 0;
}

static const struct option_spec OPTIONS[] = {
    { "timeout_ms", apply_timeout_ms },
};

static int apply_option(struct vfm_address *address, char *option, struct vfm_failure *failure)
{
    char *equals = strchr(option, '=');

    if (equals == NULL || equals == option)
        return vfm_fail(failure, -EINVAL, "option \"%s\" is not NAME=VALUE", option);
    *equals = '\0';
    for (size_t i = 0; i < sizeof(OPTIONS) / sizeof(OPTIONS[0]); i++) {
        if (strcmp(OPTIONS[i].name, option) == 0)
            return OPTIONS[i].apply(address, equals + 1, failure);
    }
    return vfm_fail(failure, -EINVAL, "unknown option \"%s\" (known: timeout_ms)", option);
}

static int parse_unix(const char *path, struct vfm_address *address, struct vfm_failure *failure)
{
    size_t len = strlen(path);

    if (len == 0)
        return vfm_fail(failure, -EINVAL, "unix: needs a socket path");
    if (len >= sizeof(address->path))
        return vfm_fail(failure, -EINVAL, "unix socket path is longer than %zu bytes", sizeof(address->path) - 1);
    address->kind = VFM_ADDRESS_UNIX;
    memcpy(address->path, path, len + 1);
    return 0;
}

static int parse_host_port(const char *text, struct vfm_address *address, struct vfm_failure *failure)
{
    const char *host = text;
    size_t host_len;
    const char *port;
    long port_number;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');

        if (close == NULL || close[1] != ':')
            return vfm_fail(failure, -EINVAL, "\"%s\" is not [IPV6]:PORT", text);
        host = text + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strchr(text, ':');

        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return vfm_fail(failure, -EINVAL, "\"%s\" is not HOST:PORT (an IPv6 host goes in brackets)", text);
        host_len = (size_t)(colon - text);
        port = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof(address->host))
        return vfm_fail(failure, -EINVAL, "\"%s\" has no usable host", text);
    if (parse_decimal(port, 1, 65535, &port_number) != 0)
        return vfm_fail(failure, -EINVAL, "\"%s\": the port is not a number in 1..65535", text);
    address->kind = VFM_ADDRESS_TCP;
    memcpy(address->host, host, host_len);
    address->host[host_len] = '\0';
    snprintf(address->port, sizeof(address->port), "%ld", port_number);
    return 0;
}

static int parse_location(const char *text, struct vfm_address *address, struct vfm_failure *failure)
{
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, address, failure);
    if (strncmp(text, "tcp://", 6) == 0)
        return parse_host_port(text + 6, address, failure);
    if (strncmp(text, "tcp:", 4) == 0)
        return parse_host_port(text + 4, address, failure);
    return parse_host_port(text, address, failure);
}

int vfm_address_parse(const char *arg, struct vfm_address *address, struct vfm_failure *failure)
{
    char *copy;
    char *options;
    int rc;

    memset(address, 0, sizeof(*address));
    address->timeout_ms = VFM_DEFAULT_TIMEOUT_MS;
    if (arg == NULL || arg[0] == '\0')
        return vfm_fail(failure, -EINVAL, "bad plugin argument: empty (want HOST:PORT, tcp:HOST:PORT or unix:PATH)");
    copy = strdup(arg);
    if (copy == NULL)
        return vfm_fail(failure, -ENOMEM, "out of memory");

    options = strchr(copy, ',');
    if (options != NULL)
        *options++ = '\0';
    if (strlen(copy) >= sizeof(address->display)) {
        rc = vfm_fail(failure, -EINVAL, "address is too long");
    } else {
        memcpy(address->display, copy, strlen(copy) + 1);
        rc = parse_location(copy, address, failure);
    }
    while (rc == 0 && options != NULL) {
        char *option = options;

        options = strchr(options, ',');
        if (options != NULL)
            *options++ = '\0';
        rc = apply_option(address, option, failure);
    }
    free(copy);
    if (rc != 0)
        vfm_fail_prefix(failure, "bad plugin argument \"%s\"", arg);
    return rc;
}
