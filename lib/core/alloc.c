/*
 * alloc.c - every heap allocation of the library goes through here: sizes
 * are checked for overflow, a failure sets CD_ERR_OUT_OF_MEMORY with a
 * message naming what was being allocated, and live blocks are counted.
 *
 * The counters and the failure hook exist for tests/check_alloc_failure.c,
 * which fails the 1st, 2nd, ... allocation of an operation in turn and
 * checks that each failure comes back as a clean error without a leak. The
 * cost on every allocation is one relaxed load of the hook and two relaxed
 * counter updates, next to a malloc that costs far more.
 */
#include "core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* 0: no failure armed; k > 0: the k-th allocation from now fails. */
static atomic_int_fast64_t g_countdown;
static atomic_bool g_persist; /* after the k-th, every later one fails too */
static atomic_bool g_fired;
static atomic_int_fast64_t g_live; /* blocks allocated and not yet freed */
static atomic_int_fast64_t g_made; /* successful calls, resizes included */

void cd__alloc_fail_at(int64_t k, bool persist)
{
    if (k <= 0) {
        atomic_store(&g_countdown, 0); /* cd__alloc_failure_fired() still tells */
        return;
    }
    atomic_store(&g_fired, false);
    atomic_store(&g_persist, persist);
    atomic_store(&g_countdown, k);
}

bool cd__alloc_failure_fired(void) { return atomic_load(&g_fired); }

int64_t cd__alloc_live(void) { return atomic_load_explicit(&g_live, memory_order_relaxed); }

int64_t cd__alloc_count(void) { return atomic_load_explicit(&g_made, memory_order_relaxed); }

/* Counts one allocation down; true if this one is to fail. */
static bool countdown_hits(void)
{
    int_fast64_t c = atomic_load(&g_countdown);
    while (c > 0) {
        /* Persistent: stay at 1, so every later allocation fails too. */
        int_fast64_t next = c == 1 && atomic_load(&g_persist) ? 1 : c - 1;
        if (atomic_compare_exchange_weak(&g_countdown, &c, next)) {
            if (c != 1) return false;
            atomic_store(&g_fired, true);
            return true;
        }
    }
    return false;
}

static bool injected_failure(void)
{
    if (CD__LIKELY(atomic_load_explicit(&g_countdown, memory_order_relaxed) == 0)) return false;
    return countdown_hits();
}

static void *counted(void *p)
{
    if (p) {
        atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&g_made, 1, memory_order_relaxed);
    }
    return p;
}

/* The largest request the calling thread made since the last reset (the
 * test hook behind cd__alloc_largest). */
static _Thread_local size_t g_largest;

size_t cd__alloc_largest(bool reset)
{
    size_t n = g_largest;
    if (reset) g_largest = 0;
    return n;
}

static void note_request(size_t bytes)
{
    if (bytes > g_largest) g_largest = bytes;
}

static void *out_of_memory(const char *what, size_t bytes)
{
    cd__error(CD_ERR_OUT_OF_MEMORY, "out of memory allocating %s (%zu bytes)", what, bytes);
    return NULL;
}

/* count*size in *bytes, or an overflow error naming what. */
static bool total_bytes(size_t count, size_t size, const char *what, size_t *bytes)
{
    if (count != 0 && size > SIZE_MAX / count) {
        cd__error(CD_ERR_OVERFLOW, "allocating %s: %zu x %zu bytes overflows", what, count, size);
        return false;
    }
    *bytes = count * size;
    return true;
}

void *cd__malloc(size_t bytes, const char *what)
{
    note_request(bytes);
    if (injected_failure()) return out_of_memory(what, bytes);
    void *p = counted(malloc(bytes ? bytes : 1));
    return p ? p : out_of_memory(what, bytes);
}

void *cd__calloc(size_t count, size_t size, const char *what)
{
    size_t bytes;
    if (!total_bytes(count, size, what, &bytes)) return NULL;
    /* aligned_alloc wants a multiple of the alignment, and 0 is not portable. */
    size_t rounded = bytes == 0 ? CD__ALIGN : (bytes + CD__ALIGN - 1) & ~(size_t)(CD__ALIGN - 1);
    if (rounded < bytes) {
        cd__error(CD_ERR_OVERFLOW, "allocating %s: %zu bytes overflows", what, bytes);
        return NULL;
    }
    note_request(bytes);
    if (injected_failure()) return out_of_memory(what, bytes);
    void *p = counted(aligned_alloc(CD__ALIGN, rounded));
    if (!p) return out_of_memory(what, bytes);
    memset(p, 0, rounded);
    return p;
}

void *cd__realloc(void *p, size_t count, size_t size, const char *what)
{
    size_t bytes;
    if (!total_bytes(count, size, what, &bytes)) return NULL;
    note_request(bytes);
    if (injected_failure()) return out_of_memory(what, bytes);
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) return out_of_memory(what, bytes);
    if (!p) return counted(q);
    atomic_fetch_add_explicit(&g_made, 1, memory_order_relaxed);
    return q;
}

char *cd__strdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *d = cd__malloc(n, what);
    if (d) memcpy(d, s, n);
    return d;
}

void cd__free(void *p)
{
    if (!p) return;
    atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
    free(p);
}

void *cd__zalloc(void *what, unsigned items, unsigned size)
{
    return cd__calloc(items, size, what ? (const char *)what : "zlib state");
}

void cd__zfree(void *what, void *p)
{
    (void)what;
    cd__free(p);
}

bool cd__mul_overflows_i64(int64_t a, int64_t b, int64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
