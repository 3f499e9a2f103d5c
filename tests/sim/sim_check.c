/*
 * sim_check.c: the invariants every simulated run is checked against.
 *
 * On every member change (MOUT_CHANGED), in O(1):
 *   unknown-member        a view lists an id that is no node's;
 *   member-record         a view has a member's name or address wrong;
 *   self-not-alive        a node sees itself suspect or dead;
 *   incarnation-invented  a view holds a member at an incarnation the member
 *                         never announced (refutation is only sound if nobody
 *                         can get ahead of the node itself);
 * on every persisted incarnation:
 *   incarnation-monotonic a node's incarnation never goes back, across
 *                         crashes and restarts too (a restarted node would be
 *                         stuck dead otherwise);
 * in the sender and receiver (sim_membership.c):
 *   codec                 every message survives encode -> decode intact;
 *   send-address          a message goes to the address of the node meant;
 * at the end of the settle phase (after healing and quiescence):
 *   live-listed-dead      a live node is listed dead (or not at all) by a
 *                         live node: "a live node never stays dead";
 *   views-diverged        live nodes' membership checksums differ.
 * The settle phase ends at the first periodic check where every up node lists
 * exactly the up nodes as live and all checksums are equal; the deadline
 * passing first is a violation. Also counted here (not violations): false
 * dead declarations, i.e. a member declared dead in the life it is still
 * living (the figure Lifeguard is about), apart from those across or just
 * after a partition (the longest suspicion timeout after it heals).
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_check_changed(sim_t *sim, sim_node_t *observer, const member_t *member, bool added,
                       member_state_t old_state)
{
    sim_node_t *subject = sim_node_by_id(sim, member->id);
    if (!subject) {
        sim_violation(sim, "unknown-member", (int32_t) observer->index, -1,
                      "%s lists a member whose id is no node's (%02x%02x%02x%02x...)",
                      observer->name, member->id[0], member->id[1], member->id[2], member->id[3]);
        return;
    }
    if (strcmp(member->name, subject->name) != 0 ||
        strcmp(member->address, subject->address) != 0) {
        sim_violation(sim, "member-record", (int32_t) observer->index, (int32_t) subject->index,
                      "%s lists %s as %.32s at %.64s", observer->name, subject->name, member->name,
                      member->address);
        return;
    }
    if (subject == observer) {
        if (member->state != MEMBER_ALIVE && member->state != MEMBER_LEFT)
            sim_violation(sim, "self-not-alive", (int32_t) observer->index, -1,
                          "%s sees itself %s at incarnation %llu", observer->name,
                          member_state_name(member->state),
                          (unsigned long long) member->incarnation);
        return;
    }
    if (member->incarnation > subject->max_incarnation) {
        sim_violation(sim, "incarnation-invented", (int32_t) observer->index,
                      (int32_t) subject->index,
                      "%s lists %s at incarnation %llu, above the %llu it ever used",
                      observer->name, subject->name, (unsigned long long) member->incarnation,
                      (unsigned long long) subject->max_incarnation);
        return;
    }
    bool entered = added || old_state != member->state;
    sim_stats_t *st = sim_stats(sim);
    if (entered && member->state == MEMBER_SUSPECT) {
        st->suspicions++;
        if (subject->slow)
            st->suspicions_of_slow++;
    }
    if (entered && member->state == MEMBER_DEAD) {
        st->dead_declarations++;
        if (subject->up && member->incarnation >= subject->boot_incarnation) {
            if (subject->group != observer->group || sim_partition_recent(sim)) {
                st->false_dead_partition++;
            } else {
                st->false_dead++;
                if (subject->false_dead_inc != member->incarnation) {
                    subject->false_dead_inc = member->incarnation;
                    st->false_dead_episodes++;
                }
            }
        }
    }
}

void sim_check_incarnation(sim_t *sim, sim_node_t *node, uint64_t inc)
{
    if (inc <= node->disk.incarnation)
        sim_violation(sim, "incarnation-monotonic", (int32_t) node->index, -1,
                      "%s persists incarnation %llu after %llu", node->name,
                      (unsigned long long) inc, (unsigned long long) node->disk.incarnation);
}

static uint32_t s_up_count(sim_t *sim)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < sim_node_count(sim); i++)
        n += sim_node(sim, i)->up ? 1 : 0;
    return n;
}

static bool s_live(member_state_t s)
{
    return s == MEMBER_ALIVE || s == MEMBER_SUSPECT;
}

/* Exact: observer lists every up node as live and no down node as live. */
static bool s_view_exact(sim_t *sim, sim_node_t *observer, uint32_t n_up)
{
    membership_t *m = sim_membership(observer);
    uint32_t live_up = 0;
    for (size_t i = 0; i < membership_size(m); i++) {
        const member_t *mb = membership_at(m, i);
        if (!s_live(mb->state))
            continue;
        sim_node_t *subject = sim_node_by_id(sim, mb->id);
        if (!subject || !subject->up)
            return false;
        live_up++;
    }
    return live_up == n_up;
}

uint32_t sim_view_checksums(sim_t *sim, bool *all_live_agree)
{
    uint32_t n = sim_node_count(sim), n_up = s_up_count(sim), distinct = 0;
    uint64_t *sums = calloc(n ? n : 1, sizeof *sums);
    bool agree = true;
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *node = sim_node(sim, i);
        if (!node->up)
            continue;
        uint64_t c = membership_checksum(sim_membership(node));
        bool seen = false;
        for (uint32_t k = 0; sums && k < distinct && !seen; k++)
            seen = sums[k] == c;
        if (!seen && sums)
            sums[distinct++] = c;
        if (agree && !s_view_exact(sim, node, n_up))
            agree = false;
    }
    free(sums);
    *all_live_agree = agree && distinct <= 1;
    return distinct;
}

bool sim_views_converged(sim_t *sim)
{
    uint32_t n_up = s_up_count(sim);
    bool first = true;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < sim_node_count(sim); i++) {
        sim_node_t *node = sim_node(sim, i);
        if (!node->up)
            continue;
        membership_t *m = sim_membership(node);
        if (membership_alive_count(m) != n_up)
            return false;
        if (first)
            sum = membership_checksum(m);
        else if (membership_checksum(m) != sum)
            return false;
        first = false;
    }
    return !first;
}

bool sim_check_periodic(sim_t *sim)
{
    uint32_t n = sim_node_count(sim), n_up = 0;
    bool quick = true;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *node = sim_node(sim, i);
        if (!node->up)
            continue;
        membership_t *m = sim_membership(node);
        const member_t *self = membership_self(m);
        if (self->state != MEMBER_ALIVE)
            sim_violation(sim, "self-not-alive", (int32_t) i, -1, "%s sees itself %s", node->name,
                          member_state_name(self->state));
        uint64_t c = membership_checksum(m);
        if (n_up == 0)
            sum = c;
        else if (c != sum)
            quick = false;
        n_up++;
    }
    if (!sim_settling(sim) || !quick)
        return false;
    /* Cheap test first (every view has n_up live members and one checksum),
     * then the exact one. */
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *node = sim_node(sim, i);
        if (node->up && membership_alive_count(sim_membership(node)) != n_up)
            return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *node = sim_node(sim, i);
        if (node->up && !s_view_exact(sim, node, n_up))
            return false;
    }
    return true;
}

void sim_check_settle_failed(sim_t *sim)
{
    uint32_t n = sim_node_count(sim);
    /* A live node listed dead or missing by a live node. */
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *obs = sim_node(sim, i);
        if (!obs->up)
            continue;
        membership_t *m = sim_membership(obs);
        for (uint32_t j = 0; j < n; j++) {
            sim_node_t *sub = sim_node(sim, j);
            if (!sub->up || sub == obs)
                continue;
            const member_t *mb = membership_find(m, sub->id);
            if (!mb) {
                sim_violation(sim, "live-listed-dead", (int32_t) i, (int32_t) j,
                              "%s does not list live %s at all (up since t=%llums)", obs->name,
                              sub->name, (unsigned long long) sub->up_since);
                return;
            }
            if (!s_live(mb->state)) {
                sim_violation(
                    sim, "live-listed-dead", (int32_t) i, (int32_t) j,
                    "%s lists live %s as %s at incarnation %llu since t=%llums "
                    "(%s is at incarnation %llu, up since t=%llums)",
                    obs->name, sub->name, member_state_name(mb->state),
                    (unsigned long long) mb->incarnation, (unsigned long long) mb->state_since_ms,
                    sub->name,
                    (unsigned long long) membership_self(sim_membership(sub))->incarnation,
                    (unsigned long long) sub->up_since);
                return;
            }
        }
    }
    /* Everyone lists everyone live: then the checksums (flags) differ. */
    sim_node_t *first = NULL;
    for (uint32_t i = 0; i < n; i++) {
        sim_node_t *node = sim_node(sim, i);
        if (!node->up)
            continue;
        if (!first) {
            first = node;
            continue;
        }
        membership_t *a = sim_membership(first), *b = sim_membership(node);
        if (membership_checksum(a) != membership_checksum(b)) {
            sim_violation(sim, "views-diverged", (int32_t) first->index, (int32_t) node->index,
                          "%s has checksum %016llx with %zu live, %s has %016llx with %zu live",
                          first->name, (unsigned long long) membership_checksum(a),
                          membership_alive_count(a), node->name,
                          (unsigned long long) membership_checksum(b), membership_alive_count(b));
            return;
        }
    }
    sim_violation(sim, "views-diverged", -1, -1,
                  "the views never matched at a periodic check of the settle phase");
}
