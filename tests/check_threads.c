/* check_threads.c - the thread count and the internal worker pool. */
#include "test_util.h"

#include <float.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "core.h"

typedef struct {
    atomic_int *hits;
    int64_t n;
} count_ctx;

static void count_task(void *ctx, int64_t i)
{
    count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[i], 1);
}

static void run_and_check(int64_t n)
{
    atomic_int *hits = calloc((size_t)n + 1, sizeof *hits);
    count_ctx c = {hits, n};
    cd__parallel_for(n, count_task, &c);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(atomic_load(&hits[i]) == 1, "task %lld ran %d times", (long long)i,
                      atomic_load(&hits[i]));
    ck_assert_int_eq(atomic_load(&hits[n]), 0);
    free(hits);
}

START_TEST(every_task_runs_once)
{
    const int64_t counts[] = {1, 2, 3, 8};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        CD_ASSERT_OK(cd_set_num_threads(counts[k]));
        ck_assert_int_eq(cd_get_num_threads(), counts[k]);
        for (int64_t n = 0; n < 40; n++) run_and_check(n);
        run_and_check(100000);
    }
}
END_TEST

static void nested_task(void *ctx, int64_t i)
{
    (void)i;
    run_and_check(17); /* the pool is busy: runs inline */
    atomic_fetch_add((atomic_int *)ctx, 1);
}

START_TEST(nested_loops_complete)
{
    CD_ASSERT_OK(cd_set_num_threads(3));
    atomic_int done = 0;
    cd__parallel_for(9, nested_task, &done);
    ck_assert_int_eq(atomic_load(&done), 9);
}
END_TEST

/* cd__task_slot: below min(n, threads), never held by two running tasks
 * at once, and the task's own again after a loop it ran. A loop inside a
 * task runs inline (slot 0) when the outer loop holds the pool; when the
 * outer loop ran inline itself (n = 1 or one thread), the inner one may
 * take the pool, and its slots stay below min(3, threads). */
typedef struct {
    atomic_int busy[8];
    atomic_int bad;
    int64_t limit, inner_limit;
} slot_ctx;

static void inner_slot_task(void *ctx, int64_t i)
{
    slot_ctx *c = ctx;
    (void)i;
    const int64_t s = cd__task_slot();
    if (s < 0 || s >= c->inner_limit) atomic_fetch_add(&c->bad, 1);
}

static void slot_task(void *ctx, int64_t i)
{
    slot_ctx *c = ctx;
    const int64_t s = cd__task_slot();
    if (s < 0 || s >= c->limit) {
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    if (atomic_exchange(&c->busy[s], 1) != 0) atomic_fetch_add(&c->bad, 1);
    volatile double x = 0.0;
    for (int k = 0; k < 2000; k++) x += (double)k;
    if (i % 7 == 0) {
        cd__parallel_for(3, inner_slot_task, c);
        if (cd__task_slot() != s) atomic_fetch_add(&c->bad, 1);
    }
    atomic_store(&c->busy[s], 0);
}

START_TEST(task_slots_are_exclusive)
{
    const int64_t threads[] = {1, 2, 3, 8}, ns[] = {1, 2, 3, 5, 64, 1000};
    for (size_t a = 0; a < sizeof threads / sizeof threads[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            const int64_t t = threads[a], n = ns[b];
            CD_ASSERT_OK(cd_set_num_threads(t));
            const bool outer_inline = n == 1 || t == 1;
            slot_ctx c = {.limit = n < t ? n : t,
                          .inner_limit = outer_inline ? (t < 3 ? t : 3) : 1};
            cd__parallel_for(n, slot_task, &c);
            ck_assert_msg(atomic_load(&c.bad) == 0, "%d slot faults, %lld threads, n = %lld",
                          atomic_load(&c.bad), (long long)t, (long long)n);
            ck_assert_int_eq(cd__task_slot(), 0);
        }
}
END_TEST

static void *hammer(void *arg)
{
    (void)arg;
    for (int r = 0; r < 200; r++) run_and_check(64);
    return NULL;
}

START_TEST(concurrent_callers_complete)
{
    CD_ASSERT_OK(cd_set_num_threads(2));
    pthread_t th[3];
    for (int i = 0; i < 3; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
    hammer(NULL);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
}
END_TEST

START_TEST(thread_count_bounds)
{
    ck_assert_int_ge(cd_get_num_threads(), 1);
    CD_ASSERT_STATUS(cd_set_num_threads(0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_set_num_threads(-3), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_set_num_threads(CD_MAX_THREADS + 1), CD_ERR_RANGE);
    /* A count is an int64_t: one past 32 bits is refused, not truncated. */
    CD_ASSERT_STATUS(cd_set_num_threads((INT64_C(1) << 32) + 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_set_num_threads(INT64_MIN), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_set_num_threads(CD_MAX_THREADS));
    ck_assert_int_eq(cd_get_num_threads(), CD_MAX_THREADS);
    run_and_check(1000);
    CD_ASSERT_OK(cd_set_num_threads(1));
    ck_assert_int_eq(cd_get_num_threads(), 1);
}
END_TEST

/* A child forked after the pool has workers must not wait for threads it
 * does not have. */
START_TEST(forked_child_can_run_parallel_loops)
{
    CD_ASSERT_OK(cd_set_num_threads(4));
    run_and_check(1000); /* the pool now has 3 workers */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(20); /* a hang becomes a failure, not a stuck test */
        run_and_check(1000);
        CD_ASSERT_OK(cd_set_num_threads(2));
        run_and_check(1000);
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    run_and_check(1000); /* the parent's pool still works */
}
END_TEST

/* Tasks see subnormal floats as zero and make none; the caller's own
 * mode is back after the loop. Where the library has no way to set the
 * mode, subnormals pass through. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define FLUSHES 1
#else
#define FLUSHES 0
#endif

typedef struct {
    volatile float tiny; /* volatile: the product is made at run time */
    float *out;
} flush_ctx;

static void flush_task(void *ctx, int64_t i)
{
    flush_ctx *c = ctx;
    c->out[i] = c->tiny * 0.5f;
}

static void nested_flush_task(void *ctx, int64_t i)
{
    flush_task(ctx, i);
    float inner[3];
    flush_ctx c = {((flush_ctx *)ctx)->tiny, inner};
    cd__parallel_for(3, flush_task, &c); /* the pool is busy: runs inline */
    for (int k = 0; k < 3; k++) ck_assert(inner[k] == (FLUSHES ? 0.0f : c.tiny * 0.5f));
}

START_TEST(tasks_flush_subnormals_at_every_thread_count)
{
    const float tiny = 1e-39f; /* below FLT_MIN: subnormal */
    ck_assert(tiny > 0.0f && tiny < FLT_MIN);
    const int64_t threads[] = {1, 2, 3};
    const int64_t tasks[] = {1, 5, 64};
    for (size_t a = 0; a < 3; a++) {
        CD_ASSERT_OK(cd_set_num_threads(threads[a]));
        for (size_t b = 0; b < 3; b++) {
            float out[64];
            flush_ctx c = {tiny, out};
            cd__parallel_for(tasks[b], b == 2 ? nested_flush_task : flush_task, &c);
            for (int64_t i = 0; i < tasks[b]; i++)
                ck_assert_msg(out[i] == (FLUSHES ? 0.0f : tiny * 0.5f),
                              "%lld threads, task %lld of %lld: %g", (long long)threads[a],
                              (long long)i, (long long)tasks[b], (double)out[i]);
            /* The caller's mode is its own again: it keeps subnormals. */
            ck_assert(c.tiny * 0.5f > 0.0f);
        }
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_task_runs_once);
    tcase_add_test(tc, nested_loops_complete);
    tcase_add_test(tc, task_slots_are_exclusive);
    tcase_add_test(tc, concurrent_callers_complete);
    tcase_add_test(tc, thread_count_bounds);
    tcase_add_test(tc, forked_child_can_run_parallel_loops);
    tcase_add_test(tc, tasks_flush_subnormals_at_every_thread_count);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
