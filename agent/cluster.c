/*
 * cluster.c: membership driver (see cluster.h for the data flow).
 */
#include "cluster.h"
#include "agent.h"
#include "gg_error.h"
#include "gg_log.h"
#include "metrics.h"
#include "rendezvous.h"
#include "signed.h"
#include "wire.h"

#include <jansson.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#define LEAVE_DEADLINE_MS      3000
#define HANDLERS_MAX           256
#define REVOCATION_DOC_MAX     (16u << 10)
#define NODE_NONCES_MAX        1024
#define CLUSTER_COMMAND_SKEW_S 600 /* a relayed drain's `issued` must be this close */

struct _cluster_t {
    agent_t *agent;
    transport_t *transport;
    membership_t *membership;
    membership_profile_t profile;
    int ticker;
    bool leaving;
    uint64_t leave_deadline;
    struct {
        cluster_handler_fn *fn;
        void *arg;
    } handlers[HANDLERS_MAX];
    uint64_t persist_errors;
    uint64_t revocations_applied, revocations_refused;
    uint64_t drains_applied, drains_refused;
    /* Nonces of the node commands applied lately (a replay is refused). */
    char nonces[NODE_NONCES_MAX][SIGNED_NONCE_HEX_LEN + 1];
    size_t nonce_next;
    cluster_audit_fn *audit_fn;
    void *audit_arg;
    void (*changed_fn)(void *arg);
    void *changed_arg;
};

static void s_send_revocations_to(cluster_t *self, const char *address);

uint64_t cluster_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* ---- persistence ---- */

static const char s_key_incarnation[] = "incarnation";

static uint64_t s_load_incarnation(store_t *store)
{
    void *val = NULL;
    size_t len = 0;
    uint64_t inc = 0;
    if (store_get(store, STORE_DB_META, s_key_incarnation, sizeof s_key_incarnation - 1, &val,
                  &len) == 0 &&
        len == 8) {
        const uint8_t *p = val;
        for (int i = 0; i < 8; i++)
            inc = (inc << 8) | p[i];
    }
    free(val);
    return inc;
}

static int s_save_incarnation(store_t *store, uint64_t inc)
{
    uint8_t buf[8];
    for (int i = 7; i >= 0; i--) {
        buf[i] = (uint8_t) inc;
        inc >>= 8;
    }
    return store_put(store, STORE_DB_META, s_key_incarnation, sizeof s_key_incarnation - 1, buf,
                     sizeof buf);
}

/* A member record in the members db: msgpack {n, a, s, i, f}. */
static int s_member_pack(const member_t *m, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_str_with_body(&pk, m->name, strlen(m->name));
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, m->address, strlen(m->address));
    msgpack_pack_str_with_body(&pk, "s", 1);
    msgpack_pack_uint8(&pk, (uint8_t) m->state);
    msgpack_pack_str_with_body(&pk, "i", 1);
    msgpack_pack_uint64(&pk, m->incarnation);
    msgpack_pack_str_with_body(&pk, "f", 1);
    msgpack_pack_uint32(&pk, m->flags);
    return GG_OK;
}

static int s_member_unpack(const void *data, size_t len, member_t *out)
{
    if (wire_validate(data, len) != 0)
        return GG_EMALFORMED;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = GG_EMALFORMED;
    size_t off = 0;
    if (msgpack_unpack_next(&up, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        goto out;
    uint64_t state, inc, flags;
    if (wire_get_str(&up.data, "n", out->name, MEMBER_NAME_MAX) ||
        wire_get_str(&up.data, "a", out->address, MEMBER_ADDRESS_MAX) ||
        wire_get_u64(&up.data, "s", &state) || wire_get_u64(&up.data, "i", &inc) ||
        wire_get_u64(&up.data, "f", &flags) || state > MEMBER_LEFT || flags > UINT32_MAX)
        goto out;
    out->state = (member_state_t) state;
    out->incarnation = inc;
    out->flags = (uint32_t) flags;
    rc = GG_OK;
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

typedef struct {
    member_t *list;
    size_t count, cap;
} s_restore_t;

static int s_restore_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_restore_t *r = arg;
    if (klen != MEMBER_ID_LEN)
        return 0;
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        if (cap > MEMBERSHIP_MAX_MEMBERS)
            return 1;
        member_t *list = realloc(r->list, cap * sizeof *list);
        if (!list)
            return 1;
        r->list = list;
        r->cap = cap;
    }
    member_t *m = &r->list[r->count];
    memset(m, 0, sizeof *m);
    memcpy(m->id, key, MEMBER_ID_LEN);
    if (s_member_unpack(val, vlen, m) == 0)
        r->count++;
    return 0;
}

/* ---- outputs ---- */

static void s_drain(cluster_t *self)
{
    store_t *store = agent_store(self->agent);
    store_batch_t *batch = NULL;
    membership_out_t out;
    bool changed = false;
    while (membership_poll(self->membership, &out)) {
        if (out.type == MOUT_CHANGED || out.type == MOUT_REMOVED)
            changed = true;
        switch (out.type) {
        case MOUT_SEND: {
            uint8_t *data = NULL;
            size_t len = 0;
            int rc = membership_msg_encode(out.msg, &data, &len);
            if (rc == 0)
                transport_send(self->transport, out.to_address, out.msg->type, data, len);
            else
                gg_warn("cluster: cannot encode a %s message: %s", wire_type_name(out.msg->type),
                        gg_strerror(rc));
            free(data);
            break;
        }
        case MOUT_INCARNATION:
            /* Persisted before any later message goes out. */
            if (batch) {
                if (store_batch_commit(&batch) != 0)
                    self->persist_errors++;
            }
            if (s_save_incarnation(store, out.incarnation) != 0) {
                self->persist_errors++;
                gg_error("cluster: cannot persist incarnation %llu",
                         (unsigned long long) out.incarnation);
            }
            break;
        case MOUT_CHANGED:
        case MOUT_REMOVED: {
            const member_t *m = &out.member;
            if (out.type == MOUT_CHANGED && (out.added || out.old_state != m->state))
                gg_info("member %s (%s) is %s%s", m->name, m->address, member_state_name(m->state),
                        out.added ? " (new)" : "");
            else if (out.type == MOUT_REMOVED)
                gg_info("member %s reaped", m->name);
            if (memcmp(m->id, agent_node_key(self->agent)->public_key, MEMBER_ID_LEN) == 0)
                break;
            /* A member that (re)appears learns every revocation we hold. */
            if (out.type == MOUT_CHANGED && m->state == MEMBER_ALIVE &&
                (out.added || out.old_state != MEMBER_ALIVE))
                s_send_revocations_to(self, m->address);
            if (!batch && store_batch_begin(store, &batch) != 0) {
                self->persist_errors++;
                break;
            }
            int rc;
            if (out.type == MOUT_REMOVED) {
                rc = store_batch_del(batch, STORE_DB_MEMBERS, m->id, MEMBER_ID_LEN);
            } else {
                msgpack_sbuffer sb;
                msgpack_sbuffer_init(&sb);
                s_member_pack(m, &sb);
                rc = store_batch_put(batch, STORE_DB_MEMBERS, m->id, MEMBER_ID_LEN, sb.data,
                                     sb.size);
                msgpack_sbuffer_destroy(&sb);
            }
            if (rc != 0)
                self->persist_errors++;
            break;
        }
        }
        membership_out_release(&out);
    }
    if (batch && store_batch_commit(&batch) != 0)
        self->persist_errors++;
    if (changed && self->changed_fn)
        self->changed_fn(self->changed_arg);
}

void cluster_on_members_changed(cluster_t *self, void (*fn)(void *arg), void *arg)
{
    self->changed_fn = fn;
    self->changed_arg = arg;
}

/* ---- inputs ---- */

static void s_deliver(void *arg, const transport_delivery_t *d)
{
    cluster_t *self = arg;
    uint32_t type = d->msg->type;
    if (membership_msg_type_known(type)) {
        membership_msg_t *msg = NULL;
        if (membership_msg_decode(d->msg, &msg) == 0) {
            membership_handle(self->membership, cluster_now_ms(), d->msg->sender, msg);
            membership_msg_destroy(&msg);
            s_drain(self);
        }
        return;
    }
    if (type < HANDLERS_MAX && self->handlers[type].fn)
        self->handlers[type].fn(self->handlers[type].arg, d);
}

static int s_ticker(zloop_t *loop, int timer_id, void *arg)
{
    cluster_t *self = arg;
    uint64_t now = cluster_now_ms();
    if (now >= membership_next_deadline(self->membership)) {
        membership_tick(self->membership, now);
        s_drain(self);
    }
    return 0;
}

/* ---- metrics and HTTP ---- */

static void s_collect(metrics_t *m, void *arg)
{
    cluster_t *self = arg;
    size_t counts[4] = {0};
    for (size_t i = 0; i < membership_size(self->membership); i++) {
        const member_t *mb = membership_at(self->membership, i);
        if ((unsigned) mb->state < 4)
            counts[mb->state]++;
    }
    for (int s = 0; s < 4; s++) {
        const char *labels[] = {"state", member_state_name((member_state_t) s), NULL};
        metrics_gauge_set(m, "gaggle_members", labels, (double) counts[s]);
    }
    const transport_stats_t *st = transport_stats(self->transport);
    for (int t = 0; t < 256; t++) {
        if (!st->msgs_in[t] && !st->msgs_out[t])
            continue;
        const char *name = wire_type_name((uint32_t) t);
        const char *in[] = {"dir", "in", "type", name, NULL};
        const char *outl[] = {"dir", "out", "type", name, NULL};
        metrics_counter_set(m, "gaggle_gossip_messages_total", in, (double) st->msgs_in[t]);
        metrics_counter_set(m, "gaggle_gossip_messages_total", outl, (double) st->msgs_out[t]);
    }
    const char *bin[] = {"dir", "in", NULL}, *bout[] = {"dir", "out", NULL};
    metrics_counter_set(m, "gaggle_gossip_bytes_total", bin, (double) st->bytes_in);
    metrics_counter_set(m, "gaggle_gossip_bytes_total", bout, (double) st->bytes_out);
    for (int r = 0; r < TRANSPORT_REFUSED_COUNT; r++) {
        const char *labels[] = {"reason", transport_refused_name((transport_refused_t) r), NULL};
        metrics_counter_set(m, "gaggle_peers_refused_total", labels, (double) st->refused[r]);
    }
    metrics_gauge_set(m, "gaggle_membership_health", NULL,
                      (double) membership_health(self->membership));
    metrics_gauge_set(m, "gaggle_membership_checksum", NULL,
                      (double) (membership_checksum(self->membership) & 0xFFFFFFFFFFFFull));
    metrics_gauge_set(m, "gaggle_peer_sockets", NULL,
                      (double) (st->peers_open - st->peers_evicted));
    const membership_stats_t *ms = membership_stats(self->membership);
    metrics_counter_set(m, "gaggle_membership_probes_total", NULL, (double) ms->probes);
    metrics_counter_set(m, "gaggle_membership_probes_failed_total", NULL,
                        (double) ms->probes_failed);
    metrics_counter_set(m, "gaggle_membership_refutations_total", NULL, (double) ms->refutations);
    metrics_counter_set(m, "gaggle_store_persist_errors_total", NULL,
                        (double) self->persist_errors);
    metrics_counter_set(m, "gaggle_revocations_total", (const char *[]){"result", "applied", NULL},
                        (double) self->revocations_applied);
    metrics_counter_set(m, "gaggle_revocations_total", (const char *[]){"result", "refused", NULL},
                        (double) self->revocations_refused);
}

static void s_describe(metrics_t *m)
{
    metrics_describe(m, "gaggle_members", METRICS_GAUGE,
                     "Members of the fleet by state, as this node sees them (aggregate with max).");
    metrics_describe(m, "gaggle_gossip_messages_total", METRICS_COUNTER,
                     "Peer messages sent and received, by direction and type.");
    metrics_describe(m, "gaggle_gossip_bytes_total", METRICS_COUNTER,
                     "Peer message bytes sent and received.");
    metrics_describe(m, "gaggle_peers_refused_total", METRICS_COUNTER,
                     "Peer messages or connections refused, by reason.");
    metrics_describe(m, "gaggle_membership_health", METRICS_GAUGE,
                     "Lifeguard local health score (0 is healthy).");
    metrics_describe(m, "gaggle_membership_checksum", METRICS_GAUGE,
                     "Checksum of this node's live membership view (equal views, equal values).");
    metrics_describe(m, "gaggle_peer_sockets", METRICS_GAUGE, "Open outgoing peer sockets.");
    metrics_describe(m, "gaggle_membership_probes_total", METRICS_COUNTER, "SWIM probes started.");
    metrics_describe(m, "gaggle_membership_probes_failed_total", METRICS_COUNTER,
                     "SWIM probes that got no acknowledgement.");
    metrics_describe(m, "gaggle_membership_refutations_total", METRICS_COUNTER,
                     "Incarnation bumps to refute a suspicion of this node.");
    metrics_describe(m, "gaggle_revocations_total", METRICS_COUNTER,
                     "Certificate revocations applied or refused (bad signature, unknown key).");
    metrics_describe(m, "gaggle_store_persist_errors_total", METRICS_COUNTER,
                     "Membership records that could not be written to the store.");
}

json_t *cluster_members_json(cluster_t *self)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < membership_size(self->membership); i++) {
        const member_t *m = membership_at(self->membership, i);
        char hex[MEMBER_ID_LEN * 2 + 1];
        sodium_bin2hex(hex, sizeof hex, m->id, MEMBER_ID_LEN);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:b, s:b}", "name", m->name, "id", hex,
                           "address", m->address, "state", member_state_name(m->state),
                           "incarnation", (json_int_t) m->incarnation, "draining",
                           (m->flags & MEMBER_FLAG_DRAINING) != 0, "retiring",
                           (m->flags & MEMBER_FLAG_RETIRING) != 0, "self", i == 0));
    }
    return json_pack("{s:o}", "members", arr);
}

static int s_http_members(void *arg, const http_request_t *req, http_response_t *resp)
{
    cluster_t *self = arg;
    return http_respond_json(resp, 200, cluster_members_json(self));
}

/* ---- revocations ----
 *
 * `gaggle cert revoke` posts an operator-signed command; the agent verifies
 * it, applies it to the trust store, keeps it (certs db, keyed by the
 * document's hash), re-checks every proven peer, and floods it to every live
 * member (WIRE_COMMAND). A member that (re)appears is sent every revocation
 * held, so a node that was away learns them too. Revocations are re-applied
 * after a reload rebuilds the trust store.
 */

static void s_revoke_subject(trust_t *trust, const char *subject)
{
    uint8_t key[CERT_PUBLIC_LEN];
    if (strlen(subject) == CERT_PUBLIC_LEN * 2 && signed_hex_decode(subject, key, sizeof key) == 0)
        (void) trust_revoke_key(trust, key);
    else
        (void) trust_revoke_name(trust, subject);
}

/* Sends a signed command document (WIRE_COMMAND {doc}) to one address, or to
 * every live member when address is NULL. */
static void s_send_command(cluster_t *self, const char *address, const char *text, size_t len)
{
    wire_writer_t *w = wire_writer_new(WIRE_COMMAND, agent_node_key(self->agent)->public_key, 1);
    const uint8_t *data;
    size_t dlen;
    if (!w)
        return;
    wire_put_key(w, "doc");
    msgpack_pack_str_with_body(wire_writer_packer(w), text, len);
    if (wire_writer_finish(w, &data, &dlen) == 0) {
        if (address)
            transport_send(self->transport, address, WIRE_COMMAND, data, dlen);
        else
            for (size_t i = 1; i < membership_size(self->membership); i++) {
                const member_t *m = membership_at(self->membership, i);
                if (m->state == MEMBER_ALIVE || m->state == MEMBER_SUSPECT)
                    transport_send(self->transport, m->address, WIRE_COMMAND, data, dlen);
            }
    }
    wire_writer_destroy(&w);
}

/* Parses a signed command document and verifies its operator signature.
 * Returns 0 with *doc (the caller's to free), *payload (borrowed from it) and
 * the signer's key,
 * or GG_EMALFORMED, GG_EPERM (unknown operator), GG_ECRYPTO with a sentence
 * in err; *doc is then NULL. */
static int s_verify_command(cluster_t *self, const char *text, size_t len, json_t **doc,
                            json_t **payload, uint8_t signer[CERT_PUBLIC_LEN], char *err,
                            size_t errlen)
{
    int rc = signed_parse(text, len, doc);
    if (rc) {
        snprintf(err, errlen, "the body is not a signed document");
        return rc;
    }
    rc = signed_verify(*doc, agent_trust(self->agent), payload, signer);
    if (rc) {
        snprintf(err, errlen, "%s",
                 rc == GG_EPERM     ? "the command is not signed by a trusted operator key"
                 : rc == GG_ECRYPTO ? "the command's signature does not verify"
                                    : "the body is not a signed document");
        json_decref(*doc);
        *doc = NULL;
    }
    return rc;
}

/* Verifies, applies, keeps and spreads one revocation. Returns 0 (also when
 * already known), GG_EMALFORMED, GG_EPERM (unknown operator) or GG_ECRYPTO. */
static int s_revocation(cluster_t *self, const char *text, size_t len, char *subject_out,
                        size_t subject_len, char *err, size_t errlen)
{
    json_t *doc = NULL, *payload = NULL;
    char *canon = NULL;
    size_t clen = 0;
    char id[SIGNED_HASH_HEX_LEN + 1];
    signed_command_t cmd;
    uint8_t signer[CERT_PUBLIC_LEN];
    int rc = s_verify_command(self, text, len, &doc, &payload, signer, err, errlen);
    if (rc)
        goto out;
    rc = signed_command_check(payload, &cmd, err, errlen);
    if (rc)
        goto out;
    if (strcmp(cmd.type, "revoke") != 0 || !cmd.subject) {
        rc = GG_EMALFORMED;
        snprintf(err, errlen, "not a revoke command");
        goto out;
    }
    if (subject_out)
        snprintf(subject_out, subject_len, "%s", cmd.subject);
    if ((rc = signed_hash_hex(doc, id)) != 0 || (rc = signed_canonical(doc, &canon, &clen)) != 0) {
        snprintf(err, errlen, "cannot encode the command");
        goto out;
    }
    void *old = NULL;
    size_t old_len = 0;
    store_t *store = agent_store(self->agent);
    if (store_get(store, STORE_DB_CERTS, id, SIGNED_HASH_HEX_LEN, &old, &old_len) == 0) {
        free(old);
        goto out; /* known: nothing to do, nothing to forward */
    }
    s_revoke_subject(agent_trust(self->agent), cmd.subject);
    if (store_put(store, STORE_DB_CERTS, id, SIGNED_HASH_HEX_LEN, canon, clen) != 0) {
        self->persist_errors++;
        gg_error("cluster: cannot store the revocation of %s", cmd.subject);
    }
    self->revocations_applied++;
    gg_warn("cluster: certificate %s revoked", cmd.subject);
    if (self->audit_fn)
        self->audit_fn(self->audit_arg, "revoke", cmd.subject, signer, cmd.issued);
    transport_revalidate(self->transport);
    s_send_command(self, NULL, canon, clen);
out:
    if (rc)
        self->revocations_refused++;
    free(canon);
    json_decref(doc);
    return rc;
}

typedef struct {
    cluster_t *self;
    const char *address; /* send each to it, or NULL: re-apply to trust */
} s_revocation_walk_t;

static int s_revocation_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_revocation_walk_t *walk = arg;
    if (vlen > REVOCATION_DOC_MAX)
        return 0;
    if (walk->address) {
        s_send_command(walk->self, walk->address, val, vlen);
        return 0;
    }
    json_t *doc = NULL, *payload = NULL;
    signed_command_t cmd;
    char err[128];
    if (signed_parse(val, vlen, &doc) == 0 && (payload = json_object_get(doc, "payload")) != NULL &&
        signed_command_check(payload, &cmd, err, sizeof err) == 0 && cmd.subject)
        s_revoke_subject(agent_trust(walk->self->agent), cmd.subject);
    json_decref(doc);
    return 0;
}

static void s_send_revocations_to(cluster_t *self, const char *address)
{
    s_revocation_walk_t walk = {self, address};
    if (store_scan(agent_store(self->agent), STORE_DB_CERTS, NULL, 0, s_revocation_visit, &walk))
        gg_warn("cluster: cannot read the revocations from the store");
}

static void s_reapply_revocations(cluster_t *self)
{
    s_revocation_walk_t walk = {self, NULL};
    if (store_scan(agent_store(self->agent), STORE_DB_CERTS, NULL, 0, s_revocation_visit, &walk))
        gg_warn("cluster: cannot read the revocations from the store");
}

/* ---- node commands relayed to their node ----
 *
 * `gaggle drain NODE` may be sent to any agent: one that is not NODE verifies
 * it and relays the signed document to NODE (WIRE_COMMAND), which verifies it
 * again (the operator's signature, that it names this node, `issued` within
 * CLUSTER_COMMAND_SKEW_S of its clock, a nonce not seen lately) and drains.
 */

/* The signed command's type, or "" when the document does not parse. */
static void s_command_type(const char *text, size_t len, char *type, size_t size)
{
    json_t *doc = NULL;
    type[0] = '\0';
    if (signed_parse(text, len, &doc) == 0) {
        const char *t = json_string_value(json_object_get(json_object_get(doc, "payload"), "type"));
        snprintf(type, size, "%s", t ? t : "");
    }
    json_decref(doc);
}

static bool s_nonce_seen(cluster_t *self, const char *nonce)
{
    for (size_t i = 0; i < NODE_NONCES_MAX; i++)
        if (self->nonces[i][0] && !strcmp(self->nonces[i], nonce))
            return true;
    return false;
}

/* Verifies and applies a relayed drain. Returns 0 or an error (reason in err). */
static int s_node_drain(cluster_t *self, const char *text, size_t len, char *err, size_t errlen)
{
    json_t *doc = NULL, *payload = NULL;
    signed_command_t cmd;
    uint8_t signer[CERT_PUBLIC_LEN];
    int rc = s_verify_command(self, text, len, &doc, &payload, signer, err, errlen);
    if (rc)
        goto out;
    if ((rc = signed_command_check(payload, &cmd, err, errlen)) != 0)
        goto out;
    const member_t *me = membership_self(self->membership);
    char me_hex[MEMBER_ID_LEN * 2 + 1];
    sodium_bin2hex(me_hex, sizeof me_hex, me->id, MEMBER_ID_LEN);
    if (strcmp(cmd.type, "drain") != 0 || !cmd.node ||
        (strcmp(cmd.node, agent_config(self->agent)->name) != 0 && strcmp(cmd.node, me_hex) != 0)) {
        rc = GG_EINVAL;
        snprintf(err, errlen, "not a drain of this node");
        goto out;
    }
    uint64_t now = (uint64_t) time(NULL), issued = cmd.issued / 1000;
    if (issued + CLUSTER_COMMAND_SKEW_S < now || issued > now + CLUSTER_COMMAND_SKEW_S) {
        rc = GG_ESTALE;
        snprintf(err, errlen, "the command was issued too long ago or in the future");
        goto out;
    }
    if (s_nonce_seen(self, cmd.nonce)) {
        rc = GG_EEXIST;
        snprintf(err, errlen, "a replayed command (its nonce was seen)");
        goto out;
    }
    snprintf(self->nonces[self->nonce_next], sizeof self->nonces[0], "%s", cmd.nonce);
    self->nonce_next = (self->nonce_next + 1) % NODE_NONCES_MAX;
    rc = cluster_set_draining(self, true);
    if (rc)
        snprintf(err, errlen, "cannot drain: %s", gg_strerror(rc));
    else if (self->audit_fn)
        self->audit_fn(self->audit_arg, "drain", cmd.node, signer, cmd.issued);
out:
    json_decref(doc);
    return rc;
}

int cluster_relay_command(cluster_t *self, const char *node, const char *text, size_t len)
{
    if (len > REVOCATION_DOC_MAX)
        return GG_ETOOBIG;
    uint8_t key[MEMBER_ID_LEN];
    bool by_key =
        strlen(node) == MEMBER_ID_LEN * 2 && signed_hex_decode(node, key, sizeof key) == 0;
    int sent = 0, down = 0;
    for (size_t i = 1; i < membership_size(self->membership); i++) {
        const member_t *m = membership_at(self->membership, i);
        if (by_key ? memcmp(m->id, key, MEMBER_ID_LEN) : strcmp(m->name, node))
            continue;
        if (m->state != MEMBER_ALIVE && m->state != MEMBER_SUSPECT) {
            down++;
            continue;
        }
        s_send_command(self, m->address, text, len);
        sent++;
    }
    return sent ? 0 : down ? GG_EBUSY : GG_ENOTFOUND;
}

static void s_on_command(void *arg, const transport_delivery_t *d)
{
    cluster_t *self = arg;
    const uint8_t *text;
    size_t len;
    const msgpack_object *o = wire_map_get(&d->msg->body, "doc");
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size > REVOCATION_DOC_MAX) {
        self->revocations_refused++;
        return;
    }
    text = (const uint8_t *) o->via.str.ptr;
    len = o->via.str.size;
    char err[256] = "", type[32];
    s_command_type((const char *) text, len, type, sizeof type);
    if (!strcmp(type, "drain")) {
        if (s_node_drain(self, (const char *) text, len, err, sizeof err) != 0) {
            self->drains_refused++;
            gg_warn("cluster: a drain relayed by %s was refused: %s", d->cert->name, err);
        } else {
            self->drains_applied++;
            gg_warn("cluster: this node is draining (operator command relayed by %s): it takes "
                    "no new targets",
                    d->cert->name);
        }
        return;
    }
    if (s_revocation(self, (const char *) text, len, NULL, 0, err, sizeof err) != 0)
        gg_warn("cluster: a command from %s was refused: %s", d->cert->name, err);
}

static int s_http_revoke(void *arg, const http_request_t *req, http_response_t *resp)
{
    cluster_t *self = arg;
    char err[256] = "", subject[SIGNED_FIELD_MAX + 1] = "";
    if (req->body_len == 0 || req->body_len > REVOCATION_DOC_MAX)
        return http_respond_error(resp, req->body_len ? 413 : 400,
                                  req->body_len ? "the revocation is too large"
                                                : "the body must be a signed revoke command");
    int rc = s_revocation(self, req->body, req->body_len, subject, sizeof subject, err, sizeof err);
    if (rc == GG_EPERM)
        return http_respond_error(resp, 403, err);
    if (rc == GG_ECRYPTO)
        return http_respond_error(resp, 401, err);
    if (rc)
        return http_respond_error(resp, 400, err[0] ? err : "malformed revoke command");
    return http_respond_json(resp, 200, json_pack("{s:s}", "revoked", subject));
}

/* ---- life cycle ---- */

void cluster_on_audit(cluster_t *self, cluster_audit_fn *fn, void *arg)
{
    self->audit_fn = fn;
    self->audit_arg = arg;
}

int cluster_on_message(cluster_t *self, uint32_t type, cluster_handler_fn *fn, void *arg)
{
    if (type >= HANDLERS_MAX)
        return GG_EINVAL;
    self->handlers[type].fn = fn;
    self->handlers[type].arg = arg;
    return GG_OK;
}

int cluster_send(cluster_t *self, const char *address, uint32_t type, const uint8_t *data,
                 size_t len)
{
    return transport_send(self->transport, address, type, data, len);
}

membership_t *cluster_membership(cluster_t *self)
{
    return self->membership;
}

transport_t *cluster_transport(cluster_t *self)
{
    return self->transport;
}

const member_t *cluster_chosen(cluster_t *self, uint64_t key, bool skip_draining)
{
    const member_t *best = NULL;
    uint64_t best_score = 0;
    for (size_t i = 0; i < membership_size(self->membership); i++) {
        const member_t *m = membership_at(self->membership, i);
        if ((m->state != MEMBER_ALIVE && m->state != MEMBER_SUSPECT) ||
            (skip_draining && (m->flags & MEMBER_FLAG_DRAINING)))
            continue;
        uint64_t score = rendezvous_score(rendezvous_node_seed(m->id), key);
        if (!best || score > best_score ||
            (score == best_score && memcmp(m->id, best->id, MEMBER_ID_LEN) < 0)) {
            best = m;
            best_score = score;
        }
    }
    return best;
}

int cluster_set_flags(cluster_t *self, uint32_t set, uint32_t clear)
{
    const member_t *me = membership_self(self->membership);
    int rc = membership_set_flags(self->membership, cluster_now_ms(), (me->flags | set) & ~clear);
    s_drain(self);
    return rc;
}

int cluster_set_draining(cluster_t *self, bool draining)
{
    return draining ? cluster_set_flags(self, MEMBER_FLAG_DRAINING, 0)
                    : cluster_set_flags(self, 0, MEMBER_FLAG_DRAINING);
}

static const char *s_profile_name(config_profile_t p)
{
    switch (p) {
    case CONFIG_PROFILE_WAN: return "wan";
    case CONFIG_PROFILE_TEST: return "test";
    default: return "lan";
    }
}

static void s_add_seeds(cluster_t *self)
{
    const config_t *cfg = agent_config(self->agent);
    for (size_t i = 0; i < cfg->join_count; i++) {
        int rc = membership_add_seed(self->membership, cfg->join[i]);
        if (rc != 0)
            gg_warn("cluster: join seed %s ignored: %s", cfg->join[i], gg_strerror(rc));
    }
}

cluster_t *cluster_new(agent_t *agent, char *err, size_t errlen)
{
    cluster_t *self = calloc(1, sizeof *self);
    member_t *restored = NULL;
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->agent = agent;
    const config_t *cfg = agent_config(agent);
    store_t *store = agent_store(agent);
    if (membership_profile_get(s_profile_name(cfg->profile), &self->profile) != 0) {
        snprintf(err, errlen, "unknown profile");
        goto fail;
    }
    self->profile.reap_ms = cfg->reap_ms;

    transport_config_t tc = {
        .key = agent_node_key(agent),
        .cert = agent_node_cert(agent),
        .trust = agent_trust(agent),
        .bind = cfg->bind,
        .advertise = cfg->advertise,
        .deliver = s_deliver,
        .arg = self,
    };
    self->transport = transport_new(&tc, err, errlen);
    if (!self->transport)
        goto fail;

    /* A restarted node comes back above every incarnation it used before. */
    uint64_t incarnation = s_load_incarnation(store) + 1;
    if (s_save_incarnation(store, incarnation) != 0) {
        snprintf(err, errlen, "cannot write the incarnation to the store in %s", cfg->data_dir);
        goto fail;
    }
    s_reapply_revocations(self);
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    uint64_t now = cluster_now_ms();
    self->membership =
        membership_new(&self->profile, agent_node_key(agent)->public_key,
                       agent_node_cert(agent)->name, cfg->advertise, incarnation, seed, now);
    if (!self->membership) {
        snprintf(err, errlen, "cannot start membership (bad name or address: %s)", cfg->advertise);
        goto fail;
    }
    s_restore_t r = {0};
    if (store_scan(store, STORE_DB_MEMBERS, NULL, 0, s_restore_visit, &r) != 0)
        gg_warn("cluster: cannot read the last-known members from the store");
    restored = r.list;
    if (r.count) {
        membership_restore(self->membership, r.list, r.count, now);
        gg_info("cluster: %zu last-known members restored", r.count);
    }
    s_add_seeds(self);

    zloop_t *loop = agent_loop(agent);
    if (transport_attach(self->transport, loop) != 0) {
        snprintf(err, errlen, "cannot attach the transport to the loop");
        goto fail;
    }
    size_t tick = self->profile.gossip_interval_ms / 4;
    if (tick < 2)
        tick = 2;
    if (tick > 20)
        tick = 20;
    self->ticker = zloop_timer(loop, tick, 0, s_ticker, self);
    metrics_t *metrics = agent_metrics(agent);
    s_describe(metrics);
    metrics_on_collect(metrics, s_collect, self);
    http_route(agent_http(agent), "GET", "/v1/members", s_http_members, self);
    http_route(agent_http(agent), "POST", "/v1/certs/revoke", s_http_revoke, self);
    cluster_on_message(self, WIRE_COMMAND, s_on_command, self);
    gg_info("cluster: listening on %s as %s (incarnation %llu, profile %s)",
            transport_endpoint(self->transport), cfg->advertise, (unsigned long long) incarnation,
            s_profile_name(cfg->profile));
    free(restored);
    s_drain(self);
    return self;
fail:
    free(restored);
    cluster_destroy(&self);
    return NULL;
}

void cluster_destroy(cluster_t **self_p)
{
    cluster_t *self = *self_p;
    if (!self)
        return;
    if (self->ticker > 0 && self->agent && agent_loop(self->agent))
        zloop_timer_end(agent_loop(self->agent), self->ticker);
    membership_destroy(&self->membership);
    transport_destroy(&self->transport);
    free(self);
    *self_p = NULL;
}

void cluster_leave(cluster_t *self)
{
    if (self->leaving)
        return;
    self->leaving = true;
    uint64_t now = cluster_now_ms();
    self->leave_deadline = now + LEAVE_DEADLINE_MS;
    membership_leave(self->membership, now);
    s_drain(self);
}

bool cluster_leave_done(cluster_t *self)
{
    if (!self->leaving)
        return false;
    size_t peers = 0;
    for (size_t i = 1; i < membership_size(self->membership); i++) {
        const member_t *m = membership_at(self->membership, i);
        peers += m->state == MEMBER_ALIVE || m->state == MEMBER_SUSPECT;
    }
    /* Nobody to tell, everything told, or out of time. */
    return peers == 0 || membership_broadcasts_pending(self->membership) == 0 ||
           cluster_now_ms() >= self->leave_deadline;
}

void cluster_reload(cluster_t *self)
{
    s_add_seeds(self);
    s_reapply_revocations(self); /* the reload built a fresh trust store */
    transport_revalidate(self->transport);
}
