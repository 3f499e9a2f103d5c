/* gg_log.c: see gg_log.h. */
#include "gg_log.h"
#include "gg_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static gg_log_level_t s_level = GG_LOG_INFO;
static const char *s_names[] = {"error", "warn", "info", "debug"};

void gg_log_set_level(gg_log_level_t level)
{
    s_level = level;
}

gg_log_level_t gg_log_level(void)
{
    return s_level;
}

int gg_log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_names[i]) == 0) {
            s_level = (gg_log_level_t) i;
            return GG_OK;
        }
    if (strcmp(name, "warning") == 0) {
        s_level = GG_LOG_WARN;
        return GG_OK;
    }
    return GG_EINVAL;
}

void gg_log(gg_log_level_t level, const char *fmt, ...)
{
    if (level > s_level)
        return;
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000, s_names[level], line);
}
