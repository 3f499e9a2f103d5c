/*
 * transport.h: authenticated peer messaging over CurveZMQ (the real driver's
 * network; the simulator replaces it).
 *
 * Sockets
 *   - the ZAP handler: a REP socket on inproc://zeromq.zap.01, served by a
 *     process-wide actor thread. libzmq allows one binding of that endpoint
 *     per context and CZMQ uses one context per process, so it is shared: the
 *     first transport_new starts it (before creating any CURVE socket), every
 *     transport holds a reference, the last transport_destroy stops it. Any
 *     number of transports may therefore live in one process (tests, several
 *     nodes in one process). It accepts every CURVE client in the ZAP domain
 *     "gaggle" and sets the connection's User-Id to the Z85 of the client's
 *     long-term key, so every received frame names the key that sent it
 *     (zframe_meta(frame, "User-Id")); it refuses every other domain and
 *     mechanism, so no other ZAP handler can be used in the same process.
 *   - one ROUTER bound at --bind, CURVE server: every message a node receives
 *     arrives here. A handshake (garbage, wrong mechanism, bad CURVE, or
 *     silence for 10 s) that fails is counted through a socket monitor.
 *   - outgoing: one DEALER per peer address, CURVE client with the node's own
 *     key pair, created on demand and kept in a bounded least-recently-used
 *     set (a fleet of thousands must not hold a socket per member). An
 *     evicted connection still flushes what it queued for up to 200 ms.
 *
 * The ROUTER's CURVE server key is the fleet transport key: one well-known
 * key pair every node derives, so that an address is all a node needs to
 * reach a peer. Server identity is therefore not what CURVE proves here;
 * instead every message is trusted only for the CLIENT key of the connection
 * it arrived on, and only once that key has shown a certificate signed by a
 * trusted operator (HELLO). Replies are never read from an outgoing socket:
 * node B answers node A by sending to A's own ROUTER, where A authenticates B.
 *
 * Trust protocol
 *   - a new DEALER sends HELLO {cert, address} first;
 *   - the receiver verifies the certificate against the trust store and that
 *     its curve key equals the connection's User-Id, then marks the key proven;
 *   - a message from an unproven key is dropped, counted, and answered with
 *     HELLO_REQ on the same connection (the sender then re-sends HELLO: this
 *     covers a receiver that restarted and forgot);
 *   - a message whose envelope sender differs from the connection's key is
 *     dropped and counted as spoofed.
 *
 * Bounds: messages up to WIRE_MAX_MESSAGE (a frame a little larger is
 * refused and counted as oversized; a much larger one makes libzmq drop the
 * connection, uncounted); per-connection queues of 1,000 messages in and out
 * on the ROUTER, 2,000 out per DEALER; at most max_peers outgoing sockets and
 * 65,536 proven keys.
 *
 * Threads and the loop: one thread uses a transport (the loop's). Callbacks
 * run from the loop. transport_send and transport_forget_address may be
 * called from any handler of the loop, including timers. transport_destroy
 * must not be called from one of this transport's own callbacks nor from a
 * timer handler of the loop it is attached to (zloop may still call the
 * readers that polled ready in that iteration): destroy it from a poller or
 * reader handler of another object, or after zloop_start returns.
 */
#ifndef GG_TRANSPORT_H
#define GG_TRANSPORT_H

#include "cert.h"
#include "wire.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define TRANSPORT_ADDRESS_MAX       255
#define TRANSPORT_DEFAULT_MAX_PEERS 256

typedef enum {
    TRANSPORT_REFUSED_UNPROVEN = 0, /* no certificate shown for the connection's key */
    TRANSPORT_REFUSED_UNTRUSTED,    /* certificate signed by an unknown operator */
    TRANSPORT_REFUSED_BAD_SIGNATURE,
    TRANSPORT_REFUSED_EXPIRED,
    TRANSPORT_REFUSED_REVOKED,
    TRANSPORT_REFUSED_KEY_MISMATCH, /* certificate for another key than the connection's */
    TRANSPORT_REFUSED_SPOOFED,      /* envelope sender is not the connection's key */
    TRANSPORT_REFUSED_MALFORMED,
    TRANSPORT_REFUSED_OVERSIZED,
    TRANSPORT_REFUSED_VERSION,
    TRANSPORT_REFUSED_HANDSHAKE, /* ZMTP/CURVE handshake failures seen by the monitor */
    TRANSPORT_REFUSED_COUNT
} transport_refused_t;

const char *transport_refused_name(transport_refused_t reason);

/* Counters. msgs_in counts every envelope that decoded, refused ones included
 * (refusals are counted again under their reason); bytes_in every payload
 * frame received. msgs_out/bytes_out count what was queued, HELLO and
 * HELLO_REQ included. */
typedef struct {
    uint64_t msgs_in[256], msgs_out[256]; /* by wire type (low 8 bits) */
    uint64_t bytes_in, bytes_out;
    uint64_t refused[TRANSPORT_REFUSED_COUNT];
    uint64_t send_dropped; /* a full or failing outgoing queue */
    uint64_t peers_open, peers_evicted;
} transport_stats_t;

/* A delivered message: the envelope is decoded and its sender proven. Valid
 * only during the callback. */
typedef struct {
    const wire_msg_t *msg;
    const cert_t *cert; /* the sender's verified certificate */
    size_t raw_len;
} transport_delivery_t;

typedef void(transport_deliver_fn)(void *arg, const transport_delivery_t *delivery);

/* A peer certificate was verified for the first time (or again after a
 * change): the driver may want its address. */
typedef void(transport_peer_fn)(void *arg, const cert_t *cert, const char *address);

typedef struct {
    const node_key_t *key; /* copied */
    const cert_t *cert;    /* copied */
    trust_t *trust;        /* borrowed: must outlive the transport */
    const char *bind;      /* tcp://IP:PORT */
    const char *advertise; /* tcp://HOST:PORT others reach us at; NULL = the bound endpoint */
    size_t max_peers;      /* outgoing sockets kept; 0 = default */
    transport_deliver_fn *deliver;
    transport_peer_fn *on_peer; /* may be NULL */
    void *arg;
    uint64_t (*wall_clock)(void); /* unix seconds for expiry checks; NULL = time() */
} transport_config_t;

typedef struct _transport_t transport_t;

/* Creates the sockets: takes a reference on the ZAP handler (starting it if
 * this is the process's first transport), then the ROUTER bound at cfg->bind.
 * Returns NULL and fills errbuf (may be NULL) on failure: address in use, bad
 * endpoint, address longer than TRANSPORT_ADDRESS_MAX. */
transport_t *transport_new(const transport_config_t *cfg, char *errbuf, size_t errlen);
void transport_destroy(transport_t **self_p);

/* Registers the transport's sockets with the loop (once; the loop must
 * outlive the transport or the transport be destroyed first). Returns 0 or
 * GG_ENOMEM. */
int transport_attach(transport_t *self, zloop_t *loop);

/* Sends one encoded wire message to the node at address (tcp://HOST:PORT),
 * opening (and greeting) a connection on demand, evicting the least recently
 * used one when max_peers are open. Never blocks: a full queue drops the
 * message and returns GG_EBUSY; a bad address is GG_EINVAL, a message over
 * WIRE_MAX_MESSAGE GG_ETOOBIG (all counted in send_dropped). `type` is the
 * message's wire type, for the per-type counters. */
int transport_send(transport_t *self, const char *address, uint32_t type, const uint8_t *data,
                   size_t len);

/* Re-checks every proven certificate (after a revocation or a trust reload);
 * keys that no longer pass are forgotten. */
void transport_revalidate(transport_t *self);

/* Closes the outgoing connection to address, if any. */
void transport_forget_address(transport_t *self, const char *address);

/* The verified certificate of a proven key, or NULL. */
const cert_t *transport_peer_cert(transport_t *self, const uint8_t key[CERT_PUBLIC_LEN]);

/* The bound endpoint (with the real port when bind used port 0). */
const char *transport_endpoint(transport_t *self);

const transport_stats_t *transport_stats(transport_t *self);

/* Every node's ROUTER uses this CURVE server key pair (see above). */
void transport_fleet_keypair(uint8_t public_key[32], uint8_t secret_key[32]);

#endif
