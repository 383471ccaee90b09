/*
 * linear.c - fully connected layers and batched matrix products on
 * cblas_sgemm. The BLAS runs single-threaded (see threads.c); the decoders'
 * linear layers are too small to split, and batched products run one entry
 * per task, so results are the same bits for every thread count.
 */
#include "ops.h"

#include <cblas.h>
#include <string.h>

void cd__linear_forward(float *out, const float *in, const float *W, const float *b, int64_t B,
                        int64_t n_in, int64_t n_out)
{
    /* Pre-filling the bias and accumulating with beta = 1 is how PyTorch's
     * addmm orders the sum, which keeps parity to the last bit or two. */
    if (b) {
        for (int64_t r = 0; r < B; r++) memcpy(out + r * n_out, b, (size_t)n_out * sizeof *b);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)n_out, (int)n_in, 1.0f, in,
                (int)n_in, W, (int)n_in, b ? 1.0f : 0.0f, out, (int)n_out);
}

/* db[o] += sum over rows of dout[:, o]; double keeps large batches exact. */
static void bias_grad(float *db, const float *dout, int64_t B, int64_t n_out)
{
    for (int64_t o = 0; o < n_out; o++) {
        double s = 0.0;
        for (int64_t r = 0; r < B; r++) s += dout[r * n_out + o];
        db[o] += (float)s;
    }
}

void cd__linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                         const float *W, int64_t B, int64_t n_in, int64_t n_out)
{
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)n_in, (int)n_out, 1.0f,
                    dout, (int)n_out, W, (int)n_in, 1.0f, din, (int)n_in);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_out, (int)n_in, (int)B, 1.0f,
                    dout, (int)n_out, in, (int)n_in, 1.0f, dW, (int)n_in);
    if (db) bias_grad(db, dout, B, n_out);
}

typedef struct {
    float *C;
    const float *A, *B;
    int64_t M, N, K;
    bool transA, transB;
    float alpha, beta;
} bmm_ctx;

static void bmm_task(void *ctx, int64_t i)
{
    const bmm_ctx *c = ctx;
    cblas_sgemm(CblasRowMajor, c->transA ? CblasTrans : CblasNoTrans,
                c->transB ? CblasTrans : CblasNoTrans, (int)c->M, (int)c->N, (int)c->K, c->alpha,
                c->A + i * c->M * c->K, (int)(c->transA ? c->M : c->K), c->B + i * c->K * c->N,
                (int)(c->transB ? c->K : c->N), c->beta, c->C + i * c->M * c->N, (int)c->N);
}

void cd__bmm(float *C, const float *A, const float *B, int64_t batch, int64_t M, int64_t N,
             int64_t K, bool transA, bool transB, float alpha, float beta)
{
    /* OpenBLAS 0.3.21 has no cblas_sgemm_batch: one product per task. */
    bmm_ctx c = {C, A, B, M, N, K, transA, transB, alpha, beta};
    cd__parallel_for(batch, bmm_task, &c);
}
