/*
 * frechet.c - Frechet distance between Gaussian fits of two feature sets
 * (docs/models.md, Metrics), in double, with LAPACK's dsyevd.
 *
 *   FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)
 *
 * With S1 = V L V^T (dsyevd), S1^1/2 S2 S1^1/2 = V K V^T where
 * K = L^1/2 (V^T S2 V) L^1/2, so the trace of its square root is the sum of
 * the square roots of K's eigenvalues: one full eigendecomposition, two
 * products and one eigenvalue-only decomposition, all symmetric.
 *
 * LAPACK comes from the BLAS provider when it has it (OpenBLAS) or from a
 * separate liblapack (BLIS builds): cmake/CdBlas.cmake. It is called
 * through its Fortran symbol (LP64: 32-bit integers), with the hidden
 * string lengths that gfortran appends passed explicitly.
 */
#include "metrics.h"

#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose I macro clobbers names. */
#undef I
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* An eigenvalue of a covariance below -NEG_TOL x its largest cannot come
 * from rounding: the matrix is not positive semi-definite. Rounding gives
 * about D x eps (1e-13 at D = 512) relative, or 1e-6 for covariances
 * stored in float; 1e-4 leaves room for both. */
#define NEG_TOL 1e-4
/* Symmetry asked of user covariances, relative to the largest entry. */
#define SYM_TOL 1e-6

/* Eigenvalues (ascending) into w[n] and, if vectors, eigenvectors into a
 * (column j of the column-major result = eigenvector j; a is symmetric, so
 * row-major input is the same matrix). a is overwritten. */
static cd_status eigh(const char *fn, const char *what, double *a, double *w, int64_t n,
                      bool vectors)
{
    const char jobz = vectors ? 'V' : 'N', uplo = 'L';
    const int ni = (int)n, query = -1;
    int info = 0, liwork = 0, lwork;
    double wq = 0.0;
    dsyevd_(&jobz, &uplo, &ni, a, &ni, w, &wq, &query, &liwork, &query, &info, 1, 1);
    if (info != 0)
        return cd__error(CD_ERR_INTERNAL, "%s: dsyevd workspace query for %s gave INFO = %d", fn,
                         what, info);
    /* The query's size, rounded up: some LAPACKs return it a hair low. */
    double lw = wq + 1.0;
    if (!(lw < (double)INT_MAX) || liwork < 1)
        return cd__error(CD_ERR_OVERFLOW, "%s: dsyevd asks for %g doubles of workspace", fn, wq);
    lwork = (int)lw;
    double *work = cd__calloc((size_t)lwork, sizeof(double), "dsyevd work");
    int *iwork = work ? cd__calloc((size_t)liwork, sizeof(int), "dsyevd iwork") : NULL;
    if (!work || !iwork) {
        cd__free(work);
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for dsyevd's workspace "
                         "(%d doubles)",
                         fn, lwork);
    }
    dsyevd_(&jobz, &uplo, &ni, a, &ni, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    cd__free(iwork);
    cd__free(work);
    if (info < 0)
        return cd__error(CD_ERR_INTERNAL, "%s: dsyevd rejected argument %d for %s", fn, -info,
                         what);
    if (info > 0)
        return cd__error(CD_ERR_UNSUPPORTED, "%s: dsyevd did not converge for %s (INFO = %d)", fn,
                         what, info);
    return CD_OK;
}

static cd_status check_dim(const char *fn, int64_t dim)
{
    if (dim < 1 || dim > CD_FD_MAX_DIM)
        return cd__error(CD_ERR_RANGE, "%s: dim = %" PRId64 " is outside 1..%d", fn, dim,
                         CD_FD_MAX_DIM);
    return CD_OK;
}

static cd_status check_cov(const char *fn, const char *name, const double *cov, int64_t D)
{
    double big = 0.0;
    for (int64_t k = 0; k < D * D; k++) {
        if (!isfinite(cov[k]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: %s[%" PRId64 "][%" PRId64 "] is %g", fn, name,
                             k / D, k % D, cov[k]);
        if (fabs(cov[k]) > big) big = fabs(cov[k]);
    }
    for (int64_t i = 0; i < D; i++) {
        if (cov[i * D + i] < 0.0)
            return cd__error(CD_ERR_RANGE,
                             "%s: %s[%" PRId64 "][%" PRId64 "] = %g is a "
                             "negative variance",
                             fn, name, i, i, cov[i * D + i]);
        for (int64_t j = 0; j < i; j++)
            if (fabs(cov[i * D + j] - cov[j * D + i]) > SYM_TOL * big)
                return cd__error(CD_ERR_RANGE,
                                 "%s: %s is not symmetric: [%" PRId64 "][%" PRId64
                                 "] = %.17g but [%" PRId64 "][%" PRId64 "] = %.17g",
                                 fn, name, i, j, cov[i * D + j], j, i, cov[j * D + i]);
    }
    return CD_OK;
}

static cd_status check_vec(const char *fn, const char *name, const double *v, int64_t D)
{
    for (int64_t k = 0; k < D; k++)
        if (!isfinite(v[k]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: %s[%" PRId64 "] is %g", fn, name, k, v[k]);
    return CD_OK;
}

/* The FD of checked statistics. */
static cd_status fd_core(const char *fn, const double *mu1, const double *cov1, const double *mu2,
                         const double *cov2, int64_t D, double *fd)
{
    const size_t DD = (size_t)D * (size_t)D;
    double *v = cd__calloc(DD * 3 + (size_t)D * 2, sizeof(double), "Frechet scratch");
    if (!v)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for three %" PRId64 " x %" PRId64 " matrices", fn, D,
                         D);
    double *t = v + DD, *k = t + DD, *lam = k + DD, *mu = lam + D;
    cd_status st;

    memcpy(v, cov1, DD * sizeof(double));
    st = eigh(fn, "cov1", v, lam, D, true);
    if (st != CD_OK) goto done;
    /* lam is ascending: the largest eigenvalue is the last. */
    const double top1 = lam[D - 1] > 0.0 ? lam[D - 1] : 0.0;
    if (lam[0] < -NEG_TOL * top1) {
        st = cd__error(CD_ERR_RANGE,
                       "%s: cov1 is not positive semi-definite: eigenvalue "
                       "%.6g against a largest of %.6g",
                       fn, lam[0], top1);
        goto done;
    }
    /* dsyevd's result is column-major: V[i][j] = v[j * D + i], so v read
     * row-major is V^T, and K = L^1/2 (v S2 v^T) L^1/2. */
    /* t = V^T S2 = v (row-major) * S2 */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)D, (int)D, (int)D, 1.0, v, (int)D,
                cov2, (int)D, 0.0, t, (int)D);
    /* k = (V^T S2) V = t * v^T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)D, (int)D, (int)D, 1.0, t, (int)D, v,
                (int)D, 0.0, k, (int)D);
    for (int64_t i = 0; i < D; i++) mu[i] = sqrt(lam[i] > 0.0 ? lam[i] : 0.0);
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j <= i; j++) {
            /* symmetrise as well: k's two triangles differ by rounding */
            double s = 0.5 * (k[i * D + j] + k[j * D + i]) * mu[i] * mu[j];
            k[i * D + j] = s;
            k[j * D + i] = s;
        }
    st = eigh(fn, "S1^1/2 S2 S1^1/2", k, lam, D, false);
    if (st != CD_OK) goto done;

    double tr_sqrt = 0.0, tr1 = 0.0, tr2 = 0.0, dmu = 0.0;
    for (int64_t i = 0; i < D; i++) tr_sqrt += sqrt(lam[i] > 0.0 ? lam[i] : 0.0);
    for (int64_t i = 0; i < D; i++) {
        double d = mu1[i] - mu2[i];
        dmu += d * d;
        tr1 += cov1[i * D + i];
        tr2 += cov2[i * D + i];
    }
    double r = dmu + tr1 + tr2 - 2.0 * tr_sqrt;
    *fd = r > 0.0 ? r : 0.0;
done:
    cd__free(v);
    return st;
}

cd_status cd_frechet_distance_from_stats(const double *mu1, const double *cov1, const double *mu2,
                                         const double *cov2, int64_t dim, double *fd)
{
    static const char fn[] = "cd_frechet_distance_from_stats";
    CD__CHECK_NOT_NULL(mu1, fn);
    CD__CHECK_NOT_NULL(cov1, fn);
    CD__CHECK_NOT_NULL(mu2, fn);
    CD__CHECK_NOT_NULL(cov2, fn);
    CD__CHECK_NOT_NULL(fd, fn);
    CD__TRY(check_dim(fn, dim));
    CD__TRY(check_vec(fn, "mu1", mu1, dim));
    CD__TRY(check_vec(fn, "mu2", mu2, dim));
    CD__TRY(check_cov(fn, "cov1", cov1, dim));
    CD__TRY(check_cov(fn, "cov2", cov2, dim));
    /* cov2 is checked for definiteness through K: S1^1/2 S2 S1^1/2 is PSD
     * when S2 is, but an indefinite S2 need not show there (S1 may hide
     * it), so check it on its own. */
    const size_t DD = (size_t)dim * (size_t)dim;
    double *a = cd__calloc(DD + (size_t)dim, sizeof(double), "Frechet check");
    if (!a)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for a %" PRId64 " x %" PRId64 " matrix", fn, dim, dim);
    memcpy(a, cov2, DD * sizeof(double));
    cd_status st = eigh(fn, "cov2", a, a + DD, dim, false);
    if (st == CD_OK) {
        const double *w = a + DD, top = w[dim - 1] > 0.0 ? w[dim - 1] : 0.0;
        if (w[0] < -NEG_TOL * top)
            st = cd__error(CD_ERR_RANGE,
                           "%s: cov2 is not positive semi-definite: eigenvalue "
                           "%.6g against a largest of %.6g",
                           fn, w[0], top);
    }
    cd__free(a);
    if (st != CD_OK) return st;
    return fd_core(fn, mu1, cov1, mu2, cov2, dim, fd);
}

/* Mean and unbiased covariance of the N x D rows; name is for messages. */
static cd_status stats(const char *fn, const char *name, const cd_tensor *f, double *mean,
                       double *cov)
{
    const int64_t N = f->shape[0], D = f->shape[1];
    const float *x = f->data;
    for (int64_t k = 0; k < N * D; k++)
        if (!isfinite(x[k]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: %s[%" PRId64 "][%" PRId64 "] is %g", fn, name,
                             k / D, k % D, (double)x[k]);
    double *c = NULL;
    int64_t nd;
    if (cd__mul_overflows_i64(N, D, &nd) || (uint64_t)nd > SIZE_MAX / sizeof(double) ||
        !(c = cd__calloc((size_t)nd, sizeof(double), "centred features")))
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory to centre %s (%" PRId64 " x %" PRId64 ")", fn, name, N,
                         D);
    for (int64_t j = 0; j < D; j++) mean[j] = 0.0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) mean[j] += x[i * D + j];
    for (int64_t j = 0; j < D; j++) mean[j] /= (double)N;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) c[i * D + j] = (double)x[i * D + j] - mean[j];
    /* cov = c^T c / (N - 1): the upper triangle, then mirrored. */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, (int)N, 1.0 / (double)(N - 1), c,
                (int)D, 0.0, cov, (int)D);
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j < i; j++) cov[i * D + j] = cov[j * D + i];
    cd__free(c);
    return CD_OK;
}

static cd_status check_features(const char *fn, const char *name, const cd_tensor *f)
{
    if (f->rank != 2)
        return cd__error(CD_ERR_SHAPE, "%s: %s has rank %d, expected 2 (N x D)", fn, name,
                         (int)f->rank);
    if (f->shape[0] < 2)
        return cd__error(CD_ERR_SHAPE,
                         "%s: %s has %" PRId64 " row; a covariance needs at "
                         "least 2",
                         fn, name, f->shape[0]);
    if (f->shape[1] > CD_FD_MAX_DIM)
        return cd__error(CD_ERR_RANGE, "%s: %s has D = %" PRId64 " features, above %d", fn, name,
                         f->shape[1], CD_FD_MAX_DIM);
    if (f->shape[0] > INT_MAX)
        return cd__error(CD_ERR_RANGE, "%s: %s has %" PRId64 " rows, above %d", fn, name,
                         f->shape[0], INT_MAX);
    return CD_OK;
}

cd_status cd_feature_stats(const cd_tensor *features, double *mean, double *cov, int64_t dim)
{
    static const char fn[] = "cd_feature_stats";
    CD__CHECK_NOT_NULL(features, fn);
    CD__TRY(check_features(fn, "features", features));
    const int64_t D = features->shape[1];
    if (dim != D)
        return cd__error(CD_ERR_SHAPE, "%s: dim = %" PRId64 " but features has D = %" PRId64, fn,
                         dim, D);
    double *m = cd__calloc((size_t)D * ((size_t)D + 1), sizeof(double), "feature stats");
    if (!m)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for a %" PRId64 " x %" PRId64 " covariance", fn, D, D);
    cd_status st = stats(fn, "features", features, m, m + D);
    if (st == CD_OK) {
        if (mean) memcpy(mean, m, (size_t)D * sizeof(double));
        if (cov) memcpy(cov, m + D, (size_t)D * (size_t)D * sizeof(double));
    }
    cd__free(m);
    return st;
}

cd_status cd_frechet_distance(const cd_tensor *a, const cd_tensor *b, double *fd)
{
    static const char fn[] = "cd_frechet_distance";
    CD__CHECK_NOT_NULL(a, fn);
    CD__CHECK_NOT_NULL(b, fn);
    CD__CHECK_NOT_NULL(fd, fn);
    CD__TRY(check_features(fn, "a", a));
    CD__TRY(check_features(fn, "b", b));
    const int64_t D = a->shape[1];
    if (b->shape[1] != D)
        return cd__error(CD_ERR_SHAPE, "%s: a has D = %" PRId64 " features but b has %" PRId64, fn,
                         D, b->shape[1]);
    const size_t DD = (size_t)D * (size_t)D;
    double *m = cd__calloc(2 * (DD + (size_t)D), sizeof(double), "Frechet statistics");
    if (!m)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for two %" PRId64 " x %" PRId64 " covariances", fn, D,
                         D);
    double *mu1 = m, *c1 = mu1 + D, *mu2 = c1 + DD, *c2 = mu2 + D;
    cd_status st = stats(fn, "a", a, mu1, c1);
    if (st == CD_OK) st = stats(fn, "b", b, mu2, c2);
    /* Covariances computed here are symmetric and PSD up to rounding. */
    if (st == CD_OK) st = fd_core(fn, mu1, c1, mu2, c2, D, fd);
    cd__free(m);
    return st;
}
