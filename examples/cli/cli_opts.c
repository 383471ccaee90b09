/*
 * cli_opts.c - the option parser behind every subcommand, and one-line
 * error printing. Values are checked completely (junk, overflow, range)
 * before anything runs, so a typo never starts a long training run.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

bool cli_check_only = false;

int cli_fail(const char *what)
{
    fprintf(stderr, "colddiff: %s: %s\n", what, cd_last_error());
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "colddiff %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'colddiff %s --help')\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') return false;
    *out = v;
    return true;
}

static bool parse_f64(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int parse_times(const char *cmd, const cli_opt *o, const char *v, cli_times *t)
{
    t->n = 0;
    char buf[512];
    if (strlen(v) >= sizeof buf) return cli_usage(cmd, "%s: list too long", o->name);
    strcpy(buf, v);
    if (!*buf) return cli_usage(cmd, "%s needs at least one value", o->name);
    /* Every comma separates two values: "1,,2", ",1" and "1," are typos,
     * not shorter lists (strtok would skip the empty items). */
    for (char *tok = buf, *end; tok; tok = end) {
        end = strchr(tok, ',');
        if (end) *end++ = '\0';
        int64_t x = 0;
        if (!*tok)
            return cli_usage(cmd,
                             "%s: '%s' has an empty item; separate values with single "
                             "commas",
                             o->name, v);
        if (t->n == CLI_MAX_TIMES)
            return cli_usage(cmd, "%s takes at most %d values", o->name, CLI_MAX_TIMES);
        if (!parse_i64(tok, &x) || (double)x < o->lo || (double)x > o->hi)
            return cli_usage(cmd, "%s: '%s' is not an integer in %.0f..%.0f", o->name, tok, o->lo,
                             o->hi);
        t->v[t->n++] = x;
    }
    return CLI_OK;
}

/* Append name to the comma-separated list in buf (used bytes so far). */
static void add_name(char *buf, size_t cap, int *used, const char *name)
{
    if (*used < (int)cap)
        *used += snprintf(buf + *used, cap - (size_t)*used, "%s%s", *used ? ", " : "", name);
}

static int set_value(const char *cmd, const cli_opt *o, const char *v)
{
    int64_t i = 0;
    double d = 0.0;
    switch (o->type) {
    case OPT_STR:
        if (!*v) return cli_usage(cmd, "%s needs a non-empty value", o->name);
        *(const char **)o->dst = v;
        return CLI_OK;
    case OPT_I64:
        if (!parse_i64(v, &i) || (double)i < o->lo || (double)i > o->hi) {
            /* (double)INT64_MAX is 2^63: no upper bound worth printing. */
            if (o->hi >= (double)INT64_MAX)
                return cli_usage(cmd, "%s must be an integer of at least %.0f, not '%s'", o->name,
                                 o->lo, v);
            return cli_usage(cmd, "%s must be an integer in %.0f..%.0f, not '%s'", o->name, o->lo,
                             o->hi, v);
        }
        *(int64_t *)o->dst = i;
        return CLI_OK;
    case OPT_F64:
        if (!parse_f64(v, &d) || d < o->lo || d > o->hi)
            return cli_usage(cmd, "%s must be a number in [%g, %g], not '%s'", o->name, o->lo,
                             o->hi, v);
        *(double *)o->dst = d;
        return CLI_OK;
    case OPT_CHOICE: {
        char names[160] = "";
        for (int k = 0, used = 0; o->choices[k]; k++) {
            if (!strcmp(o->choices[k], v)) {
                *(int *)o->dst = k;
                return CLI_OK;
            }
            add_name(names, sizeof names, &used, o->choices[k]);
        }
        return cli_usage(cmd, "%s: unknown value '%s' (one of: %s)", o->name, v, names);
    }
    case OPT_ENUM: {
        const cd_enum e = (cd_enum)o->lo;
        int32_t value = 0;
        if (cd_enum_parse(e, v, &value) == CD_OK) {
            *(int *)o->dst = value;
            return CLI_OK;
        }
        char names[160] = "";
        for (int c = 0, used = 0; c < cd_enum_count(e); c++)
            add_name(names, sizeof names, &used, cd_enum_name(e, c));
        return cli_usage(cmd, "%s: unknown value '%s' (one of: %s)", o->name, v, names);
    }
    case OPT_TIMES: return parse_times(cmd, o, v, o->dst);
    case OPT_FLAG: break;
    }
    return CLI_USAGE;
}

int cli_parse(const cli_command *cmd, int argc, char **argv)
{
    bool have_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_help(cmd);
            return -1;
        }
        if (a[0] != '-' || a[1] != '-') {
            if (!cmd->positional || have_pos)
                return cli_usage(cmd->name, "unexpected argument '%s'", a);
            *cmd->pos_dst = a;
            have_pos = true;
            continue;
        }
        /* --name=value is --name value in one word, as in getopt_long. */
        const char *eq = strchr(a, '=');
        const size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = NULL;
        for (int k = 0; k < cmd->n_opts && !o; k++)
            if (strlen(cmd->opts[k].name) == len && !strncmp(cmd->opts[k].name, a, len))
                o = &cmd->opts[k];
        if (!o) return cli_usage(cmd->name, "unknown option '%.*s'", (int)len, a);
        if (o->seen) *o->seen = true;
        if (o->type == OPT_FLAG) {
            if (eq) return cli_usage(cmd->name, "%s takes no value", o->name);
            *(bool *)o->dst = true;
            continue;
        }
        if (!eq && i + 1 >= argc) return cli_usage(cmd->name, "option '%s' needs a value", a);
        const int rc = set_value(cmd->name, o, eq ? eq + 1 : argv[++i]);
        if (rc != CLI_OK) return rc;
    }
    if (cmd->positional && !have_pos)
        return cli_usage(cmd->name, "missing the %s argument", cmd->positional);
    return CLI_OK;
}

void cli_library_bounds(cli_opt *opts, int n_opts, const char *flag, cli_lib_object object, int key)
{
    cd_option_info info;
    const cd_status st =
        object == CLI_LIB_DECODER   ? cd_decoder_config_option_info((cd_decoder_option)key, &info)
        : object == CLI_LIB_TRAINER ? cd_trainer_option_info((cd_trainer_option)key, &info)
                                    : cd_classifier_option_info((cd_classifier_option)key, &info);
    if (st != CD_OK || info.type == CD_OPTION_REAL) {
        cd_clear_error();
        return;
    }
    for (int k = 0; k < n_opts; k++) {
        if (strcmp(opts[k].name, flag) || (opts[k].type != OPT_I64 && opts[k].type != OPT_TIMES))
            continue;
        opts[k].lo = info.lo + (info.lo_open ? 1 : 0);
        opts[k].hi = info.hi - (info.hi_open ? 1 : 0);
    }
}

void cli_print_help(const cli_command *cmd)
{
    printf("usage: colddiff %s %s\n\n%s\n", cmd->name, cmd->args, cmd->summary);
    if (cmd->n_opts) printf("\noptions:\n");
    for (int k = 0; k < cmd->n_opts; k++) {
        const cli_opt *o = &cmd->opts[k];
        char left[64];
        const char *meta = o->type == OPT_FLAG                            ? ""
                           : o->type == OPT_I64                           ? " N"
                           : o->type == OPT_F64                           ? " X"
                           : o->type == OPT_TIMES                         ? " T1,T2,..."
                           : o->type == OPT_CHOICE || o->type == OPT_ENUM ? " NAME"
                                                                          : " VALUE";
        snprintf(left, sizeof left, "%s%s", o->name, meta);
        printf("  %-22s %s", left, o->help);
        if (o->type == OPT_CHOICE) {
            printf(" (");
            for (int c = 0; o->choices[c]; c++) printf("%s%s", c ? ", " : "", o->choices[c]);
            printf(")");
        } else if (o->type == OPT_ENUM) {
            printf(" (");
            for (int32_t c = 0; c < cd_enum_count((cd_enum)o->lo); c++)
                printf("%s%s", c ? ", " : "", cd_enum_name((cd_enum)o->lo, c));
            printf(")");
        }
        printf("\n");
    }
    printf("  %-22s %s\n", "--help", "show this help");
}
