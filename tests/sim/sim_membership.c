/*
 * sim_membership.c: the membership core as a simulator machine.
 *
 * It drives coordination/membership.c exactly as the real driver
 * (agent/cluster.c) does, with the simulated network and disk in place of
 * CurveZMQ and LMDB:
 *   - boot: incarnation = stored + 1, persisted at once; last-known members
 *     restored from the disk with membership_restore; the join seeds added;
 *   - MOUT_INCARNATION is persisted before the SENDs that follow it (outputs
 *     are drained in order); MOUT_CHANGED / MOUT_REMOVED update the member
 *     records on disk (self excluded, as cluster.c does);
 *   - a SEND goes through the real codec unless the codec is off:
 *     membership_msg_encode -> bytes -> wire_decode -> membership_msg_decode
 *     at the receiver; in "verify" mode the packet also carries the original
 *     structure and the receiver compares what it decoded with it, field by
 *     field;
 *   - the sender a receiver is told about is the node that produced the
 *     packet (the transport's authenticated key).
 * Every change is checked (sim_check.c) and shown to the experiment.
 */
#include "sim.h"

#include "gg_error.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

membership_t *sim_membership(sim_node_t *node)
{
    return node->up ? node->state[0] : NULL;
}

static bool s_accepts(uint32_t wire_type)
{
    return membership_msg_type_known(wire_type);
}

static uint64_t s_next_deadline(const void *state)
{
    return membership_next_deadline(state);
}

/* ---- the disk ---- */

static int s_disk_put(sim_t *sim, sim_node_t *node, uint32_t index, const member_t *m)
{
    sim_disk_t *disk = &node->disk;
    if (!disk->members) {
        disk->members = calloc(sim_node_count(sim), sizeof *disk->members);
        if (!disk->members)
            return GG_ENOMEM;
    }
    sim_disk_member_t *rec = &disk->members[index];
    if (!rec->present)
        disk->n_members++;
    rec->present = 1;
    rec->state = (uint8_t) m->state;
    rec->incarnation = m->incarnation;
    rec->flags = m->flags;
    sim_stats(sim)->persisted_writes++;
    return 0;
}

static void s_disk_del(sim_t *sim, sim_node_t *node, uint32_t index)
{
    sim_disk_t *disk = &node->disk;
    if (!disk->members || !disk->members[index].present)
        return;
    disk->members[index].present = 0;
    disk->n_members--;
    sim_stats(sim)->persisted_writes++;
}

static void s_persist_incarnation(sim_t *sim, sim_node_t *node, uint64_t inc)
{
    sim_check_incarnation(sim, node, inc);
    node->disk.incarnation = inc;
    if (inc > node->max_incarnation)
        node->max_incarnation = inc;
    sim_stats(sim)->persisted_writes++;
}

/* ---- codec ---- */

static bool s_update_eq(const member_update_t *a, const member_update_t *b)
{
    return memcmp(a->id, b->id, MEMBER_ID_LEN) == 0 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->address, b->address) == 0 && a->state == b->state &&
           a->incarnation == b->incarnation && a->flags == b->flags &&
           a->has_accuser == b->has_accuser &&
           (!a->has_accuser || memcmp(a->accuser, b->accuser, MEMBER_ID_LEN) == 0);
}

static bool s_has_seq(uint32_t type)
{
    return type == WIRE_PING || type == WIRE_ACK || type == WIRE_PING_REQ || type == WIRE_NACK;
}

/* What the receiver decodes must be what the sender meant (the fields each
 * type carries, see membership_codec.c). */
static bool s_msg_eq(const membership_msg_t *a, const membership_msg_t *b)
{
    if (a->type != b->type || a->checksum != b->checksum || a->n_updates != b->n_updates ||
        !s_update_eq(&a->sender, &b->sender))
        return false;
    if (s_has_seq(a->type) &&
        (a->seq != b->seq || memcmp(a->target_id, b->target_id, MEMBER_ID_LEN) != 0))
        return false;
    if (a->type == WIRE_PING_REQ && strcmp(a->target_address, b->target_address) != 0)
        return false;
    for (uint32_t i = 0; i < a->n_updates; i++)
        if (!s_update_eq(&a->updates[i], &b->updates[i]))
            return false;
    return true;
}

static int s_decode(const uint8_t *data, size_t len, membership_msg_t **out)
{
    wire_msg_t w;
    static msgpack_zone *zone; /* one per process, emptied after each message */
    if (!zone && !(zone = msgpack_zone_new(64u * 1024u)))
        return GG_ENOMEM;
    int rc = wire_decode_in(data, len, zone, &w);
    if (rc == 0)
        rc = membership_msg_decode(&w, out);
    wire_msg_release(&w);
    msgpack_zone_clear(zone);
    return rc;
}

static void s_msg_free(void *obj)
{
    membership_msg_t *msg = obj;
    membership_msg_destroy(&msg);
}

/* ---- outputs ---- */

/* The injected fault: a node's messages never show an incarnation above the
 * one it booted with, so its refutations never reach anyone. */
static void s_mute_refutations(const sim_node_t *node, membership_msg_t *msg)
{
    if (msg->sender.incarnation > node->boot_incarnation)
        msg->sender.incarnation = node->boot_incarnation;
    for (uint32_t i = 0; i < msg->n_updates; i++) {
        member_update_t *u = &msg->updates[i];
        if (memcmp(u->id, node->id, MEMBER_ID_LEN) == 0 && u->incarnation > node->boot_incarnation)
            u->incarnation = node->boot_incarnation;
    }
}

static void s_send(sim_t *sim, sim_node_t *node, membership_out_t *out)
{
    const sim_config_t *cfg = sim_config(sim);
    membership_msg_t *msg = out->msg;
    sim_packet_t *p = NULL;
    sim_node_t *to = sim_node_by_address(sim, out->to_address);
    if (!msg)
        goto out;
    if (!to) {
        sim_violation(sim, "send-address", (int32_t) node->index, -1,
                      "%s sends a %s to %.64s, which is no node's address", node->name,
                      wire_type_name(msg->type), out->to_address);
        goto out;
    }
    if (out->to_id_known && memcmp(out->to_id, to->id, MEMBER_ID_LEN) != 0) {
        sim_violation(sim, "send-address", (int32_t) node->index, (int32_t) to->index,
                      "%s sends a %s for another node to %s's address", node->name,
                      wire_type_name(msg->type), to->name);
        goto out;
    }
    if (cfg->faults & SIM_FAULT_MUTE_REFUTATIONS)
        s_mute_refutations(node, msg);
    p = sim_packet_new(msg->type, node->index, to->index);
    if (!p) {
        sim_violation(sim, "harness", -1, -1, "out of memory");
        goto out;
    }
    p->items = msg->n_updates;
    if (cfg->codec != SIM_CODEC_OFF) {
        int rc = membership_msg_encode(msg, &p->data, &p->len);
        if (rc != 0) {
            sim_violation(sim, "codec", (int32_t) node->index, (int32_t) to->index,
                          "%s cannot encode its %s with %u updates: %s", node->name,
                          wire_type_name(msg->type), msg->n_updates, gg_strerror(rc));
            goto out;
        }
    }
    if (cfg->codec != SIM_CODEC_ON) {
        /* Codec off: the structure travels. Verify: it travels with the
         * bytes, and the receiver compares what it decodes with it. */
        p->obj = msg;
        p->obj_free = s_msg_free;
        out->msg = NULL;
    }
    sim_send(sim, p);
    p = NULL;
out:
    sim_packet_unref(&p);
}

static void s_changed(sim_t *sim, sim_node_t *node, const membership_out_t *out)
{
    const member_t *m = &out->member;
    sim_node_t *subject = sim_node_by_id(sim, m->id);
    uint64_t who = subject ? subject->index : 0xFFFFFFFFu;
    sim_trace(sim, ((uint64_t) node->index << 32) | who);
    sim_trace(sim, ((uint64_t) m->state << 60) ^ ((uint64_t) m->flags << 40) ^ m->incarnation);
    node->view_dirty = true;
    sim_check_changed(sim, node, m, out->added, out->old_state);
    if (subject && subject != node && s_disk_put(sim, node, subject->index, m) != 0)
        sim_violation(sim, "harness", -1, -1, "out of memory");
    sim_exp_t *exp = sim_experiment(sim);
    if (exp && subject)
        sim_exp_changed(exp, sim, node, m, out->old_state, out->added);
}

static void s_drain(sim_t *sim, sim_node_t *node, membership_t *m)
{
    membership_out_t out;
    while (membership_poll(m, &out)) {
        switch (out.type) {
        case MOUT_SEND: s_send(sim, node, &out); break;
        case MOUT_CHANGED: s_changed(sim, node, &out); break;
        case MOUT_REMOVED: {
            sim_node_t *subject = sim_node_by_id(sim, out.member.id);
            sim_trace(sim, ((uint64_t) 0xDE1 << 52) ^ ((uint64_t) node->index << 20) ^
                               (subject ? subject->index : 0xFFFFFu));
            if (subject && subject != node)
                s_disk_del(sim, node, subject->index);
            node->view_dirty = true;
            break;
        }
        case MOUT_INCARNATION: s_persist_incarnation(sim, node, out.incarnation); break;
        }
        membership_out_release(&out);
    }
}

void sim_membership_drain(sim_t *sim, sim_node_t *node)
{
    membership_t *m = sim_membership(node);
    if (m)
        s_drain(sim, node, m);
}

void sim_membership_collect(sim_t *sim, sim_node_t *node)
{
    membership_t *m = sim_membership(node);
    if (!m)
        return;
    const membership_stats_t *st = membership_stats(m);
    sim_stats_t *s = sim_stats(sim);
    s->refutations += st->refutations;
    s->probes += st->probes;
    s->probes_failed += st->probes_failed;
    s->syncs += st->syncs_sent;
}

/* ---- the machine ---- */

static int s_boot(sim_t *sim, sim_node_t *node, void **state, uint64_t now)
{
    int rc = 0;
    member_t *known = NULL;
    membership_t *m = NULL;
    /* agent/cluster.c: come back above every incarnation used before. */
    uint64_t inc = node->disk.incarnation + 1;
    s_persist_incarnation(sim, node, inc);
    node->boot_incarnation = inc;
    m = membership_new(sim_profile(sim), node->id, node->name, node->address, inc,
                       sim_machine_seed(sim), now);
    if (!m) {
        rc = GG_ENOMEM;
        goto out;
    }
    if (node->disk.n_members > 0) {
        known = calloc(node->disk.n_members, sizeof *known);
        if (!known) {
            rc = GG_ENOMEM;
            goto out;
        }
        size_t k = 0;
        for (uint32_t i = 0; i < sim_node_count(sim) && k < node->disk.n_members; i++) {
            const sim_disk_member_t *rec = &node->disk.members[i];
            if (!rec->present)
                continue;
            const sim_node_t *other = sim_node(sim, i);
            member_t *km = &known[k++];
            memcpy(km->id, other->id, MEMBER_ID_LEN);
            snprintf(km->name, sizeof km->name, "%s", other->name);
            snprintf(km->address, sizeof km->address, "%s", other->address);
            km->state = (member_state_t) rec->state;
            km->incarnation = rec->incarnation;
            km->flags = rec->flags;
        }
        rc = membership_restore(m, known, k, now);
        if (rc != 0)
            goto out;
    }
    for (uint32_t i = 0; i < sim_seed_count(sim); i++) {
        rc = membership_add_seed(m, sim_seed_address(sim, i));
        if (rc != 0)
            goto out;
    }
    *state = m;
    m = NULL;
    s_drain(sim, node, *state);
out:
    free(known);
    membership_destroy(&m);
    return rc;
}

static void s_halt(sim_t *sim, sim_node_t *node, void **state)
{
    membership_t *m = *state;
    membership_destroy(&m);
    *state = NULL;
}

static void s_deliver(sim_t *sim, sim_node_t *node, void *state, uint64_t now,
                      const sim_packet_t *p)
{
    membership_t *m = state;
    membership_msg_t *decoded = NULL;
    const membership_msg_t *msg = p->obj;
    if (p->data) {
        int rc = s_decode(p->data, p->len, &decoded);
        if (rc != 0 || (msg && !s_msg_eq(msg, decoded))) {
            sim_violation(sim, "codec", (int32_t) p->from, (int32_t) node->index,
                          "%s %s a %s of %zu bytes (%u updates) from n%u%s%s", node->name,
                          rc ? "cannot decode" : "decodes a different message from",
                          wire_type_name(p->type), p->len, p->items, p->from, rc ? ": " : "",
                          rc ? gg_strerror(rc) : "");
            membership_msg_destroy(&decoded);
            return;
        }
        msg = decoded;
    }
    if (!msg)
        return;
    if (membership_handle(m, now, sim_node(sim, p->from)->id, msg) != 0)
        sim_stats(sim)->handle_ignored++;
    membership_msg_destroy(&decoded);
    s_drain(sim, node, m);
}

static void s_tick(sim_t *sim, sim_node_t *node, void *state, uint64_t now)
{
    membership_tick(state, now);
    s_drain(sim, node, state);
}

const sim_machine_ops_t sim_membership_ops = {
    .name = "membership",
    .boot = s_boot,
    .halt = s_halt,
    .accepts = s_accepts,
    .deliver = s_deliver,
    .tick = s_tick,
    .next_deadline = s_next_deadline,
};
