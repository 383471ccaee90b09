/* alloc.c - checked, aligned, zeroed allocation. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* The largest request the calling thread made since the last reset (the
 * test hook behind cd__calloc_largest). */
static _Thread_local size_t g_largest;

size_t cd__calloc_largest(bool reset)
{
    size_t n = g_largest;
    if (reset) g_largest = 0;
    return n;
}

void *cd__calloc(size_t count, size_t size, const char *what)
{
    if (count != 0 && size > SIZE_MAX / count) {
        cd__error(CD_ERR_OVERFLOW, "allocating %s: %zu x %zu bytes overflows",
                  what, count, size);
        return NULL;
    }
    size_t bytes = count * size;
    if (bytes > g_largest) g_largest = bytes;
    /* aligned_alloc wants a multiple of the alignment, and 0 is not portable. */
    size_t rounded = bytes == 0 ? CD__ALIGN : (bytes + CD__ALIGN - 1) & ~(size_t)(CD__ALIGN - 1);
    if (rounded < bytes) {
        cd__error(CD_ERR_OVERFLOW, "allocating %s: %zu bytes overflows", what, bytes);
        return NULL;
    }
    void *p = aligned_alloc(CD__ALIGN, rounded);
    if (p == NULL) {
        cd__error(CD_ERR_OUT_OF_MEMORY, "allocating %s: %zu bytes failed", what, bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void cd__free(void *p) { free(p); }

bool cd__mul_overflows_i64(int64_t a, int64_t b, int64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
