/*
 * fuzz_ckpt.c - every checkpoint loader: cd_decoder_load, cd_trainer_load,
 * cd_model_load, cd_classifier_load, and cd__ckpt_read with the degradation and the
 * generic getters behind them.
 *
 * Each input is tried twice. First as a whole file, which exercises the
 * header, size and checksum checks. Then as an uncompressed body, which
 * the harness wraps in a valid header with the right lengths and CRCs:
 * without that, nearly every mutation would stop at a checksum and the
 * section parser and the loaders' configuration checks would go unfuzzed.
 */
#include "diffusion/diffusion.h"
#include "fuzz_util.h"
#include "nn/nn.h"

#include <zlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_files_init();
    return 0;
}

#define HEADER 56

static void le32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static void le64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

/* docs/checkpoint-format.md's header around a zlib stream of body. */
static const char *wrap_body(int slot, const uint8_t *body, size_t n)
{
    uLongf cap = compressBound((uLong)n);
    uint8_t *file = malloc(HEADER + cap);
    if (!file) fuzz_die("wrap_body", "out of memory");
    if (compress2(file + HEADER, &cap, body, (uLong)n, 1) != Z_OK)
        fuzz_die("wrap_body", "zlib failed");
    static const uint8_t magic[8] = {0x89, 'C', 'D', 'C', 'K', 'P', 'T', '\n'};
    memset(file, 0, HEADER);
    memcpy(file, magic, 8);
    le32(file + 8, 0x01020304u);
    le32(file + 12, 1); /* format version */
    le32(file + 16, 1); /* zlib */
    le64(file + 24, cap);
    le64(file + 32, n);
    le32(file + 40, (uint32_t)crc32(0, file + HEADER, (uInt)cap));
    le32(file + 44, (uint32_t)crc32(0, body, (uInt)n));
    le32(file + 48, (uint32_t)crc32(0, file, 48));
    const char *path = fuzz_write(slot, file, HEADER + cap);
    free(file);
    return path;
}

static void expect_null(const void *out, const char *call)
{
    if (out) fuzz_die(call, "failed but set *out");
}

/* Read every configuration entry through its typed getter. */
static void walk_config(const cd__ckpt *ck)
{
    for (int64_t i = 0; i < cd__ckpt_config_count(ck); i++) {
        cd__ckpt_type type;
        const char *key = cd__ckpt_config_key(ck, i, &type);
        if (!key) fuzz_die("cd__ckpt_config_key", "no key inside the count");
        int64_t n = 0, v = 0;
        double d = 0;
        const char *s = NULL;
        switch (type) {
        case CD__CKPT_INT64: cd__ckpt_get_i64(ck, key, &v); break;
        case CD__CKPT_FLOAT64: cd__ckpt_get_f64(ck, key, &d); break;
        case CD__CKPT_STRING: cd__ckpt_get_str(ck, key, &s); break;
        case CD__CKPT_FLOAT32_ARRAY:
            if (cd__ckpt_get_f32_array(ck, key, NULL, 0, &n) == CD_OK) {
                float *a = malloc((size_t)(n ? n : 1) * sizeof *a);
                if (a) cd__ckpt_get_f32_array(ck, key, a, n, &n);
                free(a);
            }
            break;
        case CD__CKPT_INT64_ARRAY:
            if (cd__ckpt_get_i64_array(ck, key, NULL, 0, &n) == CD_OK) {
                int64_t *a = malloc((size_t)(n ? n : 1) * sizeof *a);
                if (a) cd__ckpt_get_i64_array(ck, key, a, n, &n);
                free(a);
            }
            break;
        default: fuzz_die("cd__ckpt_config_key", "an entry of an unknown type");
        }
    }
    for (int64_t i = 0; i < cd__ckpt_meta_count(ck); i++) {
        const char *key = NULL, *value = NULL;
        if (cd__ckpt_meta_at(ck, i, &key, &value) != CD_OK)
            fuzz_die("cd__ckpt_meta_at", "failed inside the count");
    }
}

static void load_generic(const char *path, cd_rng *rng)
{
    cd__ckpt *ck = NULL;
    cd_status st = cd__ckpt_read(&ck, path);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd__ckpt_read");
        expect_null(ck, "cd__ckpt_read");
        return;
    }
    walk_config(ck);
    int64_t step = 0, epoch = 0;
    cd__ckpt_get_counters(ck, &step, &epoch);
    cd__ckpt_get_rng(ck, "train", rng);
    cd__ckpt_get_rng(ck, "epoch", rng);
    cd_degradation *deg = NULL;
    st = cd__degradation_from_ckpt(ck, &deg);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd__degradation_from_ckpt");
        expect_null(deg, "cd__degradation_from_ckpt");
    }
    cd_degradation_free(deg);
    cd__ckpt_free(ck);
}

static void load_all(const char *path)
{
    cd_rng *rng = NULL;
    if (cd_rng_create(&rng, 1) != CD_OK) fuzz_die("cd_rng_create", cd_last_error());

    cd_decoder *dec = NULL;
    cd_status st = cd_decoder_load(&dec, path);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd_decoder_load");
        expect_null(dec, "cd_decoder_load");
    } else if (cd_decoder_param_count(dec) < 1) {
        fuzz_die("cd_decoder_load", "a decoder without parameters");
    }
    cd_decoder_free(dec);

    cd_trainer *tr = NULL;
    st = cd_trainer_load(&tr, path, rng);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd_trainer_load");
        expect_null(tr, "cd_trainer_load");
    } else {
        double v = 0;
        if (cd_trainer_progress(tr, CD_PROGRESS_EPOCH, &v) != CD_OK)
            fuzz_die("cd_trainer_progress", cd_last_error());
        cd_trainer_copy_ema(tr);
    }
    cd_trainer_free(tr);

    cd_degradation *deg = NULL;
    st = cd_model_load(path, &dec, &deg);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd_model_load");
        expect_null(dec, "cd_model_load");
        expect_null(deg, "cd_model_load");
    } else if (cd_decoder_trained_T(dec) != cd_degradation_T(deg)) {
        fuzz_die("cd_model_load", "a decoder trained for another T than its degradation's");
    }
    cd_decoder_free(dec);
    cd_degradation_free(deg);

    cd_classifier *cls = NULL;
    st = cd_classifier_load(&cls, path);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd_classifier_load");
        expect_null(cls, "cd_classifier_load");
    }
    cd_classifier_free(cls);

    load_generic(path, rng);
    cd_rng_free(rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_all(fuzz_write(0, data, size));
    load_all(wrap_body(1, data, size));
    return 0;
}
