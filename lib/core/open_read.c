/*
 * open_read.c - opening a file for reading that must be a regular file.
 * open() of a FIFO without a writer blocks forever, so the open is
 * non-blocking; fstat then refuses anything but a regular file before a
 * byte is read, and a regular file gets its blocking mode back.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

cd_status cd__open_read(const char *path, const char *what, int *fd_out, uint64_t *size)
{
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return cd__error(e == ENOENT || e == ENOTDIR ? CD_ERR_NOT_FOUND : CD_ERR_IO,
                         "%s'%s': cannot open: %s", what, path, strerror(e));
    }
    struct stat st;
    int e = 0, flags = 0;
    if (fstat(fd, &st) != 0)
        e = errno;
    else if (!S_ISREG(st.st_mode))
        e = -1;
    else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        e = errno;
    if (e) {
        close(fd);
        if (e < 0)
            return cd__error(CD_ERR_IO, "%s'%s': cannot read: not a regular file (%s)", what, path,
                             kind_of(st.st_mode));
        return cd__error(CD_ERR_IO, "%s'%s': cannot read: %s", what, path, strerror(e));
    }
    *fd_out = fd;
    if (size) *size = (uint64_t)st.st_size;
    return CD_OK;
}

cd_status cd__fopen_read(const char *path, const char *what, FILE **out)
{
    int fd = -1;
    *out = NULL;
    CD__TRY(cd__open_read(path, what, &fd, NULL));
    if (!(*out = fdopen(fd, "r"))) {
        int e = errno;
        close(fd);
        return cd__error(CD_ERR_IO, "%s'%s': cannot read: %s", what, path, strerror(e));
    }
    return CD_OK;
}
