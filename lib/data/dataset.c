/*
 * dataset.c - image datasets in memory: IDX/MNIST loading, the train /
 * validation split, epoch shuffles and mini-batch filling.
 *
 * Pixels stay as the files' bytes (60,000 MNIST images are 47 MB as uint8,
 * four times that as float) and become floats only when a batch is filled.
 * Each split is a list of indices into its pool (the training pool for
 * TRAIN and VAL, the test pool for TEST) in natural order, plus the same
 * indices in the current epoch order.
 */
#define _POSIX_C_SOURCE 200809L

#include "dataset.h"
#include "idx.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct pool {
    cd__idx images; /* n x H x W bytes */
    cd__idx labels; /* n bytes */
    int64_t n;
} pool;

typedef struct split_view {
    int64_t count;
    int64_t *members; /* pool indices, natural order; capacity = pool size */
    int64_t *epoch;   /* the same indices in epoch order */
} split_view;

struct cd_dataset {
    int64_t height, width, channels, pixels; /* pixels = C*H*W per image */
    pool train_pool, test_pool;
    split_view splits[3];
    char **class_names; /* n_classes owned strings; label k is class k */
    int64_t n_classes;
    /* lut[p] = fl32(fl32(p / 255) - 0.5): precomputed so every batch
     * converts exactly as docs/models.md, Data, states. */
    float lut[256];
};

static const char *const split_names[3] = {"train", "val", "test"};

/* ---- helpers -------------------------------------------------------------- */

static const pool *pool_of(const cd_dataset *ds, cd_split split)
{
    return split == CD_SPLIT_TEST ? &ds->test_pool : &ds->train_pool;
}

static cd_status get_view(const cd_dataset *ds, cd_split split, const char *fn,
                          const split_view **out)
{
    CD__CHECK_NOT_NULL(ds, fn);
    if ((int)split < CD_SPLIT_TRAIN || (int)split > CD_SPLIT_TEST)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: split = %d is not CD_SPLIT_TRAIN, _VAL or _TEST", fn, (int)split);
    *out = &ds->splits[split];
    return CD_OK;
}

static void identity(int64_t *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) a[i] = i;
}

/*
 * Fisher-Yates, stated exactly so every platform gets the same order:
 * for i = n-1 down to 1, draw j with one cd_rng_int_range(rng, &j, 1, 0, i)
 * call (a fresh Philox block per call, see docs/rng.md) and swap a[i], a[j].
 */
static cd_status fisher_yates(int64_t *a, int64_t n, cd_rng *rng)
{
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = 0;
        CD__TRY(cd_rng_int_range(rng, &j, 1, 0, i));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return CD_OK;
}

static void reset_epoch(split_view *v)
{
    memcpy(v->epoch, v->members, (size_t)v->count * sizeof *v->epoch);
}

static void shape_string(char *buf, size_t cap, const cd_tensor *t)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < t->rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? " x " : "", t->shape[i]);
}

/* images must be N x C x H x W, or N x H x W when C is 1; want_n < 0 takes
 * any N. On success *n_out is N. */
static cd_status check_images(const cd_dataset *ds, const char *fn, const cd_tensor *t,
                              int64_t want_n, int64_t *n_out)
{
    if (!t) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: tensor 'images' is NULL", fn);
    const int64_t *s = t->shape;
    bool n_ok = want_n < 0 || s[0] == want_n;
    bool ok = n_ok &&
              ((t->rank == 4 && s[1] == ds->channels && s[2] == ds->height && s[3] == ds->width) ||
               (t->rank == 3 && ds->channels == 1 && s[1] == ds->height && s[2] == ds->width));
    if (ok) {
        *n_out = s[0];
        return CD_OK;
    }
    char got[160], n[24];
    shape_string(got, sizeof got, t);
    if (want_n < 0)
        snprintf(n, sizeof n, "N");
    else
        snprintf(n, sizeof n, "%" PRId64, want_n);
    if (ds->channels == 1)
        return cd__error(CD_ERR_SHAPE,
                         "%s: tensor 'images' must be %s x 1 x %" PRId64 " x %" PRId64
                         " or %s x %" PRId64 " x %" PRId64 ", got %s",
                         fn, n, ds->height, ds->width, n, ds->height, ds->width, got);
    return cd__error(CD_ERR_SHAPE,
                     "%s: tensor 'images' must be %s x %" PRId64 " x %" PRId64 " x %" PRId64
                     ", got %s",
                     fn, n, ds->channels, ds->height, ds->width, got);
}

static cd_status check_labels(const char *fn, const cd_tensor *labels, int64_t n)
{
    if (!labels) return CD_OK;
    int64_t shape[1] = {n};
    return cd__tensor_expect(labels, fn, "labels", 1, shape);
}

static void copy_row(const cd_dataset *ds, const pool *p, int64_t index, float *img, float *label)
{
    const uint8_t *src = p->images.data + (size_t)index * (size_t)ds->pixels;
    for (int64_t k = 0; k < ds->pixels; k++) img[k] = ds->lut[src[k]];
    if (label) *label = (float)p->labels.data[index];
}

/* ---- loading -------------------------------------------------------------- */

static cd_status check_label_values(const pool *p, const char *path, unsigned max_label)
{
    for (int64_t i = 0; i < p->n; i++)
        if (p->labels.data[i] > max_label)
            return cd__error(CD_ERR_FORMAT,
                             "IDX file '%s'%s: label %u at offset %" PRIu64 " (item %" PRId64
                             ") is outside 0..%u",
                             path, p->labels.gzip ? " (gzip)" : "", (unsigned)p->labels.data[i],
                             p->labels.header_bytes + (uint64_t)i, i, max_label);
    return CD_OK;
}

static cd_status load_pool(pool *p, const char *images, const char *labels, unsigned max_label)
{
    CD__TRY(cd__idx_load(images, 3, &p->images));
    CD__TRY(cd__idx_load(labels, 1, &p->labels));
    if (p->images.dims[0] != p->labels.dims[0])
        return cd__error(CD_ERR_SHAPE,
                         "IDX files disagree: '%s' holds %" PRIu32 " images but '%s' "
                         "holds %" PRIu32 " labels",
                         images, p->images.dims[0], labels, p->labels.dims[0]);
    p->n = p->images.dims[0];
    return check_label_values(p, labels, max_label);
}

static cd_status alloc_view(split_view *v, int64_t capacity)
{
    v->members = cd__calloc((size_t)capacity, sizeof *v->members, "dataset split");
    v->epoch = cd__calloc((size_t)capacity, sizeof *v->epoch, "dataset split");
    return v->members && v->epoch ? CD_OK : cd_last_status();
}

/* Right after loading: the whole pool trains, nothing validates. */
static cd_status init_splits(cd_dataset *ds)
{
    for (int s = 0; s < 3; s++) CD__TRY(alloc_view(&ds->splits[s], pool_of(ds, (cd_split)s)->n));
    ds->splits[CD_SPLIT_TRAIN].count = ds->train_pool.n;
    ds->splits[CD_SPLIT_TEST].count = ds->test_pool.n;
    for (int s = 0; s < 3; s++) {
        identity(ds->splits[s].members, ds->splits[s].count);
        reset_epoch(&ds->splits[s]);
    }
    return CD_OK;
}

static void init_geometry(cd_dataset *ds, int64_t channels, int64_t height, int64_t width)
{
    ds->channels = channels;
    ds->height = height;
    ds->width = width;
    ds->pixels = channels * height * width;
    for (int p = 0; p < 256; p++) ds->lut[p] = (float)((float)p / 255.0f) - 0.5f;
}

/* paths: train images, train labels, then test images and labels or NULLs. */
static cd_status build(cd_dataset **out, const char *const paths[4], unsigned max_label)
{
    cd_dataset *ds = cd__calloc(1, sizeof *ds, "dataset");
    if (!ds) return cd_last_status();
    cd_status st = load_pool(&ds->train_pool, paths[0], paths[1], max_label);
    if (st == CD_OK && paths[2]) st = load_pool(&ds->test_pool, paths[2], paths[3], max_label);
    if (st == CD_OK && paths[2] &&
        (ds->test_pool.images.dims[1] != ds->train_pool.images.dims[1] ||
         ds->test_pool.images.dims[2] != ds->train_pool.images.dims[2]))
        st = cd__error(CD_ERR_SHAPE,
                       "test images '%s' are %" PRIu32 " x %" PRIu32
                       " but training images '%s' are %" PRIu32 " x %" PRIu32,
                       paths[2], ds->test_pool.images.dims[1], ds->test_pool.images.dims[2],
                       paths[0], ds->train_pool.images.dims[1], ds->train_pool.images.dims[2]);
    if (st == CD_OK) st = init_splits(ds);
    if (st != CD_OK) {
        cd_dataset_free(ds);
        return st;
    }
    init_geometry(ds, 1, ds->train_pool.images.dims[1], ds->train_pool.images.dims[2]);
    *out = ds;
    return CD_OK;
}

static void free_names(char **names, int64_t n)
{
    for (int64_t k = 0; names && k < n; k++) cd__free(names[k]);
    cd__free(names);
}

cd_status cd__dataset_adopt(cd_dataset **out, uint8_t *pixels, uint8_t *labels, int64_t n,
                            const int64_t chw[3], char **names, int64_t n_names)
{
    cd_dataset *ds = cd__calloc(1, sizeof *ds, "dataset");
    if (!ds) {
        cd_status st = cd_last_status();
        cd__free(pixels);
        cd__free(labels);
        free_names(names, n_names);
        return st;
    }
    ds->train_pool.images.data = pixels;
    ds->train_pool.labels.data = labels;
    ds->train_pool.n = n;
    ds->class_names = names;
    ds->n_classes = n_names;
    cd_status st = init_splits(ds);
    if (st != CD_OK) {
        cd_dataset_free(ds);
        return st;
    }
    init_geometry(ds, chw[0], chw[1], chw[2]);
    *out = ds;
    return CD_OK;
}

/* MNIST's labels are the digits themselves. */
static cd_status name_digits(cd_dataset *ds)
{
    ds->class_names = cd__calloc(10, sizeof *ds->class_names, "class names");
    if (!ds->class_names) return cd_last_status();
    ds->n_classes = 10;
    for (int k = 0; k < 10; k++) {
        const char digit[2] = {(char)('0' + k), '\0'};
        if (!(ds->class_names[k] = cd__strdup(digit, "class names"))) return cd_last_status();
    }
    return CD_OK;
}

cd_status cd_dataset_load_idx(cd_dataset **out, const char *train_images, const char *train_labels,
                              const char *test_images, const char *test_labels)
{
    static const char fn[] = "cd_dataset_load_idx";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(train_images, fn);
    CD__CHECK_NOT_NULL(train_labels, fn);
    CD__CHECK_ARG((test_images == NULL) == (test_labels == NULL), fn,
                  "test_images and test_labels must both be set or both be NULL");
    const char *const paths[4] = {train_images, train_labels, test_images, test_labels};
    return build(out, paths, 255);
}

static const char *const mnist_names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static bool path_exists(const char *path)
{
    struct stat st;
    /* Anything but "no such file" counts: the loader then reports the real
     * problem (permissions, a directory) with its own message. */
    return stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR);
}

/* Point *path at dir/name, or dir/name.gz if only that exists. buf holds
 * both spellings back to back. */
static cd_status find_mnist_file(const char *dir, const char *name, char **buf, const char **path)
{
    size_t cap = strlen(dir) + strlen(name) + 8;
    *buf = cd__calloc(2, cap, "MNIST path");
    if (!*buf) return cd_last_status();
    char *raw = *buf, *gz = *buf + cap;
    snprintf(raw, cap, "%s/%s", dir, name);
    snprintf(gz, cap, "%s/%s.gz", dir, name);
    if (path_exists(raw))
        *path = raw;
    else if (path_exists(gz))
        *path = gz;
    else {
        struct stat st;
        bool no_dir = stat(dir, &st) != 0;
        return cd__error(CD_ERR_NOT_FOUND,
                         "cd_dataset_load_mnist: %s not found: looked for '%s' and '%s'%s", name,
                         raw, gz, no_dir ? " (the folder does not exist)" : "");
    }
    return CD_OK;
}

cd_status cd_dataset_load_mnist(cd_dataset **out, const char *dir)
{
    static const char fn[] = "cd_dataset_load_mnist";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(dir, fn);
    char *bufs[4] = {NULL, NULL, NULL, NULL};
    const char *paths[4] = {NULL, NULL, NULL, NULL};
    cd_status st = CD_OK;
    for (int i = 0; i < 4 && st == CD_OK; i++)
        st = find_mnist_file(dir, mnist_names[i], &bufs[i], &paths[i]);
    if (st == CD_OK) st = build(out, paths, 9);
    if (st == CD_OK) st = name_digits(*out);
    if (st != CD_OK) {
        cd_dataset_free(*out);
        *out = NULL;
    }
    for (int i = 0; i < 4; i++) cd__free(bufs[i]);
    return st;
}

void cd_dataset_free(cd_dataset *ds)
{
    if (!ds) return;
    cd__idx_free(&ds->train_pool.images);
    cd__idx_free(&ds->train_pool.labels);
    cd__idx_free(&ds->test_pool.images);
    cd__idx_free(&ds->test_pool.labels);
    for (int s = 0; s < 3; s++) {
        cd__free(ds->splits[s].members);
        cd__free(ds->splits[s].epoch);
    }
    free_names(ds->class_names, ds->n_classes);
    cd__free(ds);
}

/* ---- splits --------------------------------------------------------------- */

/* Make order[0..n_train) the train split in that order and the rest of
 * order the validation split. */
static void commit_split(cd_dataset *ds, const int64_t *order, int64_t n_train)
{
    split_view *tr = &ds->splits[CD_SPLIT_TRAIN], *va = &ds->splits[CD_SPLIT_VAL];
    tr->count = n_train;
    va->count = ds->train_pool.n - n_train;
    memcpy(tr->members, order, (size_t)tr->count * sizeof *order);
    memcpy(va->members, order + n_train, (size_t)va->count * sizeof *order);
    reset_epoch(tr);
    reset_epoch(va);
}

cd_status cd_dataset_split(cd_dataset *ds, double val_fraction, uint64_t seed)
{
    static const char fn[] = "cd_dataset_split";
    CD__CHECK_NOT_NULL(ds, fn);
    /* Written so that NaN fails too. */
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return cd__error(CD_ERR_RANGE, "%s: val_fraction = %g is outside [0, 1)", fn, val_fraction);
    int64_t n = ds->train_pool.n;
    int64_t n_train = (int64_t)round((double)n * (1.0 - val_fraction));
    if (n_train > n) n_train = n;

    int64_t *perm = cd__calloc((size_t)n, sizeof *perm, "split permutation");
    if (!perm) return cd_last_status();
    cd_rng *rng = NULL;
    cd_status st = cd_rng_create(&rng, seed);
    if (st == CD_OK) {
        identity(perm, n);
        st = fisher_yates(perm, n, rng);
    }
    if (st == CD_OK) commit_split(ds, perm, n_train);
    cd_rng_free(rng);
    cd__free(perm);
    return st;
}

typedef struct index_file {
    const char *path;
    FILE *fp;
    int64_t line;
    int64_t n; /* valid indices are 0..n-1 */
} index_file;

static cd_status junk(const index_file *f, int c)
{
    if (c == '\n' || c == EOF)
        return cd__error(CD_ERR_FORMAT, "split file '%s' line %" PRId64 ": empty line", f->path,
                         f->line);
    if (c >= 0x20 && c < 0x7f)
        return cd__error(CD_ERR_FORMAT,
                         "split file '%s' line %" PRId64
                         ": expected a non-negative integer index, found '%c'",
                         f->path, f->line, c);
    return cd__error(CD_ERR_FORMAT,
                     "split file '%s' line %" PRId64
                     ": expected a non-negative integer index, found byte 0x%02x",
                     f->path, f->line, (unsigned)c);
}

static int skip_blanks(FILE *fp)
{
    int c = getc(fp);
    while (c == ' ' || c == '\t' || c == '\r') c = getc(fp);
    return c;
}

/* Read the next line's index into *value; *eof is set (and nothing read)
 * at the end of the file. Blanks around the number are allowed. */
static cd_status next_index(index_file *f, int64_t *value, bool *eof)
{
    int c = getc(f->fp);
    *eof = c == EOF && !ferror(f->fp);
    if (*eof) return CD_OK;
    f->line++;
    if (c == ' ' || c == '\t') c = skip_blanks(f->fp);
    if (c == '-')
        return cd__error(CD_ERR_FORMAT, "split file '%s' line %" PRId64 ": negative index", f->path,
                         f->line);
    if (c < '0' || c > '9') return ferror(f->fp) ? CD_ERR_IO : junk(f, c);
    /* Keep the digits as text so an absurd index is quoted as written. */
    char digits[24];
    size_t nd = 0;
    int64_t v = 0;
    for (; c >= '0' && c <= '9'; c = getc(f->fp)) {
        if (v <= f->n) v = v * 10 + (c - '0'); /* saturates just above n */
        if (nd + 1 < sizeof digits) digits[nd++] = (char)c;
    }
    digits[nd] = '\0';
    if (c == ' ' || c == '\t' || c == '\r') c = skip_blanks(f->fp);
    if (c != '\n' && c != EOF) return junk(f, c);
    if (v >= f->n)
        return cd__error(CD_ERR_FORMAT,
                         "split file '%s' line %" PRId64 ": index %s%s is outside the "
                         "training pool 0..%" PRId64,
                         f->path, f->line, digits, nd + 1 == sizeof digits ? "..." : "", f->n - 1);
    *value = v;
    return CD_OK;
}

/* Parse the whole file into order[0..*count); line_of[i] remembers where
 * index i appeared (0 = nowhere) to name both lines of a duplicate. */
static cd_status parse_index_file(index_file *f, int64_t *order, int64_t *line_of, int64_t *count)
{
    *count = 0;
    for (;;) {
        int64_t v = 0;
        bool eof = false;
        cd_status st = next_index(f, &v, &eof);
        if (st == CD_ERR_IO || (st == CD_OK && ferror(f->fp)))
            return cd__error(CD_ERR_IO, "split file '%s' line %" PRId64 ": read failed: %s",
                             f->path, f->line, strerror(errno));
        CD__TRY(st);
        if (eof) break;
        if (line_of[v])
            return cd__error(CD_ERR_FORMAT,
                             "split file '%s' line %" PRId64 ": index %" PRId64
                             " already appeared on line %" PRId64,
                             f->path, f->line, v, line_of[v]);
        line_of[v] = f->line;
        order[(*count)++] = v;
    }
    if (*count == 0) return cd__error(CD_ERR_FORMAT, "split file '%s' holds no indices", f->path);
    return CD_OK;
}

cd_status cd_dataset_split_from_file(cd_dataset *ds, const char *path)
{
    static const char fn[] = "cd_dataset_split_from_file";
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_NOT_NULL(path, fn);
    index_file f = {path, NULL, 0, ds->train_pool.n};
    CD__TRY(cd__fopen_read(path, "cd_dataset_split_from_file: split file ", &f.fp));
    int64_t n = f.n, count = 0;
    int64_t *order = cd__calloc((size_t)n, sizeof *order, "split order");
    int64_t *line_of = cd__calloc((size_t)n, sizeof *line_of, "split order");
    cd_status st =
        order && line_of ? parse_index_file(&f, order, line_of, &count) : cd_last_status();
    if (st == CD_OK) {
        /* The validation split: every unnamed index, ascending. */
        int64_t k = count;
        for (int64_t i = 0; i < n; i++)
            if (!line_of[i]) order[k++] = i;
        commit_split(ds, order, count);
    }
    fclose(f.fp);
    cd__free(order);
    cd__free(line_of);
    return st;
}

/* ---- queries -------------------------------------------------------------- */

int64_t cd_dataset_count(const cd_dataset *ds, cd_split split)
{
    const split_view *v = NULL;
    if (get_view(ds, split, "cd_dataset_count", &v) != CD_OK) return -1;
    return v->count;
}

int64_t cd_dataset_height(const cd_dataset *ds)
{
    if (!ds) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_dataset_height: argument 'ds' is NULL");
        return -1;
    }
    return ds->height;
}

int64_t cd_dataset_width(const cd_dataset *ds)
{
    if (!ds) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_dataset_width: argument 'ds' is NULL");
        return -1;
    }
    return ds->width;
}

int64_t cd_dataset_channels(const cd_dataset *ds)
{
    if (!ds) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_dataset_channels: argument 'ds' is NULL");
        return -1;
    }
    return ds->channels;
}

int64_t cd_dataset_class_count(const cd_dataset *ds)
{
    if (!ds) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_dataset_class_count: argument 'ds' is NULL");
        return -1;
    }
    return ds->n_classes;
}

int64_t cd__dataset_label_bound(const cd_dataset *ds)
{
    int64_t bound = ds->n_classes;
    const pool *pools[2] = {&ds->train_pool, &ds->test_pool};
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; pools[i]->labels.data && k < pools[i]->n; k++)
            if ((int64_t)pools[i]->labels.data[k] + 1 > bound)
                bound = (int64_t)pools[i]->labels.data[k] + 1;
    return bound;
}

const char *cd_dataset_class_name(const cd_dataset *ds, int64_t k)
{
    static const char fn[] = "cd_dataset_class_name";
    if (!ds) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "%s: argument 'ds' is NULL", fn);
        return NULL;
    }
    if (ds->n_classes == 0) {
        cd__error(CD_ERR_RANGE, "%s: k = %" PRId64 ": the dataset has no class names", fn, k);
        return NULL;
    }
    if (k < 0 || k >= ds->n_classes) {
        cd__error(CD_ERR_RANGE,
                  "%s: k = %" PRId64 " is outside 0..%" PRId64 " (%" PRId64 " classes)", fn, k,
                  ds->n_classes - 1, ds->n_classes);
        return NULL;
    }
    return ds->class_names[k];
}

/* ---- batches -------------------------------------------------------------- */

/* A fresh order, always from the natural one: the result depends on the
 * generator alone, so a resumed run with a restored rng state gets the
 * same epochs without replaying earlier shuffles. */
cd_status cd_dataset_shuffle(cd_dataset *ds, cd_split split, cd_rng *rng)
{
    static const char fn[] = "cd_dataset_shuffle";
    const split_view *cv = NULL;
    CD__TRY(get_view(ds, split, fn, &cv));
    CD__CHECK_NOT_NULL(rng, fn);
    split_view *v = &ds->splits[split];
    reset_epoch(v);
    return fisher_yates(v->epoch, v->count, rng);
}

cd_status cd_dataset_fill_batch(const cd_dataset *ds, cd_split split, int64_t first,
                                cd_tensor *images, cd_tensor *labels, int64_t *filled)
{
    static const char fn[] = "cd_dataset_fill_batch";
    const split_view *v = NULL;
    int64_t n = 0;
    if (filled) *filled = 0;
    CD__TRY(get_view(ds, split, fn, &v));
    CD__TRY(check_images(ds, fn, images, -1, &n));
    CD__TRY(check_labels(fn, labels, n));
    if (first < 0 || first >= v->count)
        return cd__error(CD_ERR_RANGE,
                         "%s: first = %" PRId64 " is outside [0, %" PRId64 ") of the %s split", fn,
                         first, v->count, split_names[split]);

    int64_t real = v->count - first < n ? v->count - first : n;
    const pool *p = pool_of(ds, split);
    for (int64_t r = 0; r < real; r++)
        copy_row(ds, p, v->epoch[first + r], images->data + r * ds->pixels,
                 labels ? labels->data + r : NULL);
    memset(images->data + real * ds->pixels, 0, (size_t)((n - real) * ds->pixels) * sizeof(float));
    if (labels) memset(labels->data + real, 0, (size_t)(n - real) * sizeof(float));
    if (filled) *filled = real;
    return CD_OK;
}

cd_status cd_dataset_gather(const cd_dataset *ds, cd_split split, const int64_t *idx, int64_t n,
                            cd_tensor *images, cd_tensor *labels)
{
    static const char fn[] = "cd_dataset_gather";
    const split_view *v = NULL;
    int64_t got_n = 0;
    CD__TRY(get_view(ds, split, fn, &v));
    if (n < 1) return cd__error(CD_ERR_RANGE, "%s: n = %" PRId64 " must be >= 1", fn, n);
    CD__CHECK_NOT_NULL(idx, fn);
    CD__TRY(check_images(ds, fn, images, n, &got_n));
    CD__TRY(check_labels(fn, labels, n));
    /* All indices first, so a bad one leaves the tensors untouched. */
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= v->count)
            return cd__error(CD_ERR_RANGE,
                             "%s: idx[%" PRId64 "] = %" PRId64 " is outside [0, %" PRId64
                             ") of the %s split",
                             fn, i, idx[i], v->count, split_names[split]);
    const pool *p = pool_of(ds, split);
    for (int64_t i = 0; i < n; i++)
        copy_row(ds, p, v->members[idx[i]], images->data + i * ds->pixels,
                 labels ? labels->data + i : NULL);
    return CD_OK;
}

cd_status cd_dataset_mean_image(const cd_dataset *ds, cd_split split, cd_tensor *out)
{
    static const char fn[] = "cd_dataset_mean_image";
    const split_view *v = NULL;
    CD__TRY(get_view(ds, split, fn, &v));
    CD__CHECK_NOT_NULL(out, fn);
    const int32_t off = out->rank == 4 ? 1 : 0;
    const int64_t *s = out->shape;
    if (!((out->rank == 3 || (out->rank == 4 && s[0] == 1)) && s[off] == ds->channels &&
          s[off + 1] == ds->height && s[off + 2] == ds->width))
        return cd__error(CD_ERR_SHAPE,
                         "%s: out must be %" PRId64 " x %" PRId64 " x %" PRId64 " (or 1 x that)",
                         fn, ds->channels, ds->height, ds->width);
    if (v->count == 0)
        return cd__error(CD_ERR_RANGE, "%s: the %s split has no images", fn, split_names[split]);
    double *sum = cd__calloc((size_t)ds->pixels, sizeof *sum, "mean image sums");
    if (!sum) return cd_last_status();
    const pool *p = pool_of(ds, split);
    for (int64_t i = 0; i < v->count; i++) {
        const uint8_t *src = p->images.data + (size_t)v->members[i] * (size_t)ds->pixels;
        for (int64_t k = 0; k < ds->pixels; k++) sum[k] += ds->lut[src[k]];
    }
    for (int64_t k = 0; k < ds->pixels; k++) out->data[k] = (float)(sum[k] / (double)v->count);
    cd__free(sum);
    return CD_OK;
}

cd_status cd_dataset_truncate(cd_dataset *ds, cd_split split, int64_t n)
{
    static const char fn[] = "cd_dataset_truncate";
    const split_view *cv = NULL;
    CD__TRY(get_view(ds, split, fn, &cv));
    if (n < 0) return cd__error(CD_ERR_RANGE, "%s: n = %" PRId64 " is negative", fn, n);
    split_view *v = &ds->splits[split];
    if (n < v->count) v->count = n;
    reset_epoch(v);
    return CD_OK;
}
