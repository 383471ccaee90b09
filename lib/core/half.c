/*
 * half.c - IEEE 754 binary16 ("half") conversions for model files that
 * store their weights at half the size. Written with integer operations so
 * the bits do not depend on the compiler or on F16C being present.
 */
#include "core.h"

#include <string.h>

uint16_t cd__f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN: a quiet one */
    /* 65520 and up round to infinity: 65504 is the largest half. */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* a normal half, from 2^-14 */
        const uint32_t odd = (ax >> 13) & 1u;
        /* Round to nearest, ties to even; a carry into the exponent is the
         * right rounding up to the next binade. */
        return (uint16_t)(sign | ((ax + 0xfffu + odd - (112u << 23)) >> 13));
    }
    if (ax < 0x33000000u) return (uint16_t)sign; /* at most 2^-25: rounds to zero */
    /* A subnormal half: m units of 2^-24, from the 24-bit significand. */
    const uint32_t shift = 126u - (ax >> 23), full = (ax & 0x7fffffu) | 0x800000u;
    uint32_t m = full >> shift;
    const uint32_t rem = full & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (m & 1u))) m++;
    return (uint16_t)(sign | m);
}

float cd__f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0x1fu) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112u) << 23) | (m << 13);
    } else {
        /* Zero or subnormal: m x 2^-24, exact in float. */
        const float v = (float)m * 0x1p-24f;
        memcpy(&x, &v, sizeof x);
        x |= sign;
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}
