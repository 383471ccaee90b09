/* check_test_loss.c - cd_trainer_test_loss against the same computation
 * written out from the public API, its standard error, and its errors. */
#include "test_util.h"

#include <math.h>

static cd_trainer *small_trainer(int blur)
{
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    cd_trainer *tr = NULL;
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 4));
    if (blur) {
        CD_ASSERT_OK(cd_schedule_create_constant(&s, 10, 1.0));
        CD_ASSERT_OK(cd_degradation_create_blur(&d, s, 5, CD_PADDING_REFLECT));
    } else {
        CD_ASSERT_OK(cd_schedule_create_linear(&s, 50, 1e-4, 0.02));
        CD_ASSERT_OK(cd_degradation_create_noise(&d, s));
    }
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){4, 4}, 2));
    CD_ASSERT_OK(cd_decoder_create(&dec, cfg, r));
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, d));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 64));
    cd_decoder_config_free(cfg), cd_schedule_free(s), cd_rng_free(r);
    return tr;
}

/* The mean and standard error equal the per-image computation redone
 * here with the same draws (t for the batch, then the noise). */
START_TEST(matches_written_out)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    for (int blur = 0; blur < 2; blur++) {
        cd_trainer *tr = small_trainer(blur);
        if (blur) CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_PER_BATCH, 1));
        CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_LOSS, blur ? CD_LOSS_L1 : CD_LOSS_MSE));
        cd_rng *r1 = NULL, *r2 = NULL;
        CD_ASSERT_OK(cd_rng_create(&r1, 9));
        CD_ASSERT_OK(cd_rng_create(&r2, 9));
        double mean = 0, se = 0;
        CD_ASSERT_OK(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, r1, &mean, &se));
        const int64_t n = cd_dataset_count(ds, CD_SPLIT_VAL), T = blur ? 10 : 50;
        double sum = 0, ss = 0, loss[200];
        ck_assert_int_eq(n, 200);
        cd_tensor *x = NULL, *z = NULL, *e = NULL, *tau = NULL, *p = NULL;
        const int64_t sh[4] = {64, 1, 28, 28};
        CD_ASSERT_OK(cd_tensor_create(&x, 4, sh));
        for (int64_t first = 0; first < n; first += 64) {
            const int64_t b = n - first < 64 ? n - first : 64;
            const int64_t shb[4] = {b, 1, 28, 28};
            int64_t t[64], idx[64];
            for (int64_t i = 0; i < b; i++) idx[i] = first + i;
            CD_ASSERT_OK(cd_tensor_create(&z, 4, shb));
            CD_ASSERT_OK(cd_tensor_create(&e, 4, shb));
            CD_ASSERT_OK(cd_tensor_create(&p, 4, shb));
            CD_ASSERT_OK(cd_tensor_create(&tau, 1, &b));
            cd_tensor *xb = NULL;
            CD_ASSERT_OK(cd_tensor_create(&xb, 4, shb));
            CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_VAL, idx, b, xb, NULL));
            CD_ASSERT_OK(cd_rng_int_range(r2, t, blur ? 1 : b, 1, T));
            for (int64_t i = 0; i < b; i++) {
                if (blur) t[i] = t[0];
                cd_tensor_data(tau)[i] = (float)((double)t[i] / T);
            }
            CD_ASSERT_OK(
                cd_degradation_apply(cd_trainer_degradation(tr), xb, t, b, r2, z, blur ? NULL : e));
            CD_ASSERT_OK(cd_decoder_forward(cd_trainer_decoder(tr), z, tau, p));
            const float *target = cd_tensor_data(blur ? xb : e);
            for (int64_t i = 0; i < b; i++) {
                double s = 0;
                for (int k = 0; k < 784; k++) {
                    const double d = (double)cd_tensor_data(p)[i * 784 + k] - target[i * 784 + k];
                    s += blur ? fabs(d) : d * d;
                }
                loss[first + i] = s / 784;
                sum += loss[first + i];
            }
            cd_tensor_free(xb), cd_tensor_free(z), cd_tensor_free(e);
            cd_tensor_free(p), cd_tensor_free(tau);
        }
        const double m = sum / n;
        for (int64_t i = 0; i < n; i++) ss += (loss[i] - m) * (loss[i] - m);
        ck_assert_msg(fabs(mean - m) <= 1e-12 * m, "mean %g vs %g", mean, m);
        ck_assert_msg(fabs(se - sqrt(ss / (n - 1) / n)) <= 1e-9 * se, "se %g", se);
        ck_assert(se > 0 && se < mean);
        cd_tensor_free(x);
        cd_rng_free(r1), cd_rng_free(r2);
        cd_test_trainer_free_all(tr);
    }
    cd_dataset_free(ds);
}
END_TEST

START_TEST(errors)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = small_trainer(0);
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 1));
    double m = 0;
    CD_ASSERT_STATUS(cd_trainer_test_loss(NULL, ds, CD_SPLIT_VAL, r, &m, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, NULL, CD_SPLIT_VAL, r, &m, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, NULL, &m, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, r, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, ds, (cd_split)9, r, &m, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_test_loss(tr, ds, CD_SPLIT_TEST, r, &m, NULL), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_VAL, 1));
    double se = 7;
    CD_ASSERT_OK(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, r, &m, &se));
    ck_assert(se == 0.0 && m > 0);
    cd_rng_free(r), cd_test_trainer_free_all(tr), cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("test_loss");
    TCase *tc = tcase_create("test_loss");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, matches_written_out);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
