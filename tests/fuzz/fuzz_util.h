/*
 * fuzz_util.h - what the fuzz targets share: a private folder for the files
 * the loaders read (they take paths, not buffers), and the checks every
 * failed call must pass (docs/errors.md): a negative status, the same
 * status from cd_last_status(), and a one-line message.
 */
#ifndef CD_FUZZ_UTIL_H
#define CD_FUZZ_UTIL_H

#include <colddiff.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_MAX_FILES 4

static char fuzz_dir[256];
static char fuzz_paths[FUZZ_MAX_FILES][300];

/* A broken promise of the library (or a harness failure): report, crash. */
static inline void fuzz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, detail);
    abort();
}

static inline void fuzz_remove_files(void)
{
    for (int i = 0; i < FUZZ_MAX_FILES; i++) unlink(fuzz_paths[i]);
    rmdir(fuzz_dir);
}

/* Make the folder (under TMPDIR) once per process; removed at exit. */
static inline void fuzz_files_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/cd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir)) fuzz_die("cannot create a folder", fuzz_dir);
    for (int i = 0; i < FUZZ_MAX_FILES; i++)
        snprintf(fuzz_paths[i], sizeof fuzz_paths[i], "%s/in%d", fuzz_dir, i);
    atexit(fuzz_remove_files);
}

/* Replace file i's contents with n bytes; returns its path. */
static inline const char *fuzz_write(int i, const void *data, size_t n)
{
    FILE *f = fopen(fuzz_paths[i], "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
        fuzz_die("cannot write", fuzz_paths[i]);
    return fuzz_paths[i];
}

/* A failed call must say so consistently: negative status, the same
 * status in cd_last_status() and a non-empty message on one line. */
static inline void fuzz_check_failure(cd_status st, const char *call)
{
    const char *msg = cd_last_error();
    if (st >= 0) fuzz_die(call, "a failure with a non-negative status");
    if (cd_last_status() != st) fuzz_die(call, "cd_last_status() differs from the result");
    if (!msg[0]) fuzz_die(call, "failed without a message");
    if (strchr(msg, '\n')) fuzz_die(call, msg); /* one line, or a log can be forged */
}

#endif /* CD_FUZZ_UTIL_H */
