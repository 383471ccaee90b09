/*
 * cmd_train.c - colddiff train: build a model from a preset or flags, run
 * cd_trainer_fit over MNIST, and write RUN/{config.txt, losses.csv,
 * loss.svg, best.cdm, last.cdm} plus sample grids at chosen epochs. A
 * progress bar on a terminal (plain lines otherwise) polls the trainer
 * from a second thread; Ctrl-C asks the fit to stop, which saves last.cdm.
 * Started by mpirun, every rank trains its share of each batch and rank 0
 * alone writes the run folder (cli_mpi.c).
 */
#include "cmd_train.h"

#include "cli_mpi.h"

#include <colddiff_experimental.h> /* CD_TRAINER_OPT_LR_DECAY (--lr-decay) */

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EPOCHS 100000

typedef struct {
    const train_opts *o;
    cd_dataset *ds;
    double *epoch, *train, *val; /* the loss curve so far */
    double *sec, *ips;           /* each epoch's wall seconds and images/s (NaN: unknown) */
    double t_mark;               /* when the current epoch began (NaN: part of it ran
                                    before a resume) */
    int64_t n;
    bool tty;
    volatile double grid_sec; /* the last epoch's grids took this long */
} run_state;

static cd_trainer *volatile g_trainer; /* for the Ctrl-C handler */
static char g_stop_note[4400];         /* what a rank says on SIGTERM */

/* Ctrl-C, and under mpirun SIGTERM (mpirun's own Ctrl-C, or a rank that
 * died): every rank stops at the same batch, rank 0 saving last.cdm. A
 * rank blocked on a dead peer never gets there; mpirun then kills it,
 * and last.cdm is the one of the last epoch, whole (written atomically). */
static void on_sigint(int sig)
{
    if (g_trainer) cd_trainer_request_stop(g_trainer);
    if (sig == SIGTERM && g_stop_note[0]) {
        ssize_t w = write(STDERR_FILENO, g_stop_note, strlen(g_stop_note));
        (void)w;
    }
    signal(sig, SIG_DFL); /* a second one kills at once */
}

/* ---- the loss curve -------------------------------------------------------- */

/* losses.csv and loss.svg; 0 or the errno of the failed write (the path of
 * the file that failed goes to `failed`). */
static int write_curve(run_state *r, char *failed, size_t cap)
{
    char path[4096], final[4096];
    cli_join(final, sizeof final, r->o->out, "losses.csv");
    snprintf(failed, cap, "%s", final);
    FILE *f = fopen(cli_join(path, sizeof path, r->o->out, "losses.csv.tmp"), "w");
    if (!f) return errno;
    /* The timings come last, so readers of the first three columns (an
     * older --resume among them) see the file they know. */
    fprintf(f, "epoch,train_loss,val_loss,seconds,images_per_sec\n");
    for (int64_t i = 0; i < r->n; i++)
        fprintf(f, "%.0f,%.9g,%.9g,%.2f,%.1f\n", r->epoch[i], r->train[i], r->val[i], r->sec[i],
                r->ips[i]);
    int e = cli_commit_file(f, path, final);
    if (e) return e;
    const cli_series s[2] = {{"train", "#1f77b4", r->epoch, r->train, r->n},
                             {"validation", "#d62728", r->epoch, r->val, r->n}};
    snprintf(failed, cap, "%s", cli_join(path, sizeof path, r->o->out, "loss.svg"));
    return cli_write_svg_plot(path, "Loss", "epoch", "loss", s, 2, true, true);
}

/* write_curve, a failure being only a warning: training goes on. */
static void warn_curve(run_state *r)
{
    char failed[4096];
    const int e = write_curve(r, failed, sizeof failed);
    if (e) fprintf(stderr, "colddiff: warning: cannot write %s: %s\n", failed, strerror(e));
}

/* Rows of an earlier losses.csv up to epoch `upto` (a resumed run), with
 * or without the timing columns; a missing file is an empty curve, an
 * unreadable one an error. */
static int read_curve(run_state *r, int64_t upto)
{
    char path[4096], line[256];
    FILE *f = NULL;
    const int err = cli_open_read(cli_join(path, sizeof path, r->o->out, "losses.csv"), &f);
    if (err == ENOENT) return CLI_OK;
    if (err) {
        fprintf(stderr, "colddiff: cannot read %s: %s\n", path, cli_strerror(err));
        return CLI_FAIL;
    }
    while (fgets(line, sizeof line, f) && r->n < MAX_EPOCHS) {
        double e, t, v, sec = NAN, ips = NAN;
        if (sscanf(line, "%lf,%lf,%lf,%lf,%lf", &e, &t, &v, &sec, &ips) >= 3 && e <= (double)upto) {
            r->epoch[r->n] = e, r->train[r->n] = t, r->val[r->n] = v;
            r->sec[r->n] = sec, r->ips[r->n] = ips;
            r->n++;
        }
    }
    fclose(f);
    return CLI_OK;
}

/* ---- per-epoch work ---------------------------------------------------------- */

static bool wanted(const cli_times *t, int64_t epoch, int64_t last)
{
    if (epoch == last) return true;
    for (int64_t i = 0; i < t->n; i++)
        if (t->v[i] == epoch) return true;
    return false;
}

/* Grids show the EMA weights when the run keeps them, as `colddiff sample
 * --ema` would: true when they were swapped in (swap back afterwards),
 * false to sample the raw weights (no EMA, or none yet). */
static bool ema_in(cd_trainer *tr)
{
    double decay = 0.0;
    if (cd_trainer_get_real(tr, CD_TRAINER_OPT_EMA_DECAY, &decay) != CD_OK || decay <= 0.0)
        return false;
    if (cd_trainer_swap_ema(tr) == CD_OK) return true;
    cd_clear_error();
    return false;
}

static void ema_out(cd_trainer *tr, bool swapped)
{
    if (swapped) cd_trainer_swap_ema(tr);
}

/* An epoch's row of the loss curve, on stderr and in losses.csv: its
 * seconds are the wall time of its training and validation, and its
 * images/s the training images over those seconds. */
static void record_epoch(run_state *r, int64_t epoch, double train, double val)
{
    const double sec = cli_now_sec() - r->t_mark;
    const double ips = (double)cd_dataset_count(r->ds, CD_SPLIT_TRAIN) / sec;
    if (r->n < MAX_EPOCHS) {
        r->epoch[r->n] = (double)epoch, r->train[r->n] = train, r->val[r->n] = val;
        r->sec[r->n] = sec, r->ips[r->n] = ips;
        r->n++;
    }
    if (r->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "epoch %lld/%lld: train loss %.5f, ", (long long)epoch, (long long)r->o->epochs,
            train);
    if (isnan(val))
        fprintf(stderr, "no validation split");
    else
        fprintf(stderr, "validation loss %.5f", val);
    if (isfinite(sec)) fprintf(stderr, " (%.1f s, %.0f img/s)", sec, ips);
    fprintf(stderr, "\n");
    warn_curve(r);
}

static cd_status epoch_grids(run_state *r, cd_trainer *tr, int64_t epoch);

static cd_status on_epoch(cd_trainer *tr, int64_t epoch, double train, double val, void *user)
{
    run_state *r = user;
    record_epoch(r, epoch, train, val);
    const cd_status st = epoch_grids(r, tr, epoch);
    r->t_mark = cli_now_sec();
    return st;
}

static cd_status draw_grids(run_state *r, cd_trainer *tr, int64_t epoch);

/* The grids with their own progress line, and Ctrl-C stopping the chain
 * at its next step: then the fit is asked to stop too, which keeps the
 * epoch's checkpoints (a resume draws the grids again). */
static cd_status epoch_grids(run_state *r, cd_trainer *tr, int64_t epoch)
{
    if (!wanted(&r->o->sample_epochs, epoch, r->o->epochs)) return CD_OK;
    char label[96];
    snprintf(label, sizeof label, "epoch %lld/%lld: sample grids", (long long)epoch,
             (long long)r->o->epochs);
    const double t0 = cli_now_sec();
    cli_progress_begin(label);
    cd_status st = draw_grids(r, tr, epoch);
    const bool stopped = cli_interrupted();
    cli_progress_end();
    r->grid_sec = cli_now_sec() - t0;
    if (stopped) {
        cd_trainer_request_stop(tr);
        return CD_ERR_CANCELLED;
    }
    return st;
}

/* The grids' sampling settings: the --grid-* options; a class-conditional
 * model's grids show one class per row. */
static cli_sampling grid_sampling(const train_opts *o, uint64_t seed, bool class_rows)
{
    cli_sampling s = CLI_SAMPLING_DEFAULTS;
    s.kind = o->grid_sampler, s.steps = o->grid_steps, s.eta = o->grid_eta;
    s.seed = seed, s.clip = o->grid_clip, s.class_rows = class_rows;
    return s;
}

/* The sample grid and restoration figure of a chosen epoch, written last
 * (restore_epochNNN.png after samples_epochNNN.png). */
static cd_status draw_grids(run_state *r, cd_trainer *tr, int64_t epoch)
{
    char name[64], path[4096];
    const cd_decoder *dec = cd_trainer_decoder(tr);
    const cli_sampling smp = grid_sampling(r->o, (uint64_t)r->o->seed + (uint64_t)epoch,
                                           cd_decoder_class_count(dec) > 0);
    const int64_t n = train_option_given(r->o, "--n-samples")
                          ? r->o->n_samples
                          : cli_grid_count(dec, &smp, 8, 4096, r->o->n_samples);
    snprintf(name, sizeof name, "samples_epoch%03lld.png", (long long)epoch);
    const bool swapped = ema_in(tr);
    cd_status st = cli_sample_grid(tr, &smp, n, 8, cli_join(path, sizeof path, r->o->out, name));
    if (st != CD_OK) {
        ema_out(tr, swapped);
        return st;
    }
    snprintf(name, sizeof name, "restore_epoch%03lld.png", (long long)epoch);
    /* By default the report's three snapshots: early, halfway and T. */
    const int64_t T = cd_degradation_T(cd_trainer_degradation(tr));
    cli_times times = r->o->times_given ? r->o->restore_times : cli_default_times(T);
    for (int64_t i = 0; i < times.n; i++)
        if (times.v[i] > T) times.v[i] = T;
    /* Restorations of unseen images when there are any. */
    const cd_split split =
        cd_dataset_count(r->ds, CD_SPLIT_VAL) > 0 ? CD_SPLIT_VAL : CD_SPLIT_TRAIN;
    st = cli_restore_figure(tr, &smp, r->ds, split, 8, &times,
                            cli_join(path, sizeof path, r->o->out, name));
    ema_out(tr, swapped);
    if (st == CD_OK)
        fprintf(stderr, "  wrote samples and restorations for epoch %lld\n", (long long)epoch);
    return st;
}

/* A run killed after writing last.cdm but before the end of on_epoch has
 * lost that epoch's row or grids. They depend only on the checkpoint (its
 * last training and validation loss, its weights, the grid seed), so a
 * resumed run makes them again, the same as the uninterrupted run did. */
static cd_status finish_epoch(run_state *r, cd_trainer *tr, int64_t epoch)
{
    if (epoch < 1) return CD_OK;
    double pos = 0, train = NAN, val = NAN;
    cd_trainer_progress(tr, CD_PROGRESS_BATCH, &pos);
    if (pos > 0) return CD_OK; /* stopped inside the next epoch: this one was done */
    if (r->n == 0 || r->epoch[r->n - 1] != (double)epoch) {
        cd_trainer_progress(tr, CD_PROGRESS_TRAIN_LOSS, &train);
        cd_trainer_progress(tr, CD_PROGRESS_VAL_LOSS, &val);
        record_epoch(r, epoch, train, val);
    } else { /* loss.svg may predate the row */
        warn_curve(r);
    }
    char name[64], path[4096];
    snprintf(name, sizeof name, "restore_epoch%03lld.png", (long long)epoch);
    if (!wanted(&r->o->sample_epochs, epoch, r->o->epochs) ||
        access(cli_join(path, sizeof path, r->o->out, name), F_OK) == 0)
        return CD_OK;
    return epoch_grids(r, tr, epoch);
}

/* ---- the progress bar ------------------------------------------------------- */

typedef struct {
    cd_trainer *tr;
    run_state *r;
    volatile int done;
    double val_sec; /* the last validation's length (0: none yet) */
} bar_state;

/* Epochs after `epoch` (completed) up to the target that draw grids. */
static int64_t grid_epochs_left(const train_opts *o, int64_t epoch)
{
    int64_t n = 0;
    for (int64_t e = epoch + 1; e <= o->epochs; e++) n += wanted(&o->sample_epochs, e, o->epochs);
    return n;
}

/* Seconds left for the whole run: the library's training estimate, plus a
 * validation per epoch left (measured, or guessed from the training rate:
 * a forward pass costs about a third of a training step) and the grids
 * still to draw (the last ones' length; before any, nothing is known). */
static double run_eta(bar_state *b, const double *v, int phase)
{
    const train_opts *o = b->r->o;
    const double train = v[CD_PROGRESS_ETA_SEC];
    if (!isfinite(train)) return NAN;
    const double ips = v[CD_PROGRESS_IMAGES_PER_SEC];
    const int64_t n_val = cd_dataset_count(b->r->ds, CD_SPLIT_VAL);
    double per_val = b->val_sec;
    if (per_val <= 0 && ips > 0) per_val = (double)n_val / (3.0 * ips);
    const int64_t done = (int64_t)v[CD_PROGRESS_EPOCH];
    double vals = (double)(o->epochs - done) * per_val;
    if (phase == 1 && v[CD_PROGRESS_VAL_BATCHES] > 0)
        vals -= per_val * v[CD_PROGRESS_VAL_BATCH] / v[CD_PROGRESS_VAL_BATCHES];
    const double grids = (double)grid_epochs_left(o, done) * b->r->grid_sec;
    return train + (vals > 0 ? vals : 0) + grids;
}

static void *draw_bar(void *arg)
{
    bar_state *b = arg;
    double val_start = -1.0, logged = cli_now_sec();
    while (!b->done) {
        double v[13] = {0};
        for (int k = 0; k < 13; k++) cd_trainer_progress(b->tr, (cd_progress_key)k, &v[k]);
        const int phase = (int)v[CD_PROGRESS_PHASE];
        /* Off a terminal, one line as each validation begins (logs). */
        if (phase == 1 && val_start < 0 && !b->r->tty && v[CD_PROGRESS_RUNNING] != 0.0)
            fprintf(stderr, "epoch %.0f/%.0f: validating on %lld images\n",
                    v[CD_PROGRESS_EPOCH] + 1, v[CD_PROGRESS_EPOCHS],
                    (long long)cd_dataset_count(b->r->ds, CD_SPLIT_VAL));
        /* ... and, in a long epoch, a line every minute with the ETA. */
        if (!b->r->tty && phase == 0 && v[CD_PROGRESS_RUNNING] != 0.0 && v[CD_PROGRESS_BATCH] > 0 &&
            cli_now_sec() - logged >= 60.0) {
            const double eta = run_eta(b, v, phase);
            fprintf(stderr, "epoch %.0f/%.0f: batch %.0f/%.0f, loss %.5f, %.0f img/s, ETA ",
                    v[CD_PROGRESS_EPOCH] + 1, v[CD_PROGRESS_EPOCHS], v[CD_PROGRESS_BATCH],
                    v[CD_PROGRESS_BATCHES], v[CD_PROGRESS_TRAIN_LOSS],
                    v[CD_PROGRESS_IMAGES_PER_SEC]);
            if (isfinite(eta))
                fprintf(stderr, "%dm%02ds\n", (int)(eta / 60), (int)fmod(eta, 60));
            else
                fprintf(stderr, "?\n");
            logged = cli_now_sec();
        }
        if (phase == 1 && val_start < 0) val_start = cli_now_sec();
        if (phase != 1 && val_start >= 0) b->val_sec = cli_now_sec() - val_start, val_start = -1.0;
        /* At an epoch's end the grids draw their own line. */
        if (b->r->tty && v[CD_PROGRESS_RUNNING] != 0.0 && v[CD_PROGRESS_BATCHES] > 0 &&
            phase != 2) {
            const bool val = phase == 1 && v[CD_PROGRESS_VAL_BATCHES] > 0;
            const double frac = val ? v[CD_PROGRESS_VAL_BATCH] / v[CD_PROGRESS_VAL_BATCHES]
                                    : v[CD_PROGRESS_BATCH] / v[CD_PROGRESS_BATCHES];
            char bar[31];
            for (int i = 0; i < 30; i++) bar[i] = i < (int)(frac * 30) ? '#' : '.';
            bar[30] = '\0';
            const double eta = run_eta(b, v, phase);
            fprintf(stderr, "\r\033[Kepoch %.0f/%.0f %s [%s] %3.0f%% ",
                    fmin(v[CD_PROGRESS_EPOCH] + 1, v[CD_PROGRESS_EPOCHS]), v[CD_PROGRESS_EPOCHS],
                    val ? "validating" : "training", bar, 100 * frac);
            /* The loss is NaN until an epoch's first batch is done. */
            if (!val && isfinite(v[CD_PROGRESS_TRAIN_LOSS]))
                fprintf(stderr, "loss %.5f  ", v[CD_PROGRESS_TRAIN_LOSS]);
            if (!val) fprintf(stderr, "%.0f img/s  ", v[CD_PROGRESS_IMAGES_PER_SEC]);
            fprintf(stderr, "ETA ");
            if (isfinite(eta))
                fprintf(stderr, "%dm%02ds", (int)(eta / 60), (int)fmod(eta, 60));
            else
                fprintf(stderr, "?");
        }
        struct timespec ts = {0, b->r->tty ? 250000000 : 50000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- options ------------------------------------------------------------------ */

/* Make the grids' sampler once before training: a schedule whose alpha-bar
 * underflows, or a sampler that does not fit the degradation, fails now
 * instead of after the first epoch. */
static int check_grid_sampler(const train_opts *o, cd_trainer *tr)
{
    const cli_sampling smp = grid_sampling(o, 0, false);
    cd_sampler *s = NULL;
    if (cli_make_sampler(tr, &smp, &s) != CD_OK) return cli_fail("the sample grids' sampler");
    cd_sampler_free(s);
    return CLI_OK;
}

/* A resumed run's trainer comes from last.cdm with its own decoder and
 * degradation; a new run's borrows *dec and *deg, which run() frees after
 * it. */
static int setup_trainer(const train_opts *o, cli_model *m, cd_dataset *ds, cd_rng *rng,
                         cd_trainer **tr, cd_decoder **dec, cd_degradation **deg)
{
    char last[4096];
    cli_join(last, sizeof last, o->out, "last.cdm");
    /* Only a last.cdm that does not exist starts afresh: one that cannot be
     * read must not be overwritten by a new run. */
    const int state = o->resume ? cli_path_state(last) : ENOENT;
    if (state != 0 && state != ENOENT) {
        fprintf(stderr, "colddiff: resuming: cannot read %s: %s\n", last, cli_strerror(state));
        return CLI_FAIL;
    }
    if (o->resume && state == 0) {
        if (cd_trainer_load(tr, last, rng) != CD_OK) return cli_fail("resuming");
        double e = 0;
        cd_trainer_progress(*tr, CD_PROGRESS_EPOCH, &e);
        if (cli_mpi_rank() == 0)
            fprintf(stderr, "colddiff: resuming %s after epoch %.0f\n", last, e);
        /* The settings a resume may change reach the trainer; the others
         * come with the checkpoint. */
        if ((train_option_given(o, "--lr") && cd_trainer_set_real(*tr, CD_TRAINER_OPT_LR, o->lr)) ||
            (train_option_given(o, "--adam-beta2") &&
             cd_trainer_set_real(*tr, CD_TRAINER_OPT_BETA2, o->beta2)) ||
            (train_option_given(o, "--ema") &&
             cd_trainer_set_real(*tr, CD_TRAINER_OPT_EMA_DECAY, o->ema)) ||
            (train_option_given(o, "--clip-norm") &&
             cd_trainer_set_real(*tr, CD_TRAINER_OPT_CLIP_NORM, o->clip)) ||
            (train_option_given(o, "--lr-warmup") &&
             cd_trainer_set_int(*tr, CD_TRAINER_OPT_LR_WARMUP, o->lr_warmup)) ||
            (train_option_given(o, "--ema-warmup") &&
             cd_trainer_set_int(*tr, CD_TRAINER_OPT_EMA_WARMUP, o->ema_warmup ? 1 : 0)))
            return cli_fail("the training options");
        return check_grid_sampler(o, *tr);
    }
    if (o->resume && cli_mpi_rank() == 0)
        fprintf(stderr, "colddiff: note: no %s yet; starting afresh\n", last);
    if (m->conditional && m->classes_if_any && cli_class_count(ds) <= 0) {
        m->conditional = false;
        if (cli_mpi_rank() == 0)
            fprintf(stderr, "colddiff: note: the data has no classes; the model draws "
                            "without labels\n");
    }
    int rc = cli_model_build(m, ds, rng, tr, dec, deg);
    if (rc != CLI_OK) return rc;
    if (cd_trainer_set_real(*tr, CD_TRAINER_OPT_LR, o->lr) != CD_OK ||
        cd_trainer_set_real(*tr, CD_TRAINER_OPT_BETA2, o->beta2) != CD_OK ||
        cd_trainer_set_int(*tr, CD_TRAINER_OPT_BATCH, o->batch) != CD_OK ||
        cd_trainer_set_real(*tr, CD_TRAINER_OPT_EMA_DECAY, o->ema) != CD_OK ||
        cd_trainer_set_real(*tr, CD_TRAINER_OPT_CLIP_NORM, o->clip) != CD_OK ||
        cd_trainer_set_int(*tr, CD_TRAINER_OPT_LR_WARMUP, o->lr_warmup) != CD_OK ||
        cd_trainer_set_int(*tr, CD_TRAINER_OPT_EMA_WARMUP, o->ema_warmup ? 1 : 0) != CD_OK)
        return cli_fail("the training options");
    rc = check_grid_sampler(o, *tr);
    return rc == CLI_OK && cli_mpi_rank() == 0 ? train_write_config(o, m) : rc;
}

/* --lr-decay: the cosine reaches 0 at the end of the last epoch, so it is
 * set again on every start (a resume may have raised --epochs). */
static int set_lr_decay(const train_opts *o, const cd_dataset *ds, cd_trainer *tr)
{
    const int64_t n = cd_dataset_count(ds, CD_SPLIT_TRAIN);
    const int64_t steps = o->lr_decay ? o->epochs * ((n + o->batch - 1) / o->batch) : 0;
    if (cd_trainer_set_int(tr, CD_TRAINER_OPT_LR_DECAY, steps) != CD_OK)
        return cli_fail("--lr-decay");
    return CLI_OK;
}

/* Under mpirun: this rank's trainer joins the job, with the same weights
 * as every other rank, and one core's share of threads unless told. */
static int join_job(const train_opts *o, cd_trainer *tr)
{
    if (cli_mpi_size() < 2) return CLI_OK;
    if (cli_mpi_attach(tr, o->fixed_order) != CD_OK) return cli_fail("joining the MPI job");
    if (o->bucket >= 0 && cd_trainer_set_int(tr, CD_TRAINER_OPT_BUCKET, o->bucket) != CD_OK)
        return cli_fail("--bucket");
    return cli_mpi_check_weights(tr, "before training");
}

/* Threads per rank: all cores for one process, else the host's cores
 * shared among its ranks. */
static int set_threads(const train_opts *o)
{
    int64_t n = o->threads;
    if (n <= 0 && cli_mpi_size() > 1) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? cores / cli_mpi_local_size() : 1;
        if (n < 1) n = 1;
    }
    if (n > 0 && cd_set_num_threads(n) != CD_OK) return cli_fail("--threads");
    return CLI_OK;
}

/* Under mpirun, rank 0's account of the gradient sums. */
static void report_comm(double train_sec)
{
    if (cli_mpi_size() < 2 || cli_mpi_rank() != 0) return;
    double sec = 0;
    int64_t sums = 0;
    cli_mpi_comm(&sec, &sums);
    fprintf(stderr,
            "colddiff: %lld ranks; rank 0 spent %.1f s of %.1f s in %lld gradient sums "
            "(%.1f%%)\n",
            (long long)cli_mpi_size(), sec, train_sec, (long long)sums,
            train_sec > 0 ? 100.0 * sec / train_sec : 0.0);
}

static int run(train_opts *o, cli_model *m)
{
    const bool lead = cli_mpi_rank() == 0; /* writes the run folder */
    if (lead && cli_output_ok("train", "the run folder", o->out, true) != CLI_OK) return CLI_FAIL;
    char cfg_path[4096];
    int n_changed = 0;
    /* Even a run that never wrote last.cdm restarts with its own settings. */
    if (o->resume &&
        cli_path_state(cli_join(cfg_path, sizeof cfg_path, o->out, "config.txt")) != ENOENT) {
        const int bad = train_read_config(o, m, &n_changed);
        if (bad != CLI_OK) return bad;
    }
    if (!o->data)
        return cli_usage("train", "--data DIR is required (%s/config.txt does not record it)",
                         o->out);
    if (set_threads(o) != CLI_OK) return CLI_FAIL;
    cd_dataset *ds = NULL;
    cd_rng *rng = NULL;
    cd_trainer *tr = NULL;
    cd_decoder *dec = NULL; /* a new run's, which tr borrows */
    cd_degradation *deg = NULL;
    run_state r = {.o = o, .tty = isatty(STDERR_FILENO)};
    cli_data_channels = o->channels, cli_data_size = o->size;
    r.epoch = calloc(5 * MAX_EPOCHS, sizeof(double));
    r.train = r.epoch + MAX_EPOCHS, r.val = r.train + MAX_EPOCHS;
    r.sec = r.val + MAX_EPOCHS, r.ips = r.sec + MAX_EPOCHS;
    int rc = CLI_FAIL;
    if (!r.epoch)
        fprintf(stderr, "colddiff: out of memory\n");
    else if (cli_load_data(&ds, o->data, o->val_fraction, (uint64_t)o->seed) != CD_OK)
        cli_fail("loading the data");
    else if (o->train_limit > 0 && cd_dataset_truncate(ds, CD_SPLIT_TRAIN, o->train_limit))
        cli_fail("--train-limit");
    else if (o->val_limit > 0 && cd_dataset_count(ds, CD_SPLIT_VAL) > o->val_limit &&
             cd_dataset_truncate(ds, CD_SPLIT_VAL, o->val_limit))
        cli_fail("--val-limit");
    else if (cd_rng_create(&rng, (uint64_t)o->seed) != CD_OK)
        cli_fail("the generator");
    else
        rc = setup_trainer(o, m, ds, rng, &tr, &dec, &deg);
    if (rc == CLI_OK) rc = join_job(o, tr);
    if (rc != CLI_OK) goto done;
    r.ds = ds;
    if (lead && (rc = train_update_config(o, n_changed)) != CLI_OK) goto done;
    if ((rc = set_lr_decay(o, ds, tr)) != CLI_OK) goto done;
    double done_epochs = 0, open_batches = 0;
    cd_trainer_progress(tr, CD_PROGRESS_EPOCH, &done_epochs);
    cd_trainer_progress(tr, CD_PROGRESS_BATCH, &open_batches);
    if ((rc = read_curve(&r, (int64_t)done_epochs)) != CLI_OK) goto done;
    char best[4096], last[4096];
    cli_join(best, sizeof best, o->out, "best.cdm");
    cli_join(last, sizeof last, o->out, "last.cdm");
    char ranks[64] = "";
    if (cli_mpi_size() > 1)
        snprintf(ranks, sizeof ranks, "%lld ranks x ", (long long)cli_mpi_size());
    if (lead)
        fprintf(stderr,
                "colddiff: training on %lld images (validation %lld) for %lld epochs, "
                "%s%lld threads; writing %s\n",
                (long long)cd_dataset_count(ds, CD_SPLIT_TRAIN),
                (long long)cd_dataset_count(ds, CD_SPLIT_VAL), (long long)o->epochs, ranks,
                (long long)cd_get_num_threads(), o->out);
    if (lead && finish_epoch(&r, tr, (int64_t)done_epochs) != CD_OK) {
        rc = cli_fail("redoing the grids of the last epoch");
        goto done;
    }
    if (open_batches == 0 && done_epochs >= (double)o->epochs) {
        if (lead)
            printf(
                "colddiff: already at epoch %.0f of %lld; nothing to do (raise --epochs to train "
                "further)\n",
                done_epochs, (long long)o->epochs);
        rc = CLI_OK;
        goto done;
    }
    /* An epoch resumed part-way has no timing of its own. */
    r.t_mark = open_batches > 0 ? NAN : cli_now_sec();
    bar_state bar = {tr, &r, 0, 0.0};
    pthread_t th;
    const bool drawing = lead && pthread_create(&th, NULL, draw_bar, &bar) == 0;
    g_trainer = tr;
    signal(SIGINT, on_sigint);
    if (cli_mpi_size() > 1) {
        snprintf(g_stop_note, sizeof g_stop_note,
                 "colddiff: rank %lld: stopping on SIGTERM at the next batch (if the job is "
                 "killed first, %s keeps the last epoch saved)\n",
                 (long long)cli_mpi_rank(), last);
        signal(SIGTERM, on_sigint);
    }
    const double t_fit = cli_now_sec();
    const cd_status st = cd_trainer_fit(tr, ds, o->epochs, lead ? best : NULL, lead ? last : NULL,
                                        rng, lead ? on_epoch : NULL, &r);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_trainer = NULL;
    report_comm(cli_now_sec() - t_fit);
    if (drawing) {
        bar.done = 1;
        pthread_join(th, NULL);
        if (r.tty) fprintf(stderr, "\r\033[K");
    }
    if (st == CD_ERR_CANCELLED) {
        if (lead) fprintf(stderr, "colddiff: stopped; saved %s (continue with --resume)\n", last);
        rc = CLI_INTERRUPTED;
    } else if (st == CD_ERR_NOT_FINITE) {
        /* The fit wrote nothing for the failing epoch: say what is kept. */
        fprintf(stderr, "colddiff: training diverged: %s; ", cd_last_error());
        if (access(last, F_OK) != 0)
            fprintf(stderr, "no checkpoint had been written yet\n");
        else if (access(best, F_OK) != 0)
            fprintf(stderr, "kept the last good checkpoint %s\n", last);
        else
            fprintf(stderr, "kept the last good checkpoints %s and %s\n", best, last);
        rc = CLI_FAIL;
    } else if (st != CD_OK) {
        rc = cli_fail("training");
    } else if ((rc = cli_mpi_check_weights(tr, "after training")) == CLI_OK && lead) {
        printf("colddiff: done; best model %s, last %s, losses %s/losses.csv\n", best, last,
               o->out);
    }
done:
    cd_trainer_free(tr); /* before the decoder and degradation it borrows */
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    free(r.epoch);
    return rc;
}

/* The fast preset's training options, set before the parser runs so that
 * explicit flags override them. The report's presets train with the
 * report's options, which are the defaults. */
static void preset_training(int preset, train_opts *o)
{
    if (preset != CLI_PRESET_FAST) return;
    o->epochs = 3, o->batch = 32, o->lr = 2e-3, o->lr_warmup = 200, o->clip = 1.0;
    o->ema = 0.999, o->ema_warmup = true, o->val_fraction = 0.05, o->val_limit = 2000;
    o->sample_epochs = (cli_times){1, {3}};
}

int cmd_train(int argc, char **argv)
{
    cli_model m;
    const int preset = cli_model_from_preset_flag(&m, argc, argv);
    train_opts o = {.epochs = 5,
                    .batch = 128,
                    .lr = 2e-4,
                    .beta2 = 0.999,
                    .val_fraction = 0.2,
                    .seed = 42,
                    .n_samples = 64,
                    .sample_epochs = {4, {5, 15, 30, 45}},
                    .restore_times = {0, {0}},
                    .grid_eta = 1,
                    .grid_clip = true,
                    .bucket = -1};
    bool grid_no_clip = false;
    preset_training(preset, &o);
    int preset_dummy = 0;
    cli_opt opts[] = {
        {"--data", OPT_STR, &o.data, 0, 0, NULL,
         "MNIST folder, or a folder of PNG images (docs/datasets.md); required", NULL},
        {"--out", OPT_STR, &o.out, 0, 0, NULL, "run folder to write (required)", NULL},
        {"--channels", OPT_I64, &o.channels, 0, 3, NULL,
         "PNG folder: read as 1 (grey) or 3 (RGB) channels (0: as the first image is)", NULL},
        {"--size", OPT_I64, &o.size, 0, 4096, NULL,
         "PNG folder: centre-crop every image to SIZE x SIZE (0: all must be one size)", NULL},
        {"--preset", OPT_CHOICE, &preset_dummy, 0, 0, cli_preset_names,
         "one of the report's runs, or fast (a small UNet made to draw digits within minutes on a CPU; docs/fast-preset.md)",
         NULL},
        {"--decoder", OPT_ENUM, &m.decoder, CD_ENUM_DECODER_KIND, 0, NULL, "decoder network", NULL},
        {"--degradation", OPT_ENUM, &m.degradation, CD_ENUM_DEGRADATION_KIND, 0, NULL,
         "degradation operator", NULL},
        {"--schedule", OPT_CHOICE, &m.schedule, 0, 0, cli_schedule_names, "beta schedule", NULL},
        {"--T", OPT_I64, &m.T, 1, 100000, NULL, "diffusion steps (1000)", NULL},
        {"--beta", OPT_F64, &m.beta, 1e-12, 1e6, NULL, "constant schedule's beta (0.001)", NULL},
        {"--beta-min", OPT_F64, &m.beta_min, 1e-12, 1, NULL, "linear schedule start (1e-4)", NULL},
        {"--beta-max", OPT_F64, &m.beta_max, 1e-12, 1, NULL, "linear schedule end (0.02)", NULL},
        {"--cosine-s", OPT_F64, &m.cosine_s, 0, 1, NULL, "cosine schedule offset (0.008)", NULL},
        {"--beta-clip", OPT_F64, &m.beta_clip, 1e-12, 1, NULL, "cosine schedule clip (0.999)",
         NULL},
        {"--kernel", OPT_I64, &m.kernel, 1, 63, NULL, "blur kernel size, odd (11)", NULL},
        {"--padding", OPT_ENUM, &m.padding, CD_ENUM_PADDING, 0, NULL, "blur padding", NULL},
        {"--edge-width", OPT_F64, &m.edge_width, 1e-6, 1e6, NULL, "mask edge width in pixels (2)",
         NULL},
        {"--t-max", OPT_I64, &m.t_max, 0, 100000, NULL, "draw t from 1..t-max (0: T)", NULL},
        {"--t-per-batch", OPT_FLAG, &m.t_per_batch, 0, 0, NULL, "one t per batch", NULL},
        {"--prediction", OPT_ENUM, &m.prediction, CD_ENUM_PREDICTION, 0, NULL,
         "what the decoder learns to output under noise (noise)", NULL},
        {"--cnn-hidden", OPT_TIMES, &m.cnn_hidden, 1, 4096, NULL,
         "CNN hidden channels (16,32,32,16)", NULL},
        {"--unet-dim", OPT_I64, &m.unet_dim, 2, 4096, NULL, "UNet base width, even (32)", NULL},
        {"--conditional", OPT_FLAG, &m.conditional, 0, 0, NULL,
         "class-conditional: a label embedding for the data's classes (fast: on when the data "
         "has classes)",
         NULL},
        {"--unconditional", OPT_FLAG, &m.unconditional, 0, 0, NULL,
         "no label embedding, even with the fast preset", NULL},
        {"--label-dropout", OPT_F64, &m.label_dropout, 0, 1, NULL,
         "rate of training labels replaced by 'no class' (0.1)", NULL},
        {"--unet-mults", OPT_TIMES, &m.unet_mults, 1, 64, NULL,
         "UNet width multipliers per level (1,2,4)", NULL},
        {"--unet-heads", OPT_I64, &m.unet_heads, 1, 64, NULL, "UNet attention heads (4)", NULL},
        {"--unet-head-dim", OPT_I64, &m.unet_head_dim, 1, 1024, NULL,
         "UNet attention head width (32)", NULL},
        {"--epochs", OPT_I64, &o.epochs, 1, MAX_EPOCHS, NULL, "total epochs (5)", NULL},
        {"--batch", OPT_I64, &o.batch, 1, 65536, NULL, "batch size (128)", NULL},
        {"--lr", OPT_F64, &o.lr, 1e-12, 10, NULL, "Adam learning rate (2e-4)", NULL},
        {"--adam-beta2", OPT_F64, &o.beta2, 0, 0.999999, NULL, "Adam's second-moment decay (0.999)",
         NULL},
        {"--val-fraction", OPT_F64, &o.val_fraction, 0, 0.99, NULL,
         "validation share (0.2); 0: none, best.cdm then keeps the lowest training loss", NULL},
        {"--seed", OPT_I64, &o.seed, 0, (double)INT64_MAX, NULL,
         "seed of split, weights and noise (42)", NULL},
        {"--threads", OPT_I64, &o.threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        {"--train-limit", OPT_I64, &o.train_limit, 1, (double)INT64_MAX, NULL,
         "use the first N training images", NULL},
        {"--val-limit", OPT_I64, &o.val_limit, 1, (double)INT64_MAX, NULL,
         "validate on the first N validation images", NULL},
        {"--ema", OPT_F64, &o.ema, 0, 0.999999, NULL,
         "weight EMA decay (0: off; grids then use the EMA)", NULL},
        {"--clip-norm", OPT_F64, &o.clip, 0, 1e12, NULL, "gradient norm clip (0: off)", NULL},
        {"--lr-warmup", OPT_I64, &o.lr_warmup, 0, 1e9, NULL,
         "steps of a linear learning-rate ramp (0: off)", NULL},
        {"--ema-warmup", OPT_FLAG, &o.ema_warmup, 0, 0, NULL,
         "EMA decay min(d, (1+t)/(10+t)) at step t", NULL},
        {"--lr-decay", OPT_FLAG, &o.lr_decay, 0, 0, NULL,
         "learning rate down to 0 along half a cosine by the last epoch's end", NULL},
        {"--resume", OPT_FLAG, &o.resume, 0, 0, NULL, "continue RUN/last.cdm", NULL},
        {"--sample-epochs", OPT_TIMES, &o.sample_epochs, 1, MAX_EPOCHS, NULL,
         "epochs with sample grids (5,15,30,45 and the last)", NULL},
        {"--n-samples", OPT_I64, &o.n_samples, 1, 4096, NULL,
         "images per sample grid (64; a class-conditional model: 8 per class)", NULL},
        {"--grid-sampler", OPT_CHOICE, &o.grid_sampler, 0, 0, cli_sampler_names,
         "sampler for the grids", NULL},
        {"--grid-steps", OPT_I64, &o.grid_steps, 0, 100000, NULL,
         "DDIM steps for the grids (0: 50, or T if smaller)", NULL},
        {"--grid-eta", OPT_F64, &o.grid_eta, 0, 1, NULL, "DDIM eta for the grids (1)", NULL},
        {"--grid-no-clip", OPT_FLAG, &grid_no_clip, 0, 0, NULL,
         "DDIM grids: do not clip x0-hat to [-0.5, 0.5]", NULL},
        {"--grid-clip", OPT_FLAG, &o.grid_clip, 0, 0, NULL, "(the default; accepted, does nothing)",
         NULL},
        {"--restore-times", OPT_TIMES, &o.restore_times, 0, 100000, NULL,
         "snapshot times of the restorations (T/10,T/2,T)", &o.times_given},
        {"--bucket", OPT_I64, &o.bucket, 0, 1e15, NULL,
         "under mpirun: floats per gradient sum begun during backward (0: one sum after it; "
         "262144)",
         NULL},
        {"--fixed-order", OPT_FLAG, &o.fixed_order, 0, 0, NULL,
         "under mpirun: sum gradients in rank order, the same bits on every run", NULL},
    };
    /* The decoder's and trainer's integer settings take the library's bounds. */
    static const struct {
        const char *flag;
        cli_lib_object object;
        int key;
    } lib[] = {
        {"--cnn-hidden", CLI_LIB_DECODER, CD_DECODER_OPT_HIDDEN},
        {"--unet-dim", CLI_LIB_DECODER, CD_DECODER_OPT_DIM},
        {"--unet-mults", CLI_LIB_DECODER, CD_DECODER_OPT_DIM_MULTS},
        {"--unet-heads", CLI_LIB_DECODER, CD_DECODER_OPT_HEADS},
        {"--unet-head-dim", CLI_LIB_DECODER, CD_DECODER_OPT_HEAD_DIM},
        {"--t-max", CLI_LIB_TRAINER, CD_TRAINER_OPT_T_MAX},
        {"--batch", CLI_LIB_TRAINER, CD_TRAINER_OPT_BATCH},
        {"--lr-warmup", CLI_LIB_TRAINER, CD_TRAINER_OPT_LR_WARMUP},
    };
    for (size_t k = 0; k < sizeof lib / sizeof lib[0]; k++)
        cli_library_bounds(opts, (int)(sizeof opts / sizeof opts[0]), lib[k].flag, lib[k].object,
                           lib[k].key);
    const cli_command cmd = {"train",
                             "--data DIR --out RUN [options]",
                             "Train a decoder to undo a degradation, with a train/validation "
                             "split, and\nwrite checkpoints, losses, a loss plot and sample "
                             "grids into RUN.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    /* Which options were given: --resume keeps the run's own settings for
     * the others. */
    bool seen[sizeof opts / sizeof opts[0]] = {false};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        if (!opts[k].seen) opts[k].seen = &seen[k];
    o.cmd = &cmd;
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!o.data && !o.resume) return cli_usage("train", "--data DIR is required");
    if (!o.out) return cli_usage("train", "--out RUN is required");
    if (grid_no_clip) o.grid_clip = false;
    if (m.unconditional && train_option_given(&o, "--conditional"))
        return cli_usage("train", "--conditional and --unconditional exclude each other");
    if (m.unconditional) m.conditional = m.classes_if_any = false;
    if (train_option_given(&o, "--conditional")) m.classes_if_any = false;
    const int bad = cli_model_check(&m, "train");
    if (bad) return bad;
    if (cli_check_only) return CLI_OK;
    if (cli_mpi_begin() != CLI_OK) return CLI_FAIL;
    const int result = run(&o, &m);
    /* A failure on one rank would leave the others waiting for it. */
    if (result != CLI_OK && result != CLI_INTERRUPTED) cli_mpi_abort(result);
    cli_mpi_end();
    return result;
}
