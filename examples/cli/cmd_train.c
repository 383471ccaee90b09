/*
 * cmd_train.c - colddiff train: build a model from a preset or flags, run
 * cd_trainer_fit over MNIST, and write RUN/{config.txt, losses.csv,
 * loss.svg, best.cdm, last.cdm} plus sample grids at chosen epochs. A
 * progress bar on a terminal (plain lines otherwise) polls the trainer
 * from a second thread; Ctrl-C asks the fit to stop, which saves last.cdm.
 */
#include "cli_gen.h"
#include "cli_model.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EPOCHS 100000

typedef struct {
    const char *data, *out;
    int64_t epochs, batch, threads, train_limit, n_samples, grid_steps;
    double lr, val_fraction, ema, clip, grid_eta;
    int64_t seed;
    bool resume, times_given, grid_clip;
    cli_times sample_epochs, restore_times;
    int grid_sampler;
} train_opts;

typedef struct {
    const train_opts *o;
    cd_dataset *ds;
    double *epoch, *train, *val; /* the loss curve so far */
    int64_t n;
    bool tty;
} run_state;

static cd_trainer *volatile g_trainer; /* for the Ctrl-C handler */

static void on_sigint(int sig)
{
    (void)sig;
    if (g_trainer) cd_trainer_request_stop(g_trainer);
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills at once */
}

/* ---- the loss curve -------------------------------------------------------- */

static int write_curve(run_state *r)
{
    char path[4096];
    FILE *f = fopen(cli_join(path, sizeof path, r->o->out, "losses.csv.tmp"), "w");
    if (!f) return -1;
    fprintf(f, "epoch,train_loss,val_loss\n");
    for (int64_t i = 0; i < r->n; i++)
        fprintf(f, "%.0f,%.9g,%.9g\n", r->epoch[i], r->train[i], r->val[i]);
    char final[4096];
    if (fclose(f) != 0 || rename(path, cli_join(final, sizeof final, r->o->out, "losses.csv")))
        return -1;
    const cli_series s[2] = {{"train", "#1f77b4", r->epoch, r->train, r->n},
                             {"validation", "#d62728", r->epoch, r->val, r->n}};
    return cli_write_svg_plot(cli_join(path, sizeof path, r->o->out, "loss.svg"), "Loss",
                              "epoch", "loss", s, 2, true);
}

/* Rows of an earlier losses.csv up to epoch `upto` (a resumed run). */
static void read_curve(run_state *r, int64_t upto)
{
    char path[4096], line[256];
    FILE *f = fopen(cli_join(path, sizeof path, r->o->out, "losses.csv"), "r");
    if (!f) return;
    while (fgets(line, sizeof line, f) && r->n < MAX_EPOCHS) {
        double e, t, v;
        if (sscanf(line, "%lf,%lf,%lf", &e, &t, &v) == 3 && e <= (double)upto) {
            r->epoch[r->n] = e, r->train[r->n] = t, r->val[r->n] = v;
            r->n++;
        }
    }
    fclose(f);
}

/* ---- per-epoch work ---------------------------------------------------------- */

static bool wanted(const cli_times *t, int64_t epoch, int64_t last)
{
    if (epoch == last) return true;
    for (int64_t i = 0; i < t->n; i++)
        if (t->v[i] == epoch) return true;
    return false;
}

/* Copy the decoder's weights to or from one flat buffer. */
static void copy_weights(cd_params *p, float *flat, bool out)
{
    for (int64_t i = 0, at = 0; i < cd_params_count(p); i++) {
        const size_t n = (size_t)cd_params_numel_at(p, i);
        if (out) memcpy(flat + at, cd_params_data(p, i), n * sizeof *flat);
        else memcpy(cd_params_data(p, i), flat + at, n * sizeof *flat);
        at += (int64_t)n;
    }
}

/* Grids show the EMA weights when the run keeps them, as `colddiff sample
 * --ema` would: returns the raw weights to put back afterwards, or NULL
 * (no EMA, or no memory to keep them) to sample the raw weights. */
static float *ema_in(cd_trainer *tr)
{
    double decay = 0.0;
    if (cd_trainer_get(tr, CD_TRAINER_EMA_DECAY, &decay) != CD_OK || decay <= 0.0) return NULL;
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    float *raw = malloc((size_t)cd_params_numel(p) * sizeof *raw);
    if (!raw) return NULL;
    copy_weights(p, raw, true);
    if (cd_trainer_copy_ema(tr) == CD_OK) return raw;
    free(raw);
    return NULL;
}

static void ema_out(cd_trainer *tr, float *raw)
{
    if (!raw) return;
    copy_weights(cd_decoder_params(cd_trainer_decoder(tr)), raw, false);
    free(raw);
}

static cd_status on_epoch(void *user, cd_trainer *tr, int64_t epoch, double train, double val)
{
    run_state *r = user;
    if (r->n < MAX_EPOCHS) {
        r->epoch[r->n] = (double)epoch, r->train[r->n] = train, r->val[r->n] = val;
        r->n++;
    }
    if (r->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "epoch %lld/%lld: train loss %.5f, validation loss %.5f\n",
            (long long)epoch, (long long)r->o->epochs, train, val);
    if (write_curve(r) != 0) fprintf(stderr, "colddiff: warning: could not write losses.csv\n");
    if (!wanted(&r->o->sample_epochs, epoch, r->o->epochs)) return CD_OK;
    char name[64], path[4096];
    const cli_sampling smp = {r->o->grid_sampler, r->o->grid_steps, r->o->grid_eta,
                              (uint64_t)r->o->seed + (uint64_t)epoch, r->o->grid_clip, false};
    snprintf(name, sizeof name, "samples_epoch%03lld.png", (long long)epoch);
    float *raw = ema_in(tr);
    cd_status st = cli_sample_grid(tr, &smp, r->o->n_samples, 8, cli_join(path, sizeof path,
                                                                        r->o->out, name));
    if (st != CD_OK) {
        ema_out(tr, raw);
        return st;
    }
    snprintf(name, sizeof name, "restore_epoch%03lld.png", (long long)epoch);
    /* By default the report's three snapshots: early, halfway and T. */
    const int64_t T = cd_degradation_T(cd_trainer_degradation(tr));
    cli_times times = r->o->times_given ? r->o->restore_times : cli_default_times(T);
    for (int64_t i = 0; i < times.n; i++)
        if (times.v[i] > T) times.v[i] = T;
    st = cli_restore_figure(tr, &smp, r->ds, CD_SPLIT_VAL, 8, &times,
                            cli_join(path, sizeof path, r->o->out, name));
    ema_out(tr, raw);
    if (st == CD_OK) fprintf(stderr, "  wrote samples and restorations for epoch %lld\n",
                             (long long)epoch);
    return st;
}

/* ---- the progress bar ------------------------------------------------------- */

typedef struct {
    cd_trainer *tr;
    volatile int done;
} bar_state;

static void *draw_bar(void *arg)
{
    bar_state *b = arg;
    while (!b->done) {
        double v[10] = {0};
        for (int k = 0; k < 10; k++) cd_trainer_progress(b->tr, (cd_progress_key)k, &v[k]);
        if (v[CD_PROGRESS_RUNNING] != 0.0 && v[CD_PROGRESS_BATCHES] > 0) {
            const double frac = v[CD_PROGRESS_BATCH] / v[CD_PROGRESS_BATCHES];
            char bar[31];
            for (int i = 0; i < 30; i++) bar[i] = i < (int)(frac * 30) ? '#' : '.';
            bar[30] = '\0';
            const double eta = v[CD_PROGRESS_ETA_SEC];
            fprintf(stderr, "\r\033[Kepoch %.0f/%.0f [%s] %3.0f%% ", v[CD_PROGRESS_EPOCH] + 1,
                    v[CD_PROGRESS_EPOCHS], bar, 100 * frac);
            /* The loss is NaN until an epoch's first batch is done. */
            if (isfinite(v[CD_PROGRESS_TRAIN_LOSS]))
                fprintf(stderr, "loss %.5f  ", v[CD_PROGRESS_TRAIN_LOSS]);
            fprintf(stderr, "%.0f img/s  ETA ", v[CD_PROGRESS_IMAGES_PER_SEC]);
            if (isfinite(eta)) fprintf(stderr, "%dm%02ds", (int)(eta / 60), (int)fmod(eta, 60));
            else fprintf(stderr, "?");
        }
        struct timespec ts = {0, 250000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- options ------------------------------------------------------------------ */

/* config.txt holds the run's data options, which --resume reads back so
 * the split and the batches are the same. */
static void write_config(const train_opts *o, const cli_model *m)
{
    char path[4096], final[4096];
    FILE *f = fopen(cli_join(path, sizeof path, o->out, "config.txt.tmp"), "w");
    if (!f) return;
    fprintf(f, "# colddiff train configuration (libcolddiff %s)\n", cd_version_string());
    fprintf(f, "data = %s\nseed = %lld\nval_fraction = %.17g\ntrain_limit = %lld\n"
            "epochs = %lld\nbatch = %lld\nlr = %.17g\nema = %.17g\nclip_norm = %.17g\n",
            o->data, (long long)o->seed, o->val_fraction, (long long)o->train_limit,
            (long long)o->epochs, (long long)o->batch, o->lr, o->ema, o->clip);
    cli_model_write(m, f);
    if (fclose(f) == 0) rename(path, cli_join(final, sizeof final, o->out, "config.txt"));
}

static void read_config(train_opts *o)
{
    char path[4096], line[512];
    FILE *f = fopen(cli_join(path, sizeof path, o->out, "config.txt"), "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        long long i;
        double d;
        if (sscanf(line, "seed = %lld", &i) == 1) o->seed = i;
        else if (sscanf(line, "val_fraction = %lf", &d) == 1) o->val_fraction = d;
        else if (sscanf(line, "train_limit = %lld", &i) == 1) o->train_limit = i;
    }
    fclose(f);
}

static int setup_trainer(const train_opts *o, cli_model *m, cd_dataset *ds, cd_rng *rng,
                         cd_trainer **tr)
{
    char last[4096];
    cli_join(last, sizeof last, o->out, "last.cdm");
    if (o->resume && access(last, R_OK) == 0) {
        if (cd_trainer_load(tr, last, rng) != CD_OK) return cli_fail("resuming");
        double e = 0;
        cd_trainer_progress(*tr, CD_PROGRESS_EPOCH, &e);
        fprintf(stderr, "colddiff: resuming %s after epoch %.0f\n", last, e);
        return CLI_OK;
    }
    if (o->resume) fprintf(stderr, "colddiff: note: no %s yet; starting afresh\n", last);
    int rc = cli_model_build(m, ds, rng, tr);
    if (rc != CLI_OK) return rc;
    if (cd_trainer_set(*tr, CD_TRAINER_LR, o->lr) != CD_OK ||
        cd_trainer_set(*tr, CD_TRAINER_BATCH, (double)o->batch) != CD_OK ||
        cd_trainer_set(*tr, CD_TRAINER_EMA_DECAY, o->ema) != CD_OK ||
        cd_trainer_set(*tr, CD_TRAINER_CLIP_NORM, o->clip) != CD_OK)
        return cli_fail("the training options");
    write_config(o, m);
    return CLI_OK;
}

static int run(train_opts *o, cli_model *m)
{
    if (cli_mkdirs(o->out) != 0) {
        fprintf(stderr, "colddiff: cannot create the folder %s\n", o->out);
        return CLI_FAIL;
    }
    if (o->resume) read_config(o);
    if (o->threads > 0 && cd_set_num_threads((int32_t)o->threads) != CD_OK)
        return cli_fail("--threads");
    cd_dataset *ds = NULL;
    cd_rng *rng = NULL;
    cd_trainer *tr = NULL;
    run_state r = {.o = o, .tty = isatty(STDERR_FILENO)};
    r.epoch = calloc(3 * MAX_EPOCHS, sizeof(double));
    r.train = r.epoch + MAX_EPOCHS, r.val = r.train + MAX_EPOCHS;
    int rc = CLI_FAIL;
    if (!r.epoch) fprintf(stderr, "colddiff: out of memory\n");
    else if (cli_load_data(&ds, o->data, o->val_fraction, (uint64_t)o->seed) != CD_OK)
        cli_fail("loading the data");
    else if (o->train_limit > 0 && cd_dataset_truncate(ds, CD_SPLIT_TRAIN, o->train_limit))
        cli_fail("--train-limit");
    else if (cd_rng_create(&rng, (uint64_t)o->seed) != CD_OK)
        cli_fail("the generator");
    else
        rc = setup_trainer(o, m, ds, rng, &tr);
    if (rc != CLI_OK) goto done;
    r.ds = ds;
    double done_epochs = 0;
    cd_trainer_progress(tr, CD_PROGRESS_EPOCH, &done_epochs);
    read_curve(&r, (int64_t)done_epochs);
    char best[4096], last[4096];
    cli_join(best, sizeof best, o->out, "best.cdm");
    cli_join(last, sizeof last, o->out, "last.cdm");
    fprintf(stderr, "colddiff: training on %lld images (validation %lld) for %lld epochs, "
            "%d threads; writing %s\n", (long long)cd_dataset_count(ds, CD_SPLIT_TRAIN),
            (long long)cd_dataset_count(ds, CD_SPLIT_VAL), (long long)o->epochs,
            (int)cd_get_num_threads(), o->out);
    bar_state bar = {tr, 0};
    pthread_t th;
    const bool drawing = r.tty && pthread_create(&th, NULL, draw_bar, &bar) == 0;
    g_trainer = tr;
    signal(SIGINT, on_sigint);
    const cd_status st = cd_trainer_fit(tr, ds, o->epochs, best, last, rng, on_epoch, &r);
    signal(SIGINT, SIG_DFL);
    g_trainer = NULL;
    if (drawing) {
        bar.done = 1;
        pthread_join(th, NULL);
        fprintf(stderr, "\r\033[K");
    }
    if (st == CD_ERR_CANCELLED) {
        fprintf(stderr, "colddiff: stopped; saved %s (continue with --resume)\n", last);
        rc = CLI_INTERRUPTED;
    } else if (st != CD_OK) {
        rc = cli_fail("training");
    } else {
        printf("colddiff: done; best model %s, last %s, losses %s/losses.csv\n", best, last,
               o->out);
    }
done:
    cd_trainer_free(tr);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    free(r.epoch);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    cli_model m;
    cli_model_from_preset_flag(&m, argc, argv);
    train_opts o = {.epochs = 5, .batch = 128, .lr = 2e-4, .val_fraction = 0.2, .seed = 42,
                    .n_samples = 64, .sample_epochs = {4, {5, 15, 30, 45}},
                    .restore_times = {0, {0}}};
    int preset_dummy = 0;
    const cli_opt opts[] = {
        {"--data", OPT_STR, &o.data, 0, 0, NULL, "MNIST folder (required; the tests/data slice works)", NULL},
        {"--out", OPT_STR, &o.out, 0, 0, NULL, "run folder to write (required)", NULL},
        {"--preset", OPT_CHOICE, &preset_dummy, 0, 0, cli_preset_names, "one of the report's runs", NULL},
        {"--decoder", OPT_CHOICE, &m.decoder, 0, 0, cli_decoder_names, "decoder network", NULL},
        {"--degradation", OPT_CHOICE, &m.degradation, 0, 0, cli_degradation_names, "degradation operator", NULL},
        {"--schedule", OPT_CHOICE, &m.schedule, 0, 0, cli_schedule_names, "beta schedule", NULL},
        {"--T", OPT_I64, &m.T, 1, 100000, NULL, "diffusion steps (1000)", NULL},
        {"--beta", OPT_F64, &m.beta, 1e-12, 1e6, NULL, "constant schedule's beta (0.001)", NULL},
        {"--beta-min", OPT_F64, &m.beta_min, 1e-12, 1, NULL, "linear schedule start (1e-4)", NULL},
        {"--beta-max", OPT_F64, &m.beta_max, 1e-12, 1, NULL, "linear schedule end (0.02)", NULL},
        {"--cosine-s", OPT_F64, &m.cosine_s, 0, 1, NULL, "cosine schedule offset (0.008)", NULL},
        {"--beta-clip", OPT_F64, &m.beta_clip, 1e-12, 1, NULL, "cosine schedule clip (0.999)", NULL},
        {"--kernel", OPT_I64, &m.kernel, 1, 63, NULL, "blur kernel size, odd (11)", NULL},
        {"--padding", OPT_CHOICE, &m.padding, 0, 0, cli_padding_names, "blur padding", NULL},
        {"--edge-width", OPT_F64, &m.edge_width, 1e-6, 1e6, NULL, "mask edge width in pixels (2)", NULL},
        {"--t-max", OPT_I64, &m.t_max, 0, 100000, NULL, "draw t from 1..t-max (0: T)", NULL},
        {"--t-per-batch", OPT_FLAG, &m.t_per_batch, 0, 0, NULL, "one t per batch", NULL},
        {"--cnn-hidden", OPT_TIMES, &m.cnn_hidden, 1, 4096, NULL, "CNN hidden channels (16,32,32,16)", NULL},
        {"--unet-dim", OPT_I64, &m.unet_dim, 2, 4096, NULL, "UNet base width, even (32)", NULL},
        {"--epochs", OPT_I64, &o.epochs, 1, MAX_EPOCHS, NULL, "total epochs (5)", NULL},
        {"--batch", OPT_I64, &o.batch, 1, 65536, NULL, "batch size (128)", NULL},
        {"--lr", OPT_F64, &o.lr, 1e-12, 10, NULL, "Adam learning rate (2e-4)", NULL},
        {"--val-fraction", OPT_F64, &o.val_fraction, 0, 0.99, NULL, "validation share (0.2)", NULL},
        {"--seed", OPT_I64, &o.seed, 0, (double)INT64_MAX, NULL, "seed of split, weights and noise (42)", NULL},
        {"--threads", OPT_I64, &o.threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        {"--train-limit", OPT_I64, &o.train_limit, 1, (double)INT64_MAX, NULL, "use the first N training images", NULL},
        {"--ema", OPT_F64, &o.ema, 0, 0.999999, NULL, "weight EMA decay (0: off; grids then use the EMA)", NULL},
        {"--clip-norm", OPT_F64, &o.clip, 0, 1e12, NULL, "gradient norm clip (0: off)", NULL},
        {"--resume", OPT_FLAG, &o.resume, 0, 0, NULL, "continue RUN/last.cdm", NULL},
        {"--sample-epochs", OPT_TIMES, &o.sample_epochs, 1, MAX_EPOCHS, NULL, "epochs with sample grids (5,15,30,45 and the last)", NULL},
        {"--n-samples", OPT_I64, &o.n_samples, 1, 4096, NULL, "images per sample grid (64)", NULL},
        {"--grid-sampler", OPT_CHOICE, &o.grid_sampler, 0, 0, cli_sampler_names, "sampler for the grids", NULL},
        {"--grid-steps", OPT_I64, &o.grid_steps, 0, 100000, NULL, "DDIM steps for the grids (0: T)", NULL},
        {"--grid-eta", OPT_F64, &o.grid_eta, 0, 1, NULL, "DDIM eta for the grids (0)", NULL},
        {"--grid-clip", OPT_FLAG, &o.grid_clip, 0, 0, NULL, "DDIM grids: clip x0-hat to [-0.5, 0.5]", NULL},
        {"--restore-times", OPT_TIMES, &o.restore_times, 0, 100000, NULL, "snapshot times of the restorations (T/10,T/2,T)", &o.times_given},
    };
    const cli_command cmd = {"train", "--data DIR --out RUN [options]",
                             "Train a decoder to undo a degradation, with a train/validation "
                             "split, and\nwrite checkpoints, losses, a loss plot and sample "
                             "grids into RUN.",
                             opts, (int)(sizeof opts / sizeof opts[0]), NULL, NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!o.data) return cli_usage("train", "--data DIR is required");
    if (!o.out) return cli_usage("train", "--out RUN is required");
    if (m.t_max > m.T) return cli_usage("train", "--t-max %lld exceeds --T %lld",
                                        (long long)m.t_max, (long long)m.T);
    if (cli_check_only) return CLI_OK;
    return run(&o, &m);
}
