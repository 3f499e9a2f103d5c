/*
 * scaler.c: fleet autoscaling by one deterministically chosen member (see
 * scaler.h for the rules). Everything runs on the agent's loop.
 */
#include "scaler.h"
#include "agent.h"
#include "cluster.h"
#include "engine.h"
#include "executor.h"
#include "gg_error.h"
#include "gg_log.h"
#include "membership.h"
#include "rendezvous.h"
#include "wire.h"

#include <czmq.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char s_role_key[] = "gaggle/scaler";

struct scaler_t {
    agent_t *agent;
    cluster_t *cluster;
    engine_t *engine;
    int timer;
    bool running;          /* a provider call is under way */
    uint64_t last_call_ms; /* monotonic: an "up" call or retire requests */
    bool called_once;
    uint64_t last_down_ms; /* monotonic: the last "down" call */
    bool down_once;
    scaler_stats_t stats;
};

uint32_t scaler_desired(const config_scale_t *cfg, uint64_t backlog)
{
    uint64_t per = cfg->targets_per_agent ? cfg->targets_per_agent : 1;
    uint64_t want = backlog / per + (backlog % per != 0);
    if (want < cfg->min_agents)
        want = cfg->min_agents;
    if (want > cfg->max_agents)
        want = cfg->max_agents;
    return (uint32_t) want;
}

static bool s_live(const member_t *m)
{
    return m->state == MEMBER_ALIVE || m->state == MEMBER_SUSPECT;
}

static bool s_active(const member_t *m)
{
    return s_live(m) && !(m->flags & MEMBER_FLAG_DRAINING);
}

static uint64_t s_role(void)
{
    return rendezvous_key(s_role_key, sizeof s_role_key - 1);
}

static uint64_t s_score(const member_t *m)
{
    return rendezvous_score(rendezvous_node_seed(m->id), s_role());
}

/* The decider in this node's view: the active member with the highest
 * score (ties: the lower id), or NULL. */
static const member_t *s_decider(scaler_t *self)
{
    return cluster_chosen(self->cluster, s_role(), true);
}

/* Targets pending, running or waiting to retry in active plans. */
static uint64_t s_backlog(engine_t *engine)
{
    uint64_t backlog = 0;
    for (size_t i = 0; i < engine_plan_count(engine); i++) {
        const engine_plan_t *p = engine_plan_at(engine, i);
        fleet_plan_stats_t st;
        const char *state = p ? engine_plan_state(engine, p) : NULL;
        if (!state || strcmp(state, "active") != 0 || engine_plan_stats(engine, p, &st) != 0)
            continue;
        backlog += (uint64_t) st.counts[TARGET_PENDING] + st.counts[TARGET_RUNNING] +
                   st.counts[TARGET_RETRY_WAIT];
    }
    return backlog;
}

static int s_call_done(void *arg, uint64_t job_id, const executor_result_t *r)
{
    scaler_t *self = arg;
    (void) job_id;
    self->running = false;
    if (r->exit_code == 0 && !r->timed_out && !r->cancelled) {
        self->stats.calls_ok++;
        gg_info("scaler: the provider command succeeded");
    } else {
        self->stats.calls_failed++;
        gg_warn("scaler: the provider command %s: %.300s",
                r->timed_out ? "timed out"
                : r->signal  ? "was killed"
                             : "failed",
                r->tail ? r->tail : "");
    }
    return 0;
}

/* Runs scale.run with the decision on stdin. Returns 0 when started. */
static int s_call(scaler_t *self, const char *action, uint32_t desired, uint32_t current,
                  uint64_t backlog, const char *reason, json_t *remove, json_t *members)
{
    const config_scale_t *cfg = &agent_config(self->agent)->scale;
    json_t *doc =
        json_pack("{s:s, s:i, s:i, s:I, s:s, s:O, s:O}", "action", action, "desired", (int) desired,
                  "current", (int) current, "backlog", (json_int_t) backlog, "reason", reason,
                  "remove", remove, "members", members);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return GG_ENOMEM;
    executor_env_t env[] = {{"GAGGLE_SCALE_ACTION", action}};
    executor_job_t job = {
        .command = cfg->run,
        .env = env,
        .env_count = 1,
        .timeout_ms = SCALER_RUN_TIMEOUT,
        .stdin_data = text,
        .stdin_len = strlen(text),
        .on_done = s_call_done,
        .on_done_arg = self,
    };
    uint64_t id;
    int rc = executor_start(engine_executor(self->engine), &job, &id);
    if (rc == 0) {
        self->running = true;
        gg_warn("scaler: %s: %s (desired %u, current %u): running the provider", action, reason,
                desired, current);
    } else if (rc != GG_EBUSY) {
        self->stats.calls_failed++;
        gg_warn("scaler: cannot run the provider command: %s", gg_strerror(rc));
    }
    free(text);
    return rc;
}

static void s_send_retire(scaler_t *self, const member_t *m)
{
    wire_writer_t *w = wire_writer_new(WIRE_SCALE, agent_node_key(self->agent)->public_key, 1);
    const uint8_t *data;
    size_t len;
    if (!w)
        return;
    wire_put_bool(w, "retire", true);
    if (wire_writer_finish(w, &data, &len) == 0 &&
        cluster_send(self->cluster, m->address, WIRE_SCALE, data, len) == 0) {
        self->stats.retire_sent++;
        gg_warn("scaler: asking %s to retire (scale-down)", m->name);
    }
    wire_writer_destroy(&w);
}

static bool s_cooled(uint64_t now, uint64_t last, bool once, uint64_t cooldown)
{
    return !once || now >= last + cooldown;
}

static void s_tick_decider(scaler_t *self, membership_t *ms, const config_scale_t *cfg)
{
    uint64_t now = cluster_now_ms();
    uint64_t backlog = s_backlog(self->engine);
    uint32_t desired = scaler_desired(cfg, backlog), current = 0;
    json_t *members = json_array(), *remove = json_array();
    if (!members || !remove)
        goto out;
    for (size_t i = 0; i < membership_size(ms); i++) {
        const member_t *m = membership_at(ms, i);
        if (s_active(m)) {
            current++;
            json_array_append_new(members, json_string(m->name));
        } else if (s_live(m) && (m->flags & MEMBER_FLAG_RETIRING) &&
                   json_array_size(remove) < SCALER_REMOVE_MAX &&
                   engine_held_by(self->engine, m->id, 1) == 0) {
            json_array_append_new(remove, json_string(m->name));
        }
    }
    self->stats.desired = desired;
    char reason[200];
    if (json_array_size(remove) &&
        s_cooled(now, self->last_down_ms, self->down_once, cfg->cooldown_ms)) {
        snprintf(reason, sizeof reason, "%zu retiring agent%s hold no target",
                 json_array_size(remove), json_array_size(remove) == 1 ? "" : "s");
        if (s_call(self, "down", current, current, backlog, reason, remove, members) == 0) {
            self->last_down_ms = now;
            self->down_once = true;
        }
        goto out;
    }
    if (desired == current ||
        !s_cooled(now, self->last_call_ms, self->called_once, cfg->cooldown_ms))
        goto out;
    snprintf(reason, sizeof reason,
             "%llu targets pending, running or waiting to retry need %u agent%s at "
             "targetsPerAgent %u",
             (unsigned long long) backlog, desired, desired == 1 ? "" : "s",
             cfg->targets_per_agent);
    if (desired > current) {
        if (s_call(self, "up", desired, current, backlog, reason, remove, members) == 0) {
            self->last_call_ms = now;
            self->called_once = true;
        }
        goto out;
    }
    /* Scale down: the lowest-scoring active members other than this one retire. */
    const member_t *me = membership_self(ms);
    for (uint32_t k = current; k > desired; k--) {
        const member_t *pick = NULL;
        for (size_t i = 0; i < membership_size(ms); i++) {
            const member_t *m = membership_at(ms, i);
            if (!s_active(m) || m == me || (m->flags & MEMBER_FLAG_RETIRING) ||
                !(m->flags & MEMBER_FLAG_ELASTIC))
                continue;
            bool sent = false;
            for (size_t j = 0; j < json_array_size(remove) && !sent; j++)
                sent = !strcmp(json_string_value(json_array_get(remove, j)), m->name);
            if (sent)
                continue;
            if (!pick || s_score(m) < s_score(pick))
                pick = m;
        }
        if (!pick && me && (me->flags & MEMBER_FLAG_ELASTIC) &&
            !(me->flags & MEMBER_FLAG_RETIRING)) {
            /* The last elastic member is this one: it retires itself, and the
             * role passes to the next decider, which has it stopped. */
            if (cluster_set_flags(self->cluster, MEMBER_FLAG_DRAINING | MEMBER_FLAG_RETIRING, 0) ==
                0)
                gg_warn("scaler: retiring this node (scale-down): no other elastic member");
            break;
        }
        if (!pick)
            break; /* no elastic member left to retire */
        s_send_retire(self, pick);
        json_array_append_new(remove, json_string(pick->name)); /* not picked twice */
    }
    gg_warn("scaler: down: %s (desired %u, current %u)", reason, desired, current);
    self->last_call_ms = now;
    self->called_once = true;
out:
    json_decref(members);
    json_decref(remove);
}

static int s_tick(zloop_t *loop, int timer_id, void *arg)
{
    scaler_t *self = arg;
    (void) loop;
    (void) timer_id;
    const config_scale_t *cfg = &agent_config(self->agent)->scale;
    membership_t *ms = cluster_membership(self->cluster);
    const member_t *decider = s_decider(self), *me = membership_self(ms);
    bool elastic = cfg->enabled && cfg->elastic;
    if (me && elastic != ((me->flags & MEMBER_FLAG_ELASTIC) != 0) &&
        cluster_set_flags(self->cluster, elastic ? MEMBER_FLAG_ELASTIC : 0,
                          elastic ? 0 : MEMBER_FLAG_ELASTIC) != 0)
        gg_warn("scaler: cannot announce this node as %selastic", elastic ? "" : "not ");
    self->stats.decider =
        cfg->enabled && cfg->run && decider && me && !memcmp(decider->id, me->id, MEMBER_ID_LEN);
    if (!self->stats.decider) {
        self->stats.desired = 0;
        return 0;
    }
    if (!self->running)
        s_tick_decider(self, ms, cfg);
    return 0;
}

/* A retire request: obeyed only from the decider of this node's own view,
 * and only when this node is elastic (scale.elastic: true). */
static void s_on_scale(void *arg, const transport_delivery_t *d)
{
    scaler_t *self = arg;
    const config_scale_t *cfg = &agent_config(self->agent)->scale;
    membership_t *ms = cluster_membership(self->cluster);
    const member_t *decider = s_decider(self), *me = membership_self(ms);
    const msgpack_object *retire = wire_map_get(&d->msg->body, "retire");
    if (!retire || retire->type != MSGPACK_OBJECT_BOOLEAN || !retire->via.boolean) {
        self->stats.retire_refused++;
        gg_warn("scaler: a malformed scale message from %s was dropped", d->cert->name);
        return;
    }
    if (!cfg->enabled || !cfg->elastic || !decider ||
        memcmp(decider->id, d->msg->sender, MEMBER_ID_LEN) != 0 ||
        (me && !memcmp(me->id, d->msg->sender, MEMBER_ID_LEN))) {
        self->stats.retire_refused++;
        gg_warn("scaler: a retire request from %s was refused: %s", d->cert->name,
                !cfg->enabled || !cfg->elastic ? "this node is not elastic (scale.elastic)"
                                               : "it is not the fleet's scaler");
        return;
    }
    if (me && (me->flags & MEMBER_FLAG_RETIRING))
        return;
    if (cluster_set_flags(self->cluster, MEMBER_FLAG_DRAINING | MEMBER_FLAG_RETIRING, 0) == 0) {
        self->stats.retire_applied++;
        gg_warn("scaler: retiring at the request of %s (scale-down): this node takes no new "
                "targets and will be stopped once its running ones end",
                d->cert->name);
    }
}

scaler_t *scaler_new(agent_t *agent, cluster_t *cluster, engine_t *engine)
{
    scaler_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->agent = agent;
    self->cluster = cluster;
    self->engine = engine;
    self->timer = zloop_timer(agent_loop(agent), SCALER_TICK_MS, 0, s_tick, self);
    if (self->timer < 0 || cluster_on_message(cluster, WIRE_SCALE, s_on_scale, self) != 0) {
        scaler_destroy(&self);
        return NULL;
    }
    return self;
}

void scaler_destroy(scaler_t **self_p)
{
    scaler_t *self = *self_p;
    if (!self)
        return;
    if (self->timer >= 0)
        zloop_timer_end(agent_loop(self->agent), self->timer);
    free(self);
    *self_p = NULL;
}

const scaler_stats_t *scaler_stats(const scaler_t *self)
{
    return &self->stats;
}
