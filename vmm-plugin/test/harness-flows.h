/* QEMU's per-device call sequences (source, destination, cancel), one device per job, each run on its own thread. */
#ifndef HARNESS_FLOWS_H
#define HARNESS_FLOWS_H

#include <stdbool.h>
#include <stdint.h>

#include "vfio-migration-plugin.h"

enum harness_mode { MODE_SOURCE, MODE_DESTINATION, MODE_CANCEL };

struct harness_options {
    enum harness_mode mode;
    const char *plugin_path;
    const char *arg;                 /* x-plugin-arg */
    long precopy_polls;              /* update_pending calls during pre-copy (source) */
    long precopy_rounds;             /* pre-copy iterations that save what update_pending reports (source) */
    uint64_t chunk_bytes;            /* most bytes one save or load call moves: QEMU's 1 MiB unless --chunk-bytes */
    long stall_after_chunks;         /* -1: never stall */
    long stall_ms;                   /* the stall sleeps this long, or */
    const char *stall_file;          /* ... creates this file and waits until it is removed (NULL: stall_ms) */
    const char *hold_cancel_file;    /* source: before the cancel after a failure, create this file and wait until it is removed */
    const char *hold_file;           /* source: once the device is in STOP, create this file and wait until it is
                                        removed; if hold_file.failed exists then, run the device again */
};

struct device_job {
    /* inputs */
    const struct harness_options *options;
    const VFIOMigrationPluginOps *ops;
    const char *device;              /* BDF, as QEMU passes it to init */
    const char *file;                /* stream file; NULL for cancel */
    /* outputs */
    bool ok;
    const char *op;                  /* the op (or "file") that failed */
    bool has_rc;                     /* false when the failure has no return code (init's NULL, a wrong state) */
    int rc;
    char error[512];
    uint64_t bytes;                  /* state bytes saved or loaded */
    uint64_t precopy_bytes;          /* source: of those, saved while the VF ran (pre-copy) */
    long segments;                   /* stream file segments written or read */
    uint64_t pending_bytes;          /* cancel: what update_pending reported */
    int64_t elapsed_us;              /* source: stop-copy; destination: resume (stalls excluded) */
    bool cancel_tried;               /* source failure: the QEMU-style cancel to RUNNING was attempted */
    bool cancelled;                  /* ... and succeeded */
    bool resume_tried;               /* source, hold_file: the destination failed, and QEMU ran the VM here again */
    bool resumed;                    /* ... and the device runs */
};

/* Runs job->options->mode for one device; pthread start routine (arg: struct device_job *). */
void *run_device_job(void *job);

#endif
