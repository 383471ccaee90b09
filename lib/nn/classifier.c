/*
 * classifier.c - the MNIST classifier behind the metrics
 * (docs/metrics-classifier.md; public API in include/colddiff.h, internals
 * in classifier.h):
 *
 *   a1 = GELU(conv1(x))     k3 s1 p1    1 -> C1     H  x W
 *   a2 = GELU(conv2(a1))    k4 s2 p1   C1 -> C2     H2 x W2 (H/2)
 *   a3 = GELU(conv3(a2))    k4 s2 p1   C2 -> C3     H3 x W3 (H/4)
 *   f  = GELU(fc1(a3))      C3 H3 W3 -> F           the features
 *   logits = fc2(f)         F -> K
 *
 * Built from the ops of lib/ops with one flat parameter set and Adam, like
 * the decoders. Every buffer for a batch of n images is laid out by one
 * bump-allocator walk (cd__arena, decoder.h), measured first and then
 * placed, so forward and backward allocate nothing.
 */
#include "classifier.h"

#include "nn/decoder.h"
#include "ops/ops.h"
#include "ops/xent.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCONV 3
#define NLAYER 5 /* conv1..3, fc1, fc2 */
#define PREDICT_CHUNK \
    128 /* images per forward in predict and accuracy: the
                            * memory of a training batch of 128 (about 70 MB) */

static const char *const layer_names[NLAYER] = {"conv1", "conv2", "conv3", "fc1", "fc2"};

struct cd_classifier {
    cd__classifier_cfg cfg;
    cd_params *params;
    cd__adam *adam; /* made at the first training step */
    int64_t w[NLAYER], b[NLAYER];
    int64_t Hs[NCONV], Ws[NCONV]; /* output sizes of the convolutions */
    int64_t flat;                 /* C3 H3 W3: fc1's input width */
    int64_t steps, epochs;
    cd__classifier_opts opts;
    /* The plan for n images (n == 0: none yet). */
    int64_t n;
    cd__conv2d conv[NCONV];
    float *arena;
    size_t arena_floats;
    float *x, *c[NCONV], *a[NCONV], *h, *f, *logits, *probs;
    float *ga, *gc, *dh, *df, *dlogits, *ws;
    int64_t *labels; /* labels_cap entries */
    int64_t labels_cap;
};

/* ---- configuration ----------------------------------------------------- */

void cd__classifier_cfg_mnist(cd__classifier_cfg *cfg)
{
    *cfg =
        (cd__classifier_cfg){28, 28, {32, 64, 32}, CD_CLASSIFIER_FEATURES, CD_CLASSIFIER_CLASSES};
}

static cd_status check_range(const char *fn, const char *what, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        return cd__error(CD_ERR_RANGE, "%s: %s = %" PRId64 " is outside %" PRId64 "..%" PRId64, fn,
                         what, v, lo, hi);
    return CD_OK;
}

cd_status cd__classifier_cfg_check(const cd__classifier_cfg *cfg, const char *fn)
{
    CD__TRY(check_range(fn, "height", cfg->height, 4, 512));
    CD__TRY(check_range(fn, "width", cfg->width, 4, 512));
    for (int i = 0; i < NCONV; i++) {
        char what[32];
        snprintf(what, sizeof what, "channels[%d]", i);
        CD__TRY(check_range(fn, what, cfg->channels[i], 1, 1024));
    }
    CD__TRY(check_range(fn, "hidden", cfg->hidden, 1, 4096));
    return check_range(fn, "classes", cfg->classes, 2, 1024);
}

/* ---- creation ---------------------------------------------------------- */

static cd_status add_layer(cd_classifier *c, int i, int32_t rank, const int64_t *wshape)
{
    char name[32];
    snprintf(name, sizeof name, "%s.weight", layer_names[i]);
    CD__TRY(cd__params_add(c->params, name, rank, wshape, &c->w[i]));
    snprintf(name, sizeof name, "%s.bias", layer_names[i]);
    return cd__params_add(c->params, name, 1, wshape, &c->b[i]);
}

/* Describe the parameters (names and shapes); nothing of their size is
 * allocated yet. */
static cd_status describe(cd_classifier *c)
{
    const cd__classifier_cfg *g = &c->cfg;
    int64_t in = 1, H = g->height, W = g->width;
    for (int i = 0; i < NCONV; i++) {
        const int64_t k = i == 0 ? 3 : 4, s = i == 0 ? 1 : 2;
        const int64_t shape[4] = {g->channels[i], in, k, k};
        CD__TRY(add_layer(c, i, 4, shape));
        H = (H + 2 - k) / s + 1;
        W = (W + 2 - k) / s + 1;
        c->Hs[i] = H;
        c->Ws[i] = W;
        in = g->channels[i];
    }
    c->flat = in * H * W;
    const int64_t fc1[2] = {g->hidden, c->flat}, fc2[2] = {g->classes, g->hidden};
    CD__TRY(add_layer(c, 3, 2, fc1));
    return add_layer(c, 4, 2, fc2);
}

static cd_status build(cd_classifier *c, cd_rng *rng)
{
    CD__TRY(describe(c));
    CD__TRY(cd__params_finalize(c->params));
    for (int i = 0; i < NLAYER; i++)
        CD__TRY(cd__init_layer(c->params, i < NCONV ? CD__LAYER_CONV2D : CD__LAYER_LINEAR, c->w[i],
                               c->b[i], rng));
    return CD_OK;
}

/* A classifier of cfg, described (rng == NULL) or also laid out and
 * initialised from rng. */
static cd_status make(cd_classifier **out, const cd__classifier_cfg *cfg, cd_rng *rng)
{
    static const char fn[] = "cd_classifier_create";
    CD__TRY(cd__classifier_cfg_check(cfg, fn));
    cd_classifier *c = cd__calloc(1, sizeof *c, "classifier");
    if (!c) return cd_last_status();
    c->cfg = *cfg;
    cd__classifier_opts_default(&c->opts);
    cd_status st = cd_params_create(&c->params);
    if (st == CD_OK) st = rng ? build(c, rng) : describe(c);
    if (st != CD_OK) {
        cd_classifier_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

cd_status cd__classifier_create_cfg(cd_classifier **out, const cd__classifier_cfg *cfg, cd_rng *rng)
{
    static const char fn[] = "cd_classifier_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    return make(out, cfg, rng);
}

cd_status cd__classifier_describe(cd_classifier **out, const cd__classifier_cfg *cfg)
{
    *out = NULL;
    return make(out, cfg, NULL);
}

cd_status cd_classifier_create(cd_classifier **out, cd_rng *rng)
{
    cd__classifier_cfg cfg;
    cd__classifier_cfg_mnist(&cfg);
    return cd__classifier_create_cfg(out, &cfg, rng);
}

void cd_classifier_free(cd_classifier *c)
{
    if (!c) return;
    cd__adam_free(c->adam);
    cd_params_free(c->params);
    cd__free(c->arena);
    cd__free(c->labels);
    cd__free(c);
}

/* ---- getters ----------------------------------------------------------- */

#define GETTER(type, name, expr)                                                \
    type name(const cd_classifier *c)                                           \
    {                                                                           \
        if (!c) {                                                               \
            cd__error(CD_ERR_INVALID_ARGUMENT, #name ": argument 'c' is NULL"); \
            return -1;                                                          \
        }                                                                       \
        return (expr);                                                          \
    }
GETTER(int64_t, cd_classifier_feature_dim, c->cfg.hidden)
GETTER(int64_t, cd_classifier_num_classes, c->cfg.classes)
GETTER(int64_t, cd_classifier_steps, c->steps)
GETTER(int64_t, cd_classifier_epochs, c->epochs)
#undef GETTER

cd_params *cd_classifier_params(cd_classifier *c)
{
    if (!c) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_classifier_params: argument 'c' is NULL");
        return NULL;
    }
    return c->params;
}

const cd__classifier_cfg *cd__classifier_cfg_of(const cd_classifier *c) { return &c->cfg; }

void cd__classifier_set_counters(cd_classifier *c, int64_t steps, int64_t epochs)
{
    c->steps = steps;
    c->epochs = epochs;
}

/* ---- the memory plan --------------------------------------------------- */

static float *val(cd_classifier *c, int64_t i)
{
    return cd__params_values(c->params) + cd__params_offset(c->params, i);
}

static float *grad(cd_classifier *c, int64_t i)
{
    return cd__params_grads(c->params) + cd__params_offset(c->params, i);
}

static void layout(cd_classifier *c, cd__arena *a, int64_t n)
{
    const cd__classifier_cfg *g = &c->cfg;
    const size_t N = (size_t)n;
    size_t ws = 0, widest = 0;
    int64_t in = 1, H = g->height, W = g->width;
    for (int i = 0; i < NCONV; i++) {
        const int64_t k = i == 0 ? 3 : 4, s = i == 0 ? 1 : 2;
        /* Sizes were validated at creation. */
        (void)cd__conv2d_init(&c->conv[i], n, in, H, W, g->channels[i], k, k, s, 1, 1, true);
        const size_t w = cd__conv2d_workspace(&c->conv[i]);
        if (w > ws) ws = w;
        const size_t act = (size_t)(g->channels[i] * c->Hs[i] * c->Ws[i]);
        if (act > widest) widest = act;
        in = g->channels[i];
        H = c->Hs[i];
        W = c->Ws[i];
    }
    c->x = cd__arena_take(a, N * (size_t)(g->height * g->width));
    for (int i = 0; i < NCONV; i++) {
        const size_t act = N * (size_t)(g->channels[i] * c->Hs[i] * c->Ws[i]);
        c->c[i] = cd__arena_take(a, act);
        c->a[i] = cd__arena_take(a, act);
    }
    c->h = cd__arena_take(a, N * (size_t)g->hidden);
    c->f = cd__arena_take(a, N * (size_t)g->hidden);
    c->logits = cd__arena_take(a, N * (size_t)g->classes);
    c->probs = cd__arena_take(a, N * (size_t)g->classes);
    c->ga = cd__arena_take(a, N * widest);
    c->gc = cd__arena_take(a, N * widest);
    c->dh = cd__arena_take(a, N * (size_t)g->hidden);
    c->df = cd__arena_take(a, N * (size_t)g->hidden);
    c->dlogits = cd__arena_take(a, N * (size_t)g->classes);
    c->ws = cd__arena_take(a, ws);
}

/* Lay out the buffers for n images (1 <= n <= CD_CLASSIFIER_MAX_BATCH,
 * checked by the callers); the blocks only ever grow. */
static cd_status plan(cd_classifier *c, int64_t n)
{
    if (n == c->n) return CD_OK;
    cd__arena a = {0};
    layout(c, &a, n);
    if (n > c->labels_cap) {
        int64_t *labels = cd__calloc((size_t)n, sizeof *labels, "classifier labels");
        if (!labels) {
            c->n = 0;                    /* the descriptors now describe n: force a re-plan */
            return CD_ERR_OUT_OF_MEMORY; /* cd__calloc set the message */
        }
        cd__free(c->labels);
        c->labels = labels;
        c->labels_cap = n;
    }
    if (a.used > c->arena_floats) {
        float *block = cd__calloc(a.used, sizeof(float), "classifier workspace");
        if (!block) {
            c->n = 0;
            return CD_ERR_OUT_OF_MEMORY; /* cd__calloc set the message */
        }
        cd__free(c->arena);
        c->arena = block;
        c->arena_floats = a.used;
    }
    a = (cd__arena){c->arena, 0};
    layout(c, &a, n);
    c->n = n;
    return CD_OK;
}

/* ---- forward and backward ---------------------------------------------- */

cd_status cd__classifier_forward(cd_classifier *c, const float *x, int64_t n)
{
    CD__TRY(plan(c, n));
    const cd__classifier_cfg *g = &c->cfg;
    memcpy(c->x, x, (size_t)(n * g->height * g->width) * sizeof *x);
    const float *in = c->x;
    for (int i = 0; i < NCONV; i++) {
        cd__conv2d_forward(&c->conv[i], c->c[i], in, val(c, c->w[i]), val(c, c->b[i]), c->ws);
        cd__gelu_forward(c->a[i], c->c[i], n * g->channels[i] * c->Hs[i] * c->Ws[i]);
        in = c->a[i];
    }
    cd__linear_forward(c->h, in, val(c, c->w[3]), val(c, c->b[3]), n, c->flat, g->hidden);
    cd__gelu_forward(c->f, c->h, n * g->hidden);
    cd__linear_forward(c->logits, c->f, val(c, c->w[4]), val(c, c->b[4]), n, g->hidden, g->classes);
    return CD_OK;
}

const float *cd__classifier_logits(const cd_classifier *c) { return c->logits; }
const float *cd__classifier_features(const cd_classifier *c) { return c->f; }

void cd__classifier_backward(cd_classifier *c, float *dx, const float *dlogits)
{
    const cd__classifier_cfg *g = &c->cfg;
    const int64_t n = c->n;
    memset(c->df, 0, (size_t)(n * g->hidden) * sizeof(float));
    cd__linear_backward(c->df, grad(c, c->w[4]), grad(c, c->b[4]), dlogits, c->f, val(c, c->w[4]),
                        n, g->hidden, g->classes);
    memset(c->dh, 0, (size_t)(n * g->hidden) * sizeof(float));
    cd__gelu_backward(c->dh, c->df, c->h, n * g->hidden);
    /* ga holds dL/da_i, gc dL/dc_i; each is consumed before it is reused. */
    memset(c->ga, 0, (size_t)(n * c->flat) * sizeof(float));
    cd__linear_backward(c->ga, grad(c, c->w[3]), grad(c, c->b[3]), c->dh, c->a[NCONV - 1],
                        val(c, c->w[3]), n, c->flat, g->hidden);
    for (int i = NCONV - 1; i >= 0; i--) {
        const int64_t act = n * g->channels[i] * c->Hs[i] * c->Ws[i];
        memset(c->gc, 0, (size_t)act * sizeof(float));
        cd__gelu_backward(c->gc, c->ga, c->c[i], act);
        float *din = dx;
        if (i > 0) {
            const int64_t prev = n * g->channels[i - 1] * c->Hs[i - 1] * c->Ws[i - 1];
            memset(c->ga, 0, (size_t)prev * sizeof(float));
            din = c->ga;
        }
        cd__conv2d_backward(&c->conv[i], din, grad(c, c->w[i]), grad(c, c->b[i]), c->gc,
                            i > 0 ? c->a[i - 1] : c->x, val(c, c->w[i]), c->ws);
    }
}

/* ---- argument checks --------------------------------------------------- */

/* images: n x 1 x H x W or n x H x W; *n gets the count. Colour images
 * and other sizes are the likely mistakes (the image metrics take them),
 * so the message gives the one shape the classifier takes, and the
 * channel count when that is what differs. */
static cd_status check_images(const cd_classifier *c, const char *fn, const cd_tensor *t,
                              int64_t *n)
{
    CD__CHECK_NOT_NULL(t, fn);
    const int64_t H = c->cfg.height, W = c->cfg.width;
    const bool ok = (t->rank == 4 && t->shape[1] == 1 && t->shape[2] == H && t->shape[3] == W) ||
                    (t->rank == 3 && t->shape[1] == H && t->shape[2] == W);
    if (!ok) {
        char got[160] = "";
        size_t len = 0;
        for (int32_t i = 0; i < t->rank && len < sizeof got; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%" PRId64, i ? " x " : "",
                                    t->shape[i]);
        char chans[64] = "";
        if (t->rank == 4 && t->shape[1] != 1)
            snprintf(chans, sizeof chans, " (%" PRId64 " channels)", t->shape[1]);
        return cd__error(CD_ERR_SHAPE,
                         "%s: the classifier takes 1 x %" PRId64 " x %" PRId64
                         " images (N x 1 x %" PRId64 " x %" PRId64 " or N x %" PRId64 " x %" PRId64
                         "); 'images' is %s%s",
                         fn, H, W, H, W, H, W, got, chans);
    }
    *n = t->shape[0];
    const int64_t px = H * W;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i]))
            return cd__error(CD_ERR_NOT_FINITE,
                             "%s: image %" PRId64 " has a non-finite pixel "
                             "(%g) at (%" PRId64 ", %" PRId64 ")",
                             fn, i / px, (double)t->data[i], (i % px) / W, i % W);
    return CD_OK;
}

static cd_status check_label(const char *fn, float v, int64_t i, int64_t K, int64_t *out)
{
    if (!(v >= 0.0f && v <= (float)(K - 1) && v == floorf(v)))
        return cd__error(CD_ERR_RANGE,
                         "%s: labels[%" PRId64 "] = %g is not a class id in "
                         "0..%" PRId64,
                         fn, i, (double)v, K - 1);
    *out = (int64_t)v;
    return CD_OK;
}

/* ---- predict ------------------------------------------------------------ */

cd_status cd_classifier_predict(cd_classifier *c, const cd_tensor *images, cd_tensor *probs,
                                cd_tensor *features)
{
    static const char fn[] = "cd_classifier_predict";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(images, fn);
    CD__CHECK_ARG(probs || features, fn,
                  "'probs' and 'features' are both NULL: nothing to "
                  "compute");
    int64_t n = 0;
    CD__TRY(check_images(c, fn, images, &n));
    const int64_t K = c->cfg.classes, F = c->cfg.hidden, px = c->cfg.height * c->cfg.width;
    if (probs) CD__TRY(cd__tensor_expect(probs, fn, "probs", 2, (int64_t[]){n, K}));
    if (features) CD__TRY(cd__tensor_expect(features, fn, "features", 2, (int64_t[]){n, F}));
    for (int64_t first = 0; first < n; first += PREDICT_CHUNK) {
        const int64_t m = n - first < PREDICT_CHUNK ? n - first : PREDICT_CHUNK;
        CD__TRY(cd__classifier_forward(c, images->data + first * px, m));
        if (probs) cd__xent_forward(probs->data + first * K, c->logits, NULL, m, K);
        if (features) memcpy(features->data + first * F, c->f, (size_t)(m * F) * sizeof(float));
    }
    return CD_OK;
}

/* ---- training ---------------------------------------------------------- */

static cd_status ensure_adam(cd_classifier *c)
{
    if (c->adam) return CD_OK;
    return cd__adam_create(&c->adam, c->params);
}

/* One step on n images at x with labels already in c->labels (checked). */
static cd_status step_raw(cd_classifier *c, const char *fn, const float *x, int64_t n, double lr,
                          double *loss)
{
    CD__TRY(ensure_adam(c));
    CD__TRY(cd__classifier_forward(c, x, n));
    const int64_t K = c->cfg.classes;
    /* The labels live in c->labels, which plan() may have replaced: the
     * callers fill them after planning through stage_labels(). */
    const double l = cd__xent_forward(c->probs, c->logits, c->labels, n, K);
    if (!isfinite(l))
        return cd__error(CD_ERR_NOT_FINITE,
                         "%s: the loss is %g (the weights may have "
                         "diverged; try a lower learning rate)",
                         fn, l);
    CD__TRY(cd_params_zero_grad(c->params));
    memset(c->dlogits, 0, (size_t)(n * K) * sizeof(float));
    cd__xent_backward(c->dlogits, c->probs, c->labels, n, K, 1.0f);
    cd__classifier_backward(c, NULL, c->dlogits);
    double old_lr = 0.0;
    CD__TRY(cd__adam_get(c->adam, CD__ADAM_LR, &old_lr));
    CD__TRY(cd__adam_set(c->adam, CD__ADAM_LR, lr));
    cd_status st = cd__adam_step(c->adam);
    if (st != CD_OK) {
        (void)cd__adam_set(c->adam, CD__ADAM_LR, old_lr);
        return st;
    }
    c->steps++;
    if (loss) *loss = l;
    return CD_OK;
}

/* Plan for n and copy n float labels (checked) into c->labels. */
static cd_status stage_labels(cd_classifier *c, const char *fn, const float *labels, int64_t n)
{
    CD__TRY(plan(c, n));
    for (int64_t i = 0; i < n; i++)
        CD__TRY(check_label(fn, labels[i], i, c->cfg.classes, &c->labels[i]));
    return CD_OK;
}

cd__classifier_opts *cd__classifier_opts_of(cd_classifier *c) { return &c->opts; }

cd_status cd_classifier_train_step(cd_classifier *c, const cd_tensor *images,
                                   const cd_tensor *labels, double *loss)
{
    static const char fn[] = "cd_classifier_train_step";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(images, fn);
    CD__CHECK_NOT_NULL(labels, fn);
    int64_t n = 0;
    CD__TRY(check_images(c, fn, images, &n));
    if (n > CD_CLASSIFIER_MAX_BATCH)
        return cd__error(CD_ERR_SHAPE,
                         "%s: a batch of %" PRId64 " images is above the "
                         "largest, %d",
                         fn, n, CD_CLASSIFIER_MAX_BATCH);
    CD__TRY(cd__tensor_expect(labels, fn, "labels", 1, (int64_t[]){n}));
    CD__TRY(stage_labels(c, fn, labels->data, n));
    return step_raw(c, fn, images->data, n, c->opts.lr, loss);
}

/* Move image img (H x W) by (dy, dx) pixels, repeating the edge pixels
 * into the uncovered border; tmp holds H x W floats. */
static void shift_image(float *img, float *tmp, int64_t H, int64_t W, int64_t dy, int64_t dx)
{
    memcpy(tmp, img, (size_t)(H * W) * sizeof *img);
    for (int64_t y = 0; y < H; y++) {
        int64_t sy = y - dy;
        sy = sy < 0 ? 0 : sy >= H ? H - 1 : sy;
        for (int64_t x = 0; x < W; x++) {
            int64_t sx = x - dx;
            sx = sx < 0 ? 0 : sx >= W ? W - 1 : sx;
            img[y * W + x] = tmp[sy * W + sx];
        }
    }
}

/* Shift each of the n images of a batch by its own offsets in
 * [-max_shift, max_shift], drawn from rng in one call: (dy, dx) of image i
 * are draws 2i and 2i+1. */
static cd_status augment(cd_rng *rng, float *images, float *tmp, int64_t *offsets, int64_t n,
                         int64_t H, int64_t W, int64_t max_shift)
{
    CD__TRY(cd_rng_int_range(rng, offsets, 2 * n, -max_shift, max_shift));
    for (int64_t i = 0; i < n; i++)
        if (offsets[2 * i] || offsets[2 * i + 1])
            shift_image(images + i * H * W, tmp, H, W, offsets[2 * i], offsets[2 * i + 1]);
    return CD_OK;
}

/* The dataset holds single-channel images of the classifier's size. */
static cd_status check_dataset(const cd_classifier *c, const char *fn, const cd_dataset *ds)
{
    const int64_t H = c->cfg.height, W = c->cfg.width;
    if (cd_dataset_channels(ds) == 1 && cd_dataset_height(ds) == H && cd_dataset_width(ds) == W)
        return CD_OK;
    return cd__error(CD_ERR_SHAPE,
                     "%s: the classifier takes 1 x %" PRId64 " x %" PRId64
                     " images, the dataset holds %" PRId64 " x %" PRId64 " x %" PRId64,
                     fn, H, W, cd_dataset_channels(ds), cd_dataset_height(ds),
                     cd_dataset_width(ds));
}

cd_status cd_classifier_train(cd_classifier *c, cd_dataset *ds, int64_t epochs, cd_rng *rng,
                              cd_classifier_epoch_fn on_epoch, void *user)
{
    static const char fn[] = "cd_classifier_train";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    if (epochs < 1)
        return cd__error(CD_ERR_RANGE, "%s: epochs = %" PRId64 " must be at least 1", fn, epochs);
    const int64_t batch = c->opts.batch, max_shift = c->opts.max_shift;
    const double lr = c->opts.lr;
    const int64_t H = c->cfg.height, W = c->cfg.width;
    CD__TRY(check_range(fn, "max_shift", max_shift, 0, (H < W ? H : W) / 4));
    CD__TRY(check_dataset(c, fn, ds));
    const int64_t count = cd_dataset_count(ds, CD_SPLIT_TRAIN);
    if (count < 1) return cd__error(CD_ERR_RANGE, "%s: the train split is empty", fn);
    const int64_t per_epoch = (count + batch - 1) / batch;
    if (per_epoch > INT64_MAX / epochs)
        return cd__error(CD_ERR_RANGE, "%s: epochs = %" PRId64 " is too many", fn, epochs);
    const double total = (double)(per_epoch * epochs);
    const double pi = 3.14159265358979323846;

    cd_tensor *img = NULL, *lab = NULL;
    float *tmp = NULL;
    int64_t *offsets = NULL;
    cd_status st = cd_tensor_create(&img, 4, (int64_t[]){batch, 1, H, W});
    if (st == CD_OK) st = cd_tensor_create(&lab, 1, (int64_t[]){batch});
    if (st == CD_OK && max_shift > 0) {
        tmp = cd__malloc((size_t)(H * W) * sizeof *tmp, "augmentation image");
        offsets =
            tmp ? cd__malloc((size_t)(2 * batch) * sizeof *offsets, "augmentation offsets") : NULL;
        if (!offsets) st = CD_ERR_OUT_OF_MEMORY; /* cd__malloc set the message */
    }
    int64_t s = 0;
    for (int64_t e = 1; st == CD_OK && e <= epochs; e++) {
        st = cd_dataset_shuffle(ds, CD_SPLIT_TRAIN, rng);
        double sum = 0.0;
        for (int64_t first = 0; st == CD_OK && first < count; first += batch, s++) {
            int64_t got = 0;
            st = cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, first, img, lab, &got);
            if (st == CD_OK && max_shift > 0)
                st = augment(rng, img->data, tmp, offsets, got, H, W, max_shift);
            if (st == CD_OK) st = stage_labels(c, fn, lab->data, got);
            double l = 0.0;
            const double rate = lr * 0.5 * (1.0 + cos(pi * (double)s / total));
            if (st == CD_OK) st = step_raw(c, fn, img->data, got, rate, &l);
            sum += l * (double)got;
        }
        if (st != CD_OK) break;
        c->epochs++;
        if (on_epoch) st = on_epoch(c, e, sum / (double)count, user);
    }
    cd_tensor_free(img);
    cd_tensor_free(lab);
    cd__free(tmp);
    cd__free(offsets);
    return st;
}

/* ---- accuracy ----------------------------------------------------------- */

cd_status cd_classifier_accuracy(cd_classifier *c, const cd_dataset *ds, cd_split split,
                                 double *accuracy, int64_t *correct)
{
    static const char fn[] = "cd_classifier_accuracy";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_ARG(split == CD_SPLIT_TRAIN || split == CD_SPLIT_VAL || split == CD_SPLIT_TEST, fn,
                  "'split' is not a cd_split value");
    const int64_t H = c->cfg.height, W = c->cfg.width, K = c->cfg.classes;
    CD__TRY(check_dataset(c, fn, ds));
    const int64_t count = cd_dataset_count(ds, split);
    if (count < 1) return cd__error(CD_ERR_RANGE, "%s: the split is empty", fn);
    const int64_t B = count < PREDICT_CHUNK ? count : PREDICT_CHUNK;
    cd_tensor *img = NULL, *lab = NULL;
    cd_status st = cd_tensor_create(&img, 4, (int64_t[]){B, 1, H, W});
    if (st == CD_OK) st = cd_tensor_create(&lab, 1, (int64_t[]){B});
    int64_t hits = 0;
    for (int64_t first = 0; st == CD_OK && first < count; first += B) {
        int64_t got = 0;
        st = cd_dataset_fill_batch(ds, split, first, img, lab, &got);
        if (st == CD_OK) st = cd__classifier_forward(c, img->data, got);
        if (st == CD_OK) cd__xent_forward(c->probs, c->logits, NULL, got, K);
        for (int64_t i = 0; st == CD_OK && i < got; i++) {
            int64_t y = 0;
            st = check_label(fn, lab->data[i], first + i, K, &y);
            const float *l = c->probs + i * K;
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (l[k] > l[best]) best = k;
            hits += st == CD_OK && best == y;
        }
    }
    cd_tensor_free(img);
    cd_tensor_free(lab);
    if (st != CD_OK) return st;
    if (accuracy) *accuracy = (double)hits / (double)count;
    if (correct) *correct = hits;
    return CD_OK;
}
