/*
 * cmd_classifier.c - colddiff train-classifier: train the MNIST classifier
 * the metrics use (FD features, class preservation and entropy). With the
 * defaults and --seed 42 it reproduces the shipped
 * examples/data/mnist-classifier.cdm bit for bit (docs/metrics-classifier.md).
 */
#include "cli.h"

#include <stdio.h>

typedef struct {
    cd_dataset *ds;
    int64_t epochs;
} progress;

static cd_status on_epoch(cd_classifier *c, int64_t epoch, double loss, void *user)
{
    const progress *p = user;
    double acc = 0.0;
    const cd_status st = cd_classifier_accuracy(c, p->ds, CD_SPLIT_TEST, &acc, NULL);
    if (st != CD_OK) return st;
    fprintf(stderr, "epoch %lld/%lld: training loss %.5f, test accuracy %.2f%%\n", (long long)epoch,
            (long long)p->epochs, loss, 100.0 * acc);
    return CD_OK;
}

int cmd_train_classifier(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    int64_t epochs = 8, batch = 128, shift = 1, seed = 42, threads = 0;
    double lr = 1e-3;
    cli_opt opts[] = {
        {"--data", OPT_STR, &data, 0, 0, NULL, "MNIST folder", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the classifier checkpoint to write", NULL},
        {"--epochs", OPT_I64, &epochs, 1, 1000, NULL, "epochs (8)", NULL},
        {"--batch", OPT_I64, &batch, 1, 4096, NULL, "batch size (128)", NULL},
        {"--lr", OPT_F64, &lr, 1e-9, 10, NULL, "peak learning rate of the cosine decay (1e-3)",
         NULL},
        {"--max-shift", OPT_I64, &shift, 0, 7, NULL, "random shifts of up to N pixels (1)", NULL},
        {"--seed", OPT_I64, &seed, 0, (double)INT64_MAX, NULL, "seed of weights and shuffles (42)",
         NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
    };
    cli_library_bounds(opts, (int)(sizeof opts / sizeof opts[0]), "--batch", CLI_LIB_CLASSIFIER,
                       CD_CLASSIFIER_OPT_BATCH);
    cli_library_bounds(opts, (int)(sizeof opts / sizeof opts[0]), "--max-shift", CLI_LIB_CLASSIFIER,
                       CD_CLASSIFIER_OPT_MAX_SHIFT);
    const cli_command cmd = {"train-classifier",
                             "--data D --out F [options]",
                             "Train the MNIST classifier used by the metrics on all 60,000 "
                             "training images\n(deterministic for a seed) and report its test "
                             "accuracy.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!data || !out) return cli_usage("train-classifier", "--data and --out are required");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads(threads) != CD_OK) return cli_fail("--threads");
    if (cli_output_ok("train-classifier", "the classifier", out, false) != CLI_OK) return CLI_FAIL;
    cd_dataset *ds = NULL;
    cd_rng *rng = NULL;
    cd_classifier *c = NULL;
    progress p = {NULL, epochs};
    double acc = 0.0;
    int ret = CLI_FAIL;
    /* No validation split: the classifier trains on the whole training set,
     * in file order before the first shuffle (as the shipped one did). */
    if (cli_load_data(&ds, data, -1.0, (uint64_t)seed) != CD_OK)
        cli_fail("loading the data");
    else if (cd_rng_create(&rng, (uint64_t)seed) != CD_OK)
        cli_fail("the generator");
    else if (cd_classifier_create(&c, rng) != CD_OK)
        cli_fail("the classifier");
    else if (cd_classifier_set_int(c, CD_CLASSIFIER_OPT_BATCH, batch) != CD_OK ||
             cd_classifier_set_real(c, CD_CLASSIFIER_OPT_LR, lr) != CD_OK ||
             cd_classifier_set_int(c, CD_CLASSIFIER_OPT_MAX_SHIFT, shift) != CD_OK)
        cli_fail("the training options");
    else if ((p.ds = ds, cd_classifier_train(c, ds, epochs, rng, on_epoch, &p)) != CD_OK)
        cli_fail("training");
    else if (cd_classifier_accuracy(c, ds, CD_SPLIT_TEST, &acc, NULL) != CD_OK)
        cli_fail("measuring the accuracy");
    else if (cd_classifier_save(c, out) != CD_OK)
        cli_fail("saving");
    else {
        printf("colddiff: test accuracy %.2f%%; wrote %s\n", 100.0 * acc, out);
        ret = CLI_OK;
    }
    cd_classifier_free(c);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    return ret;
}
