/* Typed reads of one member of a json-c object; each returns 0, or -1 if the member is absent or of another type. */
#ifndef VFM_JSON_FIELDS_H
#define VFM_JSON_FIELDS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int vfm_json_int64(json_object *object, const char *key, int64_t *out);
int vfm_json_bool(json_object *object, const char *key, bool *out);
/* *out points into the object: valid as long as it is. */
int vfm_json_string(json_object *object, const char *key, const char **out, size_t *length);
int vfm_json_object(json_object *object, const char *key, json_object **out);

/* A new {"vf": vf} params object, or NULL when out of memory. */
json_object *vfm_json_vf_params(const char *vf);

/* Adds `value` under `key` to `object`; releases value and returns -1 if that fails. */
int vfm_json_add(json_object *object, const char *key, json_object *value);

#endif
