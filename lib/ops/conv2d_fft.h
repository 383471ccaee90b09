/*
 * conv2d_fft.h - the spectral path of conv2d.c (internal to lib/ops).
 *
 * "Same" convolutions with large odd kernels (the CNN's 7x7 layers) as
 * products of 2-D spectra on AVX-512 CPUs. conv2d.c decides when it runs;
 * the functions here follow the conventions of ops.h.
 */
#ifndef CD_CONV2D_FFT_H
#define CD_CONV2D_FFT_H

#include "ops.h"

/* True when the shape can take the spectral path and it pays: groups 1,
 * stride 1, a square odd kernel of 5+ with padding k/2, 8+ channels each
 * way, a plane that fits a 64x64 transform, kernel spectra under 128 MB,
 * and a direct cost per channel pair several times the spectral one.
 * Plain C: safe on any CPU. */
bool cd__conv2d_fft_suits(const cd__conv2d *c);

/* The functions below need AVX-512F; call them only when the CPU has it
 * and cd__conv2d_fft_suits(c). ws is CD__ALIGN-aligned. */
size_t cd__conv2d_fft_workspace(const cd__conv2d *c);
void cd__conv2d_fft_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                            const float *bias, float *ws, cd__task_fn epi, void *epi_ctx);
/* The forward's kernel spectra (prepared_size floats, independent of N)
 * made once, for forwards with unchanged weights; prepare uses ws as the
 * forward would. */
size_t cd__conv2d_fft_prepared_size(const cd__conv2d *c);
void cd__conv2d_fft_prepare(const cd__conv2d *c, float *wk, const float *weight, float *ws);
void cd__conv2d_fft_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                     const float *wk, const float *bias, float *ws, cd__task_fn epi,
                                     void *epi_ctx);
/* din (may be NULL) is overwritten when din_set, else added to; dweight
 * and dbias (either may be NULL) are added to. Call it with din or dweight:
 * the bias gradient comes from the transforms those need. */
void cd__conv2d_fft_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                             float *dbias, const float *dout, const float *in, const float *weight,
                             float *ws);

#endif /* CD_CONV2D_FFT_H */
