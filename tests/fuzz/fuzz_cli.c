/*
 * fuzz_cli.c - the colddiff option parser (examples/cli/cli_opts.c) with
 * every subcommand's real option table and checks. The input is an
 * argument list split on NUL bytes: the first word names the subcommand,
 * the rest are its arguments. cli_check_only makes each command return
 * once its options are checked, so nothing is trained, sampled or written;
 * the harness runs in an empty folder and fails if anything appears there.
 */
#include "cli.h"
#include "fuzz_util.h"

#include <dirent.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 256

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_files_init();
    if (chdir(fuzz_dir) != 0) fuzz_die("cannot enter", fuzz_dir);
    cli_check_only = true;
    return 0;
}

/* Checking options must not create anything. */
static void expect_empty_folder(void)
{
    DIR *d = opendir(".");
    if (!d) fuzz_die("cannot list", fuzz_dir);
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            fuzz_die("checking the options wrote a file", e->d_name);
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A NUL-terminated copy: every word, the last included, ends in NUL. */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (size_t at = 0; at <= size && argc < MAX_ARGS; at += strlen(buf + at) + 1)
        argv[argc++] = buf + at;
    argv[argc] = NULL;
    for (const cli_subcommand *c = cli_subcommands; c->name; c++) {
        if (strcmp(argv[0], c->name) != 0) continue;
        int rc = c->run(argc - 1, argv + 1);
        if (rc != CLI_OK && rc != CLI_USAGE) fuzz_die(c->name, "a check-only run failed");
        break;
    }
    expect_empty_folder();
    free(buf);
    return 0;
}
