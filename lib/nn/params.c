/*
 * params.c - the flat parameter set (public cd_params_* API, see
 * colddiff.h, and the internal helpers in nn.h).
 *
 * Tensors are only described while the set is open; the first data or
 * gradient access lays out one flat block of values and one of gradients
 * (llm.c's malloc_and_point_parameters), after which the set is frozen so
 * that pointers handed out never move.
 */
#include "nn.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct param_entry {
    char name[CD_PARAMS_MAX_NAME + 1];
    int32_t rank;
    int64_t shape[CD_TENSOR_MAX_RANK];
    int64_t numel;
    int64_t offset; /* in floats, into the flat blocks */
} param_entry;

struct cd_params {
    param_entry *items;
    int64_t count, capacity;
    int64_t numel;         /* sum over items */
    float *values, *grads; /* NULL until laid out */
    bool final;
};

cd_status cd_params_create(cd_params **out)
{
    CD__CHECK_NOT_NULL(out, "cd_params_create");
    *out = cd__calloc(1, sizeof **out, "parameter set");
    if (!*out) return cd_last_status();
    return CD_OK;
}

void cd_params_free(cd_params *p)
{
    if (!p) return;
    cd__free(p->items);
    cd__free(p->values);
    cd__free(p->grads);
    cd__free(p);
}

/* ---- adding tensors ---------------------------------------------------- */

static cd_status check_name(const cd_params *p, const char *fn, const char *name)
{
    CD__CHECK_NOT_NULL(name, fn);
    size_t len = strnlen(name, CD_PARAMS_MAX_NAME + 1);
    if (len == 0) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the name is empty", fn);
    if (len > CD_PARAMS_MAX_NAME)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: name '%.40s...' is longer than "
                         "%d bytes",
                         fn, name, CD_PARAMS_MAX_NAME);
    for (int64_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0)
            return cd__error(CD_ERR_INVALID_ARGUMENT,
                             "%s: a tensor called '%s' "
                             "already exists (index %" PRId64 ")",
                             fn, name, i);
    return CD_OK;
}

/* numel of the shape, refusing sizes whose bytes (for two blocks) overflow. */
static cd_status check_shape(const char *fn, const char *name, int64_t rank, const int64_t *shape,
                             int64_t *numel)
{
    if (rank < 1 || rank > CD_TENSOR_MAX_RANK)
        return cd__error(CD_ERR_SHAPE, "%s: '%s': rank %d is outside 1..%d", fn, name, (int)rank,
                         CD_TENSOR_MAX_RANK);
    CD__CHECK_NOT_NULL(shape, fn);
    int64_t n = 1;
    for (int64_t d = 0; d < rank; d++) {
        if (shape[d] < 1)
            return cd__error(CD_ERR_SHAPE,
                             "%s: '%s': shape[%d] = %" PRId64 " must be "
                             "at least 1",
                             fn, name, (int)d, shape[d]);
        if (cd__mul_overflows_i64(n, shape[d], &n) || n > INT64_MAX / (int64_t)sizeof(float))
            return cd__error(CD_ERR_OVERFLOW, "%s: '%s': the shape's size overflows", fn, name);
    }
    *numel = n;
    return CD_OK;
}

static cd_status grow(cd_params *p, const char *fn)
{
    if (p->count < p->capacity) return CD_OK;
    int64_t cap = p->capacity ? 2 * p->capacity : 16;
    param_entry *items = cd__realloc(p->items, (size_t)cap, sizeof *items, "parameter list");
    if (!items)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for a list of %" PRId64 " tensors", fn, cap);
    p->items = items;
    p->capacity = cap;
    return CD_OK;
}

cd_status cd__params_add(cd_params *p, const char *name, int64_t rank, const int64_t *shape,
                         int64_t *index)
{
    static const char fn[] = "cd_params_add";
    CD__CHECK_NOT_NULL(p, fn);
    if (p->final)
        return cd__error(CD_ERR_STATE,
                         "%s: cannot add '%s': the set's layout was fixed "
                         "by an earlier data or gradient access",
                         fn, name ? name : "(null)");
    CD__TRY(check_name(p, fn, name));
    int64_t numel = 0;
    CD__TRY(check_shape(fn, name, rank, shape, &numel));
    if (numel > INT64_MAX / (int64_t)sizeof(float) - p->numel)
        return cd__error(CD_ERR_OVERFLOW, "%s: '%s': the set's total size overflows", fn, name);
    CD__TRY(grow(p, fn));
    param_entry *e = &p->items[p->count];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1);
    e->rank = (int32_t)rank;
    memcpy(e->shape, shape, (size_t)rank * sizeof *shape);
    e->numel = numel;
    e->offset = p->numel;
    p->numel += numel;
    if (index) *index = p->count;
    p->count++;
    return CD_OK;
}

cd_status cd_params_add(cd_params *p, const char *name, int64_t rank, const int64_t *shape)
{
    return cd__params_add(p, name, rank, shape, NULL);
}

/* ---- layout ------------------------------------------------------------ */

cd_status cd__params_finalize(cd_params *p)
{
    CD__CHECK_NOT_NULL(p, "cd__params_finalize");
    if (p->final) return CD_OK;
    if ((uint64_t)p->numel > SIZE_MAX / sizeof(float))
        return cd__error(CD_ERR_OVERFLOW,
                         "parameter set: %" PRId64 " floats do not fit "
                         "in memory",
                         p->numel);
    float *values = cd__calloc((size_t)p->numel, sizeof(float), "parameter values");
    float *grads = values ? cd__calloc((size_t)p->numel, sizeof(float),
                                       "parameter "
                                       "gradients")
                          : NULL;
    if (!grads) {
        cd__free(values);
        return cd_last_status();
    }
    p->values = values;
    p->grads = grads;
    p->final = true;
    return CD_OK;
}

bool cd__params_is_final(const cd_params *p) { return p && p->final; }

float *cd__params_values(cd_params *p) { return p ? p->values : NULL; }

float *cd__params_grads(cd_params *p) { return p ? p->grads : NULL; }

/* ---- queries ----------------------------------------------------------- */

static const param_entry *entry_at(const cd_params *p, int64_t i, const char *fn)
{
    if (!p) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "%s: argument 'p' is NULL", fn);
        return NULL;
    }
    if (i < 0 || i >= p->count) {
        cd__error(CD_ERR_RANGE, "%s: index %" PRId64 " is outside 0..%" PRId64, fn, i,
                  p->count - 1);
        return NULL;
    }
    return &p->items[i];
}

int64_t cd_params_count(const cd_params *p)
{
    if (!p) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_params_count: argument 'p' is NULL");
        return -1;
    }
    return p->count;
}

int64_t cd_params_numel(const cd_params *p)
{
    if (!p) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_params_numel: argument 'p' is NULL");
        return -1;
    }
    return p->numel;
}

const char *cd_params_name(const cd_params *p, int64_t i)
{
    const param_entry *e = entry_at(p, i, "cd_params_name");
    return e ? e->name : NULL;
}

cd_status cd_params_find(const cd_params *p, const char *name, int64_t *index)
{
    static const char fn[] = "cd_params_find";
    CD__CHECK_NOT_NULL(index, fn);
    *index = -1;
    CD__CHECK_NOT_NULL(p, fn);
    CD__CHECK_NOT_NULL(name, fn);
    for (int64_t i = 0; i < p->count; i++) {
        if (strcmp(p->items[i].name, name) == 0) {
            *index = i;
            return CD_OK;
        }
    }
    return cd__error(CD_ERR_NOT_FOUND, "%s: no tensor called '%.*s'", fn, CD_PARAMS_MAX_NAME, name);
}

int64_t cd_params_rank(const cd_params *p, int64_t i)
{
    const param_entry *e = entry_at(p, i, "cd_params_rank");
    return e ? e->rank : -1;
}

cd_status cd_params_shape(const cd_params *p, int64_t i, int64_t *shape, int64_t capacity)
{
    static const char fn[] = "cd_params_shape";
    CD__CHECK_NOT_NULL(shape, fn);
    const param_entry *e = entry_at(p, i, fn);
    if (!e) return cd_last_status();
    if (capacity < e->rank)
        return cd__error(CD_ERR_SHAPE, "%s: capacity %d is below the rank %d of '%s'", fn,
                         (int)capacity, (int)e->rank, e->name);
    memcpy(shape, e->shape, (size_t)e->rank * sizeof *shape);
    return CD_OK;
}

int64_t cd_params_numel_at(const cd_params *p, int64_t i)
{
    const param_entry *e = entry_at(p, i, "cd_params_numel_at");
    return e ? e->numel : -1;
}

int64_t cd__params_offset(const cd_params *p, int64_t i)
{
    const param_entry *e = entry_at(p, i, "cd__params_offset");
    return e ? e->offset : -1;
}

const int64_t *cd__params_dims(const cd_params *p, int64_t i)
{
    const param_entry *e = entry_at(p, i, "cd__params_dims");
    return e ? e->shape : NULL;
}

/* ---- data access (lays the set out) ------------------------------------ */

/* The block (values or grads) for tensor i, or the whole block for i = -1. */
static float *block_at(cd_params *p, int64_t i, bool grad, const char *fn)
{
    if (!p) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "%s: argument 'p' is NULL", fn);
        return NULL;
    }
    if (i != -1 && !entry_at(p, i, fn)) return NULL;
    if (cd__params_finalize(p) != CD_OK) return NULL;
    float *base = grad ? p->grads : p->values;
    return i == -1 ? base : base + p->items[i].offset;
}

float *cd_params_data(cd_params *p, int64_t i) { return block_at(p, i, false, "cd_params_data"); }

float *cd_params_grad(cd_params *p, int64_t i) { return block_at(p, i, true, "cd_params_grad"); }

cd_status cd_params_zero_grad(cd_params *p)
{
    CD__CHECK_NOT_NULL(p, "cd_params_zero_grad");
    CD__TRY(cd__params_finalize(p));
    memset(p->grads, 0, (size_t)p->numel * sizeof(float));
    return CD_OK;
}
