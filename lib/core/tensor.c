/* tensor.c - the opaque float32 tensor. */
#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Validate a shape and return its element count in *numel. */
static cd_status check_shape(const char *fn, int64_t rank, const int64_t *shape, int64_t *numel)
{
    CD__CHECK_NOT_NULL(shape, fn);
    if (rank < 1 || rank > CD_TENSOR_MAX_RANK)
        return cd__error(CD_ERR_SHAPE, "%s: rank %" PRId64 " is outside 1..%d", fn, rank,
                         CD_TENSOR_MAX_RANK);
    int64_t n = 1;
    for (int64_t i = 0; i < rank; i++) {
        if (shape[i] < 1)
            return cd__error(CD_ERR_SHAPE,
                             "%s: shape[%" PRId64 "] = %" PRId64 " must be at least 1", fn, i,
                             shape[i]);
        if (cd__mul_overflows_i64(n, shape[i], &n))
            return cd__error(CD_ERR_OVERFLOW,
                             "%s: element count overflows at "
                             "shape[%" PRId64 "] = %" PRId64,
                             fn, i, shape[i]);
    }
    int64_t bytes;
    if (cd__mul_overflows_i64(n, (int64_t)sizeof(float), &bytes) ||
        (uint64_t)bytes > (uint64_t)SIZE_MAX)
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: %" PRId64 " floats do not fit in "
                         "memory addresses",
                         fn, n);
    *numel = n;
    return CD_OK;
}

cd_status cd_tensor_create(cd_tensor **out, int64_t rank, const int64_t *shape)
{
    static const char fn[] = "cd_tensor_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    int64_t numel;
    CD__TRY(check_shape(fn, rank, shape, &numel));
    cd_tensor *t = cd__calloc(1, sizeof *t, "tensor handle");
    if (!t) return cd_last_status();
    t->data = cd__calloc((size_t)numel, sizeof(float), "tensor data");
    if (!t->data) {
        cd__free(t);
        return cd_last_status();
    }
    t->rank = (int32_t)rank;
    memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
    t->numel = numel;
    *out = t;
    return CD_OK;
}

void cd_tensor_free(cd_tensor *t)
{
    if (!t) return;
    cd__free(t->data);
    cd__free(t);
}

cd_status cd_tensor_clone(cd_tensor **out, const cd_tensor *src)
{
    static const char fn[] = "cd_tensor_clone";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(src, fn);
    cd_tensor *t;
    CD__TRY(cd_tensor_create(&t, src->rank, src->shape));
    memcpy(t->data, src->data, (size_t)src->numel * sizeof(float));
    *out = t;
    return CD_OK;
}

cd_status cd_tensor_reshape(cd_tensor *t, int64_t rank, const int64_t *shape)
{
    static const char fn[] = "cd_tensor_reshape";
    CD__CHECK_NOT_NULL(t, fn);
    int64_t numel;
    CD__TRY(check_shape(fn, rank, shape, &numel));
    if (numel != t->numel)
        return cd__error(CD_ERR_SHAPE,
                         "%s: new shape has %" PRId64 " elements, "
                         "the tensor has %" PRId64,
                         fn, numel, t->numel);
    t->rank = (int32_t)rank;
    memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
    return CD_OK;
}

int64_t cd_tensor_rank(const cd_tensor *t)
{
    if (!t) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_tensor_rank: argument 't' is NULL");
        return -1;
    }
    return t->rank;
}

int64_t cd_tensor_dim(const cd_tensor *t, int64_t axis)
{
    if (!t) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_tensor_dim: argument 't' is NULL");
        return -1;
    }
    int64_t a = axis < 0 ? axis + t->rank : axis;
    if (a < 0 || a >= t->rank) {
        cd__error(CD_ERR_RANGE,
                  "cd_tensor_dim: axis %" PRId64 " is outside a "
                  "rank-%" PRId32 " tensor",
                  axis, t->rank);
        return -1;
    }
    return t->shape[a];
}

int64_t cd_tensor_numel(const cd_tensor *t)
{
    if (!t) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_tensor_numel: argument 't' is NULL");
        return -1;
    }
    return t->numel;
}

cd_status cd_tensor_shape(const cd_tensor *t, int64_t *shape, int64_t capacity)
{
    static const char fn[] = "cd_tensor_shape";
    CD__CHECK_NOT_NULL(t, fn);
    CD__CHECK_NOT_NULL(shape, fn);
    if (capacity < t->rank)
        return cd__error(CD_ERR_SHAPE,
                         "%s: capacity %" PRId64 " is less than the "
                         "rank %" PRId32,
                         fn, capacity, t->rank);
    memcpy(shape, t->shape, (size_t)t->rank * sizeof *shape);
    return CD_OK;
}

float *cd_tensor_data(cd_tensor *t)
{
    if (!t) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_tensor_data: argument 't' is NULL");
        return NULL;
    }
    return t->data;
}

cd_status cd_tensor_fill(cd_tensor *t, float value)
{
    CD__CHECK_NOT_NULL(t, "cd_tensor_fill");
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    return CD_OK;
}

static cd_status check_copy(const char *fn, const cd_tensor *t, const float *buf, int64_t count)
{
    CD__CHECK_NOT_NULL(t, fn);
    CD__CHECK_NOT_NULL(buf, fn);
    if (count != t->numel)
        return cd__error(CD_ERR_SHAPE,
                         "%s: count %" PRId64 " differs from the "
                         "tensor's %" PRId64 " elements",
                         fn, count, t->numel);
    return CD_OK;
}

cd_status cd_tensor_copy_from(cd_tensor *t, const float *src, int64_t count)
{
    CD__TRY(check_copy("cd_tensor_copy_from", t, src, count));
    memmove(t->data, src, (size_t)count * sizeof(float));
    return CD_OK;
}

cd_status cd_tensor_copy_to(const cd_tensor *t, float *dst, int64_t count)
{
    CD__TRY(check_copy("cd_tensor_copy_to", t, dst, count));
    memmove(dst, t->data, (size_t)count * sizeof(float));
    return CD_OK;
}

cd_status cd_tensor_copy_rows(cd_tensor *dst, int64_t dst_row, const cd_tensor *src,
                              int64_t src_row, int64_t n)
{
    static const char fn[] = "cd_tensor_copy_rows";
    CD__CHECK_NOT_NULL(dst, fn);
    CD__CHECK_NOT_NULL(src, fn);
    if (dst->rank < 1 || dst->rank != src->rank)
        return cd__error(CD_ERR_SHAPE,
                         "%s: ranks %d (dst) and %d (src) must be equal and "
                         "at least 1",
                         fn, (int)dst->rank, (int)src->rank);
    for (int32_t i = 1; i < dst->rank; i++)
        if (dst->shape[i] != src->shape[i])
            return cd__error(CD_ERR_SHAPE,
                             "%s: rows differ in shape: axis %d is %" PRId64 " in dst and %" PRId64
                             " in src",
                             fn, (int)i, dst->shape[i], src->shape[i]);
    if (n < 0 || dst_row < 0 || src_row < 0 || dst_row > dst->shape[0] - n ||
        src_row > src->shape[0] - n)
        return cd__error(CD_ERR_RANGE,
                         "%s: rows [%" PRId64 ", +%" PRId64 ") of src (%" PRId64
                         " rows) to [%" PRId64 ", +%" PRId64 ") of dst (%" PRId64 " rows) are "
                         "out of range",
                         fn, src_row, n, src->shape[0], dst_row, n, dst->shape[0]);
    const int64_t per = dst->shape[0] ? dst->numel / dst->shape[0] : 0;
    /* memmove: src and dst may be the same tensor. */
    if (n > 0 && per > 0)
        memmove(dst->data + dst_row * per, src->data + src_row * per,
                (size_t)(n * per) * sizeof(float));
    return CD_OK;
}

cd_status cd__tensor_expect(const cd_tensor *t, const char *fn, const char *name, int32_t rank,
                            const int64_t *shape)
{
    if (!t) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: tensor '%s' is NULL", fn, name);
    bool ok = t->rank == rank;
    for (int32_t i = 0; ok && i < rank; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return CD_OK;

    char want[160], got[160];
    size_t wn = 0, gn = 0;
    for (int32_t i = 0; i < rank && wn < sizeof want; i++)
        wn += (size_t)(shape[i] < 0 ? snprintf(want + wn, sizeof want - wn, "%s*", i ? "x" : "")
                                    : snprintf(want + wn, sizeof want - wn, "%s%" PRId64,
                                               i ? "x" : "", shape[i]));
    for (int32_t i = 0; i < t->rank && gn < sizeof got; i++)
        gn += (size_t)snprintf(got + gn, sizeof got - gn, "%s%" PRId64, i ? "x" : "", t->shape[i]);
    return cd__error(CD_ERR_SHAPE, "%s: tensor '%s' must be %s, got %s", fn, name, want, got);
}

int64_t cd__first_non_finite(const float *x, int64_t n)
{
    enum { BLOCK = 1024 };
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t end = n - i0 < BLOCK ? n : i0 + BLOCK;
        uint32_t bad = 0;
        for (int64_t i = i0; i < end; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u; /* all exponent bits: inf or NaN */
        }
        if (!bad) continue;
        for (int64_t i = i0; i < end; i++)
            if (!isfinite(x[i])) return i;
    }
    return -1;
}

cd_status cd__check_finite(const cd_tensor *t, const char *fn, const char *name)
{
    const int64_t bad = cd__first_non_finite(t->data, t->numel);
    if (bad < 0) return CD_OK;
    const double v = (double)t->data[bad];
    if (t->rank != 4)
        return cd__error(CD_ERR_NOT_FINITE, "%s: %s[%" PRId64 "] is %g", fn, name, bad, v);
    const int64_t W = t->shape[3], H = t->shape[2], C = t->shape[1];
    return cd__error(CD_ERR_NOT_FINITE,
                     "%s: %s[%" PRId64 "] is %g (image %" PRId64 ", channel %" PRId64
                     ", row %" PRId64 ", column %" PRId64 ")",
                     fn, name, bad, v, bad / (W * H * C), bad / (W * H) % C, bad / W % H, bad % W);
}
