/*
 * ckpt_resume.c - what a training run needs to resume exactly: the named
 * RNG states and the step/epoch counters a checkpoint holds.
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static rng_entry *rng_find(const cd__ckpt *ck, const char *name)
{
    for (int64_t i = 0; i < ck->n_rngs; i++)
        if (strcmp(ck->rngs[i].name, name) == 0) return &ck->rngs[i];
    return NULL;
}

/* A slot for a new RNG state called name (copied). */
cd_status cd__ckpt_rng_append(cd__ckpt *ck, const char *name, size_t len, rng_entry **out)
{
    if (ck->n_rngs == ck->cap_rngs) {
        int64_t cap = ck->cap_rngs ? 2 * ck->cap_rngs : 4;
        rng_entry *grown = cd__realloc(ck->rngs, (size_t)cap, sizeof *grown, "RNG state list");
        if (!grown) return cd_last_status();
        ck->rngs = grown;
        ck->cap_rngs = cap;
    }
    char *copy = cd__ckpt_dup_bytes(name, len);
    if (!copy) return cd_last_status();
    *out = &ck->rngs[ck->n_rngs++];
    memset(*out, 0, sizeof **out);
    (*out)->name = copy;
    return CD_OK;
}

cd_status cd__ckpt_set_rng(cd__ckpt *ck, const char *name, const cd_rng *rng)
{
    static const char fn[] = "cd__ckpt_set_rng";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__TRY(cd__ckpt_check_key(fn, "name", name));
    uint64_t state[CD_RNG_STATE_WORDS];
    CD__TRY(cd_rng_get_state(rng, state));
    rng_entry *e = rng_find(ck, name);
    if (!e) CD__TRY(cd__ckpt_rng_append(ck, name, strlen(name), &e));
    memcpy(e->state, state, sizeof state);
    return CD_OK;
}

cd_status cd__ckpt_get_rng(const cd__ckpt *ck, const char *name, cd_rng *rng)
{
    static const char fn[] = "cd__ckpt_get_rng";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__TRY(cd__ckpt_check_key(fn, "name", name));
    const rng_entry *e = rng_find(ck, name);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: no RNG state called '%s'", fn, name);
    return cd_rng_set_state(rng, e->state);
}

cd_status cd__ckpt_set_counters(cd__ckpt *ck, int64_t step, int64_t epoch)
{
    CD__CHECK_NOT_NULL(ck, "cd__ckpt_set_counters");
    if (step < 0 || epoch < 0)
        return cd__error(CD_ERR_RANGE,
                         "cd__ckpt_set_counters: step %" PRId64 " and epoch %" PRId64
                         " must be >= 0",
                         step, epoch);
    ck->has_counters = true;
    ck->step = step;
    ck->epoch = epoch;
    return CD_OK;
}

cd_status cd__ckpt_get_counters(const cd__ckpt *ck, int64_t *step, int64_t *epoch)
{
    static const char fn[] = "cd__ckpt_get_counters";
    CD__CHECK_NOT_NULL(ck, fn);
    if (!ck->has_counters)
        return cd__error(CD_ERR_NOT_FOUND, "%s: the checkpoint holds no step/epoch", fn);
    if (step) *step = ck->step;
    if (epoch) *epoch = ck->epoch;
    return CD_OK;
}
