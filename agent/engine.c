/*
 * engine.c: the main job's driver (see engine.h for the data flow and the
 * LMDB layout).
 *
 * Runs of a target on this node:
 *
 *   FOUT_RUN ---------> runner_start ---> outcome
 *      (claim: running,                     | succeeded/skipped/needs_review/failed
 *       epoch e, attempt a)                 |   -> fleet_record_local (terminal)
 *                                           | retry_wait (backoff b)
 *                                           |   -> fleet_record_local (retry_wait)
 *                                           |   -> retry timer: after b, a slot free:
 *                                           |      fleet_record_local (running, a+1)
 *                                           |      -> runner_start
 *   FOUT_ABORT (fenced, conflict, cancelled, leaving) -> runner_abort, forgotten
 *
 * A result whose lease was superseded meanwhile is refused by the core
 * (GG_ESTALE) and counted there: the lower epoch's work is discarded.
 *
 * Commands order: pause/resume/cancel form a register per plan ordered by
 * (issued in milliseconds, nonce) of the signed command, so every node keeps the same value
 * whatever the arrival order; cancel is final.
 */
#include "engine.h"
#include "agent.h"
#include "cluster.h"
#include "docstore.h"
#include "executor.h"
#include "notify.h"
#include "gg_error.h"
#include "gg_log.h"
#include "rendezvous.h"
#include "runner.h"
#include "signed.h"
#include "store.h"

#include <czmq.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LOG_CACHE_MAX       64
#define DEFERRED_MAX        256
#define RETRIES_MAX         65536
#define AUDIT_LIMIT_DEFAULT 1000
#define NOTIFY_CHECK_MS     250 /* plan events are looked for this often */

typedef struct {
    engine_plan_t pub;
    uint64_t control_issued;
    char control_nonce[SIGNED_NONCE_HEX_LEN + 1];
    uint32_t *approvals;     /* per target: count of distinct operator keys (bounded) */
    zhashx_t *approval_keys; /* "index:keyhex" -> present */
    /* Plan events for notify, as last seen by s_notify_plans. */
    bool seen_fresh; /* accepted while running, not restored from disk */
    bool seen_init;
    const char *seen_state; /* engine_plan_state */
    bool seen_awaiting;     /* some target awaits approval */
} s_plan_t;

typedef struct {
    s_plan_t *plan;
    uint32_t index;
    uint32_t epoch, attempt;
    uint64_t run_id;
    uint64_t started_wall_ms;
    bool active;
} s_run_t;

typedef struct {
    s_plan_t *plan;
    uint32_t index, epoch, attempt;
    uint64_t due_ms;
} s_retry_t;

/* A write waiting for the next group commit. */
typedef struct {
    store_db_t db;
    uint8_t key[36];
    void *val;
    size_t len;
} s_write_t;

#define PENDING_WRITES_MAX 65536

typedef struct {
    uint8_t id[32];
    uint8_t *data;
    size_t len;
} s_deferred_t;

struct _engine_t {
    agent_t *agent;
    cluster_t *cluster;
    fleet_t *fleet;
    executor_t *executor;
    runner_t *runner;
    notify_t *notify;
    uint64_t notify_checked_ms;
    s_plan_t **plans;
    size_t n_plans, cap_plans;
    zhashx_t *runs; /* "planhex:index" -> s_run_t */
    s_retry_t *retries;
    size_t n_retries, cap_retries;
    store_batch_t *batch;
    s_write_t *pending; /* records and logs, written together by s_flush */
    size_t n_pending, cap_pending;
    int ticker;
    bool draining_outputs;
    bool leaving;
    bool restoring; /* replaying stored commands: record changes already happened */
    uint64_t audit_seq;
    zhashx_t *log_cache; /* "planhex:index" -> char* */
    uint64_t persist_errors, docs_rejected;
    /* Replicated commands whose plan has not arrived yet (a small command
     * can finish fetching before its large plan): verified, kept here, and
     * tried again whenever a plan is added. Oldest refused when full. */
    s_deferred_t deferred[DEFERRED_MAX];
    size_t n_deferred;
    bool retry_deferred;
    bool members_dirty; /* the membership view changed: the ticker hands it over */
    char work_root[512], log_root[512], pgid_root[512];
};

static uint64_t s_now(void)
{
    return cluster_now_ms();
}

static uint64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void s_run_key(const s_plan_t *p, uint32_t index, char *buf, size_t size)
{
    snprintf(buf, size, "%.16s:%u", p->pub.id_hex, index);
}

static void s_target_key(const uint8_t id[FLEET_ID_LEN], uint32_t index, uint8_t key[36])
{
    memcpy(key, id, FLEET_ID_LEN);
    key[32] = (uint8_t) (index >> 24);
    key[33] = (uint8_t) (index >> 16);
    key[34] = (uint8_t) (index >> 8);
    key[35] = (uint8_t) index;
}

/* ---- store ---- */

static store_batch_t *s_batch(engine_t *self)
{
    if (!self->batch && store_batch_begin(agent_store(self->agent), &self->batch) != 0) {
        self->persist_errors++;
        return NULL;
    }
    return self->batch;
}

static void s_commit(engine_t *self)
{
    if (self->batch && store_batch_commit(&self->batch) != 0) {
        self->persist_errors++;
        gg_error("engine: a batch of progress records could not be written to the store");
    }
}

static void s_flush(engine_t *self);

/* Queues a write for the next group commit (s_flush, from the ticker): every
 * record and log changed in a few milliseconds share one transaction. */
static void s_queue_write(engine_t *self, store_db_t db, const uint8_t key[36], const void *val,
                          size_t len)
{
    if (self->n_pending >= PENDING_WRITES_MAX)
        s_flush(self);
    if (self->n_pending == self->cap_pending) {
        size_t cap = self->cap_pending ? self->cap_pending * 2 : 256;
        s_write_t *grown = realloc(self->pending, cap * sizeof *grown);
        if (!grown) {
            self->persist_errors++;
            return;
        }
        self->pending = grown;
        self->cap_pending = cap;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy) {
        self->persist_errors++;
        return;
    }
    memcpy(copy, val, len);
    s_write_t *w = &self->pending[self->n_pending++];
    w->db = db;
    memcpy(w->key, key, 36);
    w->val = copy;
    w->len = len;
}

/* One write transaction for everything queued (later writes of a key win:
 * they are applied in order). */
static void s_flush(engine_t *self)
{
    if (!self->n_pending)
        return;
    store_batch_t *b = s_batch(self);
    for (size_t i = 0; i < self->n_pending; i++) {
        s_write_t *w = &self->pending[i];
        if (b && store_batch_put(b, w->db, w->key, sizeof w->key, w->val, w->len) != 0)
            self->persist_errors++;
        free(w->val);
    }
    self->n_pending = 0;
    s_commit(self);
}

static void s_persist_record(engine_t *self, const uint8_t plan[32], uint32_t index,
                             const progress_rec_t *rec)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    progress_pack(rec, &pk);
    uint8_t key[36];
    s_target_key(plan, index, key);
    s_queue_write(self, STORE_DB_TARGETS, key, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Documents in chunks (docstore.h), committed at once: they are what
 * everything else needs. */
static int s_doc_store(engine_t *self, const uint8_t id[32], uint8_t kind, const char *data,
                       size_t len)
{
    store_batch_t *b = s_batch(self);
    if (!b)
        return GG_EIO;
    int rc = docstore_put(b, id, kind, data, len);
    s_commit(self);
    return rc;
}

/* Reads [offset, offset + len) of a stored document: the fleet core serves
 * chunks with it and compact plans read their targets back with it. */
static size_t s_doc_read(void *arg, const uint8_t id[FLEET_ID_LEN], uint64_t offset, uint8_t *buf,
                         size_t len)
{
    engine_t *self = arg;
    return docstore_read(agent_store(self->agent), id, offset, buf, len);
}

static char *s_doc_load(engine_t *self, const uint8_t id[32], uint64_t size)
{
    if (size > FLEET_MAX_DOC_BYTES)
        return NULL;
    char *text = malloc((size_t) size + 1);
    if (!text)
        return NULL;
    if (s_doc_read(self, id, 0, (uint8_t *) text, (size_t) size) != size) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

static void s_audit_put(engine_t *self, json_t *e);

static void s_audit(engine_t *self, const char *type, const char *plan_hex,
                    const uint8_t signer[32], uint64_t issued)
{
    char keyhex[65];
    sodium_bin2hex(keyhex, sizeof keyhex, signer, 32);
    s_audit_put(self, json_pack("{s:I, s:s, s:s?, s:s, s:I}", "at",
                                (json_int_t) (s_wall_ms() / 1000), "type", type, "plan", plan_hex,
                                "operator", keyhex, "issued", (json_int_t) issued));
}

void engine_audit_node(engine_t *self, const char *type, const char *node, const uint8_t signer[32],
                       uint64_t issued)
{
    char keyhex[65];
    sodium_bin2hex(keyhex, sizeof keyhex, signer, 32);
    s_audit_put(self, json_pack("{s:I, s:s, s:s, s:s, s:I}", "at",
                                (json_int_t) (s_wall_ms() / 1000), "type", type, "node", node,
                                "operator", keyhex, "issued", (json_int_t) issued));
    s_commit(self);
}

static void s_audit_hook(void *arg, const char *type, const char *node, const uint8_t signer[32],
                         uint64_t issued)
{
    engine_audit_node(arg, type, node, signer, issued);
}

/* Appends one entry (taken) to the audit trail, in the next commit. */
static void s_audit_put(engine_t *self, json_t *e)
{
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    uint8_t key[8];
    uint64_t seq = ++self->audit_seq;
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t) (seq >> (56 - 8 * i));
    store_batch_t *b = text ? s_batch(self) : NULL;
    if (b && store_batch_put(b, STORE_DB_AUDIT, key, sizeof key, text, strlen(text)) != 0)
        self->persist_errors++;
    free(text);
    json_decref(e);
}

/* ---- plans ---- */

static s_plan_t *s_find_plan(engine_t *self, const uint8_t id[32])
{
    for (size_t i = 0; i < self->n_plans; i++)
        if (memcmp(self->plans[i]->pub.id, id, 32) == 0)
            return self->plans[i];
    return NULL;
}

static void s_plan_free(s_plan_t *p)
{
    if (!p)
        return;
    plan_destroy(&p->pub.plan);
    free(p->approvals);
    zhashx_destroy(&p->approval_keys);
    free(p);
}

static void s_notify_start(engine_t *self, s_plan_t *p);

/* Takes ownership of plan. */
static s_plan_t *s_plan_add(engine_t *self, const uint8_t id[32], plan_t *plan)
{
    s_plan_t *existing = s_find_plan(self, id);
    if (existing) {
        plan_destroy(&plan);
        return existing;
    }
    if (self->n_plans >= FLEET_MAX_PLANS) {
        plan_destroy(&plan);
        return NULL;
    }
    size_t n = plan_target_count(plan);
    s_plan_t *p = calloc(1, sizeof *p);
    uint64_t *keys = calloc(n ? n : 1, sizeof *keys);
    bool *gated = calloc(n ? n : 1, sizeof *gated);
    if (p)
        p->approvals = calloc(n ? n : 1, sizeof *p->approvals);
    if (p)
        p->approval_keys = zhashx_new();
    if (!p || !keys || !gated || !p->approvals || !p->approval_keys) {
        free(keys);
        free(gated);
        plan_destroy(&plan);
        if (p) {
            free(p->approvals);
            zhashx_destroy(&p->approval_keys);
            free(p);
        }
        return NULL;
    }
    memcpy(p->pub.id, id, 32);
    sodium_bin2hex(p->pub.id_hex, sizeof p->pub.id_hex, id, 32);
    p->pub.plan = plan;
    p->pub.control = FLEET_PLAN_ACTIVE;
    p->pub.accepted_ms = s_wall_ms();
    p->seen_fresh = !self->restoring;
    p->seen_state = "active";
    for (size_t i = 0; i < n; i++) {
        const char *ref = plan_target_ref(plan, i);
        keys[i] = rendezvous_key(ref, strlen(ref));
        gated[i] = plan_target_needs_approval(plan, i);
    }
    const plan_spec_t *spec = plan_spec(plan);
    fleet_rollout_t rollout = {
        .max_parallel = spec->max_parallel,
        .canary = spec->canary,
        .rate_per_minute = spec->rate_per_minute,
        .max_failure_ratio = spec->max_failure_ratio < 0 ? 0 : spec->max_failure_ratio,
        .max_attempts = spec->max_attempts,
    };
    if (self->n_plans == self->cap_plans) {
        size_t cap = self->cap_plans ? self->cap_plans * 2 : 8;
        s_plan_t **grown = realloc(self->plans, cap * sizeof *grown);
        if (!grown) {
            free(keys);
            free(gated);
            s_plan_free(p);
            return NULL;
        }
        self->plans = grown;
        self->cap_plans = cap;
    }
    self->plans[self->n_plans++] = p;
    self->retry_deferred = self->n_deferred > 0;
    int rc = fleet_add_plan(self->fleet, s_now(), id, (uint32_t) n, keys, gated, &rollout);
    if (rc)
        gg_error("engine: the fleet core refused plan %s: %s", p->pub.id_hex, gg_strerror(rc));
    free(keys);
    free(gated);
    gg_info("engine: plan %s (%s) accepted: %zu targets", plan_name(plan), p->pub.id_hex, n);
    if (p->seen_fresh)
        s_notify_start(self, p);
    return p;
}

/* ---- commands ---- */

static int s_cmp_order(uint64_t ia, const char *na, uint64_t ib, const char *nb)
{
    if (ia != ib)
        return ia < ib ? -1 : 1;
    return strcmp(na, nb);
}

static long s_target_index(const s_plan_t *p, const char *ref)
{
    return plan_find_target(p->pub.plan, ref);
}

/* An operator change to a target record: generation + 1, made identically
 * by every node that applies the command. */
static void s_operator_record(engine_t *self, s_plan_t *p, uint32_t index, target_state_t state)
{
    const progress_rec_t *cur = fleet_record(self->fleet, p->pub.id, index);
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    if (cur)
        r = *cur;
    r.generation++;
    r.state = (uint8_t) state;
    r.attempt = state == TARGET_PENDING ? 0 : r.attempt;
    memset(r.holder, 0, sizeof r.holder);
    r.error[0] = '\0';
    r.exit_code = 0;
    r.finished_ms = state == TARGET_PENDING ? 0 : s_wall_ms();
    int rc = fleet_record_local(self->fleet, s_now(), p->pub.id, index, &r);
    if (rc && rc != GG_ESTALE)
        gg_warn("engine: operator change of target %u refused: %s", index, gg_strerror(rc));
}

/* Applies a verified command payload. Returns 0 or GG_EINVAL with err. */
static int s_apply_command(engine_t *self, json_t *payload, const uint8_t signer[32],
                           signed_command_t *checked, char *err, size_t errlen)
{
    signed_command_t cmd;
    if (signed_command_check(payload, &cmd, err, errlen) != 0)
        return GG_EINVAL;
    *checked = cmd;
    uint8_t plan_id[32];
    if (!cmd.plan || signed_hex_decode(cmd.plan, plan_id, 32) != 0) {
        snprintf(err, errlen, "the command names no plan");
        return GG_EINVAL;
    }
    s_plan_t *p = s_find_plan(self, plan_id);
    if (!p) {
        snprintf(err, errlen, "unknown plan %.64s", cmd.plan);
        return GG_ENOTFOUND;
    }
    const char *type = cmd.type;
    if (!strcmp(type, "pause") || !strcmp(type, "resume") || !strcmp(type, "cancel")) {
        if (p->pub.control == FLEET_PLAN_CANCELLED)
            return GG_OK; /* final */
        fleet_plan_control_t want = !strcmp(type, "pause")    ? FLEET_PLAN_PAUSED
                                    : !strcmp(type, "resume") ? FLEET_PLAN_ACTIVE
                                                              : FLEET_PLAN_CANCELLED;
        if (want == FLEET_PLAN_CANCELLED ||
            s_cmp_order(cmd.issued, cmd.nonce, p->control_issued, p->control_nonce) > 0) {
            p->pub.control = want;
            p->control_issued = cmd.issued;
            snprintf(p->control_nonce, sizeof p->control_nonce, "%s", cmd.nonce);
            fleet_set_plan_control(self->fleet, s_now(), p->pub.id, want);
            gg_info("engine: plan %s %s", plan_name(p->pub.plan),
                    want == FLEET_PLAN_PAUSED   ? "paused"
                    : want == FLEET_PLAN_ACTIVE ? "resumed"
                                                : "cancelled");
        }
        return GG_OK;
    }
    json_t *targets = json_object_get(payload, "targets");
    size_t n = plan_target_count(p->pub.plan);
    if (self->restoring && (!strcmp(type, "retry") || !strcmp(type, "mark")))
        return GG_OK; /* their records were stored when they were applied */
    if (!strcmp(type, "retry")) {
        target_state_t only = TARGET_FAILED;
        bool both = !cmd.state;
        if (cmd.state && target_state_parse(cmd.state, &only) != 0) {
            snprintf(err, errlen, "retry: unknown state %s", cmd.state);
            return GG_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            const progress_rec_t *r = fleet_record(self->fleet, p->pub.id, (uint32_t) i);
            if (!r)
                continue;
            bool match = both ? (r->state == TARGET_FAILED || r->state == TARGET_NEEDS_REVIEW)
                              : r->state == only;
            if (match)
                s_operator_record(self, p, (uint32_t) i, TARGET_PENDING);
        }
        return GG_OK;
    }
    if (!strcmp(type, "mark")) {
        target_state_t state;
        if (!cmd.state || target_state_parse(cmd.state, &state) != 0 ||
            (state != TARGET_SUCCEEDED && state != TARGET_SKIPPED)) {
            snprintf(err, errlen, "mark: the state must be succeeded or skipped");
            return GG_EINVAL;
        }
        size_t i;
        json_t *ref;
        json_array_foreach(targets, i, ref)
        {
            long idx = s_target_index(p, json_string_value(ref));
            if (idx < 0) {
                snprintf(err, errlen, "mark: unknown target %.200s", json_string_value(ref));
                return GG_ENOTFOUND;
            }
            s_operator_record(self, p, (uint32_t) idx, state);
        }
        return GG_OK;
    }
    if (!strcmp(type, "approve")) {
        char keyhex[65];
        sodium_bin2hex(keyhex, sizeof keyhex, signer, 32);
        uint32_t quorum = plan_spec(p->pub.plan)->quorum ? plan_spec(p->pub.plan)->quorum : 1;
        size_t count = json_array_size(targets);
        for (size_t k = 0; k < (count ? count : n); k++) {
            long idx = (long) k;
            if (count) {
                idx = s_target_index(p, json_string_value(json_array_get(targets, k)));
                if (idx < 0) {
                    snprintf(err, errlen, "approve: unknown target %.200s",
                             json_string_value(json_array_get(targets, k)));
                    return GG_ENOTFOUND;
                }
            }
            if (!plan_target_needs_approval(p->pub.plan, (size_t) idx))
                continue;
            char akey[96];
            snprintf(akey, sizeof akey, "%ld:%s", idx, keyhex);
            if (zhashx_lookup(p->approval_keys, akey))
                continue;
            zhashx_insert(p->approval_keys, akey, (void *) "1");
            if (++p->approvals[idx] == quorum)
                fleet_set_approved(self->fleet, s_now(), p->pub.id, (uint32_t) idx);
        }
        return GG_OK;
    }
    snprintf(err, errlen, "unsupported command %s", type);
    return GG_EINVAL;
}

/* ---- documents ---- */

/* Holds a verified plan (taking it): refused (409) when local and its name
 * is held by another active plan with other content. Returns a status. */
static int s_accept_plan(engine_t *self, plan_t *plan, bool local, const uint8_t signer[32],
                         const uint8_t id[32], s_plan_t **plan_out, char *err, size_t errlen)
{
    if (local && !s_find_plan(self, id)) {
        /* A name held by another active plan with other content is refused. */
        for (size_t i = 0; i < self->n_plans; i++) {
            s_plan_t *o = self->plans[i];
            fleet_plan_stats_t st;
            if (strcmp(plan_name(o->pub.plan), plan_name(plan)) != 0 ||
                o->pub.control == FLEET_PLAN_CANCELLED)
                continue;
            if (fleet_plan_stats(self->fleet, o->pub.id, &st) == 0 && st.completed)
                continue;
            snprintf(err, errlen,
                     "plan name %s is held by active plan %.12s with other content: cancel it "
                     "first",
                     plan_name(plan), o->pub.id_hex);
            plan_destroy(&plan);
            return 409;
        }
    }
    bool known = s_find_plan(self, id) != NULL;
    s_plan_t *p = s_plan_add(self, id, plan);
    if (!p) {
        snprintf(err, errlen, "cannot hold more plans");
        return 500;
    }
    if (!known)
        s_audit(self, "apply", p->pub.id_hex, signer, 0);
    if (plan_out)
        *plan_out = p;
    return 200;
}

/* Checking a plan document in canonical form (what the CLI sends and peers
 * replicate): its signature and every target, without a JSON tree of the
 * whole; the targets stay in the stored document (plan_from_canonical). It
 * touches nothing of the engine (the trust set is only read, and nothing
 * changes it while a check runs), so a large replicated plan is checked on a
 * worker thread while the loop writes it into the store (s_on_large_plan). */
typedef struct {
    /* in */
    const char *text;
    size_t len;
    const trust_t *trust;
    void *reader_arg;        /* the engine, for the plan's document reader (not called here) */
    const uint8_t *known_id; /* the id it was replicated or stored under; NULL when submitted */
    /* out */
    int rc;     /* GG_EMALFORMED: not canonical; the general path must judge it */
    int status; /* otherwise: 200 with plan, or 400, 403, 500 with err */
    plan_t *plan;
    uint8_t id[32];
    uint8_t signer[CERT_PUBLIC_LEN];
    char err[256];
} s_check_t;

/* The first error of diag, for an answer. */
static void s_plan_error(plan_diag_t *diag, char *err, size_t errlen)
{
    json_t *first = diag ? json_array_get(plan_diag_errors(diag), 0) : NULL;
    snprintf(err, errlen, "the plan is invalid: %s",
             first ? json_string_value(json_object_get(first, "message")) : "unreadable");
}

/* True when text has the shape of a canonical signed plan document (cheap:
 * the envelope's ends and the payload's first bytes). */
static bool s_looks_canonical_plan(const char *text, size_t len, size_t *off, size_t *plen,
                                   uint8_t signer[CERT_PUBLIC_LEN], uint8_t sig[CERT_SIG_LEN])
{
    static const char plan_head[] = "{\"apiVersion\":";
    return signed_split(text, len, off, plen, signer, sig) == 0 && *plen >= sizeof plan_head - 1 &&
           memcmp(text + *off, plan_head, sizeof plan_head - 1) == 0;
}

static void s_check_canonical(s_check_t *c)
{
    size_t off = 0, plen = 0;
    uint8_t sig[CERT_SIG_LEN];
    plan_diag_t *diag = NULL;
    c->rc = 0;
    c->status = 400;
    c->plan = NULL;
    c->err[0] = '\0';
    if (!s_looks_canonical_plan(c->text, c->len, &off, &plen, c->signer, sig)) {
        c->rc = GG_EMALFORMED;
        return;
    }
    int rc = signed_verify_bytes(c->text + off, plen, c->signer, sig, c->trust);
    if (rc == GG_EPERM) {
        c->status = 403;
        snprintf(c->err, sizeof c->err, "the document is not signed by a trusted operator key");
        return;
    }
    if (rc != 0) {
        c->rc = GG_EMALFORMED; /* the general path tells a bad signature (401) */
        return;
    }
    if (!(diag = plan_diag_new())) {
        c->status = 500;
        snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    rc = plan_from_canonical(c->text, c->len, off, plen, c->known_id, s_doc_read, c->reader_arg,
                             &c->plan, diag);
    if (rc == GG_EMALFORMED) {
        c->rc = rc;
    } else if (rc != 0) {
        s_plan_error(diag, c->err, sizeof c->err);
        c->status = rc == GG_ENOMEM ? 500 : 400;
    } else if (signed_hex_decode(plan_id(c->plan), c->id, 32) != 0) {
        plan_destroy(&c->plan);
        c->status = 500;
        snprintf(c->err, sizeof c->err, "cannot hash the payload");
    } else {
        c->status = 200;
    }
    plan_diag_destroy(&diag);
}

/* Returns 0 with the status set, or GG_EMALFORMED when the document must
 * take the general path (not in canonical form, or a signature that only
 * that path can judge). known_id: as in s_accept_doc. */
static int s_accept_canonical(engine_t *self, const char *text, size_t len, bool local,
                              const uint8_t *known_id, uint8_t id_out[32], s_plan_t **plan_out,
                              char *err, size_t errlen, int *status)
{
    s_check_t c = {.text = text,
                   .len = len,
                   .trust = agent_trust(self->agent),
                   .reader_arg = self,
                   .known_id = known_id};
    s_check_canonical(&c);
    if (c.rc != 0)
        return c.rc;
    if (c.status != 200) {
        *status = c.status;
        snprintf(err, errlen, "%s", c.err);
        return 0;
    }
    memcpy(id_out, c.id, 32);
    *status = s_accept_plan(self, c.plan, local, c.signer, id_out, plan_out, err, errlen);
    return 0;
}

/* Verifies and applies one signed document. On success *kind and the id are
 * filled. known_id is the id a document was replicated or stored under (the
 * caller compares it with the id found), NULL for one submitted here: a
 * canonical plan whose bytes hash to it needs no proof of its targets' form
 * (plan_from_canonical). Returns an HTTP-like status (200, 400, 401, 403,
 * 404, 409). */
static int s_accept_doc(engine_t *self, const char *text, size_t len, bool local,
                        const uint8_t *known_id, uint8_t id_out[32], uint8_t *kind_out,
                        s_plan_t **plan_out, char *err, size_t errlen)
{
    json_t *doc = NULL, *payload = NULL;
    uint8_t signer[32];
    char idhex[SIGNED_HASH_HEX_LEN + 1];
    int status = 400;
    if (s_accept_canonical(self, text, len, local, known_id, id_out, plan_out, err, errlen,
                           &status) == 0) {
        *kind_out = ENGINE_DOC_PLAN;
        return status;
    }
    if (signed_parse(text, len, &doc) != 0) {
        snprintf(err, errlen,
                 "the body is not a signed document (JSON with payload and signature)");
        goto out;
    }
    int rc = signed_verify(doc, agent_trust(self->agent), &payload, signer);
    if (rc == GG_EPERM) {
        status = 403;
        snprintf(err, errlen, "the document is not signed by a trusted operator key");
        goto out;
    }
    if (rc == GG_ECRYPTO) {
        status = 401;
        snprintf(err, errlen, "the document's signature does not verify");
        goto out;
    }
    if (rc) {
        snprintf(err, errlen,
                 "the body is not a signed document (JSON with payload and signature)");
        goto out;
    }
    if (signed_hash_hex(payload, idhex) != 0 || signed_hex_decode(idhex, id_out, 32) != 0) {
        snprintf(err, errlen, "cannot hash the payload");
        goto out;
    }
    bool is_command = json_object_get(payload, "type") && json_object_get(payload, "nonce");
    if (is_command) {
        *kind_out = ENGINE_DOC_COMMAND;
        signed_command_t cmd;
        rc = s_apply_command(self, payload, signer, &cmd, err, errlen);
        if (rc == GG_ENOTFOUND) {
            status = 404;
            goto out;
        }
        if (rc) {
            status = 400;
            goto out;
        }
        s_audit(self, cmd.type, cmd.plan, signer, cmd.issued);
        status = 200;
        goto out;
    }
    *kind_out = ENGINE_DOC_PLAN;
    plan_t *plan = NULL;
    plan_diag_t *diag = plan_diag_new();
    rc = plan_from_json(payload, &plan, diag);
    if (rc) {
        s_plan_error(diag, err, errlen);
        plan_diag_destroy(&diag);
        goto out;
    }
    plan_diag_destroy(&diag);
    if (strcmp(plan_id(plan), idhex) != 0) {
        snprintf(err, errlen, "the plan's id does not match its content");
        plan_destroy(&plan);
        goto out;
    }
    status = s_accept_plan(self, plan, local, signer, id_out, plan_out, err, errlen);
out:
    json_decref(doc);
    return status;
}

/* Keeps a verified command whose plan is unknown here (yet). */
static void s_defer(engine_t *self, const uint8_t id[32], const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < self->n_deferred; i++)
        if (memcmp(self->deferred[i].id, id, 32) == 0)
            return;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        fleet_doc_reject(self->fleet, s_now(), id);
        return;
    }
    memcpy(copy, data, len);
    if (self->n_deferred == DEFERRED_MAX) {
        s_deferred_t *old = &self->deferred[0];
        gg_warn("engine: too many commands wait for their plan; the oldest is refused");
        self->docs_rejected++;
        fleet_doc_reject(self->fleet, s_now(), old->id);
        free(old->data);
        memmove(old, old + 1, (DEFERRED_MAX - 1) * sizeof *old);
        self->n_deferred--;
    }
    s_deferred_t *d = &self->deferred[self->n_deferred++];
    memcpy(d->id, id, 32);
    d->data = copy;
    d->len = len;
    gg_info("engine: a command waits for its plan to arrive");
}

static void s_on_doc(engine_t *self, const uint8_t id[32], const uint8_t *data, size_t len);

/* A plan was added: the commands that waited for it apply now. */
static void s_retry_deferred(engine_t *self)
{
    self->retry_deferred = false;
    size_t n = self->n_deferred;
    s_deferred_t *waiting = malloc((n ? n : 1) * sizeof *waiting);
    if (!waiting)
        return;
    memcpy(waiting, self->deferred, n * sizeof *waiting);
    self->n_deferred = 0;
    for (size_t i = 0; i < n; i++) {
        s_on_doc(self, waiting[i].id, waiting[i].data, waiting[i].len); /* may defer it again */
        free(waiting[i].data);
    }
    free(waiting);
}

static void *s_check_thread(void *arg)
{
    s_check_canonical(arg);
    return NULL;
}

/* A large replicated plan (a canonical document of at least a chunk): the
 * check runs on a worker thread while the loop writes the document into the
 * store's open batch; the loop then waits for the verdict (the check takes
 * about as long as the write, so the two overlap instead of adding up).
 * Accepted: the batch is committed with it. Refused: its keys are deleted
 * again before the commit (other writes in the batch stay). Returns false,
 * having changed nothing, when the document is not of that kind or no
 * thread could start: the caller then takes the serial path. */
static bool s_on_large_plan(engine_t *self, const uint8_t id[32], const uint8_t *data, size_t len)
{
    size_t off, plen;
    uint8_t signer[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    if (len < DOCSTORE_CHUNK_BYTES ||
        !s_looks_canonical_plan((const char *) data, len, &off, &plen, signer, sig))
        return false;
    s_check_t c = {.text = (const char *) data,
                   .len = len,
                   .trust = agent_trust(self->agent),
                   .reader_arg = self,
                   .known_id = id};
    pthread_t worker;
    if (pthread_create(&worker, NULL, s_check_thread, &c) != 0)
        return false;
    uint64_t t0 = s_now();
    store_batch_t *b = s_batch(self);
    int stored = b ? docstore_put(b, id, ENGINE_DOC_PLAN, data, len) : GG_EIO;
    uint64_t t1 = s_now();
    pthread_join(worker, NULL);
    uint64_t t2 = s_now();
    if (c.rc != 0) { /* not canonical after all: undo, and let the general path judge */
        if (b && stored == 0)
            (void) docstore_del(b, id, len);
        return false;
    }
    int status = c.status;
    char err[256];
    snprintf(err, sizeof err, "%s", c.err);
    if (status == 200 && memcmp(c.id, id, 32) != 0) {
        plan_destroy(&c.plan);
        status = 400;
        snprintf(err, sizeof err, "its id does not match its content");
    }
    uint8_t got[32];
    memcpy(got, c.id, 32);
    if (status == 200)
        status = s_accept_plan(self, c.plan, false, c.signer, got, NULL, err, sizeof err);
    if (status != 200) {
        if (b && stored == 0)
            (void) docstore_del(b, id, len);
        s_commit(self);
        self->docs_rejected++;
        gg_warn("engine: a replicated document was refused: %s", err);
        fleet_doc_reject(self->fleet, s_now(), id);
        return true;
    }
    s_commit(self);
    if (stored != 0) {
        self->persist_errors++;
        gg_error("engine: cannot store a replicated document");
    }
    gg_debug("engine: a replicated plan of %zu bytes: stored in %llu ms while checked in %llu ms "
             "(waited %llu ms more), committed in %llu ms",
             len, (unsigned long long) (t1 - t0), (unsigned long long) (t2 - t0),
             (unsigned long long) (t2 - t1), (unsigned long long) (s_now() - t2));
    fleet_doc_accept(self->fleet, s_now(), id);
    return true;
}

static void s_on_doc(engine_t *self, const uint8_t id[32], const uint8_t *data, size_t len)
{
    if (s_on_large_plan(self, id, data, len))
        return;
    uint8_t got[32], kind = 0;
    char err[256] = "";
    int status =
        s_accept_doc(self, (const char *) data, len, false, id, got, &kind, NULL, err, sizeof err);
    if (status == 404 && kind == ENGINE_DOC_COMMAND && memcmp(got, id, 32) == 0) {
        s_defer(self, id, data, len);
        return;
    }
    if (status != 200 || memcmp(got, id, 32) != 0) {
        self->docs_rejected++;
        gg_warn("engine: a replicated document was refused: %s",
                status != 200 ? err : "its id does not match its content");
        fleet_doc_reject(self->fleet, s_now(), id);
        return;
    }
    if (s_doc_store(self, id, kind, (const char *) data, len) != 0) {
        self->persist_errors++;
        gg_error("engine: cannot store a replicated document");
    }
    fleet_doc_accept(self->fleet, s_now(), id);
}

/* ---- runs ---- */

static void s_drain(engine_t *self);
static void s_on_log_req(void *arg, const transport_delivery_t *d);
static void s_on_log_rep(void *arg, const transport_delivery_t *d);
static void s_run_done(void *arg, uint64_t run_id, const runner_outcome_t *outcome);

static s_run_t *s_run_find(engine_t *self, const s_plan_t *p, uint32_t index)
{
    char key[48];
    s_run_key(p, index, key, sizeof key);
    return zhashx_lookup(self->runs, key);
}

static void s_run_forget(engine_t *self, s_run_t *run)
{
    char key[48];
    s_run_key(run->plan, run->index, key, sizeof key);
    zhashx_delete(self->runs, key);
}

static void s_start_run(engine_t *self, s_plan_t *p, uint32_t index, uint32_t epoch,
                        uint32_t attempt)
{
    s_run_t *run = s_run_find(self, p, index);
    if (run && run->active) {
        if (runner_abort(self->runner, run->run_id) != 0)
            gg_debug("engine: run %llu had already ended", (unsigned long long) run->run_id);
        s_run_forget(self, run);
    }
    run = calloc(1, sizeof *run);
    if (!run)
        return;
    run->plan = p;
    run->index = index;
    run->epoch = epoch;
    run->attempt = attempt;
    run->started_wall_ms = s_wall_ms();
    char key[48];
    s_run_key(p, index, key, sizeof key);
    zhashx_insert(self->runs, key, run);
    run->active = true;
    int rc = runner_start(self->runner, p->pub.plan, index, epoch, attempt, s_run_done, self,
                          &run->run_id);
    if (rc) {
        /* Could not start: report it as a failed attempt under this lease. */
        run->active = false;
        runner_outcome_t o;
        memset(&o, 0, sizeof o);
        o.state = TARGET_FAILED;
        o.exit_code = -1;
        snprintf(o.error, sizeof o.error, "cannot start the target: %s", gg_strerror(rc));
        s_run_done(self, 0, &o);
    }
}

static s_run_t *s_run_by_id(engine_t *self, uint64_t run_id)
{
    for (s_run_t *r = zhashx_first(self->runs); r; r = zhashx_next(self->runs))
        if (r->run_id == run_id)
            return r;
    return NULL;
}

#define LOG_KEEP_MAX (64u << 10)

/* The last `max` bytes of a file, malloc'd; NULL when unreadable. */
static char *s_read_tail(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long from = size > (long) max ? size - (long) max : 0;
        if (size >= 0 && fseek(f, from, SEEK_SET) == 0 &&
            (buf = malloc((size_t) (size - from) + 1)) != NULL) {
            *len = fread(buf, 1, (size_t) (size - from), f);
            buf[*len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static void s_store_log(engine_t *self, const s_plan_t *p, uint32_t index, const char *tail,
                        size_t len)
{
    uint8_t key[36];
    s_target_key(p->pub.id, index, key);
    s_queue_write(self, STORE_DB_LOGS, key, tail ? tail : "", tail ? len : 0);
}

/* ---- notify (notify.h) ---- */

/* The "plan" object of a notification. */
static json_t *s_notify_plan_info(engine_t *self, const s_plan_t *p)
{
    fleet_plan_stats_t st;
    memset(&st, 0, sizeof st);
    (void) fleet_plan_stats(self->fleet, p->pub.id, &st);
    json_t *counts = engine_counts_json(&st);
    return json_pack("{s:s, s:s, s:s, s:I, s:o*}", "id", p->pub.id_hex, "name",
                     plan_name(p->pub.plan), "state", engine_plan_state(self, &p->pub), "total",
                     (json_int_t) st.total, "counts", counts);
}

/* A target's run ended in a terminal state on this node. */
static void s_notify_target(engine_t *self, const s_plan_t *p, uint32_t index,
                            const progress_rec_t *r)
{
    const char *event = target_state_name((target_state_t) r->state);
    if (!notify_wants(p->pub.plan, event))
        return;
    json_t *plan_info = s_notify_plan_info(self, p);
    json_t *target_info =
        json_pack("{s:s, s:s, s:i, s:i, s:s}", "ref", plan_target_ref(p->pub.plan, index), "state",
                  event, "attempt", (int) r->attempt, "epoch", (int) r->epoch, "error", r->error);
    if (plan_info && target_info)
        (void) notify_event(self->notify, p->pub.plan, event, (long) index, plan_info, target_info);
    json_decref(plan_info);
    json_decref(target_info);
}

/* True when this node is the plan's notifier: the live member with the
 * highest rendezvous score for the plan id in this node's view. */
static bool s_is_notifier(engine_t *self, const s_plan_t *p)
{
    const member_t *me = membership_self(cluster_membership(self->cluster));
    const member_t *best =
        cluster_chosen(self->cluster, rendezvous_key(p->pub.id, sizeof p->pub.id), false);
    return !best || !me || memcmp(best->id, me->id, MEMBER_ID_LEN) == 0;
}

/* The starting point of a plan accepted while running: nothing seen yet (so
 * its gated targets are an event), unless it reached this node already under
 * way (records of finished targets came first): then what it is now. */
static void s_notify_start(engine_t *self, s_plan_t *p)
{
    fleet_plan_stats_t st;
    p->seen_init = true;
    if (fleet_plan_stats(self->fleet, p->pub.id, &st) != 0)
        return;
    uint32_t finished = st.counts[TARGET_SUCCEEDED] + st.counts[TARGET_SKIPPED] +
                        st.counts[TARGET_FAILED] + st.counts[TARGET_NEEDS_REVIEW] +
                        st.counts[TARGET_CANCELLED];
    if (finished == 0)
        return;
    p->seen_state = engine_plan_state(self, &p->pub);
    p->seen_awaiting = st.counts[TARGET_AWAITING_APPROVAL] > 0;
}

/* Plan events: a plan that enters paused, cancelled or completed, or gets
 * targets awaiting approval, is told of by its notifier. What a node finds
 * when it starts (restored plans) or when a plan reaches it late (already
 * under way) is its starting point, not an event. */
static void s_notify_plans(engine_t *self)
{
    for (size_t i = 0; i < self->n_plans; i++) {
        s_plan_t *p = self->plans[i];
        if (!plan_spec(p->pub.plan)->notify.run)
            continue;
        fleet_plan_stats_t st;
        if (fleet_plan_stats(self->fleet, p->pub.id, &st) != 0)
            continue;
        const char *state = engine_plan_state(self, &p->pub);
        bool awaiting = st.counts[TARGET_AWAITING_APPROVAL] > 0;
        if (!p->seen_init) { /* restored: the first look, once every record is back */
            p->seen_init = true;
            p->seen_state = state;
            p->seen_awaiting = awaiting;
        }
        const char *events[2] = {NULL, NULL};
        if (awaiting && !p->seen_awaiting)
            events[0] = "awaiting_approval";
        if (strcmp(state, p->seen_state) != 0 && strcmp(state, "active") != 0)
            events[1] = state;
        p->seen_awaiting = awaiting;
        p->seen_state = state;
        if ((!events[0] && !events[1]) || !s_is_notifier(self, p))
            continue;
        json_t *plan_info = s_notify_plan_info(self, p);
        for (int k = 0; k < 2 && plan_info; k++)
            if (events[k])
                (void) notify_event(self->notify, p->pub.plan, events[k], -1, plan_info, NULL);
        json_decref(plan_info);
    }
}

static void s_run_done(void *arg, uint64_t run_id, const runner_outcome_t *o)
{
    engine_t *self = arg;
    s_run_t *run = run_id ? s_run_by_id(self, run_id) : NULL;
    if (!run) {
        /* The failed-start path passes run_id 0: find the inactive entry. */
        for (s_run_t *r = zhashx_first(self->runs); r && !run; r = zhashx_next(self->runs))
            if (!r->active && r->run_id == 0)
                run = r;
    }
    if (!run)
        return; /* aborted meanwhile */
    s_plan_t *p = run->plan;
    const progress_rec_t *cur = fleet_record(self->fleet, p->pub.id, run->index);
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    if (cur)
        r = *cur;
    r.epoch = run->epoch;
    r.attempt = run->attempt;
    memcpy(r.holder, agent_node_key(self->agent)->public_key, 32);
    r.state = (uint8_t) o->state;
    r.step = o->step;
    r.exit_code = o->exit_code;
    r.started_ms = run->started_wall_ms;
    r.finished_ms = s_wall_ms();
    r.duration_ms = o->duration_ms;
    snprintf(r.error, sizeof r.error, "%s", o->error);
    /* The log kept for `gaggle logs` is the end of the target's full log
     * (every step, with its header lines); the outcome's tail otherwise. */
    char *file_tail = NULL;
    size_t file_len = 0;
    if (o->log_path[0] && (file_tail = s_read_tail(o->log_path, LOG_KEEP_MAX, &file_len)) != NULL)
        s_store_log(self, p, run->index, file_tail, file_len);
    else
        s_store_log(self, p, run->index, o->tail, o->tail_len);
    free(file_tail);
    metrics_t *m = agent_metrics(self->agent);
    metrics_histogram_observe(m, "gaggle_step_duration_seconds", NULL,
                              (double) o->duration_ms / 1000.0);
    int rc = fleet_record_local(self->fleet, s_now(), p->pub.id, run->index, &r);
    if (rc == 0 && target_state_terminal((target_state_t) r.state))
        s_notify_target(self, p, run->index, &r);
    if (rc == 0 && o->state == TARGET_RETRY_WAIT && self->n_retries < RETRIES_MAX) {
        metrics_counter_add(m, "gaggle_step_retries_total", NULL, 1);
        if (self->n_retries == self->cap_retries) {
            size_t cap = self->cap_retries ? self->cap_retries * 2 : 64;
            s_retry_t *grown = realloc(self->retries, cap * sizeof *grown);
            if (grown) {
                self->retries = grown;
                self->cap_retries = cap;
            }
        }
        if (self->n_retries < self->cap_retries)
            self->retries[self->n_retries++] =
                (s_retry_t){p, run->index, run->epoch, run->attempt, s_now() + o->backoff_ms};
    } else if (rc == GG_ESTALE) {
        gg_info("engine: result of %s (epoch %u) discarded: the lease was superseded",
                plan_target_ref(p->pub.plan, run->index), run->epoch);
    }
    s_run_forget(self, run);
    s_drain(self);
}

static void s_abort_run(engine_t *self, const uint8_t plan_id[32], uint32_t index,
                        fleet_abort_reason_t reason)
{
    s_plan_t *p = s_find_plan(self, plan_id);
    if (!p)
        return;
    s_run_t *run = s_run_find(self, p, index);
    if (run) {
        if (run->active && runner_abort(self->runner, run->run_id) != 0)
            gg_debug("engine: run %llu had already ended", (unsigned long long) run->run_id);
        gg_info("engine: %s stopped (%s)", plan_target_ref(p->pub.plan, index),
                reason == FLEET_ABORT_CANCELLED  ? "plan cancelled"
                : reason == FLEET_ABORT_FENCED   ? "fenced by a newer lease"
                : reason == FLEET_ABORT_CONFLICT ? "another node won the same lease"
                                                 : "handed back");
        s_run_forget(self, run);
    }
    for (size_t i = 0; i < self->n_retries; i++)
        if (self->retries[i].plan == p && self->retries[i].index == index) {
            self->retries[i] = self->retries[--self->n_retries];
            break;
        }
}

static void s_fire_retries(engine_t *self, uint64_t now)
{
    for (size_t i = 0; i < self->n_retries;) {
        s_retry_t rt = self->retries[i];
        if (rt.due_ms > now || runner_active(self->runner) >= agent_config(self->agent)->workers) {
            i++;
            continue;
        }
        self->retries[i] = self->retries[--self->n_retries];
        const progress_rec_t *cur = fleet_record(self->fleet, rt.plan->pub.id, rt.index);
        if (!cur || cur->epoch != rt.epoch || cur->state != TARGET_RETRY_WAIT ||
            memcmp(cur->holder, agent_node_key(self->agent)->public_key, 32) != 0)
            continue; /* superseded meanwhile */
        progress_rec_t r = *cur;
        r.attempt = rt.attempt + 1;
        r.state = TARGET_RUNNING;
        r.error[0] = '\0';
        if (fleet_record_local(self->fleet, now, rt.plan->pub.id, rt.index, &r) == 0)
            s_start_run(self, rt.plan, rt.index, rt.epoch, rt.attempt + 1);
    }
}

/* ---- the loop ---- */

/* Free slots: workers minus what is busy, where the step processes still
 * ending after an abort (fenced, cancelled) count until reaped, so that no
 * claim is granted that runner_start would refuse as busy (which fails the
 * attempt). */
static void s_set_capacity(engine_t *self)
{
    size_t runs = runner_active(self->runner), procs = executor_running(self->executor);
    size_t busy = (runs > procs ? runs : procs) + self->n_retries;
    uint32_t workers = agent_config(self->agent)->workers;
    fleet_set_capacity(self->fleet, s_now(),
                       self->leaving || busy >= workers ? 0 : (uint32_t) (workers - busy));
}

static void s_drain(engine_t *self)
{
    if (self->draining_outputs)
        return;
    self->draining_outputs = true;
    s_set_capacity(self);
    fleet_out_t out;
    while (fleet_poll(self->fleet, &out)) {
        s_plan_t *p;
        switch (out.type) {
        case FOUT_SEND:
            cluster_send(self->cluster, out.address, out.wire_type, out.data, out.len);
            break;
        case FOUT_RUN:
            p = s_find_plan(self, out.plan_id);
            if (p)
                s_start_run(self, p, out.index, out.rec.epoch, out.rec.attempt);
            break;
        case FOUT_ABORT: s_abort_run(self, out.plan_id, out.index, out.reason); break;
        case FOUT_RECORD:
            s_persist_record(self, out.plan_id, out.index, &out.rec);
            if (zhashx_size(self->log_cache) && (p = s_find_plan(self, out.plan_id)) != NULL) {
                char key[48];
                s_run_key(p, out.index, key, sizeof key);
                zhashx_delete(self->log_cache, key);
            }
            break;
        case FOUT_DOC: s_on_doc(self, out.doc_id, out.data, out.len); break;
        case FOUT_PLAN_STATE:
            p = s_find_plan(self, out.plan_id);
            if (p) {
                fleet_plan_stats_t st;
                if (fleet_plan_stats(self->fleet, p->pub.id, &st) == 0)
                    gg_info("engine: plan %s is %s", plan_name(p->pub.plan),
                            st.completed     ? "completed"
                            : st.auto_paused ? "paused (failures)"
                                             : "active");
            }
            break;
        }
        fleet_out_release(&out);
        s_set_capacity(self);
    }
    s_commit(self); /* documents and audit entries; records wait for s_flush */
    self->draining_outputs = false;
}

static void s_apply_members(engine_t *self);

static int s_ticker(zloop_t *loop, int timer_id, void *arg)
{
    engine_t *self = arg;
    uint64_t now = s_now();
    s_fire_retries(self, now);
    if (self->retry_deferred)
        s_retry_deferred(self);
    if (self->members_dirty)
        s_apply_members(self);
    if (now >= fleet_next_deadline(self->fleet))
        fleet_tick(self->fleet, now);
    s_drain(self);
    s_flush(self);
    if (now >= self->notify_checked_ms + NOTIFY_CHECK_MS) {
        self->notify_checked_ms = now;
        s_notify_plans(self);
    }
    notify_pump(self->notify);
    return 0;
}

/* Hands the membership view to the fleet core. Changes are coalesced: the
 * hook marks the view dirty and the ticker applies it (a fleet forming or a
 * partition healing changes the view many times a millisecond, and each
 * hand-over rebuilds the member list). */
static void s_apply_members(engine_t *self)
{
    self->members_dirty = false;
    membership_t *m = cluster_membership(self->cluster);
    size_t n = membership_size(m);
    fleet_member_t *list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return;
    for (size_t i = 0; i < n; i++) {
        const member_t *mb = membership_at(m, i);
        memcpy(list[i].id, mb->id, FLEET_ID_LEN);
        snprintf(list[i].address, sizeof list[i].address, "%s", mb->address);
        list[i].live = mb->state == MEMBER_ALIVE || mb->state == MEMBER_SUSPECT;
        list[i].draining = (mb->flags & MEMBER_FLAG_DRAINING) != 0;
        list[i].wire_version = (mb->flags & MEMBER_FLAG_WIRE2) ? 2 : 1;
    }
    fleet_set_members(self->fleet, s_now(), list, n);
    free(list);
    s_drain(self);
}

static void s_members_changed(void *arg)
{
    engine_t *self = arg;
    self->members_dirty = true;
}

static void s_on_message(void *arg, const transport_delivery_t *d)
{
    engine_t *self = arg;
    fleet_handle(self->fleet, s_now(), d->msg);
    s_drain(self);
}

/* ---- restore ---- */

typedef struct {
    engine_t *self;
    json_t *commands; /* texts of the stored commands, applied after the plans */
} s_restore_t;

static int s_restore_doc(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_restore_t *r = arg;
    engine_t *self = r->self;
    const uint8_t *id = NULL;
    uint8_t kind = 0;
    uint64_t size = 0;
    if (docstore_meta(key, klen, val, vlen, &id, &kind, &size) != 0)
        return 0;
    char *text = s_doc_load(self, id, size);
    if (!text) {
        gg_error("engine: a stored document is unreadable; skipped");
        return 0;
    }
    if (kind == ENGINE_DOC_COMMAND) {
        json_array_append_new(r->commands, json_string_nocheck(text));
    } else {
        uint8_t got[32], got_kind;
        char err[256];
        if (s_accept_doc(self, text, (size_t) size, false, id, got, &got_kind, NULL, err,
                         sizeof err) != 200)
            gg_error("engine: a stored plan no longer verifies (%s); skipped", err);
    }
    fleet_restore_doc(self->fleet, id, kind, size);
    free(text);
    return 0;
}

static int s_restore_record(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    engine_t *self = arg;
    if (klen != 36 || wire_validate(val, vlen) != 0)
        return 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    progress_rec_t rec;
    if (msgpack_unpack_next(&up, val, vlen, &off) == MSGPACK_UNPACK_SUCCESS && off == vlen &&
        progress_unpack(&up.data, &rec) == 0) {
        const uint8_t *k = key;
        uint32_t index =
            ((uint32_t) k[32] << 24) | ((uint32_t) k[33] << 16) | ((uint32_t) k[34] << 8) | k[35];
        fleet_restore_record(self->fleet, k, index, &rec);
    }
    msgpack_unpacked_destroy(&up);
    return 0;
}

static int s_audit_count(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    engine_t *self = arg;
    if (klen == 8) {
        uint64_t seq = 0;
        for (int i = 0; i < 8; i++)
            seq = (seq << 8) | ((const uint8_t *) key)[i];
        if (seq > self->audit_seq)
            self->audit_seq = seq;
    }
    return 0;
}

static void s_restore(engine_t *self)
{
    store_t *store = agent_store(self->agent);
    s_restore_t r = {self, json_array()};
    if (store_scan(store, STORE_DB_AUDIT, NULL, 0, s_audit_count, self) != 0 ||
        store_scan(store, STORE_DB_PLANS, "d", 1, s_restore_doc, &r) != 0)
        gg_error("engine: cannot read the stored plans");
    /* Commands replay after every plan is back; their order does not matter
     * (the control register compares (issued, nonce), approvals are a set).
     * The audit is not repeated. */
    size_t i;
    json_t *text;
    uint64_t audit = self->audit_seq;
    self->restoring = true;
    json_array_foreach(r.commands, i, text)
    {
        uint8_t got[32], kind;
        char err[256];
        const char *t = json_string_value(text);
        s_accept_doc(self, t, strlen(t), false, NULL, got, &kind, NULL, err, sizeof err);
    }
    self->restoring = false;
    self->audit_seq = audit;
    if (self->batch)
        store_batch_abort(&self->batch); /* no duplicate audit entries */
    json_decref(r.commands);
    if (store_scan(store, STORE_DB_TARGETS, NULL, 0, s_restore_record, self) != 0)
        gg_error("engine: cannot read the stored progress");
    if (self->n_plans)
        gg_info("engine: %zu plans restored from the store", self->n_plans);
}

/* ---- life cycle ---- */

static const char *s_profile(config_profile_t p)
{
    return p == CONFIG_PROFILE_TEST ? "test" : p == CONFIG_PROFILE_WAN ? "wan" : "lan";
}

/* Every job carries its own callback (the runner's); this one only sees
 * strays, which there should be none of. */
static int s_stray_job(void *arg, uint64_t job_id, const executor_result_t *result)
{
    (void) arg;
    (void) result;
    gg_warn("engine: a step process (job %llu) ended without an owner",
            (unsigned long long) job_id);
    return 0;
}

static void s_run_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_str_free(void **item)
{
    free(*item);
    *item = NULL;
}

engine_t *engine_new(agent_t *agent, cluster_t *cluster, char *err, size_t errlen)
{
    engine_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->agent = agent;
    self->cluster = cluster;
    const config_t *cfg = agent_config(agent);
    snprintf(self->work_root, sizeof self->work_root, "%s/work", cfg->data_dir);
    snprintf(self->log_root, sizeof self->log_root, "%s/logs", cfg->data_dir);
    snprintf(self->pgid_root, sizeof self->pgid_root, "%s/pgids", cfg->data_dir);
    mkdir(self->work_root, 0700);
    mkdir(self->log_root, 0700);
    mkdir(self->pgid_root, 0700);
    self->runs = zhashx_new();
    self->log_cache = zhashx_new();
    if (!self->runs || !self->log_cache)
        goto fail_mem;
    zhashx_set_destructor(self->runs, s_run_free);
    zhashx_set_destructor(self->log_cache, s_str_free);

    fleet_config_t fc;
    if (fleet_config_get(s_profile(cfg->profile), &fc) != 0) {
        snprintf(err, errlen, "no fleet timings for profile %s", s_profile(cfg->profile));
        goto fail;
    }
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    self->fleet = fleet_new(&fc, agent_node_key(agent)->public_key, cfg->advertise, seed, s_now());
    if (!self->fleet)
        goto fail_mem;
    fleet_set_doc_reader(self->fleet, s_doc_read, self);

    executor_config_t ec;
    memset(&ec, 0, sizeof ec);
    ec.max_workers = cfg->workers;
    ec.log_dir = self->log_root;
    ec.pgid_dir = self->pgid_root;
    ec.on_done = s_stray_job;
    ec.on_done_arg = self;
    self->executor = executor_new(agent_loop(agent), &ec);
    if (!self->executor) {
        snprintf(err, errlen, "cannot start the step executor (%s)", self->pgid_root);
        goto fail;
    }
    runner_config_t rc = {.work_root = self->work_root, .log_root = self->log_root};
    self->runner = runner_new(agent_loop(agent), self->executor, &rc);
    if (!self->runner) {
        snprintf(err, errlen, "cannot start the step runner (work dir %s)", self->work_root);
        goto fail;
    }
    self->notify = notify_new(self->executor, agent_config(agent)->name);
    if (!self->notify)
        goto fail_mem;

    metrics_t *m = agent_metrics(agent);
    static const double buckets[] = {0.005, 0.05, 0.25, 1, 5, 30, 120, 600, 1800};
    metrics_histogram_describe(m, "gaggle_step_duration_seconds",
                               "Duration of a target's pipeline run on this node.", buckets,
                               sizeof buckets / sizeof buckets[0]);
    metrics_describe(m, "gaggle_step_retries_total", METRICS_COUNTER,
                     "Target attempts that failed and were scheduled again on this node.");

    s_restore(self);
    cluster_on_members_changed(cluster, s_members_changed, self);
    cluster_on_message(cluster, WIRE_PROGRESS, s_on_message, self);
    cluster_on_message(cluster, WIRE_DIGEST, s_on_message, self);
    cluster_on_message(cluster, WIRE_LEASE, s_on_message, self);
    cluster_on_message(cluster, WIRE_HAVE, s_on_message, self);
    cluster_on_message(cluster, WIRE_PLAN, s_on_message, self);
    cluster_on_audit(cluster, s_audit_hook, self);
    cluster_on_message(cluster, WIRE_LOG_REQ, s_on_log_req, self);
    cluster_on_message(cluster, WIRE_LOG_REP, s_on_log_rep, self);
    s_apply_members(self);
    self->ticker = zloop_timer(agent_loop(agent), 5, 0, s_ticker, self);
    if (self->ticker < 0) {
        snprintf(err, errlen, "cannot register the engine's timer");
        goto fail;
    }
    return self;
fail_mem:
    snprintf(err, errlen, "out of memory");
fail:
    engine_destroy(&self);
    return NULL;
}

void engine_destroy(engine_t **self_p)
{
    engine_t *self = *self_p;
    if (!self)
        return;
    if (self->ticker > 0)
        zloop_timer_end(agent_loop(self->agent), self->ticker);
    s_flush(self); /* nothing queued is lost at a clean stop */
    if (self->batch)
        store_batch_abort(&self->batch);
    runner_destroy(&self->runner);
    executor_destroy(&self->executor);
    notify_destroy(&self->notify);
    fleet_destroy(&self->fleet);
    for (size_t i = 0; i < self->n_plans; i++)
        s_plan_free(self->plans[i]);
    free(self->plans);
    free(self->retries);
    free(self->pending);
    for (size_t i = 0; i < self->n_deferred; i++)
        free(self->deferred[i].data);
    zhashx_destroy(&self->runs);
    zhashx_destroy(&self->log_cache);
    free(self);
    *self_p = NULL;
}

void engine_leave(engine_t *self)
{
    if (self->leaving)
        return;
    self->leaving = true;
    fleet_leave(self->fleet, s_now());
    s_drain(self);
}

bool engine_leave_done(engine_t *self)
{
    return !self->leaving || fleet_leave_done(self->fleet);
}

/* ---- queries ---- */

size_t engine_plan_count(engine_t *self)
{
    return self->n_plans;
}

const engine_plan_t *engine_plan_at(engine_t *self, size_t i)
{
    return i < self->n_plans ? &self->plans[i]->pub : NULL;
}

const engine_plan_t *engine_plan_find(engine_t *self, const char *key)
{
    size_t len = strlen(key);
    const engine_plan_t *found = NULL;
    for (size_t i = 0; i < self->n_plans; i++) {
        const engine_plan_t *p = &self->plans[i]->pub;
        if (strcmp(p->id_hex, key) == 0)
            return p;
        if ((len >= 6 && strncmp(p->id_hex, key, len) == 0) ||
            strcmp(plan_name(p->plan), key) == 0) {
            if (found && found != p) {
                /* Ambiguous: the newest plan of that name wins, prefixes must be unique. */
                if (strcmp(plan_name(p->plan), key) != 0)
                    return NULL;
            }
            found = p;
        }
    }
    return found;
}

int engine_plan_stats(engine_t *self, const engine_plan_t *p, fleet_plan_stats_t *out)
{
    return fleet_plan_stats(self->fleet, p->id, out);
}

const char *engine_plan_state(engine_t *self, const engine_plan_t *p)
{
    fleet_plan_stats_t st;
    if (p->control == FLEET_PLAN_CANCELLED)
        return "cancelled";
    if (fleet_plan_stats(self->fleet, p->id, &st) == 0 && st.completed)
        return "completed";
    if (p->control == FLEET_PLAN_PAUSED ||
        (fleet_plan_stats(self->fleet, p->id, &st) == 0 && st.auto_paused))
        return "paused";
    return "active";
}

const progress_rec_t *engine_record(engine_t *self, const engine_plan_t *p, uint32_t index)
{
    return fleet_record(self->fleet, p->id, index);
}

target_state_t engine_target_state(engine_t *self, const engine_plan_t *p, uint32_t index)
{
    const progress_rec_t *r = fleet_record(self->fleet, p->id, index);
    target_state_t s = r ? (target_state_t) r->state : TARGET_PENDING;
    if (p->control == FLEET_PLAN_CANCELLED && !target_state_terminal(s))
        return TARGET_CANCELLED;
    if (s == TARGET_PENDING && plan_target_needs_approval(p->plan, index)) {
        const s_plan_t *sp = (const s_plan_t *) p; /* pub is the first member */
        uint32_t quorum = plan_spec(p->plan)->quorum ? plan_spec(p->plan)->quorum : 1;
        if (sp->approvals[index] < quorum)
            return TARGET_AWAITING_APPROVAL;
    }
    return s;
}

const char *engine_node_name(engine_t *self, const uint8_t id[FLEET_ID_LEN])
{
    static const uint8_t zero[FLEET_ID_LEN];
    if (memcmp(id, zero, FLEET_ID_LEN) == 0)
        return NULL;
    const member_t *m = membership_find(cluster_membership(self->cluster), id);
    if (m)
        return m->name;
    const cert_t *c = transport_peer_cert(cluster_transport(self->cluster), id);
    return c ? c->name : NULL;
}

/* ---- mutations ---- */

int engine_submit_plan(engine_t *self, const char *body, size_t len, json_t **answer)
{
    uint8_t id[32], kind = 0;
    char err[512] = "";
    s_plan_t *p = NULL;
    int status = s_accept_doc(self, body, len, true, NULL, id, &kind, &p, err, sizeof err);
    if (status == 200 && kind != ENGINE_DOC_PLAN) {
        status = 400;
        snprintf(err, sizeof err, "the document is a command, not a plan");
    }
    if (status != 200) {
        *answer = json_pack("{s:s}", "error", err);
        return status;
    }
    /* A plan already held keeps the document it was indexed from: the same
     * payload in other bytes (spacing, key order) must not replace it. */
    bool have = fleet_doc_state(self->fleet, id) == FLEET_DOC_ACCEPTED;
    if (!have && s_doc_store(self, id, kind, body, len) != 0) {
        *answer =
            json_pack("{s:s}", "error", "the store could not keep the plan (disk or map full)");
        return 507;
    }
    if (!have)
        fleet_doc_add(self->fleet, s_now(), id, kind, (const uint8_t *) body, len);
    s_drain(self);
    *answer = json_pack("{s:s, s:s, s:I}", "id", p->pub.id_hex, "name", plan_name(p->pub.plan),
                        "total", (json_int_t) plan_target_count(p->pub.plan));
    return 200;
}

int engine_submit_command(engine_t *self, const engine_plan_t *p, const char *action,
                          const char *body, size_t len, json_t **answer)
{
    json_t *doc = NULL, *payload = NULL;
    char err[512] = "";
    int status = 400;
    /* The URL's action and plan must be the signed command's. */
    if (signed_parse(body, len, &doc) == 0 && (payload = json_object_get(doc, "payload")) != NULL) {
        const char *type = json_string_value(json_object_get(payload, "type"));
        const char *plan = json_string_value(json_object_get(payload, "plan"));
        if (!type || strcmp(type, action) != 0) {
            *answer =
                json_pack("{s:s}", "error", "the signed command does not match the URL's action");
            json_decref(doc);
            return 400;
        }
        if (!plan || strcmp(plan, p->id_hex) != 0) {
            *answer = json_pack("{s:s}", "error", "the signed command names another plan");
            json_decref(doc);
            return 400;
        }
    }
    json_decref(doc);
    uint8_t id[32], kind = 0;
    status = s_accept_doc(self, body, len, true, NULL, id, &kind, NULL, err, sizeof err);
    if (status == 200 && kind != ENGINE_DOC_COMMAND) {
        status = 400;
        snprintf(err, sizeof err, "the document is a plan, not a command");
    }
    if (status != 200) {
        *answer = json_pack("{s:s}", "error", err);
        return status;
    }
    if (s_doc_store(self, id, kind, body, len) != 0) {
        *answer = json_pack("{s:s}", "error", "the store could not keep the command");
        return 507;
    }
    fleet_doc_add(self->fleet, s_now(), id, kind, (const uint8_t *) body, len);
    s_drain(self);
    *answer = json_pack("{s:s, s:s, s:s}", "plan", p->id_hex, "action", action, "state",
                        engine_plan_state(self, p));
    return 200;
}

char *engine_local_log(engine_t *self, const engine_plan_t *p, uint32_t index, size_t *len)
{
    uint8_t key[36];
    s_target_key(p->id, index, key);
    void *val = NULL;
    size_t vlen = 0;
    if (store_get(agent_store(self->agent), STORE_DB_LOGS, key, sizeof key, &val, &vlen) != 0)
        return NULL;
    char *text = realloc(val, vlen + 1);
    if (!text) {
        free(val);
        return NULL;
    }
    text[vlen] = '\0';
    *len = vlen;
    return text;
}

/* Logs stay on the node that ran the target. LOG_REQ {p: plan id, i: index}
 * asks the holder; LOG_REP {p, i, log} answers to the asker's address; the
 * answer is cached (bounded) until the API serves it. */
#define LOG_REPLY_MAX (256u << 10)

int engine_fetch_log(engine_t *self, const engine_plan_t *p, uint32_t index)
{
    const progress_rec_t *r = fleet_record(self->fleet, p->id, index);
    if (!r)
        return GG_ENOTFOUND;
    const member_t *m = membership_find(cluster_membership(self->cluster), r->holder);
    if (!m || (m->state != MEMBER_ALIVE && m->state != MEMBER_SUSPECT))
        return GG_ENOTFOUND;
    wire_writer_t *w = wire_writer_new(WIRE_LOG_REQ, agent_node_key(self->agent)->public_key, 2);
    if (!w)
        return GG_ENOMEM;
    wire_put_bin(w, "p", p->id, FLEET_ID_LEN);
    wire_put_u64(w, "i", index);
    const uint8_t *data;
    size_t len;
    int rc = wire_writer_finish(w, &data, &len);
    if (rc == 0)
        rc = cluster_send(self->cluster, m->address, WIRE_LOG_REQ, data, len);
    wire_writer_destroy(&w);
    return rc;
}

static void s_on_log_req(void *arg, const transport_delivery_t *d)
{
    engine_t *self = arg;
    uint8_t plan[FLEET_ID_LEN];
    uint64_t index;
    if (wire_get_bin_exact(&d->msg->body, "p", plan, sizeof plan) != 0 ||
        wire_get_u64(&d->msg->body, "i", &index) != 0 || index > UINT32_MAX)
        return;
    s_plan_t *p = s_find_plan(self, plan);
    const member_t *asker = membership_find(cluster_membership(self->cluster), d->msg->sender);
    if (!p || !asker)
        return;
    size_t len = 0;
    char *text = engine_local_log(self, &p->pub, (uint32_t) index, &len);
    const char *body = text ? text : "";
    if (len > LOG_REPLY_MAX) {
        body += len - LOG_REPLY_MAX;
        len = LOG_REPLY_MAX;
    }
    wire_writer_t *w = wire_writer_new(WIRE_LOG_REP, agent_node_key(self->agent)->public_key, 4);
    if (w) {
        wire_put_bin(w, "p", plan, FLEET_ID_LEN);
        wire_put_u64(w, "i", index);
        wire_put_bool(w, "found", text != NULL);
        wire_put_bin(w, "log", body, len);
        const uint8_t *data;
        size_t dlen;
        if (wire_writer_finish(w, &data, &dlen) == 0)
            cluster_send(self->cluster, asker->address, WIRE_LOG_REP, data, dlen);
        wire_writer_destroy(&w);
    }
    free(text);
}

static void s_on_log_rep(void *arg, const transport_delivery_t *d)
{
    engine_t *self = arg;
    uint8_t plan[FLEET_ID_LEN];
    uint64_t index;
    const uint8_t *log;
    size_t len;
    if (wire_get_bin_exact(&d->msg->body, "p", plan, sizeof plan) != 0 ||
        wire_get_u64(&d->msg->body, "i", &index) != 0 || index > UINT32_MAX ||
        wire_get_bin(&d->msg->body, "log", &log, &len, LOG_REPLY_MAX) != 0)
        return;
    s_plan_t *p = s_find_plan(self, plan);
    if (!p)
        return;
    char *text = malloc(len + 1);
    if (!text)
        return;
    memcpy(text, log, len);
    text[len] = '\0';
    char key[48];
    s_run_key(p, (uint32_t) index, key, sizeof key);
    if (zhashx_size(self->log_cache) >= LOG_CACHE_MAX && !zhashx_lookup(self->log_cache, key))
        zhashx_purge(self->log_cache);
    zhashx_update(self->log_cache, key, text);
}

char *engine_cached_log(engine_t *self, const engine_plan_t *p, uint32_t index, size_t *len)
{
    char key[48];
    s_run_key((const s_plan_t *) p, index, key, sizeof key);
    const char *text = zhashx_lookup(self->log_cache, key);
    if (!text)
        return NULL;
    *len = strlen(text);
    return strdup(text);
}

typedef struct {
    json_t *list;
    size_t limit;
} s_audit_walk_t;

static int s_audit_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_audit_walk_t *w = arg;
    if (json_array_size(w->list) >= w->limit)
        return 1;
    json_t *e = json_loadb(val, vlen, 0, NULL);
    if (e)
        json_array_append_new(w->list, e);
    return 0;
}

json_t *engine_audit_json(engine_t *self, size_t limit)
{
    s_audit_walk_t w = {json_array(), limit ? limit : AUDIT_LIMIT_DEFAULT};
    if (store_scan(agent_store(self->agent), STORE_DB_AUDIT, NULL, 0, s_audit_visit, &w) != 0)
        gg_warn("engine: cannot read the audit trail");
    return json_pack("{s:o}", "entries", w.list);
}

bool engine_fleet_synced(engine_t *self)
{
    return self && fleet_synced(self->fleet);
}

uint64_t engine_held_by(engine_t *self, const uint8_t id[FLEET_ID_LEN], uint64_t limit)
{
    uint64_t held = 0;
    for (size_t i = 0; i < self->n_plans && held < limit; i++) {
        const s_plan_t *p = self->plans[i];
        fleet_plan_stats_t st;
        if (fleet_plan_stats(self->fleet, p->pub.id, &st) != 0 || st.completed ||
            st.counts[TARGET_RUNNING] + st.counts[TARGET_RETRY_WAIT] == 0)
            continue;
        size_t n = plan_target_count(p->pub.plan);
        for (size_t t = 0; t < n && held < limit; t++) {
            const progress_rec_t *r = fleet_record(self->fleet, p->pub.id, (uint32_t) t);
            if (r && (r->state == TARGET_RUNNING || r->state == TARGET_RETRY_WAIT) &&
                !memcmp(r->holder, id, FLEET_ID_LEN))
                held++;
        }
    }
    return held;
}

json_t *engine_counts_json(const fleet_plan_stats_t *st)
{
    json_t *counts = json_object();
    for (int s = 0; counts && s < TARGET_STATE_COUNT; s++)
        if (json_object_set_new(counts, target_state_name((target_state_t) s),
                                json_integer((json_int_t) st->counts[s])) != 0) {
            json_decref(counts);
            return NULL;
        }
    return counts;
}

executor_t *engine_executor(engine_t *self)
{
    return self->executor;
}

const notify_stats_t *engine_notify_stats(engine_t *self)
{
    return notify_stats(self->notify);
}

const fleet_stats_t *engine_fleet_stats(engine_t *self)
{
    return fleet_stats(self->fleet);
}
