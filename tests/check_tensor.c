/* check_tensor.c - the opaque tensor: lifecycle, getters, copies, misuse. */
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "core.h"

START_TEST(create_is_zeroed_and_shaped)
{
    cd_tensor *t = NULL;
    int64_t shape[4] = {3, 1, 5, 7};
    CD_ASSERT_OK(cd_tensor_create(&t, 4, shape));
    ck_assert_int_eq(cd_tensor_rank(t), 4);
    ck_assert_int_eq(cd_tensor_numel(t), 105);
    ck_assert_int_eq(cd_tensor_dim(t, 0), 3);
    ck_assert_int_eq(cd_tensor_dim(t, 3), 7);
    ck_assert_int_eq(cd_tensor_dim(t, -1), 7);
    ck_assert_int_eq(cd_tensor_dim(t, -4), 3);
    int64_t got[8] = {0};
    CD_ASSERT_OK(cd_tensor_shape(t, got, 8));
    for (int i = 0; i < 4; i++) ck_assert_int_eq(got[i], shape[i]);
    float *d = cd_tensor_data(t);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq((uintptr_t)d % CD__ALIGN, 0);
    for (int i = 0; i < 105; i++) ck_assert(d[i] == 0.0f);
    cd_tensor_free(t);
}
END_TEST

START_TEST(ranks_one_to_max)
{
    int64_t shape[CD_TENSOR_MAX_RANK];
    for (int i = 0; i < CD_TENSOR_MAX_RANK; i++) shape[i] = 2;
    for (int32_t r = 1; r <= CD_TENSOR_MAX_RANK; r++) {
        cd_tensor *t = NULL;
        CD_ASSERT_OK(cd_tensor_create(&t, r, shape));
        ck_assert_int_eq(cd_tensor_numel(t), 1 << r);
        cd_tensor_free(t);
    }
}
END_TEST

START_TEST(bad_shapes_are_errors)
{
    cd_tensor *t = (cd_tensor *)0x1;
    CD_ASSERT_STATUS(cd_tensor_create(NULL, 1, (int64_t[]){1}), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_create(&t, 1, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(t); /* outputs are cleared on failure */
    CD_ASSERT_STATUS(cd_tensor_create(&t, 0, (int64_t[]){1}), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_tensor_create(&t, -2, (int64_t[]){1}), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_tensor_create(&t, CD_TENSOR_MAX_RANK + 1,
                                      (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}),
                     CD_ERR_SHAPE);
    /* Ranks are int64_t: 2^32 + 1 is refused, not read as 1. */
    CD_ASSERT_STATUS(cd_tensor_create(&t, (INT64_C(1) << 32) + 1, (int64_t[]){1}), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_tensor_create(&t, 2, (int64_t[]){4, 0}), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("shape[1]");
    CD_ASSERT_STATUS(cd_tensor_create(&t, 3, (int64_t[]){2, -5, 2}), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("-5");
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(size_overflow_is_an_error)
{
    cd_tensor *t = NULL;
    CD_ASSERT_STATUS(cd_tensor_create(&t, 2, (int64_t[]){INT64_MAX, 2}), CD_ERR_OVERFLOW);
    CD_ASSERT_STATUS(cd_tensor_create(&t, 4, (int64_t[]){1 << 20, 1 << 20, 1 << 20, 1 << 20}),
                     CD_ERR_OVERFLOW);
    /* Fits in int64 elements but not in bytes. */
    CD_ASSERT_STATUS(cd_tensor_create(&t, 1, (int64_t[]){INT64_MAX / 2}), CD_ERR_OVERFLOW);
    /* Representable but impossible to allocate: a clean out-of-memory. */
    CD_ASSERT_STATUS(cd_tensor_create(&t, 1, (int64_t[]){INT64_C(1) << 60}), CD_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(null_handles_are_errors)
{
    float buf[4];
    int64_t shape[4];
    CD_ASSERT_STATUS(cd_tensor_clone(NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *c = NULL;
    CD_ASSERT_STATUS(cd_tensor_clone(&c, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_tensor_rank(NULL), -1);
    CD_ASSERT_ERROR_MENTIONS("cd_tensor_rank");
    ck_assert_int_eq(cd_tensor_numel(NULL), -1);
    ck_assert_int_eq(cd_tensor_dim(NULL, 0), -1);
    ck_assert_ptr_null(cd_tensor_data(NULL));
    CD_ASSERT_ERROR_MENTIONS("cd_tensor_data");
    CD_ASSERT_STATUS(cd_tensor_shape(NULL, shape, 4), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_fill(NULL, 1.0f), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_copy_from(NULL, buf, 4), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_copy_to(NULL, buf, 4), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_reshape(NULL, 1, shape), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(NULL); /* a no-op */
}
END_TEST

START_TEST(copies_check_length)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 2, (int64_t[]){2, 3}));
    float in[6] = {1, 2, 3, 4, 5, 6}, out[7] = {0};
    CD_ASSERT_STATUS(cd_tensor_copy_from(t, in, 5), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("5");
    CD_ASSERT_STATUS(cd_tensor_copy_from(t, NULL, 6), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_tensor_copy_to(t, out, 7), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_tensor_copy_to(t, out, -1), CD_ERR_SHAPE);
    CD_ASSERT_OK(cd_tensor_copy_from(t, in, 6));
    CD_ASSERT_OK(cd_tensor_copy_to(t, out, 6));
    for (int i = 0; i < 6; i++) ck_assert(out[i] == in[i]);
    ck_assert(out[6] == 0.0f); /* nothing written past count */
    cd_tensor_free(t);
}
END_TEST

START_TEST(clone_is_deep_and_fill_sets_all)
{
    cd_tensor *t = NULL, *c = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 3, (int64_t[]){2, 2, 2}));
    CD_ASSERT_OK(cd_tensor_fill(t, 2.5f));
    CD_ASSERT_OK(cd_tensor_clone(&c, t));
    ck_assert_ptr_ne(cd_tensor_data(c), cd_tensor_data(t));
    ck_assert_int_eq(cd_tensor_rank(c), 3);
    CD_ASSERT_OK(cd_tensor_fill(t, NAN));
    for (int i = 0; i < 8; i++) {
        ck_assert(cd_tensor_data(c)[i] == 2.5f);
        ck_assert(isnan(cd_tensor_data(t)[i]));
    }
    cd_tensor_free(c);
    cd_tensor_free(t);
}
END_TEST

START_TEST(reshape_keeps_data)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 2, (int64_t[]){4, 6}));
    float *before = cd_tensor_data(t);
    before[23] = 7.0f;
    CD_ASSERT_OK(cd_tensor_reshape(t, 4, (int64_t[]){2, 1, 3, 4}));
    ck_assert_ptr_eq(cd_tensor_data(t), before);
    ck_assert_int_eq(cd_tensor_dim(t, 2), 3);
    CD_ASSERT_STATUS(cd_tensor_reshape(t, 1, (int64_t[]){25}), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_tensor_reshape(t, 1, (int64_t[]){0}), CD_ERR_SHAPE);
    ck_assert_int_eq(cd_tensor_rank(t), 4); /* unchanged after a failure */
    int64_t small[2];
    CD_ASSERT_STATUS(cd_tensor_shape(t, small, 2), CD_ERR_SHAPE);
    ck_assert_int_eq(cd_tensor_dim(t, 4), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_dim(t, -5), -1);
    /* Axes and capacities are int64_t too. */
    ck_assert_int_eq(cd_tensor_dim(t, INT64_C(1) << 32), -1);
    ck_assert_int_eq(cd_tensor_dim(t, INT64_MIN), -1);
    CD_ASSERT_STATUS(cd_tensor_reshape(t, (INT64_C(1) << 32) + 1, (int64_t[]){24}), CD_ERR_SHAPE);
    int64_t big[8];
    CD_ASSERT_OK(cd_tensor_shape(t, big, INT64_C(1) << 33));
    ck_assert(big[0] == 2 && big[3] == 4);
    cd_tensor_free(t);
}
END_TEST

START_TEST(internal_expect_reports_shapes)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, (int64_t[]){3, 1, 28, 28}));
    CD_ASSERT_OK(cd__tensor_expect(t, "f", "x", 4, (int64_t[]){-1, 1, 28, 28}));
    CD_ASSERT_STATUS(cd__tensor_expect(t, "f", "x", 4, (int64_t[]){3, 2, 28, 28}), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("3x2x28x28");
    CD_ASSERT_ERROR_MENTIONS("3x1x28x28");
    CD_ASSERT_STATUS(cd__tensor_expect(t, "f", "x", 3, (int64_t[]){3, 1, 28}), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__tensor_expect(NULL, "f", "x", 1, (int64_t[]){1}), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(t);
}
END_TEST

/* The finiteness scan tests blocks of 1024 at once: a bad value at either
 * end of a block, in the last partial block, or several, is found at its
 * own index; the largest floats and subnormals are finite. */
START_TEST(first_non_finite_finds_the_first)
{
    enum { N = 2500 };
    float *x = calloc(N, sizeof *x);
    ck_assert_ptr_nonnull(x);
    x[0] = FLT_MAX, x[1] = -FLT_MAX, x[2] = 1e-45f, x[N - 1] = -0.0f;
    ck_assert_int_eq(cd__first_non_finite(x, N), -1);
    ck_assert_int_eq(cd__first_non_finite(x, 0), -1);
    const int64_t at[] = {0, 1023, 1024, 2047, 2048, N - 1};
    const float bad[] = {NAN, INFINITY, -INFINITY, -NAN};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            const float keep = x[at[i]];
            x[at[i]] = bad[b];
            ck_assert_int_eq(cd__first_non_finite(x, N), at[i]);
            ck_assert_int_eq(cd__first_non_finite(x, at[i]), -1);
            x[at[i]] = keep;
        }
    }
    x[1500] = NAN, x[1100] = INFINITY;
    ck_assert_int_eq(cd__first_non_finite(x, N), 1100);
    free(x);
}
END_TEST

START_TEST(check_finite_names_the_element)
{
    cd_tensor *t = NULL, *v = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, (int64_t[]){2, 3, 4, 5}));
    CD_ASSERT_OK(cd_tensor_create(&v, 1, (int64_t[]){7}));
    CD_ASSERT_OK(cd__check_finite(t, "f", "x"));
    /* image 1, channel 2, row 3, column 4: the last element. */
    cd_tensor_data(t)[119] = NAN;
    CD_ASSERT_STATUS(cd__check_finite(t, "f", "x"), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("f: x[119] is nan (image 1, channel 2, row 3, column 4)");
    cd_tensor_data(t)[26] = -INFINITY; /* image 0, channel 1, row 1, column 1 */
    CD_ASSERT_STATUS(cd__check_finite(t, "f", "x"), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("x[26] is -inf (image 0, channel 1, row 1, column 1)");
    cd_tensor_data(v)[6] = INFINITY;
    CD_ASSERT_STATUS(cd__check_finite(v, "g", "v"), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("g: v[6] is inf");
    cd_tensor_free(t);
    cd_tensor_free(v);
}
END_TEST

START_TEST(copy_rows_moves_slices)
{
    cd_tensor *a = NULL, *b = NULL, *c = NULL;
    const int64_t sa[3] = {4, 2, 3}, sb[3] = {2, 2, 3}, sc[3] = {2, 3, 2};
    CD_ASSERT_OK(cd_tensor_create(&a, 3, sa));
    CD_ASSERT_OK(cd_tensor_create(&b, 3, sb));
    CD_ASSERT_OK(cd_tensor_create(&c, 3, sc));
    float *x = cd_tensor_data(a), *y = cd_tensor_data(b);
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    /* Rows 1..2 of a into b, then b back over rows 2..3 of a. */
    CD_ASSERT_OK(cd_tensor_copy_rows(b, 0, a, 1, 2));
    for (int i = 0; i < 12; i++) ck_assert(y[i] == (float)(6 + i));
    CD_ASSERT_OK(cd_tensor_copy_rows(a, 2, b, 0, 2));
    for (int i = 0; i < 12; i++) ck_assert(x[i] == (float)i);
    for (int i = 12; i < 24; i++) ck_assert(x[i] == (float)(i - 6));
    /* Overlapping rows of one tensor move as memmove would. */
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    CD_ASSERT_OK(cd_tensor_copy_rows(a, 1, a, 0, 3));
    for (int i = 6; i < 24; i++) ck_assert(x[i] == (float)(i - 6));
    CD_ASSERT_OK(cd_tensor_copy_rows(b, 2, a, 4, 0)); /* nothing, at the ends */
    /* Misuse. */
    ck_assert_int_eq(cd_tensor_copy_rows(c, 0, a, 0, 1), CD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(cd_last_error(), "axis 1 is 3 in dst and 2 in src"));
    ck_assert_int_eq(cd_tensor_copy_rows(b, 1, a, 0, 2), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_copy_rows(b, 0, a, 3, 2), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_copy_rows(b, -1, a, 0, 1), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_copy_rows(b, 0, a, 0, -1), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_copy_rows(b, 0, a, INT64_MAX, 2), CD_ERR_RANGE);
    ck_assert_int_eq(cd_tensor_copy_rows(NULL, 0, a, 0, 1), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_tensor_copy_rows(b, 0, NULL, 0, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_tensor_reshape(c, 1, (const int64_t[]){12}));
    ck_assert_int_eq(cd_tensor_copy_rows(c, 0, a, 0, 1), CD_ERR_SHAPE);
    cd_tensor_free(a), cd_tensor_free(b), cd_tensor_free(c);
    cd_clear_error();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, create_is_zeroed_and_shaped);
    tcase_add_test(tc, ranks_one_to_max);
    tcase_add_test(tc, bad_shapes_are_errors);
    tcase_add_test(tc, size_overflow_is_an_error);
    tcase_add_test(tc, null_handles_are_errors);
    tcase_add_test(tc, copies_check_length);
    tcase_add_test(tc, clone_is_deep_and_fill_sets_all);
    tcase_add_test(tc, reshape_keeps_data);
    tcase_add_test(tc, internal_expect_reports_shapes);
    tcase_add_test(tc, first_non_finite_finds_the_first);
    tcase_add_test(tc, check_finite_names_the_element);
    tcase_add_test(tc, copy_rows_moves_slices);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
