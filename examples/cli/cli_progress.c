/*
 * cli_progress.c - the sampling chains' progress line and Ctrl-C: the
 * sampler calls back after each step, which draws the line and turns a
 * pressed Ctrl-C into CD_ERR_CANCELLED, so a long chain stops within one
 * step instead of being killed mid-write.
 */
#include "cli_gen.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted;
static bool g_active, g_tty, g_drawn;
static char g_label[128];
static double g_start;
static struct sigaction g_old;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

void cli_progress_begin(const char *label)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    if (!g_active) sigaction(SIGINT, &sa, &g_old);
    g_active = true;
    g_interrupted = 0;
    g_tty = isatty(fileno(stderr));
    cli_progress_label(label);
}

void cli_progress_label(const char *label)
{
    snprintf(g_label, sizeof g_label, "%s", label);
    g_drawn = false;
}

void cli_progress_end(void)
{
    if (g_drawn) fputc('\n', stderr);
    g_drawn = false;
    if (g_active) sigaction(SIGINT, &g_old, NULL);
    g_active = false;
}

bool cli_interrupted(void) { return g_interrupted != 0; }

int cli_fail_or_interrupted(const char *what)
{
    if (!g_interrupted) return cli_fail(what);
    if (g_drawn) fputc('\n', stderr);
    g_drawn = false;
    fprintf(stderr, "colddiff: interrupted (Ctrl-C) while %s; nothing was written\n", what);
    return CLI_INTERRUPTED;
}

static cd_status on_step(int64_t step, int64_t steps, void *user)
{
    (void)user;
    if (g_interrupted) return CD_ERR_CANCELLED;
    if (!g_tty) return CD_OK;
    static double last;
    if (step == 1) g_start = cli_now_sec(), last = -1.0;
    /* About ten redraws a second: a terminal need not see every step. */
    const double now = cli_now_sec() - g_start;
    if (step > 1 && step < steps && now - last < 0.1) return CD_OK;
    last = now;
    char bar[21];
    const int fill = (int)(20 * step / (steps > 0 ? steps : 1));
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    /* The first step pays for the workspace; the rate counts from it. */
    const double per = step > 1 ? now / (double)(step - 1) : 0.0;
    const long eta = (long)(per * (double)(steps - step) + 0.5);
    fprintf(stderr, "\r%s: step %lld/%lld [%s] ETA %ldm%02lds ", g_label, (long long)step,
            (long long)steps, bar, eta / 60, eta % 60);
    g_drawn = true;
    return CD_OK;
}

cd_status cli_progress_attach(cd_sampler *s)
{
    return g_active ? cd_sampler_set_progress(s, on_step, NULL) : CD_OK;
}
