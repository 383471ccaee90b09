/*
 * bench_blur.c - what the cold-diffusion blur costs per sampling step.
 *
 *   bench_blur [--threads N] [--batch B] [--T T] [--kernel K] [--reps R]
 *
 * Cold algorithm 2 needs D(x-hat, t-1) and D(x-hat, t) at step t: t - 1
 * blurs, a copy, one more blur (docs/models.md, Samplers), so t blurs per
 * image, and T (T + 1) / 2 over a whole unconditional run. This times
 * cd_degradation_apply at t = 1 (one blur) and t = T, and prints the cost
 * of one blur per image, of the average step (t = (T + 1) / 2) and of a
 * whole chain. Not a test: the numbers go to docs/performance.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "colddiff.h"

#define BENCH_NAME "bench_blur"
#include "bench_util.h"

/* Best time of reps applications of D(., t) to the whole batch. */
static double time_apply(const cd_degradation *d, cd_tensor *x, cd_tensor *z, int64_t t, int64_t B,
                         int reps)
{
    int64_t *tv = malloc((size_t)B * sizeof *tv);
    if (!tv) die("malloc");
    for (int64_t i = 0; i < B; i++) tv[i] = t;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now();
        if (cd_degradation_apply(d, x, tv, B, NULL, z, NULL) != CD_OK) die("apply");
        const double dt = now() - t0;
        if (r > 0 && dt < best) best = dt; /* r = 0 warms up */
    }
    free(tv);
    return best;
}

int main(int argc, char **argv)
{
    int64_t threads = 2, B = 128, T = 100, k = 11;
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const long long v = atoll(argv[i + 1]);
        if (!strcmp(argv[i], "--threads"))
            threads = v;
        else if (!strcmp(argv[i], "--batch"))
            B = v;
        else if (!strcmp(argv[i], "--T"))
            T = v;
        else if (!strcmp(argv[i], "--kernel"))
            k = v;
        else if (!strcmp(argv[i], "--reps"))
            reps = (int)v;
        else {
            fprintf(stderr, "bench_blur: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (cd_set_num_threads(threads) != CD_OK) die("threads");
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    cd_tensor *x = NULL, *z = NULL;
    cd_rng *rng = NULL;
    const int64_t shape[4] = {B, 1, 28, 28};
    if (cd_schedule_create_constant(&s, T, 1.0) != CD_OK ||
        cd_degradation_create_blur(&d, s, k, CD_PADDING_REFLECT) != CD_OK ||
        cd_tensor_create(&x, 4, shape) != CD_OK || cd_tensor_create(&z, 4, shape) != CD_OK ||
        cd_rng_create(&rng, 1) != CD_OK || cd_rng_uniform_tensor(rng, x) != CD_OK)
        die("setup");
    const double one = time_apply(d, x, z, 1, B, reps);
    const double all = time_apply(d, x, z, T, B, reps > 2 ? 2 : reps);
    const double per_blur = all / (double)(T * B); /* seconds per image per blur */
    const double avg_step = per_blur * (double)(T + 1) / 2.0;
    printf("| batch | T | kernel | threads | one blur, us/image | t = 1 apply, ms/batch | "
           "average cold-2 step, ms/batch | whole chain, s/batch |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    printf("| %lld | %lld | %lld | %lld | %.2f | %.2f | %.1f | %.2f |\n", (long long)B,
           (long long)T, (long long)k, (long long)threads, per_blur * 1e6, one * 1e3,
           avg_step * (double)B * 1e3, per_blur * (double)B * (double)(T * (T + 1) / 2));
    cd_tensor_free(x), cd_tensor_free(z), cd_rng_free(rng);
    cd_degradation_free(d), cd_schedule_free(s);
    return 0;
}
