/*
 * cmd_schedule.c - colddiff schedule: the report's Figure 5, alpha-bar_t
 * against t, for a preset or a schedule given by flags, optionally next to
 * the other presets' noise schedules.
 */
#include "cli_model.h"

#include <stdlib.h>
#include <string.h>

/* alpha-bar_0..T of m as doubles, with t / T as x. */
static int curve(const cli_model *m, double **x, double **y)
{
    cd_schedule *s = NULL;
    if (cli_model_schedule(m, &s) != CD_OK) return cli_fail("the schedule");
    const int64_t T = m->T;
    float *ab = malloc((size_t)(T + 1) * sizeof *ab);
    *x = malloc((size_t)(T + 1) * sizeof **x);
    *y = malloc((size_t)(T + 1) * sizeof **y);
    int rc = CLI_OK;
    if (!ab || !*x || !*y) {
        fprintf(stderr, "colddiff: out of memory\n");
        rc = CLI_FAIL;
    } else if (cd_schedule_copy_arrays(s, NULL, ab, T + 1) != CD_OK) {
        rc = cli_fail("the schedule");
    } else {
        for (int64_t t = 0; t <= T; t++) (*x)[t] = (double)t, (*y)[t] = ab[t];
    }
    free(ab);
    cd_schedule_free(s);
    return rc;
}

int cmd_schedule(int argc, char **argv)
{
    cli_model m;
    const int preset = cli_model_from_preset_flag(&m, argc, argv);
    const char *out = NULL;
    int dummy = 0;
    bool compare = false, log_y = false;
    const cli_opt opts[] = {
        {"--out", OPT_STR, &out, 0, 0, NULL, "the SVG to write (required)", NULL},
        {"--preset", OPT_CHOICE, &dummy, 0, 0, cli_preset_names, "a report run's schedule", NULL},
        {"--schedule", OPT_CHOICE, &m.schedule, 0, 0, cli_schedule_names, "schedule kind", NULL},
        {"--T", OPT_I64, &m.T, 1, 100000, NULL, "steps (1000)", NULL},
        {"--beta", OPT_F64, &m.beta, 1e-12, 1e6, NULL, "constant beta (0.001)", NULL},
        {"--beta-min", OPT_F64, &m.beta_min, 1e-12, 1, NULL, "linear start (1e-4)", NULL},
        {"--beta-max", OPT_F64, &m.beta_max, 1e-12, 1, NULL, "linear end (0.02)", NULL},
        {"--cosine-s", OPT_F64, &m.cosine_s, 0, 1, NULL, "cosine offset (0.008)", NULL},
        {"--beta-clip", OPT_F64, &m.beta_clip, 1e-12, 1, NULL, "cosine clip (0.999)", NULL},
        {"--compare", OPT_FLAG, &compare, 0, 0, NULL, "also draw the report's four noise schedules", NULL},
        {"--log", OPT_FLAG, &log_y, 0, 0, NULL, "logarithmic alpha-bar axis", NULL},
    };
    const cli_command cmd = {"schedule", "--out alpha.svg [--preset P | schedule flags]",
                             "Plot alpha-bar_t against t (the report's Figure 5).", opts,
                             (int)(sizeof opts / sizeof opts[0]), NULL, NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!out) return cli_usage("schedule", "--out FILE.svg is required");
    const int bad = cli_model_check(&m, "schedule");
    if (bad) return bad;
    if (cli_check_only) return CLI_OK;
    if (cli_output_ok("schedule", "the plot", out, false) != CLI_OK) return CLI_FAIL;
    static const char *const colors[] = {"#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e"};
    cli_series s[5];
    double *mem[10] = {0};
    int n = 0, ret = CLI_OK;
    char names[5][64];
    const int presets[4] = {0, 1, 2, 4}; /* the noise presets */
    for (int k = -1; k < (compare ? 4 : 0) && ret == CLI_OK; k++) {
        cli_model c = m;
        if (k >= 0) cli_model_preset(&c, presets[k]);
        if (k >= 0 && preset == presets[k]) continue;
        ret = curve(&c, &mem[2 * n], &mem[2 * n + 1]);
        snprintf(names[n], sizeof names[n], "%s", k >= 0 ? cli_preset_names[presets[k]]
                                                 : preset >= 0 ? cli_preset_names[preset]
                                                 : cli_schedule_names[m.schedule]);
        s[n] = (cli_series){names[n], colors[n], mem[2 * n], mem[2 * n + 1], c.T + 1};
        n++;
    }
    const int e = ret == CLI_OK ? cli_write_svg_plot(out, "alpha-bar_t", "t", "alpha-bar", s,
                                                     n, log_y)
                                : 0;
    if (e) {
        fprintf(stderr, "colddiff: cannot write %s: %s\n", out, strerror(e));
        ret = CLI_FAIL;
    }
    if (ret == CLI_OK) printf("colddiff: wrote %s\n", out);
    for (int i = 0; i < 10; i++) free(mem[i]);
    return ret;
}
