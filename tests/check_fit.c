/* check_fit.c - the epoch loop: progress polled from another thread, the
 * epoch callback, best and last checkpoints, stop requests, and resuming
 * a stopped fit (mid-epoch or at an epoch boundary) bit for bit. */
#include "test_util.h"

#include "diffusion/diffusion.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* 800 training and 200 validation images of the MNIST slice; a batch of
 * 64 makes 13 batches per epoch, the last one of 32. */
enum { BATCH = 64, N_TRAIN = 800, BATCHES = 13 };

/* A tiny CNN (hidden 4, 6; kernel 3) on noise (T = 1000) or blur (T = 20).
 * The trainer borrows both: cd_test_trainer_free_all() frees them after it. */
static cd_trainer *make_trainer(int blur)
{
    const int64_t hidden[2] = {4, 6};
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    cd_rng *rng = NULL;
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, 2));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
    CD_ASSERT_OK(cd_rng_create(&rng, 7));
    CD_ASSERT_OK(cd_decoder_create(&dec, cfg, rng));
    if (blur) {
        CD_ASSERT_OK(cd_schedule_create_constant(&s, 20, 1.0));
        CD_ASSERT_OK(cd_degradation_create_blur(&deg, s, 11, CD_PADDING_REFLECT));
    } else {
        CD_ASSERT_OK(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02));
        CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    }
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, BATCH));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3));
    cd_schedule_free(s);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return tr;
}

static double progress(const cd_trainer *tr, cd_progress_key key)
{
    double v = -12345;
    CD_ASSERT_OK(cd_trainer_progress(tr, key, &v));
    return v;
}

static void assert_same_params(cd_trainer *a, cd_trainer *b, const char *what)
{
    cd_params *pa = cd_decoder_params(cd_trainer_decoder(a));
    cd_params *pb = cd_decoder_params(cd_trainer_decoder(b));
    ck_assert_int_eq(cd_params_numel(pa), cd_params_numel(pb));
    ck_assert_msg(memcmp(cd_params_data(pa, -1), cd_params_data(pb, -1),
                         (size_t)cd_params_numel(pa) * sizeof(float)) == 0,
                  "%s: the weights differ", what);
    ck_assert_int_eq(cd_trainer_steps(a), cd_trainer_steps(b));
}

/* Two files with the same bytes (a checkpoint holds the weights, Adam's
 * moments, the generators and every counter). */
static void assert_same_file(const char *p, const char *q, const char *what)
{
    size_t n = 0, m = 0;
    uint8_t *a = cd_test_read_file(p, &n), *b = cd_test_read_file(q, &m);
    ck_assert_msg(n == m && memcmp(a, b, n) == 0, "%s: %s and %s differ", what, p, q);
    free(a);
    free(b);
}

/* ---- progress ------------------------------------------------------------ */

typedef struct {
    cd_trainer *tr;
    atomic_int done, saw_running, polls, bad;
    char why[200];
} poller;

static void poll_fail(poller *p, const char *why, double v)
{
    if (!atomic_exchange(&p->bad, 1)) snprintf(p->why, sizeof p->why, "%s (%g)", why, v);
}

/* Reads every value over and over while the fit runs; checks each is sane
 * and that the epoch count never goes back. */
static void *poll_thread(void *arg)
{
    poller *p = arg;
    double last_epoch = 0;
    while (!atomic_load(&p->done)) {
        double v[10];
        for (int k = 0; k < 10; k++)
            if (cd_trainer_progress(p->tr, (cd_progress_key)k, &v[k]) != CD_OK)
                poll_fail(p, "cd_trainer_progress failed", k);
        if (v[CD_PROGRESS_RUNNING] == 1)
            atomic_store(&p->saw_running, 1);
        else if (v[CD_PROGRESS_RUNNING] != 0)
            poll_fail(p, "RUNNING", v[0]);
        if (v[CD_PROGRESS_EPOCH] < last_epoch) poll_fail(p, "EPOCH went back", v[1]);
        last_epoch = v[CD_PROGRESS_EPOCH];
        if (v[CD_PROGRESS_EPOCH] > 3) poll_fail(p, "EPOCH", v[1]);
        if (v[CD_PROGRESS_BATCH] < 0 || v[CD_PROGRESS_BATCH] > BATCHES) poll_fail(p, "BATCH", v[3]);
        if (!(v[CD_PROGRESS_IMAGES_PER_SEC] >= 0)) poll_fail(p, "IMAGES_PER_SEC", v[8]);
        if (v[CD_PROGRESS_ETA_SEC] < 0) poll_fail(p, "ETA_SEC", v[9]);
        double l = v[CD_PROGRESS_TRAIN_LOSS];
        if (!isnan(l) && !(l > 0 && l < 10)) poll_fail(p, "TRAIN_LOSS", l);
        atomic_fetch_add(&p->polls, 1);
    }
    return NULL;
}

typedef struct {
    poller *p;
    int64_t epochs[8];
    double train[8], val[8];
    int n;
    int64_t stop_at; /* return CD_ERR_STATE after this epoch (0: never) */
    int silent;      /* ... without a message */
    const char *best_path, *last_path;
    uint8_t *best; /* the best file after the previous epoch */
    size_t best_len;
    double best_val;
} epoch_log;

static cd_status on_epoch(cd_trainer *tr, int64_t epoch, double train_loss, double val_loss,
                          void *user)
{
    epoch_log *e = user;
    ck_assert_int_lt(e->n, 8);
    e->epochs[e->n] = epoch;
    e->train[e->n] = train_loss;
    e->val[e->n] = val_loss;
    e->n++;
    /* The values the callback gets are the published ones. */
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 1);
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == (double)epoch);
    ck_assert(progress(tr, CD_PROGRESS_BATCH) == BATCHES);
    ck_assert(progress(tr, CD_PROGRESS_TRAIN_LOSS) == train_loss);
    ck_assert(isnan(val_loss) ? isnan(progress(tr, CD_PROGRESS_VAL_LOSS))
                              : progress(tr, CD_PROGRESS_VAL_LOSS) == val_loss);
    if (e->p) { /* hold the fit until the poller has seen it running */
        for (int i = 0; i < 10000 && !atomic_load(&e->p->saw_running); i++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    if (e->best_path) { /* best_path changes exactly when the loss improves */
        size_t n = 0;
        uint8_t *now = cd_test_read_file(e->best_path, &n);
        const bool improved = e->n == 1 || val_loss < e->best_val;
        const bool changed = !e->best || n != e->best_len || memcmp(now, e->best, n) != 0;
        ck_assert_msg(improved == changed, "epoch %d: val %g, best %g, best file %s", (int)epoch,
                      val_loss, e->best_val, changed ? "rewritten" : "kept");
        if (improved && e->last_path) { /* one checkpoint, written to both files */
            size_t nl = 0;
            uint8_t *last = cd_test_read_file(e->last_path, &nl);
            ck_assert_msg(nl == n && memcmp(now, last, n) == 0,
                          "epoch %d improved, yet best and last differ", (int)epoch);
            free(last);
        }
        if (improved) e->best_val = val_loss;
        free(e->best);
        e->best = now;
        e->best_len = n;
        ck_assert(progress(tr, CD_PROGRESS_BEST_VAL_LOSS) == e->best_val);
    }
    if (e->stop_at && epoch == e->stop_at) {
        if (e->silent) return CD_ERR_STATE;
        return cd_trainer_progress(NULL, CD_PROGRESS_EPOCH, NULL); /* sets a message */
    }
    return CD_OK;
}

START_TEST(progress_during_and_after_fit)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    /* Before any fit. */
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 0);
    ck_assert(isnan(progress(tr, CD_PROGRESS_VAL_LOSS)));
    ck_assert(isnan(progress(tr, CD_PROGRESS_BEST_VAL_LOSS)));
    poller p = {.tr = tr};
    epoch_log log = {.p = &p};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, poll_thread, &p), 0);
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 2, NULL, NULL, rng, on_epoch, &log));
    atomic_store(&p.done, 1);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(!atomic_load(&p.bad), "poller: %s", p.why);
    ck_assert(atomic_load(&p.saw_running));
    ck_assert_int_gt(atomic_load(&p.polls), 1);
    /* After it. */
    ck_assert_int_eq(log.n, 2);
    ck_assert(log.epochs[0] == 1 && log.epochs[1] == 2);
    ck_assert_int_eq(cd_trainer_steps(tr), 2 * BATCHES);
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 2);
    ck_assert(progress(tr, CD_PROGRESS_EPOCHS) == 2);
    ck_assert(progress(tr, CD_PROGRESS_BATCH) == BATCHES);
    ck_assert(progress(tr, CD_PROGRESS_BATCHES) == BATCHES);
    ck_assert(progress(tr, CD_PROGRESS_TRAIN_LOSS) == log.train[1]);
    ck_assert(progress(tr, CD_PROGRESS_VAL_LOSS) == log.val[1]);
    ck_assert(progress(tr, CD_PROGRESS_BEST_VAL_LOSS) == fmin(log.val[0], log.val[1]));
    ck_assert(progress(tr, CD_PROGRESS_IMAGES_PER_SEC) > 0);
    ck_assert(progress(tr, CD_PROGRESS_ETA_SEC) == 0);
    for (int i = 0; i < 2; i++) ck_assert(log.train[i] > 0 && log.val[i] > 0);
    ck_assert_msg(log.train[1] < log.train[0], "train loss %g then %g", log.train[0], log.train[1]);
    /* A fit to a total already reached does nothing. */
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 1, NULL, NULL, rng, NULL, NULL));
    ck_assert_int_eq(cd_trainer_steps(tr), 2 * BATCHES);
    double v = 0;
    CD_ASSERT_STATUS(cd_trainer_progress(tr, (cd_progress_key)13, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_progress(tr, (cd_progress_key)-1, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_progress(NULL, CD_PROGRESS_EPOCH, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_progress(tr, CD_PROGRESS_EPOCH, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* ---- the epoch callback ---------------------------------------------------- */

START_TEST(on_epoch_error_stops_the_fit)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    for (int silent = 0; silent < 2; silent++) {
        cd_trainer *tr = make_trainer(0);
        epoch_log log = {.stop_at = 1, .silent = silent};
        CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 3, NULL, NULL, rng, on_epoch, &log),
                         silent ? CD_ERR_STATE : CD_ERR_INVALID_ARGUMENT);
        if (silent)
            CD_ASSERT_ERROR_MENTIONS("on_epoch");
        else
            CD_ASSERT_ERROR_MENTIONS("cd_trainer_progress");
        ck_assert_int_eq(log.n, 1);
        ck_assert_int_eq(cd_trainer_steps(tr), BATCHES);
        ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
        ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 1);
        cd_test_trainer_free_all(tr);
    }
    cd_rng_free(rng);
    cd_dataset_free(ds);
}
END_TEST

/* ---- best and last ----------------------------------------------------------- */

START_TEST(best_and_last_checkpoints)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0), *back = NULL;
    cd_rng *rng = NULL, *r2 = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    CD_ASSERT_OK(cd_rng_create(&r2, 1));
    char dir[256], best[512], last[512], best2[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(best, sizeof best, dir, "best.cdm");
    cd_test_path(last, sizeof last, dir, "last.cdm");
    cd_test_path(best2, sizeof best2, dir, "best2.cdm");
    /* A high rate makes some epochs worse than an earlier one. */
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 2e-2));
    epoch_log log = {.best_path = best, .last_path = last};
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 4, best, last, rng, on_epoch, &log));
    ck_assert_int_eq(log.n, 4);
    printf("best/last: validation losses %.4f %.4f %.4f %.4f\n", log.val[0], log.val[1], log.val[2],
           log.val[3]);
    ck_assert_int_eq(cd_test_count_entries(dir), 2);
    /* last is the end of the fit, with the generator after it. */
    CD_ASSERT_OK(cd_trainer_load(&back, last, r2));
    assert_same_params(tr, back, "last");
    uint64_t s1[4], s2[4];
    CD_ASSERT_OK(cd_rng_get_state(rng, s1));
    CD_ASSERT_OK(cd_rng_get_state(r2, s2));
    ck_assert_mem_eq(s1, s2, sizeof s1);
    ck_assert(progress(back, CD_PROGRESS_EPOCH) == 4);
    ck_assert(progress(back, CD_PROGRESS_RUNNING) == 0);
    ck_assert(progress(back, CD_PROGRESS_VAL_LOSS) == log.val[3]);
    /* ... and the last epoch's training loss, as on_epoch got it. */
    ck_assert(progress(back, CD_PROGRESS_TRAIN_LOSS) == log.train[3]);
    ck_assert(progress(back, CD_PROGRESS_BEST_VAL_LOSS) == log.best_val);
    int64_t b = 0;
    CD_ASSERT_OK(cd_trainer_get_int(back, CD_TRAINER_OPT_BATCH, &b));
    ck_assert_int_eq(b, BATCH);
    cd_trainer_free(back);
    /* best is the epoch with the lowest validation loss. */
    int at = 0;
    for (int i = 1; i < 4; i++)
        if (log.val[i] < log.val[at]) at = i;
    CD_ASSERT_OK(cd_trainer_load(&back, best, NULL));
    ck_assert_int_eq(cd_trainer_steps(back), (at + 1) * BATCHES);
    ck_assert(progress(back, CD_PROGRESS_EPOCH) == at + 1);
    ck_assert(progress(back, CD_PROGRESS_VAL_LOSS) == log.val[at]);
    cd_trainer_free(back);
    free(log.best);
    /* With a best score no epoch can beat, best_path is never written; with
     * one every epoch beats, it is. */
    cd__trainer_fit_state(tr)->best_loss = 0.0;
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 5, best2, NULL, rng, NULL, NULL));
    ck_assert_int_eq(cd_test_file_size(best2), -1);
    cd__trainer_fit_state(tr)->best_loss = INFINITY;
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 6, best2, NULL, rng, NULL, NULL));
    ck_assert_int_gt(cd_test_file_size(best2), 0);
    cd_rng_free(rng);
    cd_rng_free(r2);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* Without a validation split the training loss picks best. */
START_TEST(best_by_train_loss_without_validation)
{
    cd_dataset *ds = cd_test_load_slice(0.0);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 0);
    cd_trainer *tr = make_trainer(0), *back = NULL;
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 250)); /* 4 batches of 1000 */
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    char dir[256], best[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(best, sizeof best, dir, "best.cdm");
    epoch_log log = {0};
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 2, best, NULL, rng, NULL, &log));
    ck_assert(isnan(progress(tr, CD_PROGRESS_VAL_LOSS)));
    ck_assert(isnan(progress(tr, CD_PROGRESS_BEST_VAL_LOSS)));
    ck_assert(progress(tr, CD_PROGRESS_BATCHES) == 4);
    ck_assert(cd__trainer_fit_state(tr)->best_loss == progress(tr, CD_PROGRESS_TRAIN_LOSS));
    CD_ASSERT_OK(cd_trainer_load(&back, best, NULL));
    ck_assert_int_eq(cd_trainer_steps(back), 8); /* the loss fell in epoch 2 */
    cd_trainer_free(back);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* ---- stopping and resuming ---------------------------------------------- */

START_TEST(stop_request_saves_last)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0), *back = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    char dir[256], last[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(last, sizeof last, dir, "last.cdm");
    /* A request made before the fit stops it before its first batch. */
    cd_trainer_request_stop(tr);
    cd_trainer_request_stop(NULL); /* a no-op */
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 2, NULL, last, rng, NULL, NULL), CD_ERR_CANCELLED);
    ck_assert_int_eq(cd_trainer_steps(tr), 0);
    ck_assert_int_gt(cd_test_file_size(last), 0);
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
    /* The request is spent: the next fit runs, here until 3 batches. */
    cd__trainer_stop_after(tr, 3);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 2, NULL, last, rng, NULL, NULL), CD_ERR_CANCELLED);
    CD_ASSERT_ERROR_MENTIONS("stopped");
    ck_assert_int_eq(cd_trainer_steps(tr), 3);
    ck_assert(progress(tr, CD_PROGRESS_BATCH) == 3);
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 0);
    CD_ASSERT_OK(cd_trainer_load(&back, last, NULL));
    assert_same_params(tr, back, "last after a stop");
    ck_assert_int_eq(cd__trainer_fit_state(back)->pos, 3 * BATCH);
    ck_assert(cd__trainer_fit_state(back)->open);
    ck_assert(progress(back, CD_PROGRESS_EPOCH) == 0);
    ck_assert(progress(back, CD_PROGRESS_BATCH) == 3);
    ck_assert(progress(back, CD_PROGRESS_TRAIN_LOSS) == progress(tr, CD_PROGRESS_TRAIN_LOSS));
    cd_trainer_free(back);
    /* Without last_path a stop saves nothing but still cancels. */
    cd_trainer_request_stop(tr);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 2, NULL, NULL, rng, NULL, NULL), CD_ERR_CANCELLED);
    ck_assert_int_eq(cd_trainer_steps(tr), 3);
    ck_assert_int_eq(cd_test_count_entries(dir), 1);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* A fit of `epochs` in one go, with best and last in dir as a-best/a-last. */
static cd_trainer *fit_straight(int blur, cd_dataset *ds, int64_t epochs, const char *dir)
{
    char best[512], last[512];
    cd_trainer *tr = make_trainer(blur);
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.9));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, epochs, cd_test_path(best, sizeof best, dir, "a-best.cdm"),
                                cd_test_path(last, sizeof last, dir, "a-last.cdm"), rng, NULL,
                                NULL));
    cd_rng_free(rng);
    return tr;
}

/* The same fit stopped after `stop` batches, then loaded from last (into a
 * generator seeded differently) and run to the end; or, with in_process,
 * continued by calling cd_trainer_fit again on the same trainer. */
static cd_trainer *fit_stopped(int blur, cd_dataset *ds, int64_t epochs, const char *dir,
                               int64_t stop, int in_process)
{
    char best[512], last[512];
    cd_test_path(best, sizeof best, dir, "b-best.cdm");
    cd_test_path(last, sizeof last, dir, "b-last.cdm");
    remove(best);
    cd_trainer *tr = make_trainer(blur);
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.9));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    cd__trainer_stop_after(tr, stop);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, epochs, best, last, rng, NULL, NULL), CD_ERR_CANCELLED);
    ck_assert_int_eq(cd_trainer_steps(tr), stop);
    /* As in a new process, the dataset's order is not the stopped epoch's. */
    cd_rng *junk = NULL;
    CD_ASSERT_OK(cd_rng_create(&junk, 12345));
    CD_ASSERT_OK(cd_dataset_shuffle(ds, CD_SPLIT_TRAIN, junk));
    cd_rng_free(junk);
    if (!in_process) {
        cd_test_trainer_free_all(tr);
        cd_rng_free(rng);
        CD_ASSERT_OK(cd_rng_create(&rng, 999)); /* overwritten by the load */
        CD_ASSERT_OK(cd_trainer_load(&tr, last, rng));
        ck_assert_int_eq(cd_trainer_steps(tr), stop);
    }
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, epochs, best, last, rng, NULL, NULL));
    cd_rng_free(rng);
    return tr;
}

static void compare_runs(cd_trainer *a, cd_trainer *b, const char *dir, const char *what)
{
    char p[512], q[512];
    assert_same_params(a, b, what);
    assert_same_file(cd_test_path(p, sizeof p, dir, "a-last.cdm"),
                     cd_test_path(q, sizeof q, dir, "b-last.cdm"), what);
    assert_same_file(cd_test_path(p, sizeof p, dir, "a-best.cdm"),
                     cd_test_path(q, sizeof q, dir, "b-best.cdm"), what);
    const cd_progress_key keys[4] = {CD_PROGRESS_EPOCH, CD_PROGRESS_TRAIN_LOSS,
                                     CD_PROGRESS_VAL_LOSS, CD_PROGRESS_BEST_VAL_LOSS};
    for (int k = 0; k < 4; k++)
        ck_assert_msg(progress(a, keys[k]) == progress(b, keys[k]), "%s: progress %d", what,
                      (int)keys[k]);
}

/* Stops mid-epoch (batches 5 and 12 of epoch 1, batch 2 of epoch 2), right
 * after an epoch's last batch before its validation (13), and at an epoch
 * boundary, and continued in the same process after a stop: the resumed fit
 * writes the same weights, Adam state, EMA and checkpoints, byte for byte,
 * as the uninterrupted one. */
START_TEST(resume_is_bit_identical)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    cd_trainer *a = fit_straight(0, ds, 2, dir);
    /* Batch 12 leaves the partial batch to the resumed fit's fresh buffers.
     * (A sanitizer build runs only the first two and not the in-process run.) */
    const int64_t stops[] = {5, BATCHES + 2, BATCHES - 1, BATCHES};
    for (int i = 0; i < (CD_TEST_SANITIZED ? 2 : 4); i++) {
        char what[64];
        snprintf(what, sizeof what, "stopped after %d batches", (int)stops[i]);
        cd_trainer *b = fit_stopped(0, ds, 2, dir, stops[i], 0);
        compare_runs(a, b, dir, what);
        cd_trainer_free(b);
    }
    cd_trainer *b = NULL;
    if (!CD_TEST_SANITIZED) {
        b = fit_stopped(0, ds, 2, dir, 7, 1);
        compare_runs(a, b, dir, "continued in process");
        cd_test_trainer_free_all(b);
    }
    /* An epoch boundary: fit 1 epoch, load last, fit to 2. */
    char last[512];
    b = make_trainer(0);
    CD_ASSERT_OK(cd_trainer_set_real(b, CD_TRAINER_OPT_EMA_DECAY, 0.9));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_trainer_fit(b, ds, 1, NULL, cd_test_path(last, sizeof last, dir, "b-last.cdm"),
                                rng, NULL, NULL));
    cd_test_trainer_free_all(b);
    CD_ASSERT_OK(cd_trainer_load(&b, last, rng));
    ck_assert(!cd__trainer_fit_state(b)->open);
    ck_assert_int_eq(cd__trainer_fit_state(b)->epoch, 1);
    CD_ASSERT_OK(cd_trainer_fit(b, ds, 2, NULL, last, rng, NULL, NULL));
    assert_same_params(a, b, "epoch boundary");
    char p[512];
    assert_same_file(cd_test_path(p, sizeof p, dir, "a-last.cdm"), last, "epoch boundary");
    cd_trainer_free(b);
    cd_rng_free(rng);
    cd_test_trainer_free_all(a);
    cd_dataset_free(ds);
}
END_TEST

/* A stop inside the validation (after 1 and after 3 of its 4 batches):
 * the fit returns within a batch, last.cdm holds the trained epoch, and
 * the resumed fit validates again with the same draws, so that both runs
 * end byte for byte alike. The phase and validation progress are public. */
static void set_val_batch(cd_trainer *tr)
{
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 64));
}

START_TEST(stop_during_validation_resumes_bit_identical)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    char dir[256], best[512], last[512], p[512], q[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_trainer *a = make_trainer(0);
    set_val_batch(a);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_trainer_fit(a, ds, 2, cd_test_path(p, sizeof p, dir, "a-best.cdm"),
                                cd_test_path(q, sizeof q, dir, "a-last.cdm"), rng, NULL, NULL));
    cd_rng_free(rng);
    ck_assert(progress(a, CD_PROGRESS_VAL_BATCHES) == 4);
    ck_assert(progress(a, CD_PROGRESS_PHASE) == 2);
    cd_test_path(best, sizeof best, dir, "b-best.cdm");
    cd_test_path(last, sizeof last, dir, "b-last.cdm");
    for (int64_t after = 1; after <= 3; after += 2) {
        remove(best);
        cd_trainer *b = make_trainer(0);
        set_val_batch(b);
        CD_ASSERT_OK(cd_rng_create(&rng, 5));
        cd__trainer_stop_in_validation(b, after);
        CD_ASSERT_STATUS(cd_trainer_fit(b, ds, 2, best, last, rng, NULL, NULL), CD_ERR_CANCELLED);
        ck_assert_int_eq(cd_trainer_steps(b), BATCHES);
        ck_assert(progress(b, CD_PROGRESS_EPOCH) == 0);
        ck_assert(progress(b, CD_PROGRESS_VAL_BATCH) == (double)after);
        cd_test_trainer_free_all(b);
        cd_rng_free(rng);
        CD_ASSERT_OK(cd_rng_create(&rng, 999)); /* overwritten by the load */
        CD_ASSERT_OK(cd_trainer_load(&b, last, rng));
        CD_ASSERT_OK(cd_trainer_fit(b, ds, 2, best, last, rng, NULL, NULL));
        compare_runs(a, b, dir,
                     after == 1 ? "stopped after 1 validation batch"
                                : "stopped after 3 validation batches");
        cd_trainer_free(b);
        cd_rng_free(rng);
    }
    cd_test_trainer_free_all(a);
    cd_dataset_free(ds);
}
END_TEST

/* The blur operator with one t per batch: the same, stopped mid-epoch. */
START_TEST(resume_blur_is_bit_identical)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    cd_trainer *a = fit_straight(1, ds, 1, dir);
    cd_trainer *b = fit_stopped(1, ds, 1, dir, 6, 0);
    compare_runs(a, b, dir, "blur");
    cd_test_trainer_free_all(a);
    cd_trainer_free(b);
    cd_dataset_free(ds);
}
END_TEST

/* A checkpoint written before the fit entries existed (no trainer.* fit
 * keys, no batch option) loads at the start of epoch 0. */
START_TEST(old_checkpoint_starts_at_epoch_zero)
{
    cd_trainer *tr = make_trainer(0), *back = NULL;
    char dir[256], path[512], old[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "new.cdm");
    cd_test_path(old, sizeof old, dir, "old.cdm");
    cd__fit_state *f = cd__trainer_fit_state(tr);
    f->epoch = 3, f->pos = 10, f->loss_sum = 1.5, f->open = true, f->best_loss = 0.25;
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 77));
    CD_ASSERT_OK(cd_rng_get_state(r, f->open_rng));
    cd_rng_free(r);
    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    /* Rewrite it without the new entries, as an older writer would have. */
    cd__ckpt *ck = NULL, *keep = NULL;
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    CD_ASSERT_OK(cd__ckpt_create(&keep));
    for (int64_t i = 0; i < cd__ckpt_config_count(ck); i++) {
        cd__ckpt_type type;
        const char *key = cd__ckpt_config_key(ck, i, &type);
        if (strcmp(key, "trainer.batch") == 0 || strcmp(key, "trainer.epoch_pos") == 0 ||
            strcmp(key, "trainer.epoch_loss_sum") == 0 || strcmp(key, "trainer.best_loss") == 0)
            continue;
        if (type == CD__CKPT_INT64) {
            int64_t v = 0;
            CD_ASSERT_OK(cd__ckpt_get_i64(ck, key, &v));
            CD_ASSERT_OK(cd__ckpt_set_i64(keep, key, v));
        } else if (type == CD__CKPT_STRING) {
            const char *v = NULL;
            CD_ASSERT_OK(cd__ckpt_get_str(ck, key, &v));
            CD_ASSERT_OK(cd__ckpt_set_str(keep, key, v));
        } else if (type == CD__CKPT_FLOAT64) {
            double v = 0;
            CD_ASSERT_OK(cd__ckpt_get_f64(ck, key, &v));
            CD_ASSERT_OK(cd__ckpt_set_f64(keep, key, v));
        } else if (type == CD__CKPT_FLOAT32_ARRAY) {
            int64_t n = 0;
            CD_ASSERT_OK(cd__ckpt_get_f32_array(ck, key, NULL, 0, &n));
            float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
            CD_ASSERT_OK(cd__ckpt_get_f32_array(ck, key, v, n, &n));
            CD_ASSERT_OK(cd__ckpt_set_f32_array(keep, key, v, n));
            free(v);
        } else {
            int64_t n = 0;
            CD_ASSERT_OK(cd__ckpt_get_i64_array(ck, key, NULL, 0, &n));
            int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
            CD_ASSERT_OK(cd__ckpt_get_i64_array(ck, key, v, n, &n));
            CD_ASSERT_OK(cd__ckpt_set_i64_array(keep, key, v, n));
            free(v);
        }
    }
    CD_ASSERT_OK(cd__ckpt_set_counters(keep, 0, 0));
    CD_ASSERT_OK(
        cd__ckpt_save(keep, old, cd_decoder_params(cd_trainer_decoder(tr)), cd__trainer_adam(tr)));
    cd__ckpt_free(ck);
    cd__ckpt_free(keep);
    /* The new file round-trips the state. */
    CD_ASSERT_OK(cd_trainer_load(&back, path, NULL));
    f = cd__trainer_fit_state(back);
    ck_assert(f->epoch == 3 && f->pos == 10 && f->loss_sum == 1.5 && f->open);
    ck_assert(f->best_loss == 0.25 && isnan(f->val_loss));
    ck_assert(progress(back, CD_PROGRESS_TRAIN_LOSS) == 0.15);
    ck_assert(isnan(progress(back, CD_PROGRESS_BEST_VAL_LOSS))); /* no validation yet */
    cd_trainer_free(back);
    /* The old one starts afresh, with the default batch. */
    CD_ASSERT_OK(cd_trainer_load(&back, old, NULL));
    f = cd__trainer_fit_state(back);
    ck_assert(f->epoch == 0 && f->pos == 0 && f->loss_sum == 0 && !f->open);
    ck_assert(isnan(f->best_loss));
    int64_t b = 0;
    CD_ASSERT_OK(cd_trainer_get_int(back, CD_TRAINER_OPT_BATCH, &b));
    ck_assert_int_eq(b, 128);
    cd_trainer_free(back);
    cd_test_trainer_free_all(tr);
}
END_TEST

/* ---- the prior ---------------------------------------------------------------- */

START_TEST(fit_fits_the_blur_prior)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(1);
    cd_degradation *deg = cd_trainer_degradation(tr);
    double m = 0, s = 0, j = 0, m2 = 0, s2 = 0, j2 = 0;
    int32_t fitted = -1;
    CD_ASSERT_OK(cd_degradation_get_prior(deg, &m, &s, &j, &fitted));
    ck_assert_int_eq(fitted, 0);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    cd__trainer_stop_after(tr, 1);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 1, NULL, NULL, rng, NULL, NULL), CD_ERR_CANCELLED);
    CD_ASSERT_OK(cd_degradation_get_prior(deg, &m, &s, &j, &fitted));
    ck_assert_int_eq(fitted, 1);
    /* The same as fitting it directly on the train split. */
    cd_trainer *ref = make_trainer(1);
    cd_degradation *d2 = cd_trainer_degradation(ref);
    CD_ASSERT_OK(cd_degradation_fit_prior(d2, ds, CD_SPLIT_TRAIN, 0));
    CD_ASSERT_OK(cd_degradation_get_prior(d2, &m2, &s2, &j2, &fitted));
    ck_assert(m == m2 && s == s2 && j == j2);
    /* A prior set by hand is kept. */
    CD_ASSERT_OK(cd_degradation_set_prior(d2, 0.125, 0.5, 0.25));
    cd__trainer_stop_after(ref, 1);
    CD_ASSERT_STATUS(cd_trainer_fit(ref, ds, 1, NULL, NULL, rng, NULL, NULL), CD_ERR_CANCELLED);
    CD_ASSERT_OK(cd_degradation_get_prior(d2, &m2, &s2, &j2, &fitted));
    ck_assert(m2 == 0.125 && s2 == 0.5 && j2 == 0.25);
    cd_test_trainer_free_all(ref);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

/* ---- NaN and infinity ----------------------------------------------------- */

/* The trainer's weights and Adam moments, to compare before and after. */
typedef struct {
    float *w, *m, *v;
    size_t bytes;
    int64_t steps;
} train_state;

static train_state take_state(cd_trainer *tr)
{
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    train_state s = {.bytes = (size_t)cd_params_numel(p) * sizeof(float),
                     .steps = cd_trainer_steps(tr)};
    s.w = malloc(s.bytes), s.m = malloc(s.bytes), s.v = malloc(s.bytes);
    memcpy(s.w, cd_params_data(p, -1), s.bytes);
    memcpy(s.m, cd__adam_m(cd__trainer_adam(tr)), s.bytes);
    memcpy(s.v, cd__adam_v(cd__trainer_adam(tr)), s.bytes);
    return s;
}

static void assert_state(const train_state *s, cd_trainer *tr, const char *what)
{
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    ck_assert_msg(memcmp(s->w, cd_params_data(p, -1), s->bytes) == 0, "%s: weights", what);
    ck_assert_msg(memcmp(s->m, cd__adam_m(cd__trainer_adam(tr)), s->bytes) == 0, "%s: m", what);
    ck_assert_msg(memcmp(s->v, cd__adam_v(cd__trainer_adam(tr)), s->bytes) == 0, "%s: v", what);
    ck_assert_int_eq(cd_trainer_steps(tr), s->steps);
}

static void drop_state(train_state *s) { free(s->w), free(s->m), free(s->v); }

static void assert_file_is(const char *path, const uint8_t *bytes, size_t n, const char *what)
{
    size_t got = 0;
    uint8_t *now = cd_test_read_file(path, &got);
    ck_assert_msg(got == n && memcmp(now, bytes, n) == 0, "%s: %s was rewritten", what, path);
    free(now);
}

/* An update that would overflow (here a learning rate of 1e300), a NaN
 * weight and a model that only fails validation each stop the fit with
 * CD_ERR_NOT_FINITE, a message naming epoch, batch and step, the weights
 * and moments of the last good step, and best/last untouched on disk. The
 * trainer goes on afterwards, and a checkpoint saved after the failure
 * holds the last good state. */
START_TEST(non_finite_stops_the_fit_and_keeps_checkpoints)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0), *back = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    char dir[256], best[512], last[512], after[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(best, sizeof best, dir, "best.cdm");
    cd_test_path(last, sizeof last, dir, "last.cdm");
    cd_test_path(after, sizeof after, dir, "after.cdm");
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 1, best, last, rng, NULL, NULL));
    size_t best_n = 0, last_n = 0;
    uint8_t *best0 = cd_test_read_file(best, &best_n), *last0 = cd_test_read_file(last, &last_n);
    train_state good = take_state(tr);

    /* 1. The first step of epoch 2 would send the weights to infinity. */
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e300));
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 3, best, last, rng, NULL, NULL), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_fit: epoch 2, batch 1 of 13 (step 14): ");
    CD_ASSERT_ERROR_MENTIONS("cd__adam_step: the step would make the value of");
    CD_ASSERT_ERROR_MENTIONS("no checkpoint was written");
    assert_state(&good, tr, "refused update");
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 1);
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
    assert_file_is(best, best0, best_n, "refused update");
    assert_file_is(last, last0, last_n, "refused update");
    ck_assert_int_eq(cd_test_count_entries(dir), 2);
    /* Saved now, the trainer holds what last.cdm holds. */
    CD_ASSERT_OK(cd_trainer_save(tr, after, rng));
    CD_ASSERT_OK(cd_trainer_load(&back, after, NULL));
    assert_state(&good, back, "saved after the failure");
    cd_trainer_free(back);
    CD_ASSERT_OK(cd_trainer_load(&back, last, NULL));
    assert_state(&good, back, "last.cdm");
    cd_trainer_free(back);

    /* 2. A NaN weight: the first batch's loss is NaN. */
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3));
    cd_params_data(p, 0)[3] = NAN;
    train_state poisoned = take_state(tr);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 3, best, last, rng, NULL, NULL), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_fit: epoch 2, batch 1 of 13 (step 14): "
                             "cd_trainer_step: the loss of the batch is ");
    CD_ASSERT_ERROR_MENTIONS("nan (the prediction for image 0 holds ");
    CD_ASSERT_ERROR_MENTIONS("nan); the weights are unchanged");
    assert_state(&poisoned, tr, "NaN loss");
    assert_file_is(best, best0, best_n, "NaN loss");
    assert_file_is(last, last0, last_n, "NaN loss");
    drop_state(&poisoned);

    /* 3. Back to good weights, the fit goes on from where it stopped. */
    memcpy(cd_params_data(p, -1), good.w, good.bytes);
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 2, best, last, rng, NULL, NULL));
    ck_assert_int_eq(cd_trainer_steps(tr), 2 * BATCHES);

    /* 4. A fit stopped after its epoch's last batch, then a NaN weight:
     * only the validation sees it. */
    free(last0);
    cd__trainer_stop_after(tr, BATCHES);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 3, best, last, rng, NULL, NULL), CD_ERR_CANCELLED);
    last0 = cd_test_read_file(last, &last_n);
    free(best0);
    best0 = cd_test_read_file(best, &best_n);
    cd_params_data(p, 0)[3] = INFINITY;
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 3, best, last, rng, NULL, NULL), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_fit: epoch 3, validation after step 39: "
                             "cd_trainer_eval_loss: the loss of images 0..127 is ");
    ck_assert(progress(tr, CD_PROGRESS_EPOCH) == 2);
    assert_file_is(best, best0, best_n, "NaN validation");
    assert_file_is(last, last0, last_n, "NaN validation");

    drop_state(&good);
    free(best0);
    free(last0);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

/* The losses of evaluation name the images whose prediction is not finite. */
START_TEST(non_finite_evaluation_is_an_error)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 64));
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    cd_params_data(p, 0)[0] = NAN;
    double mean = 0, se = 0;
    CD_ASSERT_STATUS(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &mean), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_eval_loss: the loss of images 0..63 is ");
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, rng, &mean, &se),
                     CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_test_loss: the loss of image 0 is ");
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(bad_arguments_are_errors)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(0);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_STATUS(cd_trainer_fit(NULL, ds, 1, NULL, NULL, rng, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, NULL, 1, NULL, NULL, rng, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 1, NULL, NULL, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 0, NULL, NULL, rng, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, -3, NULL, NULL, rng, NULL, NULL), CD_ERR_RANGE);
    /* The batch option. */
    int64_t v = 0;
    cd_option_info info;
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_BATCH, &info));
    ck_assert_str_eq(info.name, "batch");
    ck_assert(info.type == CD_OPTION_INT && info.lo == 1 && info.hi >= 1e6);
    ck_assert(info.default_value == 128);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 0), CD_ERR_RANGE);
    /* A fraction or a NaN can only come through the real call: refused. */
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_BATCH, 2.5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_BATCH, NAN), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, (int64_t)info.hi + 1),
                     CD_ERR_RANGE);
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_BATCH, &v));
    ck_assert_int_eq(v, BATCH);
    cd_trainer *fresh = NULL; /* the default */
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 10, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){2}, 1));
    CD_ASSERT_OK(cd_decoder_create(&dec, cfg, rng));
    CD_ASSERT_OK(cd_trainer_create(&fresh, dec, deg));
    CD_ASSERT_OK(cd_trainer_get_int(fresh, CD_TRAINER_OPT_BATCH, &v));
    ck_assert_int_eq(v, 128);
    cd_trainer_free(fresh);
    cd_decoder_free(dec); /* borrowed by the trainer: freed after it */
    cd_degradation_free(deg);
    cd_decoder_config_free(cfg);
    cd_schedule_free(s);
    /* An empty train split. */
    cd_dataset *empty = cd_test_load_slice(0.9999);
    ck_assert_int_eq(cd_dataset_count(empty, CD_SPLIT_TRAIN), 0);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, empty, 1, NULL, NULL, rng, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("empty");
    cd_dataset_free(empty);
    /* A folder that does not exist for last_path: the first epoch's save
     * fails, and the weights are those of its last batch. */
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 1, NULL, "/nonexistent/dir/last.cdm", rng, NULL, NULL),
                     CD_ERR_NOT_FOUND);
    ck_assert_int_eq(cd_trainer_steps(tr), BATCHES);
    ck_assert(progress(tr, CD_PROGRESS_RUNNING) == 0);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("fit");
    TCase *tc = tcase_create("fit");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, progress_during_and_after_fit);
    tcase_add_test(tc, on_epoch_error_stops_the_fit);
    tcase_add_test(tc, best_and_last_checkpoints);
    tcase_add_test(tc, best_by_train_loss_without_validation);
    tcase_add_test(tc, stop_request_saves_last);
    tcase_add_test(tc, resume_is_bit_identical);
    tcase_add_test(tc, stop_during_validation_resumes_bit_identical);
    tcase_add_test(tc, resume_blur_is_bit_identical);
    tcase_add_test(tc, old_checkpoint_starts_at_epoch_zero);
    tcase_add_test(tc, fit_fits_the_blur_prior);
    tcase_add_test(tc, bad_arguments_are_errors);
    tcase_add_test(tc, non_finite_stops_the_fit_and_keeps_checkpoints);
    tcase_add_test(tc, non_finite_evaluation_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
