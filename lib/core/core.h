/*
 * core.h - internal helpers shared by every layer: errors, allocation,
 * the tensor layout, files and threads. Nothing here is exported; names use
 * the cd__ prefix.
 */
#ifndef CD_CORE_H
#define CD_CORE_H

#include "colddiff.h"
#include "colddiff_experimental.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__) || defined(__clang__)
#define CD__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CD__LIKELY(x) __builtin_expect(!!(x), 1)
#define CD__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CD__PRINTF(f, a)
#define CD__LIKELY(x) (x)
#define CD__UNLIKELY(x) (x)
#endif

/* ---- errors (status.c) -------------------------------------------------- */

/**
 * Record a failure for cd_last_error() and return `status`, so call sites
 * read `return cd__error(CD_ERR_RANGE, "...", ...);`. The message should say
 * which function, which argument and, for files, which path and offset.
 */
cd_status cd__error(cd_status status, const char *fmt, ...) CD__PRINTF(2, 3);

/* The size of the thread-local message buffer, terminator included: a
 * longer message is cut. */
#define CD__ERROR_CAP 1024

/* The thread's last status and message, kept aside while code that may
 * overwrite them runs (a user callback, a cleanup path). */
typedef struct {
    cd_status status;
    char msg[CD__ERROR_CAP];
} cd__saved_error;

/* Copy the thread's last status and message into e. */
void cd__error_save(cd__saved_error *e);

/* Make cd_last_status() and cd_last_error() answer what e holds again. */
void cd__error_restore(const cd__saved_error *e);

/* Argument checks that name the function and argument in the message. */
#define CD__CHECK_ARG(cond, fn, what)                                          \
    do {                                                                       \
        if (CD__UNLIKELY(!(cond)))                                             \
            return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %s", (fn), (what)); \
    } while (0)

#define CD__CHECK_NOT_NULL(ptr, fn) \
    CD__CHECK_ARG((ptr) != NULL, (fn), "argument '" #ptr "' is NULL")

/* Propagate a failing status unchanged (its message is already set). */
#define CD__TRY(expr)                                       \
    do {                                                    \
        cd_status cd__st_ = (expr);                         \
        if (CD__UNLIKELY(cd__st_ != CD_OK)) return cd__st_; \
    } while (0)

/* ---- options (options.c) ------------------------------------------------ */

/*
 * One row of an object's option table: what cd_<object>_option_info()
 * reports, and what the typed setters check. Tables are small and looked
 * up by key, so keys may leave gaps (the trainer's) and reach into the
 * experimental range.
 */
typedef struct {
    int32_t key;
    const char *name;
    cd_option_type type;
    int32_t choices; /* a cd_enum for CD_OPTION_CHOICE, else -1 */
    double lo, hi;
    bool lo_open, hi_open;
    double def;
} cd__option;

/* The row of key, or NULL with CD_ERR_INVALID_ARGUMENT ("unknown option"). */
const cd__option *cd__option_find(const cd__option *table, size_t n, int32_t key, const char *fn);

/* Fill a public description from a row (info checked for NULL). */
cd_status cd__option_describe(const cd__option *o, const char *fn, cd_option_info *info);

/* Check a write through the _int calls (type INT, BOOL or CHOICE) or the
 * _real calls (type REAL): the type, finiteness and the bounds. */
cd_status cd__option_check_int(const cd__option *o, const char *fn, int64_t value);
cd_status cd__option_check_real(const cd__option *o, const char *fn, double value);

/* Check a read through the _int (want_int) or _real calls. */
cd_status cd__option_check_read(const cd__option *o, const char *fn, bool want_int);

/* ---- allocation (alloc.c) ----------------------------------------------- */

/*
 * Every heap block of the library comes from these and goes back through
 * cd__free (never plain free), so the counters below stay exact. On failure
 * they return NULL with CD_ERR_OUT_OF_MEMORY (or CD_ERR_OVERFLOW for a size
 * that overflows) set and a message naming `what`.
 */

/* Memory aligned to CD__ALIGN bytes, so kernels may use aligned vector loads. */
#define CD__ALIGN 64

/* count*size bytes, zeroed, CD__ALIGN-aligned. */
void *cd__calloc(size_t count, size_t size, const char *what);
/* bytes uninitialised bytes (malloc's alignment). */
void *cd__malloc(size_t bytes, const char *what);
/* Resize p (NULL: allocate) to count*size bytes; on failure p is untouched
 * and still owned by the caller. Not for cd__calloc's aligned blocks. */
void *cd__realloc(void *p, size_t count, size_t size, const char *what);
/* A copy of the string s. */
char *cd__strdup(const char *s, const char *what);
void cd__free(void *p);
/* The largest allocation request of the calling thread since the last call
 * with reset = true, in bytes (for the tests that bound what a file can
 * make the library allocate). */
size_t cd__alloc_largest(bool reset);

/* zlib's alloc_func and free_func over the above: set a z_stream's zalloc
 * and zfree to these and its opaque to the name used in messages. */
void *cd__zalloc(void *what, unsigned items, unsigned size);
void cd__zfree(void *what, void *p);

/*
 * Test hooks (tests/check_alloc_failure.c). cd__alloc_fail_at(k, persist)
 * makes the k-th allocation from now fail, and with persist every one after
 * it too; k = 0 disarms. cd__alloc_failure_fired() says whether the last
 * armed failure has happened (disarming does not forget it).
 * cd__alloc_live() counts blocks allocated and not freed; cd__alloc_count()
 * counts successful calls (each one a point where cd__alloc_fail_at can
 * fail), resizes included.
 */
void cd__alloc_fail_at(int64_t k, bool persist);
bool cd__alloc_failure_fired(void);
int64_t cd__alloc_live(void);
int64_t cd__alloc_count(void);

/* a*b into *out unless it overflows int64 (returns false then). */
bool cd__mul_overflows_i64(int64_t a, int64_t b, int64_t *out);

/* ---- CPU features and the kernel test hooks (cpu.c) -------------------- */

/* True when the AVX-512 kernels may run: the CPU has AVX-512F and the
 * environment does not cap the kernels at COLDDIFF_MAX_CPU_ISA=portable. */
bool cd__cpu_avx512(void);

/* The kernel families that a test or a benchmark can hold to their
 * portable path on an AVX-512 machine, each on its own. */
typedef enum {
    CD__KERNELS_CONV,      /* convolutions: im2col + sgemm, the portable depthwise kernel */
    CD__KERNELS_SPECTRAL,  /* the spectral convolution: the dense kernels take its shapes */
    CD__KERNELS_VMATH,     /* GELU, softmax and the layer norms: their scalar loops */
    CD__KERNELS_GEMM,      /* the attention's small products: cblas_sgemm */
    CD__KERNELS_WINOGRAD,  /* the Winograd 3x3 convolution: the dense kernels take its shapes */
    CD__KERNELS_POINTWISE, /* the 1x1 convolution's products: the dense kernels take its shapes */
    CD__KERNELS_ADAM,      /* Adam's and the EMA's elementwise loops: without FMA instructions */
    CD__KERNELS_COUNT
} cd__kernels;

/* True when family k may take its AVX-512 path: cd__cpu_avx512() and no
 * test holding k to its portable path. */
bool cd__cpu_use_avx512(cd__kernels k);

/* Test hook (tests and benchmarks only; the library never calls it): on
 * holds family k to its portable path, off releases it. Set it before
 * sizing workspaces, which depend on the path. */
void cd__cpu_force_portable(cd__kernels k, bool on);

/* ---- tensors (tensor.c) ------------------------------------------------- */

struct cd_tensor {
    int32_t rank;
    int64_t shape[CD_TENSOR_MAX_RANK];
    int64_t numel;
    float *data; /* CD__ALIGN-aligned, owned */
};

/* Check that t (named `name` in messages from function fn) has this exact
 * rank and shape; a shape entry of -1 matches any size. */
cd_status cd__tensor_expect(const cd_tensor *t, const char *fn, const char *name, int32_t rank,
                            const int64_t *shape);

/* Index of the first NaN or infinity in x[0..n), or -1 if every value is
 * finite. Blocks are tested with integer bit masks, which vectorise, so
 * the pass costs about what reading the floats costs. */
int64_t cd__first_non_finite(const float *x, int64_t n);

/* CD_ERR_NOT_FINITE if t holds a NaN or an infinity, naming function fn,
 * the tensor `name` and the first bad element (for a rank-4 tensor also
 * its image, channel, row and column); CD_OK otherwise. */
cd_status cd__check_finite(const cd_tensor *t, const char *fn, const char *name);

/* ---- half floats (half.c) ---------------------------------------------- */

/* f as IEEE binary16, rounded to nearest with ties to even: above 65504 in
 * magnitude (from 65520 on) it is an infinity, NaN stays a (quiet) NaN. */
uint16_t cd__f32_to_f16(float f);
/* The half h as a float: exact, every half being a float. */
float cd__f16_to_f32(uint16_t h);

/* ---- files (io.c) ------------------------------------------------------- */

/*
 * Atomic file writer: bytes go to "<path>.tmp.<pid>.<n>" in the same folder;
 * commit() flushes, fsyncs, renames over path and fsyncs the folder, so a
 * reader sees either the old file or the complete new one. Every write
 * failure (ENOSPC included) is remembered and reported by commit(). A
 * successful commit also removes "<path>.tmp.<pid>.<n>" files of processes
 * that no longer exist (a writer killed before its rename).
 */
typedef struct cd__atomic_file {
    FILE *fp;
    char *tmp_path;
    char *path;
    int err; /* first errno seen, 0 if none */
    uint64_t written;
} cd__atomic_file;

cd_status cd__atomic_open(cd__atomic_file *af, const char *path);
cd_status cd__atomic_write(cd__atomic_file *af, const void *buf, size_t n);
cd_status cd__atomic_commit(cd__atomic_file *af);
/* Discard the temporary file; safe after a failed open or a commit. */
void cd__atomic_abort(cd__atomic_file *af);

/* Write a whole buffer atomically (open, write, commit). */
cd_status cd__write_file_atomic(const char *path, const void *buf, size_t n);

/*
 * open_read.c: open path for reading as a regular file (*size, if not
 * NULL, gets its size). Never blocks: a FIFO, device, socket or folder is
 * refused before anything is read. Errors name the file as
 * "<what>'<path>': ..." with the reason: CD_ERR_NOT_FOUND (ENOENT,
 * ENOTDIR), CD_ERR_IO (anything else, a non-regular file included).
 */
cd_status cd__open_read(const char *path, const char *what, int *fd, uint64_t *size);
/* The same as a stdio stream. */
cd_status cd__fopen_read(const char *path, const char *what, FILE **out);

/*
 * datafile.c: the path of a data file the library ships (name, e.g.
 * "mnist-classifier.cdm") into out: the environment variable env_var if it
 * is set and not empty (then only there), else the first that exists of
 * the share folder beside the loaded library, the configured install
 * folder and the source tree. Errors: CD_ERR_NOT_FOUND listing the places
 * tried (messages name fn and `what`), CD_ERR_RANGE for a path over cap.
 */
cd_status cd__find_data_file(const char *fn, const char *env_var, const char *name,
                             const char *what, char *out, size_t cap);

/* ---- threads (threads.c) ------------------------------------------------ */

/*
 * Run fn(ctx, i) for i in [0, n) on up to cd_get_num_threads() threads and
 * wait. Tasks must be independent; how they map to threads is unspecified,
 * so results must not depend on it.
 */
/*
 * Values first..first+n-1 of what cd_rng_uniform / cd_rng_normal would
 * draw for `total` values, leaving the generator where that draw would:
 * one rank of a data-parallel job takes its rows of the one stream a
 * single process draws, at the cost of its own rows only.
 */
cd_status cd__rng_uniform_window(cd_rng *rng, float *out, int64_t first, int64_t n, int64_t total);
cd_status cd__rng_normal_window(cd_rng *rng, float *out, int64_t first, int64_t n, int64_t total);

typedef void (*cd__task_fn)(void *ctx, int64_t i);
void cd__parallel_for(int64_t n, cd__task_fn fn, void *ctx);
/* Inside a task: the slot of the thread running it, below the number of
 * threads that took tasks of this cd__parallel_for (so below its n and the
 * thread count). Scratch memory kept per slot rather than per task is
 * reused by one thread from task to task and stays in its caches; results
 * must not depend on which slot a task gets. */
int64_t cd__task_slot(void);

#endif /* CD_CORE_H */
