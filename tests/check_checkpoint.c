/*
 * check_checkpoint.c - the checkpoint file: a full round trip, and one
 * test per way a file or a save can go wrong. Every failing load must leave
 * the caller's parameters and optimiser byte-identical to before.
 */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include "nn/nn.h"

#define HEADER 56

/* ---- a small model ----------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t rank;
    int64_t shape[4];
} tdesc;

static const tdesc g_model[] = {
    {"blocks.0.net.0.weight", 4, {4, 2, 3, 3}},
    {"blocks.0.net.0.bias", 1, {4}},
    {"time_embed.0.weight", 2, {6, 5}},
};
#define NT 3

static cd_params *make_params_from(const tdesc *d, int n)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    for (int i = 0; i < n; i++) CD_ASSERT_OK(cd_params_add(p, d[i].name, d[i].rank, d[i].shape));
    return p;
}

static void fill_normal(cd_params *p, uint64_t seed)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, seed));
    CD_ASSERT_OK(cd_rng_normal(r, cd_params_data(p, -1), cd_params_numel(p)));
    cd_rng_free(r);
}

/* A trained-looking model: random values and three Adam steps with EMA. */
static void train(cd_params *p, cd__adam *a, uint64_t seed, int steps)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, seed));
    for (int s = 0; s < steps; s++) {
        CD_ASSERT_OK(cd_rng_normal(r, cd_params_grad(p, -1), cd_params_numel(p)));
        CD_ASSERT_OK(cd__adam_step(a));
    }
    cd_rng_free(r);
}

static cd__adam *make_adam(cd_params *p, double ema)
{
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_LR, 1e-2));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_WEIGHT_DECAY, 0.05));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_DECOUPLED, 1));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_CLIP_NORM, 3.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_EMA_DECAY, ema));
    return a;
}

static const char *tmp_file(char *buf, size_t cap, const char *name)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    return cd_test_path(buf, cap, dir, name);
}

/* Save the standard trained model (params + Adam/EMA) at path. */
static void save_model(const char *path, bool with_adam)
{
    cd_params *p = make_params_from(g_model, NT);
    fill_normal(p, 1);
    cd__adam *a = make_adam(p, 0.9);
    train(p, a, 2, 3);
    CD_ASSERT_OK(cd__ckpt_save(NULL, path, p, with_adam ? a : NULL));
    cd__adam_free(a);
    cd_params_free(p);
}

/* ---- snapshots of a caller's model -------------------------------------- */

typedef struct {
    int64_t n, steps;
    float *values, *m, *v, *ema;
    double hyper[CD__ADAM_NPARAMS];
    bool has_ema;
} snapshot;

static float *copy_floats(const float *src, int64_t n)
{
    float *d = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (src) memcpy(d, src, (size_t)n * sizeof(float));
    return d;
}

static snapshot take(cd_params *p, const cd__adam *a)
{
    snapshot s = {.n = cd_params_numel(p)};
    s.values = copy_floats(cd_params_data(p, -1), s.n);
    if (a) {
        s.steps = cd__adam_steps(a);
        s.m = copy_floats(cd__adam_m(a), s.n);
        s.v = copy_floats(cd__adam_v(a), s.n);
        s.has_ema = cd__adam_ema(a) != NULL;
        s.ema = copy_floats(cd__adam_ema(a), s.n);
        for (int k = 0; k < CD__ADAM_NPARAMS; k++)
            CD_ASSERT_OK(cd__adam_get(a, (cd__adam_param)k, &s.hyper[k]));
    }
    return s;
}

static void assert_untouched(snapshot *s, cd_params *p, const cd__adam *a)
{
    size_t bytes = (size_t)s->n * sizeof(float);
    ck_assert_msg(memcmp(s->values, cd_params_data(p, -1), bytes) == 0,
                  "a failed load changed the parameters");
    if (a) {
        ck_assert_int_eq(cd__adam_steps(a), s->steps);
        ck_assert(memcmp(s->m, cd__adam_m(a), bytes) == 0);
        ck_assert(memcmp(s->v, cd__adam_v(a), bytes) == 0);
        ck_assert_int_eq(cd__adam_ema(a) != NULL, s->has_ema);
        if (s->has_ema) ck_assert(memcmp(s->ema, cd__adam_ema(a), bytes) == 0);
        for (int k = 0; k < CD__ADAM_NPARAMS; k++) {
            double v;
            CD_ASSERT_OK(cd__adam_get(a, (cd__adam_param)k, &v));
            ck_assert(v == s->hyper[k]);
        }
    }
    free(s->values);
    free(s->m);
    free(s->v);
    free(s->ema);
}

/* Load path into a fresh caller model (values, Adam with its own EMA) and
 * assert the status, the message and that nothing changed. */
static void expect_load_fails(const char *path, const tdesc *d, int n, cd_status want,
                              const char *mention, bool with_adam)
{
    cd_params *p = make_params_from(d, n);
    fill_normal(p, 77);
    cd__adam *a = make_adam(p, 0.5);
    train(p, a, 78, 2);
    snapshot s = take(p, a);
    CD_ASSERT_STATUS(cd__ckpt_load(path, p, with_adam ? a : NULL, 0), want);
    if (mention) CD_ASSERT_ERROR_MENTIONS(mention);
    assert_untouched(&s, p, a);
    cd__adam_free(a);
    cd_params_free(p);
}

/* ---- raw file surgery ---------------------------------------------------- */

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static void set32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static void set64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static void fix_header_crc(uint8_t *h) { set32(h + 48, (uint32_t)crc32(0, h, 48)); }

/* The uncompressed body of a checkpoint file. */
static uint8_t *body_of(const char *path, size_t *len)
{
    size_t n;
    uint8_t *f = read_bytes(path, &n);
    uLongf out = (uLongf)get64(f + 32);
    uint8_t *body = malloc(out ? out : 1);
    ck_assert_int_eq(uncompress(body, &out, f + HEADER, (uLong)get64(f + 24)), Z_OK);
    *len = out;
    free(f);
    return body;
}

/* Write body as a complete, valid (sizes and CRCs right) checkpoint. */
static void write_with_body(const char *path, const uint8_t *body, size_t len)
{
    uLongf cap = compressBound((uLong)len);
    uint8_t *f = calloc(HEADER + cap, 1);
    ck_assert_int_eq(compress2(f + HEADER, &cap, body, (uLong)len, 6), Z_OK);
    memcpy(f,
           "\x89"
           "CDCKPT\n",
           8);
    set32(f + 8, 0x01020304u);
    set32(f + 12, 1);
    set32(f + 16, 1);
    set64(f + 24, cap);
    set64(f + 32, len);
    set32(f + 40, (uint32_t)crc32(0, f + HEADER, (uInt)cap));
    set32(f + 44, (uint32_t)crc32(0, body, (uInt)len));
    fix_header_crc(f);
    write_bytes(path, f, HEADER + cap);
    free(f);
}

/* body + one extra section (tag, flags, payload). */
static void append_section(const char *path, const char *tag, uint32_t flags, const void *payload,
                           size_t n)
{
    size_t len;
    uint8_t *body = body_of(path, &len);
    uint8_t *b = malloc(len + 16 + n);
    memcpy(b, body, len);
    memcpy(b + len, tag, 4);
    set32(b + len + 4, flags);
    set64(b + len + 8, n);
    if (n) memcpy(b + len + 16, payload, n);
    write_with_body(path, b, len + 16 + n);
    free(b);
    free(body);
}

static uint8_t *find_bytes(uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

/* ---- round trip ---------------------------------------------------------- */

static void fill_config(cd__ckpt *ck, const cd_rng *rng)
{
    float betas[5] = {0.0f, 1e-4f, 0.5f, 0.02f, -3.25f};
    int64_t hidden[4] = {16, 32, 32, 16};
    CD_ASSERT_OK(cd__ckpt_set_str(ck, "decoder", "cnn"));
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, "T", 2000));
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, "T", 1000)); /* replaces */
    CD_ASSERT_OK(cd__ckpt_set_f64(ck, "blur.prior.mean", -0.359));
    CD_ASSERT_OK(cd__ckpt_set_f64(ck, "nan", NAN));
    CD_ASSERT_OK(cd__ckpt_set_f32_array(ck, "schedule.beta", betas, 5));
    CD_ASSERT_OK(cd__ckpt_set_f32_array(ck, "empty", NULL, 0));
    CD_ASSERT_OK(cd__ckpt_set_i64_array(ck, "hidden", hidden, 4));
    CD_ASSERT_OK(cd__ckpt_set_str(ck, "blank", ""));
    CD_ASSERT_OK(cd__ckpt_set_meta(ck, "created", "2024-05-21T10:00:00Z"));
    CD_ASSERT_OK(cd__ckpt_set_meta(ck, "note", "best validation loss"));
    CD_ASSERT_OK(cd__ckpt_set_rng(ck, "train", rng));
    CD_ASSERT_OK(cd__ckpt_set_counters(ck, 123456, 17));
}

static void check_config(const cd__ckpt *ck)
{
    const char *s = NULL;
    int64_t i = 0, n = 0;
    double d = 0;
    CD_ASSERT_OK(cd__ckpt_get_str(ck, "decoder", &s));
    ck_assert_str_eq(s, "cnn");
    CD_ASSERT_OK(cd__ckpt_get_str(ck, "blank", &s));
    ck_assert_str_eq(s, "");
    CD_ASSERT_OK(cd__ckpt_get_i64(ck, "T", &i));
    ck_assert_int_eq(i, 1000);
    CD_ASSERT_OK(cd__ckpt_get_f64(ck, "blur.prior.mean", &d));
    ck_assert(d == -0.359);
    CD_ASSERT_OK(cd__ckpt_get_f64(ck, "nan", &d));
    ck_assert(isnan(d));
    float betas[5];
    CD_ASSERT_OK(cd__ckpt_get_f32_array(ck, "schedule.beta", NULL, 0, &n));
    ck_assert_int_eq(n, 5);
    CD_ASSERT_OK(cd__ckpt_get_f32_array(ck, "schedule.beta", betas, 5, &n));
    ck_assert(betas[1] == 1e-4f && betas[4] == -3.25f);
    CD_ASSERT_OK(cd__ckpt_get_f32_array(ck, "empty", betas, 5, &n));
    ck_assert_int_eq(n, 0);
    int64_t hidden[4];
    CD_ASSERT_OK(cd__ckpt_get_i64_array(ck, "hidden", hidden, 4, &n));
    ck_assert(n == 4 && hidden[0] == 16 && hidden[3] == 16);
    ck_assert_int_eq(cd__ckpt_config_count(ck), 8);
    cd__ckpt_type type;
    ck_assert_str_eq(cd__ckpt_config_key(ck, 1, &type), "T");
    ck_assert_int_eq(type, CD__CKPT_INT64);
    ck_assert_int_eq(cd__ckpt_meta_count(ck), 2);
    const char *k = NULL;
    CD_ASSERT_OK(cd__ckpt_meta_at(ck, 1, &k, &s));
    ck_assert_str_eq(k, "note");
    ck_assert_str_eq(s, "best validation loss");
    CD_ASSERT_OK(cd__ckpt_get_meta(ck, "created", &s));
    ck_assert_str_eq(s, "2024-05-21T10:00:00Z");
    int64_t step = 0, epoch = 0;
    CD_ASSERT_OK(cd__ckpt_get_counters(ck, &step, &epoch));
    ck_assert(step == 123456 && epoch == 17);
}

static void assert_same_state(cd_params *p1, const cd__adam *a1, cd_params *p2, const cd__adam *a2)
{
    size_t bytes = (size_t)cd_params_numel(p1) * sizeof(float);
    ck_assert_int_eq(cd_params_numel(p1), cd_params_numel(p2));
    ck_assert(memcmp(cd_params_data(p1, -1), cd_params_data(p2, -1), bytes) == 0);
    ck_assert_int_eq(cd__adam_steps(a1), cd__adam_steps(a2));
    ck_assert(memcmp(cd__adam_m(a1), cd__adam_m(a2), bytes) == 0);
    ck_assert(memcmp(cd__adam_v(a1), cd__adam_v(a2), bytes) == 0);
    ck_assert_ptr_nonnull(cd__adam_ema(a2));
    ck_assert(memcmp(cd__adam_ema(a1), cd__adam_ema(a2), bytes) == 0);
    for (int k = 0; k < CD__ADAM_NPARAMS; k++) {
        double x, y;
        CD_ASSERT_OK(cd__adam_get(a1, (cd__adam_param)k, &x));
        CD_ASSERT_OK(cd__adam_get(a2, (cd__adam_param)k, &y));
        ck_assert(x == y);
    }
}

START_TEST(round_trip_restores_everything)
{
    char path[512];
    tmp_file(path, sizeof path, "model.cdm");
    cd_params *p = make_params_from(g_model, NT);
    fill_normal(p, 1);
    cd__adam *a = make_adam(p, 0.9);
    train(p, a, 2, 3);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 99));
    float drawn[8], again[8];
    CD_ASSERT_OK(cd_rng_uniform(rng, drawn, 3)); /* move it off the start */
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    fill_config(ck, rng);
    CD_ASSERT_OK(cd__ckpt_save(ck, path, p, a));
    cd__ckpt_free(ck);
    CD_ASSERT_OK(cd_rng_uniform(rng, drawn, 8));

    /* A fresh model of the same architecture, tensors added in another
     * order, with different values and a default optimiser. */
    const tdesc shuffled[NT] = {g_model[2], g_model[0], g_model[1]};
    cd_params *q = make_params_from(shuffled, NT);
    fill_normal(q, 5);
    cd__adam *b = NULL;
    CD_ASSERT_OK(cd__adam_create(&b, q));
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    check_config(ck);
    ck_assert(cd__ckpt_has_adam(ck) && cd__ckpt_has_ema(ck));
    CD_ASSERT_OK(cd__ckpt_apply(ck, q, b, 0));
    cd_rng *rng2 = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng2, 1));
    CD_ASSERT_OK(cd__ckpt_get_rng(ck, "train", rng2));
    CD_ASSERT_OK(cd_rng_uniform(rng2, again, 8));
    ck_assert(memcmp(drawn, again, sizeof drawn) == 0);
    cd__ckpt_free(ck);

    for (int i = 0; i < NT; i++) {
        int64_t j;
        CD_ASSERT_OK(cd_params_find(q, g_model[i].name, &j));
        ck_assert(memcmp(cd_params_data(p, i), cd_params_data(q, j),
                         (size_t)cd_params_numel_at(p, i) * sizeof(float)) == 0);
    }
    /* Same order as the original for a flat comparison of the state. */
    cd_params *r = make_params_from(g_model, NT);
    cd__adam *c = NULL;
    CD_ASSERT_OK(cd__adam_create(&c, r));
    CD_ASSERT_OK(cd__ckpt_load(path, r, c, 0));
    assert_same_state(p, a, r, c);
    /* Resuming gives the very same trajectory as not stopping. */
    train(p, a, 3, 2);
    train(r, c, 3, 2);
    assert_same_state(p, a, r, c);

    cd__adam_free(c);
    cd_params_free(r);
    cd_rng_free(rng2);
    cd_rng_free(rng);
    cd__adam_free(b);
    cd_params_free(q);
    cd__adam_free(a);
    cd_params_free(p);
}
END_TEST

START_TEST(ema_as_values_and_params_only)
{
    char path[512];
    tmp_file(path, sizeof path, "ema.cdm");
    cd_params *p = make_params_from(g_model, NT);
    fill_normal(p, 1);
    cd__adam *a = make_adam(p, 0.9);
    train(p, a, 2, 3);
    CD_ASSERT_OK(cd__ckpt_save(NULL, path, p, a));
    size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);

    cd_params *q = make_params_from(g_model, NT);
    CD_ASSERT_OK(cd__ckpt_load(path, q, NULL, CD__CKPT_EMA_AS_VALUES));
    ck_assert(memcmp(cd_params_data(q, -1), cd__adam_ema(a), bytes) == 0);
    CD_ASSERT_OK(cd__ckpt_load(path, q, NULL, 0));
    ck_assert(memcmp(cd_params_data(q, -1), cd_params_data(p, -1), bytes) == 0);
    CD_ASSERT_STATUS(cd__ckpt_load(path, q, NULL, 0x80), CD_ERR_INVALID_ARGUMENT);

    /* Saved without an optimiser: no Adam state, no EMA to ask for. */
    CD_ASSERT_OK(cd__ckpt_save(NULL, path, p, NULL));
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    ck_assert(!cd__ckpt_has_adam(ck) && !cd__ckpt_has_ema(ck));
    CD_ASSERT_STATUS(cd__ckpt_get_counters(ck, NULL, NULL), CD_ERR_NOT_FOUND);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_STATUS(cd__ckpt_get_rng(ck, "train", rng), CD_ERR_NOT_FOUND);
    cd_rng_free(rng);
    ck_assert_int_eq(cd__ckpt_config_count(ck), 0);
    cd__ckpt_free(ck);
    cd__adam_free(a);
    cd_params_free(p);
    expect_load_fails(path, g_model, NT, CD_ERR_NOT_FOUND, "optimiser", true);
    cd_params *r = make_params_from(g_model, NT);
    snapshot s = take(r, NULL);
    CD_ASSERT_STATUS(cd__ckpt_load(path, r, NULL, CD__CKPT_EMA_AS_VALUES), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("EMA");
    assert_untouched(&s, r, NULL);
    cd_params_free(r);
    cd_params_free(q);
}
END_TEST

START_TEST(config_misuse)
{
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, "T", 5));
    int64_t i, n;
    double d;
    const char *s;
    float f[2];
    CD_ASSERT_STATUS(cd__ckpt_get_f64(ck, "T", &d), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("int64");
    CD_ASSERT_STATUS(cd__ckpt_get_i64(ck, "missing", &i), CD_ERR_NOT_FOUND);
    CD_ASSERT_STATUS(cd__ckpt_get_str(ck, "T", &s), CD_ERR_FORMAT);
    CD_ASSERT_OK(cd__ckpt_set_f32_array(ck, "a", (float[]){1, 2, 3}, 3));
    CD_ASSERT_STATUS(cd__ckpt_get_f32_array(ck, "a", f, 2, &n), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__ckpt_get_i64_array(ck, "a", NULL, 0, &n), CD_ERR_FORMAT);
    CD_ASSERT_STATUS(cd__ckpt_set_f32_array(ck, "a", NULL, 3), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_set_f32_array(ck, "a", f, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__ckpt_set_i64(ck, "", 1), CD_ERR_INVALID_ARGUMENT);
    char longkey[200];
    memset(longkey, 'k', sizeof longkey);
    longkey[128] = '\0';
    CD_ASSERT_STATUS(cd__ckpt_set_i64(ck, longkey, 1), CD_ERR_INVALID_ARGUMENT);
    longkey[127] = '\0';
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, longkey, 1));
    CD_ASSERT_STATUS(cd__ckpt_set_i64(NULL, "x", 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_set_str(ck, "x", NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_set_meta(ck, NULL, "v"), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_get_meta(ck, "none", &s), CD_ERR_NOT_FOUND);
    CD_ASSERT_STATUS(cd__ckpt_meta_at(ck, 0, &s, &s), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__ckpt_set_counters(ck, -1, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__ckpt_set_rng(ck, "r", NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(cd__ckpt_config_key(ck, 9, NULL));
    /* A checkpoint that was not read holds no tensors to apply. */
    cd_params *p = make_params_from(g_model, NT);
    CD_ASSERT_STATUS(cd__ckpt_apply(ck, p, NULL, 0), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd__ckpt_save(ck, "", p, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_save(ck, "x", NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_params *other = make_params_from(g_model, NT);
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, other));
    CD_ASSERT_STATUS(cd__ckpt_save(ck, "x", p, a), CD_ERR_INVALID_ARGUMENT);
    cd__adam_free(a);
    cd_params_free(other);
    cd_params_free(p);
    cd__ckpt_free(ck);
    cd__ckpt_free(NULL);
}
END_TEST

/* ---- damaged files ------------------------------------------------------- */

START_TEST(truncated_files)
{
    char path[512], cut[600];
    tmp_file(path, sizeof path, "full.cdm");
    save_model(path, true);
    size_t n;
    uint8_t *full = read_bytes(path, &n);
    snprintf(cut, sizeof cut, "%s.cut", path);
    const size_t points[] = {0, 1, 5, 8, 30, HEADER - 1, HEADER, HEADER + 10, n / 2, n - 1};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        write_bytes(cut, full, points[i]);
        expect_load_fails(cut, g_model, NT, CD_ERR_FORMAT, points[i] ? "truncated" : "empty", true);
        CD_ASSERT_ERROR_MENTIONS("offset");
    }
    /* Trailing garbage is refused too. */
    uint8_t *longer = calloc(n + 3, 1);
    memcpy(longer, full, n);
    write_bytes(cut, longer, n + 3);
    expect_load_fails(cut, g_model, NT, CD_ERR_FORMAT, "unexpected bytes", true);
    free(longer);
    free(full);
}
END_TEST

START_TEST(flipped_bits)
{
    char path[512];
    tmp_file(path, sizeof path, "flip.cdm");
    save_model(path, true);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    /* A bit anywhere in the compressed body. */
    const size_t at[] = {HEADER, HEADER + (n - HEADER) / 2, n - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        b[at[i]] ^= 0x10;
        write_bytes(path, b, n);
        expect_load_fails(path, g_model, NT, CD_ERR_CHECKSUM, "CRC32", true);
        b[at[i]] ^= 0x10;
    }
    /* A bit in the header's sizes or CRCs. */
    const size_t hat[] = {20, 26, 33, 41, 45, 50};
    for (size_t i = 0; i < sizeof hat / sizeof hat[0]; i++) {
        b[hat[i]] ^= 0x01;
        write_bytes(path, b, n);
        expect_load_fails(path, g_model, NT, CD_ERR_CHECKSUM, NULL, true);
        b[hat[i]] ^= 0x01;
    }
    /* Both body CRCs right but a wrong uncompressed CRC in the header. */
    set32(b + 44, get32(b + 44) ^ 1u);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_CHECKSUM, "uncompressed", true);
    free(b);
}
END_TEST

START_TEST(wrong_magic_and_versions)
{
    char path[512];
    tmp_file(path, sizeof path, "magic.cdm");
    save_model(path, true);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    b[1] = 'X';
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "magic", true);
    b[1] = 'C';
    /* A newer format version, with a consistent header CRC. */
    set32(b + 12, 2);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_VERSION, "version 2", true);
    /* ...even if the rest of the header is garbage to this reader. */
    memset(b + 16, 0xEE, HEADER - 16);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_VERSION, NULL, true);
    set32(b + 12, 0);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "version 0", true);
    /* A big-endian byte-order mark, and a nonsense one. */
    set32(b + 12, 1);
    set32(b + 8, 0x04030201u);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_UNSUPPORTED, "big-endian", true);
    set32(b + 8, 0x12345678u);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "byte-order", true);
    /* Text that happens to be long enough. */
    write_bytes(path,
                (const uint8_t *)"this is not a checkpoint at all, but it is long enough "
                                 "to hold a header",
                72);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "magic", true);
    free(b);
}
END_TEST

START_TEST(lying_sizes_fail_fast)
{
    char path[512];
    tmp_file(path, sizeof path, "lie.cdm");
    save_model(path, true);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    uint64_t real = get64(b + 32);
    /* 1 TiB claimed, header CRC fixed so only the size check can catch it. */
    set64(b + 32, (uint64_t)1 << 40);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "claims a body", true);
    ck_assert_uint_le(cd__ckpt_last_alloc_bytes(), n);
    /* Just above deflate's best ratio for this file. */
    set64(b + 32, 1032 * (n - HEADER) + 1025);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "claims a body", true);
    ck_assert_uint_le(cd__ckpt_last_alloc_bytes(), n);
    /* Plausible but wrong sizes: inflate ends early or runs out. */
    set64(b + 32, real + 100);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "inflates to", true);
    set64(b + 32, real - 100);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "corrupt", true);
    /* A compressed size beyond the end of the file. */
    set64(b + 32, real);
    set64(b + 24, (uint64_t)1 << 50);
    fix_header_crc(b);
    write_bytes(path, b, n);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "truncated", true);
    ck_assert_uint_le(cd__ckpt_last_alloc_bytes(), n);
    free(b);
}
END_TEST

/* A large file is judged by its 56-byte header before anything of its size
 * is allocated or read: a non-checkpoint (4 GiB of zeros, sparse, so it
 * costs no disk) fails on its magic, a checkpoint header on a file longer
 * than any body can be on its size. */
START_TEST(large_files_are_judged_by_their_header)
{
    char path[512];
    tmp_file(path, sizeof path, "zeros.cdm");
    const off_t four_gib = (off_t)1 << 32;
    cd_test_write_file(path, "", 0);
    ck_assert_int_eq(truncate(path, four_gib), 0);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "magic", true);
    ck_assert_uint_eq(cd__ckpt_last_alloc_bytes(), 0);

    char real[512];
    tmp_file(real, sizeof real, "real.cdm");
    save_model(real, false);
    size_t n;
    uint8_t *b = read_bytes(real, &n);
    const uint64_t longest = (CD__CKPT_MAX_BODY + (CD__CKPT_MAX_BODY >> 8) + 4096) + 1;
    set64(b + 24, longest);
    fix_header_crc(b);
    write_bytes(path, b, HEADER);
    ck_assert_int_eq(truncate(path, (off_t)(HEADER + longest)), 0);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "larger than any", true);
    ck_assert_uint_eq(cd__ckpt_last_alloc_bytes(), 0);
    ck_assert_int_eq(unlink(path), 0);
    free(b);
}
END_TEST

/* Lying counts inside a valid (CRC-correct) body. */
START_TEST(lying_body_fields)
{
    char path[512];
    tmp_file(path, sizeof path, "body.cdm");
    save_model(path, true);
    size_t len;
    uint8_t *body = body_of(path, &len);
    /* The first section is CONF (empty): tag, flags, length 4, count 0.
     * The TENS section follows at offset 20. */
    ck_assert(memcmp(body, "CONF", 4) == 0 && memcmp(body + 20, "TENS", 4) == 0);
    uint8_t *b = malloc(len);
    struct {
        size_t at;
        int width;
        uint64_t value;
        const char *mention;
    } lies[] = {
        {8, 8, (uint64_t)1 << 60, "truncated"}, /* CONF length */
        {16, 4, 1000000, "entry count"},        /* CONF count */
        {36, 4, 0xFFFFFFFFu, "tensor count"},   /* TENS count */
        {40, 4, 0, "tensor name length"},       /* first name length */
        {40, 4, 500, "tensor name length"},
        {40 + 4 + 21 + 4, 4, 0, "rank"}, /* rank of the first tensor */
        {40 + 4 + 21 + 4, 4, 9, "rank"},
        {40 + 4 + 21 + 8, 8, (uint64_t)1 << 40, "dimension"}, /* its dim 0 */
        {40 + 4 + 21 + 8, 8, 1000, "tensor data"},
        {40 + 4 + 21, 4, 3, "dtype"},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(b, body, len);
        if (lies[i].width == 4)
            set32(b + lies[i].at, (uint32_t)lies[i].value);
        else
            set64(b + lies[i].at, lies[i].value);
        write_with_body(path, b, len);
        cd_status want = lies[i].at == 40 + 4 + 21 ? CD_ERR_UNSUPPORTED : CD_ERR_FORMAT;
        expect_load_fails(path, g_model, NT, want, lies[i].mention, true);
        CD_ASSERT_ERROR_MENTIONS("body offset");
    }
    /* Dimensions whose product wraps around 2^64. */
    memcpy(b, body, len);
    set64(b + 40 + 4 + 21 + 8, (uint64_t)1 << 32);
    set64(b + 40 + 4 + 21 + 16, (uint64_t)1 << 32);
    write_with_body(path, b, len);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "dimension 1", true);
    /* A duplicated tensor name: the third tensor renamed to the second's
     * (both names have 19 bytes). */
    memcpy(b, body, len);
    uint8_t *third = find_bytes(b, len, "time_embed.0.weight");
    ck_assert_ptr_nonnull(third);
    memcpy(third, "blocks.0.net.0.bias", 19);
    write_with_body(path, b, len);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "occurs twice", true);
    free(b);
    free(body);
}
END_TEST

START_TEST(unknown_sections)
{
    char path[512];
    tmp_file(path, sizeof path, "sections.cdm");
    save_model(path, true);
    /* An optional section from the future is skipped. */
    append_section(path, "XTRA", 0, "hello", 5);
    cd_params *p = make_params_from(g_model, NT);
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    CD_ASSERT_OK(cd__ckpt_load(path, p, a, 0));
    ck_assert_int_eq(cd__adam_steps(a), 3);
    cd__adam_free(a);
    cd_params_free(p);
    /* A required one is a newer format. */
    append_section(path, "NEWR", 1, "x", 1);
    expect_load_fails(path, g_model, NT, CD_ERR_VERSION, "NEWR", true);
    /* A known section twice is malformed. */
    save_model(path, true);
    uint8_t counters[16] = {0};
    append_section(path, "STEP", 0, counters, 16);
    p = make_params_from(g_model, NT);
    CD_ASSERT_OK(cd__ckpt_load(path, p, NULL, 0));
    cd_params_free(p);
    append_section(path, "STEP", 0, counters, 16);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "occurs twice", true);
    /* A known section too short for its fields. */
    save_model(path, true);
    append_section(path, "STEP", 0, counters, 12);
    expect_load_fails(path, g_model, NT, CD_ERR_FORMAT, "section STEP", true);
}
END_TEST

/* ---- model mismatches ---------------------------------------------------- */

START_TEST(shape_mismatch)
{
    char path[512];
    tmp_file(path, sizeof path, "shape.cdm");
    save_model(path, true);
    tdesc d[NT] = {g_model[0], g_model[1], g_model[2]};
    d[2].shape[0] = 5;
    d[2].shape[1] = 6; /* transposed */
    expect_load_fails(path, d, NT, CD_ERR_SHAPE, "time_embed.0.weight", true);
    CD_ASSERT_ERROR_MENTIONS("[6, 5]");
    d[2] = g_model[2];
    d[0].rank = 2;
    d[0].shape[0] = 4;
    d[0].shape[1] = 18;
    expect_load_fails(path, d, NT, CD_ERR_SHAPE, "blocks.0.net.0.weight", true);
}
END_TEST

START_TEST(name_mismatch_and_missing_tensors)
{
    char path[512];
    tmp_file(path, sizeof path, "names.cdm");
    save_model(path, true);
    tdesc d[NT + 1] = {g_model[0], g_model[1], g_model[2], {"extra.bias", 1, {3}}};
    d[1].name = "blocks.0.net.0.biases";
    expect_load_fails(path, d, NT, CD_ERR_NOT_FOUND, "blocks.0.net.0.biases", true);
    d[1] = g_model[1];
    /* The model has a tensor the file lacks. */
    expect_load_fails(path, d, NT + 1, CD_ERR_NOT_FOUND, "extra.bias", true);
    /* The file has a tensor the model lacks. */
    expect_load_fails(path, d, NT - 1, CD_ERR_NOT_FOUND, "time_embed.0.weight", true);
    expect_load_fails(path, d, NT - 1, CD_ERR_NOT_FOUND, "lacks", false);
}
END_TEST

/* ---- file system errors -------------------------------------------------- */

START_TEST(unreadable_and_unwritable_paths)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_params *p = make_params_from(g_model, NT);
    fill_normal(p, 1);
    CD_ASSERT_STATUS(cd__ckpt_save(NULL, "/nonexistent-colddiff/dir/m.cdm", p, NULL),
                     CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("/nonexistent-colddiff/dir/m.cdm");
    cd_test_path(path, sizeof path, dir, "sub");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    CD_ASSERT_STATUS(cd__ckpt_save(NULL, path, p, NULL), CD_ERR_IO);
    CD_ASSERT_ERROR_MENTIONS("sub");
    /* Reading: a missing file, a folder. */
    expect_load_fails("/nonexistent-colddiff/m.cdm", g_model, NT, CD_ERR_NOT_FOUND, "nonexistent",
                      true);
    expect_load_fails(path, g_model, NT, CD_ERR_IO, "sub", true);
    /* A FIFO without a writer is refused at once, not waited on. */
    cd_test_path(path, sizeof path, dir, "fifo.cdm");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    expect_load_fails(path, g_model, NT, CD_ERR_IO, "FIFO", true);
    CD_ASSERT_ERROR_MENTIONS("fifo.cdm");
    cd__ckpt *ck = (cd__ckpt *)1;
    CD_ASSERT_STATUS(cd__ckpt_read(&ck, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(ck);
    CD_ASSERT_STATUS(cd__ckpt_read(&ck, ""), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__ckpt_read(NULL, path), CD_ERR_INVALID_ARGUMENT);
    cd_params_free(p);
}
END_TEST

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* A full disk (a file-size limit) during a save leaves the old file. */
START_TEST(failed_save_keeps_the_old_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "best.cdm");
    save_model(path, true);
    size_t n;
    uint8_t *before = read_bytes(path, &n);

    tdesc big[1] = {{"big.weight", 2, {100, 100}}};
    cd_params *p = make_params_from(big, 1);
    fill_normal(p, 4);
    struct rlimit old, lim = {4096, 4096};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim.rlim_max = old.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cd_status st = cd__ckpt_save(NULL, path, p, NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cd_last_error());
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    ck_assert_msg(st == CD_ERR_IO, "save returned %s (%s)", cd_status_string(st), msg);
    ck_assert_msg(strstr(msg, "unchanged") != NULL, "message: %s", msg);

    size_t m;
    uint8_t *after = read_bytes(path, &m);
    ck_assert_uint_eq(n, m);
    ck_assert(memcmp(before, after, n) == 0);
    ck_assert_int_eq(count_entries(dir), 1); /* no temporary left */
    cd_params *q = make_params_from(g_model, NT);
    CD_ASSERT_OK(cd__ckpt_load(path, q, NULL, 0));
    free(before);
    free(after);
    cd_params_free(q);
    cd_params_free(p);
}
END_TEST

START_TEST(empty_parameter_set)
{
    char path[512];
    tmp_file(path, sizeof path, "empty.cdm");
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    CD_ASSERT_OK(cd__ckpt_set_str(ck, "kind", "config only"));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, p, NULL));
    cd__ckpt_free(ck);
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    const char *s;
    CD_ASSERT_OK(cd__ckpt_get_str(ck, "kind", &s));
    ck_assert_str_eq(s, "config only");
    CD_ASSERT_OK(cd__ckpt_apply(ck, p, NULL, 0));
    cd__ckpt_free(ck);
    cd_params_free(p);
}
END_TEST

/* A name the file chose reaches the message, but never as a second line. */
START_TEST(file_strings_stay_on_one_line)
{
    char path[512];
    tmp_file(path, sizeof path, "newline.cdm");
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    CD_ASSERT_OK(cd_params_add(p, "w", 1, (int64_t[]){2}));
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    CD_ASSERT_OK(cd__ckpt_set_str(ck, "decoder.type", "cnn\ncolddiff: all good\x1b[0m"));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, p, NULL));
    cd__ckpt_free(ck);
    cd_decoder *d = NULL;
    CD_ASSERT_STATUS(cd_decoder_load(&d, path), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("decoder.type 'cnn?colddiff: all good?[0m'");
    for (const char *c = cd_last_error(); *c; c++)
        ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f, "control byte 0x%02x in '%s'",
                      (unsigned)(unsigned char)*c, cd_last_error());
    cd_params_free(p);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("round_trip");
    tcase_add_test(tc, round_trip_restores_everything);
    tcase_add_test(tc, ema_as_values_and_params_only);
    tcase_add_test(tc, config_misuse);
    tcase_add_test(tc, empty_parameter_set);
    tcase_add_test(tc, file_strings_stay_on_one_line);
    suite_add_tcase(s, tc);
    tc = tcase_create("damaged");
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, flipped_bits);
    tcase_add_test(tc, wrong_magic_and_versions);
    tcase_add_test(tc, lying_sizes_fail_fast);
    tcase_add_test(tc, large_files_are_judged_by_their_header);
    tcase_add_test(tc, lying_body_fields);
    tcase_add_test(tc, unknown_sections);
    suite_add_tcase(s, tc);
    tc = tcase_create("mismatch");
    tcase_add_test(tc, shape_mismatch);
    tcase_add_test(tc, name_mismatch_and_missing_tensors);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, unreadable_and_unwritable_paths);
    tcase_add_test(tc, failed_save_keeps_the_old_file);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
