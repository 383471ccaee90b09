/*
 * ckpt_apply.c - copying a read checkpoint into a model: match every
 * tensor by name and shape, restore the optimiser, then copy the values
 * (cd__ckpt_apply, cd__ckpt_load). Everything is checked and allocated
 * before the first byte is copied, so a failure leaves the model as it was.
 * Matching needs only the tensors' names and shapes, so a model built but
 * not yet laid out allocates its parameters only once the file is known to
 * hold them all.
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cd__ckpt_has_adam(const cd__ckpt *ck) { return ck && ck->has_adam; }
bool cd__ckpt_has_ema(const cd__ckpt *ck) { return ck && ck->has_ema; }

static void format_shape(char *buf, size_t cap, int32_t rank, const int64_t *dims)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < rank && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %" PRId64 : "%" PRId64, dims[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static cd_status match_one(const cd__ckpt *ck, const cd_params *p, int64_t i,
                           const file_tensor **out)
{
    const char *name = cd_params_name(p, i);
    const file_tensor *t = cd__ckpt_find_tensor(ck, name);
    if (!t)
        return cd__error(CD_ERR_NOT_FOUND,
                         "'%s': the model's tensor '%s' is not in the "
                         "checkpoint",
                         ck->path, name);
    int32_t rank = cd_params_rank(p, i);
    const int64_t *dims = cd__params_dims(p, i);
    if (t->rank != rank || memcmp(t->shape, dims, (size_t)rank * sizeof *dims) != 0) {
        char want[160], got[160];
        format_shape(want, sizeof want, rank, dims);
        format_shape(got, sizeof got, t->rank, t->shape);
        return cd__error(CD_ERR_SHAPE,
                         "'%s': tensor '%s' is %s in the checkpoint but %s "
                         "in the model",
                         ck->path, name, got, want);
    }
    *out = t;
    return CD_OK;
}

/* map[i] = the file tensor for params' tensor i; every tensor on both sides
 * must have its counterpart. */
static cd_status match_tensors(const cd__ckpt *ck, const cd_params *p, const file_tensor **map)
{
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++) CD__TRY(match_one(ck, p, i, &map[i]));
    for (int64_t j = 0; count != ck->n_tensors && j < ck->n_tensors; j++) {
        int64_t unused;
        if (cd_params_find(p, ck->tensors[j].name, &unused) != CD_OK)
            return cd__error(CD_ERR_NOT_FOUND,
                             "'%s': the checkpoint holds tensor '%s', which "
                             "the model lacks",
                             ck->path, ck->tensors[j].name);
    }
    return CD_OK;
}

/* A flat block in the file's order, rearranged into params' order. */
static void gather(float *dst, const uint8_t *block, const cd_params *p, const file_tensor **map)
{
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++)
        decode_f32(dst + cd__params_offset(p, i), block + 4 * (uint64_t)map[i]->offset,
                   map[i]->numel);
}

static cd_status restore_adam(const cd__ckpt *ck, cd__adam *adam, const cd_params *p,
                              const file_tensor **map)
{
    size_t n = (size_t)cd_params_numel(p);
    int blocks = ck->has_ema ? 3 : 2;
    float *tmp = cd__calloc(n * (size_t)blocks, sizeof(float), "optimiser state");
    if (!tmp) return cd_last_status();
    gather(tmp, ck->m, p, map);
    gather(tmp + n, ck->v, p, map);
    if (ck->has_ema) gather(tmp + 2 * n, ck->ema, p, map);
    cd_status st = cd__adam_restore(adam, ck->hyper, ck->adam_steps, tmp, tmp + n,
                                    ck->has_ema ? tmp + 2 * n : NULL);
    cd__free(tmp);
    return st;
}

static void copy_values(const cd__ckpt *ck, cd_params *p, const file_tensor **map, bool from_ema)
{
    float *values = cd__params_values(p);
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++) {
        float *dst = values + cd__params_offset(p, i);
        if (from_ema)
            decode_f32(dst, ck->ema + 4 * (uint64_t)map[i]->offset, map[i]->numel);
        else if (map[i]->dtype == DTYPE_FLOAT16)
            decode_f16(dst, map[i]->data, map[i]->numel);
        else
            decode_f32(dst, map[i]->data, map[i]->numel);
    }
}

static cd_status check_apply_args(const cd__ckpt *ck, cd_params *params, cd__adam *adam,
                                  uint32_t flags)
{
    static const char fn[] = "cd__ckpt_apply";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(params, fn);
    if (flags & ~CD__CKPT_EMA_AS_VALUES)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, (unsigned)flags);
    if (!ck->has_tensors)
        return cd__error(CD_ERR_STATE, "%s: this checkpoint was not read from a file", fn);
    if (adam && cd__adam_params(adam) != params)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: the optimiser updates another "
                         "parameter set",
                         fn);
    if (adam && !ck->has_adam)
        return cd__error(CD_ERR_NOT_FOUND, "%s: '%s' holds no optimiser state", fn, ck->path);
    if ((flags & CD__CKPT_EMA_AS_VALUES) && !ck->has_ema)
        return cd__error(CD_ERR_NOT_FOUND, "%s: '%s' holds no EMA weights", fn, ck->path);
    return CD_OK;
}

cd_status cd__ckpt_apply(const cd__ckpt *ck, cd_params *params, cd__adam *adam, uint32_t flags)
{
    CD__TRY(check_apply_args(ck, params, adam, flags));
    int64_t count = cd_params_count(params);
    const file_tensor **map = cd__calloc((size_t)count, sizeof *map, "checkpoint tensor map");
    if (!map) return cd_last_status();
    cd_status st = match_tensors(ck, params, map);
    /* Only now, with every tensor matched to one of the file's, may an
     * unfinalised set allocate: its size is then the file's tensor data. */
    if (st == CD_OK) st = cd__params_finalize(params);
    /* The optimiser first: its restore is the last step that can fail. */
    if (st == CD_OK && adam) st = restore_adam(ck, adam, params, map);
    if (st == CD_OK) copy_values(ck, params, map, flags & CD__CKPT_EMA_AS_VALUES);
    cd__free(map);
    return st;
}

cd_status cd__ckpt_load(const char *path, cd_params *params, cd__adam *adam, uint32_t flags)
{
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    cd_status st = cd__ckpt_apply(ck, params, adam, flags);
    cd__ckpt_free(ck);
    return st;
}
