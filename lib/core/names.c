/*
 * names.c - the one table of the public enumerations' names.
 *
 * The command line, the Python binding, checkpoints and error messages all
 * spell these values. Keeping the spelling here, next to nothing else,
 * means a new value gets its name in one place and every front end learns
 * it: the CLI parses with cd_enum_parse, and the binding's test compares
 * its enum classes against cd_enum_name.
 */
#include "core.h"

#include <string.h>

typedef struct {
    const char *what;         /* the C type, for messages */
    const char *const *names; /* indexed by value; values run 0 .. count - 1 */
    int32_t count;
} enum_table;

#define TABLE(type, ...)                                                                 \
    {                                                                                    \
        type, (const char *const[]){__VA_ARGS__},                                        \
            (int32_t)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)) \
    }

static const enum_table tables[] = {
    [CD_ENUM_DECODER_KIND] = TABLE("cd_decoder_kind", "cnn", "unet"),
    [CD_ENUM_SCHEDULE_KIND] = TABLE("cd_schedule_kind", "linear", "constant", "cosine", "custom",
                                    "constant-report", "cosine-report", "arrays", "linear-report"),
    [CD_ENUM_DEGRADATION_KIND] =
        TABLE("cd_degradation_kind", "noise", "blur", "pixelate", "mask", "fade"),
    [CD_ENUM_PADDING] = TABLE("cd_padding", "reflect", "circular"),
    [CD_ENUM_TARGET] = TABLE("cd_target", "noise", "image"),
    [CD_ENUM_PREDICTION] = TABLE("cd_prediction", "noise", "x0", "v"),
    [CD_ENUM_SAMPLER_KIND] = TABLE("cd_sampler_kind", "ddpm", "ddim", "cold1", "cold2", "direct"),
    [CD_ENUM_SPLIT] = TABLE("cd_split", "train", "val", "test"),
    [CD_ENUM_METRIC_REDUCTION] = TABLE("cd_metric_reduction", "per_image", "report"),
    [CD_ENUM_PIXEL_MAP] = TABLE("cd_pixel_map", "range", "percentile"),
    [CD_ENUM_LOSS] = TABLE("cd_loss", "mse", "l1"),
};

#define N_TABLES ((int32_t)(sizeof tables / sizeof tables[0]))

static const enum_table *table_of(cd_enum e, const char *fn)
{
    if ((int32_t)e < 0 || (int32_t)e >= N_TABLES) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "%s: e = %d is not a cd_enum (0 .. %d)", fn, (int)e,
                  (int)N_TABLES - 1);
        return NULL;
    }
    return &tables[e];
}

int64_t cd_enum_count(cd_enum e)
{
    const enum_table *t = table_of(e, "cd_enum_count");
    return t ? t->count : -1;
}

const char *cd_enum_name(cd_enum e, int32_t value)
{
    static const char fn[] = "cd_enum_name";
    const enum_table *t = table_of(e, fn);
    if (!t) return NULL;
    if (value < 0 || value >= t->count) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %d is not a %s (0 .. %d)", fn, (int)value, t->what,
                  (int)t->count - 1);
        return NULL;
    }
    return t->names[value];
}

cd_status cd_enum_parse(cd_enum e, const char *name, int32_t *value)
{
    static const char fn[] = "cd_enum_parse";
    const enum_table *t = table_of(e, fn);
    if (!t) return cd_last_status();
    CD__CHECK_NOT_NULL(name, fn);
    CD__CHECK_NOT_NULL(value, fn);
    for (int32_t i = 0; i < t->count; i++)
        if (strcmp(name, t->names[i]) == 0) return *value = i, CD_OK;
    /* The message lists the choices, as a user reading it needs them. */
    char list[160] = "";
    size_t used = 0;
    for (int32_t i = 0; i < t->count && used + 1 < sizeof list; i++) {
        const int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", t->names[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return cd__error(CD_ERR_NOT_FOUND, "%s: '%s' is not a %s (one of: %s)", fn, name, t->what,
                     list);
}
