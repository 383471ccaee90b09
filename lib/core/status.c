/* status.c - status codes, the thread-local error message, versions. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef CD_VERSION_STRING
#error "CD_VERSION_STRING must be set by the build"
#endif

static _Thread_local char cd__err_msg[CD__ERROR_CAP];
static _Thread_local cd_status cd__err_status = CD_OK;

const char *cd_status_string(cd_status status)
{
    switch (status) {
    case CD_OK: return "success";
    case CD_ERR_INVALID_ARGUMENT: return "invalid argument";
    case CD_ERR_OUT_OF_MEMORY: return "out of memory";
    case CD_ERR_SHAPE: return "shape mismatch";
    case CD_ERR_OVERFLOW: return "size overflow";
    case CD_ERR_RANGE: return "value out of range";
    case CD_ERR_NOT_FINITE: return "non-finite value";
    case CD_ERR_IO: return "input/output error";
    case CD_ERR_NOT_FOUND: return "not found";
    case CD_ERR_FORMAT: return "bad file format";
    case CD_ERR_CHECKSUM: return "checksum mismatch";
    case CD_ERR_VERSION: return "unsupported version";
    case CD_ERR_STATE: return "object in the wrong state";
    case CD_ERR_UNSUPPORTED: return "not supported";
    case CD_ERR_CANCELLED: return "cancelled";
    case CD_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

cd_status cd__error(cd_status status, const char *fmt, ...)
{
    /* Formatted aside first: an argument may be cd_last_error() itself (a
     * cause wrapped in context), which must not be overwritten while it is
     * read. A message longer than the buffer is cut, never overflowed. */
    char msg[CD__ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(cd__err_msg, msg, sizeof msg);
    /* One line whatever the arguments hold: a name or path read from a file
     * may carry a newline (a forged log line) or a terminal escape. */
    for (char *c = cd__err_msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    cd__err_status = status;
    return status;
}

const char *cd_last_error(void) { return cd__err_msg; }

cd_status cd_last_status(void) { return cd__err_status; }

void cd_clear_error(void)
{
    cd__err_msg[0] = '\0';
    cd__err_status = CD_OK;
}

void cd__error_save(cd__saved_error *e)
{
    e->status = cd__err_status;
    memcpy(e->msg, cd__err_msg, sizeof e->msg);
}

void cd__error_restore(const cd__saved_error *e)
{
    memcpy(cd__err_msg, e->msg, sizeof cd__err_msg);
    cd__err_status = e->status;
}

const char *cd_version_string(void) { return CD_VERSION_STRING; }

int32_t cd_abi_version(void) { return CD_ABI_VERSION; }
