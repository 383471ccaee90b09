/*
 * sampler_steps.c - which times a chain visits: the DDIM step sequence and
 * the number of predictor calls of each sampler. Shared by the entry points
 * (sampler.c), which check snapshot times against them, and the chain
 * (sampler_chain.c), which runs them.
 */
#include "sampler.h"

/* t_i = t_start - floor(i (t_start - 1)/(S - 1) + 1/2), as the exact
 * integer floor((2 i (t_start - 1) + S - 1) / (2 (S - 1))). For S <= t_start
 * the step is at least 1 before rounding, so the times strictly decrease
 * from t_start to 1. S = 1 is the single step t_start -> 0. */
int64_t cd__sampler_step_time(int64_t t_start, int64_t S, int64_t i)
{
    if (S <= 1) return t_start;
    return t_start - (2 * i * (t_start - 1) + (S - 1)) / (2 * (S - 1));
}

int64_t cd__sampler_count_steps(const cd_sampler *s, int64_t t_start)
{
    switch (s->kind) {
    case CD_SAMPLER_DDIM: {
        const int64_t S = (int64_t)s->opt[CD_SAMPLER_OPT_STEPS];
        return S < t_start ? S : t_start;
    }
    case CD_SAMPLER_DIRECT: return 1;
    default: return t_start;
    }
}
