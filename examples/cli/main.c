/*
 * colddiff - the command-line front end of libcolddiff. It uses only the
 * public API, so it doubles as an example of embedding the library. Each
 * subcommand lives in its own cmd_*.c; `colddiff CMD --help` lists its
 * options.
 */
#include "cli.h"

#include <string.h>

static void print_help(void)
{
    printf("usage: colddiff <command> [options]\n\ncommands:\n");
    for (const cli_subcommand *c = cli_subcommands; c->name; c++)
        printf("  %-12s %s\n", c->name, c->summary);
    printf("  %-12s %s\n\nSee 'colddiff <command> --help' for a command's options.\n", "version",
           "print the library version and ABI");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (cd_abi_version() != CD_ABI_VERSION) {
        fprintf(stderr, "colddiff: library ABI %d does not match this program's %d\n",
                (int)cd_abi_version(), CD_ABI_VERSION);
        return CLI_FAIL;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("libcolddiff %s (ABI %d)\n", cd_version_string(), (int)cd_abi_version());
        return CLI_OK;
    }
    for (const cli_subcommand *c = cli_subcommands; c->name; c++)
        if (!strcmp(argv[1], c->name)) return c->run(argc - 2, argv + 2);
    fprintf(stderr, "colddiff: unknown command '%s' (see 'colddiff --help')\n", argv[1]);
    return CLI_USAGE;
}
