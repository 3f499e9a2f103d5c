/*
 * sim_experiment.c: measured scenarios run inside the chaos phase.
 *
 * Each experiment first lets the fleet form on a clean network (warm-up:
 * until every up node lists every up node as live with one checksum), then
 * switches the configured loss, duplication and reordering on and runs its
 * trials, a gap of 5 probe intervals apart:
 *
 *   disseminate  a random node changes its flags (membership_set_flags: a new
 *                incarnation gossiped like any update); measured: the time
 *                until 50/90/99/99.99/100% of the other up nodes hold the
 *                new record (incarnation and flags), from their own outputs.
 *   detect       a random node crashes; measured: first suspicion, first
 *                death and the time until every up node lists it dead. It
 *                then restarts and the fleet re-converges before the next.
 *   join         the last node is held back; once the others have converged,
 *                ownership of the targets (rendezvous over node 0's live,
 *                non-draining view) is computed, the newcomer starts, and
 *                after convergence ownership is computed again: targets
 *                moved, and max/mean owned before and after.
 *
 * State diagram (one per run):
 *   WARMUP --converged--> GAP --gap over--> TRIAL --done/timeout--> GAP ...
 *   (detect: TRIAL --> RECOVER --converged--> GAP)          last trial: DONE
 */
#include "sim.h"

#include "rendezvous.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { E_WARMUP = 0, E_GAP, E_TRIAL, E_RECOVER, E_DONE } s_phase_t;

struct sim_exp {
    sim_config_t cfg;
    s_phase_t phase;
    uint64_t until, t0;
    rng_t rng;
    uint8_t *seen;
    uint32_t count, expected;
    sim_node_t *subject;
    uint64_t target_inc;
    uint32_t target_flags;
    uint64_t *keys;
    uint32_t *owner_before, *owner_after;
    sim_exp_result_t res;
};

sim_exp_t *sim_exp_new(sim_t *sim, const sim_config_t *cfg)
{
    sim_exp_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *cfg;
    e->res.kind = cfg->experiment;
    rng_seed(&e->rng, cfg->seed ^ 0xE7E7E7E7ull);
    e->seen = calloc(cfg->nodes, 1);
    if (!e->seen)
        goto fail;
    if (cfg->experiment == SIM_EXP_JOIN) {
        sim_node(sim, cfg->nodes - 1)->held = true;
        if (cfg->targets > 0) {
            e->keys = sim_target_keys(cfg->targets);
            e->owner_before = calloc(cfg->targets, sizeof *e->owner_before);
            e->owner_after = calloc(cfg->targets, sizeof *e->owner_after);
            if (!e->keys || !e->owner_before || !e->owner_after)
                goto fail;
        }
    }
    return e;
fail:
    sim_exp_destroy(&e);
    return NULL;
}

void sim_exp_destroy(sim_exp_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sim_exp_t *e = *self_p;
    free(e->seen);
    free(e->keys);
    free(e->owner_before);
    free(e->owner_after);
    free(e);
    *self_p = NULL;
}

void sim_exp_result(const sim_exp_t *e, sim_exp_result_t *out)
{
    *out = e->res;
}

/* ---- ownership ---- */

uint64_t *sim_target_keys(uint32_t targets)
{
    uint64_t *keys = malloc((size_t) (targets ? targets : 1) * sizeof *keys);
    if (!keys)
        return NULL;
    char ref[64];
    for (uint32_t i = 0; i < targets; i++) {
        int len = snprintf(ref, sizeof ref, "component:default/target-%u", i);
        keys[i] = rendezvous_key(ref, (size_t) len);
    }
    return keys;
}

typedef struct {
    uint8_t id[MEMBER_ID_LEN];
    uint32_t index;
} s_owner_t;

static int s_owner_cmp(const void *a, const void *b)
{
    return memcmp(((const s_owner_t *) a)->id, ((const s_owner_t *) b)->id, MEMBER_ID_LEN);
}

int sim_ownership(sim_t *sim, sim_node_t *observer, const uint64_t *keys, uint32_t targets,
                  uint32_t *owner_of, uint32_t *n_owners, double *max_mean)
{
    int rc = -1;
    membership_t *m = sim_membership(observer);
    size_t size = m ? membership_size(m) : 0;
    s_owner_t *owners = calloc(size ? size : 1, sizeof *owners);
    uint64_t *seeds = calloc(size ? size : 1, sizeof *seeds);
    uint32_t *counts = calloc(size ? size : 1, sizeof *counts);
    uint32_t n = 0;
    *n_owners = 0;
    *max_mean = 0;
    if (!m || !owners || !seeds || !counts)
        goto out;
    for (size_t i = 0; i < size; i++) {
        const member_t *mb = membership_at(m, i);
        if ((mb->state != MEMBER_ALIVE && mb->state != MEMBER_SUSPECT) ||
            (mb->flags & MEMBER_FLAG_DRAINING))
            continue;
        sim_node_t *node = sim_node_by_id(sim, mb->id);
        if (!node)
            continue;
        memcpy(owners[n].id, mb->id, MEMBER_ID_LEN);
        owners[n++].index = node->index;
    }
    if (n == 0)
        goto out;
    /* Canonical order (by id): every node computes the same owners. */
    qsort(owners, n, sizeof *owners, s_owner_cmp);
    for (uint32_t i = 0; i < n; i++)
        seeds[i] = rendezvous_node_seed(owners[i].id);
    /* With a bounded-load cap, the fleet core's rule: the same function
     * over the same owner list, targets in index order. */
    uint32_t milli = sim_config(sim)->bounded_load_milli;
    uint32_t cap = milli ? rendezvous_cap(targets, n, milli) : 0;
    for (uint32_t t = 0; t < targets; t++) {
        size_t o;
        if (milli) {
            o = rendezvous_owner_bounded(seeds, n, keys[t], cap, counts); /* counts it */
        } else {
            o = rendezvous_owner(seeds, n, keys[t]);
            counts[o]++;
        }
        if (owner_of)
            owner_of[t] = owners[o].index;
    }
    uint32_t max = 0;
    for (uint32_t i = 0; i < n; i++)
        max = counts[i] > max ? counts[i] : max;
    *n_owners = n;
    *max_mean = targets ? (double) max / ((double) targets / (double) n) : 0;
    rc = 0;
out:
    free(owners);
    free(seeds);
    free(counts);
    return rc;
}

/* ---- trial bookkeeping ---- */

static sim_node_t *s_random_up(sim_exp_t *e, sim_t *sim)
{
    uint32_t n = sim_node_count(sim);
    for (int tries = 0; tries < 1000; tries++) {
        sim_node_t *node = sim_node(sim, (uint32_t) rng_below(&e->rng, n));
        if (node->up)
            return node;
    }
    return NULL;
}

static uint64_t s_gap(const sim_t *sim)
{
    return 5ull * sim_profile(sim)->probe_interval_ms;
}

/* Long enough for a detection at its slowest, or a dissemination. */
static uint64_t s_trial_timeout(const sim_t *sim)
{
    const membership_profile_t *p = sim_profile(sim);
    double scale = log10((double) sim_node_count(sim));
    if (scale < 1.0)
        scale = 1.0;
    double susp_max = (double) p->suspicion_mult * scale * (double) p->probe_interval_ms *
                      (double) p->suspicion_max_timeout_mult;
    return (uint64_t) susp_max + 60ull * p->probe_interval_ms;
}

static double s_secs(uint64_t ms)
{
    return (double) ms / 1000.0;
}

static void s_trial_reset(sim_exp_t *e, sim_t *sim)
{
    sim_trial_t *t = &e->res.trials[e->res.trials_done];
    memset(t, 0, sizeof *t);
    t->t50 = t->t90 = t->t99 = t->t9999 = t->t100 = -1;
    t->first_suspect = t->first_dead = t->all_dead = -1;
    memset(e->seen, 0, sim_node_count(sim));
    e->count = 0;
    e->t0 = sim_now(sim);
    e->until = sim_now(sim) + s_trial_timeout(sim);
    e->phase = E_TRIAL;
}

static void s_reached(sim_exp_t *e, sim_t *sim)
{
    sim_trial_t *t = &e->res.trials[e->res.trials_done];
    double now = s_secs(sim_now(sim) - e->t0);
    double frac = e->expected ? (double) e->count / (double) e->expected : 1.0;
    t->reached = e->count;
    if (t->t50 < 0 && frac >= 0.5)
        t->t50 = now;
    if (t->t90 < 0 && frac >= 0.9)
        t->t90 = now;
    if (t->t99 < 0 && frac >= 0.99)
        t->t99 = now;
    /* 99.99% of the observers, rounded up: every one of them below 10,000. */
    if (t->t9999 < 0 && (uint64_t) e->count * 10000 >= (uint64_t) e->expected * 9999)
        t->t9999 = now;
    if (t->t100 < 0 && e->count >= e->expected)
        t->t100 = now;
}

/* ---- the experiments ---- */

static void s_start_trial(sim_exp_t *e, sim_t *sim)
{
    sim_node_t *node = s_random_up(e, sim);
    if (!node) {
        e->phase = E_DONE;
        return;
    }
    s_trial_reset(e, sim);
    sim_trial_t *t = &e->res.trials[e->res.trials_done];
    e->subject = node;
    t->node = (int32_t) node->index;
    uint32_t n_up = 0;
    for (uint32_t i = 0; i < sim_node_count(sim); i++)
        n_up += sim_node(sim, i)->up ? 1 : 0;
    if (e->cfg.experiment == SIM_EXP_DISSEMINATE) {
        membership_t *m = sim_membership(node);
        uint32_t flags = membership_self(m)->flags ^ MEMBER_FLAG_DRAINING;
        if (membership_set_flags(m, sim_now(sim), flags) != 0) {
            e->phase = E_DONE;
            return;
        }
        e->target_inc = membership_self(m)->incarnation;
        e->target_flags = flags;
        e->expected = n_up - 1;
        t->expected = e->expected;
        sim_membership_drain(sim, node);
        sim_node_reschedule(sim, node);
    } else {
        e->target_inc = node->boot_incarnation;
        sim_crash(sim, node);
        e->expected = n_up - 1;
        t->expected = e->expected;
    }
}

static bool s_end_trial(sim_exp_t *e, sim_t *sim)
{
    e->res.trials_done++;
    if (e->cfg.experiment == SIM_EXP_DETECT) {
        (void) sim_restart(sim, e->subject);
        e->phase = E_RECOVER;
        return false;
    }
    if (e->res.trials_done >= e->cfg.trials) {
        e->phase = E_DONE;
        return true;
    }
    e->phase = E_GAP;
    e->until = sim_now(sim) + s_gap(sim);
    return false;
}

static void s_join_measure(sim_exp_t *e, sim_t *sim, bool after)
{
    sim_node_t *obs = sim_node(sim, 0);
    uint32_t n_owners = 0;
    double max_mean = 0;
    if (!e->keys || !obs->up)
        return;
    uint32_t *owner_of = after ? e->owner_after : e->owner_before;
    if (!e->cfg.fleet ||
        sim_fleet_ownership(sim, obs, e->keys, e->cfg.targets, owner_of, &n_owners, &max_mean) != 0)
        (void) sim_ownership(sim, obs, e->keys, e->cfg.targets, owner_of, &n_owners, &max_mean);
    e->res.targets = e->cfg.targets;
    if (!after) {
        e->res.owners_before = n_owners;
        e->res.max_mean_before = max_mean;
        return;
    }
    e->res.owners_after = n_owners;
    e->res.max_mean_after = max_mean;
    e->res.moved = 0;
    for (uint32_t i = 0; i < e->cfg.targets; i++)
        e->res.moved += e->owner_before[i] != e->owner_after[i] ? 1 : 0;
}

bool sim_exp_step(sim_exp_t *e, sim_t *sim)
{
    const sim_config_t *cfg = &e->cfg;
    uint64_t now = sim_now(sim);
    switch (e->phase) {
    case E_WARMUP:
        if (!sim_views_converged(sim))
            return false;
        e->res.warmup_s = s_secs(now);
        sim_set_impairments(sim, cfg->loss, cfg->dup, cfg->reorder);
        if (cfg->experiment == SIM_EXP_JOIN) {
            s_join_measure(e, sim, false);
            s_trial_reset(e, sim);
            e->res.trials[0].node = (int32_t) (cfg->nodes - 1);
            if (sim_restart(sim, sim_node(sim, cfg->nodes - 1)) != 0) {
                e->phase = E_DONE;
                return true;
            }
            return false;
        }
        e->phase = E_GAP;
        e->until = now + s_gap(sim);
        return false;
    case E_GAP:
        if (now >= e->until)
            s_start_trial(e, sim);
        return e->phase == E_DONE;
    case E_TRIAL:
        if (cfg->experiment == SIM_EXP_JOIN) {
            if (sim_views_converged(sim)) {
                e->res.trials[0].t100 = s_secs(now - e->t0);
                s_join_measure(e, sim, true);
                e->res.join_done = true;
                e->res.trials_done = 1;
                e->phase = E_DONE;
                return true;
            }
            if (now >= e->until) {
                e->phase = E_DONE;
                return true;
            }
            return false;
        }
        if (e->count >= e->expected || now >= e->until)
            return s_end_trial(e, sim);
        return false;
    case E_RECOVER:
        if (!sim_views_converged(sim))
            return false;
        if (e->res.trials_done >= cfg->trials) {
            e->phase = E_DONE;
            return true;
        }
        e->phase = E_GAP;
        e->until = now + s_gap(sim);
        return false;
    case E_DONE: return true;
    }
    return true;
}

void sim_exp_changed(sim_exp_t *e, sim_t *sim, sim_node_t *observer, const member_t *member,
                     member_state_t old_state, bool added)
{
    if (e->phase != E_TRIAL || !e->subject || observer == e->subject ||
        memcmp(member->id, e->subject->id, MEMBER_ID_LEN) != 0 || e->seen[observer->index])
        return;
    sim_trial_t *t = &e->res.trials[e->res.trials_done];
    double now = s_secs(sim_now(sim) - e->t0);
    if (e->cfg.experiment == SIM_EXP_DISSEMINATE) {
        if (member->incarnation < e->target_inc || member->flags != e->target_flags)
            return;
        e->seen[observer->index] = 1;
        e->count++;
        s_reached(e, sim);
        return;
    }
    if (e->cfg.experiment != SIM_EXP_DETECT || member->incarnation < e->target_inc)
        return;
    if (member->state == MEMBER_SUSPECT && t->first_suspect < 0)
        t->first_suspect = now;
    if (member->state == MEMBER_DEAD || member->state == MEMBER_LEFT) {
        if (t->first_dead < 0)
            t->first_dead = now;
        e->seen[observer->index] = 1;
        e->count++;
        t->reached = e->count;
        if (e->count >= e->expected)
            t->all_dead = now;
    }
}
