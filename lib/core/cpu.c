/*
 * cpu.c - whether the AVX-512 kernels may run, and the test hooks that
 * hold a kernel family to its portable path.
 *
 * The answer is the CPU's, unless COLDDIFF_MAX_CPU_ISA=portable caps it (as
 * oneDNN's ONEDNN_MAX_CPU_ISA does): then every op takes its portable C
 * path, which is how a machine without AVX-512 computes, so its results and
 * its test suite can be reproduced on one that has it. The variable is read
 * once, at the first dispatch, so one process never mixes the two paths.
 */
#include "core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPU_X86 1
#endif

static int detect(void)
{
    const char *cap = getenv("COLDDIFF_MAX_CPU_ISA");
    if (cap && strcasecmp(cap, "portable") == 0) return 0;
#ifdef CPU_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

bool cd__cpu_avx512(void)
{
    /* Racing first calls compute the same answer, so a relaxed cache suffices. */
    static _Atomic int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = detect();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v == 1;
}

static _Atomic bool g_forced[CD__KERNELS_COUNT];

bool cd__cpu_use_avx512(cd__kernels k) { return !atomic_load(&g_forced[k]) && cd__cpu_avx512(); }

void cd__cpu_force_portable(cd__kernels k, bool on) { atomic_store(&g_forced[k], on); }
