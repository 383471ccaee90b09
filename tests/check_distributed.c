/* check_distributed.c - data-parallel training without MPI: K trainers in
 * K threads of one process sum their gradients through an in-process hook
 * (a barrier and a sum in rank order), and are held to one process
 * training the same global batches. The MPI transport has its own test
 * (tests/mpi); this one runs everywhere, sanitizers included. */
#include "test_util.h"

#include "diffusion/diffusion.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { MAXK = 4, MAX_STEPS = 8 };

/* ---- an in-process sum over K threads ------------------------------------ */

typedef struct {
    pthread_barrier_t bar;
    int K;
    float *slot[MAXK];
    int64_t count[MAXK];
    float *scratch;
    int64_t cap;
    atomic_int mismatch; /* ranks asked for sums of different sizes */
    atomic_int starts, polls, waits;
    int fail_start; /* the START (1-based) at which every rank fails; 0: never */
} group_t;

typedef struct {
    group_t *g;
    int rank;
    int n_starts;
} member_t;

static cd_status group_sum(cd_reduce_op op, float *data, int64_t count, void *user)
{
    member_t *m = user;
    group_t *g = m->g;
    if (op == CD_REDUCE_POLL) atomic_fetch_add(&g->polls, 1);
    if (op == CD_REDUCE_WAIT) atomic_fetch_add(&g->waits, 1);
    if (op != CD_REDUCE_START) return CD_OK;
    atomic_fetch_add(&g->starts, 1);
    if (++m->n_starts == g->fail_start) return CD_ERR_IO;
    g->slot[m->rank] = data;
    g->count[m->rank] = count;
    pthread_barrier_wait(&g->bar);
    if (m->rank == 0) {
        for (int r = 1; r < g->K; r++)
            if (g->count[r] != count) atomic_store(&g->mismatch, 1);
        if (count > g->cap) {
            free(g->scratch);
            g->scratch = malloc((size_t)count * sizeof(float));
            g->cap = count;
        }
        for (int64_t i = 0; i < count && !atomic_load(&g->mismatch); i++) {
            float s = g->slot[0][i];
            for (int r = 1; r < g->K; r++) s += g->slot[r][i];
            g->scratch[i] = s;
        }
    }
    pthread_barrier_wait(&g->bar);
    if (!atomic_load(&g->mismatch)) memcpy(data, g->scratch, (size_t)count * sizeof(float));
    pthread_barrier_wait(&g->bar);
    return CD_OK;
}

/* ---- models ---------------------------------------------------------------- */

typedef struct {
    int unet, blur, classes;
    int64_t batch, steps, bucket;
    double dropout;
} setup_t;

static cd_trainer *make_trainer(const setup_t *s)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    cd_rng *rng = NULL;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, s->unet ? CD_DECODER_UNET : CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, s->classes));
    if (s->unet) {
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 1));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 8));
    } else {
        CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){6, 8}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, 11));
    CD_ASSERT_OK(cd_decoder_create(&dec, cfg, rng));
    if (s->blur) {
        CD_ASSERT_OK(cd_schedule_create_constant(&sch, 20, 1.0));
        CD_ASSERT_OK(cd_degradation_create_blur(&deg, sch, 11, CD_PADDING_REFLECT));
    } else {
        CD_ASSERT_OK(cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02));
        CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    }
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, s->batch));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BUCKET, s->bucket));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, s->dropout));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_CLIP_NORM, 1.0));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.9));
    cd_schedule_free(sch);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return tr;
}

static const float *weights(cd_trainer *tr, int64_t *n)
{
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    *n = cd_params_numel(p);
    return cd_params_data(p, -1);
}

static uint64_t weights_hash(cd_trainer *tr)
{
    int64_t n = 0;
    const unsigned char *b = (const unsigned char *)weights(tr, &n);
    uint64_t h = 1469598103934665603u;
    for (int64_t i = 0; i < n * (int64_t)sizeof(float); i++) h = (h ^ b[i]) * 1099511628211u;
    return h;
}

/* ||a - b|| / ||b|| over the two trainers' weights. */
static double relative_gap(cd_trainer *a, cd_trainer *b)
{
    int64_t na = 0, nb = 0;
    const float *wa = weights(a, &na), *wb = weights(b, &nb);
    ck_assert_int_eq(na, nb);
    double d = 0, s = 0;
    for (int64_t i = 0; i < na; i++) {
        d += ((double)wa[i] - wb[i]) * ((double)wa[i] - wb[i]);
        s += (double)wb[i] * wb[i];
    }
    return sqrt(d / s);
}

/* ---- K ranks stepping through the same global batches ---------------------- */

typedef struct {
    const setup_t *s;
    member_t m;
    int K;
    cd_trainer *tr;
    double loss[MAX_STEPS];
    uint64_t hash[MAX_STEPS];
    cd_status st;
    char err[512];
} rank_job;

/* Global batch k of the slice: images k*B .. k*B+B-1 (with their labels). */
static void fill(cd_dataset *ds, int64_t k, cd_tensor *x, cd_tensor *lab)
{
    int64_t got = 0;
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, k * x->shape[0], x, lab, &got));
    ck_assert_int_eq(got, x->shape[0]);
}

static cd_status run_steps(cd_trainer *tr, const setup_t *s, double *loss, uint64_t *hash)
{
    cd_dataset *ds = cd_test_load_slice(0);
    cd_tensor *x = cd_test_tensor4(s->batch, 1, 28, 28), *lab = NULL;
    CD_ASSERT_OK(cd_tensor_create(&lab, 1, (int64_t[]){s->batch}));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    cd_status st = CD_OK;
    for (int64_t k = 0; st == CD_OK && k < s->steps; k++) {
        fill(ds, k, x, lab);
        st = s->classes ? cd_trainer_step_labeled(tr, x, lab, rng, &loss[k])
                        : cd_trainer_step(tr, x, rng, &loss[k]);
        if (hash) hash[k] = weights_hash(tr);
    }
    cd_rng_free(rng);
    cd_tensor_free(lab);
    cd_tensor_free(x);
    cd_dataset_free(ds);
    return st;
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    j->st = cd_trainer_set_distributed(j->tr, j->m.rank, j->K, group_sum, &j->m);
    if (j->st == CD_OK) j->st = run_steps(j->tr, j->s, j->loss, j->hash);
    snprintf(j->err, sizeof j->err, "%s", cd_last_error());
    return NULL;
}

/* Run K ranks of setup s; each job keeps its trainer (free with
 * cd_test_trainer_free_all). */
static void run_ranks(const setup_t *s, int K, group_t *g, rank_job *jobs)
{
    memset(g, 0, sizeof *g);
    g->K = K;
    pthread_barrier_init(&g->bar, NULL, (unsigned)K);
    pthread_t th[MAXK];
    for (int r = 0; r < K; r++) {
        jobs[r] = (rank_job){.s = s, .m = {g, r, 0}, .K = K, .tr = make_trainer(s)};
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    for (int r = 0; r < K; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g->bar);
    free(g->scratch);
    g->scratch = NULL;
    ck_assert_int_eq(atomic_load(&g->mismatch), 0);
}

/* K ranks against one process: every rank's weights the same bits after
 * every step, and the same trajectory as one process up to float sums. */
static void check_equivalence(const setup_t *s, int K)
{
    cd_set_num_threads(1);
    group_t g;
    rank_job jobs[MAXK];
    run_ranks(s, K, &g, jobs);
    for (int r = 0; r < K; r++) ck_assert_msg(jobs[r].st == CD_OK, "rank %d: %s", r, jobs[r].err);
    for (int64_t k = 0; k < s->steps; k++)
        for (int r = 1; r < K; r++) {
            ck_assert_msg(jobs[r].hash[k] == jobs[0].hash[k], "step %lld: rank %d differs",
                          (long long)k, r);
            ck_assert(jobs[r].loss[k] == jobs[0].loss[k]);
        }
    cd_trainer *one = make_trainer(s);
    double loss[MAX_STEPS];
    CD_ASSERT_OK(run_steps(one, s, loss, NULL));
    for (int64_t k = 0; k < s->steps; k++)
        ck_assert_msg(fabs(loss[k] - jobs[0].loss[k]) <= 1e-5 * fabs(loss[k]),
                      "step %lld: loss %.9g on %d ranks, %.9g on one", (long long)k,
                      jobs[0].loss[k], K, loss[k]);
    /* Adam hides a uniform scale of the gradients; their norm does not. */
    const double g1 = cd__adam_last_grad_norm(cd__trainer_adam(one));
    const double gk = cd__adam_last_grad_norm(cd__trainer_adam(jobs[0].tr));
    ck_assert_msg(fabs(gk - g1) <= 1e-5 * g1, "gradient norm %.9g on %d ranks, %.9g on one", gk, K,
                  g1);
    const double gap = relative_gap(jobs[0].tr, one);
    ck_assert_msg(gap <= 1e-5, "weights %.3g apart (relative) after %lld steps", gap,
                  (long long)s->steps);
    ck_assert_int_eq(cd_trainer_steps(jobs[0].tr), s->steps);
    /* Gradients went through buckets started during backward. */
    if (s->bucket > 0) ck_assert_int_gt(atomic_load(&g.polls), 0);
    cd_test_trainer_free_all(one);
    for (int r = 0; r < K; r++) cd_test_trainer_free_all(jobs[r].tr);
}

START_TEST(cnn_noise_two_ranks)
{
    const setup_t s = {.batch = 16, .steps = 5, .bucket = 50};
    check_equivalence(&s, 2);
}
END_TEST

START_TEST(unet_classes_three_uneven_ranks)
{
    /* 10 rows over 3 ranks: 3, 3 and 4; label dropout draws per row. */
    const setup_t s =
        {.unet = 1, .classes = 10, .dropout = 0.3, .batch = 10, .steps = 3, .bucket = 4000};
    check_equivalence(&s, 3);
}
END_TEST

START_TEST(blur_rank_without_rows)
{
    /* A batch of one on two ranks: rank 0 has no rows and runs idle. */
    const setup_t s = {.blur = 1, .batch = 1, .steps = 4, .bucket = 100};
    check_equivalence(&s, 2);
}
END_TEST

START_TEST(noise_and_dropout_rank_without_rows)
{
    /* The idle rank skips its share of the noise and dropout draws. */
    const setup_t s = {.classes = 10, .dropout = 0.5, .batch = 1, .steps = 3, .bucket = 100};
    check_equivalence(&s, 2);
}
END_TEST

START_TEST(buckets_do_not_change_the_bits)
{
    /* The in-process sum adds in rank order, so one sum after backward and
     * many small ones during it must give the same bits. */
    cd_set_num_threads(1);
    setup_t s = {.unet = 1, .batch = 8, .steps = 3, .bucket = 0};
    group_t g;
    rank_job a[MAXK], b[MAXK];
    run_ranks(&s, 2, &g, a);
    ck_assert_int_eq(atomic_load(&g.polls), 0);
    const int one_sum = atomic_load(&g.starts);
    s.bucket = 64;
    run_ranks(&s, 2, &g, b);
    ck_assert_int_gt(atomic_load(&g.starts), one_sum);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(a[r].st == CD_OK && b[r].st == CD_OK, "%s %s", a[r].err, b[r].err);
        for (int64_t k = 0; k < s.steps; k++) ck_assert(a[r].hash[k] == b[r].hash[k]);
        cd_test_trainer_free_all(a[r].tr);
        cd_test_trainer_free_all(b[r].tr);
    }
}
END_TEST

/* ---- the epoch loop ---------------------------------------------------------- */

typedef struct {
    cd_trainer *tr;
    member_t m;
    int K, stop_after; /* this rank alone asks for a stop after so many batches */
    int cancel_after;  /* this rank's on_epoch cancels after this epoch (0: never) */
    int64_t epochs;
    cd_status st;
    double val;
    char err[512];
} fit_job;

static cd_status cancel_on_epoch(cd_trainer *tr, int64_t epoch, double train, double val,
                                 void *user)
{
    (void)tr, (void)train, (void)val;
    const fit_job *j = user;
    return epoch == j->cancel_after ? CD_ERR_CANCELLED : CD_OK;
}

static void *fit_main(void *arg)
{
    fit_job *j = arg;
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    j->st = j->K > 1 ? cd_trainer_set_distributed(j->tr, j->m.rank, j->K, group_sum, &j->m) : CD_OK;
    if (j->stop_after > 0) cd__trainer_stop_after(j->tr, j->stop_after);
    if (j->st == CD_OK)
        j->st = cd_trainer_fit(j->tr, ds, j->epochs, NULL, NULL, rng,
                               j->cancel_after ? cancel_on_epoch : NULL, j);
    snprintf(j->err, sizeof j->err, "%s", cd_last_error());
    cd_trainer_progress(j->tr, CD_PROGRESS_VAL_LOSS, &j->val);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    return NULL;
}

static void run_fit(int K, const int *stop_after, const int *cancel_after, fit_job *jobs,
                    group_t *g)
{
    const setup_t s = {.batch = 64, .bucket = 500};
    memset(g, 0, sizeof *g);
    g->K = K;
    pthread_barrier_init(&g->bar, NULL, (unsigned)K);
    pthread_t th[MAXK];
    for (int r = 0; r < K; r++) {
        jobs[r] = (fit_job){.tr = make_trainer(&s), .m = {g, r, 0}, .K = K};
        jobs[r].stop_after = stop_after ? stop_after[r] : 0;
        jobs[r].cancel_after = cancel_after ? cancel_after[r] : 0;
        jobs[r].epochs = cancel_after ? 3 : 1;
        pthread_create(&th[r], NULL, fit_main, &jobs[r]);
    }
    for (int r = 0; r < K; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g->bar);
    free(g->scratch);
    g->scratch = NULL;
}

START_TEST(fit_shards_training_and_validation)
{
    cd_set_num_threads(1);
    group_t g;
    fit_job one[1], two[2];
    run_fit(1, NULL, NULL, one, &g);
    run_fit(2, NULL, NULL, two, &g);
    ck_assert_msg(one[0].st == CD_OK, "%s", one[0].err);
    for (int r = 0; r < 2; r++) ck_assert_msg(two[r].st == CD_OK, "rank %d: %s", r, two[r].err);
    ck_assert(weights_hash(two[0].tr) == weights_hash(two[1].tr));
    ck_assert(two[0].val == two[1].val);
    ck_assert_msg(fabs(two[0].val - one[0].val) <= 1e-5 * one[0].val, "val %.9g vs %.9g",
                  two[0].val, one[0].val);
    const double gap = relative_gap(two[0].tr, one[0].tr);
    ck_assert_msg(gap <= 1e-5, "weights %.3g apart after an epoch", gap);
    ck_assert_int_eq(cd_trainer_steps(two[0].tr), cd_trainer_steps(one[0].tr));
    cd_test_trainer_free_all(one[0].tr);
    for (int r = 0; r < 2; r++) cd_test_trainer_free_all(two[r].tr);
}
END_TEST

START_TEST(stop_on_one_rank_stops_all)
{
    cd_set_num_threads(1);
    group_t g;
    fit_job jobs[2];
    run_fit(2, (const int[]){0, 3}, NULL, jobs, &g);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(jobs[r].st == CD_ERR_CANCELLED, "rank %d: %s", r, jobs[r].err);
        ck_assert_int_eq(cd_trainer_steps(jobs[r].tr), 3);
    }
    ck_assert(weights_hash(jobs[0].tr) == weights_hash(jobs[1].tr));
    for (int r = 0; r < 2; r++) cd_test_trainer_free_all(jobs[r].tr);
}
END_TEST

START_TEST(on_epoch_cancel_on_one_rank_stops_all)
{
    /* Rank 1's on_epoch cancels after epoch 1 of 3; rank 0's goes on. */
    cd_set_num_threads(1);
    group_t g;
    fit_job jobs[2];
    run_fit(2, NULL, (const int[]){0, 1}, jobs, &g);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(jobs[r].st == CD_ERR_CANCELLED, "rank %d: %s", r, jobs[r].err);
        ck_assert_int_eq(cd_trainer_steps(jobs[r].tr), 13); /* one epoch: 800 images by 64 */
    }
    ck_assert(weights_hash(jobs[0].tr) == weights_hash(jobs[1].tr));
    for (int r = 0; r < 2; r++) cd_test_trainer_free_all(jobs[r].tr);
}
END_TEST

/* ---- errors -------------------------------------------------------------------- */

START_TEST(failing_sum_is_reported)
{
    cd_set_num_threads(1);
    const setup_t s = {.batch = 4, .steps = 2, .bucket = 0};
    group_t g;
    rank_job jobs[2];
    memset(&g, 0, sizeof g);
    g.K = 2;
    g.fail_start = 1;
    pthread_barrier_init(&g.bar, NULL, 2);
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        jobs[r] = (rank_job){.s = &s, .m = {&g, r, 0}, .K = 2, .tr = make_trainer(&s)};
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g.bar);
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(jobs[r].st, CD_ERR_IO);
        ck_assert_msg(strstr(jobs[r].err, "cd_trainer_step: the sum of the gradients over 2 ranks "
                                          "failed"),
                      "%s", jobs[r].err);
        ck_assert_int_eq(cd_trainer_steps(jobs[r].tr), 0);
        cd_test_trainer_free_all(jobs[r].tr);
    }
}
END_TEST

START_TEST(arguments)
{
    const setup_t s = {.batch = 4};
    cd_trainer *tr = make_trainer(&s);
    member_t m = {0};
    int64_t rank = -1, world = -1;
    CD_ASSERT_OK(cd_trainer_get_distributed(tr, &rank, &world));
    ck_assert(rank == 0 && world == 1);
    CD_ASSERT_STATUS(cd_trainer_set_distributed(NULL, 0, 2, group_sum, &m),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_distributed(tr, 0, 0, group_sum, &m), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("world = 0");
    CD_ASSERT_STATUS(cd_trainer_set_distributed(tr, 2, 2, group_sum, &m), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("outside 0..1");
    CD_ASSERT_STATUS(cd_trainer_set_distributed(tr, -1, 2, group_sum, &m), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_distributed(tr, 0, 2, NULL, &m), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("'sum' is NULL");
    CD_ASSERT_STATUS(cd_trainer_get_distributed(NULL, &rank, &world), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_distributed(tr, NULL, &world), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_distributed(tr, &rank, NULL), CD_ERR_INVALID_ARGUMENT);
    /* Failures leave the trainer as it was; a valid call takes effect. */
    CD_ASSERT_OK(cd_trainer_get_distributed(tr, &rank, &world));
    ck_assert(rank == 0 && world == 1);
    CD_ASSERT_OK(cd_trainer_set_distributed(tr, 1, 3, group_sum, &m));
    CD_ASSERT_OK(cd_trainer_get_distributed(tr, &rank, &world));
    ck_assert(rank == 1 && world == 3);
    CD_ASSERT_OK(cd_trainer_set_distributed(tr, 0, 1, NULL, NULL));
    CD_ASSERT_OK(cd_trainer_get_distributed(tr, &rank, &world));
    ck_assert(rank == 0 && world == 1);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BUCKET, -1), CD_ERR_RANGE);
    cd_test_trainer_free_all(tr);
}
END_TEST

/* The windows of the stream that ranks draw are the single draw's values. */
START_TEST(rng_windows_match_the_whole_draw)
{
    enum { TOTAL = 37 };
    float whole[TOTAL], part[TOTAL];
    for (int kind = 0; kind < 2; kind++)
        for (int64_t first = 0; first <= TOTAL; first += 3)
            for (int64_t n = 0; first + n <= TOTAL; n += 5) {
                cd_rng *a = NULL, *b = NULL;
                CD_ASSERT_OK(cd_rng_create(&a, 9));
                CD_ASSERT_OK(cd_rng_create(&b, 9));
                CD_ASSERT_OK(kind ? cd_rng_normal(a, whole, TOTAL)
                                  : cd_rng_uniform(a, whole, TOTAL));
                CD_ASSERT_OK(kind ? cd__rng_normal_window(b, part, first, n, TOTAL)
                                  : cd__rng_uniform_window(b, part, first, n, TOTAL));
                for (int64_t i = 0; i < n; i++) ck_assert(part[i] == whole[first + i]);
                /* Both generators stand at the same place afterwards. */
                float x = 0, y = 0;
                CD_ASSERT_OK(cd_rng_uniform(a, &x, 1));
                CD_ASSERT_OK(cd_rng_uniform(b, &y, 1));
                ck_assert(x == y);
                cd_rng_free(a);
                cd_rng_free(b);
            }
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 1));
    CD_ASSERT_STATUS(cd__rng_normal_window(r, part, 30, 10, TOTAL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__rng_uniform_window(r, part, -1, 2, TOTAL), CD_ERR_RANGE);
    CD_ASSERT_OK(cd__rng_normal_window(r, NULL, 5, 0, TOTAL)); /* a skip writes nothing */
    CD_ASSERT_STATUS(cd__rng_normal_window(r, NULL, 5, 1, TOTAL), CD_ERR_INVALID_ARGUMENT);
    cd_rng_free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("distributed");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, rng_windows_match_the_whole_draw);
    tcase_add_test(tc, arguments);
    tcase_add_test(tc, cnn_noise_two_ranks);
    tcase_add_test(tc, unet_classes_three_uneven_ranks);
    tcase_add_test(tc, blur_rank_without_rows);
    tcase_add_test(tc, noise_and_dropout_rank_without_rows);
    tcase_add_test(tc, buckets_do_not_change_the_bits);
    tcase_add_test(tc, fit_shards_training_and_validation);
    tcase_add_test(tc, stop_on_one_rank_stops_all);
    tcase_add_test(tc, on_epoch_cancel_on_one_rank_stops_all);
    tcase_add_test(tc, failing_sum_is_reported);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite)
