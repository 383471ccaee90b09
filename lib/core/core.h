/*
 * core.h - internal helpers shared by every layer: errors, allocation,
 * the tensor layout, files and threads. Nothing here is exported; names use
 * the cd__ prefix.
 */
#ifndef CD_CORE_H
#define CD_CORE_H

#include "colddiff.h"

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

/* Argument checks that name the function and argument in the message. */
#define CD__CHECK_ARG(cond, fn, what)                                        \
    do {                                                                     \
        if (CD__UNLIKELY(!(cond)))                                           \
            return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %s", (fn), (what)); \
    } while (0)

#define CD__CHECK_NOT_NULL(ptr, fn)                                          \
    CD__CHECK_ARG((ptr) != NULL, (fn), "argument '" #ptr "' is NULL")

/* Propagate a failing status unchanged (its message is already set). */
#define CD__TRY(expr)                                                        \
    do {                                                                     \
        cd_status cd__st_ = (expr);                                          \
        if (CD__UNLIKELY(cd__st_ != CD_OK)) return cd__st_;                  \
    } while (0)

/* ---- allocation (alloc.c) ----------------------------------------------- */

/* Memory aligned to CD__ALIGN bytes, so kernels may use aligned vector loads. */
#define CD__ALIGN 64

/* Allocate count*size bytes, zeroed, aligned; NULL with an error set on
 * overflow or exhaustion. `what` names the allocation in the message. */
void *cd__calloc(size_t count, size_t size, const char *what);
void cd__free(void *p);
/* The largest cd__calloc request of the calling thread since the last call
 * with reset = true, in bytes (for the tests that bound what a file can
 * make the library allocate). */
size_t cd__calloc_largest(bool reset);

/* a*b into *out unless it overflows int64 (returns false then). */
bool cd__mul_overflows_i64(int64_t a, int64_t b, int64_t *out);

/* ---- tensors (tensor.c) ------------------------------------------------- */

struct cd_tensor {
    int32_t rank;
    int64_t shape[CD_TENSOR_MAX_RANK];
    int64_t numel;
    float *data; /* CD__ALIGN-aligned, owned */
};

/* Check that t (named `name` in messages from function fn) has this exact
 * rank and shape; a shape entry of -1 matches any size. */
cd_status cd__tensor_expect(const cd_tensor *t, const char *fn,
                            const char *name, int32_t rank,
                            const int64_t *shape);

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

/* ---- threads (threads.c) ------------------------------------------------ */

/*
 * Run fn(ctx, i) for i in [0, n) on up to cd_get_num_threads() threads and
 * wait. Tasks must be independent; how they map to threads is unspecified,
 * so results must not depend on it.
 */
typedef void (*cd__task_fn)(void *ctx, int64_t i);
void cd__parallel_for(int64_t n, cd__task_fn fn, void *ctx);

#endif /* CD_CORE_H */
