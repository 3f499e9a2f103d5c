/*
 * transport.c: CurveZMQ peer messaging with certificate-proven senders.
 * See transport.h for the socket layout and the trust protocol.
 *
 * Notes on the pieces that are easy to get wrong:
 *   - The ZAP handler is process-wide (libzmq allows one binding of
 *     inproc://zeromq.zap.01 per context, and CZMQ uses one context per
 *     process): a reference-counted actor thread, started by the first
 *     transport_new and stopped by the last transport_destroy.
 *   - zloop copies its reader table at each rebuild and, after its timer
 *     phase, calls the readers whose sockets polled ready, without checking
 *     that they still exist. A timer handler that sends (the agent drives
 *     its whole protocol from one timer) may evict a DEALER whose poll item
 *     is ready in the same iteration. So the DEALER reader takes the
 *     transport as its argument and only uses the socket after finding that
 *     exact pointer among the live peers; it never reads an unknown one.
 *   - The ROUTER's monitor is a PAIR that libzmq writes to from its I/O
 *     thread with a blocking send: our end has no receive limit so a stalled
 *     loop can never stall libzmq (one small event per failed handshake).
 */
#include "transport.h"
#include "gg_error.h"
#include "gg_log.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZAP_ENDPOINT            "inproc://zeromq.zap.01"
#define ZAP_DOMAIN              "gaggle"
#define PROVEN_MAX              65536
#define HELLO_RESEND_MIN_MS     500
#define PEER_SNDHWM             2000
#define PEER_RCVHWM             100
#define PEER_MAX_INCOMING       (64 * 1024) /* a DEALER only ever receives HELLO_REQ */
#define PEER_LINGER_MS          200         /* an evicted peer still flushes briefly */
#define ROUTER_RCVHWM           1000        /* per connection */
#define ROUTER_SNDHWM           1000
#define ROUTER_HANDSHAKE_IVL_MS 10000 /* a silent connection is dropped after this */
#define ROUTER_BATCH            64    /* messages handled per reader call */
#define DEALER_BATCH            16

typedef struct {
    zsock_t *dealer;
    char address[TRANSPORT_ADDRESS_MAX + 1];
    uint64_t last_used; /* a use counter, for LRU eviction */
    int64_t last_hello_ms;
} peer_t;

typedef struct {
    cert_t cert;
    char address[TRANSPORT_ADDRESS_MAX + 1];
} proven_t;

struct _transport_t {
    msgpack_zone *zone; /* decoded messages, emptied after each (wire_decode_in) */
    node_key_t key;
    cert_t cert;
    trust_t *trust;
    char advertise[TRANSPORT_ADDRESS_MAX + 1];
    char endpoint[TRANSPORT_ADDRESS_MAX + 1];
    size_t max_peers;
    transport_deliver_fn *deliver;
    transport_peer_fn *on_peer;
    void *arg;
    uint64_t (*wall_clock)(void);

    bool zap_held; /* this transport holds a reference on the ZAP handler */
    zsock_t *router;
    bool monitoring;     /* zmq_socket_monitor is active on the ROUTER */
    zsock_t *monitor_zs; /* PAIR receiving the ROUTER's monitor events */
    zloop_t *loop;
    zhashx_t *peers;  /* address -> peer_t */
    zhashx_t *proven; /* z85 key -> proven_t */
    uint64_t use_counter;
    uint8_t *hello; /* our encoded HELLO */
    size_t hello_len;
    transport_stats_t stats;
};

static const char *s_refused_names[TRANSPORT_REFUSED_COUNT] = {
    "unproven", "untrusted", "bad_signature", "expired", "revoked",   "key_mismatch",
    "spoofed",  "malformed", "oversized",     "version", "handshake",
};

const char *transport_refused_name(transport_refused_t reason)
{
    if ((unsigned) reason >= TRANSPORT_REFUSED_COUNT)
        return "unknown";
    return s_refused_names[reason];
}

static uint64_t s_time_now(void)
{
    return (uint64_t) time(NULL);
}

static void s_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

void transport_fleet_keypair(uint8_t public_key[32], uint8_t secret_key[32])
{
    uint8_t seed[crypto_box_SEEDBYTES];
    static const char label[] = "gaggle fleet transport key v1";
    crypto_generichash(seed, sizeof seed, (const uint8_t *) label, sizeof label - 1, NULL, 0);
    crypto_box_seed_keypair(public_key, secret_key, seed);
    sodium_memzero(seed, sizeof seed);
}

/* ---- the process-wide ZAP handler ---- */

static pthread_mutex_t s_zap_mutex = PTHREAD_MUTEX_INITIALIZER;
static zactor_t *s_zap_actor; /* guarded by s_zap_mutex */
static size_t s_zap_users;    /* guarded by s_zap_mutex */

/* Answers one ZAP request (RFC 27): 200 with User-Id = Z85(client key) for
 * CURVE in our domain; 400 for anything else. The request comes from libzmq
 * itself, but its frames are still checked before use. */
static void s_zap_answer(zsock_t *handler)
{
    zmsg_t *req = zmsg_recv(handler);
    if (!req)
        return;
    char *version = zmsg_popstr(req);
    char *sequence = zmsg_popstr(req);
    char *domain = zmsg_popstr(req);
    char *address = zmsg_popstr(req);
    char *identity = zmsg_popstr(req);
    char *mechanism = zmsg_popstr(req);
    zframe_t *cred = zmsg_pop(req);
    char user_id[41] = "";
    const char *status = "400", *text = "refused";
    if (version && strcmp(version, "1.0") == 0 && domain && strcmp(domain, ZAP_DOMAIN) == 0 &&
        mechanism && strcmp(mechanism, "CURVE") == 0 && cred && zframe_size(cred) == 32 &&
        zmq_z85_encode(user_id, zframe_data(cred), 32)) {
        status = "200";
        text = "OK";
    } else {
        user_id[0] = '\0';
    }
    zmsg_t *rep = zmsg_new();
    if (rep) {
        zmsg_addstr(rep, "1.0");
        zmsg_addstr(rep, sequence ? sequence : "");
        zmsg_addstr(rep, status);
        zmsg_addstr(rep, text);
        zmsg_addstr(rep, user_id);
        zmsg_addmem(rep, NULL, 0);
        if (zmsg_send(&rep, handler) != 0)
            zmsg_destroy(&rep);
    }
    zframe_destroy(&cred);
    zstr_free(&version);
    zstr_free(&sequence);
    zstr_free(&domain);
    zstr_free(&address);
    zstr_free(&identity);
    zstr_free(&mechanism);
    zmsg_destroy(&req);
}

/* The actor owns the bound REP socket it is given and serves it until told
 * to stop ($TERM on its pipe) or the context ends. Interrupts do not stop it:
 * the agent decides when to stop, and a missing handler would make every
 * peer unprovable. */
static void s_zap_actor_fn(zsock_t *pipe, void *args)
{
    zsock_t *handler = args;
    zpoller_t *poller = zpoller_new(pipe, handler, NULL);
    zsock_signal(pipe, 0);
    if (poller)
        zpoller_set_nonstop(poller, true);
    while (poller) {
        zsock_t *which = zpoller_wait(poller, -1);
        if (which == handler) {
            s_zap_answer(handler);
        } else if (which == pipe) {
            zmsg_t *cmd = zmsg_recv(pipe);
            char *name = cmd ? zmsg_popstr(cmd) : NULL;
            bool term = !name || strcmp(name, "$TERM") == 0;
            zstr_free(&name);
            zmsg_destroy(&cmd);
            if (term)
                break;
        } else if (zpoller_terminated(poller)) {
            break;
        }
    }
    zpoller_destroy(&poller);
    /* Closing a socket releases its inproc endpoint only later, in libzmq's
     * reaper; unbinding releases it now, so that a transport created right
     * after the last one was destroyed can start the handler again. */
    zsock_unbind(handler, ZAP_ENDPOINT);
    zsock_destroy(&handler);
}

/* Takes a reference on the ZAP handler, starting it on first use. */
static int s_zap_acquire(char *errbuf, size_t errlen)
{
    int rc = GG_OK;
    pthread_mutex_lock(&s_zap_mutex);
    if (s_zap_users == 0) {
        zsock_t *handler = zsock_new(ZMQ_REP);
        if (!handler) {
            s_errf(errbuf, errlen, "cannot create the ZAP handler socket");
            rc = GG_ENOMEM;
            goto out;
        }
        zsock_set_linger(handler, 0);
        if (zsock_bind(handler, ZAP_ENDPOINT) != 0) {
            s_errf(errbuf, errlen, "cannot bind the ZAP handler at %s: %s", ZAP_ENDPOINT,
                   zmq_strerror(zmq_errno()));
            zsock_destroy(&handler);
            rc = GG_EBUSY;
            goto out;
        }
        /* The actor owns the socket from here (thread creation orders memory). */
        s_zap_actor = zactor_new(s_zap_actor_fn, handler);
        if (!s_zap_actor) {
            zsock_destroy(&handler);
            s_errf(errbuf, errlen, "cannot start the ZAP handler");
            rc = GG_ENOMEM;
            goto out;
        }
    }
    s_zap_users++;
out:
    pthread_mutex_unlock(&s_zap_mutex);
    return rc;
}

static void s_zap_release(void)
{
    pthread_mutex_lock(&s_zap_mutex);
    assert(s_zap_users > 0);
    if (--s_zap_users == 0)
        zactor_destroy(&s_zap_actor);
    pthread_mutex_unlock(&s_zap_mutex);
}

/* ---- messages we originate ---- */

static int s_build_hello(transport_t *self)
{
    wire_writer_t *w = wire_writer_new(WIRE_HELLO, self->key.public_key, 2);
    if (!w)
        return GG_ENOMEM;
    wire_put_key(w, "cert");
    cert_pack(&self->cert, wire_writer_packer(w));
    wire_put_str(w, "addr", self->advertise);
    const uint8_t *data;
    size_t len;
    int rc = wire_writer_finish(w, &data, &len);
    if (rc == 0) {
        self->hello = malloc(len);
        if (!self->hello) {
            rc = GG_ENOMEM;
        } else {
            memcpy(self->hello, data, len);
            self->hello_len = len;
        }
    }
    wire_writer_destroy(&w);
    return rc;
}

/* Sends one message (preceded by a routing id on the ROUTER) without
 * blocking. GG_EBUSY when the queue is full or the socket refuses. */
static int s_send_frame(zsock_t *sock, const void *rid, size_t rid_len, const uint8_t *data,
                        size_t len)
{
    void *handle = zsock_resolve(sock);
    if (rid && zmq_send(handle, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return GG_EBUSY;
    if (zmq_send(handle, data, len, ZMQ_DONTWAIT) < 0)
        return GG_EBUSY;
    return GG_OK;
}

static void s_reply_hello_req(transport_t *self, const void *rid, size_t rid_len)
{
    wire_writer_t *w = wire_writer_new(WIRE_HELLO_REQ, self->key.public_key, 0);
    const uint8_t *data;
    size_t len;
    if (w && wire_writer_finish(w, &data, &len) == 0 &&
        s_send_frame(self->router, rid, rid_len, data, len) == 0) {
        self->stats.msgs_out[WIRE_HELLO_REQ]++;
        self->stats.bytes_out += len;
    }
    wire_writer_destroy(&w);
}

/* ---- outgoing peers ---- */

static void s_peer_destroy(void **item)
{
    peer_t *peer = (peer_t *) *item;
    if (!peer)
        return;
    zsock_destroy(&peer->dealer);
    free(peer);
    *item = NULL;
}

static int s_dealer_reader(zloop_t *loop, zsock_t *sock, void *arg);

static void s_peer_send_hello(transport_t *self, peer_t *peer)
{
    int64_t now = zclock_mono();
    if (peer->last_hello_ms && now - peer->last_hello_ms < HELLO_RESEND_MIN_MS)
        return;
    if (s_send_frame(peer->dealer, NULL, 0, self->hello, self->hello_len) == 0) {
        peer->last_hello_ms = now;
        self->stats.msgs_out[WIRE_HELLO]++;
        self->stats.bytes_out += self->hello_len;
    }
}

/* Closes one outgoing connection: off the loop, out of the table. */
static void s_peer_close(transport_t *self, peer_t *peer)
{
    if (self->loop)
        zloop_reader_end(self->loop, peer->dealer);
    zhashx_delete(self->peers, peer->address); /* destroys peer */
}

static void s_evict_lru(transport_t *self)
{
    peer_t *oldest = NULL;
    for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        if (!oldest || p->last_used < oldest->last_used)
            oldest = p;
    if (!oldest)
        return;
    gg_debug("transport: closing the least recently used connection to %s", oldest->address);
    self->stats.peers_evicted++;
    s_peer_close(self, oldest);
}

static peer_t *s_peer_find_socket(transport_t *self, const zsock_t *sock)
{
    for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        if (p->dealer == sock)
            return p;
    return NULL;
}

/* The connection to address, opened (and greeted) on demand. NULL for an
 * address that is not tcp:// or too long, or when a socket cannot be made. */
static peer_t *s_peer_get(transport_t *self, const char *address)
{
    peer_t *peer = zhashx_lookup(self->peers, address);
    if (peer)
        return peer;
    size_t alen = strnlen(address, TRANSPORT_ADDRESS_MAX + 1);
    if (alen > TRANSPORT_ADDRESS_MAX || alen <= 6 || strncmp(address, "tcp://", 6) != 0)
        return NULL;
    while (zhashx_size(self->peers) >= self->max_peers)
        s_evict_lru(self);
    peer = calloc(1, sizeof *peer);
    if (!peer)
        return NULL;
    memcpy(peer->address, address, alen + 1);
    peer->dealer = zsock_new(ZMQ_DEALER);
    if (!peer->dealer) {
        free(peer);
        return NULL;
    }
    uint8_t fleet_pub[32], fleet_sec[32];
    transport_fleet_keypair(fleet_pub, fleet_sec);
    sodium_memzero(fleet_sec, sizeof fleet_sec);
    zsock_set_curve_serverkey_bin(peer->dealer, fleet_pub);
    zsock_set_curve_publickey_bin(peer->dealer, self->key.public_key);
    zsock_set_curve_secretkey_bin(peer->dealer, self->key.secret_key);
    zsock_set_sndhwm(peer->dealer, PEER_SNDHWM);
    zsock_set_rcvhwm(peer->dealer, PEER_RCVHWM);
    zsock_set_linger(peer->dealer, PEER_LINGER_MS);
    zsock_set_reconnect_ivl(peer->dealer, 100);
    zsock_set_reconnect_ivl_max(peer->dealer, 5000);
    zsock_set_maxmsgsize(peer->dealer, PEER_MAX_INCOMING);
    if (zsock_connect(peer->dealer, "%s", address) != 0) {
        gg_debug("transport: cannot connect to %s: %s", address, zmq_strerror(zmq_errno()));
        zsock_destroy(&peer->dealer);
        free(peer);
        return NULL;
    }
    if (zhashx_insert(self->peers, peer->address, peer) != 0) {
        zsock_destroy(&peer->dealer);
        free(peer);
        return NULL;
    }
    if (self->loop && zloop_reader(self->loop, peer->dealer, s_dealer_reader, self) != 0) {
        zhashx_delete(self->peers, address);
        return NULL;
    }
    self->stats.peers_open++;
    s_peer_send_hello(self, peer);
    return peer;
}

int transport_send(transport_t *self, const char *address, uint32_t type, const uint8_t *data,
                   size_t len)
{
    assert(self);
    if (!address || !data || len == 0) {
        self->stats.send_dropped++;
        return GG_EINVAL;
    }
    if (len > WIRE_MAX_MESSAGE) {
        self->stats.send_dropped++;
        return GG_ETOOBIG;
    }
    peer_t *peer = s_peer_get(self, address);
    if (!peer) {
        self->stats.send_dropped++;
        return GG_EINVAL;
    }
    peer->last_used = ++self->use_counter;
    if (s_send_frame(peer->dealer, NULL, 0, data, len) != 0) {
        self->stats.send_dropped++;
        return GG_EBUSY;
    }
    self->stats.msgs_out[type & 0xff]++;
    self->stats.bytes_out += len;
    return GG_OK;
}

void transport_forget_address(transport_t *self, const char *address)
{
    assert(self);
    if (!address)
        return;
    peer_t *peer = zhashx_lookup(self->peers, address);
    if (peer)
        s_peer_close(self, peer);
}

/* Messages arriving on an outgoing socket come from whoever holds the fleet
 * key, so only HELLO_REQ (a request for our public certificate) is honoured.
 * `sock` may be a socket closed earlier in this loop iteration (see the top
 * of this file): it is used only once found among the live peers. */
static int s_dealer_reader(zloop_t *loop, zsock_t *sock, void *arg)
{
    transport_t *self = arg;
    peer_t *peer = s_peer_find_socket(self, sock);
    if (!peer)
        return 0;
    void *handle = zsock_resolve(peer->dealer);
    bool want_hello = false;
    for (int i = 0; i < DEALER_BATCH; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            break;
        }
        bool multipart = zmq_msg_more(&frame);
        wire_msg_t msg;
        if (!multipart && wire_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0) {
            if (msg.type == WIRE_HELLO_REQ)
                want_hello = true;
            wire_msg_release(&msg);
        }
        zmq_msg_close(&frame);
        while (multipart) { /* never sent by a peer of ours: drop the rest */
            zmq_msg_init(&frame);
            multipart = zmq_msg_recv(&frame, handle, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&frame);
            zmq_msg_close(&frame);
        }
    }
    if (want_hello)
        s_peer_send_hello(self, peer);
    return 0;
}

/* ---- incoming ---- */

static transport_refused_t s_refusal_for(int rc)
{
    switch (rc) {
    case GG_EPERM: return TRANSPORT_REFUSED_UNTRUSTED;
    case GG_ECRYPTO: return TRANSPORT_REFUSED_BAD_SIGNATURE;
    case GG_EEXPIRED: return TRANSPORT_REFUSED_EXPIRED;
    case GG_EREVOKED: return TRANSPORT_REFUSED_REVOKED;
    case GG_ETOOBIG: return TRANSPORT_REFUSED_OVERSIZED;
    case GG_EVERSION: return TRANSPORT_REFUSED_VERSION;
    default: return TRANSPORT_REFUSED_MALFORMED;
    }
}

/* Field by field (cert_t has padding, so no memcmp of the whole struct). */
static bool s_cert_equal(const cert_t *a, const cert_t *b)
{
    return a->version == b->version && strcmp(a->name, b->name) == 0 &&
           memcmp(a->curve_public, b->curve_public, sizeof a->curve_public) == 0 &&
           memcmp(a->operator_public, b->operator_public, sizeof a->operator_public) == 0 &&
           a->issued == b->issued && a->expires == b->expires &&
           memcmp(a->signature, b->signature, sizeof a->signature) == 0;
}

static void s_handle_hello(transport_t *self, const char *key_z85, const uint8_t key[32],
                           const wire_msg_t *msg)
{
    const msgpack_object *cobj = wire_map_get(&msg->body, "cert");
    cert_t cert;
    char address[TRANSPORT_ADDRESS_MAX + 1] = "";
    memset(&cert, 0, sizeof cert);
    if (!cobj || cert_unpack(cobj, &cert) != 0 ||
        wire_get_str(&msg->body, "addr", address, TRANSPORT_ADDRESS_MAX) != 0) {
        self->stats.refused[TRANSPORT_REFUSED_MALFORMED]++;
        return;
    }
    /* A certificate is public: it proves only the key it names, and only on
     * a connection authenticated with that key. */
    if (memcmp(cert.curve_public, key, 32) != 0) {
        self->stats.refused[TRANSPORT_REFUSED_KEY_MISMATCH]++;
        gg_debug("transport: certificate for '%s' shown on another key's connection: refused",
                 cert.name);
        return;
    }
    int rc = trust_verify_cert(self->trust, &cert, self->wall_clock());
    if (rc != 0) {
        self->stats.refused[s_refusal_for(rc)]++;
        gg_debug("transport: certificate of '%s' refused: %s", cert.name, gg_strerror(rc));
        zhashx_delete(self->proven, key_z85);
        return;
    }
    proven_t *known = zhashx_lookup(self->proven, key_z85);
    bool changed =
        !known || strcmp(known->address, address) != 0 || !s_cert_equal(&known->cert, &cert);
    if (!known) {
        if (zhashx_size(self->proven) >= PROVEN_MAX) {
            gg_warn("transport: %d proven peers already: '%s' not remembered", PROVEN_MAX,
                    cert.name);
            return; /* bounded: refuse newcomers rather than grow */
        }
        known = calloc(1, sizeof *known);
        if (!known)
            return;
        if (zhashx_insert(self->proven, key_z85, known) != 0) {
            free(known);
            return;
        }
    }
    known->cert = cert;
    snprintf(known->address, sizeof known->address, "%s", address);
    if (changed && self->on_peer)
        self->on_peer(self->arg, &known->cert, known->address);
}

/* One message from the ROUTER: routing id, then exactly one payload frame
 * carrying the connection's User-Id (set by our ZAP handler). */
static void s_handle_incoming(transport_t *self, zmq_msg_t *rid, zmq_msg_t *payload)
{
    size_t len = zmq_msg_size(payload);
    self->stats.bytes_in += len;
    const char *user_id = zmq_msg_gets(payload, "User-Id");
    uint8_t key[32];
    if (!user_id || strlen(user_id) != 40 || !zmq_z85_decode(key, user_id)) {
        self->stats.refused[TRANSPORT_REFUSED_UNPROVEN]++;
        return;
    }
    wire_msg_t msg;
    int rc = wire_decode_in(zmq_msg_data(payload), len, self->zone, &msg);
    if (rc != 0) {
        msgpack_zone_clear(self->zone);
        self->stats.refused[s_refusal_for(rc)]++;
        return;
    }
    self->stats.msgs_in[msg.type & 0xff]++;
    if (memcmp(msg.sender, key, 32) != 0) {
        self->stats.refused[TRANSPORT_REFUSED_SPOOFED]++;
    } else if (msg.type == WIRE_HELLO) {
        s_handle_hello(self, user_id, key, &msg);
    } else {
        proven_t *known = zhashx_lookup(self->proven, user_id);
        if (known && self->wall_clock() >= known->cert.expires) {
            zhashx_delete(self->proven, user_id);
            known = NULL;
            self->stats.refused[TRANSPORT_REFUSED_EXPIRED]++;
        } else if (!known) {
            self->stats.refused[TRANSPORT_REFUSED_UNPROVEN]++;
            if (msg.type != WIRE_HELLO_REQ)
                s_reply_hello_req(self, zmq_msg_data(rid), zmq_msg_size(rid));
        } else if (msg.type != WIRE_HELLO_REQ) {
            transport_delivery_t d = {.msg = &msg, .cert = &known->cert, .raw_len = len};
            self->deliver(self->arg, &d);
        }
    }
    wire_msg_release(&msg);
    msgpack_zone_clear(self->zone);
}

static int s_router_reader(zloop_t *loop, zsock_t *router, void *arg)
{
    transport_t *self = arg;
    void *handle = zsock_resolve(self->router);
    for (int i = 0; i < ROUTER_BATCH; i++) {
        zmq_msg_t rid, payload;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            break;
        }
        /* The frames of one message arrive together: no wait below. */
        bool more = zmq_msg_more(&rid);
        zmq_msg_init(&payload);
        bool have_payload = more && zmq_msg_recv(&payload, handle, ZMQ_DONTWAIT) >= 0;
        more = have_payload && zmq_msg_more(&payload);
        if (more) {
            /* Our peers send one frame per message: the whole message is malformed. */
            self->stats.refused[TRANSPORT_REFUSED_MALFORMED]++;
            while (more) {
                zmq_msg_t extra;
                zmq_msg_init(&extra);
                more = zmq_msg_recv(&extra, handle, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&extra);
                zmq_msg_close(&extra);
            }
        } else if (have_payload) {
            s_handle_incoming(self, &rid, &payload);
        }
        zmq_msg_close(&payload);
        zmq_msg_close(&rid);
    }
    return 0;
}

/* Handshake failures (garbage bytes, wrong mechanism, bad CURVE) are counted. */
static int s_monitor_reader(zloop_t *loop, zsock_t *sock, void *arg)
{
    transport_t *self = arg;
    zmsg_t *ev = zmsg_recv(sock);
    if (!ev)
        return 0;
    zframe_t *first = zmsg_first(ev);
    if (first && zframe_size(first) >= 2) {
        uint16_t event;
        memcpy(&event, zframe_data(first), 2);
        if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
            self->stats.refused[TRANSPORT_REFUSED_HANDSHAKE]++;
    }
    zmsg_destroy(&ev);
    return 0;
}

static void s_proven_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* libzmq writes monitor events with a blocking send from its I/O thread:
 * the monitor must be stopped before our end of it goes away. */
static void s_monitor_stop(transport_t *self)
{
    if (self->monitoring)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    self->monitoring = false;
    zsock_destroy(&self->monitor_zs);
}

/* Watches the ROUTER's handshakes. A transport without a monitor still
 * works; it only counts fewer refusals. */
static void s_monitor_start(transport_t *self)
{
    static unsigned long counter;
    static pthread_mutex_t counter_mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&counter_mutex);
    unsigned long n = ++counter;
    pthread_mutex_unlock(&counter_mutex);
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "inproc://gaggle-transport-monitor-%ld-%lu",
             (long) getpid(), n);
    if (zmq_socket_monitor(zsock_resolve(self->router), endpoint,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
        gg_warn("transport: no handshake monitor: %s", zmq_strerror(zmq_errno()));
        return;
    }
    self->monitoring = true;
    self->monitor_zs = zsock_new(ZMQ_PAIR);
    if (self->monitor_zs) {
        zsock_set_rcvhwm(self->monitor_zs, 0); /* see the top of this file */
        zsock_set_linger(self->monitor_zs, 0);
        if (zsock_connect(self->monitor_zs, "%s", endpoint) == 0)
            return;
    }
    gg_warn("transport: no handshake monitor: cannot connect %s", endpoint);
    s_monitor_stop(self);
}

transport_t *transport_new(const transport_config_t *cfg, char *errbuf, size_t errlen)
{
    assert(cfg && cfg->key && cfg->cert && cfg->trust && cfg->bind && cfg->deliver);
    transport_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->key = *cfg->key;
    self->cert = *cfg->cert;
    self->trust = cfg->trust;
    self->max_peers = cfg->max_peers ? cfg->max_peers : TRANSPORT_DEFAULT_MAX_PEERS;
    self->deliver = cfg->deliver;
    self->on_peer = cfg->on_peer;
    self->arg = cfg->arg;
    self->wall_clock = cfg->wall_clock ? cfg->wall_clock : s_time_now;
    if (strlen(cfg->bind) > TRANSPORT_ADDRESS_MAX ||
        (cfg->advertise && strlen(cfg->advertise) > TRANSPORT_ADDRESS_MAX)) {
        s_errf(errbuf, errlen, "address longer than %d bytes", TRANSPORT_ADDRESS_MAX);
        goto fail;
    }
    self->peers = zhashx_new();
    self->proven = zhashx_new();
    self->zone = msgpack_zone_new(64u * 1024u);
    if (!self->peers || !self->proven || !self->zone)
        goto fail_mem;
    zhashx_set_destructor(self->peers, s_peer_destroy);
    zhashx_set_destructor(self->proven, s_proven_free);

    /* The ZAP handler must exist before any CURVE server socket. */
    if (s_zap_acquire(errbuf, errlen) != 0)
        goto fail;
    self->zap_held = true;

    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        goto fail_mem;
    uint8_t fleet_pub[32], fleet_sec[32];
    transport_fleet_keypair(fleet_pub, fleet_sec);
    zsock_set_zap_domain(self->router, ZAP_DOMAIN);
    zsock_set_curve_server(self->router, 1);
    zsock_set_curve_publickey_bin(self->router, fleet_pub);
    zsock_set_curve_secretkey_bin(self->router, fleet_sec);
    sodium_memzero(fleet_sec, sizeof fleet_sec);
    zsock_set_maxmsgsize(self->router, (int64_t) WIRE_MAX_MESSAGE + 1024);
    zsock_set_rcvhwm(self->router, ROUTER_RCVHWM);
    zsock_set_sndhwm(self->router, ROUTER_SNDHWM);
    zsock_set_handshake_ivl(self->router, ROUTER_HANDSHAKE_IVL_MS);
    zsock_set_linger(self->router, 0);
    zsock_set_router_mandatory(self->router, 0);
    s_monitor_start(self);

    if (zsock_bind(self->router, "%s", cfg->bind) < 0) {
        s_errf(errbuf, errlen, "cannot bind %s: %s", cfg->bind, zmq_strerror(zmq_errno()));
        goto fail;
    }
    const char *ep = zsock_endpoint(self->router);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", ep ? ep : cfg->bind);
    /* Without --advertise, peers are told the bound endpoint with its real
     * port (the bind string may say "*" or 0). */
    snprintf(self->advertise, sizeof self->advertise, "%s",
             cfg->advertise ? cfg->advertise : self->endpoint);
    if (s_build_hello(self) != 0)
        goto fail_mem;
    return self;

fail_mem:
    s_errf(errbuf, errlen, "out of memory");
fail:
    transport_destroy(&self);
    return NULL;
}

void transport_destroy(transport_t **self_p)
{
    assert(self_p);
    transport_t *self = *self_p;
    if (!self)
        return;
    if (self->loop) {
        if (self->peers)
            for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
                zloop_reader_end(self->loop, p->dealer);
        if (self->router)
            zloop_reader_end(self->loop, self->router);
        if (self->monitor_zs)
            zloop_reader_end(self->loop, self->monitor_zs);
    }
    zhashx_destroy(&self->peers);
    zhashx_destroy(&self->proven);
    if (self->zone)
        msgpack_zone_free(self->zone);
    if (self->router)
        s_monitor_stop(self);
    zsock_destroy(&self->router);
    if (self->zap_held)
        s_zap_release();
    free(self->hello);
    node_key_wipe(&self->key);
    free(self);
    *self_p = NULL;
}

int transport_attach(transport_t *self, zloop_t *loop)
{
    assert(self && loop);
    assert(!self->loop); /* one loop, once */
    if (zloop_reader(loop, self->router, s_router_reader, self) != 0)
        return GG_ENOMEM;
    self->loop = loop;
    if (self->monitor_zs && zloop_reader(loop, self->monitor_zs, s_monitor_reader, self) != 0)
        s_monitor_stop(self); /* not watched: counts fewer refusals */
    for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        if (zloop_reader(loop, p->dealer, s_dealer_reader, self) != 0)
            return GG_ENOMEM;
    return GG_OK;
}

void transport_revalidate(transport_t *self)
{
    assert(self);
    zlistx_t *keys = zhashx_keys(self->proven);
    if (!keys)
        return;
    uint64_t now = self->wall_clock();
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        proven_t *p = zhashx_lookup(self->proven, k);
        int rc = p ? trust_verify_cert(self->trust, &p->cert, now) : 0;
        if (rc != 0) {
            gg_debug("transport: '%s' no longer trusted: %s", p->cert.name, gg_strerror(rc));
            zhashx_delete(self->proven, k);
        }
    }
    zlistx_destroy(&keys);
}

const cert_t *transport_peer_cert(transport_t *self, const uint8_t key[CERT_PUBLIC_LEN])
{
    assert(self && key);
    char z85[41];
    if (!zmq_z85_encode(z85, key, 32))
        return NULL;
    proven_t *p = zhashx_lookup(self->proven, z85);
    return p ? &p->cert : NULL;
}

const char *transport_endpoint(transport_t *self)
{
    assert(self);
    return self->endpoint;
}

const transport_stats_t *transport_stats(transport_t *self)
{
    assert(self);
    return &self->stats;
}
