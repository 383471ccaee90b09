/*
 * dataset.h - internal constructor shared by the dataset loaders: the IDX
 * reader lives in dataset.c, the PNG folder reader in folder.c, and both
 * end in the same struct. Nothing here is exported.
 */
#ifndef CD_DATA_DATASET_H
#define CD_DATA_DATASET_H

#include "core.h"

#include <stdint.h>

/*
 * A dataset whose training pool is the n images of pixels (n x C x H x W
 * bytes, row-major) with labels (n bytes), and whose classes are named by
 * names[0..n_names) (n_names may be 0 and names NULL). Every buffer comes
 * from cd__malloc / cd__strdup and is taken over, on failure too: the
 * caller never frees them after this call. *out is written only on success.
 */
cd_status cd__dataset_adopt(cd_dataset **out, uint8_t *pixels, uint8_t *labels, int64_t n,
                            const int64_t chw[3], char **names, int64_t n_names);

/* One more than the largest label of any image, or the class count if
 * larger: the class table a conditional model of ds needs. */
int64_t cd__dataset_label_bound(const cd_dataset *ds);

#endif /* CD_DATA_DATASET_H */
