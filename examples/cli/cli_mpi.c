/*
 * cli_mpi.c - the ranks of a colddiff train job started by mpirun. The
 * library knows nothing of MPI; libcolddiff-mpi sums the gradients, and
 * this file only starts, checks and ends the job for the command line.
 */
#include "cli_mpi.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef CLI_HAVE_MPI

#include <colddiff_mpi.h>
#include <mpi.h>

static bool g_joined;          /* MPI_Init ran here */
static int g_rank, g_size = 1; /* MPI_COMM_WORLD */
static int g_local = 1;        /* ranks sharing this host */
static cd_mpi *g_mpi;

/* mpirun (Open MPI, or a PMI launcher such as MPICH's) says so in the
 * environment; a plain `colddiff train` must not start MPI at all. */
static bool launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int cli_mpi_begin(void)
{
    if (g_joined || !launched_by_mpirun()) return CLI_OK;
    int provided = 0;
    /* The trainer's worker threads never call MPI: funnelled is enough. */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "colddiff: cannot join the MPI job (MPI_Init_thread failed)\n");
        return CLI_FAIL;
    }
    g_joined = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm host;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host) ==
        MPI_SUCCESS) {
        MPI_Comm_size(host, &g_local);
        MPI_Comm_free(&host);
    }
    return CLI_OK;
}

void cli_mpi_end(void)
{
    cd_mpi_free(g_mpi);
    g_mpi = NULL;
    if (g_joined) MPI_Finalize();
    g_joined = false;
}

void cli_mpi_abort(int code)
{
    if (g_joined && g_size > 1) {
        fprintf(stderr, "colddiff: rank %d: stopping all %d ranks\n", g_rank, g_size);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    }
}

int64_t cli_mpi_rank(void) { return g_rank; }
int64_t cli_mpi_size(void) { return g_size; }
int64_t cli_mpi_local_size(void) { return g_local; }

cd_status cli_mpi_attach(cd_trainer *tr, bool fixed_order)
{
    if (!g_joined || g_size < 2) return CD_OK;
    if (!g_mpi) {
        const cd_status st =
            cd_mpi_create(&g_mpi, MPI_COMM_WORLD, fixed_order ? CD_MPI_FIXED_ORDER : 0);
        if (st != CD_OK) return st;
    }
    return cd_mpi_attach(g_mpi, tr);
}

int cli_mpi_check_weights(cd_trainer *tr, const char *when)
{
    if (!g_mpi) return CLI_OK;
    int32_t same = 0;
    if (cd_mpi_same_weights(g_mpi, cd_trainer_decoder(tr), &same) != CD_OK)
        return cli_fail("comparing the ranks' weights");
    if (same) return CLI_OK;
    fprintf(stderr,
            "colddiff: rank %d: the %d ranks hold different weights %s (every rank must run the "
            "same command on the same data and library)\n",
            g_rank, g_size, when);
    return CLI_FAIL;
}

void cli_mpi_comm(double *seconds, int64_t *sums)
{
    int64_t floats = 0;
    *seconds = 0, *sums = 0;
    if (g_mpi) cd_mpi_stats(g_mpi, seconds, sums, &floats);
}

#else /* one process: every call a no-op */

/* mpirun starting K copies of a colddiff without MPI would give K runs
 * writing one folder: refuse, saying why. */
int cli_mpi_begin(void)
{
    const char *k = getenv("OMPI_COMM_WORLD_SIZE");
    if (!k) k = getenv("PMI_SIZE");
    if (!k || atol(k) < 2) return CLI_OK;
    fprintf(stderr,
            "colddiff: started as one of %s ranks, but this colddiff was built without MPI "
            "(libcolddiff-mpi); install MPI (libopenmpi-dev openmpi-bin) and build again with "
            "-DCD_MPI=ON, or run one process\n",
            k);
    return CLI_FAIL;
}
void cli_mpi_end(void) {}
void cli_mpi_abort(int code) { (void)code; }
int64_t cli_mpi_rank(void) { return 0; }
int64_t cli_mpi_size(void) { return 1; }
int64_t cli_mpi_local_size(void) { return 1; }

cd_status cli_mpi_attach(cd_trainer *tr, bool fixed_order)
{
    (void)tr, (void)fixed_order;
    return CD_OK;
}

int cli_mpi_check_weights(cd_trainer *tr, const char *when)
{
    (void)tr, (void)when;
    return CLI_OK;
}

void cli_mpi_comm(double *seconds, int64_t *sums) { *seconds = 0, *sums = 0; }

#endif
