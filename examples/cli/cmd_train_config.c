/*
 * cmd_train_config.c - colddiff train's config.txt: every setting of a run,
 * written when it starts and read back by --resume, so that a resumed run
 * is the run that was started.
 */
#include "cmd_train.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* config.txt records every setting of the run; --resume reads it back, so
 * that a resumed run is the run that was started. A setting that shapes
 * the data or the batches cannot change on resume (the result would no
 * longer be that run); the others may, and the run says so. */
enum { F_I64, F_F64, F_TIMES, F_SAMPLER, F_BOOL, F_STR };
typedef struct {
    const char *key, *flag;
    int type;
    size_t off;
    bool fixed; /* refused on resume when it differs */
} cfg_field;

#define FIELD(k, f, t, m, fx)                \
    {                                        \
        k, f, t, offsetof(train_opts, m), fx \
    }
static const cfg_field fields[] = {
    FIELD("data", "--data", F_STR, data, false),
    FIELD("channels", "--channels", F_I64, channels, true),
    FIELD("size", "--size", F_I64, size, true),
    FIELD("seed", "--seed", F_I64, seed, true),
    FIELD("val_fraction", "--val-fraction", F_F64, val_fraction, true),
    FIELD("train_limit", "--train-limit", F_I64, train_limit, true),
    FIELD("val_limit", "--val-limit", F_I64, val_limit, false),
    FIELD("epochs", "--epochs", F_I64, epochs, false),
    FIELD("batch", "--batch", F_I64, batch, true),
    FIELD("lr", "--lr", F_F64, lr, false),
    FIELD("adam_beta2", "--adam-beta2", F_F64, beta2, false),
    FIELD("ema", "--ema", F_F64, ema, false),
    FIELD("clip_norm", "--clip-norm", F_F64, clip, false),
    FIELD("lr_warmup", "--lr-warmup", F_I64, lr_warmup, false),
    FIELD("ema_warmup", "--ema-warmup", F_BOOL, ema_warmup, false),
    FIELD("lr_decay", "--lr-decay", F_BOOL, lr_decay, false),
    FIELD("n_samples", "--n-samples", F_I64, n_samples, false),
    FIELD("sample_epochs", "--sample-epochs", F_TIMES, sample_epochs, false),
    FIELD("grid_sampler", "--grid-sampler", F_SAMPLER, grid_sampler, false),
    FIELD("grid_steps", "--grid-steps", F_I64, grid_steps, false),
    FIELD("grid_eta", "--grid-eta", F_F64, grid_eta, false),
    FIELD("grid_clip", "--grid-no-clip", F_BOOL, grid_clip, false),
    FIELD("restore_times", "--restore-times", F_TIMES, restore_times, false),
};
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])

static void format_field(const train_opts *o, const cfg_field *fl, char *buf, size_t cap)
{
    const void *p = (const char *)o + fl->off;
    char d[32];
    switch (fl->type) {
    case F_I64: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)p); return;
    case F_F64: snprintf(buf, cap, "%s", cli_fmt_double(d, *(const double *)p)); return;
    case F_SAMPLER: snprintf(buf, cap, "%s", cli_sampler_names[*(const int *)p]); return;
    case F_BOOL: snprintf(buf, cap, "%d", *(const bool *)p ? 1 : 0); return;
    case F_STR: snprintf(buf, cap, "%s", *(const char *const *)p); return;
    }
    const cli_times *t = p;
    if (fl->off == offsetof(train_opts, restore_times) && !o->times_given) {
        snprintf(buf, cap, "default");
        return;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < t->n && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)t->v[i]);
}

/* Parse a recorded value into o; false when it does not parse. */
static bool parse_field(train_opts *o, const cfg_field *fl, const char *v, char *strbuf)
{
    void *p = (char *)o + fl->off;
    char *end = NULL;
    switch (fl->type) {
    case F_I64: *(int64_t *)p = strtoll(v, &end, 10); return end != v && !*end;
    case F_F64: *(double *)p = strtod(v, &end); return end != v && !*end;
    case F_BOOL: *(bool *)p = strcmp(v, "0") != 0; return true;
    case F_STR:
        strcpy(strbuf, v);
        *(const char **)p = strbuf;
        return *v != '\0';
    case F_SAMPLER:
        for (int k = 0; cli_sampler_names[k]; k++)
            if (!strcmp(cli_sampler_names[k], v)) return (*(int *)p = k), true;
        return false;
    }
    cli_times *t = p;
    if (fl->off == offsetof(train_opts, restore_times)) o->times_given = strcmp(v, "default") != 0;
    t->n = 0;
    if (!strcmp(v, "default")) return true;
    for (const char *q = v; *q && t->n < CLI_MAX_TIMES; q = *end == ',' ? end + 1 : end) {
        t->v[t->n++] = strtoll(q, &end, 10);
        if (end == q) return false;
    }
    return true;
}

int train_write_config(const train_opts *o, const cli_model *m)
{
    char path[4096], final[4096], v[1024];
    cli_join(final, sizeof final, o->out, "config.txt");
    FILE *f = fopen(cli_join(path, sizeof path, o->out, "config.txt.tmp"), "w");
    int e = f ? 0 : errno;
    if (f) {
        fprintf(f, "# colddiff train configuration (libcolddiff %s)\n", cd_version_string());
        for (int i = 0; i < N_FIELDS; i++) {
            format_field(o, &fields[i], v, sizeof v);
            fprintf(f, "%s = %s\n", fields[i].key, v);
        }
        cli_model_write(m, f);
        e = cli_commit_file(f, path, final);
    }
    if (e) fprintf(stderr, "colddiff: cannot write %s: %s\n", final, strerror(e));
    return e ? CLI_FAIL : CLI_OK;
}

/* config.txt again after a resume changed settings: the changed lines
 * rewritten, the others (the model's among them) kept as they were. */
int train_update_config(const train_opts *o, int n_changed)
{
    if (n_changed == 0) return CLI_OK;
    char path[4096], tmp[4096], line[1024], v[1024];
    FILE *in = NULL;
    if (cli_open_read(cli_join(path, sizeof path, o->out, "config.txt"), &in) != 0)
        return CLI_OK; /* nothing recorded to update */
    FILE *out = fopen(cli_join(tmp, sizeof tmp, o->out, "config.txt.tmp"), "w");
    if (!out) {
        fclose(in);
        fprintf(stderr, "colddiff: cannot write %s: %s\n", path, strerror(errno));
        return CLI_FAIL;
    }
    while (fgets(line, sizeof line, in)) {
        const cfg_field *fl = NULL;
        for (int i = 0; i < N_FIELDS && !fl; i++) {
            const size_t k = strlen(fields[i].key);
            if (!strncmp(line, fields[i].key, k) && !strncmp(line + k, " = ", 3)) fl = &fields[i];
        }
        if (!fl) {
            fputs(line, out);
            continue;
        }
        format_field(o, fl, v, sizeof v);
        fprintf(out, "%s = %s\n", fl->key, v);
    }
    fclose(in);
    const int e = cli_commit_file(out, tmp, path);
    if (e) fprintf(stderr, "colddiff: cannot write %s: %s\n", path, strerror(e));
    return e ? CLI_FAIL : CLI_OK;
}

bool train_option_given(const train_opts *o, const char *flag)
{
    for (int k = 0; k < o->cmd->n_opts; k++)
        if (!strcmp(o->cmd->opts[k].name, flag))
            return o->cmd->opts[k].seen && *o->cmd->opts[k].seen;
    return false;
}

/* The model comes from last.cdm on resume: a model option given again must
 * say what the run recorded (a preset: all of it). */
static int check_model_options(const train_opts *o, const cli_model *m, const char *recorded)
{
    static const char *const flags[][2] = {{"--decoder", "decoder"},
                                           {"--degradation", "degradation"},
                                           {"--schedule", "schedule"},
                                           {"--T", "T"},
                                           {"--beta", "beta"},
                                           {"--beta-min", "beta_min"},
                                           {"--beta-max", "beta_max"},
                                           {"--cosine-s", "cosine_s"},
                                           {"--beta-clip", "beta_clip"},
                                           {"--kernel", "kernel"},
                                           {"--padding", "padding"},
                                           {"--edge-width", "edge_width"},
                                           {"--t-max", "t_max"},
                                           {"--t-per-batch", "t_per_batch"},
                                           {"--cnn-hidden", "cnn_hidden"},
                                           {"--unet-dim", "unet_dim"},
                                           {"--unet-mults", "unet_mults"},
                                           {"--unet-heads", "unet_heads"},
                                           {"--unet-head-dim", "unet_head_dim"},
                                           {"--prediction", "prediction"},
                                           {"--conditional", "conditional"},
                                           {"--label-dropout", "label_dropout"}};
    char *text = NULL, now[256], was[256];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return cli_fail("out of memory");
    cli_model_write(m, f);
    fclose(f);
    const bool preset = train_option_given(o, "--preset");
    int rc = CLI_OK;
    for (size_t i = 0; rc == CLI_OK && i < sizeof flags / sizeof flags[0]; i++) {
        if (!preset && !train_option_given(o, flags[i][0])) continue;
        /* The preset's labels depend on the data, which the run recorded. */
        if (m->classes_if_any && !strcmp(flags[i][1], "conditional")) continue;
        if (!cli_config_value(text, flags[i][1], now, sizeof now) ||
            !cli_config_value(recorded, flags[i][1], was, sizeof was) || !strcmp(now, was))
            continue;
        rc = cli_usage("train",
                       "%s cannot change on --resume: the run in %s has %s = %s, and "
                       "its model comes from last.cdm",
                       preset ? "--preset" : flags[i][0], o->out, flags[i][1], was);
    }
    free(text);
    return rc;
}

/* Read config.txt into the run's settings: a recorded setting holds unless
 * the command line gave another one, which is refused for a fixed setting
 * and announced for the others. *n_changed counts the changes. */
int train_read_config(train_opts *o, const cli_model *m, int *n_changed)
{
    static char data[4096];
    char path[4096], line[4096], now[1024], was[1024];
    FILE *f = NULL;
    *n_changed = 0;
    const int e = cli_open_read(cli_join(path, sizeof path, o->out, "config.txt"), &f);
    if (e == ENOENT) return CLI_OK;
    if (e) {
        fprintf(stderr, "colddiff: cannot read %s: %s\n", path, cli_strerror(e));
        return CLI_FAIL;
    }
    int rc = CLI_OK;
    static char text[65536];
    size_t used = 0;
    while (rc == CLI_OK && fgets(line, sizeof line, f)) {
        used +=
            (size_t)snprintf(text + used, used < sizeof text ? sizeof text - used : 0, "%s", line);
        if (used >= sizeof text) used = sizeof text - 1;
        line[strcspn(line, "\n")] = '\0';
        for (int i = 0; i < N_FIELDS; i++) {
            const cfg_field *fl = &fields[i];
            const size_t k = strlen(fl->key);
            if (strncmp(line, fl->key, k) || strncmp(line + k, " = ", 3)) continue;
            train_opts rec = *o;
            if (!parse_field(&rec, fl, line + k + 3, data)) {
                fprintf(stderr, "colddiff: %s: cannot read '%s'\n", path, line);
                rc = CLI_FAIL;
                break;
            }
            format_field(&rec, fl, was, sizeof was);
            format_field(o, fl, now, sizeof now);
            const bool differs = strcmp(was, now) != 0;
            if (!train_option_given(o, fl->flag) || !differs) {
                *o = rec; /* the run's own setting */
            } else if (fl->fixed) {
                rc = cli_usage("train", "%s cannot change on --resume: the run in %s used %s",
                               fl->flag, o->out, was);
            } else {
                fprintf(stderr, "colddiff: %s changed from %s to %s\n", fl->key, was, now);
                (*n_changed)++;
            }
            break;
        }
    }
    fclose(f);
    return rc == CLI_OK ? check_model_options(o, m, text) : rc;
}
