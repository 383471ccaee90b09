/*
 * checkpoint.c - the in-memory checkpoint: creation and freeing, and its
 * key/value entries (the typed configuration and the string metadata).
 *
 * The checkpoint file (docs/checkpoint-format.md is the contract; the code
 * follows it field by field) is spread over these sources, all sharing
 * ckpt_internal.h:
 *   checkpoint.c    this file;
 *   ckpt_resume.c   named RNG states and the step/epoch counters;
 *   ckpt_write.c    serialising the body, the header, the atomic save;
 *   ckpt_zlib.c     compressing and inflating the body;
 *   ckpt_read.c     loading the file, header and size checks, cd__ckpt_read;
 *   ckpt_parse.c    parsing the inflated body's sections;
 *   ckpt_apply.c    matching tensors and copying them into a model.
 *
 * Saving serialises the body into memory in two passes (one to size it,
 * one to fill it), compresses it with zlib and writes header + stream
 * through the atomic writer. Reading loads the whole file (never more than
 * its real size), checks header, sizes and both CRCs, inflates into a
 * buffer whose size is capped before it is allocated, and parses every
 * section into a cd__ckpt. Only cd__ckpt_apply touches a model, and it
 * checks everything (names, shapes, optimiser) and allocates everything it
 * needs before it copies the first byte.
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

char *cd__ckpt_dup_bytes(const void *src, size_t n)
{
    char *d = cd__malloc(n + 1, "checkpoint string");
    if (!d) return NULL;
    memcpy(d, src, n);
    d[n] = '\0';
    return d;
}

void cd__ckpt_kv_clear(kv_entry *e)
{
    cd__free(e->str);
    cd__free(e->arr);
    e->str = NULL;
    e->arr = NULL;
    e->n = 0;
}

static void kv_free(kv_list *l)
{
    for (int64_t i = 0; i < l->count; i++) {
        cd__ckpt_kv_clear(&l->e[i]);
        cd__free(l->e[i].key);
    }
    cd__free(l->e);
    memset(l, 0, sizeof *l);
}

cd_status cd__ckpt_create(cd__ckpt **out)
{
    CD__CHECK_NOT_NULL(out, "cd__ckpt_create");
    *out = cd__calloc(1, sizeof **out, "checkpoint");
    if (!*out) return cd_last_status();
    return CD_OK;
}

void cd__ckpt_free(cd__ckpt *ck)
{
    if (!ck) return;
    kv_free(&ck->config);
    kv_free(&ck->meta);
    for (int64_t i = 0; i < ck->n_rngs; i++) cd__free(ck->rngs[i].name);
    cd__free(ck->rngs);
    for (int64_t i = 0; i < ck->n_tensors; i++) cd__free(ck->tensors[i].name);
    cd__free(ck->tensors);
    cd__free(ck->by_name);
    cd__free(ck->path);
    cd__free(ck->body);
    cd__free(ck);
}

/* ---- key/value lists --------------------------------------------------- */

cd_status cd__ckpt_check_key(const char *fn, const char *what, const char *key)
{
    if (!key) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the %s is NULL", fn, what);
    size_t len = strnlen(key, CD__CKPT_MAX_KEY + 1);
    if (len == 0 || len > CD__CKPT_MAX_KEY)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the %s '%.40s' must have 1..%d bytes", fn,
                         what, key, CD__CKPT_MAX_KEY);
    return CD_OK;
}

static kv_entry *kv_find(const kv_list *l, const char *key)
{
    for (int64_t i = 0; i < l->count; i++)
        if (strcmp(l->e[i].key, key) == 0) return &l->e[i];
    return NULL;
}

/* Store v under key, replacing an existing entry's value. Takes ownership of
 * v's memory (freed on failure). */
static cd_status kv_put(kv_list *l, const char *key, kv_entry v, const char *fn)
{
    kv_entry *e = kv_find(l, key);
    if (e) {
        cd__ckpt_kv_clear(e);
    } else {
        if (l->count == l->cap) {
            int64_t cap = l->cap ? 2 * l->cap : 8;
            kv_entry *grown = cd__realloc(l->e, (size_t)cap, sizeof *grown, "checkpoint entries");
            if (!grown) goto oom;
            l->e = grown;
            l->cap = cap;
        }
        char *k = cd__ckpt_dup_bytes(key, strlen(key));
        if (!k) goto oom;
        e = &l->e[l->count++];
        memset(e, 0, sizeof *e);
        e->key = k;
    }
    v.key = e->key;
    *e = v;
    return CD_OK;
oom:
    cd__free(v.str);
    cd__free(v.arr);
    return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory storing '%s'", fn, key);
}

static cd_status set_common(cd__ckpt *ck, const char *fn, const char *key)
{
    CD__CHECK_NOT_NULL(ck, fn);
    return cd__ckpt_check_key(fn, "key", key);
}

cd_status cd__ckpt_set_i64(cd__ckpt *ck, const char *key, int64_t value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_i64", key));
    kv_entry v = {.type = CD__CKPT_INT64, .i64 = value};
    return kv_put(&ck->config, key, v, "cd__ckpt_set_i64");
}

cd_status cd__ckpt_set_f64(cd__ckpt *ck, const char *key, double value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_f64", key));
    kv_entry v = {.type = CD__CKPT_FLOAT64, .f64 = value};
    return kv_put(&ck->config, key, v, "cd__ckpt_set_f64");
}

static cd_status put_string(kv_list *l, const char *fn, const char *key, const char *value)
{
    CD__CHECK_NOT_NULL(value, fn);
    kv_entry v = {.type = CD__CKPT_STRING, .n = (int64_t)strlen(value)};
    v.str = cd__ckpt_dup_bytes(value, (size_t)v.n);
    if (!v.str) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory storing '%s'", fn, key);
    return kv_put(l, key, v, fn);
}

cd_status cd__ckpt_set_str(cd__ckpt *ck, const char *key, const char *value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_str", key));
    return put_string(&ck->config, "cd__ckpt_set_str", key, value);
}

static cd_status put_array(cd__ckpt *ck, const char *fn, const char *key, cd__ckpt_type type,
                           const void *values, int64_t n, size_t elem)
{
    CD__TRY(set_common(ck, fn, key));
    if (n < 0 || (uint64_t)n > CD__CKPT_MAX_BODY / elem)
        return cd__error(CD_ERR_RANGE, "%s: '%s': length %" PRId64 " is outside 0..%" PRIu64, fn,
                         key, n, CD__CKPT_MAX_BODY / elem);
    if (n > 0) CD__CHECK_NOT_NULL(values, fn);
    kv_entry v = {.type = type, .n = n};
    v.arr = cd__malloc((size_t)n * elem, "checkpoint array");
    if (!v.arr) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory storing '%s'", fn, key);
    if (n) memcpy(v.arr, values, (size_t)n * elem);
    return kv_put(&ck->config, key, v, fn);
}

cd_status cd__ckpt_set_f32_array(cd__ckpt *ck, const char *key, const float *values, int64_t n)
{
    return put_array(ck, "cd__ckpt_set_f32_array", key, CD__CKPT_FLOAT32_ARRAY, values, n,
                     sizeof(float));
}

cd_status cd__ckpt_set_i64_array(cd__ckpt *ck, const char *key, const int64_t *values, int64_t n)
{
    return put_array(ck, "cd__ckpt_set_i64_array", key, CD__CKPT_INT64_ARRAY, values, n,
                     sizeof(int64_t));
}

static const char *type_name(cd__ckpt_type t)
{
    switch (t) {
    case CD__CKPT_INT64: return "an int64";
    case CD__CKPT_FLOAT64: return "a float64";
    case CD__CKPT_STRING: return "a string";
    case CD__CKPT_FLOAT32_ARRAY: return "a float32 array";
    case CD__CKPT_INT64_ARRAY: return "an int64 array";
    }
    return "an unknown type";
}

/* The config entry for key, which must have type `type`. */
static cd_status get_entry(const cd__ckpt *ck, const char *fn, const char *key, cd__ckpt_type type,
                           const kv_entry **out)
{
    CD__CHECK_NOT_NULL(ck, fn);
    CD__TRY(cd__ckpt_check_key(fn, "key", key));
    const kv_entry *e = kv_find(&ck->config, key);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: the configuration has no '%s'", fn, key);
    if (e->type != type)
        return cd__error(CD_ERR_FORMAT, "%s: configuration '%s' is %s, not %s", fn, key,
                         type_name(e->type), type_name(type));
    *out = e;
    return CD_OK;
}

cd_status cd__ckpt_get_i64(const cd__ckpt *ck, const char *key, int64_t *value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_i64");
    CD__TRY(get_entry(ck, "cd__ckpt_get_i64", key, CD__CKPT_INT64, &e));
    *value = e->i64;
    return CD_OK;
}

cd_status cd__ckpt_get_f64(const cd__ckpt *ck, const char *key, double *value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_f64");
    CD__TRY(get_entry(ck, "cd__ckpt_get_f64", key, CD__CKPT_FLOAT64, &e));
    *value = e->f64;
    return CD_OK;
}

cd_status cd__ckpt_get_str(const cd__ckpt *ck, const char *key, const char **value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_str");
    CD__TRY(get_entry(ck, "cd__ckpt_get_str", key, CD__CKPT_STRING, &e));
    *value = e->str;
    return CD_OK;
}

static cd_status get_array(const cd__ckpt *ck, const char *fn, const char *key, cd__ckpt_type type,
                           void *values, int64_t cap, int64_t *n, size_t elem)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(n, fn);
    CD__TRY(get_entry(ck, fn, key, type, &e));
    *n = e->n;
    if (!values) return CD_OK;
    if (cap < e->n)
        return cd__error(CD_ERR_SHAPE,
                         "%s: '%s' holds %" PRId64 " values, the capacity is %" PRId64, fn, key,
                         e->n, cap);
    if (e->n) memcpy(values, e->arr, (size_t)e->n * elem);
    return CD_OK;
}

cd_status cd__ckpt_get_f32_array(const cd__ckpt *ck, const char *key, float *values, int64_t cap,
                                 int64_t *n)
{
    return get_array(ck, "cd__ckpt_get_f32_array", key, CD__CKPT_FLOAT32_ARRAY, values, cap, n,
                     sizeof(float));
}

cd_status cd__ckpt_get_i64_array(const cd__ckpt *ck, const char *key, int64_t *values, int64_t cap,
                                 int64_t *n)
{
    return get_array(ck, "cd__ckpt_get_i64_array", key, CD__CKPT_INT64_ARRAY, values, cap, n,
                     sizeof(int64_t));
}

void cd__ckpt_set_half_weights(cd__ckpt *ck, bool half)
{
    if (ck) ck->half_weights = half;
}

int64_t cd__ckpt_config_count(const cd__ckpt *ck)
{
    if (!ck) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd__ckpt_config_count: argument 'ck' is NULL");
        return -1;
    }
    return ck->config.count;
}

const char *cd__ckpt_config_key(const cd__ckpt *ck, int64_t i, cd__ckpt_type *type)
{
    if (!ck || i < 0 || i >= ck->config.count) {
        cd__error(CD_ERR_RANGE, "cd__ckpt_config_key: no entry %" PRId64, i);
        return NULL;
    }
    if (type) *type = ck->config.e[i].type;
    return ck->config.e[i].key;
}

cd_status cd__ckpt_set_meta(cd__ckpt *ck, const char *key, const char *value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_meta", key));
    return put_string(&ck->meta, "cd__ckpt_set_meta", key, value);
}

cd_status cd__ckpt_get_meta(const cd__ckpt *ck, const char *key, const char **value)
{
    static const char fn[] = "cd__ckpt_get_meta";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(value, fn);
    CD__TRY(cd__ckpt_check_key(fn, "key", key));
    const kv_entry *e = kv_find(&ck->meta, key);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: no metadata '%s'", fn, key);
    *value = e->str;
    return CD_OK;
}

int64_t cd__ckpt_meta_count(const cd__ckpt *ck)
{
    if (!ck) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd__ckpt_meta_count: argument 'ck' is NULL");
        return -1;
    }
    return ck->meta.count;
}

cd_status cd__ckpt_meta_at(const cd__ckpt *ck, int64_t i, const char **key, const char **value)
{
    static const char fn[] = "cd__ckpt_meta_at";
    CD__CHECK_NOT_NULL(ck, fn);
    if (i < 0 || i >= ck->meta.count)
        return cd__error(CD_ERR_RANGE, "%s: index %" PRId64 " is outside 0..%" PRId64, fn, i,
                         ck->meta.count - 1);
    if (key) *key = ck->meta.e[i].key;
    if (value) *value = ck->meta.e[i].str;
    return CD_OK;
}
