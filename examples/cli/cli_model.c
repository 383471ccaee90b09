/*
 * cli_model.c - presets and model construction for colddiff train and
 * colddiff schedule. The presets reproduce the report's runs, quirks
 * included (docs/models.md, The report presets).
 */
#include "cli_model.h"

#include <stdlib.h>
#include <string.h>

const char *const cli_schedule_names[] =
    {"linear", "constant", "cosine", "constant-report", "cosine-report", "linear-report", NULL};
const char *const cli_preset_names[] = {"ddpm-cnn-linear",
                                        "ddpm-cnn-good",
                                        "ddpm-cnn-bad",
                                        "cold-blur-unet",
                                        "ddpm-unet-cosine",
                                        "fast",
                                        NULL};

void cli_model_defaults(cli_model *m)
{
    *m = (cli_model){.decoder = CD_DECODER_CNN,
                     .degradation = CD_DEGRADATION_NOISE,
                     .schedule = SCH_LINEAR,
                     .padding = CD_PADDING_REFLECT,
                     .T = 1000,
                     .kernel = 11,
                     .beta = 0.001,
                     .beta_min = 1e-4,
                     .beta_max = 0.02,
                     .cosine_s = 0.008,
                     .beta_clip = 0.999,
                     .label_dropout = 0.1,
                     .edge_width = 2.0};
}

void cli_model_preset(cli_model *m, int index)
{
    cli_model_defaults(m);
    switch (index) {
    case 0: /* ddpm-cnn-linear: the defaults, in the report's float32 arithmetic */
        m->schedule = SCH_LINEAR_REPORT;
        break;
    case 1: /* ddpm-cnn-good: constant 0.001, T = 2000, t ~ U{1..T-1} */
        m->schedule = SCH_CONSTANT_REPORT, m->beta = 0.001, m->T = 2000, m->t_max = 1999;
        break;
    case 2: /* ddpm-cnn-bad: constant 0.1, T = 200, t ~ U{1..T-1} */
        m->schedule = SCH_CONSTANT_REPORT, m->beta = 0.1, m->T = 200, m->t_max = 199;
        break;
    case 3: /* cold-blur-unet: blur beta = 1, T = 100, k = 11, one t per batch */
        m->decoder = CD_DECODER_UNET, m->degradation = CD_DEGRADATION_BLUR;
        m->schedule = SCH_CONSTANT;
        m->beta = 1.0, m->T = 100, m->t_per_batch = true, m->report_prior = true;
        break;
    case 4: /* ddpm-unet-cosine: beta_clip 0.9, no recompute */
        m->decoder = CD_DECODER_UNET, m->schedule = SCH_COSINE_REPORT, m->beta_clip = 0.9;
        break;
    case CLI_PRESET_FAST: /* not the report's: chosen by the runs in docs/fast-preset.md */
        m->decoder = CD_DECODER_UNET, m->schedule = SCH_COSINE, m->prediction = CD_PREDICT_V;
        m->unet_dim = 16, m->unet_heads = 2, m->unet_head_dim = 16;
        m->conditional = true, m->classes_if_any = true;
        break;
    }
}

int cli_model_from_preset_flag(cli_model *m, int argc, char **argv)
{
    int preset = -1;
    for (int i = 0; i < argc; i++) {
        const char *name = NULL;
        if (!strcmp(argv[i], "--preset") && i + 1 < argc)
            name = argv[i + 1];
        else if (!strncmp(argv[i], "--preset=", 9))
            name = argv[i] + 9;
        for (int k = 0; name && cli_preset_names[k]; k++)
            if (!strcmp(cli_preset_names[k], name)) preset = k;
    }
    if (preset >= 0)
        cli_model_preset(m, preset);
    else
        cli_model_defaults(m);
    return preset;
}

int cli_model_check(const cli_model *m, const char *cmd)
{
    if ((m->schedule == SCH_LINEAR || m->schedule == SCH_LINEAR_REPORT) &&
        m->beta_min > m->beta_max)
        return cli_usage(cmd,
                         "--beta-min %g exceeds --beta-max %g (the linear schedule "
                         "rises from one to the other)",
                         m->beta_min, m->beta_max);
    if (m->prediction != 0 && m->degradation != CD_DEGRADATION_NOISE)
        return cli_usage(cmd,
                         "--prediction %s needs --degradation noise (the others predict "
                         "the image)",
                         cd_enum_name(CD_ENUM_PREDICTION, m->prediction));
    if (m->t_max > m->T)
        return cli_usage(cmd, "--t-max %lld exceeds --T %lld", (long long)m->t_max,
                         (long long)m->T);
    cd_schedule *s = NULL;
    if (cli_model_schedule(m, &s) != CD_OK)
        return cli_usage(cmd, "the schedule options: %s", cd_last_error());
    cd_schedule_free(s);
    return CLI_OK;
}

cd_status cli_model_schedule(const cli_model *m, cd_schedule **out)
{
    switch (m->schedule) {
    case SCH_LINEAR: return cd_schedule_create_linear(out, m->T, m->beta_min, m->beta_max);
    case SCH_CONSTANT: return cd_schedule_create_constant(out, m->T, m->beta);
    case SCH_COSINE: return cd_schedule_create_cosine(out, m->T, m->cosine_s, m->beta_clip);
    case SCH_CONSTANT_REPORT: return cd_schedule_create_constant_report(out, m->T, m->beta);
    case SCH_LINEAR_REPORT:
        return cd_schedule_create_linear_report(out, m->T, m->beta_min, m->beta_max);
    default: return cd_schedule_create_cosine_report(out, m->T);
    }
}

static cd_status make_degradation(const cli_model *m, const cd_schedule *s, cd_dataset *ds,
                                  cd_degradation **out)
{
    switch (m->degradation) {
    case CD_DEGRADATION_NOISE: return cd_degradation_create_noise(out, s);
    case CD_DEGRADATION_BLUR:
        return cd_degradation_create_blur(out, s, m->kernel, (cd_padding)m->padding);
    case CD_DEGRADATION_PIXELATE: return cd_degradation_create_pixelate(out, s);
    case CD_DEGRADATION_MASK: return cd_degradation_create_mask(out, s, m->edge_width);
    default: break;
    }
    const int64_t shape[3] = {cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds)};
    cd_tensor *mean = NULL;
    cd_status st = cd_tensor_create(&mean, 3, shape);
    if (st == CD_OK) st = cd_dataset_mean_image(ds, CD_SPLIT_TRAIN, mean);
    if (st == CD_OK) st = cd_degradation_create_fade(out, s, mean);
    cd_tensor_free(mean);
    return st;
}

static cd_status make_decoder(const cli_model *m, cd_dataset *ds, cd_rng *rng, cd_decoder **out)
{
    cd_decoder_config *cfg = NULL;
    cd_status st = cd_decoder_config_create(&cfg, (cd_decoder_kind)m->decoder);
    if (st == CD_OK)
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CHANNELS, cd_dataset_channels(ds));
    if (st == CD_OK && m->decoder == CD_DECODER_CNN) {
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, cd_dataset_height(ds));
        if (st == CD_OK)
            st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, cd_dataset_width(ds));
        if (st == CD_OK && m->cnn_hidden.n > 0)
            st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, m->cnn_hidden.v,
                                            m->cnn_hidden.n);
    }
    if (st == CD_OK && m->decoder == CD_DECODER_UNET && m->unet_dim > 0)
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, m->unet_dim);
    if (st == CD_OK && m->decoder == CD_DECODER_UNET && m->unet_mults.n > 0)
        st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, m->unet_mults.v,
                                        m->unet_mults.n);
    if (st == CD_OK && m->decoder == CD_DECODER_UNET && m->unet_heads > 0)
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, m->unet_heads);
    if (st == CD_OK && m->decoder == CD_DECODER_UNET && m->unet_head_dim > 0)
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, m->unet_head_dim);
    if (st == CD_OK && m->conditional)
        st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, cli_class_count(ds));
    if (st == CD_OK) st = cd_decoder_create(out, cfg, rng);
    cd_decoder_config_free(cfg);
    return st;
}

int cli_model_build(const cli_model *m, cd_dataset *ds, cd_rng *rng, cd_trainer **out,
                    cd_decoder **dec, cd_degradation **deg)
{
    cd_schedule *s = NULL;
    *out = NULL, *dec = NULL, *deg = NULL;
    if (cli_model_schedule(m, &s) != CD_OK) return cli_fail("the schedule");
    int rc = CLI_FAIL;
    if (m->conditional && cli_class_count(ds) <= 0) {
        rc = cli_usage("train", "--conditional needs data with classes: MNIST, or a folder of "
                                "class sub-folders (this one has none)");
    } else if (make_degradation(m, s, ds, deg) != CD_OK) {
        cli_fail("the degradation");
    } else if (m->report_prior && cd_degradation_set_prior(*deg, -0.36, 0.05, 0.002) != CD_OK) {
        cli_fail("the report's prior");
    } else if (make_decoder(m, ds, rng, dec) != CD_OK) {
        cli_fail("the decoder");
    } else if (cd_trainer_create(out, *dec, *deg) != CD_OK) {
        cli_fail("the trainer");
    } else {
        rc = CLI_OK;
        if ((m->t_max && cd_trainer_set_int(*out, CD_TRAINER_OPT_T_MAX, m->t_max) != CD_OK) ||
            (m->t_per_batch && cd_trainer_set_int(*out, CD_TRAINER_OPT_T_PER_BATCH, 1) != CD_OK) ||
            (m->prediction &&
             cd_trainer_set_int(*out, CD_TRAINER_OPT_PREDICTION, m->prediction) != CD_OK) ||
            cd_trainer_set_real(*out, CD_TRAINER_OPT_LABEL_DROPOUT, m->label_dropout) != CD_OK)
            rc = cli_fail("the trainer options");
    }
    if (rc != CLI_OK) {
        cd_trainer_free(*out); /* before the decoder and degradation it borrows */
        cd_decoder_free(*dec);
        cd_degradation_free(*deg);
        *out = NULL, *dec = NULL, *deg = NULL;
    }
    cd_schedule_free(s);
    return rc;
}

/* A list option's value and the line's end; "default" when not given. */
static void write_list(FILE *f, const cli_times *t)
{
    if (t->n == 0) fprintf(f, "default");
    for (int64_t i = 0; i < t->n; i++) fprintf(f, "%s%lld", i ? "," : "", (long long)t->v[i]);
    fprintf(f, "\n");
}

void cli_model_write(const cli_model *m, FILE *f)
{
    fprintf(f, "decoder = %s\ndegradation = %s\nschedule = %s\nT = %lld\n",
            cd_enum_name(CD_ENUM_DECODER_KIND, m->decoder),
            cd_enum_name(CD_ENUM_DEGRADATION_KIND, m->degradation), cli_schedule_names[m->schedule],
            (long long)m->T);
    char b[5][32];
    fprintf(f, "beta = %s\nbeta_min = %s\nbeta_max = %s\ncosine_s = %s\nbeta_clip = %s\n",
            cli_fmt_double(b[0], m->beta), cli_fmt_double(b[1], m->beta_min),
            cli_fmt_double(b[2], m->beta_max), cli_fmt_double(b[3], m->cosine_s),
            cli_fmt_double(b[4], m->beta_clip));
    fprintf(f,
            "kernel = %lld\npadding = %s\nedge_width = %s\nt_max = %lld\n"
            "t_per_batch = %d\nreport_prior = %d\nunet_dim = %lld\ncnn_hidden = ",
            (long long)m->kernel, cd_enum_name(CD_ENUM_PADDING, m->padding),
            cli_fmt_double(b[0], m->edge_width), (long long)m->t_max, (int)m->t_per_batch,
            (int)m->report_prior, (long long)m->unet_dim);
    write_list(f, &m->cnn_hidden);
    fprintf(f, "unet_mults = ");
    write_list(f, &m->unet_mults);
    fprintf(f, "unet_heads = %lld\nunet_head_dim = %lld\nprediction = %s\n",
            (long long)m->unet_heads, (long long)m->unet_head_dim,
            cd_enum_name(CD_ENUM_PREDICTION, m->prediction));
    fprintf(f, "conditional = %d\nlabel_dropout = %s\n", (int)m->conditional,
            cli_fmt_double(b[0], m->label_dropout));
}
