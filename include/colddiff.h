/*
 * colddiff.h - the stable C API of libcolddiff.
 *
 * libcolddiff trains and samples diffusion models (DDPM and cold diffusion)
 * on small images such as MNIST. Everything in this header is covered by the
 * ABI promise in docs/api-stability.md: same major version, same ABI.
 *
 * Train, save, load and sample: the steps of examples/c/train_and_sample.c
 * (a complete program, built and run by the test suite), in one block.
 * Each call returns CD_OK or an error whose message cd_last_error() gives.
 *
 *     const int64_t hidden[] = {16, 16}, shape[4] = {16, 1, 28, 28};
 *     cd_dataset *ds = NULL;
 *     cd_rng *rng = NULL;
 *     cd_schedule *sch = NULL;
 *     cd_degradation *deg = NULL, *ldeg = NULL;
 *     cd_decoder_config *cfg = NULL;
 *     cd_decoder *dec = NULL, *ldec = NULL;
 *     cd_trainer *tr = NULL;
 *     cd_sampler *smp = NULL;
 *     cd_tensor *out = NULL;
 *     // MNIST with a seeded train/validation split.
 *     cd_status st = cd_dataset_load_mnist(&ds, "data/mnist");
 *     if (st == CD_OK) st = cd_dataset_split(ds, 0.1, 42);
 *     if (st == CD_OK) st = cd_rng_create(&rng, 42);
 *     // A narrow CNN learns the noise of the linear schedule.
 *     if (st == CD_OK) st = cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02);
 *     if (st == CD_OK) st = cd_degradation_create_noise(&deg, sch);
 *     if (st == CD_OK) st = cd_decoder_config_create(&cfg, CD_DECODER_CNN);
 *     if (st == CD_OK)
 *         st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, 2);
 *     if (st == CD_OK)
 *         st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 5);
 *     if (st == CD_OK) st = cd_decoder_create(&dec, cfg, rng);
 *     if (st == CD_OK) st = cd_trainer_create(&tr, dec, deg);  // borrows both
 *     if (st == CD_OK) st = cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3);
 *     if (st == CD_OK) st = cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 64);
 *     if (st == CD_OK)  // one epoch; keeps the last checkpoint
 *         st = cd_trainer_fit(tr, ds, 1, NULL, "last.cdm", rng, NULL, NULL);
 *     // Save the inference model, load it back, draw 16 digits with DDIM.
 *     if (st == CD_OK) st = cd_trainer_export(tr, "model.cdm");
 *     if (st == CD_OK) st = cd_model_load("model.cdm", &ldec, &ldeg);
 *     if (st == CD_OK) st = cd_sampler_create(&smp, CD_SAMPLER_DDIM, ldeg);
 *     if (st == CD_OK) st = cd_sampler_set_decoder(smp, ldec);
 *     if (st == CD_OK) st = cd_tensor_create(&out, 4, shape);
 *     if (st == CD_OK) st = cd_sampler_sample(smp, rng, out);
 *     if (st == CD_OK)
 *         st = cd_image_grid_write_png("samples.png", out, 8, 2, 128,
 *                                      CD_PIXELS_RANGE, -0.5f, 0.5f);
 *     if (st != CD_OK) fprintf(stderr, "colddiff: %s\n", cd_last_error());
 *     cd_tensor_free(out);
 *     cd_sampler_free(smp);        // before the degradation it borrows
 *     cd_decoder_free(ldec);
 *     cd_degradation_free(ldeg);
 *     cd_trainer_free(tr);         // before the objects it borrows
 *     cd_decoder_free(dec);
 *     cd_degradation_free(deg);
 *     cd_decoder_config_free(cfg);
 *     cd_schedule_free(sch);       // the degradation copied its arrays
 *     cd_rng_free(rng);
 *     cd_dataset_free(ds);
 *
 * Conventions (see docs/design.md):
 *   - Every fallible function returns cd_status: CD_OK (0) or a negative
 *     code. On failure cd_last_error() holds a message naming the argument,
 *     file or byte offset at fault. Nothing is ever printed or aborted.
 *   - Objects are opaque. Every *_create has a *_free that accepts NULL.
 *     Output handles are written only on success; on failure they are set
 *     to NULL.
 *   - Ownership: a constructor borrows the objects it is given (a trainer
 *     its decoder and degradation, a sampler its degradation): they must
 *     outlive the new object, and the caller frees them after it. What
 *     the library makes itself (the decoder of a loaded trainer) belongs
 *     to the object that made it. A pointer returned as a function's
 *     value is borrowed too: it lives as long as the object it came from.
 *   - Getters: a property is read by cd_<object>_<property>() (the count,
 *     a size, T), or by cd_<object>_get_<property>() when its value is one
 *     of the enumerations below, whose type has the property's name (a
 *     sampler's kind). On a NULL or invalid object a getter sets the error
 *     and returns -1 (for an enumeration, its *_INVALID value, also -1),
 *     or NULL for a pointer. Options have their own calls (see Options).
 *   - Callbacks take the caller's `void *user` as their last argument.
 *   - Calls and option keys that may still change live in
 *     colddiff_experimental.h, outside this promise.
 *   - Every size, count, capacity, index, rank and axis is int64_t (and a
 *     thread count too); seeds are uint64_t, data float (float32). Images
 *     are N x C x H x W, row-major (NCHW), and every call that takes a
 *     height and a width takes the height first.
 *   - Threads: one object per thread for anything that mutates (tensors
 *     being written, RNGs, datasets being shuffled). Read-only use of an
 *     object from several threads at once is safe. cd_last_error() is
 *     thread-local.
 */
#ifndef COLDDIFF_H
#define COLDDIFF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CD_BUILDING_LIBRARY)
#define CD_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(CD_STATIC)
#define CD_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#define CD_API __attribute__((visibility("default")))
#else
#define CD_API
#endif

#define CD_VERSION_MAJOR 0
#define CD_VERSION_MINOR 1
#define CD_VERSION_PATCH 0
/** The ABI generation; equals the SONAME's number (libcolddiff.so.0). */
#define CD_ABI_VERSION 0

/* ------------------------------------------------------------------------ */
/* Status and errors                                                        */
/* ------------------------------------------------------------------------ */

/**
 * Result of every fallible call. Values are fixed and append-only: a code
 * keeps its number forever, new codes take new numbers.
 */
typedef enum cd_status {
    CD_OK = 0,
    CD_ERR_INVALID_ARGUMENT = -1, /**< NULL handle, bad enum, bad pointer  */
    CD_ERR_OUT_OF_MEMORY = -2,    /**< an allocation failed                 */
    CD_ERR_SHAPE = -3,            /**< wrong rank, dimension or length      */
    CD_ERR_OVERFLOW = -4,         /**< a size does not fit in int64/size_t  */
    CD_ERR_RANGE = -5,            /**< a value outside its allowed range    */
    CD_ERR_NOT_FINITE = -6,       /**< NaN or infinity where a number is due */
    CD_ERR_IO = -7,               /**< open/read/write/rename/fsync failed  */
    CD_ERR_NOT_FOUND = -8,        /**< a file or name does not exist        */
    CD_ERR_FORMAT = -9,           /**< a file is not what it claims to be   */
    CD_ERR_CHECKSUM = -10,        /**< a checksum or digest does not match  */
    CD_ERR_VERSION = -11,         /**< a file or library version we cannot use */
    CD_ERR_STATE = -12,           /**< the object is not ready for this call */
    CD_ERR_UNSUPPORTED = -13,     /**< valid, but not implemented here      */
    CD_ERR_CANCELLED = -14,       /**< stopped on request                   */
    CD_ERR_INTERNAL = -15         /**< a bug in libcolddiff; please report   */
} cd_status;

/** Fixed English text for a status code; never NULL, never freed. */
CD_API const char *cd_status_string(cd_status status);

/**
 * The message of the last failure on the calling thread, with detail (which
 * argument, which file, which byte offset). Successful calls leave it alone,
 * so read it right after the failing call. Never NULL; "" before any error.
 * The pointer is valid until the thread's next libcolddiff call.
 */
CD_API const char *cd_last_error(void);

/** The status of the last failure on this thread (CD_OK if none). */
CD_API cd_status cd_last_status(void);

/** Forget the calling thread's last error. */
CD_API void cd_clear_error(void);

/* ------------------------------------------------------------------------ */
/* Versions                                                                 */
/* ------------------------------------------------------------------------ */

/** "MAJOR.MINOR.PATCH" of the loaded library (may differ from the header). */
CD_API const char *cd_version_string(void);

/** CD_ABI_VERSION of the loaded library; compare it with the header's. */
CD_API int32_t cd_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * Set how many threads libcolddiff may use (n >= 1; at most CD_MAX_THREADS).
 * Process-wide. Results never depend on this number: work is split into
 * fixed tiles. The BLAS (OpenBLAS or BLIS) is pinned to one thread when the
 * library loads, and again here, and called from libcolddiff's own
 * workers, because OpenBLAS gives different bits at different thread
 * counts. A host program that uses the same BLAS itself sees that setting
 * for the whole process. To keep the host's own BLAS threads, set the
 * environment variable COLDDIFF_BLAS_THREADS=keep before the library
 * loads: libcolddiff then never touches the BLAS thread count, and its
 * results may depend on that count (and its workers may oversubscribe the
 * cores). Call it while no other libcolddiff call runs.
 *
 * The library's parallel work runs with subnormal floats (below FLT_MIN,
 * about 1.2e-38) flushed to zero, on its workers and on the calling thread
 * alike, at every thread count; the calling thread gets its own
 * floating-point mode back before the call returns. Some CPUs slow down
 * many times over on subnormals, and trained networks make them.
 */
#define CD_MAX_THREADS 256
CD_API cd_status cd_set_num_threads(int64_t n);

/** The current thread count (defaults to the number of online CPUs). */
CD_API int64_t cd_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* Names of the enumerations                                                */
/* ------------------------------------------------------------------------ */

/**
 * The enumerations whose values have names: the spelling the command line
 * takes, checkpoints store and messages print. Values of each run
 * 0 .. cd_enum_count(e) - 1.
 */
typedef enum cd_enum {
    CD_ENUM_DECODER_KIND = 0,     /**< "cnn", "unet"                                   */
    CD_ENUM_SCHEDULE_KIND = 1,    /**< "linear", "constant", "cosine", "custom",
                                       "constant-report", "cosine-report", "arrays",
                                       "linear-report"                                 */
    CD_ENUM_DEGRADATION_KIND = 2, /**< "noise", "blur", "pixelate", "mask", "fade"     */
    CD_ENUM_PADDING = 3,          /**< "reflect", "circular"                           */
    CD_ENUM_TARGET = 4,           /**< "noise", "image"                                */
    CD_ENUM_PREDICTION = 5,       /**< "noise", "x0", "v"                              */
    CD_ENUM_SAMPLER_KIND = 6,     /**< "ddpm", "ddim", "cold1", "cold2", "direct"      */
    CD_ENUM_SPLIT = 7,            /**< "train", "val", "test"                          */
    CD_ENUM_METRIC_REDUCTION = 8, /**< "per_image", "report"                           */
    CD_ENUM_PIXEL_MAP = 9,        /**< "range", "percentile"                           */
    CD_ENUM_LOSS = 10             /**< "mse", "l1"                                     */
} cd_enum;

/** How many values e has, or -1 (CD_ERR_INVALID_ARGUMENT) for an unknown e. */
CD_API int64_t cd_enum_count(cd_enum e);

/**
 * The name of value in e (static text, never freed), or NULL with
 * CD_ERR_INVALID_ARGUMENT set when e or value is out of range.
 */
CD_API const char *cd_enum_name(cd_enum e, int32_t value);

/**
 * The value named `name` in e (exact, case-sensitive match) into *value.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL argument, unknown e),
 * CD_ERR_NOT_FOUND (no such name; the message lists the names e has).
 */
CD_API cd_status cd_enum_parse(cd_enum e, const char *name, int32_t *value);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Every configurable object (decoder configurations, samplers, trainers,
 * classifiers) has options on one model, as zstd's parameters: an enum key
 * per object (cd_<object>_option, values CD_<OBJECT>_OPT_<NAME>), typed
 * setters and getters (cd_<object>_set_int, _set_real, _get_int,
 * _get_real) and a description of each key (cd_<object>_option_info) with
 * its name, type, bounds and default. A value of the wrong type is
 * refused, not converted: an integer, boolean or choice option goes
 * through the _int calls (booleans are 0 or 1, choices the values of the
 * enumeration that info.choices names), a real one through the _real
 * calls. A failed set changes nothing. Keys from
 * CD_OPTION_EXPERIMENTAL_FIRST on are experimental: they are declared in
 * colddiff_experimental.h and may change or go in any release.
 */

/** What kind of value an option holds. */
typedef enum cd_option_type {
    CD_OPTION_INT = 0,     /**< a whole number (the _int calls)                 */
    CD_OPTION_BOOL = 1,    /**< 0 or 1 (the _int calls)                         */
    CD_OPTION_CHOICE = 2,  /**< a value of the enumeration info.choices (_int)  */
    CD_OPTION_REAL = 3,    /**< a finite real number (the _real calls)          */
    CD_OPTION_INT_LIST = 4 /**< a list of whole numbers (the _list calls)       */
} cd_option_type;

/** Keys at and above this value are experimental (colddiff_experimental.h). */
#define CD_OPTION_EXPERIMENTAL_FIRST 1000

/**
 * The description of one option key, filled by cd_<object>_option_info().
 * Part of the ABI: its layout changes only with CD_ABI_VERSION.
 */
typedef struct cd_option_info {
    const char *name; /**< as the command line and checkpoints spell it
                           (static text, never freed)                   */
    cd_option_type type;
    int32_t choices;      /**< CD_OPTION_CHOICE: the cd_enum naming the values;
                               -1 otherwise                                 */
    double lo, hi;        /**< the allowed range (of each entry for a list):
                               +-DBL_MAX when unbounded, +-FLT_MAX for a
                               value the object keeps as a float            */
    int32_t lo_open;      /**< 1 when lo itself is not allowed              */
    int32_t hi_open;      /**< 1 when hi itself is not allowed              */
    double default_value; /**< the value of a new object (for a list, its
                               first entry); the key's comment says when the
                               object adjusts it                            */
} cd_option_info;

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

/** A dense, row-major float32 array of rank 1..CD_TENSOR_MAX_RANK. */
typedef struct cd_tensor cd_tensor;

#define CD_TENSOR_MAX_RANK 8

/**
 * Create a tensor of the given shape, filled with zeros.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL out or shape), CD_ERR_SHAPE (rank
 * outside 1..CD_TENSOR_MAX_RANK, a dimension < 1), CD_ERR_OVERFLOW (the
 * byte size does not fit), CD_ERR_OUT_OF_MEMORY.
 * The caller owns *out and frees it with cd_tensor_free().
 */
CD_API cd_status cd_tensor_create(cd_tensor **out, int64_t rank, const int64_t *shape);

/** Free a tensor; NULL is a no-op. */
CD_API void cd_tensor_free(cd_tensor *t);

/** Deep copy of src into a new tensor owned by the caller. */
CD_API cd_status cd_tensor_clone(cd_tensor **out, const cd_tensor *src);

/**
 * Give t a new shape with the same element count; the data are unchanged.
 * Errors: CD_ERR_SHAPE if the counts differ or the shape is invalid.
 */
CD_API cd_status cd_tensor_reshape(cd_tensor *t, int64_t rank, const int64_t *shape);

/** Rank of t, or -1 (with an error) if t is NULL. */
CD_API int64_t cd_tensor_rank(const cd_tensor *t);

/** Size of dimension axis (negative axes count from the end), or -1. */
CD_API int64_t cd_tensor_dim(const cd_tensor *t, int64_t axis);

/** Number of elements, or -1 (with an error) if t is NULL. */
CD_API int64_t cd_tensor_numel(const cd_tensor *t);

/**
 * Copy the shape into shape[0..rank-1]. capacity is the length of shape;
 * CD_ERR_SHAPE if it is smaller than the rank.
 */
CD_API cd_status cd_tensor_shape(const cd_tensor *t, int64_t *shape, int64_t capacity);

/**
 * Borrowed pointer to the numel() contiguous floats of t, or NULL (with an
 * error) if t is NULL. Valid until t is freed; reshape keeps it valid.
 */
CD_API float *cd_tensor_data(cd_tensor *t);

/** Set every element to value (which may be any float, NaN included). */
CD_API cd_status cd_tensor_fill(cd_tensor *t, float value);

/**
 * Copy count floats from src into t. count must equal numel(t):
 * CD_ERR_SHAPE otherwise. src must not overlap t's data.
 */
CD_API cd_status cd_tensor_copy_from(cd_tensor *t, const float *src, int64_t count);

/** Copy t's numel(t) floats to dst; count must equal numel(t). */
CD_API cd_status cd_tensor_copy_to(const cd_tensor *t, float *dst, int64_t count);

/**
 * Copy rows src_row .. src_row + n - 1 of src (slices along the first
 * axis) over rows dst_row .. dst_row + n - 1 of dst: how a batch is cut
 * from a larger tensor, or put back into one. The tensors must have the
 * same rank and the same shape after the first axis; they may be the same
 * tensor, overlapping rows included. n = 0 copies nothing.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL), CD_ERR_SHAPE (ranks or row
 * shapes differ), CD_ERR_RANGE (a negative n or row, or rows past the end).
 */
CD_API cd_status cd_tensor_copy_rows(cd_tensor *dst, int64_t dst_row, const cd_tensor *src,
                                     int64_t src_row, int64_t n);

/* ------------------------------------------------------------------------ */
/* Random numbers                                                           */
/* ------------------------------------------------------------------------ */

/**
 * A counter-based generator: Philox4x32-10 (Salmon et al., SC'11), keyed by
 * the 64-bit seed, with a 128-bit block counter. docs/rng.md states the
 * exact mapping from blocks to uniforms, normals and integers, so a seed
 * gives the same numbers on every platform and for every thread count.
 *
 * Each draw call starts at a fresh block and consumes whole blocks:
 * 4 floats, 2 normals or 1 integer per block. A generator is not
 * thread-safe; use cd_rng_split() to give each worker its own stream.
 */
typedef struct cd_rng cd_rng;

/** The number of 64-bit words in a serialised generator state. */
#define CD_RNG_STATE_WORDS 4

/** Create a generator seeded with seed, at the start of its stream. */
CD_API cd_status cd_rng_create(cd_rng **out, uint64_t seed);

/** Free a generator; NULL is a no-op. */
CD_API void cd_rng_free(cd_rng *rng);

/**
 * Derive an independent generator for substream `stream` of rng. It depends
 * only on rng's key and `stream`, not on how much rng has drawn, and rng is
 * not changed: split(rng, i) is the same generator whenever it is called.
 */
CD_API cd_status cd_rng_split(cd_rng **out, const cd_rng *rng, uint64_t stream);

/** Save the full state (key and counter) into state[CD_RNG_STATE_WORDS]. */
CD_API cd_status cd_rng_get_state(const cd_rng *rng, uint64_t *state);

/** Restore a state saved by cd_rng_get_state(). */
CD_API cd_status cd_rng_set_state(cd_rng *rng, const uint64_t *state);

/** n floats uniform on [0, 1), each a multiple of 2^-24. */
CD_API cd_status cd_rng_uniform(cd_rng *rng, float *out, int64_t n);

/** n standard normal floats (Box-Muller in double, rounded to float). */
CD_API cd_status cd_rng_normal(cd_rng *rng, float *out, int64_t n);

/** n integers uniform on [lo, hi] inclusive (unbiased); lo <= hi. */
CD_API cd_status cd_rng_int_range(cd_rng *rng, int64_t *out, int64_t n, int64_t lo, int64_t hi);

/** Fill a tensor with uniforms on [0, 1). */
CD_API cd_status cd_rng_uniform_tensor(cd_rng *rng, cd_tensor *t);

/** Fill a tensor with standard normals. */
CD_API cd_status cd_rng_normal_tensor(cd_rng *rng, cd_tensor *t);

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */
/* ------------------------------------------------------------------------ */

/**
 * A named set of float32 parameter tensors living in one flat block, with a
 * parallel flat block of gradients. Names follow PyTorch's state_dict
 * ("blocks.0.net.0.weight"); the order is the order of cd_params_add().
 * Decoders own their parameter set and lend it out; a set made with
 * cd_params_create() belongs to the caller.
 *
 * Data pointers stay valid until the set is freed. Adding a tensor after the
 * first data/grad access is CD_ERR_STATE (the block is laid out then).
 */
typedef struct cd_params cd_params;

#define CD_PARAMS_MAX_NAME 127

/** Create an empty parameter set owned by the caller. */
CD_API cd_status cd_params_create(cd_params **out);

/** Free a set made by cd_params_create(); NULL is a no-op. */
CD_API void cd_params_free(cd_params *p);

/**
 * Append a zero-filled tensor called name (1..CD_PARAMS_MAX_NAME bytes,
 * unique) of the given shape (rank 1..CD_TENSOR_MAX_RANK).
 */
CD_API cd_status cd_params_add(cd_params *p, const char *name, int64_t rank, const int64_t *shape);

/** Number of tensors, or -1 (with an error). */
CD_API int64_t cd_params_count(const cd_params *p);

/** Total number of floats over all tensors, or -1 (with an error). */
CD_API int64_t cd_params_numel(const cd_params *p);

/** Name of tensor i (borrowed), or NULL (with an error). */
CD_API const char *cd_params_name(const cd_params *p, int64_t i);

/** Index of the tensor called name; CD_ERR_NOT_FOUND if there is none. */
CD_API cd_status cd_params_find(const cd_params *p, const char *name, int64_t *index);

/** Rank of tensor i, or -1. */
CD_API int64_t cd_params_rank(const cd_params *p, int64_t i);

/** Shape of tensor i into shape[0..rank-1] (capacity as cd_tensor_shape). */
CD_API cd_status cd_params_shape(const cd_params *p, int64_t i, int64_t *shape, int64_t capacity);

/** Element count of tensor i, or -1. */
CD_API int64_t cd_params_numel_at(const cd_params *p, int64_t i);

/**
 * Borrowed pointer to tensor i's values (read and write), or NULL. With
 * i = -1, the whole flat block of cd_params_numel() floats.
 */
CD_API float *cd_params_data(cd_params *p, int64_t i);

/** Borrowed pointer to tensor i's gradient (i = -1: the whole block). */
CD_API float *cd_params_grad(cd_params *p, int64_t i);

/** Set every gradient to zero. */
CD_API cd_status cd_params_zero_grad(cd_params *p);

/* ------------------------------------------------------------------------ */
/* Decoders                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * A decoder network g(z, tau) -> image-shaped output: the report's CNN or
 * its cold-diffusion ConvNeXt UNet (docs/design.md). Parameter
 * names and layouts are those of the PyTorch state_dict, so weights convert
 * one to one.
 *
 * A decoder owns its parameters (cd_decoder_params) and a workspace that is
 * sized on the first forward for a batch shape and reused while the shape
 * stays the same. It is not thread-safe: use one decoder per thread.
 */
typedef struct cd_decoder cd_decoder;

/** Construction-time settings; see cd_decoder_option. */
typedef struct cd_decoder_config cd_decoder_config;

typedef enum cd_decoder_kind {
    CD_DECODER_INVALID = -1, /**< what cd_decoder_get_kind returns on error */
    CD_DECODER_CNN = 0,      /**< report Part 1: conv + C x H x W LayerNorm + GELU */
    CD_DECODER_UNET = 1      /**< report Part 2: ConvNeXt UNet with linear attention */
} cd_decoder_kind;

/**
 * Configuration options, all integers (CD_OPTION_INT) except the two
 * lists (CD_OPTION_INT_LIST, set with cd_decoder_config_set_list). The
 * defaults give exactly the report's models; cd_decoder_config_option_info
 * gives each key's range and the CNN's default (the UNet's are in
 * parentheses where they differ).
 */
typedef enum cd_decoder_option {
    CD_DECODER_OPT_CHANNELS = 0,       /**< image channels (1)                  */
    CD_DECODER_OPT_HEIGHT = 1,         /**< CNN: the H its LayerNorms fit;
                                            UNet: the H it trains at, set by
                                            training (28)                       */
    CD_DECODER_OPT_WIDTH = 2,          /**< the same for W (28)                 */
    CD_DECODER_OPT_HIDDEN = 3,         /**< CNN list: hidden channels (16,32,32,16) */
    CD_DECODER_OPT_KERNEL = 4,         /**< CNN: hidden conv kernel, odd (7)    */
    CD_DECODER_OPT_TIME_FREQS = 5,     /**< CNN: time frequencies (16)          */
    CD_DECODER_OPT_TIME_HIDDEN = 6,    /**< CNN: time-MLP width (128)           */
    CD_DECODER_OPT_TIME_LAYERS = 7,    /**< CNN: hidden time-MLP layers (3)     */
    CD_DECODER_OPT_DIM = 8,            /**< UNet: base width (32)               */
    CD_DECODER_OPT_DIM_MULTS = 9,      /**< UNet list: width multipliers (1,2,4) */
    CD_DECODER_OPT_HEADS = 10,         /**< UNet: attention heads (4)           */
    CD_DECODER_OPT_HEAD_DIM = 11,      /**< UNet: attention head width (32)     */
    CD_DECODER_OPT_CONVNEXT_MULT = 12, /**< UNet: ConvNeXt expansion (2)       */
    CD_DECODER_OPT_CLASSES = 13        /**< class count K for a class-conditional
                                            decoder, 0 for none (0); see
                                            cd_decoder_forward_labeled        */
} cd_decoder_option;

/** Make a configuration holding the report's model of `kind`. */
CD_API cd_status cd_decoder_config_create(cd_decoder_config **out, cd_decoder_kind kind);

/** Free a configuration; NULL is a no-op. */
CD_API void cd_decoder_config_free(cd_decoder_config *cfg);

/** Describe a key (name, type, range, default); see cd_option_info. */
CD_API cd_status cd_decoder_config_option_info(cd_decoder_option key, cd_option_info *info);

/**
 * Set an integer key. Errors: CD_ERR_INVALID_ARGUMENT (unknown key, or a
 * list key), CD_ERR_RANGE (outside the bounds; an even
 * CD_DECODER_OPT_KERNEL).
 */
CD_API cd_status cd_decoder_config_set_int(cd_decoder_config *cfg, cd_decoder_option key,
                                           int64_t value);

/** Read an integer key. */
CD_API cd_status cd_decoder_config_get_int(const cd_decoder_config *cfg, cd_decoder_option key,
                                           int64_t *value);

/** Set a list key (CD_DECODER_OPT_HIDDEN, CD_DECODER_OPT_DIM_MULTS):
 *  1..8 values. */
CD_API cd_status cd_decoder_config_set_list(cd_decoder_config *cfg, cd_decoder_option key,
                                            const int64_t *values, int64_t n);

/**
 * Read a list key into values[0..capacity-1]; *n gets its length even when
 * capacity is too small (then CD_ERR_SHAPE).
 */
CD_API cd_status cd_decoder_config_get_list(const cd_decoder_config *cfg, cd_decoder_option key,
                                            int64_t *values, int64_t capacity, int64_t *n);

/**
 * Build a decoder from cfg (copied), with weights drawn from rng following
 * PyTorch's default initialisation (the distribution, not torch's stream).
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (an inconsistent
 * configuration, e.g. an odd UNet CD_DECODER_OPT_DIM), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_decoder_create(cd_decoder **out, const cd_decoder_config *cfg, cd_rng *rng);

/** Free a decoder and its parameters; NULL is a no-op. */
CD_API void cd_decoder_free(cd_decoder *d);

/** CD_DECODER_CNN or CD_DECODER_UNET; CD_DECODER_INVALID (with an error)
 *  for NULL. */
CD_API cd_decoder_kind cd_decoder_get_kind(const cd_decoder *d);

/** A copy of the decoder's configuration, owned by the caller. */
CD_API cd_status cd_decoder_get_config(const cd_decoder *d, cd_decoder_config **out);

/**
 * The image shape the decoder is for, C x H x W into shape[0..2]: the
 * CNN's fitted size; for a UNet (which takes any size its levels divide)
 * the size of the images its last backward pass learnt from, saved with
 * it, and CD_DECODER_OPT_HEIGHT x CD_DECODER_OPT_WIDTH before any. Samplers drawing
 * from noise need it when the caller has no dataset to take a shape from.
 * Errors: CD_ERR_INVALID_ARGUMENT.
 */
CD_API cd_status cd_decoder_image_shape(const cd_decoder *d, int64_t shape[3]);

/**
 * The decoder's parameters (borrowed; lives as long as d), named as in the
 * PyTorch state_dict. Read and write them to load or inspect weights.
 */
CD_API cd_params *cd_decoder_params(cd_decoder *d);

/** Number of scalar parameters, or -1. */
CD_API int64_t cd_decoder_param_count(const cd_decoder *d);

/**
 * out = g(z, tau): z and out are N x C x H x W, tau holds N finite values
 * (tau = t / T). Saves what backward needs. Any N; the CNN takes the H x W
 * it was built for, the UNet any H and W that are multiples of
 * 2^(levels - 1). Errors: CD_ERR_SHAPE (wrong channels or size, with the
 * expected and actual shapes), CD_ERR_NOT_FINITE (a NaN or infinite value
 * in tau or z; the message names the tensor and the first bad element, and
 * nothing is computed), CD_ERR_OUT_OF_MEMORY (the first call for a shape
 * allocates). Finite z with weights that overflow can still give an
 * infinite or NaN out; the trainer and the samplers check for that.
 */
CD_API cd_status cd_decoder_forward(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                    cd_tensor *out);

/**
 * out = g(z, tau) as cd_decoder_forward computes it, bit for bit, for a
 * pass that never runs backward (sampling, validation and test losses):
 * it keeps no activations for backward and no gradient buffers, and lets
 * the blocks share their temporaries, so its workspace is a fraction of a
 * training forward's (the decoder never shrinks a workspace it already
 * has). On AVX-512 CPUs a decoder that has never run cd_decoder_forward
 * (one that samples or evaluates) also keeps, from one call to the next,
 * the transformed weights of the 3x3 and 7x7 convolutions with a copy of
 * the weights (about 10 MB for the report's CNN, 60 MB for its UNet), and
 * transforms them again only when a weight changed: each call compares
 * them bit for bit, so weights written through cd_params_data or loaded
 * are always seen. The first cd_decoder_forward frees them, and the
 * decoder keeps none from then on. A later cd_decoder_backward is
 * CD_ERR_STATE until the next cd_decoder_forward. Errors as
 * cd_decoder_forward.
 */
CD_API cd_status cd_decoder_infer(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                  cd_tensor *out);

/**
 * Class conditioning. A decoder made with CD_DECODER_OPT_CLASSES = K > 0
 * holds a table "label_embed.weight" of K + 1 rows (drawn from N(0, 1),
 * as torch.nn.Embedding does), one per class plus a last row for "no
 * class". The row of each image's label is added to its time embedding
 * (the CNN's time-MLP output; the UNet's time_mlp output, before the GELU
 * its blocks take of it).
 *
 * labels is a rank-1 tensor of N floats, each an integer in -1..K-1;
 * -1 asks for the "no class" row, and so does labels = NULL for every
 * image, which makes these two calls equal to cd_decoder_forward and
 * cd_decoder_infer. Errors: those of cd_decoder_forward, plus
 * CD_ERR_INVALID_ARGUMENT (labels given to a decoder with no classes),
 * CD_ERR_SHAPE (labels not of N values), CD_ERR_RANGE (a label that is not
 * an integer in -1..K-1, named by index).
 */
CD_API cd_status cd_decoder_forward_labeled(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                            const cd_tensor *labels, cd_tensor *out);

/** cd_decoder_infer with labels, as cd_decoder_forward_labeled. */
CD_API cd_status cd_decoder_infer_labeled(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                          const cd_tensor *labels, cd_tensor *out);

/** The decoder's class count K (CD_DECODER_OPT_CLASSES), 0 for a decoder
 *  without class conditioning, -1 (with an error) for NULL. */
CD_API int64_t cd_decoder_class_count(const cd_decoder *d);

/**
 * Save the decoder (configuration and parameters) as a checkpoint file
 * (docs/checkpoint-format.md), atomically: on failure an existing file at
 * path is unchanged. Errors: CD_ERR_NOT_FOUND (missing folder), CD_ERR_IO.
 */
CD_API cd_status cd_decoder_save(cd_decoder *d, const char *path);

/**
 * Load a decoder saved by cd_decoder_save() (or converted from PyTorch by
 * examples/python/convert_torch.py) into a new decoder owned by the caller.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_IO, CD_ERR_FORMAT (not a checkpoint, a
 * truncated file, a bad configuration), CD_ERR_CHECKSUM, CD_ERR_VERSION
 * (a newer format), CD_ERR_SHAPE (a tensor's shape does not fit the
 * configuration; the message names it).
 */
CD_API cd_status cd_decoder_load(cd_decoder **out, const char *path);

/**
 * The T of the degradation the decoder was trained against: a decoder
 * learns one grid of times tau = t / T, and one trained for T = 200
 * sampled with T = 1000 gives garbage without any error. cd_trainer_create()
 * records it, files keep it (decoder.T), and cd_trainer_create(),
 * cd_model_save() and sampling (cd_sampler_sample, cd_sampler_restore)
 * refuse a degradation of another T with CD_ERR_INVALID_ARGUMENT naming
 * both. 0 means unknown (a fresh decoder, or a file written before the
 * entry existed): any T is then accepted. -1 (with an error) for NULL.
 */
CD_API int64_t cd_decoder_trained_T(const cd_decoder *d);

/**
 * What a decoder trained against the noise degradation outputs. The
 * sampler turns the output into a noise estimate with the schedule, so
 * every noise sampler works with every choice. Choose it before training
 * with CD_TRAINER_OPT_PREDICTION; files keep it (decoder.prediction).
 */
typedef enum cd_prediction {
    CD_PREDICT_INVALID = -1, /**< what cd_decoder_get_prediction returns on error */
    CD_PREDICT_NOISE = 0,    /**< eps, the report's (default)                 */
    CD_PREDICT_X0 = 1,       /**< the clean image x0                          */
    CD_PREDICT_V = 2         /**< v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0  */
} cd_prediction;

/**
 * The decoder's cd_prediction (CD_PREDICT_NOISE for a fresh decoder and
 * for every decoder of the deterministic degradations, which predict the
 * image as their target says); CD_PREDICT_INVALID (with an error) for NULL.
 */
CD_API cd_prediction cd_decoder_get_prediction(const cd_decoder *d);

/**
 * Given dout = dL/d(out) for the last forward, ADD dL/d(parameters) into
 * the parameter gradients (cd_params_grad; clear them with
 * cd_params_zero_grad) and, if dz is not NULL, overwrite dz with dL/dz
 * (dz must not be dout). A backward uses up what its forward saved (as
 * PyTorch frees its graph): each backward needs a forward of its own.
 * Errors: CD_ERR_STATE (no forward since the last backward or since the
 * shape changed, or the last pass was cd_decoder_infer), CD_ERR_SHAPE,
 * CD_ERR_INVALID_ARGUMENT (dz is dout),
 * CD_ERR_NOT_FINITE (a NaN or infinity in dout, named by element; the
 * gradients and dz are then untouched).
 */
CD_API cd_status cd_decoder_backward(cd_decoder *d, const cd_tensor *dout, cd_tensor *dz);

/* ------------------------------------------------------------------------ */
/* Schedules                                                                */
/* ------------------------------------------------------------------------ */

/**
 * A schedule: arrays beta_t and alpha-bar_t for t = 0..T. Normally beta_0 = 0, alpha-bar_0 = 1 and alpha-bar_t is the
 * product of (1 - beta_s) for s = 1..t, accumulated in double from the
 * stored float betas. Immutable after creation, so one schedule may be
 * shared by any number of threads.
 *
 * Betas must be finite and in (0, 1]. A beta of 1 is allowed because the
 * report's blur uses a constant schedule of 1, where beta is the blur's
 * standard deviation; the DDPM and DDIM samplers refuse such schedules.
 */
typedef struct cd_schedule cd_schedule;

typedef enum cd_schedule_kind {
    CD_SCHEDULE_INVALID = -1, /**< what cd_schedule_get_kind returns on error */
    CD_SCHEDULE_LINEAR = 0,
    CD_SCHEDULE_CONSTANT = 1,
    CD_SCHEDULE_COSINE = 2,
    CD_SCHEDULE_CUSTOM = 3,          /**< from beta_1..beta_T */
    CD_SCHEDULE_CONSTANT_REPORT = 4, /**< report preset, see below */
    CD_SCHEDULE_COSINE_REPORT = 5,   /**< report preset, see below */
    CD_SCHEDULE_ARRAYS = 6,          /**< both arrays verbatim (imports) */
    CD_SCHEDULE_LINEAR_REPORT = 7    /**< report preset, see below */
} cd_schedule_kind;

/** beta_t = beta_min + (beta_max - beta_min)(t - 1)/(T - 1); T = 1 gives
 *  beta_min. Defaults in the report: T = 1000, 1e-4, 0.02. */
CD_API cd_status cd_schedule_create_linear(cd_schedule **out, int64_t T, double beta_min,
                                           double beta_max);

/**
 * The report's linear schedule, in its own float32 arithmetic: beta_1..T
 * as PyTorch's float32 linspace(beta_min, beta_max, T) computes them on a
 * CPU, and alpha-bar_t = exp(cumsum(log(1 - beta))) over 0..t in float32,
 * summed in order. The preset ddpm-cnn-linear uses it. Against PyTorch
 * (Debian's python3-torch) beta agrees bit for bit, log(1 - beta) too, and
 * alpha-bar within 1 ulp (PyTorch's float32 exp is not correctly rounded);
 * alpha-bar_1000 of the report's (1e-4, 0.02) has the bits 0x38294660.
 * The formula of cd_schedule_create_linear() in double differs by 1 ulp in
 * beta at about 375 of its 1,000 steps, and up to 33 ulp in alpha-bar.
 */
CD_API cd_status cd_schedule_create_linear_report(cd_schedule **out, int64_t T, double beta_min,
                                                  double beta_max);

/** beta_t = c for t = 1..T, so alpha-bar_t = (1 - c)^t. */
CD_API cd_status cd_schedule_create_constant(cd_schedule **out, int64_t T, double c);

/**
 * The report's constant schedule, quirk included: beta_0 = c too and
 * alpha-bar_t = exp(cumsum(log(1 - beta))) over 0..t in float32, about
 * (1 - c)^(t + 1). The presets ddpm-cnn-good and ddpm-cnn-bad use it.
 */
CD_API cd_status cd_schedule_create_constant_report(cd_schedule **out, int64_t T, double c);

/**
 * Nichol and Dhariwal's cosine schedule: f(t) = cos^2(pi/2 (t/T + s)/(1 + s)),
 * beta_t = min(1 - f(t)/f(t - 1), beta_clip), then alpha-bar recomputed from
 * the clipped betas. Library defaults: s = 0.008, beta_clip = 0.999.
 * s must lie in [0, 1].
 */
CD_API cd_status cd_schedule_create_cosine(cd_schedule **out, int64_t T, double s,
                                           double beta_clip);

/**
 * The report's cosine preset (ddpm-unet-cosine): s = 0.008, beta_clip = 0.9
 * and alpha-bar_t = f(t)/f(0) NOT recomputed, so alpha-bar_T is about 4e-33.
 */
CD_API cd_status cd_schedule_create_cosine_report(cd_schedule **out, int64_t T);

/** A schedule from beta[0..T-1] = beta_1..beta_T. */
CD_API cd_status cd_schedule_create_custom(cd_schedule **out, const float *beta, int64_t T);

/**
 * A schedule from both arrays exactly as given, t = 0..T (T + 1 values
 * each, all finite and in [0, 1]). Imported report checkpoints need this:
 * their alpha-bar is not the product of their betas.
 */
CD_API cd_status cd_schedule_create_arrays(cd_schedule **out, const float *beta,
                                           const float *alpha_bar, int64_t T);

/** Free a schedule; NULL is a no-op. */
CD_API void cd_schedule_free(cd_schedule *s);

/** T, or -1 (with an error). */
CD_API int64_t cd_schedule_T(const cd_schedule *s);

/** The schedule's kind; CD_SCHEDULE_INVALID (with an error) for NULL. */
CD_API cd_schedule_kind cd_schedule_get_kind(const cd_schedule *s);

/** beta_t and alpha-bar_t for 0 <= t <= T (either output may be NULL). */
CD_API cd_status cd_schedule_at(const cd_schedule *s, int64_t t, float *beta, float *alpha_bar);

/** Copy both arrays (n must be T + 1; either output may be NULL). */
CD_API cd_status cd_schedule_copy_arrays(const cd_schedule *s, float *beta, float *alpha_bar,
                                         int64_t n);

/** An image dataset in memory with train, validation and test splits. */
typedef struct cd_dataset cd_dataset;

typedef enum cd_split { CD_SPLIT_TRAIN = 0, CD_SPLIT_VAL = 1, CD_SPLIT_TEST = 2 } cd_split;

/* ------------------------------------------------------------------------ */
/* Degradations                                                             */
/* ------------------------------------------------------------------------ */

/**
 * A degradation operator D(x, t) with D(x, 0) = x (docs/degradations.md).
 * It copies the schedule's arrays, so the schedule may be freed
 * after creation. Immutable: one operator may be shared by threads (each
 * with its own RNG).
 */
typedef struct cd_degradation cd_degradation;

typedef enum cd_degradation_kind {
    CD_DEGRADATION_INVALID = -1, /**< what cd_degradation_get_kind returns on error */
    CD_DEGRADATION_NOISE = 0,    /**< DDPM: sqrt(abar) x + sqrt(1 - abar) eps */
    CD_DEGRADATION_BLUR = 1,     /**< cold diffusion: t Gaussian blurs, sigma_i = beta_i */
    CD_DEGRADATION_PIXELATE = 2, /**< block averages of a size growing with t */
    CD_DEGRADATION_MASK = 3,     /**< a growing square hole in the centre */
    CD_DEGRADATION_FADE = 4      /**< sqrt(abar) x + (1 - sqrt(abar)) m */
} cd_degradation_kind;

/** How the blur treats the image border. */
typedef enum cd_padding {
    CD_PADDING_REFLECT = 0, /**< mirror without repeating the edge (the report's) */
    CD_PADDING_CIRCULAR = 1 /**< wrap around: preserves each image's mean */
} cd_padding;

/** What a decoder trained against an operator predicts. */
typedef enum cd_target {
    CD_TARGET_INVALID = -1, /**< what cd_degradation_get_target returns on error */
    CD_TARGET_NOISE = 0,    /**< the noise eps (the noise degradation) */
    CD_TARGET_IMAGE = 1     /**< the clean image x (deterministic degradations) */
} cd_target;

/** Gaussian noise with the schedule's alpha-bar. */
CD_API cd_status cd_degradation_create_noise(cd_degradation **out, const cd_schedule *s);

/**
 * Gaussian blur: D(x, t) = G_t * ... * G_1 * x, each G_i a kernel_size x
 * kernel_size Gaussian (odd size, 1..63; the report uses 11) with standard
 * deviation beta_i, sampled at integer offsets and normalised to sum 1, as
 * torchvision's GaussianBlur. Reflect padding needs images larger than
 * kernel_size / 2; planes of up to 128 x 128 pixels are supported.
 */
CD_API cd_status cd_degradation_create_blur(cd_degradation **out, const cd_schedule *s,
                                            int64_t kernel_size, cd_padding padding);

/**
 * Pixelate: with L = ceil(log2(max(H, W))) levels and s = L t / T,
 * k = floor(s), w = s - k:
 *   D(x, t) = (1 - w) P_{2^k}(x) + w P_{2^(k+1)}(x)   (w = 0 at k = L),
 * where P_f replaces each f x f block (aligned at the top-left corner; the
 * blocks of the last row and column may be cut short) by its mean, per
 * channel. P_1 is the identity, and P_{2^L} is each image's per-channel
 * mean: D(x, T) is a constant image. Only the schedule's T is used.
 */
CD_API cd_status cd_degradation_create_pixelate(cd_degradation **out, const cd_schedule *s);

/**
 * Mask: D(x, t) = M_t x with M_t(i, j) = clamp((d(i, j) - r_t) / w, 0, 1),
 * where d is the Chebyshev distance max(|i - (H-1)/2|, |j - (W-1)/2|) to
 * the image centre, R = max((H-1)/2, (W-1)/2), edge width w = edge_width
 * (> 0 pixels, finite) and r_t = -w + (t / T) (R + w): a square hole with a
 * soft edge that grows from nothing at t = 0 to the whole image at t = T,
 * where D(x, T) = 0. Only the schedule's T is used.
 */
CD_API cd_status cd_degradation_create_mask(cd_degradation **out, const cd_schedule *s,
                                            double edge_width);

/**
 * Fade: D(x, t) = sqrt(abar_t) x + (1 - sqrt(abar_t)) m, with m the mean
 * image (C x H x W, or 1 x C x H x W; finite), which is copied. Images
 * given to the operator must have m's shape (CD_ERR_SHAPE otherwise).
 * cd_dataset_mean_image() computes m.
 */
CD_API cd_status cd_degradation_create_fade(cd_degradation **out, const cd_schedule *s,
                                            const cd_tensor *mean_image);

/** Free an operator; NULL is a no-op. */
CD_API void cd_degradation_free(cd_degradation *d);

/** The operator's kind; CD_DEGRADATION_INVALID (with an error) for NULL. */
CD_API cd_degradation_kind cd_degradation_get_kind(const cd_degradation *d);

/** What its decoder predicts; CD_TARGET_INVALID (with an error) for NULL. */
CD_API cd_target cd_degradation_get_target(const cd_degradation *d);

/** The schedule's T, or -1 (with an error). */
CD_API int64_t cd_degradation_T(const cd_degradation *d);

/**
 * Copy the operator's schedule arrays beta_0..beta_T and alpha-bar_0..
 * alpha-bar_T (n must be T + 1; either output may be NULL), e.g. to
 * rebuild it with cd_schedule_create_arrays() or to plot a loaded model's
 * schedule. Errors: CD_ERR_INVALID_ARGUMENT (NULL d), CD_ERR_SHAPE (n).
 */
CD_API cd_status cd_degradation_copy_schedule(const cd_degradation *d, float *beta,
                                              float *alpha_bar, int64_t n);

/**
 * z = D(x, t[n]) for each sample n of x (N x C x H x W; t holds n_t = N
 * steps in 0..T). The noise operator draws eps ~ N(0, I) from rng and, if
 * eps is not NULL, returns it there (the training target); z may then be
 * x. The deterministic operators ignore rng (may be NULL), take no eps,
 * and z may be x.
 * Errors: CD_ERR_SHAPE, CD_ERR_RANGE (a t outside 0..T), CD_ERR_NOT_FINITE
 * (a NaN or infinite pixel), CD_ERR_INVALID_ARGUMENT, CD_ERR_UNSUPPORTED
 * (a blur plane above 128 x 128).
 */
CD_API cd_status cd_degradation_apply(const cd_degradation *d, const cd_tensor *x, const int64_t *t,
                                      int64_t n_t, cd_rng *rng, cd_tensor *z, cd_tensor *eps);

/*
 * The z_T prior, which unconditional sampling starts from.
 *   noise:  z_T ~ N(0, I).
 *   others: z_T = B + c + jitter xi per sample, with B = D(0, T) (0 for
 *           blur, pixelate and mask; (1 - sqrt(abar_T)) m for fade), one
 *           constant c ~ N(mean, std^2) per sample and xi ~ N(0, I) per
 *           pixel. All four operators are affine, D(x, T) = A x + B, so
 *           fitting (mean, std) to the per-image means of D(x, T) - B over
 *           the training images fits c (docs/degradations.md). The defaults before
 *           a fit are the report's MNIST blur values mean -0.36, std 0.05,
 *           jitter 0.002 for blur, and 0, 0, 0.002 for the others.
 * The prior is part of the operator and is saved with it in checkpoints.
 * Setting or fitting it is not thread-safe against concurrent use of d.
 */

/**
 * Fit (mean, std) of the prior to the first max_images images (0: all) of
 * a dataset split in its natural order: the mean and the population
 * standard deviation (divisor n) of the per-image means of D(x, T) - B,
 * in double. The jitter is kept. For the noise operator this does nothing
 * and returns CD_OK (its prior is exact).
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (max_images < 0, an empty
 * split), CD_ERR_SHAPE (images the operator cannot take), CD_ERR_UNSUPPORTED
 * (a blur plane above 128 x 128), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_degradation_fit_prior(cd_degradation *d, const cd_dataset *ds, cd_split split,
                                          int64_t max_images);

/**
 * Set the prior of a deterministic operator (finite mean, std >= 0 and
 * jitter >= 0, else CD_ERR_RANGE or CD_ERR_NOT_FINITE). A set prior counts
 * as fitted: cd_trainer_fit() will not refit it. The noise operator's
 * prior is fixed (CD_ERR_UNSUPPORTED).
 */
CD_API cd_status cd_degradation_set_prior(cd_degradation *d, double mean, double std,
                                          double jitter);

/**
 * Read the prior: (0, 1, 0) for noise. fitted (may be NULL) gets 1 after
 * cd_degradation_fit_prior() or cd_degradation_set_prior(), else 0.
 */
CD_API cd_status cd_degradation_get_prior(const cd_degradation *d, double *mean, double *std,
                                          double *jitter, int32_t *fitted);

/**
 * Draw z_T from the prior into z (N x C x H x W; for fade, m's shape per
 * sample). Draws from rng: noise, N x C x H x W normals; the others, N
 * normals for the constants first, then N x C x H x W for the jitter.
 */
CD_API cd_status cd_degradation_sample_prior(const cd_degradation *d, cd_rng *rng, cd_tensor *z);

/* ------------------------------------------------------------------------ */
/* Samplers                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * A sampler runs a reverse chain (docs/sampling.md) for one
 * degradation, driven by a predictor: a cd_decoder or a user function. The
 * predictor gets z_t and tau = (float)t / T (T of the degradation; one value
 * per sample) and returns eps-hat for the noise degradation
 * (CD_TARGET_NOISE) or x-hat for the deterministic ones (CD_TARGET_IMAGE).
 *
 * Algorithms, for t = t_start..1 (the chain ends at z_0, the result):
 *   DDPM   z <- (z - beta_t / sqrt(1 - abar_t) eps-hat) / sqrt(1 - beta_t),
 *          then z += sigma_t xi (xi ~ N(0, I)) for t > 1, with sigma_t^2 =
 *          beta_t, or the posterior variance
 *          beta_t (1 - abar_{t-1}) / (1 - abar_t).
 *   DDIM   S steps t_0 > t_1 > ... > t_{S-1} = 1, then 0 (see
 *          cd_sampler_step_times); from t to the next step p (abar_0 = 1):
 *          x0 = (z - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t), clipped to
 *          [lo, hi] if clipping is on;
 *          sigma = eta sqrt((1 - abar_p)/(1 - abar_t)) sqrt(1 - abar_t/abar_p);
 *          z <- sqrt(abar_p) x0 + sqrt(1 - abar_p - sigma^2) eps-hat
 *               + sigma xi.
 *   COLD1  z_{t-1} = D(x-hat, t - 1).
 *   COLD2  z_{t-1} = z_t - D(x-hat, t) + D(x-hat, t - 1) (the report's).
 *          The blur computes D(x-hat, t - 1) once and blurs a copy once
 *          more for D(x-hat, t): t blurs per step, not 2t - 1.
 *   DIRECT one prediction: the result is x-hat = g(z_{t_start}, t_start/T).
 * DDPM and DDIM need the noise degradation, the others a deterministic one
 * (CD_ERR_UNSUPPORTED at creation otherwise). Coefficients are computed in
 * double from the degradation's float schedule; each pixel update is done in
 * double and rounded once.
 *
 * Randomness: every draw comes from the caller's rng, in a fixed order, so
 * a seed gives the same result for every thread count. Draws are made only
 * where the formulas need them: DDIM with eta = 0 and the cold samplers
 * draw nothing in the chain.
 *
 * Threads: a sampler, its rng and its decoder are used by one thread at a
 * time. The degradation is only read and may be shared.
 */
typedef struct cd_sampler cd_sampler;

typedef enum cd_sampler_kind {
    CD_SAMPLER_INVALID = -1, /**< what cd_sampler_get_kind returns on error   */
    CD_SAMPLER_DDPM = 0,     /**< DDPM ancestral (report Algorithm 2)        */
    CD_SAMPLER_DDIM = 1,     /**< DDIM with S steps and eta                  */
    CD_SAMPLER_COLD1 = 2,    /**< cold diffusion algorithm 1                 */
    CD_SAMPLER_COLD2 = 3,    /**< cold diffusion algorithm 2 (the report's)  */
    CD_SAMPLER_DIRECT = 4    /**< one prediction from z_{t_start}            */
} cd_sampler_kind;

/**
 * Sampler options (see Options). A key a kind does not use is accepted and
 * ignored.
 *
 * The defaults are safe ones: every sampler that forms a clean-image
 * estimate x0-hat (DDIM, cold 1 and 2, direct) clips it to the data range
 * [-0.5, 0.5] (pixels p/255 - 0.5), and DDIM takes the setting that
 * measured best on MNIST (docs/sampling.md): 50 steps (T when smaller)
 * with eta 1. Unclipped, an under-trained noise model's x0-hat divides its
 * error by sqrt(abar_T) and deterministic DDIM diverges. DDPM's ancestral
 * step forms no x0-hat and is never clipped. Set CD_SAMPLER_OPT_CLIP to 0
 * for the algorithms exactly as published.
 */
typedef enum cd_sampler_option {
    CD_SAMPLER_OPT_STEPS = 0,              /**< int, DDIM: steps S, 1..T (default
                                                min(50, T); above T is CD_ERR_RANGE) */
    CD_SAMPLER_OPT_ETA = 1,                /**< real, DDIM: eta in [0, 1] (default 1) */
    CD_SAMPLER_OPT_POSTERIOR_VARIANCE = 2, /**< bool, DDPM: 1 for the
                                                posterior variance, 0 for beta
                                                (default)                            */
    CD_SAMPLER_OPT_CLIP = 3,               /**< bool, all but DDPM: 1 clips x0-hat to
                                                [lo, hi] (default 1)                 */
    CD_SAMPLER_OPT_CLIP_LO = 4,            /**< real: clip range low end (default -0.5) */
    CD_SAMPLER_OPT_CLIP_HI = 5,            /**< real: clip range high end (default 0.5) */
    CD_SAMPLER_OPT_GUIDANCE = 6,           /**< real, [0, 100]: classifier-free
                                                guidance scale w for samplers given
                                                labels (default 1); see
                                                cd_sampler_set_labels               */
    CD_SAMPLER_OPT_REDERIVE = 7            /**< bool, DDIM with clipping: 1 steps
                                                with the noise that the clipped
                                                x0-hat implies, as GLIDE does, where
                                                0 keeps the model's (default 0);
                                                guidance above 1 needs 1            */
} cd_sampler_option;

/**
 * Ask a sampler driven by a decoder with classes for images of given
 * classes: labels holds one class per image of the batch (floats, integers
 * in -1..K-1, -1 for "no class"), copied; NULL forgets them. Each step then
 * mixes the decoder's conditional output c (these labels) and its
 * unconditional output u (the "no class" row) as
 *
 *     u + w (c - u),     w = CD_SAMPLER_OPT_GUIDANCE,
 *
 * in whatever the decoder predicts (noise, x0 or v: the mix commutes with
 * the conversion between them). w = 0 is the unconditional sampler, bit
 * for bit, and w = 1 the plain conditional one; each runs the decoder once
 * per step, any other w twice. w above 1 trades diversity for samples
 * that look more like their class (w = 1 + the w of Ho and Salimans'
 * paper); clipped DDIM then needs CD_SAMPLER_OPT_REDERIVE, or the samples
 * leave their class. Applies to cd_sampler_sample and cd_sampler_restore.
 * Errors:
 * CD_ERR_INVALID_ARGUMENT (NULL s), CD_ERR_SHAPE (not rank 1), CD_ERR_RANGE
 * (a value that is not an integer of at least -1), CD_ERR_OUT_OF_MEMORY.
 * Sampling then also checks that a decoder with classes is set (not a
 * predictor function, which takes no labels), that labels has one value per
 * image and that every label is below the decoder's class count.
 */
CD_API cd_status cd_sampler_set_labels(cd_sampler *s, const cd_tensor *labels);

/**
 * A user predictor: write into out (N x C x H x W, the shape of z) the
 * prediction for z at times tau (N floats, tau = t/T), eps-hat or x-hat as
 * the degradation's cd_target says. z and out never overlap; out must keep
 * its shape. Return CD_OK, or a negative cd_status (ideally after setting
 * a message through a failing libcolddiff call): the sampler stops and
 * returns that status, naming the step, with the predictor's message.
 */
typedef cd_status (*cd_predictor_fn)(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                     void *user);

/**
 * Create a sampler of `kind` for the degradation deg, which is borrowed: it
 * must outlive the sampler. The noise samplers check the schedule:
 * 0 < abar_t < 1 and beta_t < 1 for t = 1..T (CD_ERR_RANGE otherwise).
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL, unknown kind), CD_ERR_UNSUPPORTED
 * (kind and degradation do not match), CD_ERR_RANGE, CD_ERR_OUT_OF_MEMORY.
 * The caller owns *out and frees it with cd_sampler_free().
 */
CD_API cd_status cd_sampler_create(cd_sampler **out, cd_sampler_kind kind,
                                   const cd_degradation *deg);

/** Free a sampler (not its degradation or predictor); NULL is a no-op. */
CD_API void cd_sampler_free(cd_sampler *s);

/** The sampler's kind; CD_SAMPLER_INVALID (with an error) for NULL. */
CD_API cd_sampler_kind cd_sampler_get_kind(const cd_sampler *s);

/** Describe a key (name, type, range, default); see cd_option_info. */
CD_API cd_status cd_sampler_option_info(cd_sampler_option key, cd_option_info *info);

/**
 * Set an integer or boolean option (STEPS, POSTERIOR_VARIANCE, CLIP) or a
 * real one (ETA, CLIP_LO, CLIP_HI). Errors: CD_ERR_INVALID_ARGUMENT (unknown
 * key, or a key of the other type), CD_ERR_NOT_FINITE (a NaN or infinite
 * real), CD_ERR_RANGE (outside the bounds; steps above the degradation's
 * T). clip lo <= hi is checked when sampling, so the two ends may be set in
 * either order.
 */
CD_API cd_status cd_sampler_set_int(cd_sampler *s, cd_sampler_option key, int64_t value);
CD_API cd_status cd_sampler_set_real(cd_sampler *s, cd_sampler_option key, double value);

/** Read an option of the matching type (CD_ERR_INVALID_ARGUMENT otherwise). */
CD_API cd_status cd_sampler_get_int(const cd_sampler *s, cd_sampler_option key, int64_t *value);
CD_API cd_status cd_sampler_get_real(const cd_sampler *s, cd_sampler_option key, double *value);

/**
 * Drive the sampler with decoder d (borrowed: it must outlive its use
 * here; its forward() mutates its workspace, so it is not shared with
 * another thread meanwhile). Replaces any earlier decoder or predictor;
 * NULL removes it. A decoder trained for another T than the degradation's
 * (cd_decoder_trained_T) is refused here with CD_ERR_INVALID_ARGUMENT, and
 * cd_sampler_sample() and cd_sampler_restore() check again before any
 * work (a fresh decoder learns its T when a trainer takes it).
 */
CD_API cd_status cd_sampler_set_decoder(cd_sampler *s, cd_decoder *d);

/**
 * Drive the sampler with fn(z, tau, out, user). Replaces any earlier
 * decoder or predictor; fn = NULL removes it.
 */
CD_API cd_status cd_sampler_set_predictor(cd_sampler *s, cd_predictor_fn fn, void *user);

/**
 * Called by cd_sampler_sample() and cd_sampler_restore() after each step of
 * the chain with the steps done so far (1..steps) and the chain's length
 * (cd_sampler_step_times). Return CD_OK to go on; any other status stops
 * the chain, and the sampling call returns that status (CD_ERR_CANCELLED
 * by convention) with a message naming the step. out then holds the chain
 * state after that step. A progress bar or a Ctrl-C check belongs here.
 */
typedef cd_status (*cd_sampler_progress_fn)(int64_t step, int64_t steps, void *user);

/**
 * Report progress to fn(step, steps, user) and let it cancel; fn = NULL
 * removes it. The callback runs on the calling thread, between steps.
 */
CD_API cd_status cd_sampler_set_progress(cd_sampler *s, cd_sampler_progress_fn fn, void *user);

/**
 * The times t at which the chain calls the predictor when it restores from
 * t_start (1..T), in order: t_start, ..., 1 for DDPM and the cold samplers;
 * t_start alone for DIRECT; for DDIM with S' = min(S, t_start) steps,
 * t_i = t_start - floor(i (t_start - 1)/(S' - 1) + 1/2) for i = 0..S'-1
 * (exact integer arithmetic; t_start alone when S' = 1). The chain then
 * steps to 0. *n gets the count; times (capacity entries; NULL if capacity
 * is 0) gets as many as fit (CD_ERR_SHAPE if not all did).
 */
CD_API cd_status cd_sampler_step_times(const cd_sampler *s, int64_t t_start, int64_t *times,
                                       int64_t capacity, int64_t *n);

/**
 * Unconditional sampling: draw z_T from the degradation's prior into out
 * (N x C x H x W, any N), then run the chain from T down to 0; out holds
 * z_0. z_T is drawn exactly as cd_degradation_sample_prior() draws it
 * (fit the prior first: cd_degradation_fit_prior()).
 * Errors: CD_ERR_STATE (no predictor), CD_ERR_INVALID_ARGUMENT (NULL
 * argument, rng included), CD_ERR_SHAPE, CD_ERR_RANGE (clip lo > hi),
 * CD_ERR_UNSUPPORTED (a blur plane above 128 x 128), CD_ERR_NOT_FINITE (the predictor produced NaN or infinity),
 * CD_ERR_OUT_OF_MEMORY, or the predictor's own status.
 */
CD_API cd_status cd_sampler_sample(cd_sampler *s, cd_rng *rng, cd_tensor *out);

/**
 * Conditional restoration: z = D(x, t_start), then the chain down to 0;
 * out (the shape of x, not x itself) gets z_0. rng may be NULL for a
 * deterministic degradation; the noise degradation needs it.
 *
 * Snapshots, for the n_snap >= 0 times snap_times[v] in 0..t_start (any
 * order, repeats allowed). Each snapshot tensor is n_snap x N x C x H x W
 * or NULL; entry v gets:
 *   snap_z     the chain's latent z_t at the first time t <= snap_times[v]
 *              that the chain visits (cd_sampler_step_times; 0 after the
 *              last step). DDPM and the cold samplers visit every t.
 *   snap_xhat  the clean-image estimate x-hat made at that same t (the
 *              predictor's output, or for the noise samplers
 *              (z - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t); clipped
 *              when CD_SAMPLER_OPT_CLIP is on, except DDPM's); at t = 0, z_0
 *              itself.
 *   snap_fwd   D(x, snap_times[v]) exactly, drawn from rng after the chain
 *              has finished, so it is independent of the chain and asking
 *              for it does not change out.
 * Random draws in order: D(x, t_start), the chain, the forward snapshots.
 * Errors: as cd_sampler_sample(), plus CD_ERR_RANGE (t_start outside
 * 1..T, a snapshot time outside 0..t_start), CD_ERR_NOT_FINITE (a pixel of
 * x) and CD_ERR_INVALID_ARGUMENT (out is x, two snapshot arguments are the
 * same tensor, snap_times NULL with n_snap > 0, or snapshot tensors with
 * n_snap = 0).
 */
CD_API cd_status cd_sampler_restore(cd_sampler *s, const cd_tensor *x, int64_t t_start, cd_rng *rng,
                                    cd_tensor *out, const int64_t *snap_times, int64_t n_snap,
                                    cd_tensor *snap_z, cd_tensor *snap_xhat, cd_tensor *snap_fwd);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                 */
/* ------------------------------------------------------------------------ */

/* cd_dataset and cd_split are declared before the degradations, which
 * fit their priors to a dataset. */

/**
 * Load MNIST from a directory holding train-images-idx3-ubyte,
 * train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte,
 * each raw or gzipped (name + ".gz"). Pixels become p/255 - 0.5.
 * Labels must be 0..9. Payloads above 4 GiB are refused as CD_ERR_FORMAT.
 * Right after loading, the whole training set is the train split and the
 * validation split is empty; call cd_dataset_split().
 * Errors: CD_ERR_NOT_FOUND (a file missing, named in the message),
 * CD_ERR_FORMAT (bad magic, dimensions or length, with file and offset),
 * CD_ERR_SHAPE (images and labels disagree), CD_ERR_IO.
 */
CD_API cd_status cd_dataset_load_mnist(cd_dataset **out, const char *dir);

/**
 * Load one pair of IDX files (raw or gzipped, chosen by content) as the
 * training pool, and optionally a second pair as the test split
 * (test_images and test_labels both NULL for none). Labels may be 0..255.
 * Image files are unsigned bytes of rank 3, N x H x W, of any H and W
 * (Fashion-MNIST and EMNIST are N x 28 x 28; EMNIST's images load as
 * stored, transposed); the dataset has one channel. A rank-4 (colour) IDX
 * file is refused as CD_ERR_FORMAT: its layout is not self-describing, so
 * colour data comes as a PNG folder (cd_dataset_load_folder). The two
 * pairs must agree on H and W (CD_ERR_SHAPE). The classes have no names
 * (cd_dataset_class_count() is 0). Errors: as cd_dataset_load_mnist().
 */
CD_API cd_status cd_dataset_load_idx(cd_dataset **out, const char *train_images,
                                     const char *train_labels, const char *test_images,
                                     const char *test_labels);

/**
 * Load a folder of PNG images (docs/datasets.md) as the training pool; the
 * validation and test splits are empty (call cd_dataset_split()).
 *
 * Labels: when dir holds sub-folders, each one is a class, numbered in the
 * byte-wise (strcmp) order of the folder names, and the images of a class
 * are taken in the same order of their file names; class names are the
 * folder names (cd_dataset_class_name()). PNG files directly beside the
 * sub-folders are refused, and a sub-folder without PNG files too. When
 * dir holds no sub-folder, every image has label 0 and the dataset has no
 * class names. At most 256 classes. Names starting with '.' are skipped,
 * and so are files whose name does not end in ".png" (any case) and
 * folders below the sub-folders.
 *
 * Pixels: 8-bit values p become p/255 - 0.5; 16-bit ones are scaled to 8
 * bits first (rounded), palettes and low bit depths expanded, alpha
 * dropped; no gamma or colour-profile correction. channels is 1 (grey) or
 * 3 (RGB), or 0 to take it from the first image (1 for a grey image, with
 * or without alpha, 3 for any other). A colour image loaded as grey gets
 * the ITU-R BT.601 luma, (299 R + 587 G + 114 B + 500) / 1000 rounded
 * down; a grey image loaded as RGB is repeated in the three channels.
 *
 * Size: with crop = 0 every image must have the first one's size; with
 * crop > 0 each image is centre-cropped to crop x crop (the top-left
 * corner at ((H - crop) / 2, (W - crop) / 2), rounded down). Images above
 * 4096 x 4096 are refused.
 *
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL out or dir), CD_ERR_RANGE
 * (channels not 0, 1 or 3; crop < 0 or above 4096; an image larger than
 * 4096 in either side or smaller than crop, or more than 256 classes;
 * the message names the file), CD_ERR_NOT_FOUND (dir missing, no PNG file
 * in dir, a class folder without PNG files), CD_ERR_SHAPE (two images of
 * different sizes with crop = 0: the message names both files and sizes),
 * CD_ERR_FORMAT (a file that is not a PNG, or is corrupt or truncated:
 * the message names it and gives libpng's reason; PNG files beside class
 * folders), CD_ERR_IO (dir is not a folder, or cannot be read),
 * CD_ERR_OVERFLOW (the images as floats would not fit in memory's address
 * space), CD_ERR_OUT_OF_MEMORY (libpng's allocations included).
 */
CD_API cd_status cd_dataset_load_folder(cd_dataset **out, const char *dir, int64_t channels,
                                        int64_t crop);

/** Free a dataset; NULL is a no-op. */
CD_API void cd_dataset_free(cd_dataset *ds);

/**
 * The number of named classes: the class folders of
 * cd_dataset_load_folder(), 10 ("0" to "9") for cd_dataset_load_mnist(),
 * 0 for cd_dataset_load_idx() and a folder without sub-folders; -1 (with
 * an error) for a NULL ds.
 */
CD_API int64_t cd_dataset_class_count(const cd_dataset *ds);

/**
 * The name of class k (the label value k), borrowed from ds. NULL with
 * CD_ERR_INVALID_ARGUMENT (NULL ds) or CD_ERR_RANGE (k outside
 * 0..cd_dataset_class_count() - 1).
 */
CD_API const char *cd_dataset_class_name(const cd_dataset *ds, int64_t k);

/**
 * Split the training pool into train and validation with a random
 * permutation seeded by seed: perm = 0..n-1, then for i = n-1 down to 1 one
 * cd_rng_int_range(rng, &j, 1, 0, i) call on a generator seeded with seed,
 * and swap perm[i], perm[j]. The first round(n*(1-val_fraction)) entries
 * train, the rest validate, both in permutation order. val_fraction is
 * finite and in [0, 1) (CD_ERR_RANGE otherwise); a tiny pool may round to
 * an empty train split. Replaces any earlier split and resets both epoch
 * orders; a failed call leaves the old split.
 */
CD_API cd_status cd_dataset_split(cd_dataset *ds, double val_fraction, uint64_t seed);

/**
 * Use an explicit split: a text file with one training-pool index per line,
 * naming the train split in order; every other index validates (in
 * ascending order). Spaces around a number and CRLF endings are accepted.
 * Errors: CD_ERR_FORMAT (duplicate, out-of-range or non-numeric index, an
 * empty line or file; the message names the line), CD_ERR_NOT_FOUND, CD_ERR_IO.
 */
CD_API cd_status cd_dataset_split_from_file(cd_dataset *ds, const char *path);

/**
 * Keep only the first n images of a split in its natural order (n at or
 * above the count keeps all); the epoch order restarts from the natural
 * order. For short runs on part of the data (colddiff train
 * --train-limit). Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (n < 0).
 */
CD_API cd_status cd_dataset_truncate(cd_dataset *ds, cd_split split, int64_t n);

/** Number of images in a split, or -1 (with an error). */
CD_API int64_t cd_dataset_count(const cd_dataset *ds, cd_split split);

/** Image height, width and channels, or -1 (with an error). */
CD_API int64_t cd_dataset_height(const cd_dataset *ds);
CD_API int64_t cd_dataset_width(const cd_dataset *ds);
CD_API int64_t cd_dataset_channels(const cd_dataset *ds);

/**
 * Draw a fresh epoch order for a split from rng: a Fisher-Yates shuffle of
 * the split's natural order (as in cd_dataset_split). Each call starts from
 * the natural order, so the result depends only on rng's state: restoring
 * an RNG state reproduces the epoch. Until the first shuffle the order is
 * the natural order.
 */
CD_API cd_status cd_dataset_shuffle(cd_dataset *ds, cd_split split, cd_rng *rng);

/**
 * Fill a mini-batch with the images at epoch positions first, first+1, ...
 * images is N x C x H x W (or N x H x W when C is 1); labels, if not NULL,
 * is a tensor of N floats holding class ids. Rows past the end of the split
 * are zero-filled and *filled (if not NULL) tells how many are real (0 on
 * failure). Allocates nothing. Errors: CD_ERR_SHAPE (tensor shapes),
 * CD_ERR_RANGE (first outside [0, count)).
 */
CD_API cd_status cd_dataset_fill_batch(const cd_dataset *ds, cd_split split, int64_t first,
                                       cd_tensor *images, cd_tensor *labels, int64_t *filled);

/**
 * The mean of a split's images, accumulated in double and rounded once,
 * into out (C x H x W, or 1 x C x H x W): the fade operator's m.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (an empty split),
 * CD_ERR_SHAPE.
 */
CD_API cd_status cd_dataset_mean_image(const cd_dataset *ds, cd_split split, cd_tensor *out);

/**
 * Copy the images at split indices idx[0..n-1] (the split's natural order,
 * not the epoch order) into images (n x C x H x W, or n x H x W when C is
 * 1); labels (n floats) may be NULL. All indices are checked before anything
 * is written. Errors: CD_ERR_RANGE (n < 1, or an index outside the split;
 * the message names its position), CD_ERR_SHAPE, CD_ERR_INVALID_ARGUMENT.
 */
CD_API cd_status cd_dataset_gather(const cd_dataset *ds, cd_split split, const int64_t *idx,
                                   int64_t n, cd_tensor *images, cd_tensor *labels);

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * A trainer: a decoder, the degradation it learns to undo, and an Adam
 * optimiser. One trainer per thread.
 */
typedef struct cd_trainer cd_trainer;

/** The loss a trainer minimises (CD_TRAINER_OPT_LOSS). */
typedef enum cd_loss {
    CD_LOSS_MSE = 0, /**< mean squared error (the report's) */
    CD_LOSS_L1 = 1   /**< mean absolute error */
} cd_loss;

/**
 * Trainer options (see Options). Keys 0..15 are the optimiser's: Adam in
 * PyTorch's arithmetic, defaults lr 2e-4, betas 0.9 and 0.999, eps 1e-8, no
 * weight decay, no clipping, no EMA and no warm-ups.
 */
typedef enum cd_trainer_option {
    CD_TRAINER_OPT_LR = 0,             /**< real, (0, inf), default 2e-4             */
    CD_TRAINER_OPT_BETA1 = 1,          /**< real, [0, 1), default 0.9                */
    CD_TRAINER_OPT_BETA2 = 2,          /**< real, [0, 1), default 0.999              */
    CD_TRAINER_OPT_EPS = 3,            /**< real, (0, inf), default 1e-8             */
    CD_TRAINER_OPT_WEIGHT_DECAY = 4,   /**< real, [0, inf), default 0                */
    CD_TRAINER_OPT_DECOUPLED = 5,      /**< bool: 0 Adam's L2 decay, 1 AdamW         */
    CD_TRAINER_OPT_CLIP_NORM = 6,      /**< real: max global gradient norm; 0 = off  */
    CD_TRAINER_OPT_EMA_DECAY = 7,      /**< real: EMA of the weights; 0 = off (0.995
                                            typical)                                 */
    CD_TRAINER_OPT_LR_WARMUP = 8,      /**< int: steps over which lr ramps up
                                            linearly from lr/W to lr; 0 = off        */
    CD_TRAINER_OPT_EMA_WARMUP = 9,     /**< bool: 1 makes the EMA decay of step t
                                            min(d, (1+t)/(10+t)), so short runs do
                                            not keep the random start; 0 = off      */
    CD_TRAINER_OPT_T_MAX = 16,         /**< int: draw t from 1..t_max; 0 = T
                                            (default). The report's ddpm-cnn-good
                                            and -bad use T - 1                       */
    CD_TRAINER_OPT_T_PER_BATCH = 17,   /**< bool: 1 draws one t per batch (the
                                            report's blur run); 0 (default) one per
                                            image                                   */
    CD_TRAINER_OPT_LOSS = 18,          /**< choice, a cd_loss (default MSE)          */
    CD_TRAINER_OPT_VAL_BATCH = 19,     /**< int: batch size of cd_trainer_eval_loss
                                            (128); a fit's stop request waits for
                                            one batch                                */
    CD_TRAINER_OPT_BATCH = 20,         /**< int: batch size of cd_trainer_fit (128)  */
    CD_TRAINER_OPT_PREDICTION = 21,    /**< choice, a cd_prediction: the noise
                                            degradation's decoder target (default
                                            noise); only before the first step      */
    CD_TRAINER_OPT_LABEL_DROPOUT = 22, /**< real, [0, 1]: for a decoder with
                                            classes, the rate at which a training
                                            label is replaced by "no class" (0.1),
                                            so the decoder also learns the
                                            unconditional model guidance needs      */
    CD_TRAINER_OPT_BUCKET = 23         /**< int: floats per gradient sum when
                                            distributed (cd_trainer_set_distributed);
                                            a bucket is summed as soon as backward
                                            has finished its gradients, overlapping
                                            the rest; 0 = one sum after backward
                                            (default 262144, 1 MiB)                 */
} cd_trainer_option;

/**
 * Make a trainer for dec and deg, which it borrows: both must outlive the
 * trainer, which changes dec's weights as it trains. The decoder records
 * deg's T as the T it is trained for (cd_decoder_trained_T).
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL, or a decoder trained for another
 * T: the message names both), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_trainer_create(cd_trainer **out, cd_decoder *dec, cd_degradation *deg);

/**
 * Free a trainer; NULL is a no-op. The decoder and degradation it was
 * created with are the caller's to free, after it; those of a loaded
 * trainer (cd_trainer_load) go with it.
 */
CD_API void cd_trainer_free(cd_trainer *tr);

/** Describe a key (name, type, range, default); see cd_option_info. */
CD_API cd_status cd_trainer_option_info(cd_trainer_option key, cd_option_info *info);

/**
 * Set an integer, boolean or choice option (_int) or a real one (_real).
 * Errors: CD_ERR_INVALID_ARGUMENT (unknown key, a key of the other type),
 * CD_ERR_NOT_FINITE, CD_ERR_RANGE (outside the bounds; t_max above T),
 * CD_ERR_STATE (the prediction after the first step). A failed call keeps
 * the old value.
 */
CD_API cd_status cd_trainer_set_int(cd_trainer *tr, cd_trainer_option key, int64_t value);
CD_API cd_status cd_trainer_set_real(cd_trainer *tr, cd_trainer_option key, double value);

/** Read an option of the matching type (CD_ERR_INVALID_ARGUMENT otherwise). */
CD_API cd_status cd_trainer_get_int(const cd_trainer *tr, cd_trainer_option key, int64_t *value);
CD_API cd_status cd_trainer_get_real(const cd_trainer *tr, cd_trainer_option key, double *value);

/** The trainer's decoder and degradation (borrowed; live as long as tr). */
CD_API cd_decoder *cd_trainer_decoder(cd_trainer *tr);
CD_API cd_degradation *cd_trainer_degradation(cd_trainer *tr);

/** Optimiser steps taken, or -1 (with an error). */
CD_API int64_t cd_trainer_steps(const cd_trainer *tr);

/**
 * Overwrite the decoder's weights with their EMA (CD_TRAINER_OPT_EMA_DECAY),
 * as PyTorch users do with ema.copy_to(model.parameters()) before
 * sampling. Training may continue afterwards, from the EMA weights.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FOUND (no EMA: the decay is
 * 0, or no step has run since it was set, or the checkpoint holds none).
 */
CD_API cd_status cd_trainer_copy_ema(cd_trainer *tr);

/**
 * Exchange the decoder's weights with their EMA, without losing either:
 * afterwards the decoder samples, validates and tests with the average,
 * and a second call puts the training weights back. While the EMA is in,
 * cd_trainer_step, cd_trainer_fit, cd_trainer_save, cd_trainer_export and
 * cd_trainer_copy_ema fail with CD_ERR_STATE, since each would take the
 * average for the training weights. An epoch callback of cd_trainer_fit
 * may swap in and out (to draw sample grids from the EMA, say) if it swaps
 * back before it returns.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FOUND (no EMA, as
 * cd_trainer_copy_ema).
 */
CD_API cd_status cd_trainer_swap_ema(cd_trainer *tr);

/** 1 while cd_trainer_swap_ema has the EMA in the decoder, 0 otherwise, or -1
 *  (with an error) for a NULL tr. */
CD_API int32_t cd_trainer_ema_swapped(const cd_trainer *tr);

/**
 * One step of Algorithm 1 on a batch of clean images (N x C x H x W): draw
 * t (per sample or per batch) and the noise from rng, degrade, predict,
 * take the loss against eps (noise) or x (deterministic degradations),
 * backpropagate and update the weights. *loss gets the batch loss.
 * Errors: CD_ERR_SHAPE, CD_ERR_NOT_FINITE (a NaN or infinite pixel; a NaN
 * or infinite loss, named with the first image whose prediction is not
 * finite; a NaN or infinite gradient; an update that would leave a NaN or
 * an infinity in a weight, an Adam moment or the EMA, e.g. from a huge
 * learning rate), CD_ERR_OUT_OF_MEMORY (the first step of a batch size
 * allocates; later ones do not). On every error the weights, Adam's state
 * and the step count are unchanged, so the trainer can be saved or used
 * on; the generator may have advanced. Weights that stay finite but grow
 * so large that the next prediction overflows are caught by the next
 * step's loss.
 */
CD_API cd_status cd_trainer_step(cd_trainer *tr, const cd_tensor *images, cd_rng *rng,
                                 double *loss);

/**
 * cd_trainer_step for a decoder with classes: labels holds the N images'
 * classes (floats, integers in -1..K-1 as cd_decoder_forward_labeled
 * takes; -1 for an image of no class). Each label is replaced by "no
 * class" with probability CD_TRAINER_OPT_LABEL_DROPOUT, drawn from rng
 * after the step's times and noise, one uniform per image. NULL labels
 * (and cd_trainer_step) train every image as "no class". Errors: those of
 * cd_trainer_step, plus CD_ERR_INVALID_ARGUMENT (labels for a decoder
 * without classes), CD_ERR_SHAPE and CD_ERR_RANGE (as the decoder's).
 * cd_trainer_fit, cd_trainer_eval_loss and cd_trainer_test_loss take the
 * labels from the dataset when the decoder has classes (the last two
 * without dropping any).
 */
CD_API cd_status cd_trainer_step_labeled(cd_trainer *tr, const cd_tensor *images,
                                         const cd_tensor *labels, cd_rng *rng, double *loss);

/**
 * The training objective averaged over every image of a dataset split,
 * in batches of CD_TRAINER_OPT_VAL_BATCH, with fresh t and noise from rng.
 * The weights are not changed. Errors: CD_ERR_NOT_FINITE (a batch's loss
 * is NaN or infinite; the message names its images).
 */
CD_API cd_status cd_trainer_eval_loss(cd_trainer *tr, const cd_dataset *ds, cd_split split,
                                      cd_rng *rng, double *loss);

/**
 * The training objective as a test metric: for every
 * image of a split, in its natural order and in batches of
 * CD_TRAINER_OPT_VAL_BATCH, one t ~ U{1..t_max} (one per batch with
 * CD_TRAINER_OPT_T_PER_BATCH) and fresh noise from rng, and the image's own
 * loss (CD_TRAINER_OPT_LOSS). *mean gets the mean over the images and
 * *std_error (may be NULL) its standard error, sd / sqrt(n) with the
 * n - 1 divisor (0 for one image). The weights are not changed.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (an empty split),
 * CD_ERR_SHAPE, CD_ERR_NOT_FINITE (an image's loss is NaN or infinite: the
 * model predicts non-finite values; the message names the image),
 * CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_trainer_test_loss(cd_trainer *tr, const cd_dataset *ds, cd_split split,
                                      cd_rng *rng, double *mean, double *std_error);

/**
 * Save everything needed to resume: the decoder, the degradation and its
 * schedule, the options, Adam's state and EMA, the step count and, if rng
 * is not NULL, its state. Atomic: on failure an existing file is kept.
 */
CD_API cd_status cd_trainer_save(cd_trainer *tr, const char *path, const cd_rng *rng);

/**
 * Load a trainer saved by cd_trainer_save(); if rng is not NULL its state
 * is restored too, so N more steps give the same bits as an uninterrupted
 * run (same seed and thread count). Errors as cd_decoder_load(); an
 * inference model or a decoder-only file is CD_ERR_FORMAT, saying which.
 */
CD_API cd_status cd_trainer_load(cd_trainer **out, const char *path, cd_rng *rng);

/**
 * Write the inference model file of a trainer (see cd_model_save()): its
 * decoder with the EMA weights when the trainer keeps an EMA
 * (CD_TRAINER_OPT_EMA_DECAY > 0 and a step taken), else the current weights,
 * and its degradation; no optimiser state, about a third of
 * cd_trainer_save()'s file. The trainer is unchanged. Atomic.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FOUND (missing folder),
 * CD_ERR_IO, CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_trainer_export(cd_trainer *tr, const char *path);

/**
 * Save an inference model: the decoder's configuration and weights, the
 * degradation (kind, parameters, prior) with its schedule arrays verbatim,
 * and the T the decoder goes with; no optimiser state
 * (docs/checkpoint-format.md, "Inference model entries"). The usual name
 * is *.cdm, as for every checkpoint. Atomic: on failure an existing file
 * at path is unchanged.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL, or a decoder trained for another
 * T than deg's: the message names both), CD_ERR_NOT_FOUND (missing
 * folder), CD_ERR_IO, CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_model_save(const char *path, cd_decoder *dec, const cd_degradation *deg);

/** How cd_model_save_as() stores a model's weights. */
typedef enum cd_weight_format {
    CD_WEIGHTS_FLOAT32 = 0, /**< exactly, as cd_model_save() does */
    CD_WEIGHTS_FLOAT16 = 1  /**< IEEE half precision, each weight rounded to
                                 the nearest half: about half the file, and
                                 loads back as those rounded floats */
} cd_weight_format;

/**
 * cd_model_save() with the weights stored as `format`. The schedule and
 * everything else keep full precision. Any loader of this version reads
 * either format; older ones refuse a float16 file with CD_ERR_UNSUPPORTED.
 * Float16 keeps about 3 significant digits, enough for sampling with a
 * trained model, not for resuming training (cd_trainer_save stays float32).
 * Errors: as cd_model_save(), plus CD_ERR_INVALID_ARGUMENT (an unknown
 * format) and CD_ERR_RANGE (a weight that is not finite or rounds beyond
 * the largest half, 65504: the message names the tensor).
 */
CD_API cd_status cd_model_save_as(const char *path, cd_decoder *dec, const cd_degradation *deg,
                                  cd_weight_format format);

/**
 * Load what sampling needs into a new decoder and degradation owned by the
 * caller, from an inference model (cd_model_save, cd_trainer_export,
 * examples/python/convert_torch.py with a schedule) or from a training
 * checkpoint (cd_trainer_save). From a training checkpoint that holds EMA
 * weights (the trainer ran with CD_TRAINER_OPT_EMA_DECAY > 0), the decoder
 * gets the EMA weights, which are the ones to sample with; otherwise its
 * current weights. The decoder's trained T is the degradation's.
 * Both outputs are NULL on failure.
 * Errors: as cd_decoder_load(), plus CD_ERR_FORMAT for a decoder-only
 * file (cd_decoder_save: it holds no degradation or schedule; the message
 * says how to make an inference model) and for a PyTorch file (the
 * message names examples/python/convert_torch.py), CD_ERR_INVALID_ARGUMENT
 * (a decoder recorded for another T than the stored schedule's).
 */
CD_API cd_status cd_model_load(const char *path, cd_decoder **dec, cd_degradation **deg);

/**
 * Load the pretrained MNIST model that ships with the library
 * (mnist-diffusion.cdm: a small UNet trained for unconditional sampling,
 * 28 x 28 greyscale digits in [-0.5, 0.5]; docs/pretrained.md says how it
 * was made and how well it samples), as cd_model_load() would. The file is
 * looked for, in this order, at:
 *   1. the path in the environment variable COLDDIFF_MODEL, if set and not
 *      empty (then only there);
 *   2. share/colddiff/ of the installation the running library belongs to
 *      (found from the library's own path, so a moved installation works);
 *   3. share/colddiff/ under the prefix the build was configured with;
 *   4. ../share/colddiff/ from the library's folder: in a build tree,
 *      <build>/share/colddiff/, where configuring copies the file.
 * Errors: CD_ERR_NOT_FOUND (no candidate exists; the message lists the
 * places tried), otherwise as cd_model_load().
 */
CD_API cd_status cd_model_load_default(cd_decoder **dec, cd_degradation **deg);

/**
 * The epoch loop's state, readable from any thread while cd_trainer_fit()
 * runs (each value is read atomically; two reads may straddle a batch).
 */
typedef enum cd_progress_key {
    CD_PROGRESS_RUNNING = 0,        /**< 1 while cd_trainer_fit() runs       */
    CD_PROGRESS_EPOCH = 1,          /**< epochs completed                    */
    CD_PROGRESS_EPOCHS = 2,         /**< the running fit's target            */
    CD_PROGRESS_BATCH = 3,          /**< batches done in the current epoch   */
    CD_PROGRESS_BATCHES = 4,        /**< batches per epoch                   */
    CD_PROGRESS_TRAIN_LOSS = 5,     /**< this epoch's mean training loss so far,
                                         batches weighted by size (NaN from an
                                         epoch's start to its first batch);
                                         between epochs, in a loaded trainer
                                         too, the last complete epoch's */
    CD_PROGRESS_VAL_LOSS = 6,       /**< last validation loss (NaN: none yet) */
    CD_PROGRESS_BEST_VAL_LOSS = 7,  /**< best validation loss (NaN: none yet) */
    CD_PROGRESS_IMAGES_PER_SEC = 8, /**< training throughput of this fit     */
    CD_PROGRESS_ETA_SEC = 9,        /**< estimated seconds left of training
                                         (NaN: unknown); validation and
                                         on_epoch's work come on top */
    CD_PROGRESS_PHASE = 10,         /**< 0 training, 1 validating, 2 the end
                                         of an epoch (checkpoints, on_epoch) */
    CD_PROGRESS_VAL_BATCH = 11,     /**< validation batches done              */
    CD_PROGRESS_VAL_BATCHES = 12    /**< validation batches in all            */
} cd_progress_key;

/** Read one progress value; safe from any thread, also during a fit. */
CD_API cd_status cd_trainer_progress(const cd_trainer *tr, cd_progress_key key, double *value);

/**
 * Ask a running cd_trainer_fit() to stop after its current batch (of
 * training or of validation): it then saves last_path and returns
 * CD_ERR_CANCELLED. A validation cut short is done again in full on resume,
 * with the same random draws, so the resumed run keeps its bits. Safe from any thread and
 * from a signal handler (it only sets an atomic flag). A request made
 * while no fit runs stops the next fit before its first batch.
 */
CD_API void cd_trainer_request_stop(cd_trainer *tr);

/**
 * Called by cd_trainer_fit() after each epoch, once its checkpoints are
 * written, with the epoch number (1-based), its mean training loss and
 * its validation loss (NaN without a validation split). Return CD_OK to
 * go on; any other status stops the fit, which returns it.
 */
typedef cd_status (*cd_epoch_fn)(cd_trainer *tr, int64_t epoch, double train_loss, double val_loss,
                                 void *user);

/**
 * Train until `epochs` epochs are complete in total (a loaded trainer
 * continues where it stopped, mid-epoch included). The prior of a
 * deterministic operator is fitted first on the train split unless it is
 * fitted or set already. Each epoch shuffles the train split with rng,
 * takes batches of CD_TRAINER_OPT_BATCH (the last one may be smaller), then
 * measures the validation loss (cd_trainer_eval_loss) when the split has a
 * validation part, writes best_path when it improved (or, without
 * validation, when the training loss did) and last_path, both with rng
 * (cd_trainer_save; either path may be NULL), and calls on_epoch (may be
 * NULL). Resuming from last_path with the same seed and thread count gives
 * the same bits as an uninterrupted run.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_RANGE (epochs < 1, an empty train
 * split), CD_ERR_SHAPE (images the decoder cannot take), CD_ERR_CANCELLED
 * (cd_trainer_request_stop), any error of cd_trainer_step(),
 * cd_trainer_eval_loss(), cd_trainer_save() or on_epoch; after a failure
 * the weights are those of the last completed batch.
 * A NaN or infinity (a loss, a gradient, an update that would overflow, a
 * validation loss) stops the fit with CD_ERR_NOT_FINITE and a message
 * naming the epoch, the batch and the optimiser step ("cd_trainer_fit:
 * epoch 3, batch 7 of 13 (step 33): ..."). Checkpoints are written only
 * after an epoch whose every step and validation were finite, so best_path
 * and last_path keep the last good state, and the trainer holds the state
 * before the failing batch (cd_trainer_save() writes it).
 */
CD_API cd_status cd_trainer_fit(cd_trainer *tr, cd_dataset *ds, int64_t epochs,
                                const char *best_path, const char *last_path, cd_rng *rng,
                                cd_epoch_fn on_epoch, void *user);

/* ------------------------------------------------------------------------ */
/* Data-parallel training                                                   */
/* ------------------------------------------------------------------------ */

/**
 * What a trainer asks of its gradient sum (cd_allreduce_fn).
 */
typedef enum cd_reduce_op {
    CD_REDUCE_START = 0, /**< begin summing data[0..count) over every rank, in
                              place; may return before the sum is done          */
    CD_REDUCE_POLL = 1,  /**< backward has reached a new stage: let the started
                              sums progress (data NULL, count 0)                */
    CD_REDUCE_WAIT = 2   /**< return once every started sum is complete (data
                              NULL, count 0)                                    */
} cd_reduce_op;

/**
 * A sum over the ranks of a data-parallel job, which the caller implements
 * with its transport (libcolddiff-mpi implements it with MPI). Every rank
 * makes the same calls in the same order with the same counts. The sum
 * must give every rank the same bits, or the ranks' weights drift apart.
 * A blocking implementation sums at CD_REDUCE_START and does nothing at
 * the other two. Return CD_OK, or an error status after setting no
 * message (the trainer names the failing sum).
 */
typedef cd_status (*cd_allreduce_fn)(cd_reduce_op op, float *data, int64_t count, void *user);

/**
 * Make the trainer one of `world` ranks training data-parallel; `rank` is
 * its place, 0..world-1. Every rank holds the same weights and passes the
 * same global batch to cd_trainer_step (cd_trainer_fit shards by itself);
 * each rank computes rows floor(rank * N / world) up to floor((rank + 1) *
 * N / world) of it and draws exactly the times and noise one process would
 * draw for those rows, so K ranks follow one process at the same global
 * batch up to the order of float sums. Gradients are summed with `sum`:
 * in buckets of CD_TRAINER_OPT_BUCKET floats started while backward runs,
 * then the loss and the stop requests. cd_trainer_eval_loss shards its
 * batches too. Only the caller writes files: give cd_trainer_fit paths on
 * one rank and NULL on the others. A fit's on_epoch returning
 * CD_ERR_CANCELLED on one rank asks every rank to stop at the next batch
 * (cd_trainer_request_stop). world = 1 with sum NULL makes the
 * trainer a single process again.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL trainer, sum NULL with world > 1),
 * CD_ERR_RANGE (world < 1, rank outside 0..world-1).
 */
CD_API cd_status cd_trainer_set_distributed(cd_trainer *tr, int64_t rank, int64_t world,
                                            cd_allreduce_fn sum, void *user);

/**
 * The trainer's rank and world size (0 and 1 for a single process).
 * Errors: CD_ERR_INVALID_ARGUMENT (a NULL argument).
 */
CD_API cd_status cd_trainer_get_distributed(const cd_trainer *tr, int64_t *rank, int64_t *world);

/* ------------------------------------------------------------------------ */
/* Classifier                                                               */
/* ------------------------------------------------------------------------ */

/**
 * A small convolutional classifier of greyscale images, trained by
 * libcolddiff itself. Its penultimate layer is the feature extractor of
 * the MNIST Frechet distance (cd_frechet_distance) and its class
 * probabilities feed class preservation and the class histogram. The
 * repository ships one trained on MNIST (docs/metrics-classifier.md), which
 * cd_classifier_load_default() finds, so every user measures with the same
 * frozen extractor.
 *
 * Architecture (the names are those of the tensors in a checkpoint, as a
 * PyTorch module with these attributes would name them):
 *
 *   conv1  3 x 3 conv, stride 1, padding 1, 1 -> 32 channels, GELU   28 x 28
 *   conv2  4 x 4 conv, stride 2, padding 1, 32 -> 64, GELU           14 x 14
 *   conv3  4 x 4 conv, stride 2, padding 1, 64 -> 32, GELU            7 x 7
 *   fc1    linear 1568 -> 64, GELU: the features (CD_CLASSIFIER_FEATURES)
 *   fc2    linear 64 -> 10: the logits; softmax gives the probabilities
 *
 * 167,018 parameters (668 KB as float32). A loaded checkpoint brings its
 * own channel counts (classifier.* entries), so the layer sizes above are
 * those of cd_classifier_create() and of the shipped file.
 *
 * GELU is the exact erf form. Inputs are images as cd_dataset gives them
 * (pixels p/255 - 0.5), N x 1 x 28 x 28 or N x 28 x 28. The figures built
 * on it (class preservation, the class histogram, entropy and confidence,
 * the MNIST Frechet distance of its features) therefore apply to
 * 1 x 28 x 28 MNIST-like data only: cd_classifier_predict(), _train_step(),
 * _train() and _accuracy() refuse colour images and other sizes with
 * CD_ERR_SHAPE, naming the shape the classifier takes and the one given.
 * RMSE, SSIM and PSNR (cd_metrics_images()) take any channel count and
 * size.
 *
 * Thread rules: a classifier keeps per-batch buffers, so even
 * cd_classifier_predict() changes it; use one classifier per thread (load
 * one per thread to measure in parallel). The kernels themselves run on
 * libcolddiff's thread pool (cd_set_num_threads) and give the same bits for
 * every thread count. Results are deterministic for a seed on a given
 * machine; the convolutions choose their kernels by CPU (AVX-512 or not),
 * so two different CPUs may differ in the last bits.
 */
typedef struct cd_classifier cd_classifier;

/** Classes of the MNIST classifier (its logits and probabilities). */
#define CD_CLASSIFIER_CLASSES 10

/** Width of its penultimate features (cd_classifier_feature_dim()). */
#define CD_CLASSIFIER_FEATURES 64

/** Largest number of images of one cd_classifier_train_step() call. */
#define CD_CLASSIFIER_MAX_BATCH 65536

/**
 * Classifier training options (see Options). They belong to the object, not
 * to its file: a loaded classifier starts from the defaults, which are the
 * shipped classifier's recipe.
 */
typedef enum cd_classifier_option {
    CD_CLASSIFIER_OPT_BATCH = 0,    /**< int: images per step of
                                         cd_classifier_train, 1..
                                         CD_CLASSIFIER_MAX_BATCH (128)        */
    CD_CLASSIFIER_OPT_LR = 1,       /**< real, (0, inf): Adam's learning rate
                                         (1e-3); cd_classifier_train decays it */
    CD_CLASSIFIER_OPT_MAX_SHIFT = 2 /**< int, 0..7: the augmentation's largest
                                         shift in pixels, at most min(H, W) / 4
                                         of the data (1)                      */
} cd_classifier_option;

/**
 * A new MNIST classifier (28 x 28 inputs, 10 classes) with PyTorch's
 * default initialisation of Conv2d and Linear layers
 * (kaiming_uniform_(a = sqrt(5)) weights, U(+-1/sqrt(fan_in)) biases),
 * drawn from rng in the order conv1, conv2, conv3, fc1, fc2 (weight, then
 * bias). The caller owns *out (free it with cd_classifier_free()); *out is
 * NULL on failure.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL out or rng), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_classifier_create(cd_classifier **out, cd_rng *rng);

/** Free a classifier; NULL is a no-op. */
CD_API void cd_classifier_free(cd_classifier *c);

/**
 * Load a classifier saved by cd_classifier_save(): its configuration
 * ("classifier.*" entries, checked against the supported ranges) and its
 * weights, matched by name (docs/metrics-classifier.md). The file is fully
 * validated first (docs/checkpoint-format.md). The caller owns *out; NULL
 * on failure.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FOUND (no file; a missing
 * tensor, named), CD_ERR_IO, CD_ERR_FORMAT (not a checkpoint, truncated,
 * not a classifier checkpoint, a configuration out of range; the message
 * says which), CD_ERR_CHECKSUM (a corrupted file), CD_ERR_VERSION,
 * CD_ERR_SHAPE (a tensor of the wrong shape, named), CD_ERR_UNSUPPORTED,
 * CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_classifier_load(cd_classifier **out, const char *path);

/**
 * Load the shipped, frozen MNIST classifier (examples/data/
 * mnist-classifier.cdm in the source tree, installed and copied into the
 * build tree), which the metrics use by
 * default. It is looked for, in this order, at:
 *   1. the path in the environment variable COLDDIFF_CLASSIFIER, if set
 *      and not empty (then only there: a bad file is an error, not a
 *      reason to try the next place);
 *   2. share/colddiff/ of the installation the running library belongs
 *      to (found from the library's own path, so a moved installation
 *      works);
 *   3. share/colddiff/ under the prefix the build was configured with;
 *   4. ../share/colddiff/ from the library's folder: in a build tree,
 *      <build>/share/colddiff/, where configuring copies the file.
 * Errors: CD_ERR_NOT_FOUND (no candidate exists; the message lists the
 * places tried), otherwise as cd_classifier_load().
 */
CD_API cd_status cd_classifier_load_default(cd_classifier **out);

/**
 * Save the configuration and the weights (not the optimiser state: a
 * loaded classifier that trains on starts with fresh Adam moments), and
 * the counts of training steps and epochs, as a checkpoint file. Written
 * atomically (temporary file, fsync, rename); on failure an existing file
 * at path is unchanged. Saving the same weights gives the same bytes.
 * Errors: CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FOUND (missing folder),
 * CD_ERR_IO (a folder at path, a full disk), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_classifier_save(const cd_classifier *c, const char *path);

/** Describe a key (name, type, range, default); see cd_option_info. */
CD_API cd_status cd_classifier_option_info(cd_classifier_option key, cd_option_info *info);

/** Set an integer option (_int) or a real one (_real); errors as
 *  cd_trainer_set_int() and cd_trainer_set_real(). */
CD_API cd_status cd_classifier_set_int(cd_classifier *c, cd_classifier_option key, int64_t value);
CD_API cd_status cd_classifier_set_real(cd_classifier *c, cd_classifier_option key, double value);

/** Read an option of the matching type (CD_ERR_INVALID_ARGUMENT otherwise). */
CD_API cd_status cd_classifier_get_int(const cd_classifier *c, cd_classifier_option key,
                                       int64_t *value);
CD_API cd_status cd_classifier_get_real(const cd_classifier *c, cd_classifier_option key,
                                        double *value);

/** Width F of the penultimate features, or -1 (with an error) for NULL. */
CD_API int64_t cd_classifier_feature_dim(const cd_classifier *c);

/** Number of classes K, or -1 (with an error) for NULL. */
CD_API int64_t cd_classifier_num_classes(const cd_classifier *c);

/**
 * The classifier's parameters (borrowed; they live as long as c), named
 * conv1.weight, conv1.bias, ..., fc2.bias in PyTorch's layouts. Writing
 * them changes the classifier. NULL (with an error) for a NULL c.
 */
CD_API cd_params *cd_classifier_params(cd_classifier *c);

/** Optimiser steps and training epochs completed (saved with the weights);
 *  -1 (with an error) for NULL. */
CD_API int64_t cd_classifier_steps(const cd_classifier *c);
CD_API int64_t cd_classifier_epochs(const cd_classifier *c);

/**
 * Classify N images: images is N x 1 x H x W or N x H x W (H = W = 28 for
 * the MNIST classifier), every pixel finite. probs (N x K, may be NULL)
 * receives the softmax probabilities and features (N x F, may be NULL)
 * the penultimate activations (after fc1's GELU); at least one must be
 * given. The images are processed in chunks of at most 128, each row
 * independently: a row's outputs do not depend on N or on the other rows.
 * Every argument is checked before anything is written; on failure the
 * outputs are unchanged.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL c or images, both outputs NULL),
 * CD_ERR_SHAPE (rank, channels, H x W, or an output of the wrong shape;
 * the message gives both shapes, e.g. "the classifier takes 1 x 28 x 28
 * images (...); 'images' is 8 x 3 x 32 x 32 (3 channels)"),
 * CD_ERR_NOT_FINITE (a NaN or infinite pixel; the message names image and
 * pixel), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_classifier_predict(cd_classifier *c, const cd_tensor *images, cd_tensor *probs,
                                       cd_tensor *features);

/**
 * One Adam step (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8, no weight
 * decay) at learning rate CD_CLASSIFIER_OPT_LR on the mean cross-entropy of
 * the batch:
 * images (N x 1 x H x W or N x H x W, 1 <= N <= CD_CLASSIFIER_MAX_BATCH,
 * finite) and labels (a rank-1 tensor of N floats holding class ids
 * 0..K-1, as cd_dataset_fill_batch() writes them). *loss (may be NULL)
 * receives the batch's mean loss before the step.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL c, images or labels),
 * CD_ERR_SHAPE, CD_ERR_RANGE (a label that is not an integer in 0..K-1;
 * the message names it), CD_ERR_NOT_FINITE (a non-finite pixel, loss or
 * gradient), CD_ERR_OUT_OF_MEMORY. On failure the weights and the
 * optimiser are unchanged.
 */
CD_API cd_status cd_classifier_train_step(cd_classifier *c, const cd_tensor *images,
                                          const cd_tensor *labels, double *loss);

/**
 * Called by cd_classifier_train() after each epoch with the number of
 * epochs this call has completed (1-based) and the epoch's mean training
 * loss (over images). Return CD_OK to go on; any other status stops the
 * training, which returns it.
 */
typedef cd_status (*cd_classifier_epoch_fn)(cd_classifier *c, int64_t epoch, double train_loss,
                                            void *user);

/**
 * Train for `epochs` epochs on the train split of ds, with the options
 * CD_CLASSIFIER_OPT_BATCH, _LR and _MAX_SHIFT. Each epoch shuffles the
 * split with rng (cd_dataset_shuffle) and takes consecutive batches (the
 * last one may be smaller), one cd_classifier_train_step each.
 *   - Augmentation: with max_shift > 0, every training image is moved by
 *     its own random offsets dy, dx, each uniform on -max_shift..max_shift
 *     (one cd_rng_int_range call on rng per batch, 2 draws per image: dy,
 *     then dx), and the uncovered border repeats the edge pixels. 0 trains
 *     on the images as they are. At most min(H, W) / 4 of the data.
 *   - Learning rate: a cosine from lr down towards 0 over the
 *     S = epochs x ceil(n_train / batch) steps of this call: step s
 *     (0-based) uses lr (1 + cos(pi s / S)) / 2, as PyTorch's
 *     CosineAnnealingLR with T_max = S stepped per batch.
 * Deterministic: the same classifier, data, options and rng state give
 * the same weights bit for bit, for every thread count. on_epoch (may be
 * NULL) is called after each epoch. The shipped classifier was trained
 * with the default options for 8 epochs, with a generator seeded with 42
 * that first initialised it (docs/metrics-classifier.md).
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL c, ds or rng), CD_ERR_RANGE
 * (epochs < 1, max_shift above a quarter of the images' side, an empty
 * train split), CD_ERR_SHAPE (images of another size or with more than one
 * channel), any error of cd_classifier_train_step() or on_epoch. After a
 * failure the weights are those of the last completed step.
 */
CD_API cd_status cd_classifier_train(cd_classifier *c, cd_dataset *ds, int64_t epochs, cd_rng *rng,
                                     cd_classifier_epoch_fn on_epoch, void *user);

/**
 * The fraction of a split's images whose most probable class (ties to the
 * smallest class, as torch.argmax) equals the label: *accuracy (may be
 * NULL) in [0, 1] and *correct (may be NULL) the count. The split's epoch
 * order does not matter.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL c or ds, a bad split),
 * CD_ERR_RANGE (an empty split, a label outside 0..K-1), CD_ERR_SHAPE
 * (images of another size), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_classifier_accuracy(cd_classifier *c, const cd_dataset *ds, cd_split split,
                                        double *accuracy, int64_t *correct);

/* ------------------------------------------------------------------------ */
/* Image metrics: RMSE, SSIM, PSNR                                          */
/* ------------------------------------------------------------------------ */

/*
 * The report's recipe, for images of any channel count C (1 for MNIST, 3
 * for RGB, or any other) and any size H x W with H, W >= CD_METRICS_MIN_SIZE,
 * square or not: nothing here needs the MNIST classifier, whose figures
 * (class statistics, the MNIST FD) take 1 x 28 x 28 images only (see
 * cd_classifier_predict()). Both image sets are N x C x H x W. Every image
 * (all C x H x W values of one sample) is first min-max normalised to
 * [0, 1] on its own, over all its channels together, in double precision:
 * a constant image cannot be normalised and is an error (CD_ERR_RANGE
 * naming the image), never a NaN. Then, per image i:
 *   - MSE_i = mean over all C x H x W values of (x - y)^2;
 *   - PSNR_i = -10 log10(MSE_i + 1e-8) (piq 0.8.0; identical images give 80);
 *   - SSIM_i as piq 0.8.0 computes it: an 11 x 11 Gaussian window, sigma 1.5,
 *     sampled at integer offsets -5..5 and normalised to sum 1; C1 = 0.01^2,
 *     C2 = 0.03^2 (data range 1); local means and (co)variances by valid,
 *     unpadded convolution, sigma^2 = G*x^2 - (G*x)^2 with no Bessel
 *     correction. Each channel has its own (H-10) x (W-10) map (no colour
 *     conversion, no mixing of channels) and SSIM_i is the mean of all C
 *     maps over channels and pixels: the mean of the C per-channel SSIMs.
 *     Like piq, images whose smaller side s is at least 384 are first
 *     average-pooled by f = round(s / 256) (half to even; a remainder of
 *     fewer than f rows or columns is dropped); below that (MNIST's 28 x 28
 *     included) nothing is pooled.
 * Everything is accumulated in double. Results do not depend on the thread
 * count (cd_set_num_threads): images are independent tasks and the
 * reductions run in image order.
 */

/** How per-image values become one figure (see cd_metrics_images()). */
typedef enum cd_metric_reduction {
    /** Every image weighs the same (the default): SSIM and PSNR are means
     *  of the per-image values; RMSE = sqrt(mean of MSE_i), i.e. over all
     *  pixels of all images. */
    CD_REDUCTION_PER_IMAGE = 0,
    /** The report's code: consecutive batches of CD_METRICS_REPORT_BATCH
     *  images (1000 images give 512 + 488), one value per batch (batch
     *  RMSE = sqrt(mean of (x - y)^2 over the batch's pixels), batch
     *  SSIM/PSNR = mean over the batch's images), then the unweighted mean
     *  of the batch values. Equal to PER_IMAGE for SSIM and PSNR when N is
     *  at most one batch or a multiple of it, and for RMSE when N <= 512. */
    CD_REDUCTION_REPORT = 1
} cd_metric_reduction;

/** The batch size of CD_REDUCTION_REPORT. */
#define CD_METRICS_REPORT_BATCH 512

/** Smallest H and W the SSIM window fits (valid convolution). */
#define CD_METRICS_MIN_SIZE 11

/**
 * Min-max normalise every image of x (N x C x H x W) to [0, 1], in double,
 * rounded to float into out (same shape; out may be x itself). The
 * minimum maps to exactly 0 and the maximum to exactly 1.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL), CD_ERR_SHAPE (not rank 4, or out
 * of another shape), CD_ERR_NOT_FINITE (a NaN or infinite value; the
 * message names the image and the element), CD_ERR_RANGE (a constant image;
 * the message names it). On failure out is unchanged.
 */
CD_API cd_status cd_metrics_normalize(const cd_tensor *x, cd_tensor *out);

/**
 * RMSE, SSIM and PSNR of x_hat against x (both N x C x H x W with H, W >=
 * CD_METRICS_MIN_SIZE), after per-image normalisation, reduced as
 * `reduction` says. Any of rmse, ssim, psnr may be NULL (not computed);
 * *used, if not NULL, receives the reduction that was applied, so that a
 * caller printing the figures can always say which one it was.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL x or x_hat, an unknown reduction),
 * CD_ERR_SHAPE (rank, differing shapes, H or W below 11),
 * CD_ERR_NOT_FINITE, CD_ERR_RANGE (a constant image: the message says
 * which tensor and which image), CD_ERR_OUT_OF_MEMORY. On failure the
 * outputs are unchanged. Reentrant; x and x_hat are only read.
 */
CD_API cd_status cd_metrics_images(const cd_tensor *x, const cd_tensor *x_hat,
                                   cd_metric_reduction reduction, double *rmse, double *ssim,
                                   double *psnr, cd_metric_reduction *used);

/**
 * The per-image values behind cd_metrics_images(): mse[i], ssim[i] and
 * psnr[i] for i < N, each array of length n = N (CD_ERR_SHAPE otherwise).
 * Any of the three may be NULL. Errors as cd_metrics_images().
 */
CD_API cd_status cd_metrics_per_image(const cd_tensor *x, const cd_tensor *x_hat, double *mse,
                                      double *ssim, double *psnr, int64_t n);

/* ------------------------------------------------------------------------ */
/* Frechet distance                                                         */
/* ------------------------------------------------------------------------ */

/*
 * The Frechet distance between Gaussian fits of two feature sets (any
 * features; the MNIST FD uses the classifier's, so it needs 1 x 28 x 28
 * images, see cd_classifier_predict()):
 *   FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2),
 * in double precision. Means are plain averages; covariances use the
 * unbiased N - 1 denominator (as numpy.cov, pytorch-fid and torchmetrics),
 * so each set needs N >= 2 rows. The matrix square roots come from LAPACK's
 * symmetric eigensolver (dsyevd): with S1 = V L V^T, the trace term is the
 * sum of sqrt(eigenvalues) of L^1/2 V^T S2 V L^1/2, which is similar to
 * S1^1/2 S2 S1^1/2. Eigenvalues of a positive semi-definite matrix that is
 * singular or nearly so (always the case when N <= D) come out of any
 * eigensolver as small numbers of either sign, about machine epsilon times
 * the largest one; they are clamped to 0 so that their square roots exist.
 * The dropped part is below sqrt(eps x largest eigenvalue) per eigenvalue.
 * A covariance with an eigenvalue below -1e-4 x its largest is not a
 * covariance and is refused (CD_ERR_RANGE). For the same reason the result
 * is clamped at 0: FD(A, A) is exactly 0 in exact arithmetic and may come
 * out as -1e-14 otherwise.
 *
 * Report the sample counts N1 and N2 with every FD: it is biased upward
 * for small N. The BLAS and LAPACK are single-threaded (see
 * cd_set_num_threads), so the result does not depend on the thread count.
 */

/** Largest feature dimension D the Frechet functions accept. */
#define CD_FD_MAX_DIM 16384

/**
 * The mean (D doubles) and unbiased covariance (D x D doubles, row-major,
 * symmetric) of the N rows of features (N x D, rank 2, N >= 2), in double.
 * dim must equal D. Either output may be NULL.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL features), CD_ERR_SHAPE (not rank
 * 2, dim != D, N < 2), CD_ERR_RANGE (D above CD_FD_MAX_DIM),
 * CD_ERR_NOT_FINITE (the message names row and column),
 * CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_feature_stats(const cd_tensor *features, double *mean, double *cov,
                                  int64_t dim);

/**
 * FD between the feature sets a (N1 x D) and b (N2 x D); N1 and N2 may
 * differ, both at least 2. Errors: as cd_feature_stats() (the message says
 * a or b), CD_ERR_SHAPE (different D), CD_ERR_UNSUPPORTED (LAPACK failed to
 * converge, which the message reports with its INFO code).
 */
CD_API cd_status cd_frechet_distance(const cd_tensor *a, const cd_tensor *b, double *fd);

/**
 * FD from precomputed statistics: means mu1, mu2 (dim doubles) and
 * covariances cov1, cov2 (dim x dim doubles, row-major), e.g. from
 * cd_feature_stats() or a reference file. The covariances must be
 * symmetric to 1e-6 of their largest entry and positive semi-definite up to
 * rounding (see above). Errors: CD_ERR_INVALID_ARGUMENT (NULL),
 * CD_ERR_RANGE (dim outside 1..CD_FD_MAX_DIM, an asymmetric or clearly
 * indefinite covariance), CD_ERR_NOT_FINITE, CD_ERR_OUT_OF_MEMORY,
 * CD_ERR_UNSUPPORTED (no convergence).
 */
CD_API cd_status cd_frechet_distance_from_stats(const double *mu1, const double *cov1,
                                                const double *mu2, const double *cov2, int64_t dim,
                                                double *fd);

/* ------------------------------------------------------------------------ */
/* Classifier-based summaries                                               */
/* ------------------------------------------------------------------------ */

/**
 * Summaries of N rows of class probabilities probs (N x K, rank 2, each
 * row finite and non-negative; rows need not sum to exactly 1, e.g. after
 * float rounding of a softmax), as cd_classifier_predict() gives them for
 * 1 x 28 x 28 images:
 *   - hist[k] (k < K; length n_classes = K, may be NULL): how many rows
 *     have their largest probability at class k (ties go to the smallest
 *     k, as torch.argmax);
 *   - *entropy (may be NULL): the entropy of that histogram as a
 *     distribution, -sum p_k ln p_k with p_k = hist[k] / N, in nats (its
 *     maximum is ln K; divide by ln 2 for bits);
 *   - *mean_confidence (may be NULL): the mean over rows of the largest
 *     probability.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL probs), CD_ERR_SHAPE (not rank 2,
 * n_classes != K when hist is given), CD_ERR_NOT_FINITE, CD_ERR_RANGE (a
 * negative probability).
 */
CD_API cd_status cd_class_histogram(const cd_tensor *probs, int64_t *hist, int64_t n_classes,
                                    double *entropy, double *mean_confidence);

/**
 * Class preservation: the fraction of the N rows of probs (N x K, as in
 * cd_class_histogram()) whose argmax equals labels[i] (n_labels = N
 * labels, each in 0..K-1). *matches (may be NULL) gets the count.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL), CD_ERR_SHAPE (n_labels != N),
 * CD_ERR_RANGE (a label outside 0..K-1, a negative probability),
 * CD_ERR_NOT_FINITE.
 */
CD_API cd_status cd_class_preservation(const cd_tensor *probs, const int64_t *labels,
                                       int64_t n_labels, double *fraction, int64_t *matches);

/* ------------------------------------------------------------------------ */
/* Images                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Write an 8-bit greyscale PNG of height rows of width bytes, row-major.
 * The file is written atomically (temporary file, fsync, rename): on any
 * failure, an existing file at path is left as it was.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL or empty path, NULL pixels),
 * CD_ERR_RANGE (height or width outside 1..2^31-1), CD_ERR_OVERFLOW,
 * CD_ERR_NOT_FOUND (the folder does not exist), CD_ERR_IO (any write
 * failure, a full disk included), CD_ERR_OUT_OF_MEMORY.
 */
CD_API cd_status cd_png_write_gray(const char *path, const uint8_t *pixels, int64_t height,
                                   int64_t width);

/** How float pixels map to 0..255. */
typedef enum cd_pixel_map {
    /** Fixed range: lo maps to 0, hi to 255, values outside are clipped;
     *  v maps to floor((v - lo) / (hi - lo) * 255 + 0.5). */
    CD_PIXELS_RANGE = 0,
    /**
     * The report's style, per image: clip to the 1st and 99th percentiles
     * (linear interpolation, as numpy), then min-max scale to 0..255.
     * A constant image maps to 0. lo and hi are ignored (any value).
     */
    CD_PIXELS_PERCENTILE = 1
} cd_pixel_map;

/**
 * Lay the N images of images (N x C x H x W, or N x H x W as C = 1) out in
 * a grid of min(columns, N) columns and ceil(N / columns) rows, separated
 * and surrounded by `border` (>= 0) pixels of grey level border_value
 * (0..255); empty cells of the last row are border_value too. C = 1 writes
 * an 8-bit greyscale PNG, C = 3 an 8-bit RGB PNG (channels 0, 1, 2 as red,
 * green, blue; the border grey in all three). The map applies to every
 * channel value: CD_PIXELS_RANGE value by value, CD_PIXELS_PERCENTILE per
 * image over all its channels together. Written atomically as with
 * cd_png_write_gray().
 * Errors: as cd_png_write_gray(), plus CD_ERR_SHAPE (rank, or C not 1 or 3),
 * CD_ERR_RANGE (columns < 1, border < 0, border_value, lo >= hi or a
 * non-finite lo/hi with CD_PIXELS_RANGE), CD_ERR_NOT_FINITE (a NaN or
 * infinite pixel; the message names the image and pixel).
 */
CD_API cd_status cd_image_grid_write_png(const char *path, const cd_tensor *images, int64_t columns,
                                         int64_t border, int32_t border_value, cd_pixel_map map,
                                         float lo, float hi);

#ifdef __cplusplus
}
#endif

#endif /* COLDDIFF_H */
