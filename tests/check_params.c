/* check_params.c - the public parameter-set API and PyTorch-style init. */
#include "test_util.h"

#include <math.h>
#include <stdint.h>

#include "nn/nn.h"

static cd_params *make_set(void)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    CD_ASSERT_OK(cd_params_add(p, "blocks.0.net.0.weight", 4, (int64_t[]){16, 1, 7, 7}));
    CD_ASSERT_OK(cd_params_add(p, "blocks.0.net.0.bias", 1, (int64_t[]){16}));
    CD_ASSERT_OK(cd_params_add(p, "time_embed.0.weight", 2, (int64_t[]){128, 32}));
    return p;
}

START_TEST(create_add_query)
{
    cd_params *p = make_set();
    ck_assert_int_eq(cd_params_count(p), 3);
    ck_assert_int_eq(cd_params_numel(p), 16 * 49 + 16 + 128 * 32);
    ck_assert_str_eq(cd_params_name(p, 1), "blocks.0.net.0.bias");
    int64_t idx = -7;
    CD_ASSERT_OK(cd_params_find(p, "time_embed.0.weight", &idx));
    ck_assert_int_eq(idx, 2);
    ck_assert_int_eq(cd_params_rank(p, 0), 4);
    int64_t shape[8] = {0};
    CD_ASSERT_OK(cd_params_shape(p, 0, shape, 8));
    ck_assert(shape[0] == 16 && shape[1] == 1 && shape[2] == 7 && shape[3] == 7);
    CD_ASSERT_OK(cd_params_shape(p, 2, shape, 2)); /* capacity == rank is enough */
    ck_assert(shape[0] == 128 && shape[1] == 32);
    ck_assert_int_eq(cd_params_numel_at(p, 0), 784);
    ck_assert_int_eq(cd_params_numel_at(p, 2), 4096);
    cd_params_free(p);
    cd_params_free(NULL);
}
END_TEST

START_TEST(flat_blocks_are_contiguous_and_aligned)
{
    cd_params *p = make_set();
    ck_assert(!cd__params_is_final(p));
    float *base = cd_params_data(p, -1), *gbase = cd_params_grad(p, -1);
    ck_assert(cd__params_is_final(p));
    ck_assert_ptr_nonnull(base);
    ck_assert_ptr_nonnull(gbase);
    ck_assert_uint_eq((uintptr_t)base % 64, 0);
    ck_assert_uint_eq((uintptr_t)gbase % 64, 0);
    int64_t expect = 0;
    for (int64_t i = 0; i < cd_params_count(p); i++) {
        ck_assert_int_eq(cd__params_offset(p, i), expect);
        ck_assert_ptr_eq(cd_params_data(p, i), base + expect);
        ck_assert_ptr_eq(cd_params_grad(p, i), gbase + expect);
        expect += cd_params_numel_at(p, i);
    }
    ck_assert_int_eq(expect, cd_params_numel(p));
    /* Values and gradients start at zero and are separate blocks. */
    int64_t n = cd_params_numel(p);
    for (int64_t k = 0; k < n; k++) ck_assert(base[k] == 0.0f && gbase[k] == 0.0f);
    ck_assert(gbase >= base + n || base >= gbase + n);
    ck_assert_ptr_eq(cd__params_values(p), base);
    ck_assert_ptr_eq(cd__params_grads(p), gbase);
    cd_params_free(p);
}
END_TEST

START_TEST(zero_grad_clears_only_gradients)
{
    cd_params *p = make_set();
    int64_t n = cd_params_numel(p);
    float *v = cd_params_data(p, -1), *g = cd_params_grad(p, -1);
    for (int64_t k = 0; k < n; k++) {
        v[k] = (float)k;
        g[k] = 1.5f;
    }
    CD_ASSERT_OK(cd_params_zero_grad(p));
    for (int64_t k = 0; k < n; k++) ck_assert(g[k] == 0.0f && v[k] == (float)k);
    cd_params_free(p);
}
END_TEST

START_TEST(zero_grad_lays_out)
{
    cd_params *p = make_set();
    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_STATUS(cd_params_add(p, "late", 1, (int64_t[]){1}), CD_ERR_STATE);
    cd_params_free(p);
}
END_TEST

START_TEST(internal_add_reports_index)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    int64_t i = -1;
    CD_ASSERT_OK(cd__params_add(p, "a", 1, (int64_t[]){3}, &i));
    ck_assert_int_eq(i, 0);
    CD_ASSERT_OK(cd__params_add(p, "b", 2, (int64_t[]){2, 2}, &i));
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(cd__params_offset(p, 1), 3);
    ck_assert_int_eq(cd__params_dims(p, 1)[1], 2);
    ck_assert_ptr_null(cd__params_values(p)); /* not laid out yet */
    CD_ASSERT_OK(cd__params_finalize(p));
    CD_ASSERT_OK(cd__params_finalize(p)); /* idempotent */
    ck_assert_ptr_nonnull(cd__params_values(p));
    cd_params_free(p);
}
END_TEST

START_TEST(empty_set)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    ck_assert_int_eq(cd_params_count(p), 0);
    ck_assert_int_eq(cd_params_numel(p), 0);
    ck_assert_ptr_nonnull(cd_params_data(p, -1));
    CD_ASSERT_OK(cd_params_zero_grad(p));
    cd_params_free(p);
}
END_TEST

START_TEST(many_tensors)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "layer.%d.weight", i);
        CD_ASSERT_OK(cd_params_add(p, name, 1, (int64_t[]){i + 1}));
    }
    int64_t idx;
    CD_ASSERT_OK(cd_params_find(p, "layer.299.weight", &idx));
    ck_assert_int_eq(idx, 299);
    ck_assert_int_eq(cd__params_offset(p, 299), 299 * 300 / 2);
    ck_assert_int_eq(cd_params_numel(p), 300 * 301 / 2);
    cd_params_free(p);
}
END_TEST

/* ---- misuse --------------------------------------------------------- */

START_TEST(null_arguments)
{
    int64_t shape[1] = {2}, idx = 5;
    CD_ASSERT_STATUS(cd_params_create(NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_add(NULL, "a", 1, shape), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_params_count(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_params_numel(NULL), -1);
    ck_assert_ptr_null(cd_params_name(NULL, 0));
    ck_assert_int_eq(cd_params_rank(NULL, 0), -1);
    ck_assert_int_eq(cd_params_numel_at(NULL, 0), -1);
    ck_assert_ptr_null(cd_params_data(NULL, -1));
    ck_assert_ptr_null(cd_params_grad(NULL, 0));
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_find(NULL, "a", &idx), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(idx, -1);
    CD_ASSERT_STATUS(cd_params_shape(NULL, 0, shape, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_zero_grad(NULL), CD_ERR_INVALID_ARGUMENT);

    cd_params *p = make_set();
    CD_ASSERT_STATUS(cd_params_add(p, NULL, 1, shape), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_add(p, "x", 1, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_find(p, NULL, &idx), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_find(p, "a", NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_params_shape(p, 0, NULL, 4), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_params_count(p), 3); /* nothing was added */
    cd_params_free(p);
}
END_TEST

START_TEST(bad_names)
{
    cd_params *p = make_set();
    int64_t s[1] = {1};
    CD_ASSERT_STATUS(cd_params_add(p, "blocks.0.net.0.bias", 1, s), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("already exists");
    CD_ASSERT_STATUS(cd_params_add(p, "", 1, s), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("empty");
    char name[CD_PARAMS_MAX_NAME + 2];
    memset(name, 'n', sizeof name);
    name[CD_PARAMS_MAX_NAME + 1] = '\0'; /* 128 bytes */
    CD_ASSERT_STATUS(cd_params_add(p, name, 1, s), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("longer than 127");
    name[CD_PARAMS_MAX_NAME] = '\0'; /* exactly 127 bytes is fine */
    CD_ASSERT_OK(cd_params_add(p, name, 1, s));
    ck_assert_str_eq(cd_params_name(p, 3), name);
    ck_assert_int_eq(cd_params_count(p), 4);
    cd_params_free(p);
}
END_TEST

START_TEST(bad_shapes)
{
    cd_params *p = make_set();
    int64_t ok[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CD_ASSERT_STATUS(cd_params_add(p, "r0", 0, ok), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_params_add(p, "r9", 9, ok), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_params_add(p, "r2^32+1", (INT64_C(1) << 32) + 1, ok), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_params_add(p, "neg", 1, (int64_t[]){-1}), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("neg");
    CD_ASSERT_STATUS(cd_params_add(p, "zero", 2, (int64_t[]){3, 0}), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("shape[1]");
    CD_ASSERT_STATUS(cd_params_add(p, "huge", 2, (int64_t[]){INT64_MAX / 2, 3}), CD_ERR_OVERFLOW);
    CD_ASSERT_STATUS(cd_params_add(p, "big", 1, (int64_t[]){INT64_MAX / 4}), CD_ERR_OVERFLOW);
    CD_ASSERT_OK(cd_params_add(p, "r8", 8, ok));
    ck_assert_int_eq(cd_params_count(p), 4);
    cd_params_free(p);
}
END_TEST

START_TEST(add_after_layout_is_a_state_error)
{
    cd_params *p = make_set();
    ck_assert_ptr_nonnull(cd_params_grad(p, 0));
    CD_ASSERT_STATUS(cd_params_add(p, "late", 1, (int64_t[]){1}), CD_ERR_STATE);
    CD_ASSERT_ERROR_MENTIONS("late");
    ck_assert_int_eq(cd_params_count(p), 3);
    cd_params_free(p);

    p = make_set();
    ck_assert_ptr_nonnull(cd_params_data(p, 2));
    CD_ASSERT_STATUS(cd__params_add(p, "late", 1, (int64_t[]){1}, NULL), CD_ERR_STATE);
    cd_params_free(p);
}
END_TEST

START_TEST(bad_indices)
{
    cd_params *p = make_set();
    int64_t shape[8];
    const int64_t bad[] = {-2, 3, 1000, INT64_MIN};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int64_t i = bad[k];
        cd_clear_error();
        ck_assert_ptr_null(cd_params_name(p, i));
        ck_assert_int_eq(cd_last_status(), CD_ERR_RANGE);
        ck_assert_int_eq(cd_params_rank(p, i), -1);
        ck_assert_int_eq(cd_params_numel_at(p, i), -1);
        ck_assert_ptr_null(cd_params_data(p, i));
        ck_assert_ptr_null(cd_params_grad(p, i));
        ck_assert_int_eq(cd__params_offset(p, i), -1);
        ck_assert_ptr_null(cd__params_dims(p, i));
        CD_ASSERT_STATUS(cd_params_shape(p, i, shape, 8), CD_ERR_RANGE);
    }
    /* -1 means the whole block only for data and grad. */
    ck_assert_int_eq(cd_params_rank(p, -1), -1);
    ck_assert_ptr_null(cd_params_name(p, -1));
    /* A bad index must not lay the set out. */
    ck_assert(!cd__params_is_final(p));
    CD_ASSERT_STATUS(cd_params_shape(p, 0, shape, 3), CD_ERR_SHAPE);
    int64_t idx = 9;
    CD_ASSERT_STATUS(cd_params_find(p, "nope", &idx), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("nope");
    ck_assert_int_eq(idx, -1);
    cd_params_free(p);
}
END_TEST

/* ---- initialisation ------------------------------------------------- */

static cd_rng *rng_for(uint64_t seed)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, seed));
    return r;
}

static void assert_within(cd_params *p, int64_t i, double bound)
{
    const float *x = cd_params_data(p, i);
    float b = (float)bound;
    int64_t n = cd_params_numel_at(p, i);
    bool any_nonzero = false;
    for (int64_t k = 0; k < n; k++) {
        ck_assert_msg(x[k] >= -b && x[k] <= b, "%s[%lld] = %g outside +-%g", cd_params_name(p, i),
                      (long long)k, x[k], bound);
        any_nonzero |= x[k] != 0.0f;
    }
    ck_assert(any_nonzero);
}

START_TEST(fan_in_follows_pytorch)
{
    ck_assert_int_eq(cd__init_fan_in(CD__LAYER_CONV2D, 4, (int64_t[]){16, 3, 7, 7}), 147);
    /* depthwise: O x 1 x 7 x 7 */
    ck_assert_int_eq(cd__init_fan_in(CD__LAYER_CONV2D, 4, (int64_t[]){32, 1, 7, 7}), 49);
    /* ConvTranspose2d is I x O x kh x kw: PyTorch reads size(1) = O. */
    ck_assert_int_eq(cd__init_fan_in(CD__LAYER_CONV_TRANSPOSE2D, 4, (int64_t[]){64, 8, 4, 4}), 128);
    ck_assert_int_eq(cd__init_fan_in(CD__LAYER_LINEAR, 2, (int64_t[]){128, 32}), 32);
    cd_clear_error();
    ck_assert_int_eq(cd__init_fan_in(CD__LAYER_LINEAR, 4, (int64_t[]){1, 2, 3, 4}), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_SHAPE);
    ck_assert_int_eq(cd__init_fan_in((cd__layer_kind)7, 2, (int64_t[]){1, 2}), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(layer_bounds)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    int64_t cw, cb, tw, tb, lw, lb, nw, nb;
    CD_ASSERT_OK(cd__params_add(p, "conv.weight", 4, (int64_t[]){8, 3, 5, 5}, &cw));
    CD_ASSERT_OK(cd__params_add(p, "conv.bias", 1, (int64_t[]){8}, &cb));
    CD_ASSERT_OK(cd__params_add(p, "up.weight", 4, (int64_t[]){6, 5, 4, 4}, &tw));
    CD_ASSERT_OK(cd__params_add(p, "up.bias", 1, (int64_t[]){5}, &tb));
    CD_ASSERT_OK(cd__params_add(p, "lin.weight", 2, (int64_t[]){10, 20}, &lw));
    CD_ASSERT_OK(cd__params_add(p, "lin.bias", 1, (int64_t[]){10}, &lb));
    CD_ASSERT_OK(cd__params_add(p, "norm.weight", 3, (int64_t[]){2, 3, 3}, &nw));
    CD_ASSERT_OK(cd__params_add(p, "norm.bias", 3, (int64_t[]){2, 3, 3}, &nb));
    cd_rng *rng = rng_for(7);
    CD_ASSERT_OK(cd__init_layer(p, CD__LAYER_CONV2D, cw, cb, rng));
    CD_ASSERT_OK(cd__init_layer(p, CD__LAYER_CONV_TRANSPOSE2D, tw, tb, rng));
    CD_ASSERT_OK(cd__init_layer(p, CD__LAYER_LINEAR, lw, lb, rng));
    CD_ASSERT_OK(cd__init_layer_norm(p, nw, nb));
    assert_within(p, cw, 1.0 / sqrt(75.0));
    assert_within(p, cb, 1.0 / sqrt(75.0));
    assert_within(p, tw, 1.0 / sqrt(80.0)); /* O * kh * kw = 5 * 16 */
    assert_within(p, tb, 1.0 / sqrt(80.0));
    assert_within(p, lw, 1.0 / sqrt(20.0));
    assert_within(p, lb, 1.0 / sqrt(20.0));
    for (int k = 0; k < 18; k++) {
        ck_assert(cd_params_data(p, nw)[k] == 1.0f);
        ck_assert(cd_params_data(p, nb)[k] == 0.0f);
    }
    /* The bound is actually reached: not a narrower distribution. */
    float maxabs = 0.0f;
    for (int k = 0; k < 600; k++) maxabs = fmaxf(maxabs, fabsf(cd_params_data(p, cw)[k]));
    ck_assert(maxabs > 0.95f / sqrtf(75.0f));
    cd_rng_free(rng);
    cd_params_free(p);
}
END_TEST

/* A 1000 x 1000 Linear weight: U(-b, b) with b = 1/sqrt(1000) has mean 0
 * (sd of the sample mean b/sqrt(3n) = 1.8e-5) and E[x^2] = b^2/3 (relative
 * sd of the sample value sqrt(4/5)/sqrt(n) = 9e-4). Tolerances are 5 sd. */
START_TEST(large_layer_moments)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    int64_t w;
    CD_ASSERT_OK(cd__params_add(p, "big.weight", 2, (int64_t[]){1000, 1000}, &w));
    cd_rng *rng = rng_for(2024);
    CD_ASSERT_OK(cd__init_layer(p, CD__LAYER_LINEAR, w, -1, rng));
    const float *x = cd_params_data(p, w);
    double n = 1e6, b = 1.0 / sqrt(1000.0), sum = 0.0, sq = 0.0;
    int64_t bins[10] = {0};
    for (int64_t k = 0; k < 1000000; k++) {
        sum += x[k];
        sq += (double)x[k] * x[k];
        int bin = (int)floor((x[k] + b) / (2 * b) * 10);
        bins[bin < 0 ? 0 : bin > 9 ? 9 : bin]++;
    }
    double mean = sum / n, m2 = sq / n;
    ck_assert_msg(fabs(mean) < 5 * b / sqrt(3 * n), "mean %g", mean);
    ck_assert_msg(fabs(m2 / (b * b / 3) - 1) < 5 * sqrt(0.8 / n), "E[x^2] %g vs %g", m2, b * b / 3);
    /* Each tenth of the interval holds 10% (binomial sd 300; 5 sd). */
    for (int i = 0; i < 10; i++)
        ck_assert_msg(llabs(bins[i] - 100000) < 1500, "bin %d holds %lld", i, (long long)bins[i]);
    cd_rng_free(rng);
    cd_params_free(p);
}
END_TEST

static void init_conv(uint64_t seed, float *out)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    int64_t w, b;
    CD_ASSERT_OK(cd__params_add(p, "c.weight", 4, (int64_t[]){4, 2, 3, 3}, &w));
    CD_ASSERT_OK(cd__params_add(p, "c.bias", 1, (int64_t[]){4}, &b));
    cd_rng *rng = rng_for(seed);
    CD_ASSERT_OK(cd__init_layer(p, CD__LAYER_CONV2D, w, b, rng));
    memcpy(out, cd_params_data(p, -1), 76 * sizeof(float));
    cd_rng_free(rng);
    cd_params_free(p);
}

START_TEST(init_is_deterministic_per_seed)
{
    float a[76], b[76], c[76];
    init_conv(1, a);
    init_conv(1, b);
    init_conv(2, c);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* The weight comes first from the stream, then the bias. */
    cd_rng *rng = rng_for(1);
    float u[76];
    CD_ASSERT_OK(cd_rng_uniform(rng, u, 72));
    double bound = 1.0 / sqrt(18.0);
    for (int k = 0; k < 72; k++) ck_assert(a[k] == (float)((2.0 * u[k] - 1.0) * bound));
    CD_ASSERT_OK(cd_rng_uniform(rng, u + 72, 4));
    for (int k = 72; k < 76; k++) ck_assert(a[k] == (float)((2.0 * u[k] - 1.0) * bound));
    cd_rng_free(rng);
}
END_TEST

START_TEST(init_errors)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    int64_t w, b, v;
    CD_ASSERT_OK(cd__params_add(p, "w", 3, (int64_t[]){4, 2, 3}, &w));
    CD_ASSERT_OK(cd__params_add(p, "b", 1, (int64_t[]){5}, &b));
    CD_ASSERT_OK(cd__params_add(p, "v", 2, (int64_t[]){4, 2}, &v));
    cd_rng *rng = rng_for(3);
    CD_ASSERT_STATUS(cd__init_layer(p, CD__LAYER_CONV2D, w, -1, rng), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("'w'");
    CD_ASSERT_STATUS(cd__init_layer(p, CD__LAYER_LINEAR, v, b, rng), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("'b'");
    CD_ASSERT_STATUS(cd__init_layer(p, CD__LAYER_LINEAR, 9, -1, rng), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__init_layer(p, CD__LAYER_LINEAR, v, 9, rng), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__init_layer(p, CD__LAYER_LINEAR, v, -1, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__init_layer(NULL, CD__LAYER_LINEAR, v, -1, rng), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__init_layer_norm(p, v, b), CD_ERR_SHAPE);
    float x[4];
    CD_ASSERT_STATUS(cd__init_uniform(rng, x, 4, -1.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__init_uniform(rng, x, 4, NAN), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__init_uniform(rng, x, 4, INFINITY), CD_ERR_RANGE);
    /* Failed inits left the values alone. */
    for (int64_t k = 0; k < cd_params_numel(p); k++) ck_assert(cd_params_data(p, -1)[k] == 0.0f);
    cd_rng_free(rng);
    cd_params_free(p);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, create_add_query);
    tcase_add_test(tc, flat_blocks_are_contiguous_and_aligned);
    tcase_add_test(tc, zero_grad_clears_only_gradients);
    tcase_add_test(tc, zero_grad_lays_out);
    tcase_add_test(tc, internal_add_reports_index);
    tcase_add_test(tc, empty_set);
    tcase_add_test(tc, many_tensors);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, null_arguments);
    tcase_add_test(tc, bad_names);
    tcase_add_test(tc, bad_shapes);
    tcase_add_test(tc, add_after_layout_is_a_state_error);
    tcase_add_test(tc, bad_indices);
    suite_add_tcase(s, tc);
    tc = tcase_create("init");
    tcase_add_test(tc, fan_in_follows_pytorch);
    tcase_add_test(tc, layer_bounds);
    tcase_add_test(tc, large_layer_moments);
    tcase_add_test(tc, init_is_deterministic_per_seed);
    tcase_add_test(tc, init_errors);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
