/*
 * transport.c: CurveZMQ peer messaging with certificate-proven senders.
 * See transport.h for the socket layout and the trust protocol.
 */
#include "transport.h"
#include "gg_error.h"
#include "gg_log.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define PROVEN_MAX 65536
#define HELLO_RESEND_MIN_MS 500
#define PEER_SNDHWM 2000

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

    zsock_t *zap;
    zsock_t *router;
    void *monitor;       /* raw zmq PAIR receiving the ROUTER's monitor events */
    zsock_t *monitor_zs; /* CZMQ wrapper for the loop */
    zloop_t *loop;
    zhashx_t *peers;  /* address -> peer_t */
    zhashx_t *proven; /* z85 key -> proven_t */
    uint64_t use_counter;
    uint8_t *hello;   /* our encoded HELLO */
    size_t hello_len;
    transport_stats_t stats;
};

static const char *s_refused_names[TRANSPORT_REFUSED_COUNT] = {
    "unproven", "untrusted", "bad_signature", "expired",  "revoked",  "key_mismatch",
    "spoofed",  "malformed", "oversized",     "version",  "handshake",
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

void transport_fleet_keypair(uint8_t public_key[32], uint8_t secret_key[32])
{
    uint8_t seed[crypto_box_SEEDBYTES];
    static const char label[] = "gaggle fleet transport key v1";
    crypto_generichash(seed, sizeof seed, (const uint8_t *) label, sizeof label - 1, NULL, 0);
    crypto_box_seed_keypair(public_key, secret_key, seed);
    sodium_memzero(seed, sizeof seed);
}

/* ---- ZAP handler ---- */

/* Answers one ZAP request (RFC 27): 200 with User-Id = Z85(client key) for
 * CURVE; 400 for anything else (our ROUTER only speaks CURVE). */
static int s_zap_reader(zloop_t *loop, zsock_t *zap, void *arg)
{
    zmsg_t *req = zmsg_recv(zap);
    if (!req)
        return 0;
    char *version = zmsg_popstr(req);
    char *sequence = zmsg_popstr(req);
    char *domain = zmsg_popstr(req);
    char *address = zmsg_popstr(req);
    char *identity = zmsg_popstr(req);
    char *mechanism = zmsg_popstr(req);
    zframe_t *cred = zmsg_pop(req);
    char user_id[41] = "";
    const char *status = "400", *text = "unsupported mechanism";
    if (version && strcmp(version, "1.0") == 0 && mechanism && strcmp(mechanism, "CURVE") == 0 &&
        cred && zframe_size(cred) == 32) {
        zmq_z85_encode(user_id, zframe_data(cred), 32);
        status = "200";
        text = "OK";
    }
    zmsg_t *rep = zmsg_new();
    zmsg_addstr(rep, "1.0");
    zmsg_addstr(rep, sequence ? sequence : "");
    zmsg_addstr(rep, status);
    zmsg_addstr(rep, text);
    zmsg_addstr(rep, user_id);
    zmsg_addmem(rep, NULL, 0);
    zmsg_send(&rep, zap);
    zframe_destroy(&cred);
    zstr_free(&version);
    zstr_free(&sequence);
    zstr_free(&domain);
    zstr_free(&address);
    zstr_free(&identity);
    zstr_free(&mechanism);
    zmsg_destroy(&req);
    return 0;
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
        if (!self->hello)
            rc = GG_ENOMEM;
        else {
            memcpy(self->hello, data, len);
            self->hello_len = len;
        }
    }
    wire_writer_destroy(&w);
    return rc;
}

static int s_send_frame(zsock_t *sock, zframe_t *rid, const uint8_t *data, size_t len)
{
    void *handle = zsock_resolve(sock);
    if (rid && zmq_send(handle, zframe_data(rid), zframe_size(rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return GG_EBUSY;
    if (zmq_send(handle, data, len, ZMQ_DONTWAIT) < 0)
        return GG_EBUSY;
    return GG_OK;
}

static void s_reply_hello_req(transport_t *self, zframe_t *rid)
{
    wire_writer_t *w = wire_writer_new(WIRE_HELLO_REQ, self->key.public_key, 0);
    const uint8_t *data;
    size_t len;
    if (w && wire_writer_finish(w, &data, &len) == 0 &&
        s_send_frame(self->router, rid, data, len) == 0) {
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
    if (s_send_frame(peer->dealer, NULL, self->hello, self->hello_len) == 0) {
        peer->last_hello_ms = now;
        self->stats.msgs_out[WIRE_HELLO]++;
        self->stats.bytes_out += self->hello_len;
    }
}

static void s_evict_lru(transport_t *self)
{
    peer_t *oldest = NULL;
    for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        if (!oldest || p->last_used < oldest->last_used)
            oldest = p;
    if (!oldest)
        return;
    if (self->loop)
        zloop_reader_end(self->loop, oldest->dealer);
    self->stats.peers_evicted++;
    zhashx_delete(self->peers, oldest->address);
}

static peer_t *s_peer_get(transport_t *self, const char *address)
{
    peer_t *peer = zhashx_lookup(self->peers, address);
    if (peer)
        return peer;
    if (strlen(address) > TRANSPORT_ADDRESS_MAX || strncmp(address, "tcp://", 6) != 0)
        return NULL;
    while (zhashx_size(self->peers) >= self->max_peers)
        s_evict_lru(self);
    peer = calloc(1, sizeof *peer);
    if (!peer)
        return NULL;
    snprintf(peer->address, sizeof peer->address, "%s", address);
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
    zsock_set_linger(peer->dealer, 0);
    zsock_set_reconnect_ivl(peer->dealer, 100);
    zsock_set_reconnect_ivl_max(peer->dealer, 5000);
    zsock_set_maxmsgsize(peer->dealer, (int64_t) WIRE_MAX_MESSAGE + 1024);
    if (zsock_connect(peer->dealer, "%s", address) != 0) {
        zsock_destroy(&peer->dealer);
        free(peer);
        return NULL;
    }
    if (zhashx_insert(self->peers, peer->address, peer) != 0) {
        zsock_destroy(&peer->dealer);
        free(peer);
        return NULL;
    }
    if (self->loop)
        zloop_reader(self->loop, peer->dealer, s_dealer_reader, self);
    self->stats.peers_open++;
    s_peer_send_hello(self, peer);
    return peer;
}

int transport_send(transport_t *self, const char *address, uint32_t type, const uint8_t *data,
                   size_t len)
{
    assert(self);
    if (!address || !data || len == 0)
        return GG_EINVAL;
    if (len > WIRE_MAX_MESSAGE)
        return GG_ETOOBIG;
    peer_t *peer = s_peer_get(self, address);
    if (!peer) {
        self->stats.send_dropped++;
        return GG_EINVAL;
    }
    peer->last_used = ++self->use_counter;
    if (s_send_frame(peer->dealer, NULL, data, len) != 0) {
        self->stats.send_dropped++;
        return GG_EBUSY;
    }
    self->stats.msgs_out[type & 0xff]++;
    self->stats.bytes_out += len;
    return GG_OK;
}

void transport_forget_address(transport_t *self, const char *address)
{
    peer_t *peer = zhashx_lookup(self->peers, address);
    if (!peer)
        return;
    if (self->loop)
        zloop_reader_end(self->loop, peer->dealer);
    zhashx_delete(self->peers, address);
}

/* Messages arriving on an outgoing socket come from whoever holds the fleet
 * key, so only HELLO_REQ (a request for our public certificate) is honoured. */
static int s_dealer_reader(zloop_t *loop, zsock_t *sock, void *arg)
{
    transport_t *self = arg;
    zframe_t *frame = zframe_recv(sock);
    if (!frame)
        return 0;
    while (zsock_rcvmore(sock)) {
        zframe_t *extra = zframe_recv(sock);
        zframe_destroy(&extra);
    }
    wire_msg_t msg;
    if (wire_decode(zframe_data(frame), zframe_size(frame), &msg) == 0) {
        if (msg.type == WIRE_HELLO_REQ) {
            for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
                if (p->dealer == sock) {
                    s_peer_send_hello(self, p);
                    break;
                }
        }
        wire_msg_release(&msg);
    }
    zframe_destroy(&frame);
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

static void s_handle_hello(transport_t *self, const char *key_z85, const uint8_t key[32],
                           const wire_msg_t *msg)
{
    const msgpack_object *cobj = wire_map_get(&msg->body, "cert");
    cert_t cert;
    char address[TRANSPORT_ADDRESS_MAX + 1] = "";
    if (!cobj || cert_unpack(cobj, &cert) != 0 ||
        wire_get_str(&msg->body, "addr", address, TRANSPORT_ADDRESS_MAX) != 0) {
        self->stats.refused[TRANSPORT_REFUSED_MALFORMED]++;
        return;
    }
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
    bool changed = !known || strcmp(known->address, address) != 0 ||
                   memcmp(&known->cert, &cert, sizeof cert) != 0;
    if (!known) {
        if (zhashx_size(self->proven) >= PROVEN_MAX)
            return; /* bounded: refuse newcomers rather than grow */
        known = calloc(1, sizeof *known);
        if (!known)
            return;
        zhashx_insert(self->proven, key_z85, known);
    }
    known->cert = cert;
    snprintf(known->address, sizeof known->address, "%s", address);
    if (changed && self->on_peer)
        self->on_peer(self->arg, &known->cert, known->address);
}

static int s_router_reader(zloop_t *loop, zsock_t *router, void *arg)
{
    transport_t *self = arg;
    zframe_t *rid = zframe_recv(router);
    if (!rid)
        return 0;
    zframe_t *payload = zsock_rcvmore(router) ? zframe_recv(router) : NULL;
    while (zsock_rcvmore(router)) {
        zframe_t *extra = zframe_recv(router);
        zframe_destroy(&extra);
        self->stats.refused[TRANSPORT_REFUSED_MALFORMED]++;
    }
    if (!payload)
        goto out;
    size_t len = zframe_size(payload);
    self->stats.bytes_in += len;
    const char *user_id = zframe_meta(payload, "User-Id");
    uint8_t key[32];
    if (!user_id || strlen(user_id) != 40 || !zmq_z85_decode(key, user_id)) {
        self->stats.refused[TRANSPORT_REFUSED_UNPROVEN]++;
        goto out;
    }
    wire_msg_t msg;
    int rc = wire_decode(zframe_data(payload), len, &msg);
    if (rc != 0) {
        self->stats.refused[s_refusal_for(rc)]++;
        goto out;
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
            s_reply_hello_req(self, rid);
        } else if (msg.type != WIRE_HELLO_REQ) {
            transport_delivery_t d = {.msg = &msg, .cert = &known->cert, .raw_len = len};
            self->deliver(self->arg, &d);
        }
    }
    wire_msg_release(&msg);
out:
    zframe_destroy(&payload);
    zframe_destroy(&rid);
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

transport_t *transport_new(const transport_config_t *cfg, char *errbuf, size_t errlen)
{
    assert(cfg && cfg->key && cfg->cert && cfg->trust && cfg->bind && cfg->deliver);
    transport_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
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
    snprintf(self->advertise, sizeof self->advertise, "%s",
             cfg->advertise ? cfg->advertise : cfg->bind);
    self->peers = zhashx_new();
    self->proven = zhashx_new();
    if (!self->peers || !self->proven)
        goto fail_mem;
    zhashx_set_destructor(self->peers, s_peer_destroy);
    zhashx_set_destructor(self->proven, s_proven_free);
    if (s_build_hello(self) != 0)
        goto fail_mem;

    /* The ZAP handler must exist before any CURVE socket. */
    self->zap = zsock_new(ZMQ_REP);
    if (!self->zap || zsock_bind(self->zap, ZAP_ENDPOINT) != 0) {
        snprintf(errbuf, errlen, "cannot bind the ZAP handler at %s: %s", ZAP_ENDPOINT,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        goto fail_mem;
    uint8_t fleet_pub[32], fleet_sec[32];
    transport_fleet_keypair(fleet_pub, fleet_sec);
    zsock_set_zap_domain(self->router, "gaggle");
    zsock_set_curve_server(self->router, 1);
    zsock_set_curve_publickey_bin(self->router, fleet_pub);
    zsock_set_curve_secretkey_bin(self->router, fleet_sec);
    sodium_memzero(fleet_sec, sizeof fleet_sec);
    zsock_set_maxmsgsize(self->router, (int64_t) WIRE_MAX_MESSAGE + 1024);
    zsock_set_rcvhwm(self->router, 100000);
    zsock_set_sndhwm(self->router, 10000);
    zsock_set_linger(self->router, 0);
    zsock_set_router_mandatory(self->router, 0);

    char monitor_ep[64];
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://gaggle-transport-monitor-%p", (void *) self);
    if (zmq_socket_monitor(zsock_resolve(self->router), monitor_ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
        self->monitor_zs = zsock_new_pair(NULL);
        if (self->monitor_zs && zsock_connect(self->monitor_zs, "%s", monitor_ep) != 0)
            zsock_destroy(&self->monitor_zs);
    }

    int port = zsock_bind(self->router, "%s", cfg->bind);
    if (port < 0) {
        snprintf(errbuf, errlen, "cannot bind %s: %s", cfg->bind, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (!zsock_endpoint(self->router))
        snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->bind);
    else
        snprintf(self->endpoint, sizeof self->endpoint, "%s", zsock_endpoint(self->router));
    return self;

fail_mem:
    snprintf(errbuf, errlen, "out of memory");
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
        for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
            zloop_reader_end(self->loop, p->dealer);
        if (self->router)
            zloop_reader_end(self->loop, self->router);
        if (self->zap)
            zloop_reader_end(self->loop, self->zap);
        if (self->monitor_zs)
            zloop_reader_end(self->loop, self->monitor_zs);
    }
    zhashx_destroy(&self->peers);
    zhashx_destroy(&self->proven);
    if (self->router)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    zsock_destroy(&self->monitor_zs);
    zsock_destroy(&self->router);
    zsock_destroy(&self->zap);
    free(self->hello);
    node_key_wipe(&self->key);
    free(self);
    *self_p = NULL;
}

int transport_attach(transport_t *self, zloop_t *loop)
{
    self->loop = loop;
    if (zloop_reader(loop, self->zap, s_zap_reader, self) != 0 ||
        zloop_reader(loop, self->router, s_router_reader, self) != 0)
        return GG_EINTERNAL;
    if (self->monitor_zs)
        zloop_reader(loop, self->monitor_zs, s_monitor_reader, self);
    for (peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        zloop_reader(loop, p->dealer, s_dealer_reader, self);
    return GG_OK;
}

void transport_revalidate(transport_t *self)
{
    zlistx_t *keys = zhashx_keys(self->proven);
    if (!keys)
        return;
    uint64_t now = self->wall_clock();
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        proven_t *p = zhashx_lookup(self->proven, k);
        if (p && trust_verify_cert(self->trust, &p->cert, now) != 0)
            zhashx_delete(self->proven, k);
    }
    zlistx_destroy(&keys);
}

const cert_t *transport_peer_cert(transport_t *self, const uint8_t key[CERT_PUBLIC_LEN])
{
    char z85[41];
    zmq_z85_encode(z85, key, 32);
    proven_t *p = zhashx_lookup(self->proven, z85);
    return p ? &p->cert : NULL;
}

const char *transport_endpoint(transport_t *self)
{
    return self->endpoint;
}

const transport_stats_t *transport_stats(transport_t *self)
{
    return &self->stats;
}
