/*
 * folder.c - datasets from folders of PNG images, decoded by libpng.
 *
 * The listing (sorted class folders, sorted files) fixes the number of
 * images and the first image fixes their size and channels, so the pool is
 * one byte buffer allocated once; every file is then decoded and written
 * straight into its slot, in the N x C x H x W bytes dataset.c keeps for
 * IDX data too.
 */
#define _POSIX_C_SOURCE 200809L

#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Far above what these models train on, and small enough that one image's
 * rows (3 x 4096 x 4096 bytes) stay a modest allocation. */
#define MAX_SIDE 4096
/* Labels are stored as bytes. */
#define MAX_CLASSES 256
#define LIBPNG_MSG_CAP 200

static const char fn[] = "cd_dataset_load_folder";

/* ---- sorted name lists ---------------------------------------------------- */

typedef struct name_list {
    char **v;
    int64_t n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (int64_t i = 0; i < l->n; i++) cd__free(l->v[i]);
    cd__free(l->v);
    memset(l, 0, sizeof *l);
}

/* Takes s over, on failure too. */
static cd_status names_take(name_list *l, char *s)
{
    if (!s) return cd_last_status();
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        char **v = cd__realloc(l->v, (size_t)cap, sizeof *v, "folder listing");
        if (!v) {
            cd__free(s);
            return cd_last_status();
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return CD_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort(name_list *l)
{
    if (l->n > 1) qsort(l->v, (size_t)l->n, sizeof *l->v, compare_names);
}

static char *join(const char *dir, const char *name)
{
    size_t cap = strlen(dir) + strlen(name) + 2;
    char *path = cd__malloc(cap, "image path");
    if (path) snprintf(path, cap, "%s/%s", dir, name);
    return path;
}

/* ---- listing -------------------------------------------------------------- */

static bool is_png_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

static cd_status open_dir_failed(const char *dir, int e)
{
    if (e == ENOENT) return cd__error(CD_ERR_NOT_FOUND, "%s: folder '%s' does not exist", fn, dir);
    return cd__error(CD_ERR_IO, "%s: cannot open folder '%s': %s", fn, dir, strerror(e));
}

/* Sort one entry of dir into files (a regular file named *.png) or dirs
 * (a folder; ignored when dirs is NULL). Anything else is skipped, a
 * dangling link included. */
static cd_status classify(const char *dir, const char *name, name_list *files, name_list *dirs)
{
    char *path = join(dir, name);
    if (!path) return cd_last_status();
    struct stat sb;
    const bool found = stat(path, &sb) == 0;
    cd_status st = CD_OK;
    if (found && S_ISDIR(sb.st_mode) && dirs)
        st = names_take(dirs, cd__strdup(name, "folder listing"));
    else if (found && S_ISREG(sb.st_mode) && is_png_name(name))
        st = names_take(files, cd__strdup(name, "folder listing"));
    cd__free(path);
    return st;
}

/* The PNG files and (unless dirs is NULL) the sub-folders of dir, sorted. */
static cd_status list_dir(const char *dir, name_list *files, name_list *dirs)
{
    DIR *d = opendir(dir);
    if (!d) return open_dir_failed(dir, errno);
    cd_status st = CD_OK;
    for (;;) {
        errno = 0;
        const struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = cd__error(CD_ERR_IO, "%s: reading folder '%s' failed: %s", fn, dir,
                               strerror(errno));
            break;
        }
        if (e->d_name[0] == '.') continue;
        if ((st = classify(dir, e->d_name, files, dirs)) != CD_OK) break;
    }
    closedir(d);
    names_sort(files);
    if (dirs) names_sort(dirs);
    return st;
}

typedef struct listing {
    name_list paths;                /* every image, class after class */
    name_list classes;              /* class folder names; none when flat */
    int64_t start[MAX_CLASSES + 1]; /* class k is paths[start[k]..start[k+1]) */
} listing;

static cd_status take_files(listing *l, const char *dir, const name_list *files)
{
    for (int64_t i = 0; i < files->n; i++) CD__TRY(names_take(&l->paths, join(dir, files->v[i])));
    return CD_OK;
}

static cd_status list_class(listing *l, const char *dir, const char *sub)
{
    name_list files = {0};
    char *path = join(dir, sub);
    cd_status st = path ? list_dir(path, &files, NULL) : cd_last_status();
    if (st == CD_OK && files.n == 0)
        st = cd__error(CD_ERR_NOT_FOUND, "%s: class folder '%s' holds no PNG file", fn, path);
    if (st == CD_OK) st = take_files(l, path, &files);
    names_free(&files);
    cd__free(path);
    return st;
}

static cd_status list_images(listing *l, const char *dir)
{
    name_list files = {0};
    cd_status st = list_dir(dir, &files, &l->classes);
    const int64_t k = l->classes.n;
    if (st == CD_OK && k > MAX_CLASSES)
        st = cd__error(CD_ERR_RANGE, "%s: folder '%s' holds %" PRId64 " class folders, above %d",
                       fn, dir, k, MAX_CLASSES);
    else if (st == CD_OK && k > 0 && files.n > 0)
        st = cd__error(CD_ERR_FORMAT,
                       "%s: folder '%s' holds class folders and PNG files beside them ('%s'); "
                       "move the files into a class folder",
                       fn, dir, files.v[0]);
    else if (st == CD_OK && k == 0 && files.n == 0)
        st = cd__error(CD_ERR_NOT_FOUND, "%s: folder '%s' holds no PNG file and no class folder",
                       fn, dir);
    else if (st == CD_OK && k == 0)
        st = take_files(l, dir, &files);
    for (int64_t c = 0; st == CD_OK && c < k; c++) {
        l->start[c] = l->paths.n;
        st = list_class(l, dir, l->classes.v[c]);
    }
    if (k <= MAX_CLASSES) l->start[k] = l->paths.n;
    names_free(&files);
    return st;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct decoded {
    int64_t height, width, channels; /* channels: 1 or 3 after the transforms */
    uint8_t *pixels;                 /* height x width x channels */
    png_bytep *rows;
    bool out_of_memory; /* an allocation of libpng's failed */
    char libpng_msg[LIBPNG_MSG_CAP];
} decoded;

static void decoded_free(decoded *img)
{
    cd__free(img->pixels);
    cd__free(img->rows);
    memset(img, 0, sizeof *img);
}

static void on_png_error(png_structp png, png_const_charp msg)
{
    decoded *img = png_get_error_ptr(png);
    snprintf(img->libpng_msg, sizeof img->libpng_msg, "%s", msg);
    png_longjmp(png, 1);
}

/* The library never prints; a warning is about a file that still decodes. */
static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* libpng allocates through the library's allocator, like zlib in the
 * checkpoint reader, so its blocks are counted and its failures can be
 * injected. libpng turns a NULL into a png_error with a message of its
 * own, so the flag is what tells read_png that memory ran out rather than
 * that the file is corrupt. */
static png_voidp alloc_for_libpng(png_structp png, png_alloc_size_t bytes)
{
    void *p = cd__malloc(bytes, "libpng's buffers");
    if (!p) ((decoded *)png_get_mem_ptr(png))->out_of_memory = true;
    return p;
}

static void free_for_libpng(png_structp png, png_voidp p)
{
    (void)png;
    cd__free(p);
}

static cd_status check_signature(FILE *fp, const char *path)
{
    png_byte sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    if (got == sizeof sig && png_sig_cmp(sig, 0, sizeof sig) == 0) return CD_OK;
    if (ferror(fp))
        return cd__error(CD_ERR_IO, "%s: reading '%s' failed: %s", fn, path, strerror(errno));
    return cd__error(CD_ERR_FORMAT, "%s: '%s' is not a PNG file (no PNG signature)", fn, path);
}

/* Normalise to 8-bit grey or RGB: palettes and low bit depths expanded,
 * 16 bits scaled with rounding, alpha (and tRNS) dropped. */
static void set_transforms(png_structp png, png_infop info)
{
    png_set_expand(png);
    if (png_get_bit_depth(png, info) == 16) png_set_scale_16(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static cd_status alloc_rows(decoded *img, size_t rowbytes)
{
    img->pixels = cd__malloc((size_t)img->height * rowbytes, "decoded image");
    img->rows = cd__malloc((size_t)img->height * sizeof *img->rows, "decoded image rows");
    if (!img->pixels || !img->rows) return cd_last_status();
    for (int64_t r = 0; r < img->height; r++) img->rows[r] = img->pixels + (size_t)r * rowbytes;
    return CD_OK;
}

/*
 * libpng reports errors by longjmp to the setjmp below. Nothing local
 * changes between the two: the buffers hang off img, which the caller
 * frees whichever way this returns, and png and info are destroyed by the
 * caller too.
 */
static cd_status read_png(png_structp png, png_infop info, FILE *fp, decoded *img, const char *path)
{
    if (setjmp(png_jmpbuf(png))) {
        if (img->out_of_memory)
            return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory decoding '%s': libpng: %s",
                             fn, path, img->libpng_msg);
        return cd__error(CD_ERR_FORMAT, "%s: '%s' is a corrupt or truncated PNG: libpng: %s", fn,
                         path, img->libpng_msg);
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    /* Only the pixels matter, so every ancillary chunk (text, ICC profile,
     * EXIF, ...) is skipped unread: libpng would otherwise allocate the
     * length a text chunk declares, up to 2 GB, before finding the file
     * far shorter. */
#ifdef PNG_HANDLE_AS_UNKNOWN_SUPPORTED
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
#endif
    png_read_info(png, info);
    img->height = png_get_image_height(png, info);
    img->width = png_get_image_width(png, info);
    if (img->height > MAX_SIDE || img->width > MAX_SIDE)
        return cd__error(CD_ERR_RANGE,
                         "%s: '%s' is %" PRId64 " high and %" PRId64
                         " wide, above the limit of %d on a side",
                         fn, path, img->height, img->width, MAX_SIDE);
    set_transforms(png, info);
    img->channels = png_get_channels(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    if ((img->channels != 1 && img->channels != 3) ||
        rowbytes != (size_t)(img->width * img->channels))
        return cd__error(CD_ERR_INTERNAL, "%s: '%s' decodes to %" PRId64 " channels", fn, path,
                         img->channels);
    CD__TRY(alloc_rows(img, rowbytes));
    png_read_image(png, img->rows);
    /* Up to IEND, so a file cut after its pixels is refused too. */
    png_read_end(png, NULL);
    return CD_OK;
}

/* Decode the PNG at path into img, which the caller frees in any case. */
static cd_status decode(const char *path, decoded *img)
{
    FILE *fp = NULL;
    CD__TRY(cd__fopen_read(path, "cd_dataset_load_folder: PNG file ", &fp));
    cd_status st = check_signature(fp, path);
    png_structp png = NULL;
    png_infop info = NULL;
    if (st == CD_OK) {
        png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, img, on_png_error, on_png_warning,
                                       img, alloc_for_libpng, free_for_libpng);
        info = png ? png_create_info_struct(png) : NULL;
        if (!info)
            st = cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory starting libpng for '%s'", fn,
                           path);
    }
    if (st == CD_OK) st = read_png(png, info, fp, img, path);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return st;
}

/* ---- the pool ------------------------------------------------------------- */

typedef struct geometry {
    int64_t channels, height, width, crop;
    const char *first; /* the first image, named when another disagrees */
    int64_t first_h, first_w;
} geometry;

static cd_status check_size(const geometry *g, const decoded *img, const char *path)
{
    if (g->crop > 0 && (img->height < g->crop || img->width < g->crop))
        return cd__error(CD_ERR_RANGE,
                         "%s: '%s' is %" PRId64 " high and %" PRId64
                         " wide, smaller than the crop of %" PRId64 " x %" PRId64,
                         fn, path, img->height, img->width, g->crop, g->crop);
    if (g->crop == 0 && (img->height != g->height || img->width != g->width))
        return cd__error(CD_ERR_SHAPE,
                         "%s: '%s' is %" PRId64 " high and %" PRId64 " wide but '%s' is %" PRId64
                         " high and %" PRId64
                         " wide; the images must share one size (or be cropped)",
                         fn, path, img->height, img->width, g->first, g->height, g->width);
    return CD_OK;
}

static void set_geometry(geometry *g, const decoded *first, const char *path, int64_t channels,
                         int64_t crop)
{
    g->channels = channels ? channels : first->channels;
    g->crop = crop;
    g->height = crop ? crop : first->height;
    g->width = crop ? crop : first->width;
    g->first = path;
}

static uint8_t luma(const uint8_t *rgb)
{
    return (uint8_t)((299u * rgb[0] + 587u * rgb[1] + 114u * rgb[2] + 500u) / 1000u);
}

/* The centre of img into dst as C x H x W planes, converting channels. */
static void store(const geometry *g, const decoded *img, uint8_t *dst)
{
    const int64_t top = (img->height - g->height) / 2, left = (img->width - g->width) / 2;
    const int64_t plane = g->height * g->width, ic = img->channels;
    for (int64_t y = 0; y < g->height; y++)
        for (int64_t x = 0; x < g->width; x++) {
            const uint8_t *p = img->pixels + ((top + y) * img->width + left + x) * ic;
            uint8_t *q = dst + y * g->width + x;
            if (g->channels == 1)
                q[0] = ic == 1 ? p[0] : luma(p);
            else
                for (int64_t c = 0; c < 3; c++) q[c * plane] = p[ic == 1 ? 0 : c];
        }
}

/* Bytes for n images, refused when their floats (as batches and means see
 * them) would not fit in an int64 or a size_t. */
static cd_status alloc_pool(const geometry *g, int64_t n, uint8_t **pixels, uint8_t **labels)
{
    int64_t per = g->channels * g->height * g->width, total = 0, bytes = 0;
    if (cd__mul_overflows_i64(per, n, &total) ||
        cd__mul_overflows_i64(total, (int64_t)sizeof(float), &bytes) || (uint64_t)bytes > SIZE_MAX)
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: %" PRId64 " images of %" PRId64 " x %" PRId64 " x %" PRId64
                         " floats overflow the address space",
                         fn, n, g->channels, g->height, g->width);
    *pixels = cd__malloc((size_t)total, "folder images");
    *labels = cd__malloc((size_t)n, "folder labels");
    return *pixels && *labels ? CD_OK : cd_last_status();
}

static void fill_labels(const listing *l, uint8_t *labels)
{
    memset(labels, 0, (size_t)l->paths.n);
    for (int64_t k = 0; k < l->classes.n; k++)
        for (int64_t i = l->start[k]; i < l->start[k + 1]; i++) labels[i] = (uint8_t)k;
}

static cd_status decode_all(const listing *l, int64_t channels, int64_t crop, geometry *g,
                            uint8_t **pixels, uint8_t **labels)
{
    decoded img = {0};
    cd_status st = decode(l->paths.v[0], &img);
    if (st == CD_OK) set_geometry(g, &img, l->paths.v[0], channels, crop);
    if (st == CD_OK) st = alloc_pool(g, l->paths.n, pixels, labels);
    const int64_t per = g->channels * g->height * g->width;
    for (int64_t i = 0; st == CD_OK && i < l->paths.n; i++) {
        if (i > 0) {
            decoded_free(&img);
            st = decode(l->paths.v[i], &img);
        }
        if (st == CD_OK) st = check_size(g, &img, l->paths.v[i]);
        if (st == CD_OK) store(g, &img, *pixels + i * per);
    }
    decoded_free(&img);
    if (st == CD_OK) fill_labels(l, *labels);
    return st;
}

cd_status cd_dataset_load_folder(cd_dataset **out, const char *dir, int64_t channels, int64_t crop)
{
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(dir, fn);
    if (channels != 0 && channels != 1 && channels != 3)
        return cd__error(CD_ERR_RANGE, "%s: channels = %" PRId64 " is not 0, 1 or 3", fn, channels);
    if (crop < 0 || crop > MAX_SIDE)
        return cd__error(CD_ERR_RANGE, "%s: crop = %" PRId64 " is outside 0..%d", fn, crop,
                         MAX_SIDE);
    listing l;
    memset(&l, 0, sizeof l);
    geometry g = {0};
    uint8_t *pixels = NULL, *labels = NULL;
    cd_status st = list_images(&l, dir);
    if (st == CD_OK) st = decode_all(&l, channels, crop, &g, &pixels, &labels);
    if (st == CD_OK) {
        const int64_t chw[3] = {g.channels, g.height, g.width};
        /* The class names move into the dataset. */
        st = cd__dataset_adopt(out, pixels, labels, l.paths.n, chw, l.classes.v, l.classes.n);
        memset(&l.classes, 0, sizeof l.classes);
    } else {
        cd__free(pixels);
        cd__free(labels);
    }
    names_free(&l.paths);
    names_free(&l.classes);
    return st;
}
