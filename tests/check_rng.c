/* check_rng.c - Philox4x32-10: known answers, the documented mappings,
 * determinism, splitting, state, thread independence and statistics. */
#include "test_util.h"

#include <math.h>
#include <stdint.h>

#include "core.h"

void cd__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Known-answer vectors from Random123's kat_vectors (philox4x32, 10 rounds). */
START_TEST(philox_known_answers)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        cd__philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == kat[i].out[j], "vector %zu word %d: %08x != %08x", i, j, out[j],
                          kat[i].out[j]);
    }
}
END_TEST

/* The block for counter value c of seed `seed` (c < 2^64). */
static void block(uint64_t seed, uint64_t c, uint32_t w[4])
{
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    cd__philox4x32_10(ctr, key, w);
}

START_TEST(uniform_mapping_is_documented)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 42));
    float u[10];
    CD_ASSERT_OK(cd_rng_uniform(r, u, 10)); /* blocks 0, 1, 2 (last partly) */
    for (int i = 0; i < 10; i++) {
        uint32_t w[4];
        block(42, (uint64_t)(i / 4), w);
        ck_assert(u[i] == (float)(w[i % 4] >> 8) * 0x1p-24f);
        ck_assert(u[i] >= 0.0f && u[i] < 1.0f);
    }
    /* The next call starts at block 3, not inside block 2. */
    CD_ASSERT_OK(cd_rng_uniform(r, u, 1));
    uint32_t w[4];
    block(42, 3, w);
    ck_assert(u[0] == (float)(w[0] >> 8) * 0x1p-24f);
    cd_rng_free(r);
}
END_TEST

START_TEST(normal_mapping_is_documented)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 7));
    float z[5];
    CD_ASSERT_OK(cd_rng_normal(r, z, 5));
    for (int b = 0; b < 3; b++) {
        uint32_t w[4];
        block(7, (uint64_t)b, w);
        double u1 = ((double)((((uint64_t)w[0] << 32) | w[1]) >> 11) + 0.5) * 0x1p-53;
        double u2 = (double)((((uint64_t)w[2] << 32) | w[3]) >> 11) * 0x1p-53;
        double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        ck_assert(z[2 * b] == (float)(rad * cos(th)));
        if (2 * b + 1 < 5) ck_assert(z[2 * b + 1] == (float)(rad * sin(th)));
    }
    cd_rng_free(r);
}
END_TEST

/* A pinned prefix of the stream (docs/rng.md), computed by an independent
 * Python implementation of the documented algorithm. If this changes,
 * seeded results change for every user: that needs a new RNG format. */
START_TEST(reference_stream_is_stable)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 42));
    int64_t k[4];
    CD_ASSERT_OK(cd_rng_int_range(r, k, 4, 0, 9));
    float z[2];
    CD_ASSERT_OK(cd_rng_normal(r, z, 2));
    uint64_t state[CD_RNG_STATE_WORDS];
    CD_ASSERT_OK(cd_rng_get_state(r, state));
    ck_assert_uint_eq(state[0], 42);
    ck_assert_uint_eq(state[1], 5); /* 4 integer blocks (no rejections) + 1 */
    const int64_t want_k[4] = {6, 9, 8, 7};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(k[i], want_k[i]);
    ck_assert_float_eq_tol(z[0], -0.66036719f, 1e-6);
    ck_assert_float_eq_tol(z[1], 1.34278345f, 1e-6);
    cd_rng_free(r);
}
END_TEST

START_TEST(same_seed_same_stream)
{
    cd_rng *a = NULL, *b = NULL;
    CD_ASSERT_OK(cd_rng_create(&a, 123456789));
    CD_ASSERT_OK(cd_rng_create(&b, 123456789));
    float x[100], y[100];
    CD_ASSERT_OK(cd_rng_normal(a, x, 100));
    CD_ASSERT_OK(cd_rng_normal(b, y, 100));
    ck_assert_mem_eq(x, y, sizeof x);
    CD_ASSERT_OK(cd_rng_normal(a, x, 100));
    ck_assert(memcmp(x, y, sizeof x) != 0); /* the stream moved on */
    cd_rng_free(a);
    cd_rng_free(b);
    CD_ASSERT_OK(cd_rng_create(&a, 1));
    CD_ASSERT_OK(cd_rng_create(&b, 2));
    CD_ASSERT_OK(cd_rng_normal(a, x, 100));
    CD_ASSERT_OK(cd_rng_normal(b, y, 100));
    ck_assert(memcmp(x, y, sizeof x) != 0);
    cd_rng_free(a);
    cd_rng_free(b);
}
END_TEST

START_TEST(split_is_deterministic_and_independent)
{
    cd_rng *p = NULL, *c1 = NULL, *c2 = NULL, *c3 = NULL;
    CD_ASSERT_OK(cd_rng_create(&p, 99));
    CD_ASSERT_OK(cd_rng_split(&c1, p, 5));
    float skip[64];
    CD_ASSERT_OK(cd_rng_uniform(p, skip, 64)); /* drawing from p ... */
    CD_ASSERT_OK(cd_rng_split(&c2, p, 5));     /* ... does not change split 5 */
    CD_ASSERT_OK(cd_rng_split(&c3, p, 6));
    float a[32], b[32], c[32], d[32];
    CD_ASSERT_OK(cd_rng_uniform(c1, a, 32));
    CD_ASSERT_OK(cd_rng_uniform(c2, b, 32));
    CD_ASSERT_OK(cd_rng_uniform(c3, c, 32));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* A child differs from its parent's own stream. */
    cd_rng *fresh = NULL;
    CD_ASSERT_OK(cd_rng_create(&fresh, 99));
    CD_ASSERT_OK(cd_rng_uniform(fresh, d, 32));
    ck_assert(memcmp(a, d, sizeof a) != 0);
    cd_rng_free(p);
    cd_rng_free(c1);
    cd_rng_free(c2);
    cd_rng_free(c3);
    cd_rng_free(fresh);
}
END_TEST

START_TEST(state_round_trip)
{
    cd_rng *a = NULL, *b = NULL;
    CD_ASSERT_OK(cd_rng_create(&a, 5));
    float x[7], y[7];
    CD_ASSERT_OK(cd_rng_normal(a, x, 7));
    uint64_t st[CD_RNG_STATE_WORDS];
    CD_ASSERT_OK(cd_rng_get_state(a, st));
    CD_ASSERT_OK(cd_rng_normal(a, x, 7));
    CD_ASSERT_OK(cd_rng_create(&b, 0));
    CD_ASSERT_OK(cd_rng_set_state(b, st));
    CD_ASSERT_OK(cd_rng_normal(b, y, 7));
    ck_assert_mem_eq(x, y, sizeof x);
    st[3] ^= 1;
    CD_ASSERT_STATUS(cd_rng_set_state(b, st), CD_ERR_FORMAT);
    CD_ASSERT_STATUS(cd_rng_get_state(NULL, st), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_rng_set_state(b, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_rng_free(a);
    cd_rng_free(b);
}
END_TEST

START_TEST(counter_carries_into_high_word)
{
    cd_rng *a = NULL;
    CD_ASSERT_OK(cd_rng_create(&a, 3));
    uint64_t st[CD_RNG_STATE_WORDS];
    CD_ASSERT_OK(cd_rng_get_state(a, st));
    st[1] = UINT64_MAX;
    CD_ASSERT_OK(cd_rng_set_state(a, st));
    float u[8];
    CD_ASSERT_OK(cd_rng_uniform(a, u, 8)); /* blocks 2^64-1 and 2^64 */
    CD_ASSERT_OK(cd_rng_get_state(a, st));
    ck_assert_uint_eq(st[1], 1);
    ck_assert_uint_eq(st[2], 1);
    uint32_t w[4], ctr[4] = {0, 0, 1, 0}, key[2] = {3, 0};
    cd__philox4x32_10(ctr, key, w);
    ck_assert(u[4] == (float)(w[0] >> 8) * 0x1p-24f);
    cd_rng_free(a);
}
END_TEST

START_TEST(results_do_not_depend_on_thread_count)
{
    enum { N = 300001 }; /* large enough to run in parallel, odd on purpose */
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    ck_assert(x && y);
    int64_t before = cd_get_num_threads();
    for (int kind = 0; kind < 2; kind++) {
        cd_rng *a = NULL, *b = NULL;
        CD_ASSERT_OK(cd_rng_create(&a, 11));
        CD_ASSERT_OK(cd_rng_create(&b, 11));
        CD_ASSERT_OK(cd_set_num_threads(1));
        CD_ASSERT_OK(kind ? cd_rng_normal(a, x, N) : cd_rng_uniform(a, x, N));
        CD_ASSERT_OK(cd_set_num_threads(4));
        CD_ASSERT_OK(kind ? cd_rng_normal(b, y, N) : cd_rng_uniform(b, y, N));
        ck_assert_mem_eq(x, y, N * sizeof *x);
        cd_rng_free(a);
        cd_rng_free(b);
    }
    CD_ASSERT_OK(cd_set_num_threads(before));
    free(x);
    free(y);
}
END_TEST

START_TEST(normal_moments)
{
    enum { N = 1000000 };
    float *x = malloc(N * sizeof *x);
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 2024));
    CD_ASSERT_OK(cd_rng_normal(r, x, N));
    double m = 0, v = 0, k = 0;
    for (int i = 0; i < N; i++) m += x[i];
    m /= N;
    for (int i = 0; i < N; i++) {
        double d = x[i] - m;
        v += d * d;
        k += d * d * d * d;
    }
    v /= N;
    k /= N;
    /* Standard errors: mean 1e-3, variance 1.4e-3, 4th moment 1e-2: 5 sigma. */
    ck_assert_msg(fabs(m) < 5e-3, "mean %g", m);
    ck_assert_msg(fabs(v - 1) < 7e-3, "variance %g", v);
    ck_assert_msg(fabs(k - 3) < 5e-2, "fourth moment %g", k);
    free(x);
    cd_rng_free(r);
}
END_TEST

START_TEST(uniform_moments)
{
    enum { N = 1000000 };
    float *x = malloc(N * sizeof *x);
    cd_rng *r = NULL;
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 77));
    CD_ASSERT_OK(cd_tensor_create(&t, 1, (int64_t[]){N}));
    CD_ASSERT_OK(cd_rng_uniform_tensor(r, t));
    CD_ASSERT_OK(cd_tensor_copy_to(t, x, N));
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(x[i] >= 0.0f && x[i] < 1.0f);
        m += x[i];
    }
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - m) * (x[i] - m);
    v /= N;
    ck_assert_msg(fabs(m - 0.5) < 5 * 0.000289, "mean %g", m);      /* sd 1/sqrt(12N) */
    ck_assert_msg(fabs(v - 1.0 / 12) < 5 * 0.0000745, "var %g", v); /* sd sqrt(1/180N) */
    cd_tensor_free(t);
    free(x);
    cd_rng_free(r);
}
END_TEST

START_TEST(normal_tensor_matches_array)
{
    cd_rng *a = NULL, *b = NULL;
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_rng_create(&a, 8));
    CD_ASSERT_OK(cd_rng_create(&b, 8));
    CD_ASSERT_OK(cd_tensor_create(&t, 2, (int64_t[]){3, 5}));
    CD_ASSERT_OK(cd_rng_normal_tensor(a, t));
    float x[15];
    CD_ASSERT_OK(cd_rng_normal(b, x, 15));
    ck_assert_mem_eq(cd_tensor_data(t), x, sizeof x);
    CD_ASSERT_STATUS(cd_rng_normal_tensor(a, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_rng_uniform_tensor(NULL, t), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(t);
    cd_rng_free(a);
    cd_rng_free(b);
}
END_TEST

START_TEST(int_range_is_uniform_and_bounded)
{
    enum { N = 600000, K = 6 };
    int64_t *v = malloc(N * sizeof *v);
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 31337));
    CD_ASSERT_OK(cd_rng_int_range(r, v, N, -2, 3));
    long counts[K] = {0};
    for (int i = 0; i < N; i++) {
        ck_assert(v[i] >= -2 && v[i] <= 3);
        counts[v[i] + 2]++;
    }
    double chi2 = 0, e = (double)N / K;
    for (int i = 0; i < K; i++) chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ck_assert_msg(chi2 < 20.5, "chi-square %g with 5 dof", chi2); /* p ~ 0.001 */
    /* Degenerate and extreme ranges. */
    CD_ASSERT_OK(cd_rng_int_range(r, v, 10, 4, 4));
    for (int i = 0; i < 10; i++) ck_assert_int_eq(v[i], 4);
    CD_ASSERT_OK(cd_rng_int_range(r, v, 1000, INT64_MIN, INT64_MAX));
    int negative = 0;
    for (int i = 0; i < 1000; i++) negative += v[i] < 0;
    ck_assert(negative > 400 && negative < 600);
    CD_ASSERT_OK(cd_rng_int_range(r, v, 0, 0, 1)); /* n = 0 is fine */
    free(v);
    cd_rng_free(r);
}
END_TEST

START_TEST(misuse_is_an_error)
{
    cd_rng *r = NULL;
    float x[4];
    int64_t k[4];
    CD_ASSERT_STATUS(cd_rng_create(NULL, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_rng_create(&r, 1));
    CD_ASSERT_STATUS(cd_rng_uniform(NULL, x, 4), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_rng_uniform(r, NULL, 4), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_rng_normal(r, x, -1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_rng_int_range(r, k, 4, 5, 4), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("lo = 5");
    CD_ASSERT_STATUS(cd_rng_split(NULL, r, 0), CD_ERR_INVALID_ARGUMENT);
    cd_rng *child = (cd_rng *)0x1;
    CD_ASSERT_STATUS(cd_rng_split(&child, NULL, 0), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(child);
    CD_ASSERT_STATUS(cd_set_num_threads(0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_set_num_threads(CD_MAX_THREADS + 1), CD_ERR_RANGE);
    cd_rng_free(r);
    cd_rng_free(NULL);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, uniform_mapping_is_documented);
    tcase_add_test(tc, normal_mapping_is_documented);
    tcase_add_test(tc, reference_stream_is_stable);
    tcase_add_test(tc, same_seed_same_stream);
    tcase_add_test(tc, split_is_deterministic_and_independent);
    tcase_add_test(tc, state_round_trip);
    tcase_add_test(tc, counter_carries_into_high_word);
    tcase_add_test(tc, results_do_not_depend_on_thread_count);
    tcase_add_test(tc, normal_moments);
    tcase_add_test(tc, uniform_moments);
    tcase_add_test(tc, normal_tensor_matches_array);
    tcase_add_test(tc, int_range_is_uniform_and_bounded);
    tcase_add_test(tc, misuse_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
