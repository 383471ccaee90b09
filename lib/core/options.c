/*
 * options.c - the checks behind every object's typed option calls, so that
 * decoder configurations, samplers, trainers and classifiers refuse a bad
 * value with the same words.
 */
#include "core.h"

#include <math.h>

const cd__option *cd__option_find(const cd__option *table, size_t n, int32_t key, const char *fn)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].key == key) return &table[i];
    cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown option key %d", fn, (int)key);
    return NULL;
}

cd_status cd__option_describe(const cd__option *o, const char *fn, cd_option_info *info)
{
    CD__CHECK_NOT_NULL(info, fn);
    *info = (cd_option_info){.name = o->name,
                             .type = o->type,
                             .choices = o->choices,
                             .lo = o->lo,
                             .hi = o->hi,
                             .lo_open = o->lo_open,
                             .hi_open = o->hi_open,
                             .default_value = o->def};
    return CD_OK;
}

static const char *type_word(cd_option_type t)
{
    switch (t) {
    case CD_OPTION_INT: return "an integer";
    case CD_OPTION_BOOL: return "a boolean (0 or 1)";
    case CD_OPTION_CHOICE: return "a choice";
    case CD_OPTION_REAL: return "a real number";
    case CD_OPTION_INT_LIST: return "a list of integers";
    }
    return "unknown";
}

static cd_status check_bounds(const cd__option *o, const char *fn, double v, const char *text)
{
    const bool lo_ok = o->lo_open ? v > o->lo : v >= o->lo;
    const bool hi_ok = o->hi_open ? v < o->hi : v <= o->hi;
    if (lo_ok && hi_ok) return CD_OK;
    return cd__error(CD_ERR_RANGE, "%s: %s = %s is outside %c%g, %g%c", fn, o->name, text,
                     o->lo_open ? '(' : '[', o->lo, o->hi, o->hi_open ? ')' : ']');
}

cd_status cd__option_check_int(const cd__option *o, const char *fn, int64_t value)
{
    if (o->type == CD_OPTION_REAL || o->type == CD_OPTION_INT_LIST)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: option '%s' holds %s; set it with "
                         "the %s call",
                         fn, o->name, type_word(o->type),
                         o->type == CD_OPTION_REAL ? "_set_real" : "_set_list");
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)value);
    return check_bounds(o, fn, (double)value, text);
}

cd_status cd__option_check_real(const cd__option *o, const char *fn, double value)
{
    if (o->type != CD_OPTION_REAL)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: option '%s' holds %s; set it with "
                         "the %s call",
                         fn, o->name, type_word(o->type),
                         o->type == CD_OPTION_INT_LIST ? "_set_list" : "_set_int");
    if (!isfinite(value))
        return cd__error(CD_ERR_NOT_FINITE, "%s: %s = %g: the value must be finite", fn, o->name,
                         value);
    char text[32];
    snprintf(text, sizeof text, "%g", value);
    return check_bounds(o, fn, value, text);
}

cd_status cd__option_check_read(const cd__option *o, const char *fn, bool want_int)
{
    const bool is_int =
        o->type == CD_OPTION_INT || o->type == CD_OPTION_BOOL || o->type == CD_OPTION_CHOICE;
    if (want_int == is_int) return CD_OK;
    return cd__error(CD_ERR_INVALID_ARGUMENT,
                     "%s: option '%s' holds %s; read it with the "
                     "%s call",
                     fn, o->name, type_word(o->type),
                     o->type == CD_OPTION_REAL       ? "_get_real"
                     : o->type == CD_OPTION_INT_LIST ? "_get_list"
                                                     : "_get_int");
}
