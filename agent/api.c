/*
 * api.c: the plan-facing HTTP API, /v1/status, the dashboard route and the
 * fleet-progress metrics (see api.h).
 *
 * Everything here is a thin view over the engine: handlers look a plan up
 * (engine_plan_find: id, unique prefix or name), read its replicated stats
 * and records, and shape JSON; mutations hand the signed body to the engine,
 * which verifies, applies, stores and replicates it. The exceptions are the
 * node commands: drain acts on this node's membership flag (a drain of
 * another node is relayed to that node, which verifies it again: 202),
 * force-leave on the membership view; both verify the operator signature
 * first.
 *
 * Text that came from peers or child processes (a record's error, a step's
 * log) may hold invalid UTF-8; it is cleaned before it becomes a JSON string.
 * Every list is bounded (API_* in api.h); a scan over a plan's targets is in
 * memory and linear in its size (at most FLEET_MAX_TARGETS).
 */
#include "api.h"

#include "agent.h"
#include "cluster.h"
#include "gg_error.h"
#include "gg_log.h"
#include "signed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define S_PLANS_PREFIX "/v1/plans/"
#define S_NODES_PREFIX "/v1/nodes/"
#define S_ID_MAX       512 /* bytes of an ID or NAME in a path */

static struct {
    bool ready;
    agent_t *agent;
    engine_t *engine;
    cluster_t *cluster;
    uint8_t self_id[FLEET_ID_LEN];
} s_api;

/* ---- small helpers ---- */

static uint64_t s_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t) tv.tv_sec * 1000 + (uint64_t) tv.tv_usec / 1000;
}

/* Strict decimal in [0, max]. */
static int s_parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!text || !*text || strlen(text) > 20)
        return GG_EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return GG_EINVAL;
        uint64_t d = (uint64_t) (*p - '0');
        if (v > (max - d) / 10)
            return GG_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string from arbitrary bytes: invalid UTF-8 and NUL bytes become
 * '?'. NULL only when out of memory. */
static json_t *s_text(const char *data, size_t len)
{
    const unsigned char *s = (const unsigned char *) data;
    size_t i = 0;
    while (i < len) {
        size_t k = s[i] ? s_utf8_seq(s + i, len - i) : 0;
        if (!k)
            break;
        i += k;
    }
    if (i == len)
        return json_stringn(data, len);
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, data, len);
    while (i < len) {
        size_t k = s[i] ? s_utf8_seq(s + i, len - i) : 0;
        if (!k) {
            copy[i++] = '?';
            continue;
        }
        i += k;
    }
    json_t *v = json_stringn(copy, len);
    free(copy);
    return v;
}

/* {"error": message}, with the message made valid UTF-8 first (it may
 * quote a path or query, cut at a byte bound). */
static int s_error(http_response_t *resp, int status, const char *message)
{
    json_t *text = s_text(message, strlen(message));
    if (!text)
        return GG_ENOMEM;
    return http_respond_json(resp, status, json_pack("{s:o}", "error", text));
}

/* A string, or null when empty/NULL. */
static json_t *s_opt_text(const char *text)
{
    if (!text || !*text)
        return json_null();
    return s_text(text, strlen(text));
}

static bool s_id_zero(const uint8_t id[FLEET_ID_LEN])
{
    for (size_t i = 0; i < FLEET_ID_LEN; i++)
        if (id[i])
            return false;
    return true;
}

/* The name of a record's holder: its node name, else its id in hex (into
 * buf), or NULL when never claimed. */
static const char *s_holder_name(const progress_rec_t *rec, char buf[FLEET_ID_LEN * 2 + 1])
{
    if (!rec || s_id_zero(rec->holder))
        return NULL;
    const char *name = engine_node_name(s_api.engine, rec->holder);
    if (name && *name)
        return name;
    signed_hex_encode(rec->holder, FLEET_ID_LEN, buf);
    return buf;
}

static int s_not_ready(http_response_t *resp)
{
    return s_error(resp, 503, "the agent is still starting: try again shortly");
}

static const engine_plan_t *s_find_plan(const char *id, http_response_t *resp)
{
    const engine_plan_t *p = engine_plan_find(s_api.engine, id);
    if (!p) {
        char msg[S_ID_MAX + 64];
        snprintf(msg, sizeof msg, "no plan '%.*s' (give its id, a unique id prefix or its name)",
                 100, id);
        s_error(resp, 404, msg);
    }
    return p;
}

/* ---- plan summaries ---- */

static uint32_t s_terminal(const fleet_plan_stats_t *st)
{
    uint32_t n = 0;
    for (int s = 0; s < TARGET_STATE_COUNT; s++)
        if (target_state_terminal((target_state_t) s))
            n += st->counts[s];
    return n;
}

static double s_ratio(const fleet_plan_stats_t *st)
{
    if (st->total == 0)
        return st->completed ? 1.0 : 0.0;
    double r = (double) s_terminal(st) / (double) st->total;
    return r > 1.0 ? 1.0 : r;
}

/* {"id","name","state","total","counts","progress","completed",...}; with
 * detail also the plan's facts. NULL when out of memory or the stats fail. */
static json_t *s_plan_json(const engine_plan_t *p, bool detail)
{
    fleet_plan_stats_t st;
    char stamp[32] = "";
    memset(&st, 0, sizeof st);
    if (engine_plan_stats(s_api.engine, p, &st) != 0)
        return NULL;
    const char *state = engine_plan_state(s_api.engine, p);
    const plan_spec_t *spec = plan_spec(p->plan);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:o, s:f, s:b, s:I}", "id", p->id_hex, "name",
                  plan_name(p->plan), "state", state ? state : "active", "total",
                  (json_int_t) st.total, "counts", engine_counts_json(&st), "progress",
                  s_ratio(&st), "completed", st.completed, "done", (json_int_t) s_terminal(&st));
    if (!o)
        return NULL;
    if (state && !strcmp(state, "paused"))
        json_object_set_new(o, "paused_reason",
                            json_string(p->control == FLEET_PLAN_PAUSED ? "operator"
                                        : st.auto_paused                ? "maxFailureRatio"
                                                                        : "unknown"));
    if (p->accepted_ms) {
        time_t t = (time_t) (p->accepted_ms / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm) && strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm))
            json_object_set_new(o, "accepted", json_string(stamp));
    }
    if (detail && spec) {
        json_object_set_new(o, "owner", s_opt_text(spec->owner));
        json_object_set_new(o, "description", s_opt_text(spec->description));
        json_object_set_new(o, "dataset",
                            json_pack("{s:o, s:o}", "from", s_opt_text(spec->dataset_from), "to",
                                      s_opt_text(spec->dataset_to)));
        json_object_set_new(o, "running_here", json_integer((json_int_t) st.running_here));
    }
    return o;
}

static json_t *s_plans_array(void)
{
    json_t *arr = json_array();
    size_t n = engine_plan_count(s_api.engine);
    for (size_t i = 0; arr && i < n; i++) {
        const engine_plan_t *p = engine_plan_at(s_api.engine, i);
        if (!p)
            continue;
        if (json_array_append_new(arr, s_plan_json(p, false)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* ---- one target ---- */

static json_t *s_target_json(const engine_plan_t *p, uint32_t i)
{
    char hex[FLEET_ID_LEN * 2 + 1];
    const char *ref = plan_target_ref(p->plan, i);
    const progress_rec_t *rec = engine_record(s_api.engine, p, i);
    target_state_t st = engine_target_state(s_api.engine, p, i);
    if (!ref)
        return NULL;
    const char *node = s_holder_name(rec, hex);
    return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:I, s:I}", "ref", ref, "state",
                     target_state_name(st), "attempt", (json_int_t) (rec ? rec->attempt : 0),
                     "epoch", (json_int_t) (rec ? rec->epoch : 0), "node", s_opt_text(node),
                     "error", s_opt_text(rec ? rec->error : NULL), "index", (json_int_t) i,
                     "duration_ms", (json_int_t) (rec ? rec->duration_ms : 0));
}

/* ---- GET /v1/plans and POST /v1/plans ---- */

static int s_get_plans(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void) arg;
    (void) req;
    if (!s_api.ready)
        return s_not_ready(resp);
    json_t *arr = s_plans_array();
    if (!arr)
        return GG_ENOMEM;
    return http_respond_json(resp, 200, json_pack("{s:o}", "plans", arr));
}

/* Answers with the engine's status and JSON (or a 500 when it gave none). */
static int s_engine_answer(http_response_t *resp, int status, json_t *answer)
{
    if (!answer)
        return s_error(resp, status >= 400 ? status : 500,
                       "the agent could not process the request");
    if (status < 100 || status > 599)
        status = 500;
    return http_respond_json(resp, status, answer);
}

static int s_post_plans(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void) arg;
    if (!s_api.ready)
        return s_not_ready(resp);
    if (req->body_len == 0)
        return s_error(resp, 400, "the body must be a signed plan");
    json_t *answer = NULL;
    int status = engine_submit_plan(s_api.engine, req->body, req->body_len, &answer);
    return s_engine_answer(resp, status, answer);
}

/* ---- GET /v1/plans/ID[/targets|/log|/report] ---- */

static int s_get_targets(const engine_plan_t *p, const http_request_t *req, http_response_t *resp)
{
    const char *state_q = http_request_query(req, "state");
    const char *limit_q = http_request_query(req, "limit");
    const char *cursor_q = http_request_query(req, "cursor");
    size_t total = plan_target_count(p->plan);
    target_state_t want = TARGET_PENDING;
    uint64_t limit = API_TARGETS_LIMIT, cursor = 0;
    char msg[200];
    if (state_q && *state_q && target_state_parse(state_q, &want) != 0) {
        snprintf(msg, sizeof msg,
                 "unknown target state '%.40s' (pending, awaiting_approval, running, "
                 "retry_wait, succeeded, skipped, needs_review, failed, cancelled)",
                 state_q);
        return s_error(resp, 400, msg);
    }
    bool filter = state_q && *state_q;
    if (limit_q && (s_parse_u64(limit_q, API_TARGETS_LIMIT_MAX, &limit) != 0 || limit == 0)) {
        snprintf(msg, sizeof msg, "limit must be a number from 1 to %u", API_TARGETS_LIMIT_MAX);
        return s_error(resp, 400, msg);
    }
    if (cursor_q && (s_parse_u64(cursor_q, total, &cursor) != 0))
        return s_error(resp, 400, "the cursor is not one this plan gave");
    json_t *arr = json_array();
    if (!arr)
        return GG_ENOMEM;
    size_t i = (size_t) cursor;
    for (; i < total && json_array_size(arr) < limit; i++) {
        if (filter && engine_target_state(s_api.engine, p, (uint32_t) i) != want)
            continue;
        if (json_array_append_new(arr, s_target_json(p, (uint32_t) i)) != 0) {
            json_decref(arr);
            return GG_ENOMEM;
        }
    }
    /* The next cursor is the next matching target, so null means no more. */
    while (filter && i < total && engine_target_state(s_api.engine, p, (uint32_t) i) != want)
        i++;
    json_t *next = json_null();
    if (i < total) {
        char buf[24];
        snprintf(buf, sizeof buf, "%zu", i);
        next = json_string(buf);
    }
    return http_respond_json(
        resp, 200,
        json_pack("{s:o, s:o, s:I}", "targets", arr, "next", next, "total", (json_int_t) total));
}

static int s_get_log(const engine_plan_t *p, const http_request_t *req, http_response_t *resp)
{
    const char *ref = http_request_query(req, "target");
    char msg[400], hex[FLEET_ID_LEN * 2 + 1];
    if (!ref || !*ref)
        return s_error(resp, 400, "which target? give ?target=REF");
    long idx = plan_find_target(p->plan, ref);
    if (idx < 0) {
        snprintf(msg, sizeof msg, "plan %s has no target '%.200s'", plan_name(p->plan), ref);
        return s_error(resp, 404, msg);
    }
    const char *tref = plan_target_ref(p->plan, (size_t) idx);
    const progress_rec_t *rec = engine_record(s_api.engine, p, (uint32_t) idx);
    const char *holder = s_holder_name(rec, hex);
    const char *node = NULL;
    size_t len = 0;
    const char *self_name = agent_config(s_api.agent)->name;
    bool mine = !holder || !memcmp(rec->holder, s_api.self_id, FLEET_ID_LEN);
    char *log = NULL;
    if (mine) {
        /* Run here (or never run: an empty log). */
        log = engine_local_log(s_api.engine, p, (uint32_t) idx, &len);
        node = holder ? self_name : NULL;
    } else if ((log = engine_cached_log(s_api.engine, p, (uint32_t) idx, &len)) != NULL) {
        node = holder;
    } else {
        int rc = engine_fetch_log(s_api.engine, p, (uint32_t) idx);
        if (rc == 0)
            return http_respond_json(
                resp, 202,
                json_pack("{s:s, s:s, s:s}", "status", "fetching", "target", tref, "node", holder));
        /* The holder cannot be asked: an earlier attempt's output kept here
         * is better than nothing. */
        if ((log = engine_local_log(s_api.engine, p, (uint32_t) idx, &len)) != NULL) {
            node = self_name;
        } else {
            snprintf(msg, sizeof msg,
                     "the log of %.200s is on node %.64s, which cannot be asked now (%s)", tref,
                     holder, gg_strerror(rc));
            return s_error(resp, 503, msg);
        }
    }
    size_t from = 0;
    if (log && len > API_LOG_MAX)
        from = len - API_LOG_MAX; /* keep the tail: the end is what explains a failure */
    json_t *text = log ? s_text(log + from, len - from) : json_string("");
    free(log);
    if (!text)
        return GG_ENOMEM;
    return http_respond_json(
        resp, 200,
        json_pack("{s:s, s:o, s:o, s:s, s:b}", "target", tref, "node", s_opt_text(node), "log",
                  text, "state",
                  target_state_name(engine_target_state(s_api.engine, p, (uint32_t) idx)),
                  "truncated", from > 0));
}

static int s_get_report(const engine_plan_t *p, const http_request_t *req, http_response_t *resp)
{
    const char *format = http_request_query(req, "format");
    report_input_t in;
    json_t *doc = NULL;
    char *md = NULL;
    size_t len = 0;
    bool markdown = false;
    if (format && *format) {
        if (!strcmp(format, "md") || !strcmp(format, "markdown"))
            markdown = true;
        else if (strcmp(format, "json") != 0)
            return s_error(resp, 400, "format must be md or json");
    }
    int rc = api_report_input(s_api.engine, p, &in);
    if (rc)
        return rc;
    rc = report_json(&in, &doc);
    api_report_input_free(&in);
    if (rc)
        return rc;
    if (!markdown)
        return http_respond_json(resp, 200, doc);
    rc = report_markdown(doc, &md, &len);
    json_decref(doc);
    if (rc)
        return rc;
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/markdown; charset=utf-8";
    resp->body = md;
    resp->body_len = len;
    return 0;
}

/* Splits "ID/sub" (after the prefix) into id and sub ("" when absent).
 * Returns false for an empty id, a nested path or an over-long id. */
static bool s_split(const char *rest, char id[S_ID_MAX + 1], const char **sub)
{
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t) (slash - rest) : strlen(rest);
    if (n == 0 || n > S_ID_MAX)
        return false;
    memcpy(id, rest, n);
    id[n] = '\0';
    *sub = slash ? slash + 1 : "";
    return strchr(*sub, '/') == NULL;
}

static int s_get_plan_path(void *arg, const http_request_t *req, http_response_t *resp)
{
    char id[S_ID_MAX + 1];
    const char *sub;
    (void) arg;
    if (!s_api.ready)
        return s_not_ready(resp);
    if (!s_split(req->path + strlen(S_PLANS_PREFIX), id, &sub))
        return s_error(resp, 404, "no such resource under /v1/plans/");
    if (*sub && strcmp(sub, "targets") && strcmp(sub, "log") && strcmp(sub, "report"))
        return s_error(resp, 404, "no such resource under /v1/plans/ID/");
    const engine_plan_t *p = s_find_plan(id, resp);
    if (!p)
        return 0;
    if (!strcmp(sub, "targets"))
        return s_get_targets(p, req, resp);
    if (!strcmp(sub, "log"))
        return s_get_log(p, req, resp);
    if (!strcmp(sub, "report"))
        return s_get_report(p, req, resp);
    json_t *o = s_plan_json(p, true);
    if (!o)
        return GG_ENOMEM;
    return http_respond_json(resp, 200, o);
}

/* ---- POST /v1/plans/ID/ACTION ---- */

static const char *const s_actions[] = {"pause", "resume", "cancel", "retry", "approve", "mark"};

static int s_post_plan_path(void *arg, const http_request_t *req, http_response_t *resp)
{
    char id[S_ID_MAX + 1];
    const char *sub;
    (void) arg;
    if (!s_api.ready)
        return s_not_ready(resp);
    if (!s_split(req->path + strlen(S_PLANS_PREFIX), id, &sub) || !*sub)
        return s_error(resp, 404, "POST /v1/plans/ID/ACTION: no such action");
    bool known = false;
    for (size_t i = 0; i < sizeof s_actions / sizeof s_actions[0]; i++)
        known = known || !strcmp(sub, s_actions[i]);
    if (!known)
        return s_error(resp, 404, "no such action (pause, resume, cancel, retry, approve or mark)");
    const engine_plan_t *p = s_find_plan(id, resp);
    if (!p)
        return 0;
    if (req->body_len == 0)
        return s_error(resp, 400, "the body must be a signed operator command");
    json_t *answer = NULL;
    int status = engine_submit_command(s_api.engine, p, sub, req->body, req->body_len, &answer);
    return s_engine_answer(resp, status, answer);
}

/* ---- POST /v1/nodes/NAME/{drain,force-leave} ---- */

/* Verifies a signed node command of `type` for node `name`. Returns 0, or
 * an HTTP status with the sentence in msg. */
static int s_verify_node_command(const http_request_t *req, const char *type, const char *name,
                                 uint8_t signer[CERT_PUBLIC_LEN], uint64_t *issued_ms, char *msg,
                                 size_t msglen)
{
    json_t *doc = NULL, *payload = NULL;
    signed_command_t cmd;
    char err[256] = "";
    int status = 400;
    if (req->body_len == 0) {
        snprintf(msg, msglen, "the body must be a signed %s command", type);
        return 400;
    }
    if (signed_parse(req->body, req->body_len, &doc) != 0) {
        snprintf(msg, msglen, "the body is not a signed document");
        goto out;
    }
    if (!json_object_get(doc, "signature")) {
        snprintf(msg, msglen, "the command is not signed (use --key or GAGGLE_KEY)");
        status = 401;
        goto out;
    }
    int rc = signed_verify(doc, agent_trust(s_api.agent), &payload, signer);
    if (rc) {
        status = rc == GG_EPERM ? 403 : rc == GG_ECRYPTO ? 401 : 400;
        snprintf(msg, msglen, "%s",
                 rc == GG_EPERM     ? "the command is not signed by a trusted operator key"
                 : rc == GG_ECRYPTO ? "the command's signature does not verify"
                                    : "the body is not a signed document");
        goto out;
    }
    if (signed_command_check(payload, &cmd, err, sizeof err) != 0) {
        snprintf(msg, msglen, "malformed command: %.200s", err[0] ? err : "bad fields");
        goto out;
    }
    if (strcmp(cmd.type, type) != 0 || !cmd.node || strcmp(cmd.node, name) != 0) {
        snprintf(msg, msglen, "the signed command is not a %s of node %.64s", type, name);
        goto out;
    }
    uint64_t now = (uint64_t) time(NULL);
    uint64_t issued = cmd.issued / 1000; /* milliseconds */
    if (issued + API_COMMAND_SKEW_S < now || issued > now + API_COMMAND_SKEW_S) {
        snprintf(msg, msglen,
                 "the command was issued too long ago or in the future (check the clocks)");
        status = 403;
        goto out;
    }
    *issued_ms = cmd.issued;
    status = 0;
out:
    json_decref(doc);
    return status;
}

static int s_force_leave(const char *name, http_response_t *resp, const uint8_t signer[32],
                         uint64_t issued)
{
    membership_t *m = cluster_membership(s_api.cluster);
    uint8_t key[FLEET_ID_LEN];
    bool by_key = strlen(name) == FLEET_ID_LEN * 2 && signed_hex_decode(name, key, sizeof key) == 0;
    int done = 0, busy = 0, self = 0;
    char msg[200];
    /* Members may share a name across keys (a node rebuilt with a new key):
     * each one by that name is asked to leave. */
    for (size_t i = 0; i < membership_size(m); i++) {
        const member_t *mb = membership_at(m, i);
        if (!mb || (by_key ? memcmp(mb->id, key, FLEET_ID_LEN) : strcmp(mb->name, name)))
            continue;
        uint8_t id[FLEET_ID_LEN];
        memcpy(id, mb->id, sizeof id);
        int rc = membership_force_leave(m, cluster_now_ms(), id);
        if (rc == 0)
            done++;
        else if (rc == GG_EBUSY)
            busy++;
        else if (rc == GG_EINVAL)
            self++;
    }
    if (done) {
        gg_warn("api: node %s forced to leave by an operator", name);
        engine_audit_node(s_api.engine, "force-leave", name, signer, issued);
        return http_respond_json(resp, 200, json_pack("{s:s, s:s}", "node", name, "state", "left"));
    }
    if (busy) {
        snprintf(msg, sizeof msg,
                 "node %.64s is alive or suspect: only a dead node can be forced to leave", name);
        return s_error(resp, 409, msg);
    }
    if (self)
        return s_error(resp, 409, "a node cannot force itself to leave (stop it with SIGTERM)");
    snprintf(msg, sizeof msg, "no member named %.64s", name);
    return s_error(resp, 404, msg);
}

static int s_post_node_path(void *arg, const http_request_t *req, http_response_t *resp)
{
    char name[S_ID_MAX + 1], msg[300];
    const char *sub;
    (void) arg;
    if (!s_api.ready)
        return s_not_ready(resp);
    if (!s_split(req->path + strlen(S_NODES_PREFIX), name, &sub) ||
        (strcmp(sub, "drain") && strcmp(sub, "force-leave")))
        return s_error(resp, 404, "POST /v1/nodes/NAME/drain or /force-leave");
    uint8_t signer[CERT_PUBLIC_LEN];
    uint64_t issued = 0;
    int status = s_verify_node_command(req, sub, name, signer, &issued, msg, sizeof msg);
    if (status)
        return s_error(resp, status, msg);
    if (!strcmp(sub, "force-leave"))
        return s_force_leave(name, resp, signer, issued);
    if (strcmp(name, agent_config(s_api.agent)->name) != 0) {
        /* Another node: relayed to it, which verifies the command again. */
        int rc = cluster_relay_command(s_api.cluster, name, req->body, req->body_len);
        if (rc == GG_ENOTFOUND) {
            snprintf(msg, sizeof msg, "no member named %.64s", name);
            return s_error(resp, 404, msg);
        }
        if (rc == GG_EBUSY) {
            snprintf(msg, sizeof msg, "node %.64s is dead or has left: it cannot drain", name);
            return s_error(resp, 409, msg);
        }
        if (rc) {
            snprintf(msg, sizeof msg, "cannot relay the drain to %.64s: %s", name, gg_strerror(rc));
            return s_error(resp, 500, msg);
        }
        gg_info("api: drain of %s relayed to it", name);
        engine_audit_node(s_api.engine, "drain", name, signer, issued);
        return http_respond_json(
            resp, 202, json_pack("{s:s, s:b, s:b}", "node", name, "draining", 1, "relayed", 1));
    }
    int rc = cluster_set_draining(s_api.cluster, true);
    if (rc) {
        snprintf(msg, sizeof msg, "cannot drain this node: %s", gg_strerror(rc));
        return s_error(resp, 409, msg);
    }
    gg_warn("api: this node is draining (operator command): it takes no new targets");
    engine_audit_node(s_api.engine, "drain", name, signer, issued);
    return http_respond_json(resp, 200, json_pack("{s:s, s:b}", "node", name, "draining", 1));
}

/* ---- GET /v1/audit ---- */

static int s_get_audit(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void) arg;
    uint64_t limit = API_AUDIT_MAX;
    const char *limit_q = http_request_query(req, "limit");
    if (!s_api.ready)
        return s_not_ready(resp);
    if (limit_q && (s_parse_u64(limit_q, API_AUDIT_MAX, &limit) != 0 || limit == 0))
        return s_error(resp, 400, "limit must be a number from 1 to 10000");
    json_t *audit = engine_audit_json(s_api.engine, (size_t) limit);
    if (!audit)
        return GG_ENOMEM;
    return http_respond_json(resp, 200, audit);
}

/* ---- GET /v1/status ---- */

static bool s_needs_human(target_state_t st)
{
    return st == TARGET_NEEDS_REVIEW || st == TARGET_FAILED || st == TARGET_AWAITING_APPROVAL;
}

/* Appends up to the bound; returns the number of such targets in all plans. */
static size_t s_needs_human_list(json_t *arr)
{
    size_t total = 0;
    size_t n = engine_plan_count(s_api.engine);
    for (size_t i = 0; i < n; i++) {
        const engine_plan_t *p = engine_plan_at(s_api.engine, i);
        fleet_plan_stats_t st;
        if (!p || engine_plan_stats(s_api.engine, p, &st) != 0)
            continue;
        const char *pstate = engine_plan_state(s_api.engine, p);
        if (pstate && !strcmp(pstate, "cancelled"))
            continue;
        uint32_t want = st.counts[TARGET_NEEDS_REVIEW] + st.counts[TARGET_FAILED] +
                        st.counts[TARGET_AWAITING_APPROVAL];
        total += want;
        if (json_array_size(arr) >= API_NEEDS_HUMAN_MAX)
            continue;
        size_t count = plan_target_count(p->plan);
        for (size_t t = 0; t < count && want && json_array_size(arr) < API_NEEDS_HUMAN_MAX; t++) {
            target_state_t ts = engine_target_state(s_api.engine, p, (uint32_t) t);
            if (!s_needs_human(ts))
                continue;
            want--;
            const progress_rec_t *rec = engine_record(s_api.engine, p, (uint32_t) t);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:o}", "plan",
                                                 plan_name(p->plan), "plan_id", p->id_hex, "ref",
                                                 plan_target_ref(p->plan, t), "state",
                                                 target_state_name(ts), "error",
                                                 s_opt_text(rec ? rec->error : NULL)));
        }
    }
    return total;
}

int api_get_status(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void) arg;
    (void) req;
    if (!s_api.ready)
        return s_not_ready(resp);
    const config_t *cfg = agent_config(s_api.agent);
    json_t *members_doc = cluster_members_json(s_api.cluster);
    json_t *members = json_object_get(members_doc, "members");
    json_t *plans = s_plans_array();
    json_t *needs = json_array();
    json_t *body = NULL;
    if (!members || !plans || !needs)
        goto fail;
    size_t needs_total = s_needs_human_list(needs);
    body = json_pack("{s:{s:s, s:s, s:s?, s:s}, s:O, s:O, s:O, s:I}", "node", "name", cfg->name,
                     "id", agent_node_id(s_api.agent), "address", cfg->advertise, "version",
                     GAGGLE_VERSION, "members", members, "plans", plans, "needs_human", needs,
                     "needs_human_total", (json_int_t) needs_total);
    if (!body)
        goto fail;
    json_decref(members_doc);
    json_decref(plans);
    json_decref(needs);
    return http_respond_json(resp, 200, body);
fail:
    json_decref(members_doc);
    json_decref(plans);
    json_decref(needs);
    return GG_ENOMEM;
}

/* ---- GET / ---- */

int api_get_index(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void) arg;
    (void) req;
    char *html = NULL;
    size_t len = 0;
    if (!s_api.ready)
        return s_not_ready(resp);
    int rc =
        dashboard_render(agent_config(s_api.agent)->name, agent_node_id(s_api.agent), &html, &len);
    if (rc)
        return rc;
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/html; charset=utf-8";
    resp->body = html;
    resp->body_len = len;
    return 0;
}

/* ---- reports ---- */

int api_report_input(engine_t *engine, const engine_plan_t *p, report_input_t *in)
{
    memset(in, 0, sizeof *in);
    const plan_spec_t *spec = plan_spec(p->plan);
    size_t n = plan_target_count(p->plan);
    /* One block: the targets, then a hex id per target for unnamed holders. */
    size_t hexlen = FLEET_ID_LEN * 2 + 1;
    if (n > REPORT_TARGETS_MAX)
        return GG_ETOOBIG;
    report_target_t *targets = calloc(1, n * (sizeof *targets + hexlen) + 1);
    if (!targets)
        return GG_ENOMEM;
    char *hexes = (char *) (targets + n);
    for (size_t i = 0; i < n; i++) {
        const char *ref = plan_target_ref(p->plan, i);
        const progress_rec_t *rec = engine_record(engine, p, (uint32_t) i);
        report_target_t *r = &targets[i];
        r->ref = ref ? ref : "?";
        r->state = target_state_name(engine_target_state(engine, p, (uint32_t) i));
        if (rec) {
            r->attempts = rec->attempt;
            r->epoch = rec->epoch;
            r->duration_ms = rec->duration_ms;
            r->error = rec->error;
            r->started_ms = rec->started_ms;
            r->finished_ms = rec->finished_ms;
            if (!s_id_zero(rec->holder)) {
                const char *name = engine_node_name(engine, rec->holder);
                if (name && *name) {
                    r->node = name;
                } else {
                    signed_hex_encode(rec->holder, FLEET_ID_LEN, hexes + i * hexlen);
                    r->node = hexes + i * hexlen;
                }
            }
        }
    }
    in->id = p->id_hex;
    in->name = plan_name(p->plan);
    in->owner = spec ? spec->owner : NULL;
    in->description = spec ? spec->description : NULL;
    in->state = engine_plan_state(engine, p);
    in->dataset_from = spec ? spec->dataset_from : NULL;
    in->dataset_to = spec ? spec->dataset_to : NULL;
    in->generated_ms = s_wall_ms();
    in->targets = targets;
    in->target_count = n;
    return 0;
}

void api_report_input_free(report_input_t *in)
{
    if (!in)
        return;
    free((void *) in->targets);
    memset(in, 0, sizeof *in);
}

/* Writes data to path through path.tmp and a rename. */
static int s_write_file(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    int fd = -1, rc = GG_EIO;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp) {
        snprintf(err, errlen, "report path too long: %.200s", path);
        return GG_EINVAL;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %.200s: %s", tmp, strerror(errno));
        return GG_EIO;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "cannot write %.200s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t) w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "cannot write %.200s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %.200s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(tmp);
    return rc;
}

int api_report_write(engine_t *engine, const engine_plan_t *p, const char *dir, char *err,
                     size_t errlen)
{
    report_input_t in;
    json_t *doc = NULL;
    char *md = NULL, *js = NULL, base[128], path[4096];
    size_t mdlen = 0;
    int rc;
    if (!engine || !p || !dir || !*dir) {
        snprintf(err, errlen, "no report folder");
        return GG_EINVAL;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %.200s: %s", dir, strerror(errno));
        return GG_EIO;
    }
    /* Plan names are validated; still keep the file name to safe characters. */
    const char *name = plan_name(p->plan);
    size_t k = 0;
    for (; name && name[k] && k < 64; k++) {
        char c = name[k];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && k > 0);
        base[k] = ok ? c : '_';
    }
    snprintf(base + k, sizeof base - k, "-%.12s", p->id_hex);
    if ((rc = api_report_input(engine, p, &in)) != 0) {
        snprintf(err, errlen, "cannot build the report: %s", gg_strerror(rc));
        return rc;
    }
    rc = report_json(&in, &doc);
    api_report_input_free(&in);
    if (rc == 0)
        rc = report_markdown(doc, &md, &mdlen);
    if (rc == 0 && !(js = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS)))
        rc = GG_ENOMEM;
    if (rc) {
        snprintf(err, errlen, "cannot render the report: %s", gg_strerror(rc));
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s.md", dir, base);
    if ((rc = s_write_file(path, md, mdlen, err, errlen)) != 0)
        goto out;
    snprintf(path, sizeof path, "%s/%s.json", dir, base);
    rc = s_write_file(path, js, strlen(js), err, errlen);
out:
    free(md);
    free(js);
    json_decref(doc);
    return rc;
}

/* ---- metrics ---- */

typedef struct {
    const char *name;
    metrics_type_t type;
    const char *help;
} s_family_t;

static const s_family_t s_families[] = {
    {"gaggle_targets", METRICS_GAUGE,
     "Targets per plan and state in this node's view of the fleet (aggregate with max)."},
    {"gaggle_plan_progress_ratio", METRICS_GAUGE,
     "Finished targets over all targets per plan in this node's view (aggregate with max)."},
    {"gaggle_targets_owned", METRICS_GAUGE,
     "Targets this node holds, running or waiting to retry."},
    {"gaggle_leases_held", METRICS_GAUGE, "Target leases this node holds."},
    {"gaggle_fleet_claims_total", METRICS_COUNTER, "Targets this node claimed."},
    {"gaggle_fleet_conflicts_total", METRICS_COUNTER,
     "Same-epoch claim races this node lost (its execution aborted)."},
    {"gaggle_fleet_fenced_results_total", METRICS_COUNTER,
     "Outcomes this node discarded because a higher epoch had superseded them."},
    {"gaggle_fleet_synced", METRICS_GAUGE,
     "1 once this node has synced progress with a peer (or waited one lease ttl alone) "
     "and may claim targets; 0 before."},
    {"gaggle_scale_calls_total", METRICS_COUNTER,
     "Runs of the scale provider command by this node, by result (ok, failed)."},
    {"gaggle_scale_desired_agents", METRICS_GAUGE,
     "Agents the backlog needs, as weighed by this node when it is the fleet's scaler; 0 "
     "otherwise."},
    {"gaggle_scale_retire_requests_total", METRICS_COUNTER,
     "Scale-down retire requests: sent by this node as the scaler, applied and refused by it."},
    {"gaggle_notify_total", METRICS_COUNTER,
     "Notifications of the plans' notify hook on this node, by result (ok, failed, dropped)."},
};

static bool s_plan_live(const engine_plan_t *p)
{
    const char *state = engine_plan_state(s_api.engine, p);
    return state && (!strcmp(state, "active") || !strcmp(state, "paused"));
}

static void s_collect(metrics_t *m, void *arg)
{
    (void) arg;
    if (!s_api.ready)
        return;
    const char *labelled[API_PLANS_METRICS_MAX];
    size_t n_labelled = 0, n = engine_plan_count(s_api.engine);
    uint64_t held = 0;
    metrics_family_reset(m, "gaggle_targets");
    metrics_family_reset(m, "gaggle_plan_progress_ratio");
    /* Live plans first, then finished ones, up to the bound; a name seen
     * already (a cancelled plan replaced by a new one) is skipped. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n && n_labelled < API_PLANS_METRICS_MAX; i++) {
            const engine_plan_t *p = engine_plan_at(s_api.engine, i);
            fleet_plan_stats_t st;
            if (!p || s_plan_live(p) != (pass == 0))
                continue;
            const char *name = plan_name(p->plan);
            bool dup = false;
            for (size_t j = 0; j < n_labelled && !dup; j++)
                dup = !strcmp(labelled[j], name);
            if (dup || engine_plan_stats(s_api.engine, p, &st) != 0)
                continue;
            labelled[n_labelled++] = name;
            for (int s = 0; s < TARGET_STATE_COUNT; s++)
                metrics_gauge_set(m, "gaggle_targets",
                                  (const char *[]){"plan", name, "state",
                                                   target_state_name((target_state_t) s), NULL},
                                  (double) st.counts[s]);
            metrics_gauge_set(m, "gaggle_plan_progress_ratio", (const char *[]){"plan", name, NULL},
                              s_ratio(&st));
        }
    }
    /* This node's holdings. */
    held = engine_held_by(s_api.engine, s_api.self_id, UINT64_MAX);
    metrics_gauge_set(m, "gaggle_targets_owned", NULL, (double) held);
    metrics_gauge_set(m, "gaggle_leases_held", NULL, (double) held);
    const fleet_stats_t *fs = engine_fleet_stats(s_api.engine);
    if (fs) {
        metrics_counter_set(m, "gaggle_fleet_claims_total", NULL, (double) fs->claims);
        metrics_counter_set(m, "gaggle_fleet_conflicts_total", NULL, (double) fs->conflicts);
        metrics_counter_set(m, "gaggle_fleet_fenced_results_total", NULL,
                            (double) fs->fenced_results);
    }
    metrics_gauge_set(m, "gaggle_fleet_synced", NULL, engine_fleet_synced(s_api.engine) ? 1 : 0);
    const scaler_stats_t *ss = agent_scaler_stats(s_api.agent);
    if (ss) {
        metrics_counter_set(m, "gaggle_scale_calls_total", (const char *[]){"result", "ok", NULL},
                            (double) ss->calls_ok);
        metrics_counter_set(m, "gaggle_scale_calls_total",
                            (const char *[]){"result", "failed", NULL}, (double) ss->calls_failed);
        metrics_gauge_set(m, "gaggle_scale_desired_agents", NULL, (double) ss->desired);
        metrics_counter_set(m, "gaggle_scale_retire_requests_total",
                            (const char *[]){"what", "sent", NULL}, (double) ss->retire_sent);
        metrics_counter_set(m, "gaggle_scale_retire_requests_total",
                            (const char *[]){"what", "applied", NULL}, (double) ss->retire_applied);
        metrics_counter_set(m, "gaggle_scale_retire_requests_total",
                            (const char *[]){"what", "refused", NULL}, (double) ss->retire_refused);
    }
    const notify_stats_t *ns = engine_notify_stats(s_api.engine);
    if (ns) {
        metrics_counter_set(m, "gaggle_notify_total", (const char *[]){"result", "ok", NULL},
                            (double) ns->ok);
        metrics_counter_set(m, "gaggle_notify_total", (const char *[]){"result", "failed", NULL},
                            (double) ns->failed);
        metrics_counter_set(m, "gaggle_notify_total", (const char *[]){"result", "dropped", NULL},
                            (double) ns->dropped);
    }
}

/* ---- registration ---- */

static int s_route(http_t *http, const char *method, const char *path, http_handler_fn *fn,
                   bool prefix, bool optional)
{
    int rc = prefix ? http_route_prefix(http, method, path, fn, NULL)
                    : http_route(http, method, path, fn, NULL);
    if (rc == GG_EEXIST && optional) {
        gg_debug("api: %s %s is routed by the agent already", method, path);
        return 0;
    }
    if (rc)
        gg_error("api: cannot route %s %s: %s", method, path, gg_strerror(rc));
    return rc;
}

int api_register(agent_t *agent, engine_t *engine, cluster_t *cluster)
{
    if (!agent || !engine || !cluster)
        return GG_EINVAL;
    const char *hex = agent_node_id(agent);
    memset(&s_api, 0, sizeof s_api);
    if (!hex || signed_hex_decode(hex, s_api.self_id, FLEET_ID_LEN) != 0)
        return GG_EINVAL;
    s_api.agent = agent;
    s_api.engine = engine;
    s_api.cluster = cluster;
    s_api.ready = true;

    metrics_t *m = agent_metrics(agent);
    int rc = 0;
    for (size_t i = 0; m && rc == 0 && i < sizeof s_families / sizeof s_families[0]; i++)
        rc = metrics_describe(m, s_families[i].name, s_families[i].type, s_families[i].help);
    if (m && rc == 0)
        rc = metrics_on_collect(m, s_collect, NULL);
    if (rc) {
        gg_error("api: cannot register the metrics: %s", gg_strerror(rc));
        return rc;
    }

    http_t *http = agent_http(agent);
    if ((rc = s_route(http, "GET", "/v1/plans", s_get_plans, false, false)) ||
        (rc = s_route(http, "POST", "/v1/plans", s_post_plans, false, false)) ||
        (rc = s_route(http, "GET", S_PLANS_PREFIX, s_get_plan_path, true, false)) ||
        (rc = s_route(http, "POST", S_PLANS_PREFIX, s_post_plan_path, true, false)) ||
        (rc = s_route(http, "POST", S_NODES_PREFIX, s_post_node_path, true, false)) ||
        (rc = s_route(http, "GET", "/v1/audit", s_get_audit, false, false)) ||
        (rc = s_route(http, "GET", "/v1/status", api_get_status, false, true)) ||
        (rc = s_route(http, "GET", "/", api_get_index, false, true)))
        return rc;
    return 0;
}
