/*
 * cluster.h: the real driver of the membership state machine.
 *
 * It wires coordination/membership (pure SWIM + Lifeguard) to the CurveZMQ
 * transport, the LMDB store and the agent's loop:
 *
 *   transport delivery --decode--> membership_handle ----+
 *   loop ticker (one zloop timer) --> membership_tick ---+--> drain outputs:
 *       SEND         encode, transport_send to the address
 *       INCARNATION  persisted (meta "incarnation") before anything more is sent
 *       CHANGED      member record persisted (members db), logged, counted
 *       REMOVED      member record deleted
 *
 * At start the node's incarnation is the stored one + 1 (a restarted node is
 * never stuck dead: alive(i+1) beats dead(i)), and the last-known members are
 * restored as hints to contact, so a fleet restarted whole finds itself.
 *
 * Other subsystems register handlers for their wire types and send through
 * cluster_send; messages of unknown types are ignored.
 */
#ifndef GG_CLUSTER_H
#define GG_CLUSTER_H

#include "membership.h"
#include "transport.h"

#include <czmq.h>

typedef struct _agent_t agent_t;
typedef struct _cluster_t cluster_t;

typedef void(cluster_handler_fn)(void *arg, const transport_delivery_t *delivery);

/* Creates the transport (binding --bind) and the membership, restores state
 * from the store, adds the --join seeds, registers with the agent's loop,
 * metrics and HTTP routes (GET /v1/members). On failure err holds one line. */
cluster_t *cluster_new(agent_t *agent, char *err, size_t errlen);
void cluster_destroy(cluster_t **self_p);

/* Starts a graceful leave; returns at once. cluster_leave_done() becomes true
 * when the announcement has been sent its full count or after a deadline. */
void cluster_leave(cluster_t *self);
bool cluster_leave_done(cluster_t *self);

/* Applies a reloaded configuration: new join seeds, re-checked certificates. */
void cluster_reload(cluster_t *self);

/* Registers fn for messages of wire type `type` (one handler per type). */
int cluster_on_message(cluster_t *self, uint32_t type, cluster_handler_fn *fn, void *arg);

/* fn is called for each signed node command this node applies (a relayed
 * drain, a revocation) so that it enters the audit trail. One subscriber. */
typedef void(cluster_audit_fn)(void *arg, const char *type, const char *subject,
                               const uint8_t signer[32], uint64_t issued);
void cluster_on_audit(cluster_t *self, cluster_audit_fn *fn, void *arg);

/* fn is called after membership changed (a member added, removed or changed
 * state or flags), once per batch of changes. One subscriber. */
void cluster_on_members_changed(cluster_t *self, void (*fn)(void *arg), void *arg);

/* Sends an encoded wire message to a member's address. */
int cluster_send(cluster_t *self, const char *address, uint32_t type, const uint8_t *data,
                 size_t len);

/* The local monotonic clock the cluster feeds the core (ms). */
uint64_t cluster_now_ms(void);

membership_t *cluster_membership(cluster_t *self);
transport_t *cluster_transport(cluster_t *self);

/* Relays a verified signed node command (drain) to the live member(s)
 * named `node` (a name or a 64-hex key), which verify and apply it.
 * Returns 0 when sent, GG_ENOTFOUND (no such member), GG_EBUSY (it is dead
 * or left), GG_ETOOBIG. */
int cluster_relay_command(cluster_t *self, const char *node, const char *text, size_t len);

/* The member chosen for a role named by `key` (rendezvous_key of the role):
 * the live member (alive or suspect; with skip_draining, not draining) with
 * the highest rendezvous score, ties to the lower id; NULL when none. Every
 * node computes it from its own view: no election. */
const member_t *cluster_chosen(cluster_t *self, uint64_t key, bool skip_draining);

/* Marks this node draining (or not): gossiped to every member. */
int cluster_set_draining(cluster_t *self, bool draining);
/* Sets and clears MEMBER_FLAG_* bits of this node: gossiped to every member. */
int cluster_set_flags(cluster_t *self, uint32_t set, uint32_t clear);

/* The members as the JSON of GET /v1/members ({"members": [...]}). */
struct json_t *cluster_members_json(cluster_t *self);

#endif
