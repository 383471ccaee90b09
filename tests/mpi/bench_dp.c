/*
 * bench_dp.c - the step time of data-parallel training, and the share of
 * it spent in gradient sums, for each bucket size in one run (rounds
 * interleave the settings, so that a noisy machine slows all alike).
 *
 *   mpirun -np 2 bench_dp --decoder fast --batch 32 --threads 1
 *   bench_dp --decoder fast --batch 32 --threads 2      (one process)
 *
 * Prints one line per bucket size: the median over rounds of the slowest
 * rank's step, and the time the ranks spent inside the sums (START, POLL
 * and WAIT: what the sums cost the computing thread), least and most
 * over the ranks. The least is what the transfer itself costs; the rest
 * of the most is a rank waiting for a slower one. tests/mpi/
 * run_dp_bench.sh runs the comparisons docs/distributed.md shows.
 */
#include <colddiff.h>
#include <colddiff_mpi.h>
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_BUCKETS = 8, MAX_ROUNDS = 64 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(cd_status st, const char *what)
{
    if (st == CD_OK) return;
    fprintf(stderr, "bench_dp: %s: %s\n", what, cd_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The report's CNN and UNet, and the fast preset's UNet (width 16, two
 * heads of 16). */
static cd_decoder *make_decoder(const char *name)
{
    const int unet = strcmp(name, "cnn") != 0;
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    cd_rng *rng = NULL;
    check(cd_decoder_config_create(&cfg, unet ? CD_DECODER_UNET : CD_DECODER_CNN), "config");
    if (!strcmp(name, "fast")) {
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 16), "dim");
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 2), "heads");
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 16), "head dim");
    } else if (strcmp(name, "cnn") && strcmp(name, "unet")) {
        fprintf(stderr, "bench_dp: --decoder is cnn, unet or fast, not %s\n", name);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    check(cd_rng_create(&rng, 1), "rng");
    check(cd_decoder_create(&dec, cfg, rng), "decoder");
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return dec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    int provided = 0, rank = 0, size = 1;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *decoder = "fast";
    int64_t batch = 32, steps = 8, warmup = 2, threads = 1, rounds = 3;
    int64_t buckets[MAX_BUCKETS] = {262144, 0};
    int n_buckets = 2;
    int32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--fixed-order")) {
            flags |= CD_MPI_FIXED_ORDER;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_dp: %s needs a value\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        i++;
        if (!strcmp(a, "--decoder"))
            decoder = v;
        else if (!strcmp(a, "--batch"))
            batch = atoll(v);
        else if (!strcmp(a, "--steps"))
            steps = atoll(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoll(v);
        else if (!strcmp(a, "--threads"))
            threads = atoll(v);
        else if (!strcmp(a, "--rounds"))
            rounds = atoll(v);
        else if (!strcmp(a, "--buckets")) {
            n_buckets = 0;
            for (char *s = (char *)v; *s && n_buckets < MAX_BUCKETS; s += *s == ',')
                buckets[n_buckets++] = strtoll(s, &s, 10);
        } else {
            fprintf(stderr, "bench_dp: unknown option %s\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    if (batch < 1 || steps < 1 || rounds < 1 || rounds > MAX_ROUNDS || threads < 1) {
        fprintf(stderr, "bench_dp: --batch, --steps, --threads >= 1, --rounds 1..%d\n", MAX_ROUNDS);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    check(cd_set_num_threads(threads), "--threads");
    cd_decoder *dec = make_decoder(decoder);
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    cd_mpi *m = NULL;
    check(cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02), "schedule");
    check(cd_degradation_create_noise(&deg, sch), "degradation");
    check(cd_trainer_create(&tr, dec, deg), "trainer");
    check(cd_mpi_create(&m, MPI_COMM_WORLD, flags), "cd_mpi_create");
    if (size > 1) check(cd_mpi_attach(m, tr), "cd_mpi_attach");
    cd_tensor *x = NULL;
    cd_rng *rng = NULL;
    check(cd_tensor_create(&x, 4, (int64_t[]){batch, 1, 28, 28}), "images");
    check(cd_rng_create(&rng, 2), "rng");
    check(cd_rng_uniform_tensor(rng, x), "images");
    double loss = 0;
    for (int64_t s = 0; s < warmup; s++) check(cd_trainer_step(tr, x, rng, &loss), "warm-up");

    double step_ms[MAX_BUCKETS][MAX_ROUNDS], comm_ms[MAX_BUCKETS][MAX_ROUNDS];
    double wait_ms[MAX_BUCKETS][MAX_ROUNDS];
    int64_t sums[MAX_BUCKETS] = {0};
    for (int64_t r = 0; r < rounds; r++)
        for (int b = 0; b < n_buckets; b++) {
            check(cd_trainer_set_int(tr, CD_TRAINER_OPT_BUCKET, buckets[b]), "bucket");
            check(cd_trainer_step(tr, x, rng, &loss), "a step at the new bucket size");
            MPI_Barrier(MPI_COMM_WORLD);
            cd_mpi_reset_stats(m);
            const double t0 = now();
            for (int64_t s = 0; s < steps; s++) check(cd_trainer_step(tr, x, rng, &loss), "step");
            double mine = (now() - t0) / (double)steps, slowest = 0, sec = 0, least = 0, most = 0;
            int64_t n = 0, floats = 0;
            MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            check(cd_mpi_stats(m, &sec, &n, &floats), "cd_mpi_stats");
            MPI_Allreduce(&sec, &least, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
            MPI_Allreduce(&sec, &most, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            step_ms[b][r] = 1e3 * slowest;
            comm_ms[b][r] = 1e3 * least / (double)steps;
            wait_ms[b][r] = 1e3 * most / (double)steps;
            sums[b] = n / steps;
        }
    if (rank == 0) {
        const int64_t params = cd_params_numel(cd_decoder_params(dec));
        printf("# %s decoder (%lld parameters), global batch %lld, %d rank(s) x %lld "
               "thread(s)%s; median of %lld rounds of %lld steps\n",
               decoder, (long long)params, (long long)batch, size, (long long)threads,
               flags ? ", fixed order" : "", (long long)rounds, (long long)steps);
        printf("%-10s %8s %10s %10s %10s %8s %10s\n", "bucket", "sums", "ms/step", "sums ms",
               "most ms", "share", "images/s");
        for (int b = 0; b < n_buckets; b++) {
            const double st = median(step_ms[b], (int)rounds), cm = median(comm_ms[b], (int)rounds);
            const double wt = median(wait_ms[b], (int)rounds);
            printf("%-10lld %8lld %10.1f %10.1f %10.1f %7.1f%% %10.1f\n", (long long)buckets[b],
                   (long long)sums[b], st, cm, wt, 100.0 * cm / st, 1e3 * (double)batch / st);
        }
    }
    cd_tensor_free(x);
    cd_rng_free(rng);
    cd_mpi_free(m);
    cd_trainer_free(tr);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
    MPI_Finalize();
    return 0;
}
