/* fixture.c - see fixture.h. */
#include "fixture.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_VERSION 1
#define FIXTURE_MAX_RANK 8

typedef struct {
    char *name;
    int32_t rank;
    int64_t dims[FIXTURE_MAX_RANK];
    int64_t numel;
    float *data;
} entry;

struct cd_fixture {
    char path[512];
    uint32_t count;
    entry *e;
};

static void read_exact(FILE *fp, void *buf, size_t n, const char *path)
{
    ck_assert_msg(fread(buf, 1, n, fp) == n, "fixture %s is truncated at byte %ld", path,
                  ftell(fp));
}

static uint32_t read_u32(FILE *fp, const char *path)
{
    uint8_t b[4];
    read_exact(fp, b, 4, path);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int64_t read_i64(FILE *fp, const char *path)
{
    uint64_t lo = read_u32(fp, path), hi = read_u32(fp, path);
    return (int64_t)(lo | hi << 32);
}

static float read_f32(FILE *fp, const char *path)
{
    uint32_t u = read_u32(fp, path);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

cd_fixture *cd_fixture_load(const char *name)
{
    cd_fixture *f = calloc(1, sizeof *f);
#ifdef CD_TEST_REFERENCE_DIR
    snprintf(f->path, sizeof f->path, "%s/%s", CD_TEST_REFERENCE_DIR, name);
#else
    snprintf(f->path, sizeof f->path, "tests/reference/%s", name);
#endif
    FILE *fp = fopen(f->path, "rb");
    ck_assert_msg(fp != NULL,
                  "cannot open fixture %s (regenerate with "
                  "tests/reference/make_fixtures.py)",
                  f->path);
    char magic[4];
    read_exact(fp, magic, 4, f->path);
    ck_assert_msg(memcmp(magic, "CDFX", 4) == 0, "%s is not a fixture", f->path);
    uint32_t version = read_u32(fp, f->path);
    ck_assert_msg(version == FIXTURE_VERSION, "%s has fixture version %u, expected %d", f->path,
                  version, FIXTURE_VERSION);
    f->count = read_u32(fp, f->path);
    ck_assert_msg(f->count < 100000, "%s: implausible tensor count", f->path);
    f->e = calloc(f->count, sizeof *f->e);
    for (uint32_t i = 0; i < f->count; i++) {
        entry *e = &f->e[i];
        uint32_t len = read_u32(fp, f->path);
        ck_assert_msg(len > 0 && len < 4096, "%s: bad name length", f->path);
        e->name = calloc(len + 1, 1);
        read_exact(fp, e->name, len, f->path);
        e->rank = (int32_t)read_u32(fp, f->path);
        ck_assert_msg(e->rank >= 0 && e->rank <= FIXTURE_MAX_RANK, "%s: bad rank", f->path);
        e->numel = 1;
        for (int32_t d = 0; d < e->rank; d++) {
            e->dims[d] = read_i64(fp, f->path);
            ck_assert_msg(e->dims[d] >= 0 && e->dims[d] < (1 << 28), "%s: bad dim", f->path);
            e->numel *= e->dims[d];
        }
        ck_assert_msg(e->numel < (1 << 28), "%s: tensor too large", f->path);
        e->data = malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
        for (int64_t k = 0; k < e->numel; k++) e->data[k] = read_f32(fp, f->path);
    }
    char extra;
    ck_assert_msg(fread(&extra, 1, 1, fp) == 0, "%s has trailing bytes", f->path);
    fclose(fp);
    return f;
}

void cd_fixture_free(cd_fixture *f)
{
    if (!f) return;
    for (uint32_t i = 0; i < f->count; i++) {
        free(f->e[i].name);
        free(f->e[i].data);
    }
    free(f->e);
    free(f);
}

static const entry *find(const cd_fixture *f, const char *name)
{
    for (uint32_t i = 0; i < f->count; i++)
        if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
    return NULL;
}

int cd_fixture_has(const cd_fixture *f, const char *name) { return find(f, name) != NULL; }

const float *cd_fixture_get(const cd_fixture *f, const char *name, int64_t *numel)
{
    const entry *e = find(f, name);
    ck_assert_msg(e != NULL, "fixture %s has no tensor '%s'", f->path, name);
    if (numel) *numel = e->numel;
    return e->data;
}

int64_t cd_fixture_shape(const cd_fixture *f, const char *name, int64_t *dims)
{
    const entry *e = find(f, name);
    ck_assert_msg(e != NULL, "fixture %s has no tensor '%s'", f->path, name);
    memcpy(dims, e->dims, sizeof e->dims);
    return e->rank;
}

void cd_fixture_compare(const char *what, const float *got, const float *want, int64_t n,
                        double atol, double rtol)
{
    double max_abs = 0.0, max_rel = 0.0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double rel = d / (fabs((double)want[i]) + 1e-12);
        if (!(d <= max_abs)) max_abs = d; /* NaN propagates */
        if (rel > max_rel && fabs(want[i]) > atol) max_rel = rel;
        if (bad < 0 && !(d <= atol + rtol * fabs((double)want[i]))) bad = i;
    }
    printf("parity %-40s n=%-8lld max abs %.3e  max rel %.3e\n", what, (long long)n, max_abs,
           max_rel);
    ck_assert_msg(bad < 0,
                  "%s: element %lld is %.9g, PyTorch gives %.9g (atol %.1e, "
                  "rtol %.1e; max abs error %.3e)",
                  what, (long long)bad, bad >= 0 ? got[bad] : 0.0f, bad >= 0 ? want[bad] : 0.0f,
                  atol, rtol, max_abs);
}
