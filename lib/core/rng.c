/*
 * rng.c - Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11). docs/rng.md is the contract.
 *
 * State: a 64-bit key (the seed: low word key[0], high word key[1]) and a
 * 128-bit block counter (c_lo, c_hi; counter words ctr[0..3] are the 32-bit
 * pieces from least to most significant). Each block gives four 32-bit
 * words w0..w3. Counters with the top bit set are reserved for deriving
 * substream keys, so a stream never collides with its own splits.
 */
#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define RNG_STATE_TAG UINT64_C(0x43445247000001) /* "CDRG", format 1 */
#define SPLIT_TAG UINT32_C(0x80000000)
/* Below this many values a fill runs on the calling thread only. */
#define PARALLEL_MIN_VALUES 65536
#define BLOCKS_PER_TASK 4096

struct cd_rng {
    uint64_t key;
    uint64_t c_lo, c_hi;
};

typedef struct {
    uint32_t w[4];
} block4;

static block4 philox(uint64_t key, uint64_t c_lo, uint64_t c_hi)
{
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    uint32_t x0 = (uint32_t)c_lo, x1 = (uint32_t)(c_lo >> 32);
    uint32_t x2 = (uint32_t)c_hi, x3 = (uint32_t)(c_hi >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * x0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x1 = (uint32_t)p1;
        x3 = (uint32_t)p0;
        x0 = y0;
        x2 = y2;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return (block4){{x0, x1, x2, x3}};
}

/* Exposed for the known-answer test against Random123's vectors. */
void cd__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
void cd__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    block4 b = philox((uint64_t)key[1] << 32 | key[0], (uint64_t)ctr[1] << 32 | ctr[0],
                      (uint64_t)ctr[3] << 32 | ctr[2]);
    for (int i = 0; i < 4; i++) out[i] = b.w[i];
}

/* Block number `offset` past (c_lo, c_hi), with carry into the high half. */
static block4 block_at(const cd_rng *r, uint64_t offset)
{
    uint64_t lo = r->c_lo + offset;
    uint64_t hi = r->c_hi + (lo < r->c_lo);
    return philox(r->key, lo, hi);
}

static void advance(cd_rng *r, uint64_t blocks)
{
    uint64_t lo = r->c_lo + blocks;
    r->c_hi += lo < r->c_lo;
    r->c_lo = lo;
}

cd_status cd_rng_create(cd_rng **out, uint64_t seed)
{
    CD__CHECK_NOT_NULL(out, "cd_rng_create");
    *out = NULL;
    cd_rng *r = cd__calloc(1, sizeof *r, "generator");
    if (!r) return cd_last_status();
    r->key = seed;
    *out = r;
    return CD_OK;
}

void cd_rng_free(cd_rng *rng) { cd__free(rng); }

cd_status cd_rng_split(cd_rng **out, const cd_rng *rng, uint64_t stream)
{
    static const char fn[] = "cd_rng_split";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(rng, fn);
    /* The child key is the parent's block at a reserved counter. */
    block4 b = philox(rng->key, stream, (uint64_t)SPLIT_TAG << 32);
    CD__TRY(cd_rng_create(out, (uint64_t)b.w[1] << 32 | b.w[0]));
    return CD_OK;
}

cd_status cd_rng_get_state(const cd_rng *rng, uint64_t *state)
{
    CD__CHECK_NOT_NULL(rng, "cd_rng_get_state");
    CD__CHECK_NOT_NULL(state, "cd_rng_get_state");
    state[0] = rng->key;
    state[1] = rng->c_lo;
    state[2] = rng->c_hi;
    state[3] = RNG_STATE_TAG;
    return CD_OK;
}

cd_status cd_rng_set_state(cd_rng *rng, const uint64_t *state)
{
    CD__CHECK_NOT_NULL(rng, "cd_rng_set_state");
    CD__CHECK_NOT_NULL(state, "cd_rng_set_state");
    if (state[3] != RNG_STATE_TAG)
        return cd__error(CD_ERR_FORMAT,
                         "cd_rng_set_state: state[3] = 0x%" PRIx64
                         " is not a libcolddiff RNG state tag",
                         state[3]);
    rng->key = state[0];
    rng->c_lo = state[1];
    rng->c_hi = state[2];
    return CD_OK;
}

static cd_status check_draw(const char *fn, const cd_rng *rng, const void *out, int64_t n)
{
    CD__CHECK_NOT_NULL(rng, fn);
    if (n < 0) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: n = %" PRId64 " is negative", fn, n);
    /* Block counts are computed as (n + 3) / 4: keep them from overflowing. */
    if (n > INT64_MAX / 8)
        return cd__error(CD_ERR_OVERFLOW, "%s: n = %" PRId64 " is too large", fn, n);
    if (n > 0) CD__CHECK_NOT_NULL(out, fn);
    return CD_OK;
}

/* ---- floats: a block-parallel fill, identical for every thread count ---- */

typedef void (*block_fill_fn)(block4 b, float *dst, int64_t count);

static void fill_uniform(block4 b, float *dst, int64_t count)
{
    for (int64_t i = 0; i < count; i++) dst[i] = (float)(b.w[i] >> 8) * 0x1p-24f;
}

static void fill_normal(block4 b, float *dst, int64_t count)
{
    uint64_t a = ((uint64_t)b.w[0] << 32 | b.w[1]) >> 11;
    uint64_t c = ((uint64_t)b.w[2] << 32 | b.w[3]) >> 11;
    double u1 = ((double)a + 0.5) * 0x1p-53; /* in (0, 1): log is finite */
    double u2 = (double)c * 0x1p-53;
    double r = sqrt(-2.0 * log(u1));
    double theta = 6.283185307179586476925286766559 * u2;
    dst[0] = (float)(r * cos(theta));
    if (count > 1) dst[1] = (float)(r * sin(theta));
}

typedef struct {
    const cd_rng *rng;
    block_fill_fn fill;
    int per_block;
    float *out;
    int64_t n;
} fill_job;

static void fill_range(const fill_job *job, int64_t first_block, int64_t end_block)
{
    for (int64_t b = first_block; b < end_block; b++) {
        int64_t pos = b * job->per_block;
        int64_t count = job->n - pos < job->per_block ? job->n - pos : job->per_block;
        job->fill(block_at(job->rng, (uint64_t)b), job->out + pos, count);
    }
}

static void fill_task(void *ctx, int64_t task)
{
    const fill_job *job = ctx;
    int64_t blocks = (job->n + job->per_block - 1) / job->per_block;
    int64_t first = task * BLOCKS_PER_TASK;
    int64_t end = first + BLOCKS_PER_TASK < blocks ? first + BLOCKS_PER_TASK : blocks;
    fill_range(job, first, end);
}

/* The lanes of block b that fall in values [first, end), through a
 * scratch block: a block's lanes are the same whatever the count. */
static void fill_partial(const cd_rng *rng, float *out, int64_t b, int64_t first, int64_t end,
                         block_fill_fn fill, int64_t pb)
{
    float scratch[4];
    fill(block_at(rng, (uint64_t)b), scratch, pb);
    for (int64_t v = b * pb; v < (b + 1) * pb; v++)
        if (v >= first && v < end) out[v - first] = scratch[v - b * pb];
}

/* Values first..first+n-1 of a draw of `total` values, the generator then
 * standing where that draw leaves it. Whole blocks go straight to out
 * (on the pool when there are many); the block the window starts inside
 * and the one it ends inside go through fill_partial. */
static void fill_window(cd_rng *rng, float *out, int64_t first, int64_t n, int64_t total,
                        block_fill_fn fill, int per_block)
{
    const int64_t pb = per_block, end = first + n;
    if (n > 0) {
        const int64_t lo = first / pb, hi = (end - 1) / pb;
        const int64_t b0 = (first + pb - 1) / pb, b1 = end / pb; /* whole blocks: [b0, b1) */
        if (first % pb) fill_partial(rng, out, lo, first, end, fill, pb);
        if (end % pb && (hi != lo || first % pb == 0))
            fill_partial(rng, out, hi, first, end, fill, pb);
        if (b1 > b0) {
            cd_rng at = *rng;
            advance(&at, (uint64_t)b0);
            fill_job job = {&at, fill, per_block, out + (b0 * pb - first), (b1 - b0) * pb};
            const int64_t blocks = b1 - b0;
            if (job.n >= PARALLEL_MIN_VALUES)
                cd__parallel_for((blocks + BLOCKS_PER_TASK - 1) / BLOCKS_PER_TASK, fill_task, &job);
            else
                fill_range(&job, 0, blocks);
        }
    }
    advance(rng, (uint64_t)((total + pb - 1) / pb));
}

static cd_status check_window(const char *fn, const cd_rng *rng, const float *out, int64_t first,
                              int64_t n, int64_t total)
{
    CD__TRY(check_draw(fn, rng, out, n));
    /* The rest of the draw is skipped, not written: out may be NULL. */
    CD__TRY(check_draw(fn, rng, rng, total));
    if (first < 0 || first > total - n)
        return cd__error(CD_ERR_RANGE,
                         "%s: values %" PRId64 "..%" PRId64 " lie outside a draw of %" PRId64, fn,
                         first, first + n - 1, total);
    return CD_OK;
}

cd_status cd__rng_uniform_window(cd_rng *rng, float *out, int64_t first, int64_t n, int64_t total)
{
    CD__TRY(check_window("cd__rng_uniform_window", rng, out, first, n, total));
    fill_window(rng, out, first, n, total, fill_uniform, 4);
    return CD_OK;
}

cd_status cd__rng_normal_window(cd_rng *rng, float *out, int64_t first, int64_t n, int64_t total)
{
    CD__TRY(check_window("cd__rng_normal_window", rng, out, first, n, total));
    fill_window(rng, out, first, n, total, fill_normal, 2);
    return CD_OK;
}

cd_status cd_rng_uniform(cd_rng *rng, float *out, int64_t n)
{
    CD__TRY(check_draw("cd_rng_uniform", rng, out, n));
    fill_window(rng, out, 0, n, n, fill_uniform, 4);
    return CD_OK;
}

cd_status cd_rng_normal(cd_rng *rng, float *out, int64_t n)
{
    CD__TRY(check_draw("cd_rng_normal", rng, out, n));
    fill_window(rng, out, 0, n, n, fill_normal, 2);
    return CD_OK;
}

cd_status cd_rng_uniform_tensor(cd_rng *rng, cd_tensor *t)
{
    CD__CHECK_NOT_NULL(t, "cd_rng_uniform_tensor");
    CD__TRY(check_draw("cd_rng_uniform_tensor", rng, t->data, t->numel));
    fill_window(rng, t->data, 0, t->numel, t->numel, fill_uniform, 4);
    return CD_OK;
}

cd_status cd_rng_normal_tensor(cd_rng *rng, cd_tensor *t)
{
    CD__CHECK_NOT_NULL(t, "cd_rng_normal_tensor");
    CD__TRY(check_draw("cd_rng_normal_tensor", rng, t->data, t->numel));
    fill_window(rng, t->data, 0, t->numel, t->numel, fill_normal, 2);
    return CD_OK;
}

/* ---- integers: Lemire's nearly divisionless method, serial ------------- */

/* A uniform value in [0, range) for range >= 1, or any 64-bit value for
 * range == 0 (meaning 2^64). Candidates are (w0,w1), then (w2,w3), then the
 * next block's; each block used is consumed. */
static uint64_t draw_below(cd_rng *rng, uint64_t range)
{
    for (;;) {
        block4 b = block_at(rng, 0);
        advance(rng, 1);
        for (int half = 0; half < 2; half++) {
            uint64_t x = (uint64_t)b.w[2 * half] << 32 | b.w[2 * half + 1];
            if (range == 0) return x;
            unsigned __int128 m = (unsigned __int128)x * range;
            uint64_t low = (uint64_t)m;
            if (low >= range || low >= (0 - range) % range) return (uint64_t)(m >> 64);
        }
    }
}

cd_status cd_rng_int_range(cd_rng *rng, int64_t *out, int64_t n, int64_t lo, int64_t hi)
{
    static const char fn[] = "cd_rng_int_range";
    CD__TRY(check_draw(fn, rng, out, n));
    if (lo > hi)
        return cd__error(CD_ERR_RANGE, "%s: lo = %" PRId64 " is above hi = %" PRId64, fn, lo, hi);
    uint64_t range = (uint64_t)hi - (uint64_t)lo + 1; /* wraps to 0 for 2^64 */
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)((uint64_t)lo + draw_below(rng, range));
    return CD_OK;
}
