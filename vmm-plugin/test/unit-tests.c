/*
 * Unit tests of the plugin's pure parts (no agent needed): base64 at every
 * padding and against malformed text, the plugin-argument grammar, the
 * v1 <-> v2 state table and the refusal -> errno table. `make check` runs it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-address.h"
#include "base64.h"
#include "refusal-errno.h"
#include "state-map.h"
#include "vfio-migration-plugin.h"

static int failures;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                         \
        }                                                                       \
    } while (0)

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
    CHECK(vfm_address_parse("h:1,ca=/etc/ca.pem", &a, &failure) == -EINVAL &&
          strstr(failure.text, "unknown option \"ca\"") != NULL);
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
    CHECK(vfm_refusal_errno("DRIVER_FAILURE") == -EIO);
    CHECK(vfm_refusal_errno("STREAM_OFFSET") == -EIO);
    CHECK(strstr(vfm_refusal_meaning("STATE_CORRUPT"), "corrupt") != NULL);
}

int main(void)
{
    test_base64_round_trips();
    test_base64_rejects();
    test_address();
    test_state_map();
    test_refusals();
    if (failures != 0) {
        fprintf(stderr, "unit tests: %d check(s) failed\n", failures);
        return 1;
    }
    printf("unit tests: all checks passed\n");
    return 0;
}
