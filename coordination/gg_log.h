/*
 * gg_log.h: levelled logging for the daemon and the CLI.
 *
 * Lines go to stderr as "LEVEL component: message". The level is process-wide
 * and set once from --log-level (error, warn, info, debug). The pure protocol
 * core does not log: it reports events to its driver, which logs.
 */
#ifndef GG_LOG_H
#define GG_LOG_H

typedef enum {
    GG_LOG_ERROR = 0,
    GG_LOG_WARN = 1,
    GG_LOG_INFO = 2,
    GG_LOG_DEBUG = 3
} gg_log_level_t;

/* Sets the level; returns 0, or GG_EINVAL for an unknown name. */
int gg_log_set_level_name(const char *name);
void gg_log_set_level(gg_log_level_t level);
gg_log_level_t gg_log_level(void);

void gg_log(gg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gg_error(...) gg_log(GG_LOG_ERROR, __VA_ARGS__)
#define gg_warn(...)  gg_log(GG_LOG_WARN, __VA_ARGS__)
#define gg_info(...)  gg_log(GG_LOG_INFO, __VA_ARGS__)
#define gg_debug(...) gg_log(GG_LOG_DEBUG, __VA_ARGS__)

#endif
