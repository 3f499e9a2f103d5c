/*
 * sim_fleet.c: the fleet core (coordination/fleet.c: ownership, leases,
 * progress replication, documents) as a simulator machine, with simulated
 * workers in place of the runner and a checker that sees every node.
 *
 * The driver mirrors agent/engine.c:
 *   - boot: the plan document and the records on the node's disk are
 *     restored (fleet_restore_doc after fleet_add_plan, fleet_restore_record),
 *     then the membership view is handed over (fleet_set_members), and
 *     again S_VIEW_COALESCE_MS after it changes (changes coalesce, as the
 *     engine applies them from its ticker);
 *   - capacity = workers - running executions - targets waiting to retry,
 *     given after every output (fleet_set_capacity);
 *   - FOUT_RUN starts an execution, FOUT_ABORT stops it; an outcome is a new
 *     record {epoch, attempt, holder self, state} through fleet_record_local;
 *     retry_wait waits its backoff, then runs again at attempt+1 (the
 *     driver's own re-run, as the engine's s_fire_retries);
 *   - FOUT_RECORD is written by a group commit S_FLUSH_MS later, as the
 *     engine's ticker does: a crash loses what was not yet written;
 *   - FOUT_SEND is an encoded envelope: the receiver decodes it with
 *     wire_decode and hands it to fleet_handle, the sender being the node
 *     that produced it (the transport's authenticated key);
 *   - FOUT_DOC is verified against the plan that was applied (its id is a
 *     hash of its bytes) and accepted: written to disk, fleet_add_plan,
 *     fleet_doc_accept.
 * One node applies the plan (fleet_doc_add) at plan_at_ms; the document is
 * padded to about S_DOC_BYTES_PER_TARGET per target, like a real plan with
 * its frozen entities, so large plans travel in several chunks.
 *
 * Invariants (the checker keeps a global view, which no node has):
 *   over-capacity      a node runs more executions than its workers
 *   run-not-claimed    FOUT_RUN without the node as holder of that epoch
 *   record-regressed   a node's record of a target goes down the merge order
 *                      within one life (the semilattice only grows)
 *   two-holders        two nodes claim one target in one epoch while no
 *                      partition is in force or recent, or two nodes have
 *                      a result of one epoch accepted
 *   doc-corrupted      an assembled document differs from the one applied
 *   codec              a fleet message does not decode, or names another
 *                      sender than the node that sent it
 *   target-lost / progress-diverged (end of the settle phase): a target not
 *                      terminal on every up node, or two up nodes holding
 *                      different records of it
 */
#include "sim.h"

#include "fleet.h"
#include "gg_error.h"
#include "progress.h"
#include "rendezvous.h"
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FLUSH_MS             5u
#define S_VIEW_COALESCE_MS     5u /* the engine hands the view over from its 5 ms ticker */
#define S_DOC_BYTES_PER_TARGET 300u
#define S_DOC_KIND_PLAN        1u
#define S_MAX_WORKERS          1024u

/* ---- the disk ---- */

/* A record as stored: its error text apart, and only when there is one (a
 * thousand nodes' copies of every record must fit in memory). */
typedef struct {
    uint32_t epoch, generation, attempt, duration_ms;
    uint8_t state, step;
    uint8_t holder[PROGRESS_ID_LEN];
    int32_t exit_code;
    uint64_t started_ms, finished_ms;
    char *error; /* NULL: none */
} s_stored_t;

/* What the record checker remembers of a record: the fields
 * progress_compare orders by. */
typedef struct {
    uint32_t epoch, generation, attempt;
    uint8_t state, step;
    uint8_t holder[PROGRESS_ID_LEN];
    uint64_t finished_ms;
} s_version_t;

/* The accepted document is the plan applied (s_on_doc checks every byte),
 * so a disk notes that it has it and reads the world's copy. */
typedef struct {
    bool has_doc;
    size_t doc_len;
    s_stored_t *recs; /* by target index */
    uint8_t *present;
    uint32_t n;
} s_disk_t;

/* ---- one node's instance ---- */

typedef struct {
    uint32_t index, epoch, attempt;
    uint64_t started, done_at;
} s_exec_t;

typedef struct {
    uint32_t index, epoch, attempt;
    uint64_t due;
} s_retry_t;

typedef struct {
    uint32_t index;
    progress_rec_t rec;
} s_write_t;

typedef struct {
    fleet_t *fleet;
    sim_t *sim;
    sim_node_t *node;
    rng_t rng;
    bool has_plan;
    s_exec_t *execs;
    uint32_t n_execs;
    s_retry_t *retries;
    uint32_t n_retries;
    s_write_t *writes; /* waiting for the group commit */
    uint32_t n_writes, cap_writes;
    uint64_t flush_at;
    uint64_t view_due; /* a changed view waits for the next ticker round */
    s_version_t *last; /* last record output per target (this life) */
    uint8_t *last_set;
    bool draining_outputs;
} s_inst_t;

/* ---- the world: the plan and the checker ---- */

typedef struct {
    uint64_t key; /* (target << 32 | epoch) + 1; 0 free */
    uint32_t holder;
    uint32_t result_holder; /* UINT32_MAX: no accepted result yet */
} s_claim_t;

typedef struct {
    const sim_config_t *cfg;
    uint32_t targets;
    uint64_t *keys;
    uint8_t *doc;
    size_t doc_len;
    uint8_t plan_id[FLEET_ID_LEN];
    uint32_t inject_node;
    uint64_t inject_at;
    bool injected;
    uint64_t applied_at;
    fleet_rollout_t rollout;
    /* per target */
    uint16_t *running;     /* nodes executing it now */
    uint64_t *terminal_at; /* first accepted terminal result (+1; 0: none) */
    uint8_t *has_terminal; /* node x target bitmap: terminal record output */
    uint32_t *n_terminal;  /* nodes with a terminal record */
    double *samples;
    uint32_t n_samples;
    uint32_t n_done; /* targets with an accepted terminal result */
    uint64_t done_at;
    s_claim_t *claims;
    uint32_t claims_cap, claims_n;
    uint32_t *claims_by_node; /* executions claimed (FOUT_RUN) per node */
    uint64_t churn_at;        /* last crash or boot + 1 (0: none) */
    uint32_t n_up;            /* up nodes, counted again after churn (up_dirty) */
    bool up_dirty;
    uint64_t window_ms; /* how long views may disagree after churn */
    sim_fleet_result_t res;
    /* the list handed to fleet_set_members: one for every node (nodes take
     * turns), kept for reuse */
    fleet_member_t *view;
    size_t view_cap;
} s_world_t;

static s_world_t *s_world(sim_t *sim)
{
    return sim_shared(sim, &sim_fleet_ops);
}

static uint64_t s_exec_mean(const sim_config_t *cfg)
{
    if (cfg->exec_ms)
        return cfg->exec_ms;
    if (strcmp(cfg->profile, "test") == 0)
        return 100;
    if (strcmp(cfg->profile, "wan") == 0)
        return 3000;
    return 1000;
}

/* A 32-byte id of the document's bytes (the real one is BLAKE2b of the
 * canonical plan; any collision-free enough function does here). */
static void s_doc_id(const uint8_t *data, size_t len, uint8_t out[FLEET_ID_LEN])
{
    for (int lane = 0; lane < 4; lane++) {
        uint64_t h = 0x9E3779B97F4A7C15ull * (uint64_t) (lane + 1) ^ len;
        for (size_t i = 0; i < len; i++)
            h = (h ^ data[i]) * 0x100000001B3ull;
        h = rng_mix64(h);
        memcpy(out + lane * 8, &h, 8);
    }
}

/* Two nodes may both believe they own a target, and claim it in the same
 * epoch, only while their views of the membership disagree: during or just
 * after a partition, or around a crash, restart or join (until every node
 * has heard of it and a claim has had time to replicate). Outside those
 * windows a second holder is a bug. */
static bool s_views_unsettled(sim_t *sim)
{
    const s_world_t *w = sim_shared(sim, &sim_fleet_ops);
    uint64_t now = sim_now(sim);
    if (sim_partition_recent(sim))
        return true;
    if (w->churn_at && now - (w->churn_at - 1) <= w->window_ms)
        return true;
    return !sim_views_converged(sim);
}

/* ---- the claims map: (target, epoch) -> holder ---- */

static s_claim_t *s_claim_slot(s_world_t *w, uint32_t index, uint32_t epoch, bool create)
{
    if (create && (w->claims_n + 1) * 2 > w->claims_cap) {
        uint32_t cap = w->claims_cap ? w->claims_cap * 2 : 1024;
        s_claim_t *grown = calloc(cap, sizeof *grown);
        if (!grown)
            return NULL;
        for (uint32_t i = 0; i < w->claims_cap; i++) {
            if (!w->claims[i].key)
                continue;
            uint32_t j = (uint32_t) rng_mix64(w->claims[i].key) & (cap - 1);
            while (grown[j].key)
                j = (j + 1) & (cap - 1);
            grown[j] = w->claims[i];
        }
        free(w->claims);
        w->claims = grown;
        w->claims_cap = cap;
    }
    if (!w->claims_cap)
        return NULL;
    uint64_t key = (((uint64_t) index << 32) | epoch) + 1;
    uint32_t j = (uint32_t) rng_mix64(key) & (w->claims_cap - 1);
    while (w->claims[j].key && w->claims[j].key != key)
        j = (j + 1) & (w->claims_cap - 1);
    if (w->claims[j].key == key)
        return &w->claims[j];
    if (!create)
        return NULL;
    w->claims[j].key = key;
    w->claims[j].holder = UINT32_MAX;
    w->claims[j].result_holder = UINT32_MAX;
    w->claims_n++;
    return &w->claims[j];
}

/* ---- checker hooks ---- */

static void s_on_claim(sim_t *sim, s_inst_t *in, uint32_t index, const progress_rec_t *rec)
{
    s_world_t *w = s_world(sim);
    sim_node_t *node = in->node;
    if (memcmp(rec->holder, node->id, FLEET_ID_LEN) != 0 || rec->state != TARGET_RUNNING) {
        sim_violation(sim, "run-not-claimed", (int32_t) node->index, -1,
                      "%s is told to run target %u at epoch %u without holding it (%s)", node->name,
                      index, rec->epoch, target_state_name(rec->state));
        return;
    }
    s_claim_t *c = s_claim_slot(w, index, rec->epoch, true);
    if (!c) {
        sim_violation(sim, "harness", -1, -1, "out of memory");
        return;
    }
    w->claims_by_node[node->index]++;
    if (c->holder == UINT32_MAX) {
        c->holder = node->index;
        return;
    }
    if (c->holder == node->index)
        return;
    w->res.same_epoch++;
    if (s_views_unsettled(sim)) {
        w->res.same_epoch_partition++;
        return;
    }
    sim_violation(sim, "two-holders", (int32_t) c->holder, (int32_t) node->index,
                  "target %u is claimed at epoch %u by n%u and by %s while the views agree", index,
                  rec->epoch, c->holder, node->name);
}

static void s_on_start(sim_t *sim, s_inst_t *in, uint32_t index)
{
    s_world_t *w = s_world(sim);
    if (w->running[index] > 0) {
        w->res.overlaps++;
        if (s_views_unsettled(sim))
            w->res.overlaps_partition++;
        else
            sim_violation(sim, "two-holders", -1, (int32_t) in->node->index,
                          "%s starts target %u while another node runs it and the views agree",
                          in->node->name, index);
    }
    w->running[index]++;
    w->res.runs++;
}

static void s_on_stop(sim_t *sim, uint32_t index)
{
    s_world_t *w = s_world(sim);
    if (w->running[index] > 0)
        w->running[index]--;
}

static void s_on_result(sim_t *sim, s_inst_t *in, uint32_t index, const progress_rec_t *rec)
{
    s_world_t *w = s_world(sim);
    if (!target_state_terminal((target_state_t) rec->state))
        return;
    s_claim_t *c = s_claim_slot(w, index, rec->epoch, true);
    if (!c) {
        sim_violation(sim, "harness", -1, -1, "out of memory");
        return;
    }
    if (c->result_holder != UINT32_MAX && c->result_holder != in->node->index) {
        w->res.double_results++;
        if (!s_views_unsettled(sim)) {
            sim_violation(sim, "two-holders", (int32_t) c->result_holder, (int32_t) in->node->index,
                          "target %u has results of epoch %u from n%u and from %s while the "
                          "views agree",
                          index, rec->epoch, c->result_holder, in->node->name);
            return;
        }
    }
    c->result_holder = in->node->index;
    if (!w->terminal_at[index]) {
        w->terminal_at[index] = sim_now(sim) + 1;
        if (++w->n_done == w->targets)
            w->done_at = sim_now(sim);
    }
}

/* Up nodes: counted once after every boot or crash (not per record). */
static uint32_t s_up_count(sim_t *sim)
{
    s_world_t *w = s_world(sim);
    if (w->up_dirty) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < sim_node_count(sim); i++)
            n += sim_node(sim, i)->up ? 1 : 0;
        w->n_up = n;
        w->up_dirty = false;
    }
    return w->n_up;
}

/* A terminal record reached a node: the convergence sample of the target is
 * taken when every up node has one. */
static void s_on_terminal_record(sim_t *sim, sim_node_t *node, uint32_t index)
{
    s_world_t *w = s_world(sim);
    size_t bit = (size_t) node->index * w->targets + index;
    if (w->has_terminal[bit / 8] & (1u << (bit % 8)))
        return;
    w->has_terminal[bit / 8] |= (uint8_t) (1u << (bit % 8));
    w->n_terminal[index]++;
    if (w->terminal_at[index] && w->n_terminal[index] == s_up_count(sim) &&
        w->n_samples < w->targets)
        w->samples[w->n_samples++] = (double) (sim_now(sim) - (w->terminal_at[index] - 1)) / 1000.0;
}

/* ---- the driver ---- */

static void s_drain(s_inst_t *in, uint64_t now);

static void s_set_capacity(s_inst_t *in, uint64_t now)
{
    uint32_t workers = sim_config(in->sim)->workers;
    uint32_t busy = in->n_execs + in->n_retries;
    fleet_set_capacity(in->fleet, now, busy >= workers ? 0 : workers - busy);
}

static void s_queue_write(s_inst_t *in, uint32_t index, const progress_rec_t *rec)
{
    if (in->n_writes == in->cap_writes) {
        uint32_t cap = in->cap_writes ? in->cap_writes * 2 : 64;
        s_write_t *grown = realloc(in->writes, cap * sizeof *grown);
        if (!grown) {
            sim_violation(in->sim, "harness", -1, -1, "out of memory");
            return;
        }
        in->writes = grown;
        in->cap_writes = cap;
    }
    in->writes[in->n_writes].index = index;
    in->writes[in->n_writes].rec = *rec;
    in->n_writes++;
    if (in->flush_at == SIM_NEVER)
        in->flush_at = sim_now(in->sim) + S_FLUSH_MS;
}

/* Stores r in *st; false when its error text cannot be kept. */
static bool s_store_rec(s_stored_t *st, const progress_rec_t *r)
{
    char *error = NULL;
    if (r->error[0] && !(error = strdup(r->error)))
        return false;
    free(st->error);
    *st = (s_stored_t){.epoch = r->epoch,
                       .generation = r->generation,
                       .attempt = r->attempt,
                       .duration_ms = r->duration_ms,
                       .state = r->state,
                       .step = r->step,
                       .exit_code = r->exit_code,
                       .started_ms = r->started_ms,
                       .finished_ms = r->finished_ms,
                       .error = error};
    memcpy(st->holder, r->holder, PROGRESS_ID_LEN);
    return true;
}

static void s_load_rec(const s_stored_t *st, progress_rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->epoch = st->epoch;
    r->generation = st->generation;
    r->attempt = st->attempt;
    r->duration_ms = st->duration_ms;
    r->state = st->state;
    r->step = st->step;
    memcpy(r->holder, st->holder, PROGRESS_ID_LEN);
    r->exit_code = st->exit_code;
    r->started_ms = st->started_ms;
    r->finished_ms = st->finished_ms;
    if (st->error)
        snprintf(r->error, sizeof r->error, "%s", st->error);
}

static void s_flush(s_inst_t *in)
{
    s_disk_t *d = in->node->disk.machine[1];
    s_world_t *w = s_world(in->sim);
    for (uint32_t i = 0; i < in->n_writes; i++) {
        const s_write_t *wr = &in->writes[i];
        if (wr->index >= d->n)
            continue;
        if (!s_store_rec(&d->recs[wr->index], &wr->rec)) {
            sim_violation(in->sim, "harness", -1, -1, "out of memory");
            continue;
        }
        d->present[wr->index] = 1;
        w->res.records_persisted++;
    }
    in->n_writes = 0;
    in->flush_at = SIM_NEVER;
}

static void s_start_exec(s_inst_t *in, uint32_t index, uint32_t epoch, uint32_t attempt,
                         uint64_t now)
{
    const sim_config_t *cfg = sim_config(in->sim);
    if (in->n_execs >= cfg->workers) {
        sim_violation(in->sim, "over-capacity", (int32_t) in->node->index, -1,
                      "%s is told to run target %u with all %u workers busy", in->node->name, index,
                      cfg->workers);
        return;
    }
    uint64_t mean = s_exec_mean(cfg);
    uint64_t d = mean / 2 + rng_below(&in->rng, mean + 1);
    if ((cfg->faults & SIM_FAULT_HANG_RUNS) && in->node->index == 1)
        d = SIM_NEVER - now - 1;
    in->execs[in->n_execs++] = (s_exec_t){index, epoch, attempt, now, now + d};
    s_on_start(in->sim, in, index);
}

static void s_forget(s_inst_t *in, uint32_t index)
{
    for (uint32_t i = 0; i < in->n_execs; i++) {
        if (in->execs[i].index != index)
            continue;
        in->execs[i] = in->execs[--in->n_execs];
        s_on_stop(in->sim, index);
        s_world(in->sim)->res.aborted++;
        break;
    }
    for (uint32_t i = 0; i < in->n_retries; i++) {
        if (in->retries[i].index != index)
            continue;
        in->retries[i] = in->retries[--in->n_retries];
        break;
    }
}

static void s_complete(s_inst_t *in, s_exec_t ex, uint64_t now)
{
    const sim_config_t *cfg = sim_config(in->sim);
    s_world_t *w = s_world(in->sim);
    s_on_stop(in->sim, ex.index);
    w->res.completions++;
    const progress_rec_t *cur = fleet_record(in->fleet, w->plan_id, ex.index);
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    if (cur)
        r = *cur;
    r.epoch = ex.epoch;
    r.attempt = ex.attempt;
    memcpy(r.holder, in->node->id, FLEET_ID_LEN);
    bool fail = cfg->fail_rate > 0 && rng_unit(&in->rng) < cfg->fail_rate;
    r.state = (uint8_t) (!fail                        ? TARGET_SUCCEEDED
                         : ex.attempt < cfg->attempts ? TARGET_RETRY_WAIT
                                                      : TARGET_FAILED);
    r.exit_code = fail ? 1 : 0;
    r.started_ms = ex.started;
    r.finished_ms = now;
    r.duration_ms = (uint32_t) (now - ex.started);
    snprintf(r.error, sizeof r.error, "%s", fail ? "step failed (simulated)" : "");
    int rc = fleet_record_local(in->fleet, now, w->plan_id, ex.index, &r);
    if (rc == 0) {
        s_on_result(in->sim, in, ex.index, &r);
        if (r.state == TARGET_RETRY_WAIT)
            in->retries[in->n_retries++] =
                (s_retry_t){ex.index, ex.epoch, ex.attempt, now + s_exec_mean(cfg)};
    } else if (rc == GG_ESTALE) {
        w->res.fenced_results++;
    } else {
        sim_violation(in->sim, "harness", (int32_t) in->node->index, -1,
                      "%s cannot record the outcome of target %u: %s", in->node->name, ex.index,
                      gg_strerror(rc));
    }
}

static void s_fire(s_inst_t *in, uint64_t now)
{
    s_world_t *w = s_world(in->sim);
    for (uint32_t i = 0; i < in->n_execs;) {
        if (in->execs[i].done_at > now) {
            i++;
            continue;
        }
        s_exec_t ex = in->execs[i];
        in->execs[i] = in->execs[--in->n_execs];
        s_complete(in, ex, now);
        s_drain(in, now);
    }
    for (uint32_t i = 0; i < in->n_retries;) {
        s_retry_t rt = in->retries[i];
        if (rt.due > now) {
            i++;
            continue;
        }
        in->retries[i] = in->retries[--in->n_retries];
        const progress_rec_t *cur = fleet_record(in->fleet, w->plan_id, rt.index);
        if (!cur || cur->epoch != rt.epoch || cur->state != TARGET_RETRY_WAIT ||
            memcmp(cur->holder, in->node->id, FLEET_ID_LEN) != 0)
            continue; /* superseded meanwhile */
        progress_rec_t r = *cur;
        r.attempt = rt.attempt + 1;
        r.state = TARGET_RUNNING;
        r.error[0] = '\0';
        if (fleet_record_local(in->fleet, now, w->plan_id, rt.index, &r) == 0)
            s_start_exec(in, rt.index, rt.epoch, rt.attempt + 1, now);
        s_drain(in, now);
    }
}

static int s_add_plan(s_inst_t *in, uint64_t now)
{
    s_world_t *w = s_world(in->sim);
    if (in->has_plan)
        return 0;
    int rc = fleet_add_plan(in->fleet, now, w->plan_id, w->targets, w->keys, NULL, &w->rollout);
    if (rc == 0)
        in->has_plan = true;
    return rc;
}

static void s_store_doc(s_inst_t *in)
{
    s_disk_t *d = in->node->disk.machine[1];
    d->doc_len = s_world(in->sim)->doc_len;
    d->has_doc = true;
}

static void s_on_doc(s_inst_t *in, const fleet_out_t *out, uint64_t now)
{
    s_world_t *w = s_world(in->sim);
    /* the bytes are the plan's (whose id is plan_id): hashing them again
     * would tell nothing more */
    if (!out->data || out->len != w->doc_len || memcmp(out->doc_id, w->plan_id, FLEET_ID_LEN) ||
        memcmp(out->data, w->doc, w->doc_len)) {
        sim_violation(in->sim, "doc-corrupted", (int32_t) in->node->index, -1,
                      "%s assembled a document of %zu bytes that is not the plan applied "
                      "(%zu bytes)",
                      in->node->name, out->len, w->doc_len);
        fleet_doc_reject(in->fleet, now, out->doc_id);
        return;
    }
    s_store_doc(in);
    int rc = s_add_plan(in, now);
    if (rc != 0) {
        sim_violation(in->sim, "harness", (int32_t) in->node->index, -1,
                      "%s cannot add the plan: %s", in->node->name, gg_strerror(rc));
        return;
    }
    fleet_doc_accept(in->fleet, now, out->doc_id);
}

static void s_check_record(s_inst_t *in, uint32_t index, const progress_rec_t *rec)
{
    s_world_t *w = s_world(in->sim);
    if (index >= w->targets)
        return;
    s_version_t *last = &in->last[index];
    if (in->last_set[index]) {
        progress_rec_t old;
        memset(&old, 0, sizeof old);
        old.epoch = last->epoch;
        old.generation = last->generation;
        old.attempt = last->attempt;
        old.state = last->state;
        old.step = last->step;
        memcpy(old.holder, last->holder, PROGRESS_ID_LEN);
        old.finished_ms = last->finished_ms;
        if (progress_compare(rec, &old) < 0)
            sim_violation(in->sim, "record-regressed", (int32_t) in->node->index, -1,
                          "%s's record of target %u went from %s@%u/%u/%u to %s@%u/%u/%u",
                          in->node->name, index, target_state_name(old.state), old.epoch,
                          old.generation, old.attempt, target_state_name(rec->state), rec->epoch,
                          rec->generation, rec->attempt);
    }
    *last = (s_version_t){.epoch = rec->epoch,
                          .generation = rec->generation,
                          .attempt = rec->attempt,
                          .state = rec->state,
                          .step = rec->step,
                          .finished_ms = rec->finished_ms};
    memcpy(last->holder, rec->holder, PROGRESS_ID_LEN);
    in->last_set[index] = 1;
    if (target_state_terminal((target_state_t) rec->state))
        s_on_terminal_record(in->sim, in->node, index);
}

static void s_send(s_inst_t *in, fleet_out_t *out)
{
    sim_node_t *to = sim_node_by_address(in->sim, out->address);
    s_world_t *w = s_world(in->sim);
    if (!to) {
        sim_violation(in->sim, "send-address", (int32_t) in->node->index, -1,
                      "%s sends a %s to %.64s, which is no node's address", in->node->name,
                      wire_type_name(out->wire_type), out->address);
        return;
    }
    sim_packet_t *p = sim_packet_new(out->wire_type, in->node->index, to->index);
    if (!p) {
        sim_violation(in->sim, "harness", -1, -1, "out of memory");
        return;
    }
    p->data = out->data;
    p->data_free = fleet_send_data_free;
    p->len = out->len;
    p->items = 1;
    out->data = NULL;
    w->res.msgs_sent++;
    w->res.bytes_sent += p->len;
    sim_send(in->sim, p);
}

static void s_drain(s_inst_t *in, uint64_t now)
{
    if (in->draining_outputs)
        return;
    in->draining_outputs = true;
    s_world_t *w = s_world(in->sim);
    s_set_capacity(in, now);
    fleet_out_t out;
    while (!sim_failed(in->sim) && fleet_poll(in->fleet, &out)) {
        switch (out.type) {
        case FOUT_SEND: s_send(in, &out); break;
        case FOUT_RUN:
            if (memcmp(out.plan_id, w->plan_id, FLEET_ID_LEN) != 0 || out.index >= w->targets) {
                sim_violation(in->sim, "run-not-claimed", (int32_t) in->node->index, -1,
                              "%s is told to run an unknown target", in->node->name);
                break;
            }
            s_on_claim(in->sim, in, out.index, &out.rec);
            s_start_exec(in, out.index, out.rec.epoch, out.rec.attempt, now);
            break;
        case FOUT_ABORT:
            if (out.index < w->targets)
                s_forget(in, out.index);
            break;
        case FOUT_RECORD:
            if (memcmp(out.plan_id, w->plan_id, FLEET_ID_LEN) == 0 && out.index < w->targets) {
                s_check_record(in, out.index, &out.rec);
                s_queue_write(in, out.index, &out.rec);
            }
            break;
        case FOUT_DOC: s_on_doc(in, &out, now); break;
        case FOUT_PLAN_STATE: break;
        }
        fleet_out_release(&out);
        s_set_capacity(in, now);
    }
    in->draining_outputs = false;
}

static void s_set_members(s_inst_t *in, uint64_t now)
{
    membership_t *m = sim_membership(in->node);
    if (!m)
        return;
    size_t n = membership_size(m);
    s_world_t *w = s_world(in->sim);
    if (n > w->view_cap) {
        fleet_member_t *grown = realloc(w->view, n * sizeof *grown);
        if (!grown) {
            sim_violation(in->sim, "harness", -1, -1, "out of memory");
            return;
        }
        w->view = grown;
        w->view_cap = n;
    }
    fleet_member_t *list = w->view;
    for (size_t i = 0; i < n; i++) {
        const member_t *mb = membership_at(m, i);
        memcpy(list[i].id, mb->id, FLEET_ID_LEN);
        size_t alen = strnlen(mb->address, sizeof list[i].address - 1);
        memcpy(list[i].address, mb->address, alen);
        list[i].address[alen] = '\0';
        list[i].live = mb->state == MEMBER_ALIVE || mb->state == MEMBER_SUSPECT;
        if ((sim_config(in->sim)->faults & SIM_FAULT_BLIND_FLEET) && in->node->index == 1 &&
            memcmp(mb->id, in->node->id, FLEET_ID_LEN) != 0)
            list[i].live = false;
        list[i].draining = (mb->flags & MEMBER_FLAG_DRAINING) != 0;
        list[i].wire_version = (mb->flags & MEMBER_FLAG_WIRE2) ? 2 : 1;
    }
    fleet_set_members(in->fleet, now, list, n);
}

static size_t s_doc_read(void *arg, const uint8_t doc_id[FLEET_ID_LEN], uint64_t offset,
                         uint8_t *buf, size_t len)
{
    s_inst_t *in = arg;
    s_disk_t *d = in->node->disk.machine[1];
    s_world_t *w = s_world(in->sim);
    if (!d->has_doc || memcmp(doc_id, w->plan_id, FLEET_ID_LEN) != 0 || offset >= d->doc_len)
        return 0;
    size_t n = d->doc_len - (size_t) offset;
    if (n > len)
        n = len;
    memcpy(buf, w->doc + offset, n);
    return n;
}

static void s_inject(s_inst_t *in, uint64_t now)
{
    s_world_t *w = s_world(in->sim);
    w->injected = true;
    w->applied_at = now;
    s_store_doc(in);
    int rc = s_add_plan(in, now);
    if (rc == 0)
        rc = fleet_doc_add(in->fleet, now, w->plan_id, S_DOC_KIND_PLAN, w->doc, w->doc_len);
    if (rc != 0)
        sim_violation(in->sim, "harness", (int32_t) in->node->index, -1,
                      "%s cannot apply the plan: %s", in->node->name, gg_strerror(rc));
    sim_trace(in->sim, ((uint64_t) 0x9A4 << 52) ^ in->node->index);
}

/* ---- the machine ---- */

static bool s_accepts(uint32_t wire_type)
{
    return fleet_msg_type_known(wire_type);
}

static uint64_t s_next_deadline(const void *state)
{
    const s_inst_t *in = state;
    uint64_t d = fleet_next_deadline(in->fleet);
    if (in->flush_at < d)
        d = in->flush_at;
    if (in->view_due < d)
        d = in->view_due;
    for (uint32_t i = 0; i < in->n_execs; i++)
        if (in->execs[i].done_at < d)
            d = in->execs[i].done_at;
    for (uint32_t i = 0; i < in->n_retries; i++)
        if (in->retries[i].due < d)
            d = in->retries[i].due;
    const s_world_t *w = s_world(in->sim);
    if (w->targets && !w->injected && w->inject_node == in->node->index && w->inject_at < d)
        d = w->inject_at;
    return d;
}

static void s_disk_free(void *disk)
{
    s_disk_t *d = disk;
    if (!d)
        return;
    for (uint32_t i = 0; d->recs && i < d->n; i++)
        free(d->recs[i].error);
    free(d->recs);
    free(d->present);
    free(d);
}

static void s_inst_free(s_inst_t **in_p)
{
    s_inst_t *in = *in_p;
    if (!in)
        return;
    fleet_destroy(&in->fleet);
    free(in->execs);
    free(in->retries);
    free(in->writes);
    free(in->last);
    free(in->last_set);
    free(in);
    *in_p = NULL;
}

static int s_boot(sim_t *sim, sim_node_t *node, void **state, uint64_t now)
{
    int rc = 0;
    const sim_config_t *cfg = sim_config(sim);
    s_world_t *w = s_world(sim);
    s_inst_t *in = calloc(1, sizeof *in);
    fleet_config_t fc;
    if (!in)
        return GG_ENOMEM;
    in->sim = sim;
    in->node = node;
    w->churn_at = now + 1;
    w->up_dirty = true;
    in->flush_at = SIM_NEVER;
    in->view_due = SIM_NEVER;
    rng_seed(&in->rng, sim_machine_seed(sim));
    if (!node->disk.machine[1]) {
        s_disk_t *d = calloc(1, sizeof *d);
        if (!d) {
            rc = GG_ENOMEM;
            goto out;
        }
        node->disk.machine[1] = d;
        d->n = w->targets;
        if (w->targets) {
            d->recs = calloc(w->targets, sizeof *d->recs);
            d->present = calloc(w->targets, 1);
            if (!d->recs || !d->present) {
                rc = GG_ENOMEM;
                goto out;
            }
        }
    }
    in->execs = calloc(cfg->workers, sizeof *in->execs);
    in->retries = calloc(cfg->workers, sizeof *in->retries);
    in->last = calloc(w->targets ? w->targets : 1, sizeof *in->last);
    in->last_set = calloc(w->targets ? w->targets : 1, 1);
    if (!in->execs || !in->retries || !in->last || !in->last_set) {
        rc = GG_ENOMEM;
        goto out;
    }
    rc = fleet_config_get(cfg->profile, &fc);
    if (rc != 0)
        goto out;
    fc.load_cap_milli = cfg->bounded_load_milli;
    if (cfg->push_eager >= 0)
        fc.push_eager = (uint32_t) cfg->push_eager;
    in->fleet = fleet_new(&fc, node->id, node->address, sim_machine_seed(sim), now);
    if (!in->fleet) {
        rc = GG_ENOMEM;
        goto out;
    }
    fleet_set_doc_reader(in->fleet, s_doc_read, in);
    s_disk_t *d = node->disk.machine[1];
    if (d->has_doc) {
        rc = s_add_plan(in, now);
        if (rc != 0)
            goto out;
        rc = fleet_restore_doc(in->fleet, w->plan_id, S_DOC_KIND_PLAN, d->doc_len);
        if (rc != 0)
            goto out;
        for (uint32_t i = 0; i < d->n; i++) {
            if (!d->present[i])
                continue;
            progress_rec_t r;
            s_load_rec(&d->recs[i], &r);
            if ((rc = fleet_restore_record(in->fleet, w->plan_id, i, &r)) != 0)
                goto out;
        }
    }
    s_set_members(in, now);
    *state = in;
    in = NULL;
    s_drain(*state, now);
out:
    s_inst_free(&in);
    return rc;
}

static void s_halt(sim_t *sim, sim_node_t *node, void **state)
{
    s_inst_t *in = *state;
    (void) node;
    if (!in)
        return;
    s_world_t *w = s_world(sim);
    w->churn_at = sim_now(sim) + 1;
    w->up_dirty = true;
    w->res.records_lost += in->n_writes;
    for (uint32_t i = 0; i < in->n_execs; i++)
        s_on_stop(sim, in->execs[i].index);
    const fleet_stats_t *st = fleet_stats(in->fleet);
    w->res.claims += st->claims;
    w->res.takeovers += st->takeovers;
    w->res.reclaims += st->reclaims;
    w->res.handbacks += st->handbacks;
    w->res.conflicts += st->conflicts;
    w->res.records_in += st->records_in;
    w->res.records_merged += st->records_merged;
    s_inst_free(&in);
    *state = NULL;
}

static void s_deliver(sim_t *sim, sim_node_t *node, void *state, uint64_t now,
                      const sim_packet_t *p)
{
    s_inst_t *in = state;
    wire_msg_t msg;
    static msgpack_zone *zone; /* one per process, emptied after each message */
    if (!zone && !(zone = msgpack_zone_new(64u * 1024u))) {
        sim_violation(sim, "codec", (int32_t) p->from, (int32_t) node->index, "out of memory");
        return;
    }
    int rc = wire_decode_in(p->data, p->len, zone, &msg);
    if (rc != 0) {
        msgpack_zone_clear(zone);
        sim_violation(sim, "codec", (int32_t) p->from, (int32_t) node->index,
                      "%s cannot decode a %s of %zu bytes from n%u: %s", node->name,
                      wire_type_name(p->type), p->len, p->from, gg_strerror(rc));
        return;
    }
    if (memcmp(msg.sender, sim_node(sim, p->from)->id, FLEET_ID_LEN) != 0) {
        sim_violation(sim, "codec", (int32_t) p->from, (int32_t) node->index,
                      "a %s from n%u names another sender", wire_type_name(p->type), p->from);
    } else if ((rc = fleet_handle(in->fleet, now, &msg)) != 0) {
        sim_violation(sim, "codec", (int32_t) p->from, (int32_t) node->index,
                      "%s refuses a %s of %zu bytes from n%u: %s", node->name,
                      wire_type_name(p->type), p->len, p->from, gg_strerror(rc));
    }
    wire_msg_release(&msg);
    msgpack_zone_clear(zone);
    s_drain(in, now);
}

static void s_tick(sim_t *sim, sim_node_t *node, void *state, uint64_t now)
{
    s_inst_t *in = state;
    s_world_t *w = s_world(sim);
    if (w->targets && !w->injected && w->inject_node == node->index && now >= w->inject_at)
        s_inject(in, now);
    if (now >= in->view_due) {
        in->view_due = SIM_NEVER;
        s_set_members(in, now);
    }
    s_fire(in, now);
    if (now >= fleet_next_deadline(in->fleet))
        fleet_tick(in->fleet, now);
    s_drain(in, now);
    if (now >= in->flush_at)
        s_flush(in);
}

static void s_view_changed(sim_t *sim, sim_node_t *node, void *state, uint64_t now)
{
    (void) sim;
    (void) node;
    s_inst_t *in = state;
    if (in->view_due == SIM_NEVER)
        in->view_due = now + S_VIEW_COALESCE_MS;
}

/* ---- the world ---- */

static void s_world_free(void **shared)
{
    s_world_t *w = *shared;
    if (!w)
        return;
    free(w->keys);
    free(w->doc);
    free(w->running);
    free(w->terminal_at);
    free(w->has_terminal);
    free(w->n_terminal);
    free(w->samples);
    free(w->claims);
    free(w->claims_by_node);
    free(w->view);
    free(w);
    *shared = NULL;
}

static int s_world_new(sim_t *sim, void **shared)
{
    const sim_config_t *cfg = sim_config(sim);
    s_world_t *w = calloc(1, sizeof *w);
    if (!w)
        return GG_ENOMEM;
    *shared = w;
    w->cfg = cfg;
    w->res.on = true;
    w->res.done_s = -1;
    w->up_dirty = true;
    /* An experiment measures ownership only: no plan then. */
    w->targets = cfg->experiment == SIM_EXP_NONE ? cfg->targets : 0;
    w->res.targets = w->targets;
    w->rollout.max_attempts = cfg->attempts;
    fleet_config_t fc;
    if (fleet_config_get(cfg->profile, &fc) != 0)
        return GG_EINVAL;
    /* Views settle within the longest suspicion; a claim made just before
     * reaches every node within a few anti-entropy rounds. */
    w->window_ms =
        2 * (uint64_t) sim_profile(sim)->probe_interval_ms * sim_profile(sim)->suspicion_mult +
        fc.lease_ttl_ms + fc.lease_margin_ms + fc.anti_entropy_interval_ms;
    if (w->targets == 0)
        return 0;
    uint32_t n = sim_node_count(sim);
    w->keys = sim_target_keys(w->targets);
    w->running = calloc(w->targets, sizeof *w->running);
    w->terminal_at = calloc(w->targets, sizeof *w->terminal_at);
    w->n_terminal = calloc(w->targets, sizeof *w->n_terminal);
    w->samples = calloc(w->targets, sizeof *w->samples);
    w->has_terminal = calloc(((size_t) n * w->targets + 7) / 8, 1);
    w->claims_by_node = calloc(n, sizeof *w->claims_by_node);
    /* The document: a header naming the plan, padded like a plan whose
     * targets carry their frozen entities. */
    w->doc_len = (size_t) w->targets * S_DOC_BYTES_PER_TARGET + 64;
    w->doc = malloc(w->doc_len);
    if (!w->keys || !w->running || !w->terminal_at || !w->n_terminal || !w->samples ||
        !w->has_terminal || !w->claims_by_node || !w->doc)
        return GG_ENOMEM;
    int len = snprintf((char *) w->doc, 64, "gaggle-sim plan targets=%u seed=%llu\n", w->targets,
                       (unsigned long long) cfg->seed);
    for (size_t i = (size_t) len; i < w->doc_len; i++)
        w->doc[i] = (uint8_t) ('a' + (i * 7 + cfg->seed) % 26);
    s_doc_id(w->doc, w->doc_len, w->plan_id);
    w->inject_node = (uint32_t) (cfg->seed % n);
    w->inject_at = cfg->plan_at_ms ? cfg->plan_at_ms : 5ull * sim_profile(sim)->probe_interval_ms;
    return 0;
}

static uint64_t s_settle_extra(const sim_config_t *cfg)
{
    fleet_config_t fc;
    if (fleet_config_get(cfg->profile, &fc) != 0)
        return 0;
    uint64_t nodes = cfg->nodes ? cfg->nodes : 1, workers = cfg->workers ? cfg->workers : 1;
    uint64_t work = (uint64_t) cfg->targets * s_exec_mean(cfg) * 2 *
                    (cfg->attempts ? cfg->attempts : 1) / (nodes * workers);
    return 2 * ((uint64_t) fc.lease_ttl_ms + fc.lease_margin_ms) +
           4 * (uint64_t) fc.anti_entropy_interval_ms + 2 * work;
}

/* Every up node: the plan, no work left, every record terminal and equal. */
static bool s_settled(sim_t *sim, void *shared)
{
    s_world_t *w = shared;
    if (w->targets == 0)
        return true;
    if (!w->injected)
        return false;
    const fleet_t *ref = NULL;
    for (uint32_t i = 0; i < sim_node_count(sim); i++) {
        sim_node_t *node = sim_node(sim, i);
        s_inst_t *in = sim_machine_state(sim, node, &sim_fleet_ops);
        if (!in)
            continue;
        if (!in->has_plan || in->n_execs || in->n_retries || in->n_writes)
            return false;
        for (uint32_t t = 0; t < w->targets; t++) {
            const progress_rec_t *r = fleet_record(in->fleet, w->plan_id, t);
            if (!r || !target_state_terminal((target_state_t) r->state))
                return false;
            if (ref && progress_compare(r, fleet_record(ref, w->plan_id, t)) != 0)
                return false;
        }
        if (!ref)
            ref = in->fleet;
    }
    return true;
}

static void s_settle_failed(sim_t *sim, void *shared)
{
    s_world_t *w = shared;
    if (w->targets == 0)
        return;
    if (!w->injected) {
        sim_violation(sim, "target-lost", (int32_t) w->inject_node, -1,
                      "the plan was never applied (n%u never came up)", w->inject_node);
        return;
    }
    s_inst_t *first = NULL;
    for (uint32_t i = 0; i < sim_node_count(sim); i++) {
        sim_node_t *node = sim_node(sim, i);
        s_inst_t *in = sim_machine_state(sim, node, &sim_fleet_ops);
        if (!in)
            continue;
        if (!in->has_plan) {
            sim_violation(sim, "target-lost", (int32_t) i, -1,
                          "%s never got the plan (document %s)", node->name,
                          fleet_doc_state(in->fleet, w->plan_id) == FLEET_DOC_FETCHING
                              ? "still being fetched"
                              : "unknown");
            return;
        }
        for (uint32_t t = 0; t < w->targets; t++) {
            const progress_rec_t *r = fleet_record(in->fleet, w->plan_id, t);
            if (!r || !target_state_terminal((target_state_t) r->state)) {
                const sim_node_t *h = r ? sim_node_by_id(sim, r->holder) : NULL;
                sim_violation(sim, "target-lost", (int32_t) i, h ? (int32_t) h->index : -1,
                              "target %u is %s at epoch %u (holder %s) on %s at the end of "
                              "the settle phase",
                              t, r ? target_state_name(r->state) : "unknown", r ? r->epoch : 0,
                              h ? h->name : "none", node->name);
                return;
            }
            if (first) {
                const progress_rec_t *a = fleet_record(first->fleet, w->plan_id, t);
                if (progress_compare(a, r) != 0) {
                    sim_violation(sim, "progress-diverged", (int32_t) first->node->index,
                                  (int32_t) i, "target %u: %s has %s@%u/%u/%u, %s has %s@%u/%u/%u",
                                  t, first->node->name, target_state_name(a->state), a->epoch,
                                  a->generation, a->attempt, node->name,
                                  target_state_name(r->state), r->epoch, r->generation, r->attempt);
                    return;
                }
            }
        }
        if (in->n_execs || in->n_retries) {
            sim_violation(sim, "target-lost", (int32_t) i, -1,
                          "%s still runs %u and waits on %u targets that are terminal", node->name,
                          in->n_execs, in->n_retries);
            return;
        }
        if (!first)
            first = in;
    }
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static void s_results(sim_t *sim, void *shared, sim_result_t *res)
{
    s_world_t *w = shared;
    sim_fleet_result_t *r = &w->res;
    r->applied_s = w->injected ? (double) w->applied_at / 1000.0 : -1;
    r->done_s =
        w->n_done == w->targets && w->targets ? (double) (w->done_at - w->applied_at) / 1000.0 : -1;
    for (uint32_t i = 0; i < sim_node_count(sim); i++) {
        sim_node_t *node = sim_node(sim, i);
        s_inst_t *in = sim_machine_state(sim, node, &sim_fleet_ops);
        if (!in)
            continue;
        const fleet_stats_t *st = fleet_stats(in->fleet);
        r->claims += st->claims;
        r->takeovers += st->takeovers;
        r->reclaims += st->reclaims;
        r->handbacks += st->handbacks;
        r->conflicts += st->conflicts;
        r->records_in += st->records_in;
        r->records_merged += st->records_merged;
    }
    /* Outcomes as node 0's fleet (or the first up node's) sees them. */
    for (uint32_t i = 0; i < sim_node_count(sim) && w->targets; i++) {
        s_inst_t *in = sim_machine_state(sim, sim_node(sim, i), &sim_fleet_ops);
        if (!in || !in->has_plan)
            continue;
        for (uint32_t t = 0; t < w->targets; t++) {
            const progress_rec_t *rec = fleet_record(in->fleet, w->plan_id, t);
            if (!rec || !target_state_terminal((target_state_t) rec->state))
                continue;
            r->terminal++;
            r->succeeded += rec->state == TARGET_SUCCEEDED ? 1 : 0;
            r->failed += rec->state == TARGET_FAILED ? 1 : 0;
        }
        break;
    }
    uint64_t sum = 0, max = 0;
    for (uint32_t i = 0; i < sim_node_count(sim) && w->claims_by_node; i++) {
        sum += w->claims_by_node[i];
        max = w->claims_by_node[i] > max ? w->claims_by_node[i] : max;
    }
    r->claimed_max_mean = sum ? (double) max * sim_node_count(sim) / (double) sum : 0;
    if (w->n_samples) {
        qsort(w->samples, w->n_samples, sizeof *w->samples, s_cmp_double);
        r->converge_samples = w->n_samples;
        r->converge_p50 = w->samples[(w->n_samples - 1) / 2];
        r->converge_p99 = w->samples[(size_t) ((w->n_samples - 1) * 0.99)];
        r->converge_max = w->samples[w->n_samples - 1];
    }
    res->fleet = *r;
}

int sim_fleet_ownership(sim_t *sim, sim_node_t *node, const uint64_t *keys, uint32_t targets,
                        uint32_t *owner_of, uint32_t *n_owners, double *max_mean)
{
    s_inst_t *in = sim_machine_state(sim, node, &sim_fleet_ops);
    membership_t *m = sim_membership(node);
    if (!in || !m || sim_config(sim)->bounded_load_milli)
        return -1; /* the cap's assignment is sim_ownership's */
    size_t size = membership_size(m);
    uint32_t *counts = calloc(size ? size : 1, sizeof *counts);
    if (!counts)
        return -1;
    /* fleet_owner_of answers an index into the list given to
     * fleet_set_members, which is the membership's order (s_set_members). */
    s_set_members(in, sim_now(sim));
    for (uint32_t t = 0; t < targets; t++) {
        int o = fleet_owner_of(in->fleet, keys[t]);
        if (o < 0 || (size_t) o >= size) {
            free(counts);
            return -1;
        }
        counts[o]++;
        if (owner_of) {
            const sim_node_t *owner = sim_node_by_id(sim, membership_at(m, (size_t) o)->id);
            owner_of[t] = owner ? owner->index : UINT32_MAX;
        }
    }
    uint32_t n = 0, max = 0;
    for (size_t i = 0; i < size; i++) {
        const member_t *mb = membership_at(m, i);
        if ((mb->state != MEMBER_ALIVE && mb->state != MEMBER_SUSPECT) ||
            (mb->flags & MEMBER_FLAG_DRAINING))
            continue;
        n++;
        max = counts[i] > max ? counts[i] : max;
    }
    *n_owners = n;
    *max_mean = targets && n ? (double) max / ((double) targets / (double) n) : 0;
    free(counts);
    s_drain(in, sim_now(sim));
    return 0;
}

const sim_machine_ops_t sim_fleet_ops = {
    .name = "fleet",
    .boot = s_boot,
    .halt = s_halt,
    .accepts = s_accepts,
    .deliver = s_deliver,
    .tick = s_tick,
    .next_deadline = s_next_deadline,
    .disk_free = s_disk_free,
    .view_changed = s_view_changed,
    .world_new = s_world_new,
    .world_free = s_world_free,
    .settled = s_settled,
    .settle_failed = s_settle_failed,
    .settle_extra_ms = s_settle_extra,
    .results = s_results,
};
