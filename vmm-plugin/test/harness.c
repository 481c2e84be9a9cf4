/*
 * vfmigd-harness: plays QEMU against a VFIO migration plugin. It loads the
 * plugin as QEMU does, runs QEMU's call sequence for each device on its own
 * thread (one plugin handle each), and prints one JSON line per device.
 * Exit status: 0 every device succeeded, 1 otherwise, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-flows.h"
#include "plugin-loader.h"

#define EXIT_USAGE 2
/* QEMU's CHUNK_SIZE: save and load move at most 1 MiB per call. */
#define QEMU_CHUNK_BYTES (1024L * 1024L)
#define MAX_CHUNK_BYTES (16L * 1024L * 1024L)

static const char USAGE[] =
    "usage: vfmigd-harness MODE --plugin SO --arg ARG --device SPEC [--device SPEC ...] [options]\n"
    "  source       SPEC is BDF=STREAMFILE: save each device's state into its file\n"
    "  destination  SPEC is BDF=STREAMFILE: load each device's state from its file and run it\n"
    "  cancel       SPEC is BDF: start stop-and-copy, save part of the state, cancel, expect RUNNING\n"
    "options:\n"
    "  --precopy-polls N        update_pending calls during pre-copy (source; default 3)\n"
    "  --precopy-rounds N       pre-copy iterations that save what update_pending reports, each a\n"
    "                           segment of the stream file, as QEMU's save_live_iterate (source; default 0)\n"
    "  --chunk-bytes N          save/load chunks of at most N bytes (1 to 16 MiB; QEMU's are 1 MiB), so that\n"
    "                           a small state takes several calls, as a large one does in QEMU's chunks\n"
    "  --stall-after-chunks K   stall once, after K save/load chunks, as one of these says:\n"
    "  --stall-ms MS            sleep MS\n"
    "  --stall-file PATH        create PATH and wait until it is removed\n"
    "                           (a test then acts at exactly that point, with no guess of how long to wait)\n"
    "  --hold-cancel-file PATH  source: when a step fails, create PATH and wait until it is removed before\n"
    "                           QEMU's cancel (set_state RUNNING), so that a test acts before the cancel\n"

    "  --hold-file PATH         source: once the save is done and the device in STOP, create PATH and wait\n"
    "                           until it is removed, as QEMU holds the device until the destination has the VM;\n"
    "                           if PATH.failed exists by then, the destination failed: run the device again\n"
    "                           (set_state RUNNING), as QEMU does when it runs the VM on here\n";

struct device_list {
    struct device_job *jobs;
    size_t count;
};

static int usage_error(const char *message)
{
    fprintf(stderr, "vfmigd-harness: %s\n%s", message, USAGE);
    return EXIT_USAGE;
}

static int parse_count(const char *text, long max, long *out)
{
    char *end = NULL;

    errno = 0;
    *out = strtol(text, &end, 10);
    return text[0] >= '0' && text[0] <= '9' && errno == 0 && *end == '\0' && *out <= max ? 0 : -1;
}

static int parse_mode(const char *text, enum harness_mode *mode)
{
    if (strcmp(text, "source") == 0)
        *mode = MODE_SOURCE;
    else if (strcmp(text, "destination") == 0)
        *mode = MODE_DESTINATION;
    else if (strcmp(text, "cancel") == 0)
        *mode = MODE_CANCEL;
    else
        return -1;
    return 0;
}

/* Splits BDF=FILE in place (argv strings are ours to modify) and appends a job. */
static int add_device(struct device_list *list, char *spec, enum harness_mode mode)
{
    struct device_job *bigger = realloc(list->jobs, (list->count + 1) * sizeof(*list->jobs));
    char *equals = strchr(spec, '=');
    struct device_job *job;

    if (bigger == NULL)
        return -1;
    list->jobs = bigger;
    job = &list->jobs[list->count];
    memset(job, 0, sizeof(*job));
    job->device = spec;
    if (equals != NULL) {
        *equals = '\0';
        job->file = equals + 1;
    }
    if (job->device[0] == '\0' || (mode != MODE_CANCEL && (job->file == NULL || job->file[0] == '\0')))
        return -2;
    list->count++;
    return 0;
}

static int parse_arguments(int argc, char **argv, struct harness_options *options, struct device_list *devices)
{
    static const struct option LONG_OPTIONS[] = {
        { "plugin", required_argument, NULL, 'p' },
        { "arg", required_argument, NULL, 'a' },
        { "device", required_argument, NULL, 'd' },
        { "precopy-polls", required_argument, NULL, 'n' },
        { "precopy-rounds", required_argument, NULL, 'r' },
        { "stall-after-chunks", required_argument, NULL, 'k' },
        { "stall-ms", required_argument, NULL, 's' },
        { "stall-file", required_argument, NULL, 'f' },
        { "chunk-bytes", required_argument, NULL, 'c' },
        { "hold-cancel-file", required_argument, NULL, 'H' },
        { "hold-file", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool stall_ms_given = false;
    long chunk_bytes = QEMU_CHUNK_BYTES;
    int opt;

    if (argc < 2 || parse_mode(argv[1], &options->mode) != 0)
        return usage_error(argc < 2 ? "no mode given" : "MODE is source, destination or cancel");
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", LONG_OPTIONS, NULL)) != -1) {
        switch (opt) {
        case 'p':
            options->plugin_path = optarg;
            break;
        case 'a':
            options->arg = optarg;
            break;
        case 'd': {
            int rc = add_device(devices, optarg, options->mode);

            if (rc == -1) {
                fprintf(stderr, "vfmigd-harness: out of memory\n");
                return 1;
            }
            if (rc != 0)
                return usage_error(options->mode == MODE_CANCEL ? "--device wants BDF" : "--device wants BDF=STREAMFILE");
            break;
        }
        case 'n':
            if (parse_count(optarg, 1000000, &options->precopy_polls) != 0)
                return usage_error("--precopy-polls wants a count");
            break;
        case 'r':
            if (parse_count(optarg, 1000000, &options->precopy_rounds) != 0)
                return usage_error("--precopy-rounds wants a count");
            break;
        case 'k':
            if (parse_count(optarg, 1000000000, &options->stall_after_chunks) != 0)
                return usage_error("--stall-after-chunks wants a count");
            break;
        case 's':
            if (parse_count(optarg, 3600000, &options->stall_ms) != 0)
                return usage_error("--stall-ms wants milliseconds");
            stall_ms_given = true;
            break;
        case 'f':
            if (optarg[0] == '\0')
                return usage_error("--stall-file wants a path");
            options->stall_file = optarg;
            break;
        case 'c':
            if (parse_count(optarg, MAX_CHUNK_BYTES, &chunk_bytes) != 0 || chunk_bytes < 1)
                return usage_error("--chunk-bytes wants a count of bytes, 1 to 16 MiB");
            break;
        case 'H':
            if (optarg[0] == '\0')
                return usage_error("--hold-cancel-file wants a path");
            options->hold_cancel_file = optarg;
            break;
        case 'o':
            if (optarg[0] == '\0')
                return usage_error("--hold-file wants a path");
            options->hold_file = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return EXIT_USAGE;
        default:
            return usage_error("unknown option");
        }
    }
    options->chunk_bytes = (uint64_t)chunk_bytes;
    if (optind != argc)
        return usage_error("unexpected argument");
    if (options->plugin_path == NULL || options->arg == NULL || devices->count == 0)
        return usage_error("--plugin, --arg and at least one --device are required");
    if (stall_ms_given && options->stall_file != NULL)
        return usage_error("--stall-ms or --stall-file, not both");
    if ((options->stall_after_chunks >= 0) != (stall_ms_given || options->stall_file != NULL))
        return usage_error("--stall-after-chunks and --stall-ms (or --stall-file) go together");
    if (options->hold_cancel_file != NULL && options->mode != MODE_SOURCE)
        return usage_error("--hold-cancel-file is for the source mode (only it cancels after a failure)");
    if (options->hold_file != NULL && options->mode != MODE_SOURCE)
        return usage_error("--hold-file is for the source");
    return 0;
}

static json_object *job_result(const struct device_job *job, enum harness_mode mode)
{
    json_object *line = json_object_new_object();

    if (line == NULL)
        return NULL;
    json_object_object_add(line, "device", json_object_new_string(job->device));
    json_object_object_add(line, "ok", json_object_new_boolean(job->ok));
    if (job->ok) {
        json_object_object_add(line, "bytes", json_object_new_uint64(job->bytes));
        if (mode == MODE_SOURCE) {
            json_object_object_add(line, "stopCopyUs", json_object_new_int64(job->elapsed_us));
            json_object_object_add(line, "precopyBytes", json_object_new_uint64(job->precopy_bytes));
            if (job->resume_tried)
                json_object_object_add(line, "resumed", json_object_new_boolean(job->resumed));
        }
        else if (mode == MODE_DESTINATION)
            json_object_object_add(line, "resumeUs", json_object_new_int64(job->elapsed_us));
        else
            json_object_object_add(line, "pendingBytes", json_object_new_uint64(job->pending_bytes));
        return line;
    }
    json_object_object_add(line, "op", json_object_new_string(job->op != NULL ? job->op : "thread"));
    json_object_object_add(line, "rc", job->has_rc ? json_object_new_int(job->rc) : NULL);
    json_object_object_add(line, "error", json_object_new_string(job->error));
    json_object_object_add(line, "bytes", json_object_new_uint64(job->bytes));
    if (job->cancel_tried)
        json_object_object_add(line, "cancelled", json_object_new_boolean(job->cancelled));
    if (job->resume_tried)
        json_object_object_add(line, "resumed", json_object_new_boolean(job->resumed));
    return line;
}

/* One line per device, in command-line order; returns how many failed. */
static size_t print_results(const struct device_list *devices, enum harness_mode mode)
{
    size_t failed = 0;

    for (size_t i = 0; i < devices->count; i++) {
        json_object *line = job_result(&devices->jobs[i], mode);

        if (!devices->jobs[i].ok)
            failed++;
        if (line == NULL) {
            fprintf(stderr, "vfmigd-harness: out of memory\n");
            failed++;
            continue;
        }
        printf("%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(line);
    }
    if (fflush(stdout) != 0)
        failed++;
    return failed;
}

static void run_all(struct device_list *devices, const struct harness_options *options,
                    const VFIOMigrationPluginOps *ops)
{
    pthread_t *threads = calloc(devices->count, sizeof(*threads));
    bool *started = calloc(devices->count, sizeof(*started));

    for (size_t i = 0; i < devices->count; i++) {
        struct device_job *job = &devices->jobs[i];
        char text[128];
        int rc;

        job->options = options;
        job->ops = ops;
        if (threads == NULL || started == NULL) {
            snprintf(job->error, sizeof(job->error), "out of memory");
            continue;
        }
        rc = pthread_create(&threads[i], NULL, run_device_job, job);
        if (rc != 0)
            snprintf(job->error, sizeof(job->error), "cannot start a thread: %s", strerror_r(rc, text, sizeof(text)));
        else
            started[i] = true;
    }
    for (size_t i = 0; i < devices->count; i++) {
        if (started != NULL && started[i]) {
            int rc = pthread_join(threads[i], NULL);

            if (rc != 0) {
                devices->jobs[i].ok = false;
                snprintf(devices->jobs[i].error, sizeof(devices->jobs[i].error), "cannot join its thread");
            }
        }
    }
    free(started);
    free(threads);
}

int main(int argc, char **argv)
{
    struct harness_options options = { .precopy_polls = 3, .stall_after_chunks = -1, .chunk_bytes = QEMU_CHUNK_BYTES };
    struct device_list devices = { 0 };
    struct loaded_plugin plugin;
    char why[512];
    size_t failed;
    int rc = parse_arguments(argc, argv, &options, &devices);

    if (rc != 0) {
        free(devices.jobs);
        return rc;
    }
    if (plugin_load(options.plugin_path, &plugin, why, sizeof(why)) != 0) {
        fprintf(stderr, "vfmigd-harness: plugin refused: %s\n", why);
        free(devices.jobs);
        return 1;
    }
    run_all(&devices, &options, plugin.ops);
    failed = print_results(&devices, options.mode);
    /* QEMU unloads the plugin after the last device's cleanup. */
    plugin_unload(&plugin);
    free(devices.jobs);
    return failed == 0 ? 0 : 1;
}
