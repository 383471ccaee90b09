/*
 * classes.c - summaries of classifier outputs (docs/models.md, Metrics):
 * the class histogram of unconditional samples, its entropy and the mean
 * confidence, and the class preservation of conditional restorations.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* A rank-2 N x K tensor of finite, non-negative values. */
static cd_status check_probs(const char *fn, const cd_tensor *p)
{
    if (p->rank != 2)
        return cd__error(CD_ERR_SHAPE, "%s: probs has rank %d, expected 2 (N x K)", fn,
                         (int)p->rank);
    const int64_t K = p->shape[1];
    for (int64_t k = 0; k < p->numel; k++) {
        if (!isfinite(p->data[k]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: probs[%" PRId64 "][%" PRId64 "] is %g", fn,
                             k / K, k % K, (double)p->data[k]);
        if (p->data[k] < 0.0f)
            return cd__error(CD_ERR_RANGE,
                             "%s: probs[%" PRId64 "][%" PRId64 "] = %g is "
                             "negative",
                             fn, k / K, k % K, (double)p->data[k]);
    }
    return CD_OK;
}

/* The first index of the largest value of row (torch.argmax's tie rule). */
static int64_t argmax(const float *row, int64_t K)
{
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++)
        if (row[k] > row[best]) best = k;
    return best;
}

cd_status cd_class_histogram(const cd_tensor *probs, int64_t *hist, int64_t n_classes,
                             double *entropy, double *mean_confidence)
{
    static const char fn[] = "cd_class_histogram";
    CD__CHECK_NOT_NULL(probs, fn);
    CD__TRY(check_probs(fn, probs));
    const int64_t N = probs->shape[0], K = probs->shape[1];
    if (hist && n_classes != K)
        return cd__error(CD_ERR_SHAPE,
                         "%s: n_classes = %" PRId64 " but probs has K = %" PRId64 " classes", fn,
                         n_classes, K);
    int64_t *h = cd__calloc((size_t)K, sizeof(int64_t), "class histogram");
    if (!h)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory for %" PRId64 " classes", fn, K);
    double conf = 0.0;
    for (int64_t i = 0; i < N; i++) {
        const float *row = probs->data + i * K;
        int64_t c = argmax(row, K);
        h[c]++;
        conf += row[c];
    }
    double H = 0.0;
    for (int64_t k = 0; k < K; k++)
        if (h[k] > 0) {
            double p = (double)h[k] / (double)N;
            H -= p * log(p);
        }
    if (hist)
        for (int64_t k = 0; k < K; k++) hist[k] = h[k];
    if (entropy) *entropy = H;
    if (mean_confidence) *mean_confidence = conf / (double)N;
    cd__free(h);
    return CD_OK;
}

cd_status cd_class_preservation(const cd_tensor *probs, const int64_t *labels, int64_t n_labels,
                                double *fraction, int64_t *matches)
{
    static const char fn[] = "cd_class_preservation";
    CD__CHECK_NOT_NULL(probs, fn);
    CD__CHECK_NOT_NULL(labels, fn);
    CD__CHECK_NOT_NULL(fraction, fn);
    CD__TRY(check_probs(fn, probs));
    const int64_t N = probs->shape[0], K = probs->shape[1];
    if (n_labels != N)
        return cd__error(CD_ERR_SHAPE, "%s: n_labels = %" PRId64 " but probs has %" PRId64 " rows",
                         fn, n_labels, N);
    int64_t hits = 0;
    for (int64_t i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K)
            return cd__error(CD_ERR_RANGE,
                             "%s: labels[%" PRId64 "] = %" PRId64 " is outside 0..%" PRId64, fn, i,
                             labels[i], K - 1);
        if (argmax(probs->data + i * K, K) == labels[i]) hits++;
    }
    *fraction = (double)hits / (double)N;
    if (matches) *matches = hits;
    return CD_OK;
}
