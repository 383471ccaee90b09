/*
 * fit_state.c - the epoch loop's state inside a trainer (cd__fit_state,
 * diffusion.h): a new trainer's, and the progress values that other
 * threads poll. Shared by the trainer (trainer.c), its epoch loop
 * (trainer_fit.c) and its checkpoints (trainer_io.c), so that none of them
 * needs another's internals for it.
 */
#include "diffusion.h"

#include <math.h>
#include <string.h>

void cd__fit_put(cd__fit_state *f, cd_progress_key key, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    atomic_store(&f->progress[key], bits);
}

void cd__fit_init(cd__fit_state *f)
{
    f->epoch = f->pos = 0;
    f->loss_sum = 0.0;
    f->best_loss = f->val_loss = f->train_loss = NAN;
    f->open = false;
    memset(f->open_rng, 0, sizeof f->open_rng);
    atomic_init(&f->stop, 0);
    f->validating = false;
    f->stop_after = 0;
    for (int k = 0; k < CD__PROGRESS_COUNT; k++) atomic_init(&f->progress[k], 0);
    cd__fit_publish(f, 1);
    cd__fit_put(f, CD_PROGRESS_IMAGES_PER_SEC, 0.0);
    cd__fit_put(f, CD_PROGRESS_ETA_SEC, NAN);
}

void cd__fit_publish(cd__fit_state *f, int64_t batch)
{
    cd__fit_put(f, CD_PROGRESS_RUNNING, 0.0);
    cd__fit_put(f, CD_PROGRESS_EPOCH, (double)f->epoch);
    cd__fit_put(f, CD_PROGRESS_BATCH, (double)((f->pos + batch - 1) / batch));
    /* Between epochs, the last one's: what the fit showed when it closed. */
    cd__fit_put(f, CD_PROGRESS_TRAIN_LOSS,
                f->pos > 0 ? f->loss_sum / (double)f->pos : f->train_loss);
    cd__fit_put(f, CD_PROGRESS_VAL_LOSS, f->val_loss);
    /* Without validation the best score is a training loss: not shown. */
    cd__fit_put(f, CD_PROGRESS_BEST_VAL_LOSS, isnan(f->val_loss) ? NAN : f->best_loss);
}
