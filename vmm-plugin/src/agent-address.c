/* Parsing the plugin argument; the grammar is in agent-address.h. */
#include "agent-address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One entry per option; anything not in the table is refused, so a typo
 * never silently falls back to a default. The two flags are what the
 * kinds of address make of an option: TLS credentials mean nothing to a
 * plain socket, and giving them there would suggest a protection that is
 * not in place, so they are refused rather than ignored.
 */
struct option_spec {
    const char *name;
    bool tls_only;          /* refused for tcp: and unix: */
    bool tls_required;      /* tls: without it is refused */
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

static int apply_lease_ms(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    long ms;

    if (parse_decimal(value, VFM_AGENT_LEASE_MIN_MS, VFM_AGENT_LEASE_MAX_MS, &ms) != 0)
        return vfm_fail(failure, -EINVAL, "lease_ms=%.32s is not a whole number of milliseconds in %d..%d", value,
                        VFM_AGENT_LEASE_MIN_MS, VFM_AGENT_LEASE_MAX_MS);
    address->lease_ms = (int)ms;
    return 0;
}

static int apply_attachments(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    if (strcmp(value, "on") == 0)
        address->attachments = true;
    else if (strcmp(value, "off") == 0)
        address->attachments = false;
    else
        return vfm_fail(failure, -EINVAL, "attachments=%.32s is neither on nor off", value);
    return 0;
}

/* Only the path is checked here; the file is read when the connection is prepared (init). */
static int copy_path(const char *name, const char *value, char *out, size_t size, struct vfm_failure *failure)
{
    size_t len = strlen(value);

    if (len == 0)
        return vfm_fail(failure, -EINVAL, "%s= needs a file path", name);
    if (len >= size)
        return vfm_fail(failure, -EINVAL, "%s= path is longer than %zu bytes", name, size - 1);
    memcpy(out, value, len + 1);
    return 0;
}

static int apply_ca(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    return copy_path("ca", value, address->ca, sizeof(address->ca), failure);
}

static int apply_cert(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    return copy_path("cert", value, address->cert, sizeof(address->cert), failure);
}

static int apply_key(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    return copy_path("key", value, address->key, sizeof(address->key), failure);
}

static bool is_ip_literal(const char *text)
{
    unsigned char binary[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, text, binary) == 1 || inet_pton(AF_INET6, text, binary) == 1;
}

/* A DNS name (letters, digits, '-', '_', dot-separated, no empty label) or an IP literal. */
static bool is_server_name(const char *text)
{
    size_t label = 0;

    if (is_ip_literal(text))
        return true;
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                   *c == '_') {
            label++;
        } else {
            return false;
        }
    }
    return label > 0;
}

static int apply_servername(struct vfm_address *address, const char *value, struct vfm_failure *failure)
{
    size_t len = strlen(value);

    if (len == 0 || len > VFM_MAX_SERVERNAME || !is_server_name(value))
        return vfm_fail(failure, -EINVAL, "servername=%.64s is not a DNS name of at most %d characters or an IP address",
                        value, VFM_MAX_SERVERNAME);
    memcpy(address->servername, value, len + 1);
    return 0;
}

static const struct option_spec OPTIONS[] = {
    { "timeout_ms", false, false, apply_timeout_ms },
    { "lease_ms", false, false, apply_lease_ms },
    { "attachments", false, false, apply_attachments },
    { "ca", true, true, apply_ca },
    { "cert", true, true, apply_cert },
    { "key", true, true, apply_key },
    { "servername", true, false, apply_servername },
};
#define OPTION_COUNT (sizeof(OPTIONS) / sizeof(OPTIONS[0]))

static void list_options(char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < OPTION_COUNT && used < size; i++) {
        int n = snprintf(out + used, size - used, "%s%s", i == 0 ? "" : ", ", OPTIONS[i].name);

        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Applies NAME=VALUE; *seen records which options were given, so none is given twice. */
static int apply_option(struct vfm_address *address, char *option, unsigned *seen, struct vfm_failure *failure)
{
    char *equals = strchr(option, '=');
    char known[128];

    if (equals == NULL || equals == option)
        return vfm_fail(failure, -EINVAL, "option \"%s\" is not NAME=VALUE", option);
    *equals = '\0';
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (strcmp(OPTIONS[i].name, option) != 0)
            continue;
        if (*seen & (1u << i))
            return vfm_fail(failure, -EINVAL, "option \"%s\" is given twice", option);
        *seen |= 1u << i;
        return OPTIONS[i].apply(address, equals + 1, failure);
    }
    list_options(known, sizeof(known));
    return vfm_fail(failure, -EINVAL, "unknown option \"%s\" (known: %s)", option, known);
}

/* What the kind of address makes of the options given: see struct option_spec. */
static int check_options_fit(const struct vfm_address *address, unsigned seen, struct vfm_failure *failure)
{
    bool tls = address->kind == VFM_ADDRESS_TLS;

    for (size_t i = 0; i < OPTION_COUNT; i++) {
        bool given = (seen & (1u << i)) != 0;

        if (given && OPTIONS[i].tls_only && !tls)
            return vfm_fail(failure, -EINVAL, "%s= is only for tls: addresses", OPTIONS[i].name);
        if (!given && OPTIONS[i].tls_required && tls)
            return vfm_fail(failure, -EINVAL, "tls: needs ca=FILE, cert=FILE and key=FILE (%s= is missing)",
                            OPTIONS[i].name);
    }
    return 0;
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

static int parse_host_port(const char *text, enum vfm_address_kind kind, struct vfm_address *address,
                           struct vfm_failure *failure)
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
    address->kind = kind;
    memcpy(address->host, host, host_len);
    address->host[host_len] = '\0';
    snprintf(address->port, sizeof(address->port), "%ld", port_number);
    return 0;
}

static int parse_location(const char *text, struct vfm_address *address, struct vfm_failure *failure)
{
    static const struct {
        const char *prefix;
        enum vfm_address_kind kind;
    } SCHEMES[] = {
        { "tcp://", VFM_ADDRESS_TCP }, { "tcp:", VFM_ADDRESS_TCP },
        { "tls://", VFM_ADDRESS_TLS }, { "tls:", VFM_ADDRESS_TLS },
    };

    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, address, failure);
    for (size_t i = 0; i < sizeof(SCHEMES) / sizeof(SCHEMES[0]); i++) {
        size_t len = strlen(SCHEMES[i].prefix);

        if (strncmp(text, SCHEMES[i].prefix, len) == 0)
            return parse_host_port(text + len, SCHEMES[i].kind, address, failure);
    }
    return parse_host_port(text, VFM_ADDRESS_TCP, address, failure);
}

int vfm_address_parse(const char *arg, struct vfm_address *address, struct vfm_failure *failure)
{
    char *copy;
    char *options;
    unsigned seen = 0;
    int rc;

    memset(address, 0, sizeof(*address));
    address->timeout_ms = VFM_DEFAULT_TIMEOUT_MS;
    address->attachments = true;
    if (arg == NULL || arg[0] == '\0')
        return vfm_fail(failure, -EINVAL,
                        "bad plugin argument: empty (want HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT,ca=...,cert=...,key=... "
                        "or unix:PATH)");
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
        rc = apply_option(address, option, &seen, failure);
    }
    if (rc == 0)
        rc = check_options_fit(address, seen, failure);
    free(copy);
    if (rc != 0)
        vfm_fail_prefix(failure, "bad plugin argument \"%s\"", arg);
    return rc;
}
