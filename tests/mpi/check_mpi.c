/*
 * check_mpi.c - libcolddiff-mpi under mpiexec with two or more ranks: every
 * rank holds the same bits after every step; K ranks train as one process
 * does at the same global batch (CNN and UNet, noise and blur, with and
 * without classes, batches smaller than the world); the fixed-order sum
 * repeats bit for bit whatever the bucket size; cd_trainer_fit with a
 * validation split, a stop asked on one rank only, and its resumption;
 * one rank attached; the argument checks.
 *
 * Check runs without fork (forking an MPI process is unsafe), so a failed
 * assertion jumps out of its test on the rank where it failed. Every
 * assertion is therefore agreed first (ASSERT_ALL): the ranks exchange
 * their verdicts, so all of them fail the test together and stay in step
 * for the next one. The exit status is non-zero when any rank failed.
 */
#include <mpi.h>

#include "colddiff_mpi.h"
#include "test_util.h"

#include <math.h>
#include <time.h>

static int g_rank, g_size;

/* Seconds a rank waits at a check for the others. They do the same work
 * between checks, so only a rank stuck in a collective that a failed rank
 * never joined is that late: then the job is aborted, rather than left to
 * hang until the watchdog. */
#define AGREE_SECONDS 60

/* Every rank gets 1 when cond holds on all of them; why says what failed
 * here, for the message if the job has to be aborted. */
static int all_ranks(int cond, const char *why)
{
    int v = cond ? 1 : 0, done = 0;
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    const double t0 = MPI_Wtime();
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return v;
        if (MPI_Wtime() - t0 > AGREE_SECONDS) break;
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
    fprintf(stderr,
            "rank %d: the other ranks did not reach a check within %d s (here: %s); aborting\n",
            g_rank, AGREE_SECONDS, cond ? "it held" : why);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 0;
}

/* Assert cond on every rank: the ranks agree first, so that all of them
 * fail the test together; the failing rank's message says why. */
#define ASSERT_ALL(cond, ...)                                                           \
    do {                                                                                \
        char why_[600] = "failed on another rank";                                      \
        const int ok_ = (cond);                                                         \
        if (!ok_) snprintf(why_, sizeof why_, __VA_ARGS__);                             \
        ck_assert_msg(all_ranks(ok_, why_), "rank %d of %d: %s", g_rank, g_size, why_); \
    } while (0)

/* A library call succeeds on every rank. */
#define OK_ALL(expr)                                                                          \
    do {                                                                                      \
        const cd_status s_ = (expr);                                                          \
        ASSERT_ALL(s_ == CD_OK, "%s: %s (%s)", #expr, cd_status_string(s_), cd_last_error()); \
    } while (0)

/* ---- models ------------------------------------------------------------------ */

/* What a test trains: the decoder, its class count, the degradation. */
typedef struct {
    cd_decoder_kind kind;
    int64_t classes; /* 0: unconditional */
    int blur;        /* 0: noise (T = 1000), 1: blur (T = 20) */
    const char *name;
} model_spec;

static const model_spec SPECS[] = {
    {CD_DECODER_CNN, 0, 0, "CNN, noise"},
    {CD_DECODER_UNET, 10, 0, "UNet with classes, noise"},
    {CD_DECODER_CNN, 10, 1, "CNN with classes, blur"},
    {CD_DECODER_UNET, 0, 1, "UNet, blur"},
    {CD_DECODER_CNN, 0, 1, "CNN, blur"},
};
#define N_SPECS 4 /* the four above that the equivalence tests cover */

/* Weights within this relative distance (norm of the difference over the
 * norm) count as the same training: K ranks add the gradient in another
 * order than one process, and Adam carries the rounding on. */
#define WEIGHT_TOL 1e-5
#define LOSS_TOL 1e-5

/* A small decoder of spec at 28 x 28 (seed 7 on every rank) and its
 * trainer, with a learning rate high enough for four steps to move the
 * weights, and the given gradient bucket. */
static cd_trainer *make_trainer(const model_spec *spec, int64_t bucket)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    cd_rng *rng = NULL;
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, spec->kind));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, spec->classes));
    if (spec->kind == CD_DECODER_CNN) {
        CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){4, 6}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 16));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 1));
    } else {
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 1));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 8));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, 7));
    CD_ASSERT_OK(cd_decoder_create(&dec, cfg, rng));
    if (spec->blur) {
        CD_ASSERT_OK(cd_schedule_create_constant(&s, 20, 1.0));
        CD_ASSERT_OK(cd_degradation_create_blur(&deg, s, 11, CD_PADDING_REFLECT));
    } else {
        CD_ASSERT_OK(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02));
        CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    }
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3));
    /* Adam moves a weight by about lr whenever its gradient is well above
     * eps, even when that gradient is only rounding: the UNet's first block
     * has a bias and a time shift on one channel that its GroupNorm
     * removes, whose true gradient is zero. K ranks round differently
     * from one process, and with eps = 1e-8 those weights alone walk
     * 1e-5 apart in four steps; eps above the rounding keeps them still
     * in both, and is far below the real gradients. */
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EPS, 1e-6));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BUCKET, bucket));
    if (spec->classes > 0) CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, 0.3));
    cd_schedule_free(s);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return tr;
}

static cd_params *params_of(cd_trainer *tr) { return cd_decoder_params(cd_trainer_decoder(tr)); }

static int64_t weight_count(cd_trainer *tr) { return cd_params_numel(params_of(tr)); }

static const float *weights(cd_trainer *tr) { return cd_params_data(params_of(tr), -1); }

/* |a - b| / |b| over the flat parameter blocks, in double. */
static double relative_distance(cd_trainer *a, cd_trainer *b)
{
    const int64_t n = weight_count(b);
    const float *x = weights(a), *y = weights(b);
    double d = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        r += (double)y[i] * y[i];
    }
    return sqrt(d) / sqrt(r);
}

static int close_to(double a, double b, double tol)
{
    return fabs(a - b) <= tol * fmax(1.0, fabs(b));
}

/* Every rank holds the same weight bits: by cd_mpi_same_weights, and by
 * gathering the raw bytes of every rank and comparing them here. */
static void assert_ranks_identical(cd_mpi *m, cd_trainer *tr, const char *when)
{
    int32_t same = -1;
    OK_ALL(cd_mpi_same_weights(m, cd_trainer_decoder(tr), &same));
    ASSERT_ALL(same == 1, "%s: cd_mpi_same_weights says %d", when, (int)same);
    const int64_t n = weight_count(tr);
    const int bytes = (int)(n * (int64_t)sizeof(float));
    unsigned char *all = malloc((size_t)bytes * (size_t)g_size);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(MPI_Allgather(weights(tr), bytes, MPI_BYTE, all, bytes, MPI_BYTE,
                                   MPI_COMM_WORLD),
                     MPI_SUCCESS);
    int differ = -1;
    for (int r = 1; r < g_size && differ < 0; r++)
        if (memcmp(all, all + (size_t)r * (size_t)bytes, (size_t)bytes) != 0) differ = r;
    free(all);
    ASSERT_ALL(differ < 0, "%s: rank %d's weights differ from rank 0's", when, differ);
}

/* The same double on every rank, bit for bit. */
static void assert_same_value(double v, const char *what)
{
    double *all = malloc(sizeof(double) * (size_t)g_size);
    ck_assert_ptr_nonnull(all);
    MPI_Allgather(&v, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
    int differ = -1;
    for (int r = 1; r < g_size; r++)
        if (memcmp(&all[r], &all[0], sizeof v) != 0) differ = r;
    const double mine = v, first = all[0];
    free(all);
    ASSERT_ALL(differ < 0, "%s: %.17g here, %.17g on rank 0", what, mine, first);
}

/* ---- stepping ---------------------------------------------------------------- */

/* The global batch of step s: rows s * B ... of the train split, with
 * their labels. */
static void fill_batch(const cd_dataset *ds, int64_t s, cd_tensor *images, cd_tensor *labels)
{
    const int64_t B = cd_tensor_numel(images) / (28 * 28);
    const int64_t count = cd_dataset_count(ds, CD_SPLIT_TRAIN);
    int64_t got = 0;
    CD_ASSERT_OK(
        cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, (s * B) % (count - B), images, labels, &got));
    ck_assert_int_eq(got, B);
}

static void step(cd_trainer *tr, const cd_tensor *images, const cd_tensor *labels, cd_rng *rng,
                 double *loss)
{
    if (labels)
        OK_ALL(cd_trainer_step_labeled(tr, images, labels, rng, loss));
    else
        OK_ALL(cd_trainer_step(tr, images, rng, loss));
}

/* `steps` steps of global batch B: tr (attached to m) on every rank, and
 * ref (one process, or NULL) on the same batches with the same seed.
 * After each step the ranks hold the same bits and the same loss, which
 * matches ref's. */
static void train_steps(cd_mpi *m, cd_trainer *tr, cd_trainer *ref, const cd_dataset *ds, int64_t B,
                        int steps, int labeled, const char *name)
{
    cd_tensor *images = cd_test_tensor4(B, 1, 28, 28), *labels = NULL;
    if (labeled) CD_ASSERT_OK(cd_tensor_create(&labels, 1, (int64_t[]){B}));
    cd_rng *rng = NULL, *ref_rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    CD_ASSERT_OK(cd_rng_create(&ref_rng, 11));
    for (int s = 0; s < steps; s++) {
        char when[160];
        snprintf(when, sizeof when, "%s, batch %lld, after step %d", name, (long long)B, s + 1);
        fill_batch(ds, s, images, labels);
        double loss = NAN, ref_loss = NAN;
        step(tr, images, labels, rng, &loss);
        assert_ranks_identical(m, tr, when);
        assert_same_value(loss, when);
        if (ref) {
            step(ref, images, labels, ref_rng, &ref_loss);
            ASSERT_ALL(close_to(loss, ref_loss, LOSS_TOL), "%s: loss %.9g on %d ranks, %.9g in one",
                       when, loss, g_size, ref_loss);
        }
    }
    cd_rng_free(rng);
    cd_rng_free(ref_rng);
    cd_tensor_free(images);
    cd_tensor_free(labels);
}

/* The trained weights match the reference, and moved well away from the
 * initial ones (so that matching says something). */
static void assert_matches(const model_spec *spec, cd_trainer *tr, cd_trainer *ref,
                           const char *name)
{
    const double d = relative_distance(tr, ref);
    ASSERT_ALL(d <= WEIGHT_TOL,
               "%s: the weights on %d ranks are %.3g (relative) from one process's", name, g_size,
               d);
    ASSERT_ALL(cd_trainer_steps(tr) == cd_trainer_steps(ref), "%s: %lld steps against %lld", name,
               (long long)cd_trainer_steps(tr), (long long)cd_trainer_steps(ref));
    cd_trainer *fresh = make_trainer(spec, 0);
    const double moved = relative_distance(fresh, ref);
    ASSERT_ALL(moved > 100 * WEIGHT_TOL, "%s: training moved the weights only %.3g", name, moved);
    cd_test_trainer_free_all(fresh);
}

/* ---- the tests ------------------------------------------------------------------ */

/* Six steps on every rank in the default mode: the same bits after each,
 * the hook really used (the statistics count every gradient float and the
 * loss), and cd_mpi_same_weights sees a single flipped bit on one rank. */
START_TEST(ranks_hold_identical_weights)
{
    const model_spec *spec = &SPECS[_i];
    cd_dataset *ds = cd_test_load_slice(0);
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, 0));
    cd_trainer *tr = make_trainer(spec, 1000);
    OK_ALL(cd_mpi_attach(m, tr));
    int64_t rank = -1, world = -1;
    OK_ALL(cd_trainer_get_distributed(tr, &rank, &world));
    ASSERT_ALL(rank == g_rank && world == g_size, "attached as %lld of %lld", (long long)rank,
               (long long)world);
    assert_ranks_identical(m, tr, "before training");
    const int steps = 6;
    train_steps(m, tr, NULL, ds, 8, steps, spec->classes > 0, spec->name);

    double seconds = -1;
    int64_t sums = -1, floats = -1;
    OK_ALL(cd_mpi_stats(m, &seconds, &sums, &floats));
    const int64_t P = weight_count(tr);
    ASSERT_ALL(floats == steps * (P + 1),
               "%lld floats summed, expected %d x (%lld weights + the loss)", (long long)floats,
               steps, (long long)P);
    ASSERT_ALL(sums > 2 * steps && sums <= steps * (P + 1),
               "%lld sums in %d steps of buckets of 1000 floats over %lld weights", (long long)sums,
               steps, (long long)P);
    ASSERT_ALL(seconds >= 0 && seconds < 600, "%g seconds in the sums", seconds);

    /* The check itself: one bit of one weight on the last rank. */
    float *w = cd_params_data(params_of(tr), -1);
    uint32_t bits;
    memcpy(&bits, &w[P / 2], sizeof bits);
    bits ^= g_rank == g_size - 1 ? 1u : 0u;
    memcpy(&w[P / 2], &bits, sizeof bits);
    int32_t same = -1;
    OK_ALL(cd_mpi_same_weights(m, cd_trainer_decoder(tr), &same));
    ASSERT_ALL(same == 0, "one flipped bit on rank %d: cd_mpi_same_weights says %d", g_size - 1,
               (int)same);

    cd_test_trainer_free_all(tr);
    cd_mpi_free(m);
    cd_dataset_free(ds);
}
END_TEST

/* K ranks at global batch 8 (small buckets, so sums overlap backward)
 * against one process at batch 8 on the same batches and seed. */
START_TEST(ranks_train_as_one_process)
{
    const model_spec *spec = &SPECS[_i];
    cd_dataset *ds = cd_test_load_slice(0);
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, 0));
    cd_trainer *tr = make_trainer(spec, 700), *ref = make_trainer(spec, 700);
    OK_ALL(cd_mpi_attach(m, tr));
    train_steps(m, tr, ref, ds, 8, 4, spec->classes > 0, spec->name);
    assert_matches(spec, tr, ref, spec->name);
    cd_test_trainer_free_all(tr);
    cd_test_trainer_free_all(ref);
    cd_mpi_free(m);
    cd_dataset_free(ds);
}
END_TEST

/* Global batches that leave ranks without rows (1: only the last rank
 * has one; the others run backward on nothing) or that K does not divide
 * (K + 1), each against one process at that batch. An idle rank skips the
 * random draws of the rows it does not have; the batches of 1 use the
 * blur without classes, which draws only the times; the others draw noise
 * and label dropout too, on batches where every rank has rows. */
static const struct {
    int spec;
    int64_t batch; /* 0: K + 1 */
} SMALL_BATCHES[] = {{4, 1}, {3, 1}, {4, 0}, {1, 0}, {2, 0}};

START_TEST(batches_smaller_than_the_world)
{
    const model_spec *spec = &SPECS[SMALL_BATCHES[_i].spec];
    const int64_t B = SMALL_BATCHES[_i].batch > 0 ? SMALL_BATCHES[_i].batch : g_size + 1;
    cd_dataset *ds = cd_test_load_slice(0);
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, 0));
    cd_trainer *tr = make_trainer(spec, 0), *ref = make_trainer(spec, 0);
    OK_ALL(cd_mpi_attach(m, tr));
    train_steps(m, tr, ref, ds, B, 3, spec->classes > 0, spec->name);
    assert_matches(spec, tr, ref, spec->name);
    cd_test_trainer_free_all(tr);
    cd_test_trainer_free_all(ref);
    cd_mpi_free(m);
    cd_dataset_free(ds);
}
END_TEST

/* One run of four steps with the fixed-order sum and the given bucket;
 * its weights into out. */
static void fixed_order_run(const model_spec *spec, int64_t bucket, cd_trainer *ref, float *out,
                            int64_t *sums)
{
    cd_dataset *ds = cd_test_load_slice(0);
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, CD_MPI_FIXED_ORDER));
    cd_trainer *tr = make_trainer(spec, bucket);
    OK_ALL(cd_mpi_attach(m, tr));
    char name[120];
    snprintf(name, sizeof name, "%s, fixed order, bucket %lld", spec->name, (long long)bucket);
    train_steps(m, tr, ref, ds, 8, 4, spec->classes > 0, name);
    if (ref) assert_matches(spec, tr, ref, name);
    memcpy(out, weights(tr), (size_t)weight_count(tr) * sizeof(float));
    OK_ALL(cd_mpi_stats(m, NULL, sums, NULL));
    cd_test_trainer_free_all(tr);
    cd_mpi_free(m);
    cd_dataset_free(ds);
}

/* CD_MPI_FIXED_ORDER: it trains as one process; a second run gives the
 * same bits; so do one sum after backward (bucket 0) and many small
 * buckets overlapping backward. */
START_TEST(fixed_order_repeats_bit_for_bit)
{
    const model_spec *spec = &SPECS[_i == 0 ? 0 : 3];
    cd_trainer *ref = make_trainer(spec, 0);
    const int64_t P = weight_count(ref);
    float *first = malloc((size_t)P * sizeof(float)), *again = malloc((size_t)P * sizeof(float));
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(again);
    int64_t sums_default = 0, sums_again = 0, sums_one = 0, sums_small = 0;
    fixed_order_run(spec, 262144, ref, first, &sums_default);
    fixed_order_run(spec, 262144, NULL, again, &sums_again);
    ASSERT_ALL(memcmp(first, again, (size_t)P * sizeof(float)) == 0,
               "%s: two fixed-order runs differ", spec->name);
    fixed_order_run(spec, 0, NULL, again, &sums_one);
    ASSERT_ALL(memcmp(first, again, (size_t)P * sizeof(float)) == 0,
               "%s: bucket 0 gives other bits than the default bucket", spec->name);
    ASSERT_ALL(sums_one == 2 * 4,
               "bucket 0: %lld sums in 4 steps, expected a gradient and a loss "
               "sum per step",
               (long long)sums_one);
    fixed_order_run(spec, 300, NULL, again, &sums_small);
    ASSERT_ALL(memcmp(first, again, (size_t)P * sizeof(float)) == 0,
               "%s: buckets of 300 floats give other bits than the default bucket", spec->name);
    ASSERT_ALL(sums_small > 4 * 4, "buckets of 300 floats: only %lld sums in 4 steps",
               (long long)sums_small);
    free(first);
    free(again);
    cd_test_trainer_free_all(ref);
}
END_TEST

/* ---- cd_trainer_fit ---------------------------------------------------------- */

/* 60 training images (batches of 16: three and a partial one) and 30
 * validation images (batches of 12: 12, 12, 6). */
enum { FIT_TRAIN = 60, FIT_VAL = 30, FIT_BATCH = 16, FIT_VAL_BATCH = 12, FIT_BATCHES = 4 };

static cd_dataset *fit_data(void)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_TRAIN, FIT_TRAIN));
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_VAL, FIT_VAL));
    return ds;
}

static cd_trainer *fit_trainer(const model_spec *spec)
{
    cd_trainer *tr = make_trainer(spec, 500);
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, FIT_BATCH));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, FIT_VAL_BATCH));
    return tr;
}

/* What on_epoch saw; stop_rank asks for a stop on that rank only after
 * epoch stop_after. */
typedef struct {
    int epochs;
    double train[8], val[8];
    int stop_rank, stop_after;
} epoch_log;

static cd_status log_epoch(cd_trainer *tr, int64_t epoch, double train_loss, double val_loss,
                           void *user)
{
    epoch_log *log = user;
    if (log->epochs < 8) {
        log->train[log->epochs] = train_loss;
        log->val[log->epochs] = val_loss;
    }
    log->epochs++;
    if (g_rank == log->stop_rank && epoch == log->stop_after) cd_trainer_request_stop(tr);
    return CD_OK;
}

static void fit(cd_trainer *tr, cd_dataset *ds, int64_t epochs, cd_rng *rng, epoch_log *log,
                cd_status want)
{
    const cd_status st = cd_trainer_fit(tr, ds, epochs, NULL, NULL, rng, log_epoch, log);
    ASSERT_ALL(st == want, "cd_trainer_fit returned %s, expected %s (%s)", cd_status_string(st),
               cd_status_string(want), cd_last_error());
}

/* Two epochs with validation on K ranks and in one process: the same
 * epoch losses and weights; every other model with the fixed-order sum. */
START_TEST(fit_matches_one_process)
{
    const model_spec *spec = &SPECS[_i];
    cd_dataset *ds = fit_data(), *ref_ds = fit_data();
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, _i % 2 ? CD_MPI_FIXED_ORDER : 0));
    cd_trainer *tr = fit_trainer(spec), *ref = fit_trainer(spec);
    OK_ALL(cd_mpi_attach(m, tr));
    cd_rng *rng = NULL, *ref_rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_rng_create(&ref_rng, 5));
    epoch_log log = {.stop_rank = -1}, ref_log = {.stop_rank = -1};
    fit(tr, ds, 2, rng, &log, CD_OK);
    fit(ref, ref_ds, 2, ref_rng, &ref_log, CD_OK);
    ASSERT_ALL(log.epochs == 2 && ref_log.epochs == 2, "%d and %d epochs", log.epochs,
               ref_log.epochs);
    for (int e = 0; e < 2; e++) {
        assert_same_value(log.train[e], "the training loss");
        assert_same_value(log.val[e], "the validation loss");
        ASSERT_ALL(close_to(log.train[e], ref_log.train[e], LOSS_TOL),
                   "%s: epoch %d's training loss %.9g on %d ranks, %.9g in one", spec->name, e + 1,
                   log.train[e], g_size, ref_log.train[e]);
        ASSERT_ALL(isfinite(log.val[e]) && close_to(log.val[e], ref_log.val[e], LOSS_TOL),
                   "%s: epoch %d's validation loss %.9g on %d ranks, %.9g in one", spec->name,
                   e + 1, log.val[e], g_size, ref_log.val[e]);
    }
    ASSERT_ALL(cd_trainer_steps(tr) == 2 * FIT_BATCHES, "%lld steps",
               (long long)cd_trainer_steps(tr));
    assert_ranks_identical(m, tr, "after the fit");
    assert_matches(spec, tr, ref, spec->name);
    cd_rng_free(rng);
    cd_rng_free(ref_rng);
    cd_test_trainer_free_all(tr);
    cd_test_trainer_free_all(ref);
    cd_mpi_free(m);
    cd_dataset_free(ds);
    cd_dataset_free(ref_ds);
}
END_TEST

/* A stop asked on the last rank only stops every rank at the same step:
 * before the first batch (asked before the fit), and after an epoch
 * (asked by on_epoch). The fit resumed then ends as an uninterrupted one
 * process does. The second model runs with the fixed-order sum. */
START_TEST(stop_on_one_rank_stops_all)
{
    const model_spec *spec = &SPECS[_i == 0 ? 2 : 1];
    cd_dataset *ds = fit_data(), *ref_ds = fit_data();
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, _i == 0 ? 0 : CD_MPI_FIXED_ORDER));
    cd_trainer *tr = fit_trainer(spec), *ref = fit_trainer(spec);
    OK_ALL(cd_mpi_attach(m, tr));
    cd_rng *rng = NULL, *ref_rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_rng_create(&ref_rng, 5));
    epoch_log log = {.stop_rank = g_size - 1, .stop_after = 1}, ref_log = {.stop_rank = -1};

    if (g_rank == g_size - 1) cd_trainer_request_stop(tr);
    fit(tr, ds, 3, rng, &log, CD_ERR_CANCELLED);
    ASSERT_ALL(cd_trainer_steps(tr) == 0 && log.epochs == 0,
               "a stop before the fit: %lld steps, %d epochs", (long long)cd_trainer_steps(tr),
               log.epochs);

    fit(tr, ds, 3, rng, &log, CD_ERR_CANCELLED);
    assert_same_value((double)cd_trainer_steps(tr), "the steps when stopped");
    ASSERT_ALL(cd_trainer_steps(tr) == FIT_BATCHES && log.epochs == 1,
               "a stop after epoch 1 on rank %d: %lld steps, %d epochs", g_size - 1,
               (long long)cd_trainer_steps(tr), log.epochs);
    assert_ranks_identical(m, tr, "stopped after epoch 1");

    log.stop_rank = -1;
    fit(tr, ds, 3, rng, &log, CD_OK);
    fit(ref, ref_ds, 3, ref_rng, &ref_log, CD_OK);
    ASSERT_ALL(log.epochs == 3, "%d epochs in all", log.epochs);
    for (int e = 0; e < 3; e++)
        ASSERT_ALL(close_to(log.val[e], ref_log.val[e], LOSS_TOL),
                   "%s: epoch %d's validation loss %.9g stopped and resumed on %d ranks, %.9g in "
                   "one process",
                   spec->name, e + 1, log.val[e], g_size, ref_log.val[e]);
    assert_ranks_identical(m, tr, "resumed");
    assert_matches(spec, tr, ref, spec->name);
    cd_rng_free(rng);
    cd_rng_free(ref_rng);
    cd_test_trainer_free_all(tr);
    cd_test_trainer_free_all(ref);
    cd_mpi_free(m);
    cd_dataset_free(ds);
    cd_dataset_free(ref_ds);
}
END_TEST

/* ---- one rank, arguments ------------------------------------------------------ */

/* Attached to a communicator of one rank (MPI_COMM_SELF) a trainer is a
 * single process: it never calls the sum and gives the bits of one that
 * was never attached. */
START_TEST(one_rank_never_sums)
{
    cd_dataset *ds = cd_test_load_slice(0);
    cd_mpi *m = NULL;
    OK_ALL(cd_mpi_create(&m, MPI_COMM_SELF, 0));
    ASSERT_ALL(cd_mpi_rank(m) == 0 && cd_mpi_size(m) == 1, "MPI_COMM_SELF: rank %lld of %lld",
               (long long)cd_mpi_rank(m), (long long)cd_mpi_size(m));
    cd_trainer *tr = make_trainer(&SPECS[0], 0), *plain = make_trainer(&SPECS[0], 0);
    OK_ALL(cd_mpi_attach(m, tr));
    int64_t rank = -1, world = -1;
    OK_ALL(cd_trainer_get_distributed(tr, &rank, &world));
    ASSERT_ALL(rank == 0 && world == 1, "attached as %lld of %lld", (long long)rank,
               (long long)world);
    cd_tensor *images = cd_test_tensor4(4, 1, 28, 28);
    cd_rng *a = NULL, *b = NULL;
    CD_ASSERT_OK(cd_rng_create(&a, 3));
    CD_ASSERT_OK(cd_rng_create(&b, 3));
    for (int s = 0; s < 3; s++) {
        double la = NAN, lb = NAN;
        fill_batch(ds, s, images, NULL);
        step(tr, images, NULL, a, &la);
        step(plain, images, NULL, b, &lb);
        ASSERT_ALL(memcmp(&la, &lb, sizeof la) == 0, "step %d: loss %.17g, alone %.17g", s + 1, la,
                   lb);
    }
    ASSERT_ALL(memcmp(weights(tr), weights(plain), (size_t)weight_count(tr) * sizeof(float)) == 0,
               "attached to one rank, the weights differ from a plain trainer's");
    int64_t sums = -1, floats = -1;
    OK_ALL(cd_mpi_stats(m, NULL, &sums, &floats));
    ASSERT_ALL(sums == 0 && floats == 0, "one rank: %lld sums of %lld floats", (long long)sums,
               (long long)floats);
    cd_rng_free(a);
    cd_rng_free(b);
    cd_tensor_free(images);
    cd_test_trainer_free_all(tr);
    cd_test_trainer_free_all(plain);
    cd_mpi_free(m);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(arguments_are_checked)
{
    cd_mpi *m = (cd_mpi *)&g_rank; /* must be overwritten with NULL */
    ASSERT_ALL(cd_mpi_create(NULL, MPI_COMM_WORLD, 0) == CD_ERR_INVALID_ARGUMENT, "NULL out");
    ASSERT_ALL(cd_mpi_create(&m, MPI_COMM_NULL, 0) == CD_ERR_INVALID_ARGUMENT && m == NULL,
               "MPI_COMM_NULL");
    m = (cd_mpi *)&g_rank;
    ASSERT_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, 2) == CD_ERR_INVALID_ARGUMENT && m == NULL,
               "unknown flag 2");
    ASSERT_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, -1) == CD_ERR_INVALID_ARGUMENT && m == NULL,
               "flags -1");

    ASSERT_ALL(cd_mpi_rank(NULL) == -1 && cd_mpi_size(NULL) == -1, "rank and size of NULL");
    ASSERT_ALL(cd_mpi_attach(NULL, NULL) == CD_ERR_INVALID_ARGUMENT, "attach NULL");
    int32_t same = -1;
    ASSERT_ALL(cd_mpi_same_weights(NULL, NULL, &same) == CD_ERR_INVALID_ARGUMENT && same == -1,
               "same_weights NULL");
    double seconds = -1;
    ASSERT_ALL(cd_mpi_stats(NULL, &seconds, NULL, NULL) == CD_ERR_INVALID_ARGUMENT && seconds == -1,
               "stats NULL");
    ASSERT_ALL(strcmp(cd_mpi_last_error(NULL), "") == 0, "last_error of NULL");
    cd_mpi_free(NULL);
    cd_mpi_reset_stats(NULL);

    OK_ALL(cd_mpi_create(&m, MPI_COMM_WORLD, CD_MPI_FIXED_ORDER));
    int mpi_rank = -1, mpi_size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    ASSERT_ALL(cd_mpi_rank(m) == mpi_rank && cd_mpi_size(m) == mpi_size, "rank %lld of %lld",
               (long long)cd_mpi_rank(m), (long long)cd_mpi_size(m));
    ASSERT_ALL(strcmp(cd_mpi_last_error(m), "") == 0, "a fresh cd_mpi has an error: %s",
               cd_mpi_last_error(m));
    ASSERT_ALL(cd_mpi_attach(m, NULL) == CD_ERR_INVALID_ARGUMENT, "attach a NULL trainer");
    ASSERT_ALL(strstr(cd_mpi_last_error(m), "trainer") != NULL, "message '%s'",
               cd_mpi_last_error(m));
    cd_trainer *tr = make_trainer(&SPECS[0], 0);
    ASSERT_ALL(cd_mpi_same_weights(m, NULL, &same) == CD_ERR_INVALID_ARGUMENT, "NULL decoder");
    ASSERT_ALL(cd_mpi_same_weights(m, cd_trainer_decoder(tr), NULL) == CD_ERR_INVALID_ARGUMENT,
               "NULL same");
    OK_ALL(cd_mpi_same_weights(m, cd_trainer_decoder(tr), &same));
    ASSERT_ALL(same == 1, "fresh decoders of one seed: same = %d", (int)same);
    int64_t sums = -1, floats = -1;
    OK_ALL(cd_mpi_stats(m, NULL, NULL, NULL));
    OK_ALL(cd_mpi_stats(m, &seconds, &sums, &floats));
    ASSERT_ALL(seconds == 0 && sums == 0 && floats == 0, "fresh statistics %g %lld %lld", seconds,
               (long long)sums, (long long)floats);

    /* The statistics count a step's sums, and reset to zero. */
    OK_ALL(cd_mpi_attach(m, tr));
    cd_dataset *ds = cd_test_load_slice(0);
    cd_tensor *images = cd_test_tensor4(4, 1, 28, 28);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    double loss = NAN;
    fill_batch(ds, 0, images, NULL);
    step(tr, images, NULL, rng, &loss);
    OK_ALL(cd_mpi_stats(m, &seconds, &sums, &floats));
    ASSERT_ALL(sums == 2 && floats == weight_count(tr) + 1 && seconds > 0,
               "one step, bucket 0: %lld sums of %lld floats in %g s", (long long)sums,
               (long long)floats, seconds);
    cd_mpi_reset_stats(m);
    OK_ALL(cd_mpi_stats(m, &seconds, &sums, &floats));
    ASSERT_ALL(seconds == 0 && sums == 0 && floats == 0, "after a reset: %g %lld %lld", seconds,
               (long long)sums, (long long)floats);
    cd_rng_free(rng);
    cd_tensor_free(images);
    cd_dataset_free(ds);
    cd_test_trainer_free_all(tr);
    cd_mpi_free(m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpi");
    tcase_add_test(tc, arguments_are_checked);
    tcase_add_test(tc, one_rank_never_sums);
    tcase_add_loop_test(tc, ranks_hold_identical_weights, 0, 2);
    tcase_add_loop_test(tc, ranks_train_as_one_process, 0, N_SPECS);
    tcase_add_loop_test(tc, batches_smaller_than_the_world, 0,
                        (int)(sizeof SMALL_BATCHES / sizeof SMALL_BATCHES[0]));
    tcase_add_loop_test(tc, fixed_order_repeats_bit_for_bit, 0, 2);
    tcase_add_loop_test(tc, fit_matches_one_process, 0, N_SPECS);
    tcase_add_loop_test(tc, stop_on_one_rank_stops_all, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

/* Seconds after which the program ends itself (SIGALRM), so that ranks
 * left waiting for each other after a failure do not hang the test run;
 * CTest's own limit is above it. */
#define WATCHDOG_SECONDS 240

int main(int argc, char **argv)
{
    int provided = 0;
    /* Only the main thread calls MPI; libcolddiff's workers never do. */
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size < 2) {
        fprintf(stderr, "check_mpi needs at least two ranks: mpiexec -n 2 %s\n", argv[0]);
        MPI_Finalize();
        return EXIT_FAILURE;
    }
    alarm(WATCHDOG_SECONDS);
    /* One thread per rank: the ranks share the machine's cores. */
    if (cd_set_num_threads(1) != CD_OK) {
        fprintf(stderr, "cd_set_num_threads: %s\n", cd_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    SRunner *sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY, CK_NORMAL by default */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
