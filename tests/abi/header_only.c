/* Compiled alone by the header_c99 and header_cxx tests: colddiff.h must be
 * self-contained and clean as C99 -pedantic and as C++. */
#include "colddiff.h"

int cd_header_probe(void);
int cd_header_probe(void)
{
    cd_status st = CD_OK;
    cd_split sp = CD_SPLIT_TEST;
    cd_pixel_map pm = CD_PIXELS_PERCENTILE;
    return (int)st + (int)sp + (int)pm + CD_VERSION_MAJOR + CD_ABI_VERSION;
}
