/*
 * colddiff_experimental.h - calls and option keys of libcolddiff that are
 * not yet promised.
 *
 * Everything here is exported by the same library, but outside the ABI
 * promise of colddiff.h (docs/api-stability.md): a release may change or
 * remove it, and the ABI check does not hold it to the baseline. Option
 * keys here take values from CD_OPTION_EXPERIMENTAL_FIRST on, so they never
 * collide with a stable key. A piece that proves itself moves to
 * colddiff.h under a stable name.
 */
#ifndef COLDDIFF_EXPERIMENTAL_H
#define COLDDIFF_EXPERIMENTAL_H

#include "colddiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Experimental trainer options, set through cd_trainer_set_int() like the
 * stable ones (cd_trainer_option_info describes them too). Each is a
 * cd_trainer_option value, so it passes where the stable keys do.
 */

/**
 * int: the optimiser step N at which the learning rate reaches 0 along
 * half a cosine that starts at the end of the warm-up; 0 = off (the
 * default). Saved in training checkpoints. On MNIST it lowered the
 * validation loss without improving samples (docs/fast-preset.md), which
 * is why it is not promised.
 */
#define CD_TRAINER_OPT_LR_DECAY ((cd_trainer_option)CD_OPTION_EXPERIMENTAL_FIRST)

/**
 * Bytes of workspace a forward and backward at batch N and H x W use
 * (activations, saved statistics, gradients, scratch); cd_decoder_infer
 * needs less. The decoder allocates it on the first forward of a shape and
 * reuses it after. Like every call on a decoder, not to be run
 * concurrently with another. What the count includes may change as the
 * kernels do.
 * Errors: CD_ERR_SHAPE, CD_ERR_OVERFLOW (N x H x W above 2^31 pixels).
 */
CD_API cd_status cd_decoder_workspace_size(cd_decoder *d, int64_t N, int64_t H, int64_t W,
                                           int64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* COLDDIFF_EXPERIMENTAL_H */
