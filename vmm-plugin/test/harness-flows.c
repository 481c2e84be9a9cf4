/*
 * The per-device call sequences QEMU's plugin path makes (hw/vfio/
 * migration-plugin.c in the RFC, driven by hw/vfio/migration.c's v1 code),
 * with the stream going to or coming from a file instead of the migration
 * channel: a be64 size, then that many state bytes.
 */
#include "harness-flows.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugin-loader.h"

#define V1_RUNNING VFIO_DEVICE_STATE_RUNNING
#define V1_SAVING VFIO_DEVICE_STATE_SAVING
#define V1_RESUMING VFIO_DEVICE_STATE_RESUMING
#define V1_MASK VFIO_DEVICE_STATE_MASK

static int64_t now_us(void)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0;
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* strerror() is not thread-safe, and every device runs on its own thread. */
#define ERRNO_TEXT(buffer) strerror_r(errno, buffer, sizeof(buffer))

static void fail_text(struct device_job *job, const char *op, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_text(struct device_job *job, const char *op, const char *format, ...)
{
    va_list args;

    job->ok = false;
    job->op = op;
    job->has_rc = false;
    va_start(args, format);
    vsnprintf(job->error, sizeof(job->error), format, args);
    va_end(args);
}

static void fail_rc(struct device_job *job, const char *op, int rc)
{
    char text[128];

    job->ok = false;
    job->op = op;
    job->has_rc = true;
    job->rc = rc;
    snprintf(job->error, sizeof(job->error), "%s returned %d (%s)", op, rc,
             rc < 0 ? strerror_r(-rc, text, sizeof(text)) : "not a negative errno");
}

/* QEMU's set-state step; records the failing op. Returns 0 or -1. */
static int set_state(struct device_job *job, void *handle, uint32_t mask, uint32_t value)
{
    const char *op = "set_state";
    uint32_t new_state = 0;
    int rc = qemu_set_state(job->ops, handle, mask, value, &new_state, &op);

    if (rc != 0) {
        fail_rc(job, op, rc);
        return -1;
    }
    return 0;
}

static int expect_running(struct device_job *job, void *handle, const char *when)
{
    uint32_t state = 0;
    int rc = job->ops->get_state(handle, &state);

    if (rc != 0) {
        fail_rc(job, "get_state", rc);
        return -1;
    }
    if (state != V1_RUNNING) {
        fail_text(job, "get_state", "%s the device is in v1 state %" PRIu32 ", not RUNNING (1)", when, state);
        return -1;
    }
    return 0;
}

static int update_pending(struct device_job *job, void *handle, uint64_t *bytes)
{
    int rc = job->ops->update_pending(handle, bytes);

    if (rc != 0) {
        fail_rc(job, "update_pending", rc);
        return -1;
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        continue;
}

/* --stall-file, --hold-cancel-file, --hold-file: says "stalled here" by creating the file, then waits for the test to remove it. */
static void stall_on_file(const char *path)
{
    char text[128];
    FILE *marker = fopen(path, "w");

    if (marker == NULL || fclose(marker) != 0) {
        fprintf(stderr, "vfmigd-harness: cannot create the stall file %s: %s\n", path, ERRNO_TEXT(text));
        return;
    }
    while (access(path, F_OK) == 0)
        sleep_ms(5);
}

/* Stalls once, when exactly `chunks_done` chunks have moved and that is the stall point; returns the µs stalled. */
static int64_t stall_if_due(const struct device_job *job, long chunks_done)
{
    const struct harness_options *options = job->options;
    int64_t started;

    if (options->stall_after_chunks < 0 || chunks_done != options->stall_after_chunks)
        return 0;
    started = now_us();
    if (options->stall_file != NULL)
        stall_on_file(options->stall_file);
    else
        sleep_ms(options->stall_ms);
    return now_us() - started;
}

static void put_be64(uint8_t out[8], uint64_t value)
{
    for (int i = 7; i >= 0; i--, value >>= 8)
        out[i] = (uint8_t)value;
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t value = 0;

    for (int i = 0; i < 8; i++)
        value = value << 8 | in[i];
    return value;
}

/*
 * QEMU's save_buffer: be64 size, then save() in chunks of min(remaining, 1 MiB) (--chunk-bytes: another size),
 * as one segment of the stream file (the first creates it; pre-copy rounds
 * add more). *stalled_us collects the time spent outside the plugin (stalls
 * and the stream file's I/O, which in QEMU is the migration channel's), so
 * that the reported time is the plugin's own.
 */
static int stream_out(struct device_job *job, void *handle, uint64_t size, int64_t *stalled_us)
{
    const uint64_t chunk_bytes = job->options->chunk_bytes;
    uint8_t header[8];
    uint8_t *chunk = NULL;
    uint64_t done_bytes = 0;
    long chunks = 0;
    int result = -1;
    char text[128];
    int64_t io_started = now_us();
    FILE *out = fopen(job->file, job->segments == 0 ? "wb" : "ab");

    *stalled_us += now_us() - io_started;
    if (out == NULL) {
        fail_text(job, "file", "cannot create %s: %s", job->file, ERRNO_TEXT(text));
        return -1;
    }
    put_be64(header, size);
    chunk = malloc(size < chunk_bytes ? (size > 0 ? size : 1) : chunk_bytes);
    if (chunk == NULL) {
        fail_text(job, "save", "out of memory");
        goto done;
    }
    if (fwrite(header, 1, sizeof(header), out) != sizeof(header)) {
        fail_text(job, "file", "cannot write %s: %s", job->file, ERRNO_TEXT(text));
        goto done;
    }
    job->segments += 1;
    *stalled_us += stall_if_due(job, chunks);
    while (done_bytes < size) {
        uint64_t want = size - done_bytes < chunk_bytes ? size - done_bytes : chunk_bytes;
        int rc = job->ops->save(handle, chunk, want);

        if (rc != 0) {
            fail_rc(job, "save", rc);
            goto done;
        }
        io_started = now_us();
        if (fwrite(chunk, 1, want, out) != want) {
            fail_text(job, "file", "cannot write %s: %s", job->file, ERRNO_TEXT(text));
            goto done;
        }
        *stalled_us += now_us() - io_started;
        done_bytes += want;
        job->bytes += want;
        *stalled_us += stall_if_due(job, ++chunks);
    }
    result = 0;
done:
    free(chunk);
    io_started = now_us();
    if (fclose(out) != 0 && result == 0) {
        fail_text(job, "file", "cannot write %s: %s", job->file, ERRNO_TEXT(text));
        result = -1;
    }
    *stalled_us += now_us() - io_started;
    return result;
}

/* QEMU's load_buffer, for each segment of the stream file: read the be64 size, then load() chunks of at most 1 MiB (or --chunk-bytes). */
static int stream_in(struct device_job *job, void *handle, int64_t *stalled_us)
{
    const uint64_t chunk_bytes = job->options->chunk_bytes;
    uint8_t header[8];
    uint8_t *chunk = NULL;
    uint64_t size;
    uint64_t done_bytes;
    size_t got;
    long chunks = 0;
    int result = -1;
    char text[128];
    int64_t io_started = now_us();
    FILE *in = fopen(job->file, "rb");

    *stalled_us += now_us() - io_started;
    if (in == NULL) {
        fail_text(job, "file", "cannot open %s: %s", job->file, ERRNO_TEXT(text));
        return -1;
    }
    chunk = malloc(chunk_bytes);
    if (chunk == NULL) {
        fail_text(job, "load", "out of memory");
        goto done;
    }
    *stalled_us += stall_if_due(job, chunks);
    for (;;) {
        got = fread(header, 1, sizeof(header), in);
        if (got == 0 && feof(in) && job->segments > 0)
            break;
        if (got != sizeof(header)) {
            fail_text(job, "file", "%s is cut inside a segment's 8-byte size header", job->file);
            goto done;
        }
        size = get_be64(header);
        job->segments += 1;
        for (done_bytes = 0; done_bytes < size;) {
            uint64_t want = size - done_bytes < chunk_bytes ? size - done_bytes : chunk_bytes;
            int rc;

            io_started = now_us();
            if (fread(chunk, 1, want, in) != want) {
                fail_text(job, "file", "%s ends after %" PRIu64 " of the %" PRIu64 " bytes its segment announces", job->file,
                          done_bytes, size);
                goto done;
            }
            *stalled_us += now_us() - io_started;
            rc = job->ops->load(handle, chunk, want);
            if (rc != 0) {
                fail_rc(job, "load", rc);
                goto done;
            }
            done_bytes += want;
            job->bytes += want;
            *stalled_us += stall_if_due(job, ++chunks);
        }
    }
    result = 0;
done:
    free(chunk);
    if (fclose(in) != 0 && result == 0) {
        fail_text(job, "file", "cannot read %s: %s", job->file, ERRNO_TEXT(text));
        result = -1;
    }
    return result;
}

/*
 * --hold-file: the source waits (the file made, until it is removed) for the
 * destination's outcome, as QEMU does once its device is in STOP. PATH.failed
 * existing by then says the destination failed.
 */
static bool destination_failed(const char *hold_file)
{
    char verdict[4096];

    stall_on_file(hold_file);
    if (snprintf(verdict, sizeof(verdict), "%s.failed", hold_file) >= (int)sizeof(verdict))
        return false;
    return access(verdict, F_OK) == 0;
}

/* Source: RUNNING -> RUNNING|SAVING (pre-copy, pending polled) -> SAVING (stop-and-copy) -> STOP. */
static int source_steps(struct device_job *job, void *handle)
{
    uint64_t size = 0;
    int64_t stalled_us = 0;
    int64_t started;

    if (expect_running(job, handle, "at the start") != 0 || set_state(job, handle, V1_MASK, V1_SAVING) != 0)
        return -1;
    for (long i = 0; i < job->options->precopy_polls; i++) {
        if (update_pending(job, handle, &size) != 0)
            return -1;
    }
    /* QEMU's save_live_iterate: while the VM runs, save what the device has now, a segment a round. */
    for (long i = 0; i < job->options->precopy_rounds; i++) {
        if (update_pending(job, handle, &size) != 0)
            return -1;
        if (size > 0 && stream_out(job, handle, size, &stalled_us) != 0)
            return -1;
    }
    job->precopy_bytes = job->bytes;
    stalled_us = 0;
    started = now_us();
    if (set_state(job, handle, ~V1_RUNNING, V1_SAVING) != 0 || update_pending(job, handle, &size) != 0 ||
        stream_out(job, handle, size, &stalled_us) != 0)
        return -1;
    job->elapsed_us = now_us() - started - stalled_us;
    if (set_state(job, handle, ~V1_SAVING, 0) != 0)
        return -1;
    /* QEMU keeps the device (and the handle) until the destination has the VM, then cleans up or runs it again. */
    if (job->options->hold_file != NULL && destination_failed(job->options->hold_file)) {
        /* The migration failed at the destination: QEMU runs the VM here again, which sets the device RUNNING. */
        job->resume_tried = true;
        if (set_state(job, handle, ~(V1_SAVING | V1_RESUMING), V1_RUNNING) != 0 ||
            expect_running(job, handle, "after the VM ran again") != 0)
            return -1;
        job->resumed = true;
    }
    job->ok = true;
    return 0;
}

/* Destination: RESUMING, the stream loaded, then RUNNING when the VM starts. */
static int destination_steps(struct device_job *job, void *handle)
{
    int64_t stalled_us = 0;
    int64_t started = now_us();

    if (set_state(job, handle, ~V1_MASK, V1_RESUMING) != 0 || stream_in(job, handle, &stalled_us) != 0 ||
        set_state(job, handle, ~V1_MASK, V1_RUNNING) != 0)
        return -1;
    job->elapsed_us = now_us() - started - stalled_us;
    job->ok = true;
    return 0;
}

/* Cancel: stop-and-copy begun, part of the state read, then the migration is cancelled and the VM runs on. */
static int cancel_steps(struct device_job *job, void *handle)
{
    uint64_t pending = 0;
    uint64_t part;
    uint8_t *chunk;
    int rc;

    if (expect_running(job, handle, "at the start") != 0 || set_state(job, handle, V1_MASK, V1_SAVING) != 0 ||
        set_state(job, handle, ~V1_RUNNING, V1_SAVING) != 0 || update_pending(job, handle, &pending) != 0)
        return -1;
    job->pending_bytes = pending;
    if (pending < 2) {
        fail_text(job, "update_pending", "%" PRIu64 " bytes pending: nothing smaller to save before cancelling",
                  pending);
        return -1;
    }
    part = pending - 1 < job->options->chunk_bytes ? pending - 1 : job->options->chunk_bytes;
    chunk = malloc(part);
    if (chunk == NULL) {
        fail_text(job, "save", "out of memory");
        return -1;
    }
    rc = job->ops->save(handle, chunk, part);
    free(chunk);
    if (rc != 0) {
        fail_rc(job, "save", rc);
        return -1;
    }
    job->bytes = part;
    if (set_state(job, handle, ~(V1_SAVING | V1_RESUMING), V1_RUNNING) != 0 ||
        expect_running(job, handle, "after the cancel") != 0)
        return -1;
    job->ok = true;
    return 0;
}

void *run_device_job(void *opaque)
{
    struct device_job *job = opaque;
    const VFIOMigrationPluginOps *ops = job->ops;
    void *handle = ops->init((char *)job->device, (char *)job->options->arg);
    int rc;

    if (handle == NULL) {
        fail_text(job, "init", "init returned NULL");
        return NULL;
    }
    switch (job->options->mode) {
    case MODE_SOURCE:
        if (source_steps(job, handle) != 0) {
            const char *op = NULL;
            uint32_t new_state = 0;

            /* What QEMU does when a migration fails or is cancelled: put the source device back to running. */
            if (job->options->hold_cancel_file != NULL)
                stall_on_file(job->options->hold_cancel_file);
            job->cancel_tried = true;
            job->cancelled = qemu_set_state(ops, handle, ~(V1_SAVING | V1_RESUMING), V1_RUNNING, &new_state, &op) == 0;
        }
        break;
    case MODE_DESTINATION:
        destination_steps(job, handle);
        break;
    case MODE_CANCEL:
        cancel_steps(job, handle);
        break;
    }
    rc = ops->cleanup(handle);
    if (rc != 0 && job->ok)
        fail_rc(job, "cleanup", rc);
    return NULL;
}
