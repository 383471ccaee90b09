/*
 * bench_classifier.c - trains the MNIST classifier the metrics use
 * (docs/metrics-classifier.md), until `colddiff train-classifier` exists:
 *
 *   bench_classifier --data DIR [--out FILE] [--epochs E] [--seed S]
 *                    [--batch B] [--lr LR] [--shift K] [--threads T]
 *                    [--train-limit N]
 *
 * Loads MNIST from DIR (cd_dataset_load_mnist: all 60,000 training images
 * train, no validation split), creates a classifier from a generator seeded
 * with S (default 42) and trains it with cd_classifier_train for E epochs
 * (default 8) with batches of B (default 128), a cosine learning rate from
 * LR (default 1e-3) and random shifts of up to K pixels (default 1),
 * drawing the epoch orders and shifts from the same generator. The defaults
 * are the recipe of the shipped examples/data/mnist-classifier.cdm. After
 * each epoch it prints the mean training loss, the test accuracy on all
 * 10,000 test images and the time, and at the end saves the checkpoint to
 * FILE (if given). --train-limit uses only the first N training images (a
 * quick smoke run). Not a test: the numbers go to
 * docs/metrics-classifier.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "colddiff.h"

#define BENCH_NAME "bench_classifier"
#include "bench_util.h"

static int64_t parse_int(const char *flag, const char *s, int64_t lo, int64_t hi)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "bench_classifier: %s '%s' is not an integer in %" PRId64 "..%" PRId64 "\n",
                flag, s, lo, hi);
        exit(2);
    }
    return (int64_t)v;
}

typedef struct {
    cd_dataset *ds;
    double t0, last;
} progress;

static cd_status on_epoch(cd_classifier *c, int64_t epoch, double loss, void *user)
{
    progress *p = user;
    const double t = now();
    double acc = 0.0;
    int64_t correct = 0;
    cd_status st = cd_classifier_accuracy(c, p->ds, CD_SPLIT_TEST, &acc, &correct);
    if (st != CD_OK) return st;
    const double t_eval = now() - t;
    printf("epoch %" PRId64 ": train loss %.5f, test accuracy %.4f%% (%" PRId64 "/%" PRId64
           "), train %.1f s, eval %.1f s, total %.1f s\n",
           epoch, loss, 100.0 * acc, correct, cd_dataset_count(p->ds, CD_SPLIT_TEST), t - p->last,
           t_eval, now() - p->t0);
    fflush(stdout);
    p->last = now();
    return CD_OK;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    int64_t epochs = 8, batch = 128, threads = 0, limit = 0, shift = 1;
    uint64_t seed = 42;
    double lr = 1e-3;
    /* Every flag but --help takes a value: two words per round. */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            printf("usage: bench_classifier --data DIR [--out FILE] [--epochs E] [--seed S] "
                   "[--batch B] [--lr LR] [--shift K] [--threads T] [--train-limit N]\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_classifier: %s needs a value (see --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--epochs") == 0)
            epochs = parse_int(a, v, 1, 1000);
        else if (strcmp(a, "--seed") == 0)
            seed = (uint64_t)parse_int(a, v, 0, INT64_MAX);
        else if (strcmp(a, "--batch") == 0)
            batch = parse_int(a, v, 1, CD_CLASSIFIER_MAX_BATCH);
        else if (strcmp(a, "--shift") == 0)
            shift = parse_int(a, v, 0, 7);
        else if (strcmp(a, "--threads") == 0)
            threads = parse_int(a, v, 1, 256);
        else if (strcmp(a, "--train-limit") == 0)
            limit = parse_int(a, v, 1, INT64_MAX);
        else if (strcmp(a, "--lr") == 0) {
            char *end = NULL;
            lr = strtod(v, &end);
            if (!end || *end || !(lr > 0.0)) {
                fprintf(stderr, "bench_classifier: --lr '%s' is not a positive number\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "bench_classifier: unknown flag '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!data) {
        fprintf(stderr, "bench_classifier: --data DIR is required (see --help)\n");
        return 2;
    }
    if (threads) check(cd_set_num_threads(threads), "--threads");

    progress p = {0};
    check(cd_dataset_load_mnist(&p.ds, data), "loading MNIST");
    if (limit) {
        /* Keep the first N training images: a split whose train part is
         * them, in order (cd_dataset_split_from_file). */
        const int64_t n = cd_dataset_count(p.ds, CD_SPLIT_TRAIN);
        if (limit < n) {
            char path[] = "/tmp/bench_classifier_split_XXXXXX";
            FILE *f = NULL;
            int fd = mkstemp(path);
            if (fd < 0 || !(f = fdopen(fd, "w"))) {
                fprintf(stderr, "bench_classifier: cannot write a split file\n");
                return 1;
            }
            for (int64_t i = 0; i < limit; i++) fprintf(f, "%" PRId64 "\n", i);
            fclose(f);
            cd_status st = cd_dataset_split_from_file(p.ds, path);
            remove(path);
            check(st, "--train-limit");
        }
    }
    cd_rng *rng = NULL;
    cd_classifier *c = NULL;
    check(cd_rng_create(&rng, seed), "rng");
    check(cd_classifier_create(&c, rng), "creating the classifier");
    printf("classifier: %" PRId64 " parameters; %" PRId64 " training images, %" PRId64
           " test images; epochs %" PRId64 ", batch %" PRId64 ", lr %g (cosine), shift %" PRId64
           ", seed %" PRIu64 ", threads %d\n",
           cd_params_numel(cd_classifier_params(c)), cd_dataset_count(p.ds, CD_SPLIT_TRAIN),
           cd_dataset_count(p.ds, CD_SPLIT_TEST), epochs, batch, lr, shift, seed,
           (int)cd_get_num_threads());
    fflush(stdout);
    p.t0 = p.last = now();
    check(cd_classifier_set_int(c, CD_CLASSIFIER_OPT_BATCH, batch), "--batch");
    check(cd_classifier_set_real(c, CD_CLASSIFIER_OPT_LR, lr), "--lr");
    check(cd_classifier_set_int(c, CD_CLASSIFIER_OPT_MAX_SHIFT, shift), "--shift");
    check(cd_classifier_train(c, p.ds, epochs, rng, on_epoch, &p), "training");
    printf("trained in %.1f s\n", now() - p.t0);
    if (out) {
        check(cd_classifier_save(c, out), "saving");
        printf("saved %s\n", out);
    }
    cd_classifier_free(c);
    cd_rng_free(rng);
    cd_dataset_free(p.ds);
    return 0;
}
