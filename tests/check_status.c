/* check_status.c - status codes, error messages, versions. */
#include "test_util.h"

#include <pthread.h>

#include "core.h"

static const cd_status all_codes[] = {CD_OK,
                                      CD_ERR_INVALID_ARGUMENT,
                                      CD_ERR_OUT_OF_MEMORY,
                                      CD_ERR_SHAPE,
                                      CD_ERR_OVERFLOW,
                                      CD_ERR_RANGE,
                                      CD_ERR_NOT_FINITE,
                                      CD_ERR_IO,
                                      CD_ERR_NOT_FOUND,
                                      CD_ERR_FORMAT,
                                      CD_ERR_CHECKSUM,
                                      CD_ERR_VERSION,
                                      CD_ERR_STATE,
                                      CD_ERR_UNSUPPORTED,
                                      CD_ERR_CANCELLED,
                                      CD_ERR_INTERNAL};
#define N_CODES (sizeof all_codes / sizeof all_codes[0])

START_TEST(codes_are_fixed)
{
    /* Append-only ABI: these numbers may never change. */
    ck_assert_int_eq(CD_OK, 0);
    ck_assert_int_eq(CD_ERR_INVALID_ARGUMENT, -1);
    ck_assert_int_eq(CD_ERR_FORMAT, -9);
    ck_assert_int_eq(CD_ERR_INTERNAL, -15);
    for (size_t i = 1; i < N_CODES; i++) ck_assert_int_eq(all_codes[i], -(int)i);
}
END_TEST

START_TEST(strings_are_distinct)
{
    for (size_t i = 0; i < N_CODES; i++) {
        const char *s = cd_status_string(all_codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown status");
        for (size_t j = 0; j < i; j++) ck_assert_str_ne(s, cd_status_string(all_codes[j]));
    }
    ck_assert_str_eq(cd_status_string((cd_status)-9999), "unknown status");
    ck_assert_str_eq(cd_status_string((cd_status)7), "unknown status");
}
END_TEST

START_TEST(last_error_names_function_and_argument)
{
    cd_clear_error();
    ck_assert_str_eq(cd_last_error(), "");
    ck_assert_int_eq(cd_last_status(), CD_OK);
    CD_ASSERT_STATUS(cd_tensor_create(NULL, 1, (int64_t[]){1}), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("cd_tensor_create");
    CD_ASSERT_ERROR_MENTIONS("out");
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);

    /* A later success leaves the message in place, like errno. */
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 1, (int64_t[]){2}));
    CD_ASSERT_ERROR_MENTIONS("cd_tensor_create");
    cd_tensor_free(t);
    cd_clear_error();
    ck_assert_str_eq(cd_last_error(), "");
}
END_TEST

START_TEST(last_error_stays_on_one_line)
{
    /* Whatever a formatted name holds, control bytes become '?'. */
    CD_ASSERT_STATUS(cd__error(CD_ERR_FORMAT, "tensor '%s' at %d", "a\nb\r\x1b[2J\x7f\tc", 3),
                     CD_ERR_FORMAT);
    ck_assert_str_eq(cd_last_error(), "tensor 'a?b??[2J??c' at 3");
    /* Bytes above 0x7f (UTF-8 in a path) stay. */
    cd__error(CD_ERR_IO, "'%s'", "caf\xc3\xa9");
    ck_assert_str_eq(cd_last_error(), "'caf\xc3\xa9'");
}
END_TEST

static void *fail_in_thread(void *arg)
{
    (void)arg;
    static char seen[256];
    snprintf(seen, sizeof seen, "%s", cd_last_error());
    cd_tensor_create(NULL, 0, NULL);
    return seen;
}

START_TEST(last_error_is_thread_local)
{
    cd_clear_error();
    cd_tensor_rank(NULL);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", cd_last_error());
    ck_assert(strstr(mine, "cd_tensor_rank") != NULL);

    pthread_t th;
    void *ret = NULL;
    ck_assert_int_eq(pthread_create(&th, NULL, fail_in_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(th, &ret), 0);
    ck_assert_str_eq((const char *)ret, ""); /* a new thread starts clean */
    ck_assert_str_eq(cd_last_error(), mine); /* its failure did not leak here */
}
END_TEST

/* Wrapping the last message in context: the message is an argument of the
 * call that overwrites it, and must come out once and whole. */
START_TEST(wrapping_the_last_error)
{
    cd__error(CD_ERR_RANGE, "cd_degradation_set_prior: std = -1 must be at least 0");
    cd__error(CD_ERR_FORMAT, "checkpoint: bad prior: %s", cd_last_error());
    ck_assert_str_eq(cd_last_error(),
                     "checkpoint: bad prior: cd_degradation_set_prior: std = -1 must be at "
                     "least 0");
    ck_assert_int_eq(cd_last_status(), CD_ERR_FORMAT);
    cd__error(CD_ERR_IO, "%s; %s", cd_last_error(), cd_last_error());
    ck_assert_str_eq(cd_last_error(),
                     "checkpoint: bad prior: cd_degradation_set_prior: std = -1 must be at "
                     "least 0; checkpoint: bad prior: cd_degradation_set_prior: std = -1 "
                     "must be at least 0");
    cd_clear_error();
}
END_TEST

START_TEST(saved_error_comes_back)
{
    cd__error(CD_ERR_NOT_FOUND, "cd_model_load: 'a.cdm' was not found");
    cd__saved_error e;
    cd__error_save(&e);
    cd__error(CD_ERR_SHAPE, "something else");
    cd__error_restore(&e);
    ck_assert_int_eq(cd_last_status(), CD_ERR_NOT_FOUND);
    ck_assert_str_eq(cd_last_error(), "cd_model_load: 'a.cdm' was not found");
    /* A clear state comes back clear. */
    cd_clear_error();
    cd__error_save(&e);
    cd__error(CD_ERR_IO, "a failure in between");
    cd__error_restore(&e);
    ck_assert_int_eq(cd_last_status(), CD_OK);
    ck_assert_str_eq(cd_last_error(), "");
}
END_TEST

START_TEST(versions)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", CD_VERSION_MAJOR, CD_VERSION_MINOR, CD_VERSION_PATCH);
    ck_assert_str_eq(cd_version_string(), want);
    ck_assert_int_eq(cd_abi_version(), CD_ABI_VERSION);
}
END_TEST

/* Every name round-trips, names are unique within an enumeration, and
 * the spellings files and the command line rely on stay as they are. */
START_TEST(enum_names)
{
    for (int32_t e = 0; e <= (int32_t)CD_ENUM_LOSS; e++) {
        const int64_t n = cd_enum_count((cd_enum)e);
        ck_assert_int_ge(n, 2);
        for (int32_t v = 0; v < n; v++) {
            const char *name = cd_enum_name((cd_enum)e, v);
            ck_assert_ptr_nonnull(name);
            int32_t back = -1;
            ck_assert_int_eq(cd_enum_parse((cd_enum)e, name, &back), CD_OK);
            ck_assert_int_eq(back, v);
        }
        ck_assert_ptr_null(cd_enum_name((cd_enum)e, (int32_t)n));
        ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
        ck_assert_ptr_null(cd_enum_name((cd_enum)e, -1));
    }
    ck_assert_int_eq(cd_enum_count(CD_ENUM_DEGRADATION_KIND), CD_DEGRADATION_FADE + 1);
    ck_assert_int_eq(cd_enum_count(CD_ENUM_SCHEDULE_KIND), CD_SCHEDULE_LINEAR_REPORT + 1);
    ck_assert_str_eq(cd_enum_name(CD_ENUM_DECODER_KIND, CD_DECODER_UNET), "unet");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_SCHEDULE_KIND, CD_SCHEDULE_COSINE_REPORT),
                     "cosine-report");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_PREDICTION, CD_PREDICT_V), "v");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_SAMPLER_KIND, CD_SAMPLER_COLD2), "cold2");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_METRIC_REDUCTION, CD_REDUCTION_PER_IMAGE), "per_image");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_METRIC_REDUCTION, CD_REDUCTION_REPORT), "report");
    ck_assert_int_eq(cd_enum_count(CD_ENUM_LOSS), 2);
    ck_assert_str_eq(cd_enum_name(CD_ENUM_LOSS, CD_LOSS_MSE), "mse");
    ck_assert_str_eq(cd_enum_name(CD_ENUM_LOSS, CD_LOSS_L1), "l1");
    ck_assert_int_eq(cd_enum_count(CD_ENUM_DECODER_KIND), CD_DECODER_UNET + 1);
    ck_assert_int_eq(cd_enum_count(CD_ENUM_SAMPLER_KIND), CD_SAMPLER_DIRECT + 1);
    ck_assert_int_eq(cd_enum_count(CD_ENUM_PREDICTION), CD_PREDICT_V + 1);
    int32_t v = 7;
    ck_assert_int_eq(cd_enum_parse(CD_ENUM_PADDING, "Reflect", &v), CD_ERR_NOT_FOUND);
    ck_assert_int_eq(v, 7);
    ck_assert_ptr_nonnull(strstr(cd_last_error(), "'Reflect' is not a cd_padding (one of: "
                                                  "reflect, circular)"));
    ck_assert_int_eq(cd_enum_parse(CD_ENUM_PADDING, NULL, &v), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_enum_parse(CD_ENUM_PADDING, "reflect", NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_enum_parse((cd_enum)11, "reflect", &v), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_enum_count((cd_enum)-1), -1);
    ck_assert_ptr_nonnull(strstr(cd_last_error(), "is not a cd_enum"));
    cd_clear_error();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, codes_are_fixed);
    tcase_add_test(tc, strings_are_distinct);
    tcase_add_test(tc, last_error_names_function_and_argument);
    tcase_add_test(tc, last_error_stays_on_one_line);
    tcase_add_test(tc, last_error_is_thread_local);
    tcase_add_test(tc, wrapping_the_last_error);
    tcase_add_test(tc, saved_error_comes_back);
    tcase_add_test(tc, versions);
    tcase_add_test(tc, enum_names);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
