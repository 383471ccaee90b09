/*
 * classifier_options.c - the classifier's training options, on the same
 * typed, self-describing model as the other objects' options.
 */
#include "classifier.h"

#include <float.h>

static const cd__option options[] = {
    {CD_CLASSIFIER_OPT_BATCH, "batch", CD_OPTION_INT, -1, 1, CD_CLASSIFIER_MAX_BATCH, false, false,
     128},
    {CD_CLASSIFIER_OPT_LR, "lr", CD_OPTION_REAL, -1, 0, DBL_MAX, true, false, 1e-3},
    /* The bound for 28 x 28 images; training checks min(H, W) / 4. */
    {CD_CLASSIFIER_OPT_MAX_SHIFT, "max_shift", CD_OPTION_INT, -1, 0, 7, false, false, 1},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

void cd__classifier_opts_default(cd__classifier_opts *o)
{
    *o = (cd__classifier_opts){.batch = (int64_t)options[0].def,
                               .lr = options[1].def,
                               .max_shift = (int64_t)options[2].def};
}

static const cd__option *find_option(const char *fn, cd_classifier_option key)
{
    return cd__option_find(options, N_OPTIONS, (int32_t)key, fn);
}

cd_status cd_classifier_option_info(cd_classifier_option key, cd_option_info *info)
{
    static const char fn[] = "cd_classifier_option_info";
    const cd__option *o = find_option(fn, key);
    return o ? cd__option_describe(o, fn, info) : cd_last_status();
}

cd_status cd_classifier_set_int(cd_classifier *c, cd_classifier_option key, int64_t value)
{
    static const char fn[] = "cd_classifier_set_int";
    CD__CHECK_NOT_NULL(c, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_int(o, fn, value));
    cd__classifier_opts *opts = cd__classifier_opts_of(c);
    if (key == CD_CLASSIFIER_OPT_BATCH)
        opts->batch = value;
    else
        opts->max_shift = value;
    return CD_OK;
}

cd_status cd_classifier_set_real(cd_classifier *c, cd_classifier_option key, double value)
{
    static const char fn[] = "cd_classifier_set_real";
    CD__CHECK_NOT_NULL(c, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_real(o, fn, value));
    cd__classifier_opts_of(c)->lr = value; /* the one real key */
    return CD_OK;
}

cd_status cd_classifier_get_int(const cd_classifier *c, cd_classifier_option key, int64_t *value)
{
    static const char fn[] = "cd_classifier_get_int";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, true));
    const cd__classifier_opts *opts = cd__classifier_opts_of((cd_classifier *)c);
    *value = key == CD_CLASSIFIER_OPT_BATCH ? opts->batch : opts->max_shift;
    return CD_OK;
}

cd_status cd_classifier_get_real(const cd_classifier *c, cd_classifier_option key, double *value)
{
    static const char fn[] = "cd_classifier_get_real";
    CD__CHECK_NOT_NULL(c, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, false));
    *value = cd__classifier_opts_of((cd_classifier *)c)->lr;
    return CD_OK;
}
