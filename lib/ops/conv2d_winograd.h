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

/* Images per task for images of P tiles. */
static inline int64_t cd__wg_images_per_task(int64_t N, int64_t P)
{
    return cd__max64(1, cd__min64(N, (WG_TILES + P / 2) / P));
}

/* One image of C planes of H x W into its frame [Hp][Wp][CP], channel-
 * minor, the image at row 1 and column 1, zeros around it and past C. */
void cd__wg_frame(float *fr, const float *img, int64_t C, int64_t CP, int64_t H, int64_t W,
                  int64_t Hp, int64_t Wp);

/* V[xi][tile0 + tile][CP] = B^T d B for every tile of one frame
 * (TH x TW tiles, 4 apart, each reading a 6x6 patch); vs floats per
 * component. Two roundings per dimension. */
void cd__wg_input(float *V, int64_t vs, const float *fr, int64_t CP, int64_t Wp, int64_t TH,
                  int64_t TW, int64_t tile0);

#endif /* CD__CONV_X86 */
#endif /* CD_CONV2D_WINOGRAD_H */
