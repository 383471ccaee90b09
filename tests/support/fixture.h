/*
 * fixture.h - read the PyTorch reference fixtures (tests/reference, .bin files)
 * (format: tests/reference/fixture_io.py) and compare results with them.
 * Test-only: every failure is a Check assertion.
 */
#ifndef CD_FIXTURE_H
#define CD_FIXTURE_H

#include <stdint.h>

typedef struct cd_fixture cd_fixture;

/* Load tests/reference/<name> (e.g. "conv2d.bin"). */
cd_fixture *cd_fixture_load(const char *name);
void cd_fixture_free(cd_fixture *f);

/* The tensor called `name`; its element count goes to *numel if not NULL.
 * Fails the test if absent. */
const float *cd_fixture_get(const cd_fixture *f, const char *name, int64_t *numel);

/* Rank and dims of `name` (dims holds 8). */
int64_t cd_fixture_shape(const cd_fixture *f, const char *name, int64_t *dims);

/* True if the fixture holds `name`. */
int cd_fixture_has(const cd_fixture *f, const char *name);

/*
 * Compare got[n] with want[n]: passes when every element has
 * |got - want| <= atol + rtol * |want|. Prints the maximum absolute and
 * relative errors with `what`, and fails the test otherwise.
 */
void cd_fixture_compare(const char *what, const float *got, const float *want, int64_t n,
                        double atol, double rtol);

#endif /* CD_FIXTURE_H */
