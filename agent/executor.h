/*
 * executor.h: runs step processes for the agent's event loop.
 *
 * A step is a shell command (`/bin/sh -c CMD` by default) run in its own process group,
 * with an allowlisted environment plus the caller's GAGGLE_* variables, no
 * inherited descriptors, output captured through a pipe (the whole into a log
 * file, the last `tail_cap` bytes in memory), an optional timeout (SIGTERM to
 * the group, SIGKILL after a grace) and a cap on concurrent processes. Nothing
 * here blocks the loop: child exits arrive through pidfds, output through
 * non-blocking pipes and deadlines through one timerfd, all as zloop pollers.
 *
 * The children die with the agent (PR_SET_PDEATHSIG); their grandchildren,
 * which do not inherit that, are killed at start-up from the group files the
 * executor keeps in `pgid_dir` while a step runs.
 *
 * A job may bring its own completion callback (executor_job_t.on_done), so
 * that several modules (the target runner, hooks) share one executor and its
 * --workers cap. With `new_netns` the child enters a new network namespace
 * (only a loopback interface, down) before exec: `sandbox: {network: none}`.
 *
 * Caller's side: use it from the loop's thread only (PR_SET_PDEATHSIG follows
 * the thread that forked, so that thread must live as long as the steps);
 * never reap children with waitpid(-1) nor set SIGCHLD to SIG_IGN (a child
 * reaped elsewhere ends its job with an unknown status, exit_code -1).
 */
#ifndef GG_EXECUTOR_H
#define GG_EXECUTOR_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gg_error.h"

#define EXECUTOR_TAIL_DEFAULT  (64u * 1024u)          /* bytes of output kept in memory */
#define EXECUTOR_TAIL_MAX      (16u * 1024u * 1024u)  /* largest tail_cap accepted */
#define EXECUTOR_LOG_DEFAULT   (256ull * 1024 * 1024) /* default cap of one job's log file */
#define EXECUTOR_GRACE_DEFAULT 5000u                  /* ms between SIGTERM and SIGKILL */
#define EXECUTOR_WORKERS_MAX   4096u                  /* largest max_workers accepted */
#define EXECUTOR_STDIN_MAX     (64u * 1024u)          /* largest stdin_data accepted */
#define EXECUTOR_COMMAND_MAX   (128u * 1024u - 1)     /* longest command (MAX_ARG_STRLEN) */
#define EXECUTOR_ENV_MAX       128u                   /* most job env pairs */
#define EXECUTOR_ENV_BYTES_MAX (1024u * 1024u)        /* total size of the child's env */
#define EXECUTOR_REAP_POLL_MS  50u                    /* waitpid polling without pidfd */

typedef struct executor_t executor_t;

/* What became of one job. Passed to the completion callback; `tail` points
 * into the executor and is valid only during the callback. */
typedef struct {
    int exit_code;         /* 0..255 when the shell exited, -1 when killed by a signal */
    int signal;            /* the signal that killed it, else 0 */
    bool timed_out;        /* its timeout fired (SIGTERM, then SIGKILL after the grace) */
    bool cancelled;        /* executor_cancel() or executor_cancel_all() ended it */
    uint64_t duration_ms;  /* from spawn to exit, monotonic */
    const char *tail;      /* last output bytes (stdout and stderr merged), NUL-terminated */
    size_t tail_len;       /* bytes in tail, at most tail_cap */
    bool truncated;        /* the output was longer than the tail */
    uint64_t output_bytes; /* all output read from the child */
    bool log_truncated;    /* the log file reached log_max_bytes and stopped growing */
    bool log_failed;       /* writing the log file failed (disk full...) */
    int pid;               /* the shell's pid (also its process group) */
    void *tag;             /* the job's user tag */
} executor_result_t;

/* Called from the loop when a job has ended and its slot is free again: the
 * callback may start or cancel jobs, but must not destroy the executor.
 * Returning -1 makes the zloop handler return -1 (zloop_start returns). */
typedef int(executor_done_fn)(void *arg, uint64_t job_id, const executor_result_t *result);

typedef struct {
    unsigned max_workers;         /* concurrent processes, >= 1 (the --workers cap) */
    const char *log_dir;          /* relative log paths live here; NULL: none */
    const char *pgid_dir;         /* group files of running steps; NULL: not recorded */
    size_t tail_cap;              /* 0: EXECUTOR_TAIL_DEFAULT */
    uint64_t log_max_bytes;       /* per job log file; 0: EXECUTOR_LOG_DEFAULT */
    uint64_t kill_grace_ms;       /* SIGTERM to SIGKILL; 0: EXECUTOR_GRACE_DEFAULT */
    const char *const *env_allow; /* NULL-terminated extra variable names, or NULL */
    executor_done_fn *on_done;    /* required */
    void *on_done_arg;
    const char *shell; /* absolute path run as SHELL -c COMMAND; NULL: /bin/sh */
    bool no_pidfd;     /* watch children by polling waitpid instead of pidfds (tests) */
} executor_config_t;

typedef struct {
    const char *name; /* [A-Za-z_][A-Za-z0-9_]* */
    const char *value;
} executor_env_t;

typedef struct {
    const char *command;       /* run as /bin/sh -c COMMAND; required */
    const char *workdir;       /* chdir there first; NULL: the agent's cwd */
    const executor_env_t *env; /* extra variables; they override allowlisted ones */
    size_t env_count;
    uint64_t timeout_ms;       /* 0: no timeout */
    const char *log_path;      /* appended to; relative to log_dir; NULL: log_dir/job-ID.log */
    const void *stdin_data;    /* NULL: stdin is /dev/null */
    size_t stdin_len;          /* at most EXECUTOR_STDIN_MAX */
    void *tag;                 /* handed back in the result */
    executor_done_fn *on_done; /* this job's callback; NULL: the executor's on_done */
    void *on_done_arg;         /* its argument (with on_done) */
    bool new_netns;            /* run in a fresh network namespace (sandbox network: none):
                                  root only, else executor_start returns GG_EPERM */
} executor_job_t;

/* Counters since executor_new; every started job ends in exactly one of
 * succeeded, failed, timed_out or killed (cancelled). */
typedef struct {
    uint64_t started;
    uint64_t succeeded;
    uint64_t failed;
    uint64_t timed_out;
    uint64_t killed;
    uint64_t spawn_failed; /* executor_start errors after validation (fork, pipe, log) */
    unsigned running;
} executor_stats_t;

/* Creates an executor driven by `loop` (which it does not own). Creates
 * log_dir and pgid_dir when missing and, first of all, kills the process
 * groups recorded in pgid_dir by a previous run (executor_kill_stale_groups).
 * Returns NULL on a bad config or a system error (logged). */
executor_t *executor_new(zloop_t *loop, const executor_config_t *cfg);

/* Kills every running group (SIGKILL), reaps the children, removes the
 * pollers and the group files. No callback is called. NULL-safe; clears *e.
 * Call it outside the loop's handlers, or from a poller handler. */
void executor_destroy(executor_t **e);

/* Spawns a job. Returns 0 and sets *job_id_out (> 0), GG_EBUSY when
 * max_workers jobs are running (queue and retry after a completion),
 * GG_EINVAL for a bad job (empty command, bad env name, ".." in a relative
 * log path), GG_EPERM for new_netns when not root, GG_ETOOBIG over a bound,
 * GG_EIO when the log file cannot be opened, GG_ENOMEM, or GG_EINTERNAL when
 * fork/pipe fail. A failure to enter the namespace, chdir
 * or exec is reported by the child: exit code 127 and a line in the tail. */
int executor_start(executor_t *e, const executor_job_t *job, uint64_t *job_id_out) GG_MUST_CHECK;

/* Number of jobs running. */
unsigned executor_running(const executor_t *e);

/* The concurrency cap (max_workers): executor_start returns GG_EBUSY while
 * executor_running() equals it. */
unsigned executor_max_workers(const executor_t *e);

/* Ends a job: SIGTERM to its group now, SIGKILL after the grace. The callback
 * follows when it has exited, with cancelled set. Returns 0 or GG_ENOTFOUND. */
int executor_cancel(executor_t *e, uint64_t job_id);

/* Ends a job like executor_cancel, but no callback will follow: for a caller
 * that forgets the job at once (its tag and callback argument may be freed
 * right after this returns). The job still counts as killed in the stats.
 * Returns 0 or GG_ENOTFOUND. */
int executor_abandon(executor_t *e, uint64_t job_id);

/* executor_cancel for every running job. */
void executor_cancel_all(executor_t *e);

/* Checks children watched without a pidfd (after a SIGCHLD, say); the
 * executor also polls them on its own every EXECUTOR_REAP_POLL_MS. */
void executor_reap(executor_t *e);

void executor_stats(const executor_t *e, executor_stats_t *out);

/* Kills the process groups recorded in `pgid_dir` by an earlier run and
 * deletes their files. A file is named PGID.pgid and holds "PGID BOOT_ID\n";
 * a group is killed (SIGKILL) only when the boot id is this boot's, the group
 * still exists and is not the caller's own. Sets *killed_out (may be NULL) to
 * the number of groups killed. Returns 0, or GG_EIO when the directory cannot
 * be read (a missing directory is not an error). */
int executor_kill_stale_groups(const char *pgid_dir, int *killed_out);

#endif
