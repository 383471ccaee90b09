/*
 * xent.h - softmax cross-entropy over class logits, forward and backward
 * (the classifier's loss). Internal: cd__ names only. Conventions as in
 * ops.h: outputs first, backward ADDS into its gradient buffer, no
 * allocation, and callers validate shapes and labels beforehand.
 */
#ifndef CD_OPS_XENT_H
#define CD_OPS_XENT_H

#include "core.h"

/*
 * For B rows of K logits and one class id per row (labels[b] in 0..K-1):
 *   probs[b, k] = softmax(logits[b, :])[k], computed as exp(l - max) / sum
 *                 (saved for backward; probs may not alias logits),
 *   returns     mean over b of -log probs[b, labels[b]], evaluated as
 *               logsumexp(logits[b, :]) - logits[b, labels[b]] in double,
 *               so a confident correct row gives a loss near 0 rather than
 *               -log(1 - rounding) and a confident wrong one stays finite.
 * labels may be NULL: then only probs is computed and 0 is returned.
 */
double cd__xent_forward(float *probs, const float *logits, const int64_t *labels, int64_t B,
                        int64_t K);

/* dlogits[b, k] += scale * (probs[b, k] - [k == labels[b]]) / B */
void cd__xent_backward(float *dlogits, const float *probs, const int64_t *labels, int64_t B,
                       int64_t K, float scale);

#endif /* CD_OPS_XENT_H */
