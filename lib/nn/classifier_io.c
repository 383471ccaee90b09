/*
 * classifier_io.c - a classifier in a checkpoint file
 * (docs/checkpoint-format.md; the keys are listed in
 * docs/metrics-classifier.md):
 *
 *   CONF  classifier.type      string     "cnn"
 *         classifier.height    int64      input height (28)
 *         classifier.width     int64      input width (28)
 *         classifier.channels  int64[3]   conv1..conv3 output channels
 *         classifier.hidden    int64      fc1 width: the features F
 *         classifier.classes   int64      K
 *   TENS  conv1.weight ... fc2.bias       PyTorch layouts
 *   STEP  optimiser steps and epochs trained
 *
 * No optimiser state is saved: the file is the frozen extractor.
 */
#include "classifier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TYPE "cnn"

cd_status cd_classifier_save(const cd_classifier *c, const char *path)
{
    static const char fn[] = "cd_classifier_save";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(path, fn);
    CD__CHECK_ARG(path[0] != '\0', fn, "'path' is empty");
    const cd__classifier_cfg *g = cd__classifier_cfg_of(c);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_create(&ck));
    cd_status st = cd__ckpt_set_str(ck, "classifier.type", TYPE);
    if (st == CD_OK) st = cd__ckpt_set_i64(ck, "classifier.height", g->height);
    if (st == CD_OK) st = cd__ckpt_set_i64(ck, "classifier.width", g->width);
    if (st == CD_OK) st = cd__ckpt_set_i64_array(ck, "classifier.channels", g->channels, 3);
    if (st == CD_OK) st = cd__ckpt_set_i64(ck, "classifier.hidden", g->hidden);
    if (st == CD_OK) st = cd__ckpt_set_i64(ck, "classifier.classes", g->classes);
    if (st == CD_OK)
        st = cd__ckpt_set_counters(ck, cd_classifier_steps(c), cd_classifier_epochs(c));
    /* The parameter set is only read; cd__ckpt_save takes it non-const. */
    if (st == CD_OK) st = cd__ckpt_save(ck, path, cd_classifier_params((cd_classifier *)c), NULL);
    cd__ckpt_free(ck);
    return st;
}

static cd_status get_i64(const cd__ckpt *ck, const char *path, const char *key, int64_t *v)
{
    if (cd__ckpt_get_i64(ck, key, v) != CD_OK)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': classifier checkpoint without an int64 "
                         "entry '%s'",
                         path, key);
    return CD_OK;
}

static cd_status config_from_ckpt(const cd__ckpt *ck, const char *path, cd__classifier_cfg *g)
{
    const char *type = NULL;
    if (cd__ckpt_get_str(ck, "classifier.type", &type) != CD_OK)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': no classifier.type entry (not a classifier "
                         "checkpoint?)",
                         path);
    if (strcmp(type, TYPE) != 0)
        return cd__error(CD_ERR_FORMAT, "'%s': unknown classifier.type '%s' (expected '" TYPE "')",
                         path, type);
    CD__TRY(get_i64(ck, path, "classifier.height", &g->height));
    CD__TRY(get_i64(ck, path, "classifier.width", &g->width));
    CD__TRY(get_i64(ck, path, "classifier.hidden", &g->hidden));
    CD__TRY(get_i64(ck, path, "classifier.classes", &g->classes));
    int64_t n = 0;
    if (cd__ckpt_get_i64_array(ck, "classifier.channels", NULL, 0, &n) != CD_OK || n != 3 ||
        cd__ckpt_get_i64_array(ck, "classifier.channels", g->channels, 3, &n) != CD_OK)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': classifier.channels must be an int64 array "
                         "of 3 entries",
                         path);
    if (cd__classifier_cfg_check(g, "classifier") != CD_OK) {
        char cause[256];
        snprintf(cause, sizeof cause, "%s", cd_last_error());
        return cd__error(CD_ERR_FORMAT, "'%s': bad classifier configuration: %s", path, cause);
    }
    return CD_OK;
}

cd_status cd_classifier_load(cd_classifier **out, const char *path)
{
    static const char fn[] = "cd_classifier_load";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    cd__classifier_cfg g;
    cd_classifier *c = NULL;
    cd_status st = config_from_ckpt(ck, path, &g);
    /* Described only: cd__ckpt_apply allocates the parameters once the file
     * is known to hold them all, whatever size the configuration claims. */
    if (st == CD_OK) st = cd__classifier_describe(&c, &g);
    if (st == CD_OK) st = cd__ckpt_apply(ck, cd_classifier_params(c), NULL, 0);
    int64_t steps = 0, epochs = 0;
    if (st == CD_OK && cd__ckpt_get_counters(ck, &steps, &epochs) == CD_OK)
        cd__classifier_set_counters(c, steps, epochs);
    cd__ckpt_free(ck);
    if (st != CD_OK) {
        cd_classifier_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

cd_status cd_classifier_load_default(cd_classifier **out)
{
    static const char fn[] = "cd_classifier_load_default";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    char path[4096];
    CD__TRY(cd__find_data_file(fn, "COLDDIFF_CLASSIFIER", "mnist-classifier.cdm",
                               "the shipped MNIST classifier", path, sizeof path));
    return cd_classifier_load(out, path);
}
