/*
 * agent.h: the gaggled daemon as one object: its configuration, identity
 * (node key and certificate), trust store, LMDB store, metrics, HTTP server
 * and the zloop that drives them all on one thread.
 *
 * Life cycle (gaggled.c):
 *     agent_signals_block();              first thing in main, before any
 *                                         CZMQ/ZeroMQ call or thread
 *     config_parse_args + config_validate
 *     agent = agent_new(&cfg, argc, argv);
 *     agent_start(agent, err, len);       identity, trust, store, loop, HTTP
 *     agent_run(agent);                   until SIGTERM/SIGINT
 *     agent_destroy(&agent);              graceful shutdown
 *
 * Subsystems added later (membership, plans, executor) hang off agent_t the
 * same way: created in agent_start, registered with the loop, given routes
 * and metrics through the accessors below, and torn down in reverse order.
 */
#ifndef GG_AGENT_H
#define GG_AGENT_H

#include "cert.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "scaler.h"
#include "store.h"

#include <czmq.h>

#define AGENT_NODE_ID_LEN (CERT_PUBLIC_LEN * 2) /* hex characters */

typedef struct _agent_t agent_t;

/* Blocks SIGTERM, SIGINT, SIGHUP, SIGCHLD and SIGPIPE in the calling thread
 * (so in every thread started after) and turns off CZMQ's own handler; the
 * agent reads them from a signalfd. Call before any CZMQ or ZeroMQ call.
 * Returns 0 or GG_EINTERNAL. */
int agent_signals_block(void);

/* Takes ownership of *cfg, which must have passed config_validate (cfg is
 * left zeroed). argc/argv are kept, not copied, so SIGHUP can parse them again
 * with the re-read file. Returns NULL when out of memory. */
agent_t *agent_new(config_t *cfg, int argc, char **argv);

/* Shuts down whatever was started, in reverse order, and frees. NULL-safe. */
void agent_destroy(agent_t **self_p);

/* Loads the node key and certificate, loads trust and checks the node's own
 * certificate against it, opens the store, starts the loop and the HTTP
 * server. On failure err holds one line for the operator (the caller exits
 * 1) and the agent can only be destroyed. */
int agent_start(agent_t *self, char *err, size_t errlen);

/* Runs the loop until SIGTERM or SIGINT, then stops serving. Returns 0 after
 * a clean shutdown, or a negative GG_E* code when the loop failed. */
int agent_run(agent_t *self);

/* What SIGHUP does: re-parses the flags and the config file, reloads trust,
 * the node certificate and the HTTP token; applies all of it only when all of
 * it is good, else keeps the running state and logs why. Options that need a
 * restart keep their running values (logged). Returns 0 when applied. */
int agent_reload(agent_t *self);

/* Accessors for the subsystems; the pointers live as long as the agent
 * (the trust store and config are replaced by a reload: do not keep them
 * across loop iterations). */
const config_t *agent_config(const agent_t *self);
const char *agent_node_id(const agent_t *self); /* hex of the CURVE public key */
const node_key_t *agent_node_key(const agent_t *self);
const cert_t *agent_node_cert(const agent_t *self);
trust_t *agent_trust(agent_t *self);
store_t *agent_store(agent_t *self);
metrics_t *agent_metrics(agent_t *self);
http_t *agent_http(agent_t *self);
zloop_t *agent_loop(agent_t *self);
/* What --check-config checks beyond config_validate: the node key and
 * certificate load, match, name this node and verify against the trusted
 * operator keys. Returns 0, or an error with one sentence in err. */
int agent_check_identity(const config_t *cfg, char *err, size_t errlen);

/* The fleet scaler's counters (scaler.h), or NULL before the start. */
const scaler_stats_t *agent_scaler_stats(const agent_t *self);

#endif
