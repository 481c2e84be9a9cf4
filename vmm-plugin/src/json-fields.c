/* Typed json-c member reads; see json-fields.h. */
#include "json-fields.h"

static json_object *member(json_object *object, const char *key, json_type type)
{
    json_object *value = NULL;

    if (object == NULL || !json_object_object_get_ex(object, key, &value) || !json_object_is_type(value, type))
        return NULL;
    return value;
}

int vfm_json_int64(json_object *object, const char *key, int64_t *out)
{
    json_object *value = member(object, key, json_type_int);

    if (value == NULL)
        return -1;
    *out = json_object_get_int64(value);
    return 0;
}

int vfm_json_bool(json_object *object, const char *key, bool *out)
{
    json_object *value = member(object, key, json_type_boolean);

    if (value == NULL)
        return -1;
    *out = json_object_get_boolean(value);
    return 0;
}

int vfm_json_string(json_object *object, const char *key, const char **out, size_t *length)
{
    json_object *value = member(object, key, json_type_string);

    if (value == NULL)
        return -1;
    *out = json_object_get_string(value);
    if (length != NULL)
        *length = (size_t)json_object_get_string_len(value);
    return 0;
}

int vfm_json_object(json_object *object, const char *key, json_object **out)
{
    json_object *value = member(object, key, json_type_object);

    if (value == NULL)
        return -1;
    *out = value;
    return 0;
}

int vfm_json_add(json_object *object, const char *key, json_object *value)
{
    if (value == NULL)
        return -1;
    /* json-c takes ownership only when the add succeeds. */
    if (json_object_object_add(object, key, value) != 0) {
        json_object_put(value);
        return -1;
    }
    return 0;
}

json_object *vfm_json_vf_params(const char *vf)
{
    json_object *params = json_object_new_object();

    if (params == NULL)
        return NULL;
    if (vfm_json_add(params, "vf", json_object_new_string(vf)) != 0) {
        json_object_put(params);
        return NULL;
    }
    return params;
}
