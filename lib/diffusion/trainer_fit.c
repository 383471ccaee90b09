/*
 * trainer_fit.c - the epoch loop (cd_trainer_fit): shuffle, train in
 * batches, validate, keep the best and the last checkpoint; progress that
 * other threads poll, and a stop request that a signal handler may make.
 *
 * A fit can stop between any two batches and resume bit for bit. Besides
 * the weights, Adam and the generator, that needs the epoch counter, the
 * images of the open epoch already trained, their loss sum, the best score,
 * and the generator state that drew the open epoch's order (the shuffle
 * starts from the natural order, so replaying it from that state gives the
 * same order). cd_trainer_save writes all of it (trainer_io.c).
 */
#define _POSIX_C_SOURCE 200809L
#include "diffusion.h"
#include "data/dataset.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

cd_status cd_trainer_progress(const cd_trainer *tr, cd_progress_key key, double *value)
{
    static const char fn[] = "cd_trainer_progress";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(value, fn);
    if ((int)key < 0 || (int)key >= CD__PROGRESS_COUNT)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    uint64_t bits = atomic_load(&cd__trainer_fit_state(tr)->progress[key]);
    memcpy(value, &bits, sizeof *value);
    return CD_OK;
}

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a stop request from a signal handler needs a "
                                          "lock-free atomic int");

void cd_trainer_request_stop(cd_trainer *tr)
{
    /* Async-signal-safe: one lock-free atomic store and nothing else. */
    if (tr) atomic_store(&cd__trainer_fit_state(tr)->stop, 1);
}

void cd__trainer_stop_in_validation(cd_trainer *tr, int64_t n_batches)
{
    cd__trainer_fit_state(tr)->stop_after_val = n_batches;
}

void cd__trainer_stop_after(cd_trainer *tr, int64_t n_batches)
{
    cd__trainer_fit_state(tr)->stop_after = n_batches;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What one fit works with. */
typedef struct {
    cd_trainer *tr;
    cd__fit_state *f;
    cd_dataset *ds;
    cd_rng *rng, *replay; /* the caller's generator; one to replay an order */
    cd_tensor *images;    /* batch rows, made once */
    cd_tensor *labels;    /* their classes, for a decoder with classes */
    int64_t epochs, count, n_val, batch, batches;
    int64_t trained; /* images this fit has trained */
    double t0;       /* when it began */
} fit_ctx;

/* Throughput of this fit and the time left at that rate. */
static void publish_rate(const fit_ctx *c)
{
    const double dt = now_sec() - c->t0;
    const double ips = dt > 0 && c->trained > 0 ? (double)c->trained / dt : 0.0;
    const double left = (double)(c->epochs - c->f->epoch) * (double)c->count - (double)c->f->pos;
    cd__fit_put(c->f, CD_PROGRESS_IMAGES_PER_SEC, ips);
    cd__fit_put(c->f, CD_PROGRESS_ETA_SEC, ips > 0 ? left / ips : NAN);
}

/* Draw the epoch's order, or replay it for an epoch a stop left open. */
static cd_status open_epoch(fit_ctx *c)
{
    cd__fit_state *f = c->f;
    if (f->open) {
        CD__TRY(cd_rng_set_state(c->replay, f->open_rng));
        return cd_dataset_shuffle(c->ds, CD_SPLIT_TRAIN, c->replay);
    }
    uint64_t state[CD_RNG_STATE_WORDS];
    cd__fit_put(f, CD_PROGRESS_PHASE, 0.0);
    CD__TRY(cd_rng_get_state(c->rng, state));
    CD__TRY(cd_dataset_shuffle(c->ds, CD_SPLIT_TRAIN, c->rng));
    memcpy(f->open_rng, state, sizeof f->open_rng);
    f->open = true;
    f->pos = 0;
    f->loss_sum = 0.0;
    return CD_OK;
}

/* A failure inside the epoch loop, named by where it happened (epoch
 * 1-based, batch and optimiser step), with the cause's own message. The
 * checkpoints are written only after a whole epoch, so a failure leaves
 * them as they were. */
static cd_status fit_failed(const fit_ctx *c, cd_status st, const char *during)
{
    char cause[640];
    snprintf(cause, sizeof cause, "%s", cd_last_error());
    return cd__error(st,
                     "cd_trainer_fit: epoch %" PRId64 ", %s: %s; the trainer keeps the "
                     "state before it and no checkpoint was written",
                     c->f->epoch + 1, during, cause);
}

/* Train the open epoch's remaining batches; CD_ERR_CANCELLED on a stop
 * request (checked before each batch and after the last). */
static cd_status train_batches(fit_ctx *c)
{
    cd__fit_state *f = c->f;
    cd__fit_put(f, CD_PROGRESS_BATCH, (double)((f->pos + c->batch - 1) / c->batch));
    cd__fit_put(f, CD_PROGRESS_TRAIN_LOSS, f->pos > 0 ? f->loss_sum / (double)f->pos : NAN);
    while (f->pos < c->count) {
        bool stop = false;
        CD__TRY(cd__trainer_agree_stop(c->tr, "cd_trainer_fit", &stop));
        if (stop) return CD_ERR_CANCELLED;
        /* The batch's rows this rank trains (all of them for one process);
         * the epoch's last batch may be partial. */
        const int64_t rows = c->count - f->pos < c->batch ? c->count - f->pos : c->batch;
        int64_t lo = 0, got = rows;
        const int64_t mine = cd__trainer_shard(c->tr, rows, &lo);
        cd_tensor view = *c->images, lview = c->labels ? *c->labels : view;
        view.numel = view.numel / view.shape[0] * mine;
        view.shape[0] = mine;
        lview.numel = lview.numel / lview.shape[0] * mine;
        lview.shape[0] = mine;
        if (mine > 0)
            CD__TRY(cd_dataset_fill_batch(c->ds, CD_SPLIT_TRAIN, f->pos + lo, &view,
                                          c->labels ? &lview : NULL, &got));
        got = rows;
        double loss = 0.0;
        cd_status st =
            cd__trainer_step_rows(c->tr, c->labels ? "cd_trainer_step_labeled" : "cd_trainer_step",
                                  &view, c->labels ? &lview : NULL, c->rng, lo, rows, &loss);
        if (st != CD_OK) {
            char during[64];
            snprintf(during, sizeof during, "batch %" PRId64 " of %" PRId64 " (step %" PRId64 ")",
                     f->pos / c->batch + 1, c->batches, cd_trainer_steps(c->tr) + 1);
            return fit_failed(c, st, during);
        }
        f->pos += got;
        f->loss_sum += loss * (double)got;
        c->trained += got;
        cd__fit_put(f, CD_PROGRESS_BATCH, (double)((f->pos + c->batch - 1) / c->batch));
        cd__fit_put(f, CD_PROGRESS_TRAIN_LOSS, f->loss_sum / (double)f->pos);
        publish_rate(c);
        if (f->stop_after > 0 && --f->stop_after == 0) atomic_store(&f->stop, 1);
    }
    bool stop = false;
    CD__TRY(cd__trainer_agree_stop(c->tr, "cd_trainer_fit", &stop));
    return stop ? CD_ERR_CANCELLED : CD_OK;
}

/* Validate, close the epoch, write the checkpoints, tell on_epoch. */
static cd_status close_epoch(fit_ctx *c, const char *best_path, const char *last_path,
                             cd_epoch_fn on_epoch, void *user)
{
    cd__fit_state *f = c->f;
    const double train_loss = f->loss_sum / (double)f->pos;
    double val = NAN;
    if (c->n_val > 0) {
        /* A stop ends the validation early; the generator goes back to its
         * state before it, so that a resumed fit validates again with the
         * same draws as an uninterrupted one. */
        uint64_t before[CD_RNG_STATE_WORDS];
        CD__TRY(cd_rng_get_state(c->rng, before));
        cd__fit_put(f, CD_PROGRESS_PHASE, 1.0);
        cd__fit_put(f, CD_PROGRESS_VAL_BATCH, 0.0);
        f->validating = true;
        cd_status st = cd_trainer_eval_loss(c->tr, c->ds, CD_SPLIT_VAL, c->rng, &val);
        f->validating = false;
        if (st == CD_ERR_CANCELLED && atomic_load(&f->stop)) {
            cd_status r = cd_rng_set_state(c->rng, before);
            cd__fit_put(f, CD_PROGRESS_PHASE, 0.0);
            return r != CD_OK ? r : CD_ERR_CANCELLED;
        }
        if (st != CD_OK) {
            char during[64];
            snprintf(during, sizeof during, "validation after step %" PRId64,
                     cd_trainer_steps(c->tr));
            return fit_failed(c, st, during);
        }
    }
    cd__fit_put(f, CD_PROGRESS_PHASE, 2.0);
    const double score = c->n_val > 0 ? val : train_loss;
    const bool improved = isnan(f->best_loss) || score < f->best_loss;
    f->epoch++;
    f->pos = 0;
    f->loss_sum = 0.0;
    f->open = false;
    f->val_loss = val;
    f->train_loss = train_loss;
    if (improved) f->best_loss = score;
    /* best before last: a process killed between the two resumes from the
     * previous epoch's last_path and rewrites best_path with the same bits;
     * the other order could leave last_path recording a best score that
     * best_path never got. */
    const char *paths[2];
    int n_paths = 0;
    if (improved && best_path) paths[n_paths++] = best_path;
    if (last_path) paths[n_paths++] = last_path;
    /* One compression for both: a UNet's state is tens of MB, which zlib
     * takes a second or more to compress on one core. */
    if (n_paths) CD__TRY(cd__trainer_save_to(c->tr, paths, n_paths, c->rng));
    cd__fit_put(f, CD_PROGRESS_EPOCH, (double)f->epoch);
    cd__fit_put(f, CD_PROGRESS_BATCH, (double)c->batches);
    cd__fit_put(f, CD_PROGRESS_TRAIN_LOSS, train_loss);
    cd__fit_put(f, CD_PROGRESS_VAL_LOSS, val);
    cd__fit_put(f, CD_PROGRESS_BEST_VAL_LOSS, c->n_val > 0 ? f->best_loss : NAN);
    publish_rate(c);
    if (!on_epoch) return CD_OK;
    cd_clear_error();
    cd_status st = on_epoch(c->tr, f->epoch, train_loss, val, user);
    int64_t rank = 0, world = 1;
    cd_trainer_get_distributed(c->tr, &rank, &world);
    if (st == CD_ERR_CANCELLED && world > 1) {
        /* The other ranks go on into the next batch: make it a stop
         * request, which all of them agree on there. */
        atomic_store(&f->stop, 1);
        return CD_OK;
    }
    if (st != CD_OK && cd_last_error()[0] == '\0')
        cd__error(st, "cd_trainer_fit: on_epoch returned %s after epoch %" PRId64,
                  cd_status_string(st), f->epoch);
    return st;
}

/* Fit the prior of a deterministic operator unless it is fitted or set. */
static cd_status ensure_prior(cd_degradation *deg, const cd_dataset *ds)
{
    if (cd_degradation_get_target(deg) != CD_TARGET_IMAGE) return CD_OK;
    double mean = 0, std = 0, jitter = 0;
    int32_t fitted = 0;
    CD__TRY(cd_degradation_get_prior(deg, &mean, &std, &jitter, &fitted));
    return fitted ? CD_OK : cd_degradation_fit_prior(deg, ds, CD_SPLIT_TRAIN, 0);
}

/* A dataset with more classes than the decoder's table would fail at its
 * first batch of an unknown class, maybe hours in: say so now. The labels
 * count, not the names: IDX files have none. */
static cd_status check_classes(const cd_decoder *dec, const cd_dataset *ds, const char *fn)
{
    const int64_t K = cd_decoder_class_count(dec), Kd = cd__dataset_label_bound(ds);
    if (K > 0 && Kd > K)
        return cd__error(CD_ERR_RANGE,
                         "%s: the dataset has %" PRId64 " classes, the decoder %" PRId64
                         " (CD_DECODER_OPT_CLASSES)",
                         fn, Kd, K);
    return CD_OK;
}

static cd_status fit_setup(fit_ctx *c)
{
    static const char fn[] = "cd_trainer_fit";
    int64_t b = 0;
    c->count = cd_dataset_count(c->ds, CD_SPLIT_TRAIN);
    c->n_val = cd_dataset_count(c->ds, CD_SPLIT_VAL);
    if (c->count < 0 || c->n_val < 0) return cd_last_status();
    if (c->count == 0) return cd__error(CD_ERR_RANGE, "%s: the train split is empty", fn);
    if (c->f->pos > c->count)
        return cd__error(CD_ERR_STATE,
                         "%s: the trainer stopped %" PRId64 " images into an "
                         "epoch, but the train split holds %" PRId64,
                         fn, c->f->pos, c->count);
    CD__TRY(cd_trainer_get_int(c->tr, CD_TRAINER_OPT_BATCH, &b));
    c->batch = b;
    c->batches = (c->count + c->batch - 1) / c->batch;
    const int64_t shape[4] = {c->count < c->batch ? c->count : c->batch, cd_dataset_channels(c->ds),
                              cd_dataset_height(c->ds), cd_dataset_width(c->ds)};
    CD__TRY(check_classes(cd_trainer_decoder(c->tr), c->ds, fn));
    CD__TRY(ensure_prior(cd_trainer_degradation(c->tr), c->ds));
    CD__TRY(cd_tensor_create(&c->images, 4, shape));
    if (cd_decoder_class_count(cd_trainer_decoder(c->tr)) > 0)
        CD__TRY(cd_tensor_create(&c->labels, 1, shape));
    return cd_rng_create(&c->replay, 0);
}

cd_status cd_trainer_fit(cd_trainer *tr, cd_dataset *ds, int64_t epochs, const char *best_path,
                         const char *last_path, cd_rng *rng, cd_epoch_fn on_epoch, void *user)
{
    static const char fn[] = "cd_trainer_fit";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    if (epochs < 1)
        return cd__error(CD_ERR_RANGE, "%s: epochs = %" PRId64 " must be at least 1", fn, epochs);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    fit_ctx c = {.tr = tr,
                 .f = cd__trainer_fit_state(tr),
                 .ds = ds,
                 .rng = rng,
                 .epochs = epochs,
                 .t0 = now_sec()};
    cd__fit_state *f = c.f;
    cd__fit_put(f, CD_PROGRESS_EPOCHS, (double)epochs);
    cd__fit_put(f, CD_PROGRESS_IMAGES_PER_SEC, 0.0);
    cd__fit_put(f, CD_PROGRESS_ETA_SEC, NAN);
    cd__fit_put(f, CD_PROGRESS_RUNNING, 1.0);
    cd_status st = fit_setup(&c); /* may take a while: the prior */
    if (st == CD_OK) cd__fit_put(f, CD_PROGRESS_BATCHES, (double)c.batches);
    while (st == CD_OK && f->epoch < epochs) {
        st = open_epoch(&c);
        if (st == CD_OK) st = train_batches(&c);
        if (st == CD_OK) st = close_epoch(&c, best_path, last_path, on_epoch, user);
    }
    if (st == CD_ERR_CANCELLED && atomic_load(&f->stop)) {
        atomic_store(&f->stop, 0);
        st = last_path ? cd_trainer_save(tr, last_path, rng) : CD_OK;
        if (st == CD_OK)
            st = cd__error(CD_ERR_CANCELLED,
                           "%s: stopped on request after %" PRId64 " epochs and %" PRId64
                           " images of the next",
                           fn, f->epoch, f->pos);
    } else if (st == CD_OK) {
        atomic_store(&f->stop, 0); /* a request the finished fit did not need */
        cd__fit_put(f, CD_PROGRESS_ETA_SEC, 0.0);
    }
    f->stop_after = 0;
    f->stop_after_val = 0;
    cd__fit_put(f, CD_PROGRESS_RUNNING, 0.0);
    cd_tensor_free(c.images);
    cd_tensor_free(c.labels);
    cd_rng_free(c.replay);
    return st;
}
