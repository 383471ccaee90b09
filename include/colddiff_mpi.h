/*
 * colddiff_mpi.h - data-parallel training over MPI (libcolddiff-mpi).
 *
 * A small library beside libcolddiff, built when CMake finds MPI, that
 * implements the gradient sum of cd_trainer_set_distributed() with MPI
 * collectives. It uses only the public API of colddiff.h. One process per
 * rank, each with its own trainer over the same model and seed:
 *
 *     int provided = 0;
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
 *     cd_mpi *m = NULL;
 *     cd_status st = cd_mpi_create(&m, MPI_COMM_WORLD, 0);
 *     // ... make the decoder (same seed on every rank), the trainer ...
 *     if (st == CD_OK) st = cd_mpi_attach(m, tr);
 *     // Every rank passes the same arguments; only rank 0 writes files.
 *     if (st == CD_OK)
 *         st = cd_trainer_fit(tr, ds, epochs, NULL,
 *                             cd_mpi_rank(m) == 0 ? "last.cdm" : NULL, rng, NULL, NULL);
 *     if (st != CD_OK)
 *         fprintf(stderr, "rank %lld: %s %s\n", (long long)cd_mpi_rank(m), cd_last_error(),
 *                 cd_mpi_last_error(m));
 *     cd_trainer_free(tr);   // before the cd_mpi its hook uses
 *     cd_mpi_free(m);
 *     MPI_Finalize();
 *
 * K ranks follow one process at the same global batch up to the order of
 * the float sums; with CD_MPI_FIXED_ORDER that order is fixed too, so a
 * run repeats bit for bit for a given K. Every rank always holds the same
 * bits (cd_mpi_same_weights checks it).
 *
 * Threads: a cd_mpi is used by one thread at a time, the thread that runs
 * its trainer; MPI_THREAD_FUNNELED is enough when that is the main thread.
 * Errors: every call returns a cd_status; a failed MPI call gives CD_ERR_IO
 * and its MPI message in cd_mpi_last_error() (the trainer's own message,
 * cd_last_error(), names the sum that failed). A rank whose step or fit
 * fails leaves the others waiting in a sum it never joins: on a failure,
 * end the job (MPI_Abort) rather than return from one rank alone.
 */
#ifndef COLDDIFF_MPI_H
#define COLDDIFF_MPI_H

#include <mpi.h>
#include <stdint.h>

#include <colddiff.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One rank's end of a data-parallel job: a communicator and the sum. */
typedef struct cd_mpi cd_mpi;

/**
 * Flag of cd_mpi_create: sum in a fixed order. Each sum is split into one
 * chunk per rank; rank j gathers every rank's chunk j, adds them in rank
 * order ((c0 + c1) + c2) + ..., and the sums are gathered back. Costs the
 * bandwidth of a ring all-reduce, and gives the same bits on every run with
 * the same number of ranks. Without it the sum is MPI_Iallreduce, whose
 * order is the MPI library's choice (the same on every rank, but it may
 * change with the message size, the placement or the MPI version).
 */
#define CD_MPI_FIXED_ORDER 1

/**
 * Make a cd_mpi on a duplicate of comm (so that its collectives never meet
 * the caller's), with MPI_ERRORS_RETURN on the duplicate. Collective over
 * comm. The caller has called MPI_Init or MPI_Init_thread and calls
 * MPI_Finalize after cd_mpi_free.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL out, MPI_COMM_NULL, unknown flags,
 * MPI not initialised), CD_ERR_IO (an MPI call failed), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_mpi_create(cd_mpi **out, MPI_Comm comm, int32_t flags);

/**
 * Free a cd_mpi after waiting for any sum still running; NULL is a no-op.
 * Collective over its communicator. Free the trainers attached to it first
 * (or detach them with cd_trainer_set_distributed(tr, 0, 1, NULL, NULL)).
 */
CD_API void cd_mpi_free(cd_mpi *m);

/** This process's rank in the communicator, or -1 for NULL. */
CD_API int64_t cd_mpi_rank(const cd_mpi *m);

/** The number of ranks, or -1 for NULL. */
CD_API int64_t cd_mpi_size(const cd_mpi *m);

/**
 * Make tr one rank of the job: cd_trainer_set_distributed(tr, rank, size,
 * the MPI sum, m). m must outlive tr's training. With one rank the trainer
 * is a single process and never calls the sum.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL), those of
 * cd_trainer_set_distributed.
 */
CD_API cd_status cd_mpi_attach(cd_mpi *m, cd_trainer *tr);

/**
 * *same = 1 if every rank's decoder weights are bit-identical, else 0, on
 * every rank: a 64-bit hash of the flat parameter block, its minimum and
 * maximum over the ranks compared. Collective.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL), CD_ERR_IO.
 */
CD_API cd_status cd_mpi_same_weights(cd_mpi *m, cd_decoder *dec, int32_t *same);

/**
 * Since creation or cd_mpi_reset_stats: wall seconds spent inside the sum
 * (starting, polling and waiting), the number of sums started and the
 * floats they held. Any output may be NULL.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL m).
 */
CD_API cd_status cd_mpi_stats(const cd_mpi *m, double *comm_seconds, int64_t *sums,
                              int64_t *floats);

/** Set the statistics to zero; NULL is a no-op. */
CD_API void cd_mpi_reset_stats(cd_mpi *m);

/**
 * The message of the last failure of a call on m, the trainer's sums
 * included: for MPI, the call, the float count and MPI's error string
 * ("" if none; "" for NULL m). Successful calls leave it alone. Valid
 * until the next call on m.
 */
CD_API const char *cd_mpi_last_error(const cd_mpi *m);

#ifdef __cplusplus
}
#endif

#endif /* COLDDIFF_MPI_H */
