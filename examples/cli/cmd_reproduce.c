/*
 * cmd_reproduce.c - colddiff reproduce: the four runs of the report's
 * Tables 1 and 2 (docs/models.md, Metrics), trained with colddiff train
 * and measured with colddiff eval, then DIR/report.md with both tables
 * next to the report's numbers and links to every figure.
 *
 *   quick: a few minutes per run on 2 cores (parts of an epoch, 200
 *          evaluation images, DDIM 50 with eta 1 for the noise models): a
 *          smoke test of the whole pipeline, not the report's numbers;
 *   full:  the report's 50 epochs on all training images, 1,000 images,
 *          the report's samplers;
 *   smoke: seconds, with narrow decoders (for the tests).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name, *preset;
    bool unet;
    /* the report's row: FID (not comparable: its samples went in un-normalised,
     * docs/models.md, Metrics), test loss, RMSE, SSIM, PSNR */
    double fid, loss, rmse, ssim, psnr;
} run_spec;

static const run_spec runs[] = {
    {"cnn-const-0.001", "ddpm-cnn-good", false, 233, 0.0245, 0.306, 0.164, 10.5},
    {"cnn-const-0.1", "ddpm-cnn-bad", false, 432, 0.00275, 0.402, 0.0336, 7.94},
    {"unet-blur", "cold-blur-unet", true, 304.0255, 0.0113, 0.2312, 0.3549, 13.2237},
    {"unet-cosine", "ddpm-unet-cosine", true, 172.6256, 0.0271, 0.3592, 0.0804, 9.0724},
};
#define N_RUNS (int)(sizeof runs / sizeof runs[0])

/* Call a subcommand with an argument list built from '\x1f'-separated
 * printf output, so that paths may hold spaces. */
#define S "\x1f"
static int call(int (*cmd)(int, char **), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int call(int (*cmd)(int, char **), const char *fmt, ...)
{
    char line[8192], *argv[64];
    va_list ap;
    va_start(ap, fmt);
    const int len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof line) {
        fprintf(stderr, "colddiff: reproduce: arguments too long\n");
        return CLI_FAIL;
    }
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, S, &save); t && argc < 63;
         t = strtok_r(NULL, S, &save))
        argv[argc++] = t;
    argv[argc] = NULL;
    return cmd(argc, argv);
}

/* One number from the flat JSON colddiff eval writes. */
static double json_number(const char *path, const char *key)
{
    char buf[4096], pat[128];
    FILE *f = NULL;
    if (cli_open_read(path, &f) != 0) return NAN; /* the table then shows nan */
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(buf, pat);
    if (!p) return NAN;
    /* eval writes null for a value that is not finite. */
    char *end = NULL;
    const double v = strtod(p + strlen(pat), &end);
    return end == p + strlen(pat) ? NAN : v;
}

static int write_report(const char *dir, int budget, const char *const *json)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/report.md", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "colddiff: cannot write %s: %s\n", path, strerror(errno));
        return CLI_FAIL;
    }
    static const char *const what[] = {
        "Parts of an epoch and 200 evaluation images, DDIM 50 steps with eta 1 and x0-hat "
        "clipped to the data range for the noise models (docs/sampling.md): this checks the pipeline end to end and is far "
        "from the report's training. Use --budget full for comparable numbers.",
        "The report's 50 epochs on all 48,000 training images; metrics over the first 1,000 "
        "test images and 1,000 unconditional samples.",
        "64 training images, narrow decoders and 4 evaluation images: a test of the pipeline "
        "only."};
    fprintf(f,
            "# The report's Tables 1 and 2, reproduced by libcolddiff %s\n\n"
            "Budget: **%s**. %s\n\n",
            cd_version_string(),
            budget == 1   ? "full"
            : budget == 2 ? "smoke"
                          : "quick",
            what[budget]);
    fprintf(f, "Test loss is over all test images (mean +- standard error). RMSE, SSIM "
               "and PSNR use the per_image reduction. The report's FID is not comparable (its "
               "samples were fed un-normalised; docs/models.md, Metrics): FD here is the "
               "Frechet distance on the shipped MNIST classifier's features, against as many "
               "test images spread over the test set.\n\n");
    fprintf(f, "| run | FD (ours) | FID (report) | test loss (ours) | (report) | RMSE (ours) | "
               "(report) | SSIM (ours) | (report) | PSNR (ours) | (report) | class preservation "
               "| class entropy (nats) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
               "---:|---:|\n");
    for (int i = 0; i < N_RUNS; i++)
        fprintf(f,
                "| %s (%s) | %.2f | %.4g | %.5f +- %.5f | %.4g | %.4f | %.4g | %.4f | %.4g | "
                "%.3f | %.4g | %.3f | %.3f |\n",
                runs[i].name, runs[i].preset, json_number(json[i], "fd"), runs[i].fid,
                json_number(json[i], "test_loss"), json_number(json[i], "test_loss_std_error"),
                runs[i].loss, json_number(json[i], "rmse"), runs[i].rmse,
                json_number(json[i], "ssim"), runs[i].ssim, json_number(json[i], "psnr"),
                runs[i].psnr, json_number(json[i], "class_preservation"),
                json_number(json[i], "class_entropy_nats"));
    fprintf(f, "\n## Figures\n\n");
    for (int i = 0; i < N_RUNS; i++)
        fprintf(f,
                "### %s\n\n![loss](%s/loss.svg)\n\nSamples: ![samples](%s/samples.png)\n\n"
                "Restorations (x, D(x, t) at T/10, T/2 and T, x-hat at those times, the "
                "result): ![restorations](%s/restore.png)\n\n",
                runs[i].name, runs[i].name, runs[i].name, runs[i].name);
    fprintf(f, "Schedules (the report's Figure 5): ![alpha-bar](schedules.svg)\n");
    const int e = cli_commit_file(f, tmp, path);
    if (e) {
        fprintf(stderr, "colddiff: cannot write %s: %s\n", path, strerror(e));
        return CLI_FAIL;
    }
    printf("colddiff: wrote %s\n", path);
    return CLI_OK;
}

int cmd_reproduce(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    int budget = 0;
    int64_t threads = 0;
    static const char *const budgets[] = {"quick", "full", "smoke", NULL};
    const cli_opt opts[] = {
        {"--data", OPT_STR, &data, 0, 0, NULL, "MNIST folder", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "folder for the runs and report.md", NULL},
        {"--budget", OPT_CHOICE, &budget, 0, 0, budgets,
         "quick (about 30 min), full (50 epochs) or smoke (tests)", NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
    };
    const cli_command cmd = {"reproduce",
                             "--data D --out DIR [--budget quick|full]",
                             "Train and evaluate the four runs of the report's Tables 1 and 2 "
                             "and write\nDIR/report.md with both tables next to the report's "
                             "numbers.",
                             opts,
                             4,
                             NULL,
                             NULL};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!data || !out) return cli_usage("reproduce", "--data and --out are required");
    if (cli_check_only) return CLI_OK;
    if (cli_output_ok("reproduce", "the output folder", out, true) != CLI_OK) return CLI_FAIL;
    const bool full = budget == 1, smoke = budget == 2;
    char thr[32] = "";
    if (threads > 0) snprintf(thr, sizeof thr, "--threads" S "%lld", (long long)threads);
    const int n_eval = full ? 1000 : smoke ? 4 : 200;
    char json[N_RUNS][4096];
    const char *jp[N_RUNS];
    for (int i = 0; i < N_RUNS && rc == CLI_OK; i++) {
        const run_spec *r = &runs[i];
        const bool noise = strstr(r->preset, "ddpm") != NULL;
        char dir[2048];
        if ((size_t)snprintf(dir, sizeof dir, "%s/%s", out, r->name) >= sizeof dir) {
            fprintf(stderr, "colddiff: --out is too long\n");
            return CLI_FAIL;
        }
        snprintf(json[i], sizeof json[i], "%s/metrics.json", dir);
        jp[i] = json[i];
        fprintf(stderr, "colddiff: run %d/%d: %s (%s)\n", i + 1, N_RUNS, r->name, r->preset);
        const char *limit = full      ? ""
                            : smoke   ? "--train-limit" S "64"
                            : r->unet ? "--train-limit" S "9000"
                                      : "--train-limit" S "12000";
        const char *narrow = !smoke ? "" : r->unet ? "--unet-dim" S "8" : "--cnn-hidden" S "8,8";
        const int epochs = full ? 50 : r->unet || smoke ? 1 : 2;
        rc = call(cmd_train,
                  "--data" S "%s" S "--out" S "%s" S "--preset" S "%s" S "--epochs" S "%d" S "%s" S
                  "%s" S "%s" S "--resume" S "--sample-epochs" S "%d" S "--n-samples" S "%d" S "%s",
                  data, dir, r->preset, epochs, limit, narrow, thr, epochs, smoke ? 4 : 64,
                  !noise ? ""
                  : full ? "--grid-sampler" S "ddpm"
                         : "--grid-sampler" S "ddim" S "--grid-steps" S "50");
        if (rc != CLI_OK) break;
        rc = call(cmd_eval,
                  "--checkpoint" S "%s/best.cdm" S "--data" S "%s" S "--n" S "%d" S "--fd-samples" S
                  "%d" S "--json" S "%s" S "%s" S "%s",
                  dir, data, n_eval, n_eval, json[i], thr,
                  !noise ? ""
                  : full ? "--sampler" S "ddpm"
                         : "--sampler" S "ddim" S "--steps" S "50");
        if (rc != CLI_OK) break;
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/samples_epoch%03d.png", dir, epochs);
        snprintf(dst, sizeof dst, "%s/samples.png", dir);
        rename(src, dst);
        snprintf(src, sizeof src, "%s/restore_epoch%03d.png", dir, epochs);
        snprintf(dst, sizeof dst, "%s/restore.png", dir);
        rename(src, dst);
    }
    if (rc != CLI_OK) return rc;
    char svg[4096];
    snprintf(svg, sizeof svg, "%s/schedules.svg", out);
    rc = call(cmd_schedule, "--preset" S "ddpm-cnn-linear" S "--compare" S "--log" S "--out" S "%s",
              svg);
    if (rc != CLI_OK) return rc;
    return write_report(out, budget, jp);
}
