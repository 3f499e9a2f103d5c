/*
 * test_transport.c: the CurveZMQ transport on real sockets (127.0.0.1,
 * ephemeral ports), several nodes in one process sharing one zloop and the
 * process-wide ZAP handler. Covers delivery and the counters, a receiver
 * that restarts and asks for HELLO again, refused certificates (untrusted,
 * expired, revoked, bad signature, revoked after being proven, expiring
 * while proven), a replayed certificate, a spoofed sender, garbage, wrong
 * handshakes and oversized frames, the bounded LRU of outgoing connections,
 * evictions made from a timer handler, and bad arguments. Every wait runs
 * the loop until a condition holds, with a deadline that fails the test.
 */
#include "cert.h"
#include "gg_error.h"
#include "gg_test.h"
#include "transport.h"
#include "wire.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS  5000
#define ANY_PORT "tcp://127.0.0.1:*"

static operator_key_t s_op;    /* trusted by every node */
static operator_key_t s_rogue; /* trusted by nobody */
static zloop_t *s_loop;

typedef struct {
    node_key_t key;
    cert_t cert;
    trust_t *trust;
    transport_t *t;
    char endpoint[TRANSPORT_ADDRESS_MAX + 1];
    uint64_t delivered;
    uint32_t last_type;
    uint64_t last_n;
    char last_from[CERT_NAME_MAX + 1];
    bool sender_mismatch; /* a delivery whose sender is not its cert's key */
    uint64_t peers_seen;
    char last_peer_addr[TRANSPORT_ADDRESS_MAX + 1];
    uint64_t (*clock)(void); /* NULL: the real one */
} node_t;

/* ---- fixtures ---- */

static void s_deliver(void *arg, const transport_delivery_t *d)
{
    node_t *n = arg;
    n->delivered++;
    n->last_type = d->msg->type;
    n->last_n = 0;
    wire_get_u64(&d->msg->body, "n", &n->last_n);
    snprintf(n->last_from, sizeof n->last_from, "%s", d->cert->name);
    if (memcmp(d->msg->sender, d->cert->curve_public, WIRE_ID_LEN) != 0)
        n->sender_mismatch = true;
}

static void s_on_peer(void *arg, const cert_t *cert, const char *address)
{
    node_t *n = arg;
    n->peers_seen++;
    snprintf(n->last_peer_addr, sizeof n->last_peer_addr, "%s", address);
}

/* Keys and a certificate signed by `signer`, issued at `issued` for `days`. */
static int s_node_make(node_t *n, const char *name, const operator_key_t *signer, uint64_t issued,
                       uint32_t days)
{
    memset(n, 0, sizeof *n);
    if (node_key_generate(name, &n->key) != 0 ||
        cert_issue(&n->key, signer, issued, days, &n->cert) != 0)
        return -1;
    n->trust = trust_new();
    if (!n->trust || trust_add_operator(n->trust, s_op.public_key) != 0)
        return -1;
    return 0;
}

static int s_node_start_at(node_t *n, const char *bind, size_t max_peers)
{
    char err[256] = "";
    transport_config_t cfg = {
        .key = &n->key,
        .cert = &n->cert,
        .trust = n->trust,
        .bind = bind,
        .max_peers = max_peers,
        .deliver = s_deliver,
        .on_peer = s_on_peer,
        .arg = n,
        .wall_clock = n->clock,
    };
    n->t = transport_new(&cfg, err, sizeof err);
    if (!n->t) {
        fprintf(stderr, "transport_new(%s): %s\n", bind, err);
        return -1;
    }
    snprintf(n->endpoint, sizeof n->endpoint, "%s", transport_endpoint(n->t));
    return transport_attach(n->t, s_loop);
}

static int s_node_start(node_t *n, size_t max_peers)
{
    return s_node_start_at(n, ANY_PORT, max_peers);
}

static void s_node_free(node_t *n)
{
    transport_destroy(&n->t);
    trust_destroy(&n->trust);
    node_key_wipe(&n->key);
}

static const transport_stats_t *s_stats(node_t *n)
{
    return transport_stats(n->t);
}

/* An envelope of `type` from `sender` with one field n. Returns the length
 * written to buf (0 on failure). */
static size_t s_encode(uint32_t type, const uint8_t sender[32], uint64_t value, uint8_t *buf,
                       size_t size)
{
    wire_writer_t *w = wire_writer_new(type, sender, 1);
    const uint8_t *data;
    size_t len = 0;
    wire_put_u64(w, "n", value);
    if (wire_writer_finish(w, &data, &len) != 0 || len > size)
        len = 0;
    else
        memcpy(buf, data, len);
    wire_writer_destroy(&w);
    return len;
}

static int s_send(node_t *from, const char *to, uint32_t type, uint64_t value)
{
    uint8_t buf[256];
    size_t len = s_encode(type, from->key.public_key, value, buf, sizeof buf);
    if (len == 0)
        return GG_EINTERNAL;
    return transport_send(from->t, to, type, buf, len);
}

/* A HELLO claiming `cert`, with `sender` in the envelope. */
static size_t s_encode_hello(const uint8_t sender[32], const cert_t *cert, uint8_t *buf,
                             size_t size)
{
    wire_writer_t *w = wire_writer_new(WIRE_HELLO, sender, 2);
    const uint8_t *data;
    size_t len = 0;
    wire_put_key(w, "cert");
    cert_pack(cert, wire_writer_packer(w));
    wire_put_str(w, "addr", "tcp://127.0.0.1:1");
    if (wire_writer_finish(w, &data, &len) != 0 || len > size)
        len = 0;
    else
        memcpy(buf, data, len);
    wire_writer_destroy(&w);
    return len;
}

/* A bare DEALER speaking CURVE with `key` to `endpoint`; server_key NULL is
 * the fleet key. Used to play attackers that bypass transport.c. */
static zsock_t *s_raw_dealer(const node_key_t *key, const char *endpoint, const uint8_t *server_key)
{
    uint8_t fleet_pub[32], fleet_sec[32];
    transport_fleet_keypair(fleet_pub, fleet_sec);
    zsock_t *d = zsock_new(ZMQ_DEALER);
    if (!d)
        return NULL;
    zsock_set_curve_serverkey_bin(d, server_key ? server_key : fleet_pub);
    zsock_set_curve_publickey_bin(d, key->public_key);
    zsock_set_curve_secretkey_bin(d, key->secret_key);
    zsock_set_linger(d, 0);
    zsock_set_reconnect_ivl(d, -1); /* one connection: its fate is what is tested */
    if (zsock_connect(d, "%s", endpoint) != 0)
        zsock_destroy(&d);
    return d;
}

static int s_raw_send(zsock_t *d, const void *data, size_t len)
{
    return zmq_send(zsock_resolve(d), data, len, 0) == (int) len ? 0 : -1;
}

/* The port of tcp://127.0.0.1:PORT. */
static int s_port_of(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : -1;
}

/* Writes raw bytes to 127.0.0.1:port over plain TCP, then closes. */
static int s_tcp_write(int port, const void *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = -1;
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0 &&
        send(fd, data, len, MSG_NOSIGNAL) == (ssize_t) len)
        rc = 0;
    close(fd);
    return rc;
}

/* ---- waiting: run the loop until every expectation holds, or the deadline ---- */

typedef struct {
    const uint64_t *value;
    uint64_t min;
} expect_t;

typedef void(tick_fn)(void *arg);

typedef struct {
    const expect_t *expects;
    size_t count;
    bool met;
    tick_fn *tick;
    void *tick_arg;
} wait_t;

static bool s_expects_met(const wait_t *w)
{
    for (size_t i = 0; i < w->count; i++)
        if (*w->expects[i].value < w->expects[i].min)
            return false;
    return true;
}

static int s_wait_check(zloop_t *loop, int timer_id, void *arg)
{
    wait_t *w = arg;
    if (!s_expects_met(w))
        return 0;
    w->met = true;
    return -1;
}

static int s_wait_tick(zloop_t *loop, int timer_id, void *arg)
{
    wait_t *w = arg;
    w->tick(w->tick_arg);
    return 0;
}

static int s_wait_deadline(zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/* Runs the loop until all expectations hold (true) or timeout_ms pass
 * (false). tick, if given, runs every tick_ms meanwhile. */
static bool s_wait(int timeout_ms, tick_fn *tick, void *tick_arg, int tick_ms,
                   const expect_t *expects, size_t count)
{
    wait_t w = {expects, count, false, tick, tick_arg};
    if (s_expects_met(&w))
        return true;
    int check = zloop_timer(s_loop, 2, 0, s_wait_check, &w);
    int deadline = zloop_timer(s_loop, (size_t) timeout_ms, 1, s_wait_deadline, &w);
    int ticker = tick ? zloop_timer(s_loop, (size_t) tick_ms, 0, s_wait_tick, &w) : -1;
    zloop_start(s_loop);
    zloop_timer_end(s_loop, check);
    zloop_timer_end(s_loop, deadline);
    if (ticker >= 0)
        zloop_timer_end(s_loop, ticker);
    if (!w.met) {
        for (size_t i = 0; i < count; i++)
            if (*expects[i].value < expects[i].min)
                fprintf(stderr, "  wait: expectation %zu not met (%llu < %llu)\n", i,
                        (unsigned long long) *expects[i].value,
                        (unsigned long long) expects[i].min);
    }
    return w.met;
}

#define EXPECTS(...)  ((const expect_t[]){__VA_ARGS__})
#define NEXPECTS(...) (sizeof(EXPECTS(__VA_ARGS__)) / sizeof(expect_t))
/* WAIT_FOR({&counter, min}, ...): true when all hold before the deadline. */
#define WAIT_FOR(...) s_wait(WAIT_MS, NULL, NULL, 0, EXPECTS(__VA_ARGS__), NEXPECTS(__VA_ARGS__))
#define WAIT_TICKING(tick, arg, ms, ...)                                                           \
    s_wait(WAIT_MS, tick, arg, ms, EXPECTS(__VA_ARGS__), NEXPECTS(__VA_ARGS__))

/* ---- tests ---- */

static void test_deliver_and_stats(void)
{
    node_t a, b;
    REQUIRE(s_node_make(&a, "alpha", &s_op, (uint64_t) time(NULL), 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, (uint64_t) time(NULL), 30) == 0);
    REQUIRE(s_node_start(&a, 0) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    CHECK(strncmp(a.endpoint, "tcp://127.0.0.1:", 16) == 0 && s_port_of(a.endpoint) > 0);
    CHECK(strcmp(a.endpoint, b.endpoint) != 0);

    uint8_t ping[256];
    size_t ping_len = s_encode(WIRE_PING, a.key.public_key, 7, ping, sizeof ping);
    REQUIRE(ping_len > 0);
    CHECK_EQ_INT(transport_send(a.t, b.endpoint, WIRE_PING, ping, ping_len), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));
    CHECK_EQ_INT(b.delivered, 1);
    CHECK_EQ_INT(b.last_type, WIRE_PING);
    CHECK_EQ_INT(b.last_n, 7);
    CHECK_STR(b.last_from, "alpha");
    CHECK(!b.sender_mismatch);
    /* on_peer once, with the address A advertises: its real endpoint. */
    CHECK_EQ_INT(b.peers_seen, 1);
    CHECK_STR(b.last_peer_addr, a.endpoint);
    const cert_t *known = transport_peer_cert(b.t, a.key.public_key);
    CHECK(known && strcmp(known->name, "alpha") == 0);
    CHECK(transport_peer_cert(b.t, b.key.public_key) == NULL);

    const transport_stats_t *sa = s_stats(&a), *sb = s_stats(&b);
    CHECK_EQ_INT(sa->msgs_out[WIRE_HELLO], 1);
    CHECK_EQ_INT(sa->msgs_out[WIRE_PING], 1);
    CHECK_EQ_INT(sa->peers_open, 1);
    CHECK_EQ_INT(sa->send_dropped, 0);
    CHECK(sa->bytes_out > ping_len);
    CHECK_EQ_INT(sb->msgs_in[WIRE_HELLO], 1);
    CHECK_EQ_INT(sb->msgs_in[WIRE_PING], 1);
    CHECK_EQ_INT(sb->bytes_in, sa->bytes_out);
    for (int r = 0; r < TRANSPORT_REFUSED_COUNT; r++)
        CHECK_EQ_INT(sb->refused[r], 0);
    CHECK_EQ_INT(sb->msgs_out[WIRE_HELLO_REQ], 0);

    /* Another type, counted under its own type. */
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PROGRESS, 8), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 2}));
    CHECK_EQ_INT(b.last_type, WIRE_PROGRESS);
    CHECK_EQ_INT(sb->msgs_in[WIRE_PROGRESS], 1);
    CHECK_EQ_INT(sa->msgs_out[WIRE_PROGRESS], 1);
    CHECK_EQ_INT(sa->msgs_out[WIRE_HELLO], 1); /* greeted once per connection */

    /* B answers through A's ROUTER, where A authenticates B. */
    CHECK_EQ_INT(s_send(&b, a.endpoint, WIRE_ACK, 9), GG_OK);
    CHECK(WAIT_FOR({&a.delivered, 1}));
    CHECK_EQ_INT(a.last_type, WIRE_ACK);
    CHECK_EQ_INT(a.last_n, 9);
    CHECK_STR(a.last_from, "bravo");
    CHECK_EQ_INT(sb->msgs_out[WIRE_ACK], 1);
    CHECK_EQ_INT(s_stats(&a)->msgs_in[WIRE_ACK], 1);
    CHECK(transport_peer_cert(a.t, b.key.public_key) != NULL);
    CHECK_EQ_INT(b.delivered, 2); /* nothing more reached B */

    /* Forgetting the address closes the connection; the next send reopens it. */
    transport_forget_address(a.t, b.endpoint);
    transport_forget_address(a.t, "tcp://127.0.0.1:1"); /* unknown: no-op */
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 10), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 3}));
    CHECK_EQ_INT(sa->peers_open, 2);
    CHECK_EQ_INT(sa->msgs_out[WIRE_HELLO], 2);
    CHECK_EQ_INT(b.peers_seen, 1); /* same certificate and address: no news */

    s_node_free(&a);
    s_node_free(&b);
}

typedef struct {
    node_t *from;
    const char *to;
    uint64_t n;
} ticker_t;

static void s_tick_send(void *arg)
{
    ticker_t *t = arg;
    s_send(t->from, t->to, WIRE_PING, ++t->n);
}

static void test_receiver_restart(void)
{
    node_t a, b;
    REQUIRE(s_node_make(&a, "alpha", &s_op, (uint64_t) time(NULL), 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, (uint64_t) time(NULL), 30) == 0);
    REQUIRE(s_node_start(&a, 0) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    char addr[TRANSPORT_ADDRESS_MAX + 1];
    snprintf(addr, sizeof addr, "%s", b.endpoint);
    CHECK_EQ_INT(s_send(&a, addr, WIRE_PING, 1), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));

    /* B restarts on the same port and forgets every proven key. The old
     * listener closes asynchronously: retry the bind until a deadline. */
    transport_destroy(&b.t);
    REQUIRE(b.t == NULL);
    int64_t deadline = zclock_mono() + WAIT_MS;
    char err[256];
    transport_config_t cfg = {.key = &b.key,
                              .cert = &b.cert,
                              .trust = b.trust,
                              .bind = addr,
                              .deliver = s_deliver,
                              .on_peer = s_on_peer,
                              .arg = &b};
    while (!(b.t = transport_new(&cfg, err, sizeof err)) && zclock_mono() < deadline)
        zclock_sleep(10);
    REQUIRE(b.t);
    REQUIRE(transport_attach(b.t, s_loop) == 0);
    CHECK_STR(transport_endpoint(b.t), addr);
    b.delivered = 0;
    CHECK(transport_peer_cert(b.t, a.key.public_key) == NULL);

    /* A keeps sending: first refused as unproven, answered with HELLO_REQ, A
     * greets again and later messages get through. */
    ticker_t tick = {&a, addr, 100};
    const transport_stats_t *sb = s_stats(&b);
    CHECK(WAIT_TICKING(s_tick_send, &tick, 50, {&b.delivered, 1}));
    CHECK(sb->refused[TRANSPORT_REFUSED_UNPROVEN] >= 1);
    CHECK(sb->msgs_out[WIRE_HELLO_REQ] >= 1);
    CHECK(s_stats(&a)->msgs_out[WIRE_HELLO] >= 2);
    CHECK_EQ_INT(s_stats(&a)->peers_open, 1); /* the same connection, reconnected */
    CHECK_STR(b.last_from, "alpha");
    CHECK(b.last_n > 100);
    CHECK(transport_peer_cert(b.t, a.key.public_key) != NULL);

    s_node_free(&a);
    s_node_free(&b);
}

static uint64_t s_fake_now;

static uint64_t s_fake_clock(void)
{
    return s_fake_now;
}

static void test_expiry_while_proven(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t a, b;
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 1) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    s_fake_now = now;
    b.clock = s_fake_clock;
    REQUIRE(s_node_start(&a, 0) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 1), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));

    /* Two days later (B's clock), A's one-day certificate has expired: the
     * next message from the proven key is refused and the key forgotten. */
    s_fake_now = now + 2 * 86400;
    const transport_stats_t *sb = s_stats(&b);
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 2), GG_OK);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_EXPIRED], 1}));
    CHECK_EQ_INT(b.delivered, 1);
    CHECK(transport_peer_cert(b.t, a.key.public_key) == NULL);
    /* Later messages are unproven, and A's fresh HELLO is refused too. */
    ticker_t tick = {&a, b.endpoint, 100};
    CHECK(WAIT_TICKING(s_tick_send, &tick, 100, {&sb->refused[TRANSPORT_REFUSED_EXPIRED], 2},
                       {&sb->refused[TRANSPORT_REFUSED_UNPROVEN], 1}));
    CHECK_EQ_INT(b.delivered, 1);

    s_node_free(&a);
    s_node_free(&b);
}

static void test_refused_certificates(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t b, c, d, e, f, a;
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&c, "charlie", &s_rogue, now, 30) == 0);        /* untrusted */
    REQUIRE(s_node_make(&d, "delta", &s_op, now - 10 * 86400, 1) == 0); /* expired */
    REQUIRE(s_node_make(&e, "echo", &s_op, now, 30) == 0);              /* revoked */
    REQUIRE(s_node_make(&f, "foxtrot", &s_op, now, 30) == 0);           /* bad signature */
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 30) == 0);
    f.cert.signature[5] ^= 0x40;
    REQUIRE(trust_revoke_name(b.trust, "echo") == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    node_t *senders[] = {&c, &d, &e, &f};
    for (size_t i = 0; i < 4; i++) {
        REQUIRE(s_node_start(senders[i], 0) == 0);
        CHECK_EQ_INT(s_send(senders[i], b.endpoint, WIRE_PING, i), GG_OK);
    }
    const transport_stats_t *sb = s_stats(&b);
    /* Each HELLO is refused for its reason; each PING after it is unproven. */
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_UNTRUSTED], 1},
                   {&sb->refused[TRANSPORT_REFUSED_EXPIRED], 1},
                   {&sb->refused[TRANSPORT_REFUSED_REVOKED], 1},
                   {&sb->refused[TRANSPORT_REFUSED_BAD_SIGNATURE], 1},
                   {&sb->refused[TRANSPORT_REFUSED_UNPROVEN], 4}));
    CHECK_EQ_INT(b.delivered, 0);
    CHECK_EQ_INT(b.peers_seen, 0);
    for (size_t i = 0; i < 4; i++)
        CHECK(transport_peer_cert(b.t, senders[i]->key.public_key) == NULL);
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_KEY_MISMATCH], 0);
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_SPOOFED], 0);

    /* A trusted node is delivered, until its name is revoked: revalidation
     * forgets it, and its fresh HELLO is refused as revoked. */
    REQUIRE(s_node_start(&a, 0) == 0);
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 50), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));
    CHECK_STR(b.last_from, "alpha");
    REQUIRE(transport_peer_cert(b.t, a.key.public_key) != NULL);
    REQUIRE(trust_revoke_name(b.trust, "alpha") == 0);
    transport_revalidate(b.t);
    CHECK(transport_peer_cert(b.t, a.key.public_key) == NULL);
    uint64_t revoked_before = sb->refused[TRANSPORT_REFUSED_REVOKED];
    uint64_t unproven_before = sb->refused[TRANSPORT_REFUSED_UNPROVEN];
    ticker_t tick = {&a, b.endpoint, 100};
    CHECK(WAIT_TICKING(s_tick_send, &tick, 100,
                       {&sb->refused[TRANSPORT_REFUSED_REVOKED], revoked_before + 1},
                       {&sb->refused[TRANSPORT_REFUSED_UNPROVEN], unproven_before + 1}));
    CHECK_EQ_INT(b.delivered, 1);
    CHECK(transport_peer_cert(b.t, a.key.public_key) == NULL);

    s_node_free(&a);
    for (size_t i = 0; i < 4; i++)
        s_node_free(senders[i]);
    s_node_free(&b);
}

/* Reads one message from a raw DEALER within timeout_ms into buf. */
static int s_raw_recv(zsock_t *d, uint8_t *buf, size_t size, int timeout_ms)
{
    zpoller_t *p = zpoller_new(d, NULL);
    int len = -1;
    if (p && zpoller_wait(p, timeout_ms) == d)
        len = zmq_recv(zsock_resolve(d), buf, size, ZMQ_DONTWAIT);
    zpoller_destroy(&p);
    return len;
}

static void test_replayed_certificate(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t b, victim;
    node_key_t mallory;
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&victim, "victor", &s_op, now, 30) == 0);
    REQUIRE(node_key_generate("mallory", &mallory) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);

    /* Mallory holds the victim's public certificate and shows it on her own
     * connection, naming herself as sender (naming the victim is spoofing). */
    zsock_t *m = s_raw_dealer(&mallory, b.endpoint, NULL);
    REQUIRE(m);
    uint8_t buf[1024];
    size_t len = s_encode_hello(mallory.public_key, &victim.cert, buf, sizeof buf);
    REQUIRE(len > 0);
    CHECK(s_raw_send(m, buf, len) == 0);
    len = s_encode(WIRE_PING, mallory.public_key, 1, buf, sizeof buf);
    CHECK(s_raw_send(m, buf, len) == 0);
    const transport_stats_t *sb = s_stats(&b);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_KEY_MISMATCH], 1},
                   {&sb->refused[TRANSPORT_REFUSED_UNPROVEN], 1}));
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_KEY_MISMATCH], 1);
    CHECK_EQ_INT(b.delivered, 0);
    CHECK_EQ_INT(b.peers_seen, 0);
    CHECK(transport_peer_cert(b.t, mallory.public_key) == NULL);
    CHECK(transport_peer_cert(b.t, victim.key.public_key) == NULL);

    /* The unproven PING was answered with HELLO_REQ on Mallory's connection. */
    int got = s_raw_recv(m, buf, sizeof buf, WAIT_MS);
    CHECK(got > 0);
    wire_msg_t msg;
    if (got > 0 && wire_decode(buf, (size_t) got, &msg) == 0) {
        CHECK_EQ_INT(msg.type, WIRE_HELLO_REQ);
        CHECK(memcmp(msg.sender, b.key.public_key, 32) == 0);
        wire_msg_release(&msg);
    } else {
        CHECK(!"HELLO_REQ decodes");
    }

    zsock_destroy(&m);
    node_key_wipe(&mallory);
    s_node_free(&victim);
    s_node_free(&b);
}

static void test_spoofed_sender(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t a, b;
    node_key_t mallory;
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(node_key_generate("mallory", &mallory) == 0);
    REQUIRE(s_node_start(&a, 0) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 1), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));

    /* A is proven at B; Mallory names A as the sender, of a PING and of a
     * HELLO carrying A's real certificate. Both are spoofed. */
    zsock_t *m = s_raw_dealer(&mallory, b.endpoint, NULL);
    REQUIRE(m);
    uint8_t buf[1024];
    size_t len = s_encode(WIRE_PING, a.key.public_key, 666, buf, sizeof buf);
    CHECK(s_raw_send(m, buf, len) == 0);
    len = s_encode_hello(a.key.public_key, &a.cert, buf, sizeof buf);
    CHECK(s_raw_send(m, buf, len) == 0);
    const transport_stats_t *sb = s_stats(&b);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_SPOOFED], 2}));
    CHECK_EQ_INT(b.delivered, 1);
    CHECK_EQ_INT(b.last_n, 1);
    CHECK_EQ_INT(b.peers_seen, 1);
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_UNPROVEN], 0); /* not answered */
    CHECK(transport_peer_cert(b.t, mallory.public_key) == NULL);

    /* A itself still gets through. */
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 2), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 2}));
    CHECK_EQ_INT(b.last_n, 2);

    zsock_destroy(&m);
    node_key_wipe(&mallory);
    s_node_free(&a);
    s_node_free(&b);
}

/* Waits for a DISCONNECTED event on a monitor PAIR within timeout_ms. */
static bool s_wait_disconnected(zsock_t *mon, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    zpoller_t *p = zpoller_new(mon, NULL);
    bool seen = false;
    while (p && !seen) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0 || zpoller_wait(p, (int) left) != mon)
            break;
        zmsg_t *ev = zmsg_recv(mon);
        zframe_t *first = ev ? zmsg_first(ev) : NULL;
        if (first && zframe_size(first) >= 2) {
            uint16_t event;
            memcpy(&event, zframe_data(first), 2);
            seen = event == ZMQ_EVENT_DISCONNECTED;
        }
        zmsg_destroy(&ev);
    }
    zpoller_destroy(&p);
    return seen;
}

static void test_garbage_and_oversize(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t a, b;
    node_key_t mallory;
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(node_key_generate("mallory", &mallory) == 0);
    REQUIRE(s_node_start(&a, 0) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    const transport_stats_t *sb = s_stats(&b);
    int port = s_port_of(b.endpoint);
    REQUIRE(port > 0);

    /* Plain TCP. Bytes that do not start like ZMTP 3 (0xff) are taken for a
     * ZMTP 1.0 peer, which libzmq refuses on a ZAP-enabled socket without a
     * monitor event: not counted, but harmless (checked below). */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t) (i * 37 + 11);
    CHECK(s_tcp_write(port, junk, sizeof junk) == 0);
    /* A greeting cut short, then closed: counted. */
    CHECK(s_tcp_write(port, "\xff\0\0\0", 4) == 0);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_HANDSHAKE], 1}));
    /* A ZMTP 3.0 greeting offering the NULL mechanism to our CURVE server. */
    uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    CHECK(s_tcp_write(port, greeting, sizeof greeting) == 0);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_HANDSHAKE], 2}));
    /* CURVE with the wrong server key: the server cannot open the HELLO box. */
    uint8_t wrong_pub[32], wrong_sec[32];
    crypto_box_keypair(wrong_pub, wrong_sec);
    zsock_t *w = s_raw_dealer(&mallory, b.endpoint, wrong_pub);
    REQUIRE(w);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_HANDSHAKE], 3}));
    zsock_destroy(&w);
    CHECK_EQ_INT(sb->bytes_in, 0);
    CHECK_EQ_INT(b.delivered, 0);

    /* Right keys, wrong contents: not msgpack; two frames; a frame just over
     * WIRE_MAX_MESSAGE (refused by the codec and counted). */
    zsock_t *m = s_raw_dealer(&mallory, b.endpoint, NULL);
    REQUIRE(m);
    CHECK(s_raw_send(m, junk, sizeof junk) == 0);
    uint8_t small[256];
    size_t small_len = s_encode(WIRE_PING, mallory.public_key, 3, small, sizeof small);
    CHECK(zmq_send(zsock_resolve(m), small, small_len, ZMQ_SNDMORE) == (int) small_len);
    CHECK(s_raw_send(m, small, small_len) == 0);
    size_t big_len = (size_t) WIRE_MAX_MESSAGE + 1;
    uint8_t *big = calloc(1, 2 * (size_t) WIRE_MAX_MESSAGE);
    REQUIRE(big);
    CHECK(s_raw_send(m, big, big_len) == 0);
    CHECK(WAIT_FOR({&sb->refused[TRANSPORT_REFUSED_MALFORMED], 2},
                   {&sb->refused[TRANSPORT_REFUSED_OVERSIZED], 1}));
    CHECK_EQ_INT(b.delivered, 0);

    /* Far over the limit: libzmq drops the connection before we see it. Its
     * DISCONNECTED event proves the frame was dealt with. */
    zsock_t *h = s_raw_dealer(&mallory, b.endpoint, NULL);
    REQUIRE(h);
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://test-transport-mon-%p", (void *) h);
    REQUIRE(zmq_socket_monitor(zsock_resolve(h), mon_ep, ZMQ_EVENT_DISCONNECTED) == 0);
    zsock_t *mon = zsock_new_pair(mon_ep);
    REQUIRE(mon);
    uint64_t bytes_before = sb->bytes_in;
    CHECK(s_raw_send(h, big, 2 * (size_t) WIRE_MAX_MESSAGE) == 0);
    CHECK(s_wait_disconnected(mon, WAIT_MS));
    zmq_socket_monitor(zsock_resolve(h), NULL, 0);
    zsock_destroy(&mon);
    zsock_destroy(&h);
    free(big);

    /* B still works for a legitimate peer, and delivered nothing else. */
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 4), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));
    CHECK_EQ_INT(b.delivered, 1);
    CHECK_EQ_INT(b.last_n, 4);
    CHECK_STR(b.last_from, "alpha");
    CHECK(sb->bytes_in - bytes_before < 4096); /* the huge frame never reached us */
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_OVERSIZED], 1);
    CHECK_EQ_INT(sb->refused[TRANSPORT_REFUSED_HANDSHAKE], 3);
    CHECK(transport_peer_cert(b.t, mallory.public_key) == NULL);

    zsock_destroy(&m);
    node_key_wipe(&mallory);
    sodium_memzero(wrong_sec, sizeof wrong_sec);
    s_node_free(&a);
    s_node_free(&b);
}

static void test_lru(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t a, b, c, d;
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&c, "charlie", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&d, "delta", &s_op, now, 30) == 0);
    REQUIRE(s_node_start(&a, 2) == 0);
    REQUIRE(s_node_start(&b, 0) == 0);
    REQUIRE(s_node_start(&c, 0) == 0);
    REQUIRE(s_node_start(&d, 0) == 0);
    const transport_stats_t *sa = s_stats(&a);

    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 1), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 1}));
    CHECK_EQ_INT(s_send(&a, c.endpoint, WIRE_PING, 2), GG_OK);
    CHECK(WAIT_FOR({&c.delivered, 1}));
    CHECK_EQ_INT(sa->peers_evicted, 0);
    CHECK_EQ_INT(s_send(&a, d.endpoint, WIRE_PING, 3), GG_OK); /* evicts B */
    CHECK(WAIT_FOR({&d.delivered, 1}));
    CHECK_EQ_INT(sa->peers_open, 3);
    CHECK_EQ_INT(sa->peers_evicted, 1);

    /* C is still open (B was the least recently used): no new socket. */
    CHECK_EQ_INT(s_send(&a, c.endpoint, WIRE_PING, 4), GG_OK);
    CHECK(WAIT_FOR({&c.delivered, 2}));
    CHECK_EQ_INT(sa->peers_open, 3);
    CHECK_EQ_INT(sa->peers_evicted, 1);

    /* B again: reconnects (evicting D, now the least recently used). */
    CHECK_EQ_INT(s_send(&a, b.endpoint, WIRE_PING, 5), GG_OK);
    CHECK(WAIT_FOR({&b.delivered, 2}));
    CHECK_EQ_INT(b.last_n, 5);
    CHECK_EQ_INT(sa->peers_open, 4);
    CHECK_EQ_INT(sa->peers_evicted, 2);
    CHECK_EQ_INT(sa->msgs_out[WIRE_HELLO], 4);
    CHECK_EQ_INT(sa->send_dropped, 0);

    s_node_free(&a);
    s_node_free(&b);
    s_node_free(&c);
    s_node_free(&d);
}

/* A CURVE server in our ZAP domain that answers every message with
 * HELLO_REQ: it makes the sender's DEALER readable. */
static zsock_t *s_fake_server(char *endpoint, size_t size)
{
    uint8_t fleet_pub[32], fleet_sec[32];
    transport_fleet_keypair(fleet_pub, fleet_sec);
    zsock_t *r = zsock_new(ZMQ_ROUTER);
    if (!r)
        return NULL;
    zsock_set_zap_domain(r, "gaggle");
    zsock_set_curve_server(r, 1);
    zsock_set_curve_publickey_bin(r, fleet_pub);
    zsock_set_curve_secretkey_bin(r, fleet_sec);
    zsock_set_linger(r, 0);
    sodium_memzero(fleet_sec, sizeof fleet_sec);
    if (zsock_bind(r, ANY_PORT) < 0)
        zsock_destroy(&r);
    else
        snprintf(endpoint, size, "%s", zsock_endpoint(r));
    return r;
}

static uint64_t s_fake_answered;

static int s_fake_reader(zloop_t *loop, zsock_t *r, void *arg)
{
    zmsg_t *in = zmsg_recv(r);
    zframe_t *rid = in ? zmsg_first(in) : NULL;
    uint8_t buf[128];
    size_t len = s_encode(WIRE_HELLO_REQ, arg, 0, buf, sizeof buf);
    if (rid && len > 0 &&
        zmq_send(zsock_resolve(r), zframe_data(rid), zframe_size(rid),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(zsock_resolve(r), buf, len, ZMQ_DONTWAIT) >= 0)
        s_fake_answered++;
    zmsg_destroy(&in);
    return 0;
}

typedef struct {
    node_t *a;
    const char *to[2];
    int target;
    uint64_t answered; /* s_fake_answered when we switched target */
    uint64_t switches;
} churn_t;

/* Sends to one server until it has answered, then to the other one: with
 * max_peers = 1 each switch, made from this timer handler, evicts the
 * connection that was just answered (its HELLO_REQ may still be in flight
 * or already waiting in the DEALER). */
static void s_tick_churn(void *arg)
{
    churn_t *c = arg;
    if (s_fake_answered > c->answered) {
        c->target ^= 1;
        c->answered = s_fake_answered;
        c->switches++;
    }
    s_send(c->a, c->to[c->target], WIRE_PING, c->switches);
}

static void test_evict_from_timer(void)
{
    node_t a;
    uint8_t fake_id[32];
    randombytes_buf(fake_id, sizeof fake_id);
    REQUIRE(s_node_make(&a, "alpha", &s_op, (uint64_t) time(NULL), 30) == 0);
    REQUIRE(s_node_start(&a, 1) == 0);
    char ep1[TRANSPORT_ADDRESS_MAX + 1], ep2[TRANSPORT_ADDRESS_MAX + 1];
    zsock_t *r1 = s_fake_server(ep1, sizeof ep1);
    zsock_t *r2 = s_fake_server(ep2, sizeof ep2);
    REQUIRE(r1 && r2);
    REQUIRE(zloop_reader(s_loop, r1, s_fake_reader, fake_id) == 0);
    REQUIRE(zloop_reader(s_loop, r2, s_fake_reader, fake_id) == 0);
    s_fake_answered = 0;
    churn_t churn = {&a, {ep1, ep2}, 0, 0, 0};
    const transport_stats_t *sa = s_stats(&a);
    CHECK(WAIT_TICKING(s_tick_churn, &churn, 2, {&churn.switches, 60}));
    CHECK_EQ_INT(sa->peers_open, churn.switches + 1);
    CHECK_EQ_INT(sa->peers_evicted, churn.switches);
    CHECK(sa->msgs_out[WIRE_HELLO] >= sa->peers_open);
    CHECK_EQ_INT(sa->send_dropped, 0);
    zloop_reader_end(s_loop, r1);
    zloop_reader_end(s_loop, r2);
    zsock_destroy(&r1);
    zsock_destroy(&r2);
    s_node_free(&a);
}

static void test_bad_input(void)
{
    uint64_t now = (uint64_t) time(NULL);
    node_t a, b;
    REQUIRE(s_node_make(&a, "alpha", &s_op, now, 30) == 0);
    REQUIRE(s_node_make(&b, "bravo", &s_op, now, 30) == 0);
    REQUIRE(s_node_start(&a, 0) == 0);

    /* The port is taken; an endpoint that is no endpoint; errbuf may be NULL. */
    char err[256] = "";
    transport_config_t cfg = {.key = &b.key,
                              .cert = &b.cert,
                              .trust = b.trust,
                              .bind = a.endpoint,
                              .deliver = s_deliver,
                              .arg = &b};
    CHECK(transport_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, a.endpoint) != NULL);
    cfg.bind = "tcp://no such host";
    err[0] = '\0';
    CHECK(transport_new(&cfg, err, sizeof err) == NULL);
    CHECK(err[0] != '\0');
    CHECK(transport_new(&cfg, NULL, 0) == NULL);
    char longaddr[TRANSPORT_ADDRESS_MAX + 32];
    memset(longaddr, 'x', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    memcpy(longaddr, "tcp://", 6);
    cfg.bind = longaddr;
    CHECK(transport_new(&cfg, err, sizeof err) == NULL);

    /* Sends that cannot be: counted, nothing opened. */
    uint8_t msg[64];
    size_t len = s_encode(WIRE_PING, a.key.public_key, 1, msg, sizeof msg);
    CHECK_EQ_INT(transport_send(a.t, "udp://127.0.0.1:9", WIRE_PING, msg, len), GG_EINVAL);
    CHECK_EQ_INT(transport_send(a.t, "tcp://", WIRE_PING, msg, len), GG_EINVAL);
    CHECK_EQ_INT(transport_send(a.t, longaddr, WIRE_PING, msg, len), GG_EINVAL);
    CHECK_EQ_INT(transport_send(a.t, "tcp://127.0.0.1:9", WIRE_PING, msg, 0), GG_EINVAL);
    CHECK_EQ_INT(
        transport_send(a.t, "tcp://127.0.0.1:9", WIRE_PING, msg, (size_t) WIRE_MAX_MESSAGE + 1),
        GG_ETOOBIG);
    const transport_stats_t *sa = s_stats(&a);
    CHECK_EQ_INT(sa->send_dropped, 5);
    CHECK_EQ_INT(sa->peers_open, 0);
    CHECK_EQ_INT(sa->msgs_out[WIRE_PING], 0);
    CHECK_STR(transport_refused_name(TRANSPORT_REFUSED_KEY_MISMATCH), "key_mismatch");
    CHECK_STR(transport_refused_name(TRANSPORT_REFUSED_HANDSHAKE), "handshake");
    CHECK_STR(transport_refused_name(TRANSPORT_REFUSED_COUNT), "unknown");

    transport_t *none = NULL;
    transport_destroy(&none); /* NULL-safe */
    s_node_free(&a);
    s_node_free(&b);
}

int main(void)
{
    zsys_init();
    zsys_handler_set(NULL);
    if (sodium_init() < 0)
        return 1;
    if (operator_key_generate("ops", &s_op) != 0 || operator_key_generate("rogue", &s_rogue) != 0)
        return 1;
    s_loop = zloop_new();
    if (!s_loop)
        return 1;
    GG_RUN(test_deliver_and_stats);
    GG_RUN(test_receiver_restart);
    GG_RUN(test_refused_certificates);
    GG_RUN(test_expiry_while_proven);
    GG_RUN(test_replayed_certificate);
    GG_RUN(test_spoofed_sender);
    GG_RUN(test_garbage_and_oversize);
    GG_RUN(test_lru);
    GG_RUN(test_evict_from_timer);
    GG_RUN(test_bad_input);
    zloop_destroy(&s_loop);
    operator_key_wipe(&s_op);
    operator_key_wipe(&s_rogue);
    GG_DONE();
}
