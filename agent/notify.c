/*
 * notify.c: runs a plan's notify hook for its events (see notify.h).
 *
 * A notification is rendered and serialised when the event happens (the plan
 * may be gone by the time a worker frees up), kept in a bounded FIFO and
 * started by notify_pump when the executor has a free slot.
 */
#include "notify.h"
#include "gg_log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *command;
    char *stdin_data;
    size_t stdin_len;
    uint64_t timeout_ms;
    char event[32];
    char plan_id[65];
    char *plan_name;
    char *target; /* ref or NULL */
} s_job_t;

struct notify_t {
    executor_t *executor;
    char *node;
    s_job_t *queue[NOTIFY_QUEUE_MAX]; /* ring */
    size_t head, count;
    notify_stats_t stats;
};

static void s_job_free(s_job_t **job_p)
{
    s_job_t *job = *job_p;
    if (!job)
        return;
    free(job->command);
    free(job->stdin_data);
    free(job->plan_name);
    free(job->target);
    free(job);
    *job_p = NULL;
}

notify_t *notify_new(executor_t *executor, const char *node)
{
    assert(executor);
    notify_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->executor = executor;
    if (!(self->node = strdup(node ? node : ""))) {
        free(self);
        return NULL;
    }
    return self;
}

void notify_destroy(notify_t **self_p)
{
    notify_t *self = *self_p;
    if (!self)
        return;
    while (self->count) {
        s_job_free(&self->queue[self->head]);
        self->head = (self->head + 1) % NOTIFY_QUEUE_MAX;
        self->count--;
    }
    free(self->node);
    free(self);
    *self_p = NULL;
}

bool notify_wants(const plan_t *plan, const char *event)
{
    const plan_spec_t *s = plan ? plan_spec(plan) : NULL;
    if (!s || !s->notify.run)
        return false;
    for (size_t i = 0; i < s->notify_on_count; i++)
        if (!strcmp(s->notify_on[i], event))
            return true;
    return false;
}

static void s_now_rfc3339(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static int s_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    notify_t *self = arg;
    s_job_t *job = r->tag;
    (void) job_id;
    if (r->exit_code == 0 && !r->timed_out && !r->cancelled) {
        self->stats.ok++;
        gg_debug("notify: %s hook of plan %s ran", job->event, job->plan_name);
    } else {
        self->stats.failed++;
        char why[64];
        if (r->timed_out)
            snprintf(why, sizeof why, "timed out");
        else if (r->signal)
            snprintf(why, sizeof why, "was killed by signal %d", r->signal);
        else
            snprintf(why, sizeof why, "exited with %d", r->exit_code);
        /* The tail is the hook's own output: show a short sample. */
        gg_warn("notify: the %s hook of plan %s%s%s %s: %.200s", job->event, job->plan_name,
                job->target ? " for " : "", job->target ? job->target : "", why,
                r->tail ? r->tail : "");
    }
    s_job_free(&job);
    notify_pump(self);
    return 0;
}

static int s_start(notify_t *self, s_job_t *job)
{
    executor_env_t env[4];
    size_t n = 0;
    env[n++] = (executor_env_t){"GAGGLE_EVENT", job->event};
    env[n++] = (executor_env_t){"GAGGLE_PLAN", job->plan_id};
    env[n++] = (executor_env_t){"GAGGLE_PLAN_NAME", job->plan_name};
    if (job->target)
        env[n++] = (executor_env_t){"GAGGLE_TARGET", job->target};
    executor_job_t ej = {
        .command = job->command,
        .env = env,
        .env_count = n,
        .timeout_ms = job->timeout_ms,
        .stdin_data = job->stdin_data,
        .stdin_len = job->stdin_len,
        .tag = job,
        .on_done = s_done,
        .on_done_arg = self,
    };
    uint64_t id;
    return executor_start(self->executor, &ej, &id);
}

void notify_pump(notify_t *self)
{
    if (!self)
        return;
    while (self->count) {
        s_job_t *job = self->queue[self->head];
        int rc = s_start(self, job);
        if (rc == GG_EBUSY)
            return; /* a slot frees up later */
        self->queue[self->head] = NULL;
        self->head = (self->head + 1) % NOTIFY_QUEUE_MAX;
        self->count--;
        if (rc != 0) {
            self->stats.failed++;
            gg_warn("notify: cannot start the %s hook of plan %s: %s", job->event, job->plan_name,
                    gg_strerror(rc));
            s_job_free(&job);
        }
    }
}

int notify_event(notify_t *self, const plan_t *plan, const char *event, long target,
                 const json_t *plan_info, const json_t *target_info)
{
    assert(self && plan && event);
    if (!notify_wants(plan, event)) {
        self->stats.skipped++;
        return 0;
    }
    const plan_spec_t *s = plan_spec(plan);
    int rc = GG_ENOMEM;
    json_t *payload = NULL;
    s_job_t *job = calloc(1, sizeof *job);
    if (!job)
        goto out;
    snprintf(job->event, sizeof job->event, "%s", event);
    snprintf(job->plan_id, sizeof job->plan_id, "%s", plan_id(plan));
    job->timeout_ms = s->notify.timeout_ms;
    if (!(job->plan_name = strdup(plan_name(plan))))
        goto out;
    const char *ref = target >= 0 ? plan_target_ref(plan, (size_t) target) : NULL;
    if (ref && !(job->target = strdup(ref)))
        goto out;

    char err[256];
    plan_render_ctx_t ctx = {0};
    if (target_info) {
        ctx.attempt = (uint32_t) json_integer_value(json_object_get(target_info, "attempt"));
        ctx.epoch = (uint64_t) json_integer_value(json_object_get(target_info, "epoch"));
    }
    rc = plan_render(plan, target >= 0 ? (size_t) target : (size_t) -1, &ctx, s->notify.run,
                     TEMPLATE_SHELL, &job->command, err, sizeof err);
    if (rc != 0) {
        gg_warn("notify: cannot render the notify command of plan %s for %s: %s", plan_name(plan),
                event, err);
        self->stats.failed++;
        goto out;
    }

    char at[40];
    s_now_rfc3339(at, sizeof at);
    rc = GG_ENOMEM;
    payload = json_pack("{s:s, s:s, s:s, s:O}", "event", event, "node", self->node, "at", at,
                        "plan", plan_info ? plan_info : json_null());
    if (!payload || (target_info && json_object_set(payload, "target", (json_t *) target_info)))
        goto out;
    job->stdin_data = json_dumps(payload, JSON_COMPACT);
    if (!job->stdin_data)
        goto out;
    job->stdin_len = strlen(job->stdin_data);
    if (job->stdin_len > EXECUTOR_STDIN_MAX) {
        /* Only a huge counts object could do this: send the event alone. */
        free(job->stdin_data);
        json_object_set_new(payload, "plan", json_pack("{s:s}", "id", job->plan_id));
        json_object_del(payload, "target");
        if (!(job->stdin_data = json_dumps(payload, JSON_COMPACT)))
            goto out;
        job->stdin_len = strlen(job->stdin_data);
    }

    if (self->count == NOTIFY_QUEUE_MAX) {
        s_job_t *old = self->queue[self->head];
        gg_warn("notify: queue full: the %s notification of plan %s is dropped", old->event,
                old->plan_name);
        s_job_free(&old);
        self->queue[self->head] = NULL;
        self->head = (self->head + 1) % NOTIFY_QUEUE_MAX;
        self->count--;
        self->stats.dropped++;
    }
    self->queue[(self->head + self->count) % NOTIFY_QUEUE_MAX] = job;
    self->count++;
    self->stats.queued++;
    job = NULL;
    rc = 0;
    gg_info("notify: plan %s: %s%s%s", plan_name(plan), event, ref ? " " : "", ref ? ref : "");
    notify_pump(self);
out:
    json_decref(payload);
    s_job_free(&job);
    return rc;
}

const notify_stats_t *notify_stats(const notify_t *self)
{
    return &self->stats;
}

size_t notify_pending(const notify_t *self)
{
    return self ? self->count : 0;
}
