/*
 * conv2d_dense_kernels.h - the register-blocked micro-kernels of the dense
 * path (conv2d_dense_kernels.c, internal to lib/ops). conv2d_dense.c picks
 * them by shape and calls them only through these pointers. They need
 * AVX-512F, so everything here exists only #ifdef CD__CONV_X86.
 */
#ifndef CD_CONV2D_DENSE_KERNELS_H
#define CD_CONV2D_DENSE_KERNELS_H

#include "conv2d_internal.h"

#ifdef CD__CONV_X86

/* Output channels per weight block of the dense kernels. */
#define MRB 8

/* Where a micro-tile's results go: raw rows into buf (for store_wide), or,
 * when wide positions are output indices (Wp == W_out), straight into dst
 * rows with the bias or accumulation applied. */
typedef struct {
    float *buf;
    int64_t ld;        /* floats per buf row */
    float *dst;        /* row 0 at the micro-tile's first position */
    int64_t cs;        /* floats per dst row (channel) */
    const float *bias; /* per row, or NULL */
    int64_t nvalid;    /* valid positions from the first one */
    int rows;          /* rows to write (the kernel may compute more) */
    bool accumulate;
    __mmask16 tail; /* lanes of the last vector that may be read */
} mk_out;

typedef void (*dense_mk_fn)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                            const float *, const mk_out *);

/* Kernels by row class (8, 4, 2, 1 rows), widest first. */
typedef struct {
    int nv[4];
    dense_mk_fn fn[4];
} mk_class;

extern const mk_class cd__mk_classes[4];

/* Where a channel-vectorised micro-tile goes: channel m, row r, pixel i
 * lands at dst[m cs + r ld + i]. Channels from nm on and pixels before xs
 * (an earlier tile stored those) are skipped. */
typedef struct {
    float *dst;
    int64_t cs, ld;
    int nm, xs;
    const float *bias; /* per channel, or NULL */
    bool accumulate;
} fcv_out;

typedef void (*fcv_fn)(const float *const *, int64_t, int64_t, int64_t, int64_t, int64_t,
                       const float *, const fcv_out *);

/* Named rows x pixels x 16-channel vectors; the 1xNPX forms serve the rows
 * left below the last full block of rows. */
#define FCV_MK_DECL(NR, NPX, NCV)                                                                  \
    CD__AVX512 void cd__fcv_mk_##NR##x##NPX##x##NCV(const float *const *rows, int64_t cs,          \
                                                    int64_t wp, int64_t C, int64_t kh, int64_t kw, \
                                                    const float *w, const fcv_out *o);
FCV_MK_DECL(1, 14, 2)
FCV_MK_DECL(2, 7, 2)
FCV_MK_DECL(2, 14, 1)
FCV_MK_DECL(4, 7, 1)
FCV_MK_DECL(1, 7, 2)
FCV_MK_DECL(1, 14, 1)
FCV_MK_DECL(1, 7, 1)
#undef FCV_MK_DECL

typedef void (*dwcv_fn)(const float *const *, const float *, int64_t, int64_t, int64_t, int64_t,
                        int, float *, int64_t);

/* The kernels by frame-kernel width: rows R and function for NCV = 2, 1. */
typedef struct {
    int kw;
    int R[2];
    dwcv_fn fn[2];
} dwcv_kind;

extern const dwcv_kind cd__dwcv_kinds[5];

#endif /* CD__CONV_X86 */

#endif /* CD_CONV2D_DENSE_KERNELS_H */
