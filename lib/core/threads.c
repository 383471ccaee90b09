/*
 * threads.c - the thread count and a small persistent worker pool.
 *
 * The pool runs one parallel_for at a time. A second caller (another
 * thread, or a task that itself calls parallel_for) finds it busy and runs
 * its loop on its own thread; since results never depend on the mapping of
 * tasks to threads, that only costs speed.
 *
 * The BLAS always runs single-threaded: OpenBLAS gives different bits for
 * the same sgemm at different thread counts, so libcolddiff parallelises
 * over fixed tiles itself and calls sgemm from its workers.
 */
#include "core.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(CD_BLAS_OPENBLAS)
void openblas_set_num_threads(int num_threads);
#elif defined(CD_BLAS_BLIS)
void bli_thread_set_num_threads(int64_t n_threads);
#endif

typedef struct {
    pthread_mutex_t busy; /* held by the one running parallel_for */
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    pthread_cond_t done;
    /* A fixed array rather than a heap block: the pool is global and made
     * lazily, so an allocation failing here would leave it half made. */
    pthread_t workers[CD_MAX_THREADS - 1];
    int32_t n_workers;
    uint64_t generation;       /* bumped per job, so workers see new work */
    uint64_t spawn_generation; /* generation when the workers were made */
    bool stop;
    cd__task_fn fn;
    void *ctx;
    int64_t n;
    atomic_int_fast64_t next;
    atomic_int_fast64_t slots; /* slots handed out in the current job */
    int32_t active;            /* workers still inside the current job */
} pool_t;

static pool_t g_pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static atomic_int g_num_threads = 0; /* 0: not yet decided */

static int32_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > CD_MAX_THREADS ? CD_MAX_THREADS : (int32_t)n;
}

int64_t cd_get_num_threads(void)
{
    int n = atomic_load(&g_num_threads);
    return n > 0 ? n : default_threads();
}

/*
 * Tasks run with subnormal floats flushed to zero, as operands and as
 * results. Intel cores take a microcode assist of a hundred cycles or more
 * for each operation that meets one, and a trained UNet's activations and
 * GELU derivatives hold enough of them to make a training step three times
 * slower than a fresh network's. Every task on every thread runs in this
 * mode, whatever the thread count, so results stay independent of it; the
 * calling thread gets its own mode back when the loop ends.
 */
#if defined(__x86_64__) || defined(__i386__)
#define FLUSH_BITS 0x8040u /* MXCSR: FTZ (bit 15) and DAZ (bit 6) */
static uint64_t flush_begin(void)
{
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | FLUSH_BITS);
    return csr;
}
static void flush_end(uint64_t saved) { _mm_setcsr((unsigned int)saved); }
#elif defined(__aarch64__)
static uint64_t flush_begin(void)
{
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (UINT64_C(1) << 24))); /* FZ */
    return fpcr;
}
static void flush_end(uint64_t saved) { __asm__ volatile("msr fpcr, %0" : : "r"(saved)); }
#else
static uint64_t flush_begin(void) { return 0; }
static void flush_end(uint64_t saved) { (void)saved; }
#endif

static _Thread_local int64_t t_slot;

int64_t cd__task_slot(void) { return t_slot; }

/* A slot is handed out with a thread's first task, so threads that find
 * no task left take none and slots stay below the task count. */
static void run_tasks(pool_t *p)
{
    bool slotted = false;
    for (;;) {
        int64_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        if (!slotted) t_slot = atomic_fetch_add(&p->slots, 1), slotted = true;
        p->fn(p->ctx, i);
    }
}

static void *worker_main(void *arg)
{
    pool_t *p = arg;
    /* Written before pthread_create, so visible here; a worker must not
     * mistake a job finished before it existed for new work. */
    uint64_t seen = p->spawn_generation;
    (void)flush_begin(); /* a worker runs nothing but tasks */
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_tasks(p);
        pthread_mutex_lock(&p->lock);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Join all workers; the caller holds `busy`. */
static void pool_shutdown(pool_t *p)
{
    if (p->n_workers == 0) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int32_t i = 0; i < p->n_workers; i++) pthread_join(p->workers[i], NULL);
    p->n_workers = 0;
    p->stop = false;
}

/* Make sure `want` workers exist; on failure run with fewer. */
static void pool_resize(pool_t *p, int32_t want)
{
    if (p->n_workers == want) return;
    pool_shutdown(p);
    if (want == 0) return;
    p->spawn_generation = p->generation;
    int32_t started = 0;
    while (started < want && pthread_create(&p->workers[started], NULL, worker_main, p) == 0)
        started++;
    p->n_workers = started;
}

void cd__parallel_for(int64_t n, cd__task_fn fn, void *ctx)
{
    int64_t threads = cd_get_num_threads();
    if (n <= 0) return;
    const uint64_t mode = flush_begin();
    /* A loop run inside a task keeps that task's slot once it returns. */
    const int64_t slot = t_slot;
    if (n == 1 || threads <= 1 || pthread_mutex_trylock(&g_pool.busy) != 0) {
        t_slot = 0;
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        t_slot = slot;
        flush_end(mode);
        return;
    }
    pool_t *p = &g_pool;
    pool_resize(p, threads - 1);
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->slots, 0);
    p->active = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    run_tasks(p);

    pthread_mutex_lock(&p->lock);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->busy);
    t_slot = slot;
    flush_end(mode);
}

/* COLDDIFF_BLAS_THREADS=keep, read once at load: the host keeps its own
 * BLAS thread count (see cd_set_num_threads in colddiff.h). */
static bool g_keep_blas_threads;

/* Pin the BLAS to one thread, once, before any kernel runs. */
static void blas_single_thread(void)
{
    if (g_keep_blas_threads) return;
#if defined(CD_BLAS_OPENBLAS)
    openblas_set_num_threads(1);
#elif defined(CD_BLAS_BLIS)
    bli_thread_set_num_threads(1);
#endif
}

/* A forked child has none of the parent's worker threads, but inherits the
 * pool's record of them (and maybe a held lock): start it afresh, so that
 * hosts that fork (Python's multiprocessing) do not hang on the first
 * parallel call. The old threads' memory is abandoned, not joined. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&g_pool.busy, NULL);
    pthread_mutex_init(&g_pool.lock, NULL);
    pthread_cond_init(&g_pool.wake, NULL);
    pthread_cond_init(&g_pool.done, NULL);
    g_pool.n_workers = 0;
    g_pool.stop = false;
    g_pool.active = 0;
}

__attribute__((constructor)) static void threads_at_load(void)
{
    const char *keep = getenv("COLDDIFF_BLAS_THREADS");
    g_keep_blas_threads = keep && strcmp(keep, "keep") == 0;
    blas_single_thread();
    pthread_atfork(NULL, NULL, pool_after_fork);
}

cd_status cd_set_num_threads(int64_t n)
{
    if (n < 1 || n > CD_MAX_THREADS)
        return cd__error(CD_ERR_RANGE, "cd_set_num_threads: n = %" PRId64 " is outside 1..%d", n,
                         CD_MAX_THREADS);
    pthread_mutex_lock(&g_pool.busy);
    atomic_store(&g_num_threads, n);
    pool_resize(&g_pool, n - 1);
    pthread_mutex_unlock(&g_pool.busy);
    blas_single_thread(); /* in case the host changed it since loading */
    return CD_OK;
}

/* Join the workers when the library is unloaded (dlclose, process exit), so
 * leak checkers and embedding hosts see no stray threads. */
__attribute__((destructor)) static void pool_at_unload(void)
{
    if (pthread_mutex_trylock(&g_pool.busy) != 0) return;
    pool_shutdown(&g_pool);
    pthread_mutex_unlock(&g_pool.busy);
}
