/*
 * nn.h - internal header of the nn layer: the flat parameter set behind the
 * public cd_params_* API, PyTorch-style initialisation, the Adam optimiser
 * and the checkpoint file (docs/checkpoint-format.md). Nothing here is
 * exported; names use the cd__ prefix.
 *
 * Memory model (llm.c malloc_and_point_parameters, kann kad_ext_collate):
 * every tensor of a set is a view into one flat, CD__ALIGN-aligned float
 * block, in the order the tensors were added, without padding between them.
 * Gradients, Adam's two moments and the EMA weights are parallel blocks of
 * the same length, so each of them is one loop, one memset or one write.
 */
#ifndef CD_NN_H
#define CD_NN_H

#include "core.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- params.c: the flat parameter set --------------------------------- */

/*
 * cd_params_add() that also reports the new tensor's index (may be NULL).
 * Decoders build their sets through this. Errors as cd_params_add().
 */
cd_status cd__params_add(cd_params *p, const char *name, int64_t rank, const int64_t *shape,
                         int64_t *index);

/*
 * Fix the layout and allocate the value and gradient blocks (both zero).
 * Idempotent. Every data/grad access calls it; after it, adding a tensor is
 * CD_ERR_STATE. Errors: CD_ERR_OUT_OF_MEMORY (the set stays unfinalised).
 */
cd_status cd__params_finalize(cd_params *p);

/* True once the layout is fixed. */
bool cd__params_is_final(const cd_params *p);

/* Offset (in floats) of tensor i in the flat blocks, or -1 for a bad i.
 * Known as soon as the tensor is added: offsets never move. */
int64_t cd__params_offset(const cd_params *p, int64_t i);

/* Borrowed shape of tensor i (rank entries), or NULL for a bad i. */
const int64_t *cd__params_dims(const cd_params *p, int64_t i);

/* The flat value and gradient blocks; NULL before cd__params_finalize(). */
float *cd__params_values(cd_params *p);
float *cd__params_grads(cd_params *p);

/* ---- init.c: PyTorch's default initialisation -------------------------- */

/*
 * The layer kinds whose defaults differ only in how fan_in is read from the
 * weight's shape. PyTorch's _calculate_fan_in_and_fan_out takes
 * weight.size(1) * (product of the kernel dims) for all three, which is
 *   Conv2d          O x I/g x kh x kw  ->  fan_in = I/g * kh * kw
 *   ConvTranspose2d I x O/g x kh x kw  ->  fan_in = O/g * kh * kw  (sic)
 *   Linear          out x in           ->  fan_in = in
 */
typedef enum cd__layer_kind {
    CD__LAYER_CONV2D = 0,
    CD__LAYER_CONV_TRANSPOSE2D = 1,
    CD__LAYER_LINEAR = 2
} cd__layer_kind;

/* fan_in of a weight of this kind and shape (see above), or -1 (with an
 * error) for a rank that does not fit the kind. */
int64_t cd__init_fan_in(cd__layer_kind kind, int32_t rank, const int64_t *shape);

/*
 * Fill U(-b, b) with b = bound: n draws from cd_rng_uniform, u -> (2u-1)*b.
 * Errors: CD_ERR_RANGE for a bound that is not finite and >= 0.
 */
cd_status cd__init_uniform(cd_rng *rng, float *dst, int64_t n, double bound);

/*
 * PyTorch's reset_parameters() of Conv2d / ConvTranspose2d / Linear: the
 * weight (tensor index `weight`) from kaiming_uniform_(a = sqrt(5)), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), then, if bias >= 0, the bias from the
 * same U. Weight first, then bias, each one cd_rng_uniform call. The bias
 * length must be the layer's output size (Conv2d, Linear: weight dim 0;
 * ConvTranspose2d with groups = 1: weight dim 1).
 * The distribution matches PyTorch; the stream of numbers does not (PyTorch
 * uses its own mt19937), so weights are not those of torch.manual_seed(s).
 */
cd_status cd__init_layer(cd_params *p, cd__layer_kind kind, int64_t weight, int64_t bias,
                         cd_rng *rng);

/* LayerNorm's defaults: weight 1, bias 0 (either index may be -1). */
cd_status cd__init_layer_norm(cd_params *p, int64_t weight, int64_t bias);

/* ---- adam.c: torch.optim.Adam / AdamW ---------------------------------- */

typedef struct cd__adam cd__adam;

/*
 * Hyper-parameters, set through one enum-keyed setter (zstd's
 * ZSTD_CCtx_setParameter style) so the optimiser can become public without
 * an options struct. Values are doubles; flags are 0 or 1. Numbers are
 * fixed and append-only: checkpoints store them.
 */
typedef enum cd__adam_param {
    CD__ADAM_LR = 0,           /* (0, inf), default 2e-4                   */
    CD__ADAM_BETA1 = 1,        /* [0, 1), default 0.9                       */
    CD__ADAM_BETA2 = 2,        /* [0, 1), default 0.999                     */
    CD__ADAM_EPS = 3,          /* (0, inf), default 1e-8                    */
    CD__ADAM_WEIGHT_DECAY = 4, /* [0, inf), default 0                       */
    CD__ADAM_DECOUPLED = 5,    /* 0: Adam's L2 (g += wd p), 1: AdamW        */
    CD__ADAM_CLIP_NORM = 6,    /* [0, inf): max global L2 norm; 0 = off     */
    CD__ADAM_EMA_DECAY = 7,    /* [0, 1): EMA decay d; 0 = no EMA           */
    CD__ADAM_LR_WARMUP = 8,    /* whole steps of a linear lr ramp; 0 = off  */
    CD__ADAM_EMA_WARMUP = 9,   /* 1: decay min(d, (1+t)/(10+t)) at step t   */
    CD__ADAM_LR_DECAY = 10     /* step N of a cosine decay to 0; 0 = off    */
} cd__adam_param;
#define CD__ADAM_NPARAMS 11

/* A key's description: its name, type, bounds and default (the row's key
 * is the cd__adam_param), or NULL with CD_ERR_INVALID_ARGUMENT. */
const cd__option *cd__adam_option(cd__adam_param key, const char *fn);

/* Check a value against the key's row (CD_ERR_RANGE / CD_ERR_NOT_FINITE
 * with a message naming the key; `who` prefixes the message). Integer and
 * boolean keys take whole numbers only. */
cd_status cd__adam_check(const char *who, cd__adam_param key, double value);

/* The default of a key (NaN if unknown). */
double cd__adam_default(cd__adam_param key);

/* The name of a key ("lr", "beta1", ...), or NULL if unknown. */
const char *cd__adam_param_name(cd__adam_param key);

/*
 * An optimiser over the whole of `params`, with the defaults above. Lays
 * out params (cd__params_finalize) and allocates m and v (zero). `params`
 * must outlive the optimiser. Errors: CD_ERR_INVALID_ARGUMENT,
 * CD_ERR_OUT_OF_MEMORY.
 */
cd_status cd__adam_create(cd__adam **out, cd_params *params);
void cd__adam_free(cd__adam *a);

/* Set a hyper-parameter (validated; the old value stays on failure).
 * Setting CD__ADAM_EMA_DECAY from 0 to d > 0 starts an EMA at the next
 * step; setting it to 0 drops the EMA. */
cd_status cd__adam_set(cd__adam *a, cd__adam_param key, double value);
cd_status cd__adam_get(const cd__adam *a, cd__adam_param key, double *value);

/*
 * One step over every parameter, from the gradients in params' grad block:
 *   1. If any gradient is NaN or infinite, or the step would leave a NaN
 *      or an infinity in a value, a moment or the EMA (a huge learning
 *      rate, a gradient whose square overflows float): CD_ERR_NOT_FINITE
 *      naming the tensor and element, and nothing changes (values, grads,
 *      moments, step count, EMA). The step is tried first without writing
 *      anything, which costs about as much again as the step itself.
 *   2. Clipping (clip > 0): torch.nn.utils.clip_grad_norm_ over all
 *      gradients: total = ||g||_2 (summed in double), coef = max_norm /
 *      (total + 1e-6), and if coef < 1 every gradient is scaled in place by
 *      coef (as in PyTorch, the grad block keeps the clipped values).
 *   3. PyTorch 1.13's _single_tensor_adam(w), in float32 (see adam.c).
 *   4. EMA (d > 0): ema = d ema + (1 - d) p; the EMA starts as a copy of
 *      the values just before the first step taken with d > 0.
 * Gradients are not zeroed (call cd_params_zero_grad()).
 */
cd_status cd__adam_step(cd__adam *a);

/* Steps taken so far (PyTorch's state["step"]). */
int64_t cd__adam_steps(const cd__adam *a);

/* The global gradient norm the last step measured (before clipping). */
double cd__adam_last_grad_norm(const cd__adam *a);

/* The parameter set this optimiser updates. */
cd_params *cd__adam_params(const cd__adam *a);

/* The moment blocks (cd_params_numel() floats each, params' order). */
const float *cd__adam_m(const cd__adam *a);
const float *cd__adam_v(const cd__adam *a);

/* The EMA block, or NULL while there is none (EMA off or not yet started). */
const float *cd__adam_ema(const cd__adam *a);
/* The same buffer, writable: cd_trainer_swap_ema exchanges it with the weights. */
float *cd__adam_ema_mut(cd__adam *a);

/*
 * Replace the whole state at once (the checkpoint loader): hyper-parameters
 * hyper[CD__ADAM_NPARAMS], step count, m, v (numel floats each) and, if
 * ema is not NULL and the EMA decay is > 0, the EMA weights (otherwise no
 * EMA is kept; with a decay > 0 it starts again at the next step).
 * Everything is checked and
 * allocated first: on failure the optimiser is unchanged.
 */
cd_status cd__adam_restore(cd__adam *a, const double *hyper, int64_t steps, const float *m,
                           const float *v, const float *ema);

/* ---- checkpoint.c: the checkpoint file (docs/checkpoint-format.md) ----- */

/*
 * A checkpoint's contents other than the tensors and the optimiser: the
 * model configuration (typed key/value entries), free-form metadata
 * (string key/values), named RNG states and the step/epoch counters.
 * Made empty by cd__ckpt_create() and filled with the setters before a
 * save, or made by cd__ckpt_read(), which also keeps the file's tensors,
 * optimiser state and EMA until cd__ckpt_apply() copies them into a model.
 */
typedef struct cd__ckpt cd__ckpt;

/* Types of configuration entries; numbers are part of the file format. */
typedef enum cd__ckpt_type {
    CD__CKPT_INT64 = 1,
    CD__CKPT_FLOAT64 = 2,
    CD__CKPT_STRING = 3,
    CD__CKPT_FLOAT32_ARRAY = 4,
    CD__CKPT_INT64_ARRAY = 5
} cd__ckpt_type;

/* The current format version, and limits a reader enforces. */
#define CD__CKPT_VERSION 1
#define CD__CKPT_MAX_KEY 127                     /* = CD_PARAMS_MAX_NAME */
#define CD__CKPT_MAX_BODY ((uint64_t)1 << 32)    /* uncompressed body bytes */
#define CD__CKPT_MAX_ENTRIES ((uint64_t)1 << 20) /* per list (tensors, ...) */

cd_status cd__ckpt_create(cd__ckpt **out);
void cd__ckpt_free(cd__ckpt *ck);

/* Configuration entries. A key is 1..CD__CKPT_MAX_KEY bytes; setting an
 * existing key replaces its value (and type). Strings hold no NUL byte. */
cd_status cd__ckpt_set_i64(cd__ckpt *ck, const char *key, int64_t value);
cd_status cd__ckpt_set_f64(cd__ckpt *ck, const char *key, double value);
cd_status cd__ckpt_set_str(cd__ckpt *ck, const char *key, const char *value);
cd_status cd__ckpt_set_f32_array(cd__ckpt *ck, const char *key, const float *values, int64_t n);
cd_status cd__ckpt_set_i64_array(cd__ckpt *ck, const char *key, const int64_t *values, int64_t n);

/*
 * Getters: CD_ERR_NOT_FOUND if the key is absent, CD_ERR_FORMAT if it holds
 * another type. Arrays: *n gets the length; values (capacity `cap`) may be
 * NULL to ask for the length only, else cap < length is CD_ERR_SHAPE.
 * Strings are borrowed from ck.
 */
cd_status cd__ckpt_get_i64(const cd__ckpt *ck, const char *key, int64_t *value);
cd_status cd__ckpt_get_f64(const cd__ckpt *ck, const char *key, double *value);
cd_status cd__ckpt_get_str(const cd__ckpt *ck, const char *key, const char **value);
cd_status cd__ckpt_get_f32_array(const cd__ckpt *ck, const char *key, float *values, int64_t cap,
                                 int64_t *n);
cd_status cd__ckpt_get_i64_array(const cd__ckpt *ck, const char *key, int64_t *values, int64_t cap,
                                 int64_t *n);

/* Store the tensors (TENS) as float16 on save: every weight rounded to the
 * nearest half. The save then fails with CD_ERR_RANGE, naming the tensor,
 * if a value is not finite or rounds beyond the half range (65504). The
 * optimiser state and EMA, when saved, stay float32. */
void cd__ckpt_set_half_weights(cd__ckpt *ck, bool half);

/* Enumerate configuration keys: count, then key i (borrowed) and type. */
int64_t cd__ckpt_config_count(const cd__ckpt *ck);
const char *cd__ckpt_config_key(const cd__ckpt *ck, int64_t i, cd__ckpt_type *type);

/* Free-form metadata: string keys and values (no NUL bytes). */
cd_status cd__ckpt_set_meta(cd__ckpt *ck, const char *key, const char *value);
cd_status cd__ckpt_get_meta(const cd__ckpt *ck, const char *key, const char **value);
int64_t cd__ckpt_meta_count(const cd__ckpt *ck);
cd_status cd__ckpt_meta_at(const cd__ckpt *ck, int64_t i, const char **key, const char **value);

/* Named RNG states (e.g. "train", "data"): set copies rng's state now;
 * get restores it into rng (CD_ERR_NOT_FOUND if absent; rng unchanged on
 * any failure). */
cd_status cd__ckpt_set_rng(cd__ckpt *ck, const char *name, const cd_rng *rng);
cd_status cd__ckpt_get_rng(const cd__ckpt *ck, const char *name, cd_rng *rng);

/* Training counters (both >= 0); get: CD_ERR_NOT_FOUND if not stored. */
cd_status cd__ckpt_set_counters(cd__ckpt *ck, int64_t step, int64_t epoch);
cd_status cd__ckpt_get_counters(const cd__ckpt *ck, int64_t *step, int64_t *epoch);

/*
 * Write a checkpoint atomically (temporary file, fsync, rename): ck's
 * entries (ck may be NULL), every tensor of params, and, if adam is not
 * NULL (it must update `params`), its state and EMA. On failure an
 * existing file at path is unchanged. Errors: CD_ERR_INVALID_ARGUMENT,
 * CD_ERR_NOT_FOUND (missing folder), CD_ERR_IO, CD_ERR_OUT_OF_MEMORY.
 */
cd_status cd__ckpt_save(const cd__ckpt *ck, const char *path, cd_params *params,
                        const cd__adam *adam);
/* The same checkpoint to each of n_paths files in turn, serialised and
 * compressed once (a trainer's best and last files at the end of an epoch
 * that improved). A failure leaves the files after it unwritten. */
cd_status cd__ckpt_save_to(const cd__ckpt *ck, const char *const *paths, int n_paths,
                           cd_params *params, const cd__adam *adam);

/*
 * Read and fully validate a checkpoint file into *out (NULL on failure).
 * Touches no model. Errors: CD_ERR_NOT_FOUND, CD_ERR_IO, CD_ERR_FORMAT
 * (bad magic, truncation or any malformed content, with the byte offset),
 * CD_ERR_VERSION (a newer format or an unknown required section),
 * CD_ERR_CHECKSUM, CD_ERR_UNSUPPORTED (big-endian file, unknown
 * compression), CD_ERR_OUT_OF_MEMORY.
 */
cd_status cd__ckpt_read(cd__ckpt **out, const char *path);

/* Flags of cd__ckpt_apply(). */
#define CD__CKPT_EMA_AS_VALUES 1u /* load the EMA weights as the values */

/*
 * Copy a read checkpoint's tensors into params, matched by name (order may
 * differ), and, if adam is not NULL, its optimiser state into adam (which
 * must update params): step count, m, v, the EMA if saved, and the saved
 * hyper-parameters (set any you want to change after the call). Every
 * check comes first: on failure params and adam are unchanged. A params
 * not yet laid out is laid out (cd__params_finalize) only after every
 * tensor matched, so a model built from a file's configuration allocates
 * no more than the file's tensors. Errors: CD_ERR_NOT_FOUND (a tensor of params is
 * not in the file, or the file holds a tensor params lacks; no optimiser
 * state or EMA in the file when asked for), CD_ERR_SHAPE (rank or shape
 * differs; the message names the tensor), CD_ERR_STATE (ck holds no
 * tensors: it was not read from a file), CD_ERR_INVALID_ARGUMENT.
 */
cd_status cd__ckpt_apply(const cd__ckpt *ck, cd_params *params, cd__adam *adam, uint32_t flags);

/* True if a read checkpoint holds optimiser state / EMA weights. */
bool cd__ckpt_has_adam(const cd__ckpt *ck);
bool cd__ckpt_has_ema(const cd__ckpt *ck);

/* cd__ckpt_read + cd__ckpt_apply + cd__ckpt_free in one call. */
cd_status cd__ckpt_load(const char *path, cd_params *params, cd__adam *adam, uint32_t flags);

/* Largest buffer the calling thread's last cd__ckpt_read allocated for the
 * file or its body, in bytes (for the lying-size tests). */
uint64_t cd__ckpt_last_alloc_bytes(void);

#endif /* CD_NN_H */
