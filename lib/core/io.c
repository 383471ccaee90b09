/*
 * io.c - atomic file writes: temporary file in the same folder, fsync,
 * rename, fsync of the folder. A crash or a full disk leaves either the old
 * file or the complete new one, never a torn mix; the temporary file a
 * killed writer leaves is removed at the next successful write of the
 * same file.
 */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint g_tmp_counter;

static void atomic_reset(cd__atomic_file *af)
{
    cd__free(af->tmp_path);
    cd__free(af->path);
    memset(af, 0, sizeof *af);
}

cd_status cd__atomic_open(cd__atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    if (!path || !*path) return cd__error(CD_ERR_INVALID_ARGUMENT, "output path is NULL or empty");
    size_t cap = strlen(path) + 64;
    af->path = cd__strdup(path, "output path");
    af->tmp_path = af->path ? cd__malloc(cap, "temporary file path") : NULL;
    if (!af->tmp_path) {
        atomic_reset(af);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': out of memory for the path", path);
    }
    snprintf(af->tmp_path, cap, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&g_tmp_counter, 1));
    int fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || !(af->fp = fdopen(fd, "wb"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        /* The user's path and the reason: the temporary name is ours, and
         * a missing folder is the usual cause. */
        cd_status st = e == ENOENT
                           ? cd__error(CD_ERR_NOT_FOUND,
                                       "cannot write '%s': its folder does "
                                       "not exist",
                                       path)
                           : cd__error(CD_ERR_IO, "cannot write '%s': %s", path, strerror(e));
        atomic_reset(af);
        return st;
    }
    return CD_OK;
}

cd_status cd__atomic_write(cd__atomic_file *af, const void *buf, size_t n)
{
    if (!af->fp) return cd__error(CD_ERR_STATE, "write to a closed file");
    if (af->err) return CD_ERR_IO; /* reported in full by commit() */
    if (n && fwrite(buf, 1, n, af->fp) != n) {
        af->err = errno ? errno : EIO;
        return cd__error(CD_ERR_IO,
                         "writing '%s' at byte %" PRIu64 ": %s (the "
                         "previous file, if any, is unchanged)",
                         af->path, af->written, strerror(af->err));
    }
    af->written += n;
    return CD_OK;
}

/* fsync the folder holding path, so the rename itself is durable. */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        if (len >= sizeof dir) return 0; /* too long to name; skip, the data is synced */
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int rc = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
    close(fd);
    return rc;
}

/* Whether name is "<base>.tmp.<pid>.<n>"; *pid gets the pid. */
static bool is_temp_of(const char *name, const char *base, long *pid)
{
    const size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0) return false;
    const char *p = name + n + 5, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || q - p > 18 || *q != '.') return false;
    const char *r = q + 1, *t = r;
    while (*t >= '0' && *t <= '9') t++;
    if (t == r || *t != '\0') return false;
    *pid = strtol(p, NULL, 10);
    return true;
}

/* Remove the temporaries a writer of path that was killed before its
 * rename left behind, now that path has been written again. Only those of
 * processes that no longer exist (kill(pid, 0) fails with ESRCH): a live
 * writer's file, this process's included, is never touched. */
static void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : path;
    size_t len = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof dir) return;
    memcpy(dir, slash ? path : ".", len);
    dir[len] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    const long self = (long)getpid();
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid = 0;
        if (!is_temp_of(e->d_name, base, &pid) || pid <= 0 || pid == self) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

cd_status cd__atomic_commit(cd__atomic_file *af)
{
    if (!af->fp) return cd__error(CD_ERR_STATE, "commit of a closed file");
    int e = af->err;
    if (!e && fflush(af->fp) != 0) e = errno;
    if (!e && fsync(fileno(af->fp)) != 0) e = errno;
    if (fclose(af->fp) != 0 && !e) e = errno;
    af->fp = NULL;
    if (e) {
        cd_status st = cd__error(CD_ERR_IO,
                                 "writing '%s' failed: %s (the previous "
                                 "file, if any, is unchanged)",
                                 af->path, strerror(e));
        cd__atomic_abort(af);
        return st;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        e = errno;
        cd_status st = cd__error(CD_ERR_IO, "renaming '%s' to '%s' failed: %s", af->tmp_path,
                                 af->path, strerror(e));
        cd__atomic_abort(af);
        return st;
    }
    e = sync_parent_dir(af->path);
    remove_stale_temps(af->path);
    cd_status st = CD_OK;
    if (e)
        st = cd__error(CD_ERR_IO,
                       "'%s' was written but its folder could not be "
                       "synced: %s",
                       af->path, strerror(e));
    atomic_reset(af);
    return st;
}

void cd__atomic_abort(cd__atomic_file *af)
{
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_reset(af);
}

cd_status cd__write_file_atomic(const char *path, const void *buf, size_t n)
{
    cd__atomic_file af;
    CD__TRY(cd__atomic_open(&af, path));
    cd_status st = cd__atomic_write(&af, buf, n);
    if (st != CD_OK) {
        cd__atomic_abort(&af);
        return st;
    }
    return cd__atomic_commit(&af);
}
