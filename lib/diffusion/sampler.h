/*
 * sampler.h - internals shared by sampler.c (the object, its options and
 * entry points), sampler_chain.c (one call's reverse chain: workspace,
 * predictor calls, the step of each algorithm, snapshots) and
 * sampler_steps.c (the times a chain visits, which both use).
 */
#ifndef CD_SAMPLER_H
#define CD_SAMPLER_H

#include "diffusion.h"

#define CD__SAMPLER_N_KEYS 8

struct cd_sampler {
    cd_sampler_kind kind;
    const cd_degradation *deg; /* borrowed */
    double opt[CD__SAMPLER_N_KEYS];
    cd_decoder *decoder; /* borrowed; or fn(user, ...) */
    cd_predictor_fn fn;
    void *user;
    cd_sampler_progress_fn progress; /* may be NULL */
    void *progress_user;
    cd_tensor *labels; /* cd_sampler_set_labels' copy, or NULL */
};

/* One call's chain: shapes, workspace and snapshot requests. */
typedef struct {
    const cd_sampler *s;
    const char *fn;
    cd_rng *rng;
    int64_t N, ND, T, t_start, n_steps;
    cd_tensor *z;        /* the caller's out: the chain state */
    cd_tensor *g, *tau;  /* predictor output and times */
    cd_tensor *g_uncond; /* the unconditional output, when guidance mixes */
    cd_tensor *b1, *b2;  /* scratch batches (noise, blurs, x0-hat) */
    int64_t *ta, *tb;    /* per-sample step vectors for the blur */
    int64_t n_snap;
    int64_t *snap_at; /* the chain time each snapshot records */
    cd_tensor *snap_z, *snap_xhat;
} cd__chain;

/* The number of predictor calls of a chain from t_start (sampler_steps.c). */
int64_t cd__sampler_count_steps(const cd_sampler *s, int64_t t_start);

/* sampler_chain.c. init sets shapes and times; alloc takes the workspace
 * (free releases it, also after a failed alloc); map_snapshots says which
 * chain time each snapshot records; degrade writes dst = D(src, t) with
 * tv as its step vector; run goes from z_{t_start} (in c->z) to z_0;
 * forward_snapshots draws D(x, t_v) after the chain. */
void cd__chain_init(cd__chain *c, const cd_sampler *s, const char *fn, cd_rng *rng, cd_tensor *out,
                    int64_t t_start);
cd_status cd__chain_alloc(cd__chain *c);
void cd__chain_free(cd__chain *c);
void cd__chain_map_snapshots(cd__chain *c, const int64_t *times);
cd_status cd__chain_degrade(const cd__chain *c, const cd_tensor *src, int64_t t, int64_t *tv,
                            cd_rng *rng, cd_tensor *dst);
cd_status cd__chain_run(const cd__chain *c);
cd_status cd__chain_forward_snapshots(const cd__chain *c, const cd_tensor *x, const int64_t *times,
                                      cd_tensor *snap_fwd);

#endif /* CD_SAMPLER_H */
