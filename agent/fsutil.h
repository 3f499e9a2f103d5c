/*
 * fsutil.h: small file-system helpers shared by the runner, the executor and
 * the documentation writer.
 */
#ifndef GG_FSUTIL_H
#define GG_FSUTIL_H

#include <sys/types.h>

/* mkdir -p: creates path and its missing parents with mode; the last
 * component must end up a directory. Tries the directory itself first (its
 * parents nearly always exist) and walks from the root only when one is
 * missing. Returns 0, GG_EINVAL (empty or too long), GG_ENOSPC or GG_EIO. */
int fsutil_mkdir_p(const char *path, mode_t mode);

#endif
