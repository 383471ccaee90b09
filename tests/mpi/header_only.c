/* Compiled alone by the header_mpi_c99 and header_mpi_cxx tests:
 * colddiff_mpi.h must be self-contained and clean as C99 -pedantic and as
 * C++ (with MPI's own C++ bindings left out, as their warnings are not
 * ours). */
#include "colddiff_mpi.h"

int cd_mpi_header_probe(void);
int cd_mpi_header_probe(void)
{
    cd_mpi *m = NULL;
    cd_allreduce_fn fn = NULL;
    return (int)(cd_mpi_rank(m) + cd_mpi_size(m)) + CD_MPI_FIXED_ORDER + (fn != NULL);
}
