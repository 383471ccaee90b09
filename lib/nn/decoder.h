/*
 * decoder.h - internals shared by the decoder front end (decoder.c,
 * decoder_config.c) and the architectures (cnn.c, unet.c).
 *
 * Memory plan: an architecture lays out every activation, saved statistic,
 * gradient buffer and scratch area for one (N, H, W) by walking a bump
 * allocator (cd__arena). The same walk runs twice: with no base to measure
 * (the workspace query), then over the real block. Sizing and use cannot
 * disagree, and forward and backward allocate nothing.
 */
#ifndef CD_NN_DECODER_H
#define CD_NN_DECODER_H

#include "core.h"
#include "nn/nn.h"
#include "ops/ops.h"

#define CD__DEC_MAX_LIST 8
#define CD__DEC_MAX_LAYERS 256

typedef struct cd__decoder_cfg {
    cd_decoder_kind type;
    int64_t channels, height, width;
    int64_t hidden[CD__DEC_MAX_LIST];
    int64_t n_hidden;
    int64_t kernel, time_freqs, time_hidden, time_layers;
    int64_t dim;
    int64_t dim_mults[CD__DEC_MAX_LIST];
    int64_t n_mults;
    int64_t heads, head_dim, convnext_mult;
    int64_t classes; /* 0: no label embedding */
} cd__decoder_cfg;

struct cd_decoder_config {
    cd__decoder_cfg c;
};

/* A decoder whose parameters are described (names and shapes) but not yet
 * laid out: nothing of the model's size is allocated. cd_decoder_create
 * then lays them out and initialises them; a load lays them out only once
 * the file is known to hold them (cd__ckpt_apply). */
cd_status cd__decoder_describe(cd_decoder **out, const cd__decoder_cfg *cfg);

/* Fill the report's defaults for a type. */
void cd__decoder_cfg_defaults(cd__decoder_cfg *c, cd_decoder_kind type);
/* Check a whole configuration (lists against each other, etc.). */
cd_status cd__decoder_cfg_validate(const cd__decoder_cfg *c);

/* Bytes of the plan for (N, H, W), with or without backward's buffers
 * (CD_ERR_SHAPE, CD_ERR_OVERFLOW as cd_decoder_workspace_size). */
cd_status cd__decoder_plan_bytes(cd_decoder *d, int64_t N, int64_t H, int64_t W, bool train,
                                 int64_t *bytes);

/* A bump allocator over floats; with base == NULL it only counts. */
typedef struct cd__arena {
    float *base;
    size_t used; /* floats; each piece starts on a 64-byte boundary */
} cd__arena;

float *cd__arena_take(cd__arena *a, size_t n);

/* A layer to initialise with PyTorch's defaults at creation. */
enum { CD__INIT_LAYER_NORM = -1, CD__INIT_NORMAL = -2 };
typedef struct cd__init_entry {
    int kind; /* cd__layer_kind, CD__INIT_LAYER_NORM, or CD__INIT_NORMAL (N(0, 1)) */
    int64_t weight, bias;
} cd__init_entry;

/* Told where backward has finished every gradient it has handed out so
 * far: touched[i] is 1 once parameter i's gradient was (cd__decoder_grad),
 * and no later stage adds to it. */
typedef void (*cd__stage_fn)(void *user, const uint8_t *touched);

typedef struct cd__decoder_ops {
    /* Add the parameters (through cd__decoder_add_*) and make d->impl. */
    cd_status (*build)(cd_decoder *d);
    /* Reject input shapes the architecture cannot take (C checked already);
     * fn names the public call in the message. */
    cd_status (*check_shape)(const cd_decoder *d, const char *fn, int64_t H, int64_t W);
    /* Lay out all buffers for (N, H, W) in the arena (see above); with
     * train false, only what a forward needs (see cd_decoder_infer). */
    void (*plan)(cd_decoder *d, cd__arena *a, int64_t N, int64_t H, int64_t W, bool train);
    void (*forward)(cd_decoder *d, float *out, const float *z, const float *tau);
    /* Add parameter gradients; dz (may be NULL) receives dL/dz (added). */
    void (*backward)(cd_decoder *d, float *dz, const float *dout);
    void (*free_impl)(void *impl);
} cd__decoder_ops;

/* A convolution's weights prepared for forward-only passes
 * (decoder_prepared.c): the layer they were prepared for, the prepared
 * form (cd__conv2d_prepared_kind), and a copy of the weights it came
 * from. */
typedef struct cd__prepared {
    cd__conv2d c;
    int32_t kind;
    float *prep, *weights;
    size_t n_prep, n_weights;
} cd__prepared;

struct cd_decoder {
    cd__decoder_cfg cfg;
    const cd__decoder_ops *ops;
    cd_params *params;
    void *impl;
    cd__init_entry init[CD__DEC_MAX_LAYERS];
    int32_t n_init;
    int64_t N, H, W; /* the current plan; N == 0 before the first */
    bool train;      /* the current plan keeps what backward needs */
    float *arena;
    size_t arena_floats;
    bool forward_done; /* saved activations are valid for backward */
    /* The T of the degradation it was trained against, 0 while unknown (a
     * fresh decoder, a file written before the entry existed): a decoder
     * learns one tau = t / T grid, and sampling it on another T silently
     * gives garbage. */
    int64_t trained_T;
    /* What the output means for the noise degradation (cd_prediction):
     * saved with the weights, since sampling must read the output as the
     * training target was built. */
    int32_t prediction;
    /* Class conditioning (cfg.classes > 0): the table's index, and each
     * image's row for the current pass (cfg.classes for "no class"),
     * kept for backward. */
    int64_t label_w;
    int32_t *label_rows;
    int64_t label_cap;
    /* Backward's progress, for a trainer that sums gradients over ranks
     * while backward runs (cd__decoder_watch_grads). */
    uint8_t *touched;
    cd__stage_fn on_stage;
    void *stage_user;
    /* Per parameter, for forward-only passes; NULL until the first. */
    cd__prepared *prepared;
    /* A training plan was laid out: the decoder trains, its weights change
     * between passes, and its arena (which never shrinks) is a training
     * plan's, so forward-only passes prepare nothing. */
    bool trains;
};

/* Convolution c with weight parameter w: in a forward-only pass of a
 * decoder that does not train, through prepared weights kept from the
 * last pass while w is unchanged (see decoder_prepared.c), else as
 * cd__conv2d_forward_epi. Same bits either way. */
void cd__decoder_conv_forward(cd_decoder *d, const cd__conv2d *c, int64_t w, const float *bias,
                              float *out, const float *in, float *ws, cd__task_fn epi,
                              void *epi_ctx);
/* Free the prepared weights (a training pass, or the decoder, ends them). */
void cd__decoder_drop_prepared(cd_decoder *d);

/* Parameter helpers for build(): add "<prefix>.weight" (and ".bias") in
 * PyTorch's layout and register the layer for initialisation; the indices
 * go to *w and *b (-1 without bias). */
cd_status cd__decoder_add_conv(cd_decoder *d, const char *prefix, int64_t out, int64_t in_per_group,
                               int64_t kh, int64_t kw, bool bias, int64_t *w, int64_t *b);
cd_status cd__decoder_add_convt(cd_decoder *d, const char *prefix, int64_t in, int64_t out,
                                int64_t kh, int64_t kw, int64_t *w, int64_t *b);
cd_status cd__decoder_add_linear(cd_decoder *d, const char *prefix, int64_t out, int64_t in,
                                 int64_t *w, int64_t *b);
cd_status cd__decoder_add_layernorm(cd_decoder *d, const char *prefix, int32_t rank,
                                    const int64_t *shape, int64_t *w, int64_t *b);

/* Add the label table "label_embed.weight", (classes + 1) x width, when
 * the configuration asks for classes (else a no-op, with *w = -1). */
cd_status cd__decoder_add_label_embed(cd_decoder *d, int64_t width, int64_t *w);
/* emb[n] += table[row[n]] for the current pass, and the table's gradient
 * back from d(emb); no-ops without classes. */
void cd__decoder_label_forward(cd_decoder *d, float *emb, int64_t width);
void cd__decoder_label_backward(cd_decoder *d, const float *demb, int64_t width);
/* Check labels (NULL: "no class" for all N) and keep their rows. */
cd_status cd__decoder_take_labels(cd_decoder *d, const char *fn, const cd_tensor *labels,
                                  int64_t N);

/* Register tensor w (and b, or -1) for initialisation of this kind. */
cd_status cd__decoder_add_init(cd_decoder *d, int kind, int64_t w, int64_t b);

/* Parameter value and gradient pointers by index (after finalize). */
float *cd__decoder_value(cd_decoder *d, int64_t index);
float *cd__decoder_grad(cd_decoder *d, int64_t index);
/* Backward has finished a stage (see cd__stage_fn): the CNN after each
 * layer, the UNet after each level. */
void cd__decoder_stage_done(cd_decoder *d);
/* Have fn called at each stage of backward (NULL: stop). The marks are
 * cleared when backward begins. */
cd_status cd__decoder_watch_grads(cd_decoder *d, cd__stage_fn fn, void *user);

/* decoder_io.c: a decoder's configuration as checkpoint entries, and a
 * decoder rebuilt from a read checkpoint (config + tensors). */
cd_status cd__decoder_config_to_ckpt(const cd_decoder *d, cd__ckpt *ck);
cd_status cd__decoder_config_from_ckpt(const cd__ckpt *ck, cd_decoder_config **out);
cd_status cd__decoder_from_ckpt(const cd__ckpt *ck, cd_decoder **out);
/* The same with cd__ckpt_apply flags (CD__CKPT_EMA_AS_VALUES). */
cd_status cd__decoder_from_ckpt_flags(const cd__ckpt *ck, uint32_t flags, cd_decoder **out);

/* CD_OK when d may work with a degradation of T steps: its trained T is
 * unknown or equal. Otherwise CD_ERR_INVALID_ARGUMENT naming fn and both. */
cd_status cd__decoder_check_T(const cd_decoder *d, int64_t T, const char *fn);

extern const cd__decoder_ops cd__cnn_ops;
extern const cd__decoder_ops cd__unet_ops;

#endif /* CD_NN_DECODER_H */
