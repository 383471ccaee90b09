/*
 * ckpt_parse.c - parsing an inflated checkpoint body into a cd__ckpt: the
 * section list, then each known section (configuration, tensors, optimiser
 * state, EMA, RNG states, counters, metadata), with every length and count
 * checked against the bytes that remain and every error naming the
 * section and the body offset.
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p; /* the body */
    uint64_t pos, end;
    const char *path;
    uint32_t tag; /* the section being parsed, 0 between sections */
} rd;

static cd_status rd_fail(const rd *r, cd_status st, const char *fmt, ...) CD__PRINTF(3, 4);

static cd_status rd_fail(const rd *r, cd_status st, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char sec[32] = "the section list";
    if (r->tag) {
        char t[5];
        for (int i = 0; i < 4; i++) {
            uint8_t c = (uint8_t)(r->tag >> (8 * i));
            t[i] = c >= 32 && c < 127 ? (char)c : '?';
        }
        t[4] = '\0';
        snprintf(sec, sizeof sec, "section %s", t);
    }
    return cd__error(st, "'%s': %s, body offset %" PRIu64 ": %s", r->path, sec, r->pos, what);
}

static cd_status need(rd *r, uint64_t n, const char *what)
{
    if (r->end - r->pos < n)
        return rd_fail(r, CD_ERR_FORMAT,
                       "truncated: %s needs %" PRIu64 " bytes, only %" PRIu64 " remain", what, n,
                       r->end - r->pos);
    return CD_OK;
}

static cd_status get_u32(rd *r, uint32_t *x, const char *what)
{
    *x = 0;
    CD__TRY(need(r, 4, what));
    *x = rd32(r->p + r->pos);
    r->pos += 4;
    return CD_OK;
}

static cd_status get_u64(rd *r, uint64_t *x, const char *what)
{
    *x = 0;
    CD__TRY(need(r, 8, what));
    *x = rd64(r->p + r->pos);
    r->pos += 8;
    return CD_OK;
}

static cd_status get_bytes(rd *r, uint64_t n, const uint8_t **out, const char *what)
{
    CD__TRY(need(r, n, what));
    *out = r->p + r->pos;
    r->pos += n;
    return CD_OK;
}

/* A name: u32 length (1..CD__CKPT_MAX_KEY) and bytes without NUL, copied. */
static cd_status get_name(rd *r, char **out, const char *what)
{
    uint32_t len;
    const uint8_t *s;
    CD__TRY(get_u32(r, &len, what));
    if (len == 0 || len > CD__CKPT_MAX_KEY)
        return rd_fail(r, CD_ERR_FORMAT, "%s length %" PRIu32 " is outside 1..%d", what, len,
                       CD__CKPT_MAX_KEY);
    CD__TRY(get_bytes(r, len, &s, what));
    if (memchr(s, 0, len)) return rd_fail(r, CD_ERR_FORMAT, "%s holds a NUL byte", what);
    if (!(*out = cd__ckpt_dup_bytes(s, len)))
        return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory copying a %s", what);
    return CD_OK;
}

/* An element count that the remaining bytes can hold at min_size each. */
static cd_status get_count(rd *r, uint64_t min_size, uint64_t *count, const char *what)
{
    uint32_t n;
    *count = 0;
    CD__TRY(get_u32(r, &n, what));
    if (n > CD__CKPT_MAX_ENTRIES || n * min_size > r->end - r->pos)
        return rd_fail(r, CD_ERR_FORMAT, "%s %" PRIu32 " is more than the section can hold", what,
                       n);
    *count = n;
    return CD_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fail if two of n records share a name. The records lie stride bytes
 * apart, each holding its name (a char *) name_at bytes in; `what` says
 * what the names name. Sorts a copy of the names. */
static cd_status check_unique(rd *r, const void *records, size_t stride, size_t name_at, int64_t n,
                              const char *what)
{
    const char **sorted = cd__malloc((size_t)n * sizeof *sorted, "sorted names");
    if (!sorted) return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory sorting %s names", what);
    for (int64_t i = 0; i < n; i++)
        memcpy(&sorted[i], (const char *)records + (size_t)i * stride + name_at, sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_names);
    const char *dup = NULL;
    for (int64_t i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) dup = sorted[i];
    cd__free(sorted);
    if (dup) return rd_fail(r, CD_ERR_FORMAT, "%s '%s' occurs twice", what, dup);
    return CD_OK;
}

/* Decode a config/metadata value of a known type into e. */
static cd_status decode_value(rd *r, kv_entry *e, const uint8_t *v, uint64_t len)
{
    uint64_t elem = e->type == CD__CKPT_FLOAT32_ARRAY ? 4 : 8;
    switch (e->type) {
    case CD__CKPT_INT64:
    case CD__CKPT_FLOAT64:
        if (len != 8)
            return rd_fail(r, CD_ERR_FORMAT, "'%s': a scalar of %" PRIu64 " bytes", e->key, len);
        e->i64 = (int64_t)rd64(v);
        memcpy(&e->f64, &e->i64, sizeof e->f64);
        return CD_OK;
    case CD__CKPT_STRING:
        if (memchr(v, 0, (size_t)len))
            return rd_fail(r, CD_ERR_FORMAT, "'%s': a string with a NUL byte", e->key);
        e->n = (int64_t)len;
        e->str = cd__ckpt_dup_bytes(v, (size_t)len);
        break;
    case CD__CKPT_FLOAT32_ARRAY:
    case CD__CKPT_INT64_ARRAY:
        if (len % elem)
            return rd_fail(r, CD_ERR_FORMAT, "'%s': %" PRIu64 " bytes is not a whole array", e->key,
                           len);
        e->n = (int64_t)(len / elem);
        if ((e->arr = cd__malloc((size_t)len, "checkpoint array")) &&
            e->type == CD__CKPT_FLOAT32_ARRAY)
            decode_f32(e->arr, v, e->n);
        for (int64_t i = 0; e->arr && e->type == CD__CKPT_INT64_ARRAY && i < e->n; i++)
            ((int64_t *)e->arr)[i] = (int64_t)rd64(v + 8 * i);
        break;
    }
    if (!e->str && !e->arr)
        return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory storing '%s'", e->key);
    return CD_OK;
}

static bool known_type(uint32_t t, bool strings_only)
{
    if (strings_only) return t == CD__CKPT_STRING;
    return t >= CD__CKPT_INT64 && t <= CD__CKPT_INT64_ARRAY;
}

/* One entry; entries of unknown types are skipped (*keep = false). */
static cd_status parse_entry(rd *r, kv_entry *e, bool strings_only, bool *keep)
{
    uint32_t type;
    uint64_t len;
    const uint8_t *v;
    CD__TRY(get_name(r, &e->key, "key"));
    CD__TRY(get_u32(r, &type, "entry type"));
    CD__TRY(get_u64(r, &len, "entry length"));
    CD__TRY(get_bytes(r, len, &v, "entry value"));
    *keep = known_type(type, strings_only);
    if (!*keep) return CD_OK;
    e->type = (cd__ckpt_type)type;
    return decode_value(r, e, v, len);
}

static cd_status parse_kv(rd *r, kv_list *l, bool strings_only)
{
    uint64_t count;
    CD__TRY(get_count(r, 17, &count, "entry count"));
    l->e = cd__calloc((size_t)count, sizeof *l->e, "checkpoint entries");
    if (!l->e)
        return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory for %" PRIu64 " entries", count);
    l->cap = (int64_t)count;
    for (uint64_t i = 0; i < count; i++) {
        kv_entry *e = &l->e[l->count];
        bool keep = false;
        cd_status st = parse_entry(r, e, strings_only, &keep);
        if (st != CD_OK || !keep) {
            cd__ckpt_kv_clear(e);
            cd__free(e->key);
            memset(e, 0, sizeof *e);
            if (st != CD_OK) return st;
            continue;
        }
        l->count++;
    }
    return check_unique(r, l->e, sizeof *l->e, offsetof(kv_entry, key), l->count, "key");
}

static cd_status parse_dims(rd *r, file_tensor *t)
{
    uint32_t dtype, rank;
    CD__TRY(get_u32(r, &dtype, "dtype"));
    if (dtype != DTYPE_FLOAT32 && dtype != DTYPE_FLOAT16)
        return rd_fail(r, CD_ERR_UNSUPPORTED,
                       "tensor '%s' has dtype %" PRIu32 " (only 1, float32, and 2, "
                       "float16, exist)",
                       t->name, dtype);
    t->dtype = dtype;
    CD__TRY(get_u32(r, &rank, "rank"));
    if (rank < 1 || rank > CD_TENSOR_MAX_RANK)
        return rd_fail(r, CD_ERR_FORMAT, "tensor '%s' has rank %" PRIu32, t->name, rank);
    t->rank = (int32_t)rank;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t dim;
        CD__TRY(get_u64(r, &dim, "dimension"));
        /* Any real tensor fits in the body; this also stops overflow. */
        if (dim < 1 || dim > CD__CKPT_MAX_BODY / numel)
            return rd_fail(r, CD_ERR_FORMAT, "tensor '%s': dimension %" PRIu32 " is %" PRIu64,
                           t->name, d, dim);
        t->shape[d] = (int64_t)dim;
        numel *= dim;
    }
    t->numel = (int64_t)numel;
    return CD_OK;
}

static cd_status parse_tensor(rd *r, file_tensor *t)
{
    CD__TRY(get_name(r, &t->name, "tensor name"));
    CD__TRY(parse_dims(r, t));
    const uint64_t size = t->dtype == DTYPE_FLOAT16 ? 2 : 4;
    return get_bytes(r, size * (uint64_t)t->numel, &t->data, "tensor data");
}

static int cmp_tensors(const void *a, const void *b)
{
    return strcmp((*(const file_tensor *const *)a)->name, (*(const file_tensor *const *)b)->name);
}

/* by_name: the tensors sorted by name, for cd__ckpt_find_tensor. */
static cd_status index_tensors(rd *r, cd__ckpt *ck)
{
    int64_t n = ck->n_tensors;
    ck->by_name = cd__malloc((size_t)n * sizeof *ck->by_name, "tensor index");
    if (!ck->by_name)
        return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory indexing %" PRId64 " tensors", n);
    for (int64_t i = 0; i < n; i++) ck->by_name[i] = &ck->tensors[i];
    CD__TRY(check_unique(r, ck->tensors, sizeof *ck->tensors, offsetof(file_tensor, name), n,
                         "tensor"));
    qsort(ck->by_name, (size_t)n, sizeof *ck->by_name, cmp_tensors);
    return CD_OK;
}

const file_tensor *cd__ckpt_find_tensor(const cd__ckpt *ck, const char *name)
{
    file_tensor key = {.name = (char *)name};
    const file_tensor *kp = &key;
    file_tensor *const *hit =
        bsearch(&kp, ck->by_name, (size_t)ck->n_tensors, sizeof *ck->by_name, cmp_tensors);
    return hit ? *hit : NULL;
}

static cd_status parse_tens(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 25, &count, "tensor count"));
    ck->tensors = cd__calloc((size_t)count, sizeof *ck->tensors, "checkpoint tensors");
    if (!ck->tensors)
        return rd_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory for %" PRIu64 " tensors", count);
    for (uint64_t i = 0; i < count; i++) {
        file_tensor *t = &ck->tensors[i];
        ck->n_tensors++; /* so that cd__ckpt_free releases its name */
        CD__TRY(parse_tensor(r, t));
        t->offset = ck->total_numel;
        ck->total_numel += t->numel;
    }
    ck->has_tensors = true;
    return index_tensors(r, ck);
}

/* numel floats of a flat block (m, v or EMA). */
static cd_status get_block(rd *r, uint64_t numel, const uint8_t **out, const char *what)
{
    if (numel > CD__CKPT_MAX_BODY / 4)
        return rd_fail(r, CD_ERR_FORMAT, "%s of %" PRIu64 " floats", what, numel);
    return get_bytes(r, 4 * numel, out, what);
}

static cd_status parse_hyper(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 12, &count, "hyper-parameter count"));
    for (uint64_t i = 0; i < count; i++) {
        uint32_t key;
        uint64_t bits;
        double value;
        CD__TRY(get_u32(r, &key, "hyper-parameter key"));
        CD__TRY(get_u64(r, &bits, "hyper-parameter value"));
        memcpy(&value, &bits, sizeof value);
        if (key >= CD__ADAM_NPARAMS) continue; /* a newer writer's knob */
        if (cd__adam_check("checkpoint", (cd__adam_param)key, value) != CD_OK)
            return rd_fail(r, CD_ERR_FORMAT, "%s", cd_last_error());
        ck->hyper[key] = value;
    }
    return CD_OK;
}

static cd_status parse_adam(rd *r, cd__ckpt *ck)
{
    uint64_t steps, numel;
    CD__TRY(get_u64(r, &steps, "step count"));
    if (steps > INT64_MAX) return rd_fail(r, CD_ERR_FORMAT, "step count %" PRIu64, steps);
    ck->adam_steps = (int64_t)steps;
    CD__TRY(parse_hyper(r, ck));
    CD__TRY(get_u64(r, &numel, "moment length"));
    CD__TRY(get_block(r, numel, &ck->m, "first moments"));
    CD__TRY(get_block(r, numel, &ck->v, "second moments"));
    ck->adam_numel = (int64_t)numel;
    ck->has_adam = true;
    return CD_OK;
}

static cd_status parse_emaw(rd *r, cd__ckpt *ck)
{
    uint64_t numel;
    CD__TRY(get_u64(r, &numel, "EMA length"));
    CD__TRY(get_block(r, numel, &ck->ema, "EMA weights"));
    ck->ema_numel = (int64_t)numel;
    ck->has_ema = true;
    return CD_OK;
}

static cd_status parse_rngs(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 37, &count, "RNG count"));
    for (uint64_t i = 0; i < count; i++) {
        char *name = NULL;
        rng_entry *e;
        CD__TRY(get_name(r, &name, "RNG name"));
        cd_status st = cd__ckpt_rng_append(ck, name, strlen(name), &e);
        cd__free(name);
        CD__TRY(st);
        for (int k = 0; k < CD_RNG_STATE_WORDS; k++) CD__TRY(get_u64(r, &e->state[k], "RNG state"));
    }
    return check_unique(r, ck->rngs, sizeof *ck->rngs, offsetof(rng_entry, name), ck->n_rngs,
                        "RNG");
}

static cd_status parse_step(rd *r, cd__ckpt *ck)
{
    uint64_t step, epoch;
    CD__TRY(get_u64(r, &step, "step"));
    CD__TRY(get_u64(r, &epoch, "epoch"));
    if (step > INT64_MAX || epoch > INT64_MAX)
        return rd_fail(r, CD_ERR_FORMAT, "negative step or epoch");
    ck->has_counters = true;
    ck->step = (int64_t)step;
    ck->epoch = (int64_t)epoch;
    return CD_OK;
}

static cd_status parse_section(rd *r, cd__ckpt *ck)
{
    switch (r->tag) {
    case TAG_CONF: return parse_kv(r, &ck->config, false);
    case TAG_TENS: return parse_tens(r, ck);
    case TAG_ADAM: return parse_adam(r, ck);
    case TAG_EMAW: return parse_emaw(r, ck);
    case TAG_RNGS: return parse_rngs(r, ck);
    case TAG_STEP: return parse_step(r, ck);
    case TAG_META: return parse_kv(r, &ck->meta, true);
    }
    return CD_OK;
}

static int known_slot(uint32_t tag)
{
    static const uint32_t tags[] = {TAG_CONF, TAG_TENS, TAG_ADAM, TAG_EMAW,
                                    TAG_RNGS, TAG_STEP, TAG_META};
    for (int i = 0; i < (int)(sizeof tags / sizeof tags[0]); i++)
        if (tags[i] == tag) return i;
    return -1;
}

/* Cross-section checks that depend on the order sections came in. */
static cd_status check_whole(rd *r, const cd__ckpt *ck)
{
    r->tag = 0;
    if (!ck->has_tensors) return rd_fail(r, CD_ERR_FORMAT, "the required section TENS is missing");
    if (ck->has_adam && ck->adam_numel != ck->total_numel)
        return rd_fail(r, CD_ERR_FORMAT,
                       "section ADAM holds moments of %" PRId64 " floats "
                       "for %" PRId64 " parameters",
                       ck->adam_numel, ck->total_numel);
    if (ck->has_ema && ck->ema_numel != ck->total_numel)
        return rd_fail(r, CD_ERR_FORMAT,
                       "section EMAW holds %" PRId64 " floats for %" PRId64 " parameters",
                       ck->ema_numel, ck->total_numel);
    return CD_OK;
}

cd_status cd__ckpt_parse_body(const char *path, const uint8_t *body, uint64_t len, cd__ckpt *ck)
{
    rd r = {body, 0, len, path, 0};
    bool seen[7] = {false};
    while (r.pos < len) {
        uint32_t tag, flags;
        uint64_t size;
        r.tag = 0;
        CD__TRY(get_u32(&r, &tag, "section tag"));
        CD__TRY(get_u32(&r, &flags, "section flags"));
        CD__TRY(get_u64(&r, &size, "section length"));
        r.tag = tag;
        CD__TRY(need(&r, size, "the section"));
        int slot = known_slot(tag);
        if (slot < 0 && (flags & SECTION_REQUIRED))
            return rd_fail(&r, CD_ERR_VERSION,
                           "an unknown required section; a newer "
                           "libcolddiff wrote this file");
        if (slot >= 0 && seen[slot]) return rd_fail(&r, CD_ERR_FORMAT, "the section occurs twice");
        rd sub = {body, r.pos, r.pos + size, path, tag};
        if (slot >= 0) {
            seen[slot] = true;
            CD__TRY(parse_section(&sub, ck));
        }
        r.pos += size; /* bytes a section does not use are skipped */
    }
    return check_whole(&r, ck);
}
