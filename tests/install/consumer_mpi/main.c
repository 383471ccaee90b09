/* A program outside the project, built against the installed
 * libcolddiff-mpi through find_package(colddiff COMPONENTS mpi); run
 * without mpiexec, as a single rank. */
#include <colddiff_mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    cd_mpi *m = NULL;
    cd_rng *rng = NULL;
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    int32_t same = -1;
    cd_status st = cd_mpi_create(&m, MPI_COMM_WORLD, CD_MPI_FIXED_ORDER);
    if (st == CD_OK) st = cd_rng_create(&rng, 1);
    if (st == CD_OK) st = cd_decoder_config_create(&cfg, CD_DECODER_CNN);
    if (st == CD_OK) st = cd_decoder_create(&dec, cfg, rng);
    if (st == CD_OK) st = cd_mpi_same_weights(m, dec, &same);
    if (st == CD_OK)
        printf("consumer_mpi: rank %lld of %lld, same weights %d\n", (long long)cd_mpi_rank(m),
               (long long)cd_mpi_size(m), (int)same);
    else
        fprintf(stderr, "consumer_mpi: %s %s\n", cd_status_string(st), cd_mpi_last_error(m));
    cd_decoder_free(dec);
    cd_decoder_config_free(cfg);
    cd_rng_free(rng);
    cd_mpi_free(m);
    MPI_Finalize();
    return st == CD_OK && same == 1 ? 0 : 1;
}
