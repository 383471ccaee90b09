/*
 * cli_mpi.h - colddiff train started by mpirun: the ranks of one
 * data-parallel job (libcolddiff-mpi). Without MPI in the build, or when
 * not started by mpirun, there is one rank and every call is a no-op.
 */
#ifndef COLDDIFF_CLI_MPI_H
#define COLDDIFF_CLI_MPI_H

#include <colddiff.h>

#include <stdbool.h>

/* Join the job when mpirun started this process (MPI_Init); CLI_OK, or
 * CLI_FAIL after printing why. */
int cli_mpi_begin(void);

/* Leave it (MPI_Finalize); a no-op without a job. */
void cli_mpi_end(void);

/* Stop every rank at once (MPI_Abort) after a failure on this one; a
 * no-op with one rank. */
void cli_mpi_abort(int code);

/* This process's rank and the job's size (0 and 1 without a job); the
 * ranks on this host. */
int64_t cli_mpi_rank(void);
int64_t cli_mpi_size(void);
int64_t cli_mpi_local_size(void);

/* Make tr this rank's trainer of the job, its gradient sums fixed in
 * order when asked; CD_OK without a job. */
cd_status cli_mpi_attach(cd_trainer *tr, bool fixed_order);

/* CLI_OK when every rank holds the same weights; else CLI_FAIL after
 * printing which check failed (`when`). */
int cli_mpi_check_weights(cd_trainer *tr, const char *when);

/* Seconds this rank spent inside gradient sums, and how many it started,
 * since attach. */
void cli_mpi_comm(double *seconds, int64_t *sums);

#endif /* COLDDIFF_CLI_MPI_H */
