/*
 * Unit tests of the plugin's pure parts (no agent needed): base64 at every
 * padding and against malformed text, the plugin-argument grammar (tls:
 * included, and how a credential file that cannot serve is refused), the
 * v1 <-> v2 state table, the refusal -> errno table, the TLS transport
 * against an in-process server (tls-transport-tests.c), attachment frames
 * against a scripted agent (attachment-tests.c), the migration lease
 * and its renewer thread against one (lease-tests.c), and what the plugin
 * does against an agent restarted mid-migration (recovery-tests.c). `make
 * check` runs it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-address.h"
#include "agent-contract.h"
#include "attachment-tests.h"
#include "base64.h"
#include "lease-tests.h"
#include "recovery-tests.h"
#include "refusal-errno.h"
#include "state-map.h"
#include "tls-credentials.h"
#include "tls-transport-tests.h"
#include "vfio-migration-plugin.h"

static int failure_count;
/* check.h counts through a pointer, as the other test files are handed one. */
static int *const failures = &failure_count;

#include "check.h"

static void test_base64_round_trips(void)
{
    uint8_t in[64];
    char text[128];

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(in); n++) {
        /* A guard byte right after the output catches a write of EVP_DecodeBlock's padding bytes. */
        uint8_t out[sizeof(in) + 1];
        size_t len = vfm_base64_encode(in, n, text);

        CHECK(len == vfm_base64_encoded_length(n));
        memset(out, 0xA5, sizeof(out));
        CHECK(vfm_base64_decode_exact(text, len, out, n) == 0);
        CHECK(memcmp(out, in, n) == 0);
        CHECK(out[n] == 0xA5);
    }
}

static void test_base64_rejects(void)
{
    uint8_t out[8];

    CHECK(vfm_base64_decode_exact("QUJD", 4, out, 3) == 0 && memcmp(out, "ABC", 3) == 0);
    CHECK(vfm_base64_decode_exact("QUI=", 4, out, 2) == 0 && memcmp(out, "AB", 2) == 0);
    CHECK(vfm_base64_decode_exact("QQ==", 4, out, 1) == 0 && out[0] == 'A');
    CHECK(vfm_base64_decode_exact("QQ==", 4, out, 2) != 0);      /* length disagrees with the padding */
    CHECK(vfm_base64_decode_exact("QUJD", 4, out, 2) != 0);
    CHECK(vfm_base64_decode_exact("QUJ", 3, out, 2) != 0);       /* not a whole quad */
    CHECK(vfm_base64_decode_exact("Q=JD", 4, out, 3) != 0);      /* padding in the middle of a quad */
    CHECK(vfm_base64_decode_exact("QQ==QUJD", 8, out, 4) != 0);  /* padding before the last quad */
    CHECK(vfm_base64_decode_exact("QU*D", 4, out, 3) != 0);      /* not base64 */
    CHECK(vfm_base64_decode_exact("", 0, out, 0) == 0);
}

#define CREDS ",ca=/etc/vfmigd/ca.crt,cert=/etc/vfmigd/hv-17.crt,key=/etc/vfmigd/hv-17.key"

static int parse(const char *arg, struct vfm_address *address)
{
    struct vfm_failure failure;

    return vfm_address_parse(arg, address, &failure);
}

static void test_address(void)
{
    struct vfm_address a;
    struct vfm_failure failure;

    CHECK(parse("127.0.0.1:7700", &a) == 0 && a.kind == VFM_ADDRESS_TCP && strcmp(a.host, "127.0.0.1") == 0 &&
          strcmp(a.port, "7700") == 0 && a.timeout_ms == VFM_DEFAULT_TIMEOUT_MS);
    CHECK(parse("tcp:agent.local:80", &a) == 0 && strcmp(a.host, "agent.local") == 0 && strcmp(a.port, "80") == 0);
    CHECK(parse("tcp://10.0.0.1:7700", &a) == 0 && strcmp(a.host, "10.0.0.1") == 0);
    CHECK(parse("[::1]:7700", &a) == 0 && strcmp(a.host, "::1") == 0 && strcmp(a.port, "7700") == 0);
    CHECK(parse("tcp:[fe80::1%eth0]:1,timeout_ms=250", &a) == 0 && strcmp(a.host, "fe80::1%eth0") == 0 &&
          a.timeout_ms == 250);
    CHECK(parse("unix:/run/vfmigd/vfmigd.sock", &a) == 0 && a.kind == VFM_ADDRESS_UNIX &&
          strcmp(a.path, "/run/vfmigd/vfmigd.sock") == 0 && strcmp(a.display, "unix:/run/vfmigd/vfmigd.sock") == 0);
    CHECK(parse("unix:/s,timeout_ms=1", &a) == 0 && strcmp(a.path, "/s") == 0 && a.timeout_ms == 1);

    CHECK(parse(NULL, &a) == -EINVAL);
    CHECK(parse("", &a) == -EINVAL);
    CHECK(parse("127.0.0.1", &a) == -EINVAL);
    CHECK(parse("::1:7700", &a) == -EINVAL);
    CHECK(parse("[::1]7700", &a) == -EINVAL);
    CHECK(parse(":7700", &a) == -EINVAL);
    CHECK(parse("h:0", &a) == -EINVAL);
    CHECK(parse("h:65536", &a) == -EINVAL);
    CHECK(parse("h:+80", &a) == -EINVAL);
    CHECK(parse("unix:", &a) == -EINVAL);
    CHECK(parse("h:1,timeout_ms=0", &a) == -EINVAL);
    CHECK(parse("h:1,timeout_ms=600001", &a) == -EINVAL);
    CHECK(parse("h:1,timeout_ms=5s", &a) == -EINVAL);
    CHECK(parse("h:1,timeout_ms", &a) == -EINVAL);
    CHECK(vfm_address_parse("h:1,tls_min=1.2", &a, &failure) == -EINVAL &&
          strstr(failure.text, "unknown option \"tls_min\" (known: timeout_ms, lease_ms, attachments, ca, cert, key, servername)") != NULL);
    CHECK(vfm_address_parse("h:1,timeout_ms=5,timeout_ms=6", &a, &failure) == -EINVAL &&
          strstr(failure.text, "\"timeout_ms\" is given twice") != NULL);
}

/* attachments=on|off, for every kind of address; on (use them if the agent offers them) by default. */
static void test_attachments_option(void)
{
    struct vfm_address a;
    struct vfm_failure failure;

    CHECK(parse("127.0.0.1:7700", &a) == 0 && a.attachments);
    CHECK(parse("tcp:h:1,attachments=off", &a) == 0 && !a.attachments);
    CHECK(parse("h:1,attachments=on,timeout_ms=9", &a) == 0 && a.attachments && a.timeout_ms == 9);
    CHECK(parse("unix:/run/vfmigd.sock,attachments=off", &a) == 0 && !a.attachments &&
          strcmp(a.path, "/run/vfmigd.sock") == 0);
    CHECK(parse("tls:h:1,attachments=off" CREDS, &a) == 0 && !a.attachments && a.kind == VFM_ADDRESS_TLS);
    CHECK(parse("tls:h:1" CREDS, &a) == 0 && a.attachments);
    CHECK(vfm_address_parse("h:1,attachments=no", &a, &failure) == -EINVAL &&
          strstr(failure.text, "attachments=no is neither on nor off") != NULL);
    CHECK(vfm_address_parse("h:1,attachments=", &a, &failure) == -EINVAL);
    CHECK(vfm_address_parse("h:1,attachments=off,attachments=on", &a, &failure) == -EINVAL &&
          strstr(failure.text, "\"attachments\" is given twice") != NULL);
}

/* Parses `arg`, expecting -EINVAL with `reason` in the message. */
static int refused_with(const char *arg, const char *reason)
{
    struct vfm_address a;
    struct vfm_failure failure;
    int ok = vfm_address_parse(arg, &a, &failure) == -EINVAL && strstr(failure.text, reason) != NULL;

    if (!ok)
        fprintf(stderr, "  %s -> %s\n", arg, failure.text);
    return ok;
}

/* lease_ms=N for every kind of address: the agent's leaseMs bounds (agent-contract.h), else refused, naming them. */
static void test_lease_option(void)
{
    struct vfm_address a;

    CHECK(parse("127.0.0.1:7700", &a) == 0 && a.lease_ms == 0);
    CHECK(parse("h:1,lease_ms=1000", &a) == 0 && a.lease_ms == 1000 && a.timeout_ms == VFM_DEFAULT_TIMEOUT_MS);
    CHECK(parse("unix:/run/vfmigd.sock,lease_ms=50", &a) == 0 && a.lease_ms == 50 && strcmp(a.path, "/run/vfmigd.sock") == 0);
    CHECK(parse("tls:h:1,lease_ms=86400000" CREDS, &a) == 0 && a.lease_ms == 86400000 && a.kind == VFM_ADDRESS_TLS);
    CHECK(parse("tcp:h:1,timeout_ms=250,lease_ms=600000,attachments=off", &a) == 0 && a.lease_ms == 600000 &&
          a.timeout_ms == 250 && !a.attachments);
    CHECK(VFM_AGENT_LEASE_MIN_MS == 50 && VFM_AGENT_LEASE_MAX_MS == 86400000);
    CHECK(refused_with("h:1,lease_ms=49", "lease_ms=49 is not a whole number of milliseconds in 50..86400000"));
    CHECK(refused_with("h:1,lease_ms=86400001", "lease_ms=86400001 is not a whole number of milliseconds in 50..86400000"));
    CHECK(refused_with("h:1,lease_ms=0", "lease_ms=0 is not"));
    CHECK(refused_with("h:1,lease_ms=-1000", "lease_ms=-1000 is not"));
    CHECK(refused_with("h:1,lease_ms=+1000", "lease_ms=+1000 is not"));
    CHECK(refused_with("h:1,lease_ms=30s", "lease_ms=30s is not"));
    CHECK(refused_with("h:1,lease_ms=1e4", "lease_ms=1e4 is not"));
    CHECK(refused_with("h:1,lease_ms=99999999999999999999", "is not a whole number of milliseconds"));
    CHECK(refused_with("h:1,lease_ms=", "lease_ms= is not"));
    CHECK(refused_with("h:1,lease_ms", "option \"lease_ms\" is not NAME=VALUE"));
    CHECK(refused_with("h:1,lease_ms=1000,lease_ms=2000", "\"lease_ms\" is given twice"));
    CHECK(refused_with("h:1,leaseMs=1000", "unknown option \"leaseMs\""));
    /* The message names the whole argument, as for every refusal. */
    CHECK(refused_with("h:1,lease_ms=10", "bad plugin argument \"h:1,lease_ms=10\""));
}

static void test_tls_address(void)
{
    struct vfm_address a;
    char long_path[PATH_MAX + 16];
    char arg[PATH_MAX + 128];
    char long_name[VFM_MAX_SERVERNAME + 2];

    CHECK(parse("tls:10.0.0.7:7701" CREDS, &a) == 0 && a.kind == VFM_ADDRESS_TLS && strcmp(a.host, "10.0.0.7") == 0 &&
          strcmp(a.port, "7701") == 0 && strcmp(a.ca, "/etc/vfmigd/ca.crt") == 0 &&
          strcmp(a.cert, "/etc/vfmigd/hv-17.crt") == 0 && strcmp(a.key, "/etc/vfmigd/hv-17.key") == 0 &&
          a.servername[0] == '\0' && a.timeout_ms == VFM_DEFAULT_TIMEOUT_MS &&
          strcmp(a.display, "tls:10.0.0.7:7701") == 0);
    CHECK(parse("tls://[::1]:7701,servername=dpu-7.mgmt,timeout_ms=250" CREDS, &a) == 0 && a.kind == VFM_ADDRESS_TLS &&
          strcmp(a.host, "::1") == 0 && strcmp(a.servername, "dpu-7.mgmt") == 0 && a.timeout_ms == 250);
    /* Options in any order; relative paths are the user's business. */
    CHECK(parse("tls:dpu-7.mgmt:7701,key=k.pem,cert=c.pem,ca=ca.pem", &a) == 0 && strcmp(a.key, "k.pem") == 0);
    CHECK(parse("tls:h:1,servername=10.0.0.7" CREDS, &a) == 0 && strcmp(a.servername, "10.0.0.7") == 0);
    CHECK(parse("tls:h:1,servername=fe80::1" CREDS, &a) == 0);

    /* Each credential is required, and named when missing. */
    CHECK(refused_with("tls:h:1", "tls: needs ca=FILE, cert=FILE and key=FILE (ca= is missing)"));
    CHECK(refused_with("tls:h:1,ca=/a,cert=/b", "(key= is missing)"));
    CHECK(refused_with("tls:h:1,ca=/a,key=/c", "(cert= is missing)"));
    CHECK(refused_with("tls:h:1,cert=/b,key=/c", "(ca= is missing)"));
    /* ... and meaningless, so refused, without TLS. */
    CHECK(refused_with("h:1,ca=/etc/ca.pem", "ca= is only for tls: addresses"));
    CHECK(refused_with("tcp:h:1,cert=/b", "cert= is only for tls: addresses"));
    CHECK(refused_with("unix:/run/s,key=/c", "key= is only for tls: addresses"));
    CHECK(refused_with("tcp://h:1,servername=dpu", "servername= is only for tls: addresses"));
    CHECK(refused_with("tls:h:1,ca=,cert=/b,key=/c", "ca= needs a file path"));
    CHECK(refused_with("tls:h:1,ca=/a,cert=/b,key=", "key= needs a file path"));
    CHECK(refused_with("tls:h:1,ca=/a,ca=/a2,cert=/b,key=/c", "\"ca\" is given twice"));
    CHECK(refused_with("tls:h:1,servername=a,servername=b" CREDS, "\"servername\" is given twice"));
    CHECK(refused_with("tls:h:1,servername=" CREDS, "is not a DNS name"));
    CHECK(refused_with("tls:h:1,servername=dpu 7" CREDS, "is not a DNS name"));
    CHECK(refused_with("tls:h:1,servername=*.mgmt" CREDS, "is not a DNS name"));
    CHECK(refused_with("tls:h:1,servername=dpu..mgmt" CREDS, "is not a DNS name"));
    CHECK(refused_with("tls:h:1,servername=.mgmt" CREDS, "is not a DNS name"));
    CHECK(refused_with("tls:h:1,servername=dpu.mgmt." CREDS, "is not a DNS name"));
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    snprintf(arg, sizeof(arg), "tls:h:1,servername=%s" CREDS, long_name);
    CHECK(refused_with(arg, "is not a DNS name of at most 253 characters"));
    memset(long_path, 'p', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    snprintf(arg, sizeof(arg), "tls:h:1,ca=/a,cert=%s,key=/c", long_path);
    CHECK(refused_with(arg, "cert= path is longer than"));
    /* The address part follows the tcp: grammar. */
    CHECK(refused_with("tls::7701" CREDS, "has no usable host"));
    CHECK(refused_with("tls:" CREDS, "\"\" is not HOST:PORT"));
    CHECK(refused_with("tls:h" CREDS, "is not HOST:PORT"));
    CHECK(refused_with("tls:::1:7701" CREDS, "is not HOST:PORT (an IPv6 host goes in brackets)"));
    CHECK(refused_with("tls://h:0" CREDS, "the port is not a number"));
    CHECK(refused_with("tls:h:1,ca" CREDS, "option \"ca\" is not NAME=VALUE"));
}

static void test_tls_peer_name(void)
{
    struct vfm_address a;
    char name[256];
    bool is_ip;

    CHECK(parse("tls:10.0.0.7:7701" CREDS, &a) == 0);
    vfm_tls_peer_name(&a, name, sizeof(name), &is_ip);
    CHECK(strcmp(name, "10.0.0.7") == 0 && is_ip);
    CHECK(parse("tls:[fe80::1%eth0]:7701" CREDS, &a) == 0);
    vfm_tls_peer_name(&a, name, sizeof(name), &is_ip);
    CHECK(strcmp(name, "fe80::1") == 0 && is_ip);   /* the zone is the host's, not the certificate's */
    CHECK(parse("tls:dpu-7.mgmt:7701" CREDS, &a) == 0);
    vfm_tls_peer_name(&a, name, sizeof(name), &is_ip);
    CHECK(strcmp(name, "dpu-7.mgmt") == 0 && !is_ip);
    CHECK(parse("tls:10.0.0.7:7701,servername=dpu-7.mgmt" CREDS, &a) == 0);
    vfm_tls_peer_name(&a, name, sizeof(name), &is_ip);
    CHECK(strcmp(name, "dpu-7.mgmt") == 0 && !is_ip);
    CHECK(parse("tls:dpu-7.mgmt:7701,servername=::1" CREDS, &a) == 0);
    vfm_tls_peer_name(&a, name, sizeof(name), &is_ip);
    CHECK(strcmp(name, "::1") == 0 && is_ip);
}

/* Credential files that cannot serve are refused at init, each naming its option and path. */
static void test_tls_credential_files(void)
{
    char empty[] = "/tmp/vfmigd-unit-XXXXXX";
    int fd = mkstemp(empty);
    struct vfm_address a;
    struct vfm_failure failure;
    char arg[256];
    SSL_CTX *ctx = NULL;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    CHECK(parse("tls:127.0.0.1:1,ca=/nonexistent/ca.crt,cert=/b,key=/c", &a) == 0);
    CHECK(vfm_tls_context_new(&a, &ctx, &failure) == -ENOENT && ctx == NULL &&
          strstr(failure.text, "ca=/nonexistent/ca.crt: cannot read it: No such file or directory") != NULL);
    CHECK(parse("tls:127.0.0.1:1,ca=/,cert=/b,key=/c", &a) == 0);
    CHECK(vfm_tls_context_new(&a, &ctx, &failure) == -EINVAL &&
          strstr(failure.text, "ca=/: not a PEM file (not a regular file)") != NULL);
    snprintf(arg, sizeof(arg), "tls:127.0.0.1:1,ca=%s,cert=%s,key=%s", empty, empty, empty);
    CHECK(parse(arg, &a) == 0);
    CHECK(vfm_tls_context_new(&a, &ctx, &failure) == -EINVAL &&
          strstr(failure.text, "holds no PEM certificate") != NULL && strncmp(failure.text, "ca=", 3) == 0);
    unlink(empty);
}

static void test_state_map(void)
{
    enum vfm_v2_state target;
    bool saving;

    CHECK(vfm_v1_to_v2(VFIO_DEVICE_STATE_RUNNING, false, &target, &saving) == 0 && target == VFM_V2_RUNNING && !saving);
    CHECK(vfm_v1_to_v2(3, true, &target, &saving) == 0 && target == VFM_V2_PRE_COPY && !saving);
    CHECK(vfm_v1_to_v2(3, false, &target, &saving) == 0 && target == VFM_V2_RUNNING && saving);
    CHECK(vfm_v1_to_v2(VFIO_DEVICE_STATE_SAVING, false, &target, &saving) == 0 && target == VFM_V2_STOP_COPY);
    CHECK(vfm_v1_to_v2(VFIO_DEVICE_STATE_STOP, false, &target, &saving) == 0 && target == VFM_V2_STOP);
    CHECK(vfm_v1_to_v2(VFIO_DEVICE_STATE_RESUMING, false, &target, &saving) == 0 && target == VFM_V2_RESUMING);
    CHECK(vfm_v1_to_v2(5, false, &target, &saving) == -EINVAL);
    CHECK(vfm_v1_to_v2(6, false, &target, &saving) == -EINVAL);
    CHECK(vfm_v1_to_v2(7, true, &target, &saving) == -EINVAL);
    CHECK(vfm_v1_to_v2(8, false, &target, &saving) == -EINVAL);

    CHECK(vfm_v2_to_v1(VFM_V2_RUNNING, false) == 1);
    CHECK(vfm_v2_to_v1(VFM_V2_RUNNING, true) == 3);
    CHECK(vfm_v2_to_v1(VFM_V2_RUNNING_P2P, false) == 1);
    CHECK(vfm_v2_to_v1(VFM_V2_PRE_COPY, false) == 3);
    CHECK(vfm_v2_to_v1(VFM_V2_PRE_COPY_P2P, false) == 3);
    CHECK(vfm_v2_to_v1(VFM_V2_STOP_COPY, true) == 2);
    CHECK(vfm_v2_to_v1(VFM_V2_STOP, false) == 0);
    CHECK(vfm_v2_to_v1(VFM_V2_RESUMING, false) == 4);
    CHECK(vfm_v2_to_v1(VFM_V2_ERROR, false) == 6);

    for (int s = VFM_V2_ERROR; s <= VFM_V2_PRE_COPY_P2P; s++) {
        enum vfm_v2_state parsed;

        CHECK(vfm_v2_parse(vfm_v2_name((enum vfm_v2_state)s), &parsed) == 0 && parsed == (enum vfm_v2_state)s);
    }
    CHECK(vfm_v2_parse("RUNNING ", &target) != 0);
}

static void test_refusals(void)
{
    CHECK(vfm_refusal_errno("ILLEGAL_TRANSITION") == -EINVAL);
    CHECK(vfm_refusal_errno("STATE_CORRUPT") == -EINVAL);
    CHECK(vfm_refusal_errno("STATE_INCOMPATIBLE") == -EINVAL);
    CHECK(vfm_refusal_errno("VF_BUSY") == -EBUSY);
    CHECK(vfm_refusal_errno("QUIESCE_TIMEOUT") == -ETIMEDOUT);
    CHECK(vfm_refusal_errno("SESSION_UNKNOWN") == -ESTALE);
    CHECK(vfm_refusal_errno("NOT_SESSION_OWNER") == -EPERM);
    CHECK(vfm_refusal_errno("NO_MIGRATION") == -ESRCH);
    CHECK(strstr(vfm_refusal_meaning("NO_MIGRATION"), "no migration") != NULL);
    CHECK(vfm_refusal_errno("DRIVER_FAILURE") == -EIO);
    CHECK(vfm_refusal_errno("STREAM_OFFSET") == -EIO);
    CHECK(strstr(vfm_refusal_meaning("STATE_CORRUPT"), "corrupt") != NULL);
}

int main(void)
{
    test_base64_round_trips();
    test_base64_rejects();
    test_address();
    test_attachments_option();
    test_tls_address();
    test_lease_option();
    test_tls_peer_name();
    test_tls_credential_files();
    test_state_map();
    test_refusals();
    *failures += run_tls_transport_tests();
    *failures += run_attachment_tests();
    *failures += run_lease_tests();
    *failures += run_recovery_tests();
    if (*failures != 0) {
        fprintf(stderr, "unit tests: %d check(s) failed\n", *failures);
        return 1;
    }
    printf("unit tests: all checks passed\n");
    return 0;
}
