/* fsutil.c: see fsutil.h. */
#include "fsutil.h"

#include "gg_error.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

int fsutil_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = path ? strlen(path) : 0;
    if (len == 0 || len >= sizeof buf)
        return GG_EINVAL;
    if (mkdir(path, mode) == 0)
        return 0;
    if (errno == ENOSPC)
        return GG_ENOSPC;
    if (errno != ENOENT && errno != EEXIST)
        return GG_EIO;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return errno == ENOSPC ? GG_ENOSPC : GG_EIO;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return GG_EIO;
    return 0;
}
