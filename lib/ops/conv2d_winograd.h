/*
 * conv2d_winograd.h - what the Winograd F(4x4, 3x3) forward
 * (conv2d_winograd.c) and weight gradient (conv2d_winograd_grad.c) share:
 * the tile geometry, how work is cut into tasks, the channel-minor frames
 * and the input transform. AVX-512 only.
 */
#ifndef CD_CONV2D_WINOGRAD_H
#define CD_CONV2D_WINOGRAD_H

#include "conv2d_internal.h"

#ifdef CD__CONV_X86

/* Outputs per tile side, the input patch side it needs, and the number of
 * transform components (WG_A x WG_A). A component index is
 * 6 (vertical) + horizontal. */
#define WG_M 4
#define WG_A 6
#define WG_XI 36
/* Tasks per round, each with its own slice of the workspace: enough for
 * the threads to balance, few enough to keep the workspace small. */
#define WG_TASKS 8
/* Tiles per task to aim for: enough to reuse each block of the other
 * operand across several micro-tiles, few enough to stay in L2. */
#define WG_TILES 32

/* How a layer's images cut into tiles and tasks. */
typedef struct {
    int64_t CiP, CoP;  /* channels rounded up to 16 */
    int64_t TH, TW, P; /* tiles per column, per row, per image */
    int64_t Hp, Wp;    /* frame: 4 TH + 2 by 4 TW + 2 */
    int64_t IB, TT;    /* images and tiles per task */
} cd__wg_geom;

static inline cd__wg_geom cd__wg_geometry(const cd__conv2d *c)
{
    cd__wg_geom g;
    g.CiP = cd__round_up(c->C_in, 16);
    g.CoP = cd__round_up(c->C_out, 16);
    g.TH = cd__ceil_div(c->H_out, WG_M);
    g.TW = cd__ceil_div(c->W_out, WG_M);
    g.P = g.TH * g.TW;
    g.Hp = WG_M * g.TH + 2;
    g.Wp = WG_M * g.TW + 2;
    g.IB = cd__max64(1, cd__min64(c->N, (WG_TILES + g.P / 2) / g.P));
    g.TT = g.IB * g.P;
    return g;
}

/* One image of C planes of H x W into its frame [Hp][Wp][CP], channel-
 * minor, the image at row 1 and column 1, zeros around it and past C. */
void cd__wg_frame(float *fr, const float *img, int64_t C, int64_t CP, int64_t H, int64_t W,
                  int64_t Hp, int64_t Wp);

/* V[xi][tile0 + tile][CP] = B^T d B for every tile of one frame
 * (TH x TW tiles, 4 apart, each reading a 6x6 patch), component xi of a
 * tile at V + tile vt + xi vs. Two roundings per dimension. */
void cd__wg_input(float *V, int64_t vs, int64_t vt, const float *fr, int64_t CP, int64_t Wp,
                  int64_t TH, int64_t TW, int64_t tile0);

#endif /* CD__CONV_X86 */
#endif /* CD_CONV2D_WINOGRAD_H */
