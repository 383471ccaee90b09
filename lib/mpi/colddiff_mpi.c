/*
 * colddiff_mpi.c - the gradient sum of cd_trainer_set_distributed over MPI.
 *
 * The trainer starts a sum per gradient bucket while backward runs, polls
 * at each stage of backward and waits once at the end (colddiff.h,
 * cd_allreduce_fn). Both modes keep everything they start in arrays that
 * live as long as the cd_mpi: a step starts the same sums of the same
 * sizes as the one before, so after the first step nothing is allocated.
 *
 * Only the public API of libcolddiff is used, so this library can be
 * built, shipped and replaced apart from it.
 */
#include "colddiff_mpi.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MPI counts and displacements are int: longer sums go out in pieces of
 * at most 2^30 floats, which leaves room for the fixed order's K chunk
 * offsets of up to 2^30 ranks below INT_MAX. */
#define PIECE_MAX ((int64_t)1 << 30)

/* A fixed-order sum of one piece goes through two collectives. */
typedef enum { EXCHANGING, GATHERING, DONE } fixed_phase;

/* One piece of a fixed-order sum. Its slot, with the scratch rows and the
 * count arrays, is reused by the sum of the same place in the next step;
 * MPI reads the count arrays until the collective completes, so they
 * belong to the slot rather than to a shared buffer. */
typedef struct {
    float *data;       /* the caller's floats */
    int count;         /* how many */
    int own_first;     /* where this rank's chunk starts in data */
    int own_count;     /* and its length */
    float *rows;       /* every rank's copy of our chunk, rank after rank */
    int64_t rows_cap;  /* floats rows holds */
    int *chunk_counts; /* chunk r of data: chunk_counts[r] floats ... */
    int *chunk_first;  /* ... from chunk_first[r] */
    int *rows_counts;  /* own_count for every rank */
    int *rows_first;   /* r * own_count */
    MPI_Request request;
    fixed_phase phase;
} fixed_sum;

struct cd_mpi {
    MPI_Comm comm;        /* the caller's, duplicated: sums and weight checks */
    MPI_Comm gather_comm; /* fixed order: the second collective of each sum */
    int rank, size;
    int32_t flags;
    /* Default mode: the MPI_Iallreduce requests started since the last wait. */
    MPI_Request *requests;
    int64_t n_requests, cap_requests;
    /* Fixed order: the pieces started since the last wait, in start order;
     * pieces before next_gather have begun their gather. */
    fixed_sum *pieces;
    int64_t n_pieces, cap_pieces, next_gather;
    /* Statistics. */
    double seconds;
    int64_t sums, floats;
    char error[512];
};

/* ---- errors ------------------------------------------------------------------ */

static cd_status fail(cd_mpi *m, cd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keep the message for cd_mpi_last_error: the trainer's hook has no other
 * way to say more than a status. */
static cd_status fail(cd_mpi *m, cd_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
    return st;
}

/* An MPI return code as a status; the message names the call, the floats
 * and MPI's own text. */
static cd_status mpi_check(cd_mpi *m, int rc, const char *call, int64_t floats)
{
    if (rc == MPI_SUCCESS) return CD_OK;
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return fail(m, CD_ERR_IO, "%s of %lld floats over %d ranks failed: %s", call, (long long)floats,
                m->size, text);
}

/* Grow an array to hold at least n items of size each; doubling, so that
 * the first steps reach the steady size in a few calls. */
static cd_status grow(cd_mpi *m, void **array, int64_t *cap, int64_t n, size_t size)
{
    if (n <= *cap) return CD_OK;
    int64_t want = *cap > 0 ? *cap : 8;
    while (want < n) want *= 2;
    void *p = realloc(*array, (size_t)want * size);
    if (!p)
        return fail(m, CD_ERR_OUT_OF_MEMORY, "cannot grow the list of sums to %lld",
                    (long long)want);
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(want - *cap) * size);
    *array = p;
    *cap = want;
    return CD_OK;
}

/* ---- default mode: MPI_Iallreduce ---------------------------------------------------- */

static cd_status allreduce_start(cd_mpi *m, float *data, int64_t count)
{
    for (int64_t first = 0; first < count; first += PIECE_MAX) {
        const int n = (int)(count - first < PIECE_MAX ? count - first : PIECE_MAX);
        cd_status st = grow(m, (void **)&m->requests, &m->cap_requests, m->n_requests + 1,
                            sizeof(MPI_Request));
        if (st != CD_OK) return st;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, data + first, n, MPI_FLOAT, MPI_SUM, m->comm,
                                &m->requests[m->n_requests]);
        if (rc != MPI_SUCCESS) return mpi_check(m, rc, "MPI_Iallreduce", n);
        m->n_requests++;
    }
    return CD_OK;
}

static cd_status allreduce_progress(cd_mpi *m, bool wait)
{
    if (m->n_requests == 0) return CD_OK;
    int done = 0;
    /* Open MPI moves non-blocking collectives only inside MPI calls:
     * testing them is what lets a started sum advance while backward runs. */
    int rc = wait ? MPI_Waitall((int)m->n_requests, m->requests, MPI_STATUSES_IGNORE)
                  : MPI_Testall((int)m->n_requests, m->requests, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
        const int64_t n = m->n_requests;
        m->n_requests = 0; /* their fate is unknown; do not wait on them again */
        return mpi_check(m, rc, wait ? "MPI_Waitall" : "MPI_Testall", n);
    }
    if (wait || done) m->n_requests = 0;
    return CD_OK;
}

/* ---- fixed order: exchange chunks, add in rank order, gather --------------------- */

/* Lay out a piece: chunk r of `count` floats is [r * count / K, (r + 1) *
 * count / K), the split the trainer uses for batch rows too. */
static cd_status fixed_layout(cd_mpi *m, fixed_sum *s, float *data, int count)
{
    const int K = m->size;
    if (!s->chunk_counts) {
        int *a = malloc((size_t)4 * (size_t)K * sizeof(int));
        if (!a) return fail(m, CD_ERR_OUT_OF_MEMORY, "cannot allocate the chunk layout");
        s->chunk_counts = a, s->chunk_first = a + K, s->rows_counts = a + 2 * K;
        s->rows_first = a + 3 * K;
    }
    for (int r = 0; r < K; r++) {
        const int64_t lo = (int64_t)r * count / K, hi = (int64_t)(r + 1) * count / K;
        s->chunk_first[r] = (int)lo;
        s->chunk_counts[r] = (int)(hi - lo);
    }
    s->data = data;
    s->count = count;
    s->own_first = s->chunk_first[m->rank];
    s->own_count = s->chunk_counts[m->rank];
    for (int r = 0; r < K; r++) {
        s->rows_counts[r] = s->own_count;
        s->rows_first[r] = r * s->own_count; /* below count + K: fits, see PIECE_MAX */
    }
    const int64_t need = (int64_t)K * s->own_count > 0 ? (int64_t)K * s->own_count : 1;
    if (need > s->rows_cap) {
        float *rows = realloc(s->rows, (size_t)need * sizeof(float));
        if (!rows)
            return fail(m, CD_ERR_OUT_OF_MEMORY, "cannot allocate %lld floats of chunks",
                        (long long)need);
        s->rows = rows;
        s->rows_cap = need;
    }
    return CD_OK;
}

static cd_status fixed_start(cd_mpi *m, float *data, int64_t count)
{
    for (int64_t first = 0; first < count; first += PIECE_MAX) {
        const int n = (int)(count - first < PIECE_MAX ? count - first : PIECE_MAX);
        cd_status st =
            grow(m, (void **)&m->pieces, &m->cap_pieces, m->n_pieces + 1, sizeof(fixed_sum));
        if (st != CD_OK) return st;
        fixed_sum *s = &m->pieces[m->n_pieces];
        st = fixed_layout(m, s, data + first, n);
        if (st != CD_OK) return st;
        /* Rank r gets our chunk r; we get every rank's copy of our own. */
        int rc = MPI_Ialltoallv(s->data, s->chunk_counts, s->chunk_first, MPI_FLOAT, s->rows,
                                s->rows_counts, s->rows_first, MPI_FLOAT, m->comm, &s->request);
        if (rc != MPI_SUCCESS) return mpi_check(m, rc, "MPI_Ialltoallv", n);
        s->phase = EXCHANGING;
        m->n_pieces++;
    }
    return CD_OK;
}

/* The exchange of s is complete: add the copies of our chunk in rank
 * order into data, then give the sum to everyone. The additions happen in
 * the same order on every run, whatever order the messages came in. */
static cd_status fixed_reduce_and_gather(cd_mpi *m, fixed_sum *s)
{
    float *out = s->data + s->own_first;
    const int c = s->own_count;
    memcpy(out, s->rows, (size_t)c * sizeof(float));
    for (int r = 1; r < m->size; r++) {
        const float *row = s->rows + (int64_t)r * c;
        for (int i = 0; i < c; i++) out[i] += row[i];
    }
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->data, s->chunk_counts,
                             s->chunk_first, MPI_FLOAT, m->gather_comm, &s->request);
    if (rc != MPI_SUCCESS) return mpi_check(m, rc, "MPI_Iallgatherv", s->count);
    s->phase = GATHERING;
    return CD_OK;
}

/* Test one piece's request, or with wait see it through; *done says
 * whether it is complete. what names its collective in a failure. */
static cd_status settle(cd_mpi *m, fixed_sum *s, bool wait, const char *what, int *done)
{
    *done = 1;
    const int rc = wait ? MPI_Wait(&s->request, MPI_STATUS_IGNORE)
                        : MPI_Test(&s->request, done, MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS) return CD_OK;
    char call[64];
    snprintf(call, sizeof call, "%s (%s)", wait ? "MPI_Wait" : "MPI_Test", what);
    return mpi_check(m, rc, call, s->count);
}

/* Move every piece on as far as it goes; with wait, to the end. Gathers
 * begin strictly in start order, on their own communicator: collectives
 * must be started in the same order on every rank, and the order in which
 * exchanges complete is not the same everywhere. */
static cd_status fixed_progress(cd_mpi *m, bool wait)
{
    cd_status st = CD_OK;
    for (int64_t i = m->next_gather; st == CD_OK && i < m->n_pieces; i++) {
        fixed_sum *s = &m->pieces[i];
        int done = 0;
        st = settle(m, s, wait, "Ialltoallv", &done);
        if (st != CD_OK || !done) break;
        st = fixed_reduce_and_gather(m, s);
        if (st == CD_OK) m->next_gather = i + 1;
    }
    bool all_done = st == CD_OK && m->next_gather == m->n_pieces;
    for (int64_t i = 0; st == CD_OK && i < m->next_gather; i++) {
        fixed_sum *s = &m->pieces[i];
        if (s->phase != GATHERING) continue;
        int done = 0;
        st = settle(m, s, wait, "Iallgatherv", &done);
        if (st == CD_OK && done) s->phase = DONE;
        all_done = all_done && done;
    }
    /* All complete, or failed: the slots are free for the next step. */
    if (st != CD_OK || all_done) m->n_pieces = m->next_gather = 0;
    return st;
}

/* ---- the hook ------------------------------------------------------------------ */

static cd_status sum_hook(cd_reduce_op op, float *data, int64_t count, void *user)
{
    cd_mpi *m = user;
    if (!m) return CD_ERR_INVALID_ARGUMENT;
    const double t0 = MPI_Wtime();
    const bool fixed = (m->flags & CD_MPI_FIXED_ORDER) != 0;
    cd_status st = CD_OK;
    switch (op) {
    case CD_REDUCE_START:
        if (count < 0 || (count > 0 && !data)) {
            st = fail(m, CD_ERR_INVALID_ARGUMENT, "sum started with %lld floats at %p",
                      (long long)count, (void *)data);
            break;
        }
        m->sums++;
        m->floats += count;
        st = fixed ? fixed_start(m, data, count) : allreduce_start(m, data, count);
        break;
    case CD_REDUCE_POLL:
    case CD_REDUCE_WAIT: {
        const bool wait = op == CD_REDUCE_WAIT;
        st = fixed ? fixed_progress(m, wait) : allreduce_progress(m, wait);
        break;
    }
    default: st = fail(m, CD_ERR_INVALID_ARGUMENT, "unknown sum operation %d", (int)op);
    }
    m->seconds += MPI_Wtime() - t0;
    return st;
}

/* ---- the public calls ---------------------------------------------------------- */

cd_status cd_mpi_create(cd_mpi **out, MPI_Comm comm, int32_t flags)
{
    if (!out) return CD_ERR_INVALID_ARGUMENT;
    *out = NULL;
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized || comm == MPI_COMM_NULL || (flags & ~CD_MPI_FIXED_ORDER) != 0)
        return CD_ERR_INVALID_ARGUMENT;
    cd_mpi *m = calloc(1, sizeof *m);
    if (!m) return CD_ERR_OUT_OF_MEMORY;
    m->flags = flags;
    m->comm = m->gather_comm = MPI_COMM_NULL;
    /* A duplicate keeps our collectives apart from the caller's, and
     * lets us have errors returned without changing the caller's handler. */
    int rc = MPI_Comm_dup(comm, &m->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS && (flags & CD_MPI_FIXED_ORDER))
        rc = MPI_Comm_dup(m->comm, &m->gather_comm); /* inherits MPI_ERRORS_RETURN */
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(m->comm, &m->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(m->comm, &m->size);
    if (rc != MPI_SUCCESS) {
        cd_mpi_free(m);
        return CD_ERR_IO;
    }
    *out = m;
    return CD_OK;
}

void cd_mpi_free(cd_mpi *m)
{
    if (!m) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        /* Sums still running write into buffers: let them finish first. */
        if (m->comm != MPI_COMM_NULL) {
            if (m->flags & CD_MPI_FIXED_ORDER)
                fixed_progress(m, true);
            else
                allreduce_progress(m, true);
        }
        if (m->gather_comm != MPI_COMM_NULL) MPI_Comm_free(&m->gather_comm);
        if (m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
    }
    for (int64_t i = 0; i < m->cap_pieces; i++) {
        free(m->pieces[i].rows);
        free(m->pieces[i].chunk_counts); /* the other three arrays share it */
    }
    free(m->pieces);
    free(m->requests);
    free(m);
}

int64_t cd_mpi_rank(const cd_mpi *m) { return m ? m->rank : -1; }

int64_t cd_mpi_size(const cd_mpi *m) { return m ? m->size : -1; }

cd_status cd_mpi_attach(cd_mpi *m, cd_trainer *tr)
{
    if (!m) return CD_ERR_INVALID_ARGUMENT;
    if (!tr) return fail(m, CD_ERR_INVALID_ARGUMENT, "cd_mpi_attach: the trainer is NULL");
    /* With one rank the trainer never calls the hook; passing it anyway
     * keeps one code path for the caller. */
    cd_status st = cd_trainer_set_distributed(tr, m->rank, m->size, sum_hook, m);
    if (st != CD_OK) return fail(m, st, "cd_mpi_attach: %s", cd_last_error());
    return CD_OK;
}

/* A 64-bit hash of n floats' bits: any changed bit changes it with
 * probability 1 - 2^-64 or so, and it is cheap next to a training step. */
static uint64_t hash_floats(const float *p, int64_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &p[i], sizeof w);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    return h ^ (h >> 33);
}

cd_status cd_mpi_same_weights(cd_mpi *m, cd_decoder *dec, int32_t *same)
{
    if (!m) return CD_ERR_INVALID_ARGUMENT;
    if (!dec || !same)
        return fail(m, CD_ERR_INVALID_ARGUMENT, "cd_mpi_same_weights: %s is NULL",
                    !dec ? "the decoder" : "same");
    cd_params *p = cd_decoder_params(dec);
    const int64_t n = cd_params_numel(p);
    const float *w = n > 0 ? cd_params_data(p, -1) : NULL;
    if (!p || n < 0 || (n > 0 && !w))
        return fail(m, CD_ERR_INVALID_ARGUMENT, "cd_mpi_same_weights: %s", cd_last_error());
    /* One MIN over {h, ~h} gives the minimum and, complemented, the
     * maximum: the hashes agree exactly when the two are equal. */
    const uint64_t h = hash_floats(w, n);
    uint64_t v[2] = {h, ~h};
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MIN, m->comm);
    if (rc != MPI_SUCCESS) return mpi_check(m, rc, "MPI_Allreduce (cd_mpi_same_weights)", 2);
    *same = v[0] == ~v[1];
    return CD_OK;
}

cd_status cd_mpi_stats(const cd_mpi *m, double *comm_seconds, int64_t *sums, int64_t *floats)
{
    if (!m) return CD_ERR_INVALID_ARGUMENT;
    if (comm_seconds) *comm_seconds = m->seconds;
    if (sums) *sums = m->sums;
    if (floats) *floats = m->floats;
    return CD_OK;
}

void cd_mpi_reset_stats(cd_mpi *m)
{
    if (!m) return;
    m->seconds = 0.0;
    m->sums = m->floats = 0;
}

const char *cd_mpi_last_error(const cd_mpi *m) { return m ? m->error : ""; }
