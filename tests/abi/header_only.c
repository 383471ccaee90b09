/* Compiled alone by the header_c99 and header_cxx tests: colddiff.h and
 * colddiff_experimental.h must be self-contained and clean as C99
 * -pedantic and as C++, and an experimental key must pass where the
 * stable ones do. */
#include "colddiff.h"
#include "colddiff_experimental.h"

int cd_header_probe(void);
int cd_header_probe(void)
{
    cd_status st = CD_OK;
    cd_split sp = CD_SPLIT_TEST;
    cd_pixel_map pm = CD_PIXELS_PERCENTILE;
    cd_trainer_option stable = CD_TRAINER_OPT_LR, experimental = CD_TRAINER_OPT_LR_DECAY;
    return (int)st + (int)sp + (int)pm + (int)stable + (int)experimental + CD_VERSION_MAJOR +
           CD_ABI_VERSION;
}
