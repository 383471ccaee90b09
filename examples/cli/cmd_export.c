/*
 * cmd_export.c - colddiff export: the inference model file of a training
 * checkpoint (cd_trainer_export): decoder and degradation with its
 * schedule, without the optimiser state, so about a third of the size.
 */
#include "cli.h"

static const char *const weight_names[] = {"float32", "float16", NULL};

int cmd_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    int weights = CD_WEIGHTS_FLOAT32;
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &in, 0, 0, NULL, "a training checkpoint (RUN/best.cdm)", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the inference model to write (model.cdm)", NULL},
        {"--weights", OPT_CHOICE, &weights, 0, 0, weight_names,
         "how the weights are stored: float32 (exact), or float16 (rounded to half precision, "
         "about half the file)",
         NULL},
    };
    const cli_command cmd = {"export",
                             "--checkpoint RUN/best.cdm --out model.cdm",
                             "Write the inference model of a training checkpoint: the decoder "
                             "(its EMA weights\nwhen training kept an EMA) and the degradation "
                             "with its schedule, no optimiser\nstate. sample, restore, eval and "
                             "info take either file.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!in || !out) return cli_usage("export", "--checkpoint and --out are required");
    if (cli_check_only) return CLI_OK;
    if (cli_output_ok("export", "the model", out, false) != CLI_OK) return CLI_FAIL;
    cd_trainer *tr = NULL;
    if (weights == CD_WEIGHTS_FLOAT32 && cd_trainer_load(&tr, in, NULL) == CD_OK) {
        double ema = 0;
        cd_trainer_get_real(tr, CD_TRAINER_OPT_EMA_DECAY, &ema);
        const bool with_ema = ema > 0 && cd_trainer_steps(tr) > 0;
        const cd_status st = cd_trainer_export(tr, out);
        cd_trainer_free(tr);
        if (st != CD_OK) return cli_fail("exporting");
        printf("colddiff: wrote the inference model %s (%s weights)\n", out,
               with_ema ? "EMA" : "current");
        return CLI_OK;
    }
    /* Float16, or not a training checkpoint: through the model loader,
     * which takes a training checkpoint's EMA weights when it has them; an
     * inference model is copied, and anything else gets its message. */
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    if (cd_model_load(in, &dec, &deg) != CD_OK) return cli_fail("reading the checkpoint");
    const cd_status st = cd_model_save_as(out, dec, deg, (cd_weight_format)weights);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    if (st != CD_OK) return cli_fail("exporting");
    printf("colddiff: wrote the inference model %s (%s weights of %s)\n", out,
           weight_names[weights], in);
    return CLI_OK;
}
