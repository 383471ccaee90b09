/*
 * datafile.c - where the library finds the data files it ships (the MNIST
 * classifier, the pretrained model): an environment variable first, then
 * the share folder beside the library that is running, then the installed
 * one of the configured prefix. Looking beside the loaded library keeps an
 * installed tree working after it is moved or installed with another
 * --prefix than the one configured, and finds the build tree's copy
 * (<build>/share/colddiff, beside <build>/lib): no path of the source tree
 * is compiled in.
 */
#define _GNU_SOURCE /* dladdr */
#include "core.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* <folder of the loaded libcolddiff>/<rel>/<name>, or false. */
static bool beside_library(const char *rel, const char *name, char *out, size_t cap)
{
    Dl_info info;
    if (!dladdr((void *)&cd__find_data_file, &info) || !info.dli_fname) return false;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return false;
    const int n =
        snprintf(out, cap, "%.*s/%s/%s", (int)(slash - info.dli_fname), info.dli_fname, rel, name);
    return n > 0 && (size_t)n < cap;
}

cd_status cd__find_data_file(const char *fn, const char *env_var, const char *name,
                             const char *what, char *out, size_t cap)
{
    const char *env = getenv(env_var);
    if (env && env[0]) {
        if (strlen(env) >= cap)
            return cd__error(CD_ERR_RANGE, "%s: %s is longer than %zu bytes", fn, env_var, cap);
        strcpy(out, env);
        return CD_OK;
    }
    char cand[3][1024] = {"", "", ""};
#ifdef CD_DATA_FROM_LIBDIR
    if (!beside_library(CD_DATA_FROM_LIBDIR, name, cand[0], sizeof cand[0])) cand[0][0] = '\0';
#endif
#ifdef CD_DATA_INSTALL_DIR
    snprintf(cand[1], sizeof cand[1], "%s/%s", CD_DATA_INSTALL_DIR, name);
#endif
    /* The build tree's layout, when the install's differs (lib/<arch>). */
    if (!beside_library("../share/colddiff", name, cand[2], sizeof cand[2]) ||
        strcmp(cand[2], cand[0]) == 0)
        cand[2][0] = '\0';
    char tried[3200] = "";
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        if (!cand[i][0]) continue;
        if (is_file(cand[i])) {
            if (strlen(cand[i]) >= cap)
                return cd__error(CD_ERR_RANGE, "%s: the path '%s' is longer than %zu bytes", fn,
                                 cand[i], cap);
            strcpy(out, cand[i]);
            return CD_OK;
        }
        if (len < sizeof tried)
            len += (size_t)snprintf(tried + len, sizeof tried - len, "%s'%s'", len ? ", " : "",
                                    cand[i]);
    }
    return cd__error(CD_ERR_NOT_FOUND,
                     "%s: %s was not found (tried: %s); set %s to the path "
                     "of %s",
                     fn, what, len ? tried : "no default path is known to this build", env_var,
                     name);
}
