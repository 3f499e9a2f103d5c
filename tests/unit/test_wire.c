/*
 * test_wire.c: the msgpack wire codec. Round trips of every field type, and
 * every class of malformed input a peer could send: truncation at each byte,
 * trailing bytes, wrong envelope shapes, versions, hostile container headers
 * (counts and lengths far beyond the buffer), nesting depth, oversize input
 * and random bytes. Run under ASan: a huge allocation or an over-read fails.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "gg_error.h"
#include "gg_test.h"
#include "wire.h"

static const uint8_t SENDER[WIRE_ID_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                            12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                            23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* ---- raw envelope builder for hand-made (bad) messages ---- */

enum {
    ENV_NO_V = 1 << 0,
    ENV_NO_T = 1 << 1,
    ENV_NO_S = 1 << 2,
    ENV_NO_B = 1 << 3,
    ENV_V_STR = 1 << 4,   /* "v" is a string */
    ENV_V_NEG = 1 << 5,   /* "v" is -1 */
    ENV_T_STR = 1 << 6,   /* "t" is a string */
    ENV_T_BIG = 1 << 7,   /* "t" is 2^32 */
    ENV_S_STR = 1 << 8,   /* "s" is a 32-byte string */
    ENV_B_ARRAY = 1 << 9, /* "b" is an array */
    ENV_EXTRA = 1 << 10,  /* an unknown top-level key "zz" */
    ENV_KEY_BIN = 1 << 11 /* "v" key written as bin, not str */
};

typedef struct {
    uint64_t version;
    size_t sender_len;
    unsigned flags;
} env_spec_t;

static void s_pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

/* Builds an envelope into sbuf (initialised by the caller). */
static void s_build(msgpack_sbuffer *sbuf, const env_spec_t *spec)
{
    msgpack_packer pk;
    uint8_t sender[64];
    unsigned f = spec->flags;
    int n = 4 - !!(f & ENV_NO_V) - !!(f & ENV_NO_T) - !!(f & ENV_NO_S) - !!(f & ENV_NO_B) +
            !!(f & ENV_EXTRA);

    memset(sender, 0xab, sizeof sender);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t) n);
    if (f & ENV_EXTRA) {
        s_pack_key(&pk, "zz");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_nil(&pk);
        msgpack_pack_double(&pk, 1.5);
    }
    if (!(f & ENV_NO_V)) {
        if (f & ENV_KEY_BIN) {
            msgpack_pack_bin(&pk, 1);
            msgpack_pack_bin_body(&pk, "v", 1);
        } else {
            s_pack_key(&pk, "v");
        }
        if (f & ENV_V_STR)
            s_pack_key(&pk, "1");
        else if (f & ENV_V_NEG)
            msgpack_pack_int64(&pk, -1);
        else
            msgpack_pack_uint64(&pk, spec->version);
    }
    if (!(f & ENV_NO_T)) {
        s_pack_key(&pk, "t");
        if (f & ENV_T_STR)
            s_pack_key(&pk, "ping");
        else if (f & ENV_T_BIG)
            msgpack_pack_uint64(&pk, 1ull << 32);
        else
            msgpack_pack_uint32(&pk, WIRE_PING);
    }
    if (!(f & ENV_NO_S)) {
        s_pack_key(&pk, "s");
        if (f & ENV_S_STR) {
            msgpack_pack_str(&pk, spec->sender_len);
            msgpack_pack_str_body(&pk, sender, spec->sender_len);
        } else {
            msgpack_pack_bin(&pk, spec->sender_len);
            msgpack_pack_bin_body(&pk, sender, spec->sender_len);
        }
    }
    if (!(f & ENV_NO_B)) {
        s_pack_key(&pk, "b");
        if (f & ENV_B_ARRAY) {
            msgpack_pack_array(&pk, 0);
        } else {
            msgpack_pack_map(&pk, 1);
            s_pack_key(&pk, "seq");
            msgpack_pack_uint64(&pk, 7);
        }
    }
}

static int s_decode_spec(uint64_t version, size_t sender_len, unsigned flags)
{
    env_spec_t spec = {version, sender_len, flags};
    msgpack_sbuffer sbuf;
    wire_msg_t msg;
    msgpack_sbuffer_init(&sbuf);
    s_build(&sbuf, &spec);
    int rc = wire_decode(sbuf.data, sbuf.size, &msg);
    if (rc == 0) {
        uint64_t seq = 0;
        if (wire_get_u64(&msg.body, "seq", &seq) != 0 || seq != 7)
            rc = 1; /* decoded but the body is wrong: fails any CHECK below */
    }
    wire_msg_release(&msg);
    msgpack_sbuffer_destroy(&sbuf);
    return rc;
}

/* A valid message with a bit of everything, used by several tests. */
static void s_sample(msgpack_sbuffer *out)
{
    wire_writer_t *w = wire_writer_new(WIRE_LEASE, SENDER, 5);
    const uint8_t *data;
    size_t len;
    msgpack_sbuffer_init(out);
    if (!w)
        return;
    wire_put_u64(w, "epoch", 42);
    wire_put_i64(w, "delta", -300);
    wire_put_str(w, "target", "db.orders");
    wire_put_bin(w, "holder", SENDER, sizeof SENDER);
    wire_put_key(w, "list");
    msgpack_packer *pk = wire_writer_packer(w);
    msgpack_pack_array(pk, 2);
    msgpack_pack_true(pk);
    msgpack_pack_map(pk, 1);
    s_pack_key(pk, "x");
    msgpack_pack_uint8(pk, 3);
    if (wire_writer_finish(w, &data, &len) == 0)
        msgpack_sbuffer_write(out, (const char *) data, len);
    wire_writer_destroy(&w);
}

/* ---- tests ---- */

static void test_round_trip(void)
{
    uint8_t blob[300];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t) (i * 7);
    wire_writer_t *w = wire_writer_new(WIRE_PROGRESS, SENDER, 12);
    REQUIRE(w);
    wire_put_u64(w, "u0", 0);
    wire_put_u64(w, "umax", UINT64_MAX);
    wire_put_i64(w, "imin", INT64_MIN);
    wire_put_i64(w, "ineg", -1);
    wire_put_i64(w, "ipos", 1234567890123ll);
    wire_put_bool(w, "yes", true);
    wire_put_bool(w, "no", false);
    wire_put_str(w, "empty", "");
    wire_put_str(w, "name", "orders-v2");
    wire_put_bin(w, "blob", blob, sizeof blob);
    wire_put_bin(w, "nobin", NULL, 0);
    wire_put_key(w, "raw");
    msgpack_pack_double(wire_writer_packer(w), 2.5);

    const uint8_t *data = NULL;
    size_t len = 0;
    REQUIRE(wire_writer_finish(w, &data, &len) == 0);
    REQUIRE(data && len > 0);
    CHECK_EQ_INT(wire_validate(data, len), 0);

    wire_msg_t msg;
    REQUIRE(wire_decode(data, len, &msg) == 0);
    wire_writer_destroy(&w); /* the message must not depend on the input buffer */
    CHECK(w == NULL);
    CHECK_EQ_INT(msg.version, WIRE_MIN_VERSION); /* a form every accepted peer reads */
    CHECK_EQ_INT(msg.type, WIRE_PROGRESS);
    CHECK(memcmp(msg.sender, SENDER, WIRE_ID_LEN) == 0);
    CHECK(msg.body.type == MSGPACK_OBJECT_MAP);
    CHECK_EQ_INT(msg.body.via.map.size, 12);

    uint64_t u = 1;
    int64_t i = 0;
    bool b = false;
    char s[32];
    CHECK_EQ_INT(wire_get_u64(&msg.body, "u0", &u), 0);
    CHECK(u == 0);
    CHECK_EQ_INT(wire_get_u64(&msg.body, "umax", &u), 0);
    CHECK(u == UINT64_MAX);
    CHECK_EQ_INT(wire_get_i64(&msg.body, "imin", &i), 0);
    CHECK(i == INT64_MIN);
    CHECK_EQ_INT(wire_get_i64(&msg.body, "ineg", &i), 0);
    CHECK(i == -1);
    CHECK_EQ_INT(wire_get_i64(&msg.body, "ipos", &i), 0);
    CHECK(i == 1234567890123ll);
    CHECK_EQ_INT(wire_get_i64(&msg.body, "u0", &i), 0); /* a uint read as i64 */
    CHECK(i == 0);
    CHECK_EQ_INT(wire_get_bool(&msg.body, "yes", &b), 0);
    CHECK(b);
    CHECK_EQ_INT(wire_get_bool(&msg.body, "no", &b), 0);
    CHECK(!b);
    CHECK_EQ_INT(wire_get_str(&msg.body, "empty", s, sizeof s - 1), 0);
    CHECK_STR(s, "");
    CHECK_EQ_INT(wire_get_str(&msg.body, "name", s, sizeof s - 1), 0);
    CHECK_STR(s, "orders-v2");
    const uint8_t *bp = NULL;
    size_t bl = 0;
    CHECK_EQ_INT(wire_get_bin(&msg.body, "blob", &bp, &bl, 300), 0);
    CHECK_EQ_INT(bl, 300);
    CHECK(bp && memcmp(bp, blob, sizeof blob) == 0);
    CHECK_EQ_INT(wire_get_bin(&msg.body, "nobin", &bp, &bl, 10), 0);
    CHECK_EQ_INT(bl, 0);
    uint8_t copy[300];
    CHECK_EQ_INT(wire_get_bin_exact(&msg.body, "blob", copy, sizeof copy), 0);
    CHECK(memcmp(copy, blob, sizeof blob) == 0);
    const msgpack_object *raw = wire_map_get(&msg.body, "raw");
    REQUIRE(raw);
    CHECK(raw->type == MSGPACK_OBJECT_FLOAT64 && raw->via.f64 == 2.5);
    wire_msg_release(&msg);
    CHECK(msg.zone == NULL);
    wire_msg_release(&msg); /* released twice: harmless */
    wire_msg_release(NULL);
}

static void test_nested(void)
{
    msgpack_sbuffer sbuf;
    s_sample(&sbuf);
    REQUIRE(sbuf.size > 0);
    wire_msg_t msg;
    REQUIRE(wire_decode(sbuf.data, sbuf.size, &msg) == 0);
    CHECK_EQ_INT(msg.type, WIRE_LEASE);

    const msgpack_object_array *arr = NULL;
    CHECK_EQ_INT(wire_get_array(&msg.body, "list", &arr, 2), 0);
    REQUIRE(arr && arr->size == 2);
    CHECK_EQ_INT(wire_get_array(&msg.body, "list", &arr, 1), GG_EMALFORMED);
    CHECK(arr->ptr[0].type == MSGPACK_OBJECT_BOOLEAN);
    const msgpack_object *inner = &arr->ptr[1];
    uint64_t x = 0;
    CHECK_EQ_INT(wire_get_u64(inner, "x", &x), 0);
    CHECK_EQ_INT(x, 3);
    CHECK_EQ_INT(wire_obj_u64(&arr->ptr[0], &x), GG_EMALFORMED);

    uint8_t holder[WIRE_ID_LEN];
    CHECK_EQ_INT(wire_get_bin_exact(&msg.body, "holder", holder, WIRE_ID_LEN), 0);
    CHECK(memcmp(holder, SENDER, WIRE_ID_LEN) == 0);
    char t[16];
    CHECK_EQ_INT(wire_get_str(&msg.body, "target", t, 15), 0);
    CHECK_STR(t, "db.orders");
    wire_msg_release(&msg);
    msgpack_sbuffer_destroy(&sbuf);

    /* A map nested in the body, read with wire_get_map. */
    wire_writer_t *w = wire_writer_new(WIRE_DIGEST, SENDER, 1);
    REQUIRE(w);
    wire_put_key(w, "m");
    msgpack_packer *pk = wire_writer_packer(w);
    msgpack_pack_map(pk, 2);
    s_pack_key(pk, "ids");
    msgpack_pack_array(pk, 3);
    for (int k = 0; k < 3; k++) {
        msgpack_pack_str(pk, 2);
        msgpack_pack_str_body(pk, k == 0 ? "aa" : k == 1 ? "bb" : "cc", 2);
    }
    s_pack_key(pk, "key");
    msgpack_pack_bin(pk, WIRE_ID_LEN);
    msgpack_pack_bin_body(pk, SENDER, WIRE_ID_LEN);
    const uint8_t *data;
    size_t len;
    REQUIRE(wire_writer_finish(w, &data, &len) == 0);
    REQUIRE(wire_decode(data, len, &msg) == 0);
    const msgpack_object *m = NULL;
    CHECK_EQ_INT(wire_get_map(&msg.body, "m", &m), 0);
    REQUIRE(m);
    CHECK_EQ_INT(wire_get_array(m, "ids", &arr, 16), 0);
    REQUIRE(arr && arr->size == 3);
    char id[3];
    CHECK_EQ_INT(wire_obj_str(&arr->ptr[2], id, 2), 0);
    CHECK_STR(id, "cc");
    CHECK_EQ_INT(wire_obj_str(&arr->ptr[2], id, 1), GG_EMALFORMED);
    uint8_t key[WIRE_ID_LEN];
    CHECK_EQ_INT(wire_obj_bin_exact(wire_map_get(m, "key"), key, WIRE_ID_LEN), 0);
    CHECK(memcmp(key, SENDER, WIRE_ID_LEN) == 0);
    CHECK_EQ_INT(wire_obj_bin_exact(wire_map_get(m, "key"), key, WIRE_ID_LEN - 1), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_map(&msg.body, "absent", &m), GG_ENOTFOUND);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);
}

static void test_truncated_every_offset(void)
{
    msgpack_sbuffer sbuf;
    s_sample(&sbuf);
    REQUIRE(sbuf.size > 40);
    wire_msg_t msg;
    int bad = 0;
    for (size_t k = 0; k < sbuf.size; k++) {
        /* A fresh heap copy of exactly k bytes: ASan catches any over-read. */
        char *cut = malloc(k ? k : 1);
        REQUIRE(cut);
        memcpy(cut, sbuf.data, k);
        int rc = wire_decode(cut, k, &msg);
        if (rc != GG_EMALFORMED) {
            fprintf(stderr, "truncated at %zu: rc %d\n", k, rc);
            bad++;
        }
        CHECK_EQ_INT(wire_validate(cut, k), GG_EMALFORMED);
        wire_msg_release(&msg);
        free(cut);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(wire_decode(sbuf.data, sbuf.size, &msg), 0);
    wire_msg_release(&msg);
    msgpack_sbuffer_destroy(&sbuf);
}

/* wire_decode_in: the same verdicts and fields as wire_decode, with one
 * zone reused (cleared) across many messages, truncated ones included. */
static void test_decode_in_zone(void)
{
    msgpack_sbuffer sbuf;
    s_sample(&sbuf);
    msgpack_zone *zone = msgpack_zone_new(1024);
    REQUIRE(zone);
    wire_msg_t a, b;
    for (int round = 0; round < 1000; round++) {
        REQUIRE(wire_decode(sbuf.data, sbuf.size, &a) == 0);
        REQUIRE(wire_decode_in(sbuf.data, sbuf.size, zone, &b) == 0);
        CHECK(b.zone == NULL);
        CHECK_EQ_INT(a.type, b.type);
        CHECK(memcmp(a.sender, b.sender, WIRE_ID_LEN) == 0);
        CHECK(msgpack_object_equal(a.body, b.body));
        wire_msg_release(&a);
        wire_msg_release(&b);
        msgpack_zone_clear(zone);
    }
    for (size_t k = 0; k < sbuf.size; k++) {
        char *cut = malloc(k ? k : 1);
        REQUIRE(cut);
        memcpy(cut, sbuf.data, k);
        CHECK_EQ_INT(wire_decode_in(cut, k, zone, &b), GG_EMALFORMED);
        CHECK(b.zone == NULL && b.type == 0);
        msgpack_zone_clear(zone);
        free(cut);
    }
    CHECK_EQ_INT(wire_decode_in(sbuf.data, WIRE_MAX_MESSAGE + 1, zone, &b), GG_ETOOBIG);
    msgpack_zone_free(zone);
    msgpack_sbuffer_destroy(&sbuf);
}

static void test_trailing_and_not_a_map(void)
{
    msgpack_sbuffer sbuf;
    wire_msg_t msg;
    s_sample(&sbuf);
    REQUIRE(sbuf.size > 0);
    msgpack_sbuffer_write(&sbuf, "\xc0", 1);
    CHECK_EQ_INT(wire_validate(sbuf.data, sbuf.size), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(sbuf.data, sbuf.size, &msg), GG_EMALFORMED);
    /* Two whole messages back to back are not one message either. */
    size_t one = sbuf.size - 1;
    char *copy = malloc(one);
    REQUIRE(copy);
    memcpy(copy, sbuf.data, one);
    sbuf.size = one;
    msgpack_sbuffer_write(&sbuf, copy, one);
    free(copy);
    CHECK_EQ_INT(wire_decode(sbuf.data, sbuf.size, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(sbuf.data, one, &msg), 0);
    wire_msg_release(&msg);
    msgpack_sbuffer_destroy(&sbuf);

    static const uint8_t not_map[][8] = {
        {0x90},                   /* [] */
        {0x92, 0x01, 0x02},       /* [1, 2] */
        {0x05},                   /* 5 */
        {0xa3, 'a', 'b', 'c'},    /* "abc" */
        {0xc0},                   /* nil */
        {0xc4, 0x02, 0x80, 0x80}, /* bin */
        {0x80},                   /* {} */
    };
    static const size_t not_map_len[] = {1, 3, 1, 4, 1, 4, 1};
    for (size_t k = 0; k < sizeof not_map_len / sizeof not_map_len[0]; k++) {
        CHECK_EQ_INT(wire_validate(not_map[k], not_map_len[k]), 0);
        CHECK_EQ_INT(wire_decode(not_map[k], not_map_len[k], &msg), GG_EMALFORMED);
    }
    CHECK_EQ_INT(wire_decode(NULL, 0, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(NULL, 10, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode("\x80", 0, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(NULL, 0), GG_EMALFORMED);
    CHECK(msg.zone == NULL);
}

static void test_envelope_fields(void)
{
    /* The builder's well-formed output decodes: the bad cases below differ
     * from it in one field only. */
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, 0), 0);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_EXTRA), 0);

    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_NO_V), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_NO_T), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_NO_S), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_NO_B), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_V_STR), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_V_NEG), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_T_STR), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_T_BIG), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_S_STR), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_B_ARRAY), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, ENV_KEY_BIN), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN - 1, 0), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN + 1, 0), GG_EMALFORMED);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, 0, 0), GG_EMALFORMED);
}

static void test_versions(void)
{
    CHECK_EQ_INT(s_decode_spec(0, WIRE_ID_LEN, 0), GG_EVERSION);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION + 1, WIRE_ID_LEN, 0), GG_EVERSION);
    CHECK_EQ_INT(s_decode_spec(1ull << 32, WIRE_ID_LEN, 0), GG_EVERSION);
    CHECK_EQ_INT(s_decode_spec(UINT64_MAX, WIRE_ID_LEN, 0), GG_EVERSION);
    /* A newer version is refused before its other fields are looked at. */
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION + 1, 3, ENV_NO_B), GG_EVERSION);
    CHECK_EQ_INT(s_decode_spec(WIRE_VERSION, WIRE_ID_LEN, 0), 0);
    uint64_t prev = (uint64_t) WIRE_VERSION - 1;
    CHECK_EQ_INT(s_decode_spec(prev, WIRE_ID_LEN, 0), prev >= WIRE_MIN_VERSION ? 0 : GG_EVERSION);
    for (uint64_t v = WIRE_MIN_VERSION; v <= WIRE_VERSION; v++)
        CHECK_EQ_INT(s_decode_spec(v, WIRE_ID_LEN, 0), 0);
    /* A writer says the version it was asked for, and it decodes as such. */
    CHECK(WIRE_VERSION == WIRE_MIN_VERSION + 1);
    for (uint32_t v = WIRE_MIN_VERSION; v <= WIRE_VERSION; v++) {
        wire_writer_t *w = wire_writer_new_version(v, WIRE_PROGRESS, SENDER, 0);
        const uint8_t *data;
        size_t len;
        wire_msg_t msg;
        REQUIRE(w && wire_writer_finish(w, &data, &len) == 0);
        REQUIRE(wire_decode(data, len, &msg) == 0);
        CHECK_EQ_INT(msg.version, v);
        wire_msg_release(&msg);
        wire_writer_destroy(&w);
    }
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Headers that claim far more than the buffer holds. Without the pre-scan
 * msgpack-c would try to allocate up to ~200 GB (ASan aborts on that). */
static void test_hostile_headers(void)
{
    static const uint8_t arr32[10] = {0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5};
    static const uint8_t map32[10] = {0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5};
    static const uint8_t str32[10] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd', 'e'};
    static const uint8_t bin32[10] = {0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5};
    static const uint8_t ext32[10] = {0xc9, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5};
    static const uint8_t arr16[4] = {0xdc, 0xff, 0xff, 0x01};
    static const uint8_t map16[6] = {0xde, 0x00, 0x02, 0x01, 0x02, 0x03}; /* 4 owed, 3 left */
    static const uint8_t fixmap[4] = {0x82, 0x01, 0x02, 0x03};            /* 4 owed, 3 left */
    static const uint8_t c1[1] = {0xc1};
    /* [1, [1, 2], 3]: complete at 6 bytes. Cut at 5, the inner array's
     * header owes 2 items and the outer 1 more, with 2 bytes left: refused at
     * the header although the inner count alone would fit. */
    static const uint8_t nested[6] = {0x93, 0x01, 0x92, 0x01, 0x02, 0x03};
    wire_msg_t msg;
    double t0 = s_now();
    CHECK_EQ_INT(wire_validate(arr32, sizeof arr32), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(arr32, sizeof arr32, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(map32, sizeof map32), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(map32, sizeof map32, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(str32, sizeof str32), GG_EMALFORMED);
    CHECK_EQ_INT(wire_decode(str32, sizeof str32, &msg), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(bin32, sizeof bin32), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(ext32, sizeof ext32), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(arr16, sizeof arr16), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(map16, sizeof map16), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(fixmap, sizeof fixmap), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(c1, sizeof c1), GG_EMALFORMED);
    CHECK_EQ_INT(wire_validate(nested, sizeof nested), 0);
    CHECK_EQ_INT(wire_validate(nested, 5), GG_EMALFORMED);

    /* The same claims inside a well-formed envelope's body. */
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    s_pack_key(&pk, "v");
    msgpack_pack_uint8(&pk, WIRE_VERSION);
    s_pack_key(&pk, "t");
    msgpack_pack_uint8(&pk, WIRE_SYNC);
    s_pack_key(&pk, "s");
    msgpack_pack_bin(&pk, WIRE_ID_LEN);
    msgpack_pack_bin_body(&pk, SENDER, WIRE_ID_LEN);
    s_pack_key(&pk, "b");
    msgpack_pack_map(&pk, 1);
    s_pack_key(&pk, "m");
    size_t head = sbuf.size;
    const uint8_t *claims[] = {arr32, map32, str32, bin32, ext32};
    for (size_t k = 0; k < 5; k++) {
        sbuf.size = head;
        msgpack_sbuffer_write(&sbuf, (const char *) claims[k], 5);
        for (int pad = 0; pad < 64; pad++)
            msgpack_sbuffer_write(&sbuf, "\x01", 1);
        CHECK_EQ_INT(wire_decode(sbuf.data, sbuf.size, &msg), GG_EMALFORMED);
    }
    msgpack_sbuffer_destroy(&sbuf);
    double elapsed = s_now() - t0;
    CHECK(elapsed < 1.0); /* microseconds in practice: nothing was allocated */
}

/* depth nested arrays: depth-1 times [x], innermost [1] (or [] when empty). */
static size_t s_nest(uint8_t *buf, int depth, bool empty)
{
    size_t n = 0;
    for (int d = 0; d < depth - 1; d++)
        buf[n++] = 0x91;
    if (empty) {
        buf[n++] = 0x90;
    } else {
        buf[n++] = 0x91;
        buf[n++] = 0x01;
    }
    return n;
}

static int s_decode_body_depth(int body_depth)
{
    /* The envelope map is depth 1, the body map depth 2. */
    wire_writer_t *w = wire_writer_new(WIRE_SYNC, SENDER, 1);
    const uint8_t *data;
    size_t len;
    wire_msg_t msg;
    int rc;
    if (!w)
        return GG_ENOMEM;
    wire_put_key(w, "deep");
    msgpack_packer *pk = wire_writer_packer(w);
    for (int d = 0; d < body_depth - 2; d++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_uint8(pk, 9);
    rc = wire_writer_finish(w, &data, &len);
    if (rc == 0) {
        rc = wire_decode(data, len, &msg);
        wire_msg_release(&msg);
    }
    wire_writer_destroy(&w);
    return rc;
}

static void test_depth(void)
{
    uint8_t buf[64];
    size_t n;
    n = s_nest(buf, WIRE_MAX_DEPTH, false);
    CHECK_EQ_INT(wire_validate(buf, n), 0);
    n = s_nest(buf, WIRE_MAX_DEPTH + 1, false);
    CHECK_EQ_INT(wire_validate(buf, n), GG_EMALFORMED);
    n = s_nest(buf, WIRE_MAX_DEPTH, true);
    CHECK_EQ_INT(wire_validate(buf, n), 0);
    n = s_nest(buf, WIRE_MAX_DEPTH + 1, true);
    CHECK_EQ_INT(wire_validate(buf, n), GG_EMALFORMED);
    /* Deeper than msgpack-c's own stack (32): refused by the pre-scan. */
    n = s_nest(buf, 40, false);
    CHECK_EQ_INT(wire_validate(buf, n), GG_EMALFORMED);

    CHECK_EQ_INT(s_decode_body_depth(WIRE_MAX_DEPTH), 0);
    /* The writer refuses to finish a message no peer would accept. */
    CHECK_EQ_INT(s_decode_body_depth(WIRE_MAX_DEPTH + 1), GG_EINVAL);
}

static void test_sizes(void)
{
    wire_msg_t msg;
    /* A length over the bound is refused before the bytes are read. */
    uint8_t *big = calloc(1, (size_t) WIRE_MAX_MESSAGE + 1);
    REQUIRE(big);
    CHECK_EQ_INT(wire_decode(big, (size_t) WIRE_MAX_MESSAGE + 1, &msg), GG_ETOOBIG);
    free(big);

    /* Find the envelope overhead around a bin32 value, then build a message
     * of exactly WIRE_MAX_MESSAGE bytes (accepted) and one byte more. */
    size_t probe = 70000, overhead = 0;
    uint8_t *payload = calloc(1, WIRE_MAX_MESSAGE);
    REQUIRE(payload);
    const uint8_t *data;
    size_t len;
    wire_writer_t *w = wire_writer_new(WIRE_PLAN, SENDER, 1);
    REQUIRE(w);
    wire_put_bin(w, "chunk", payload, probe);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), 0);
    overhead = len - probe;
    wire_writer_destroy(&w);

    w = wire_writer_new(WIRE_PLAN, SENDER, 1);
    REQUIRE(w);
    wire_put_bin(w, "chunk", payload, WIRE_MAX_MESSAGE - overhead);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), 0);
    CHECK_EQ_INT(len, WIRE_MAX_MESSAGE);
    CHECK_EQ_INT(wire_decode(data, len, &msg), 0);
    const uint8_t *bp;
    size_t bl = 0;
    CHECK_EQ_INT(wire_get_bin(&msg.body, "chunk", &bp, &bl, WIRE_MAX_MESSAGE), 0);
    CHECK_EQ_INT(bl, WIRE_MAX_MESSAGE - overhead);
    CHECK_EQ_INT(wire_get_bin(&msg.body, "chunk", &bp, &bl, 100), GG_EMALFORMED);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);

    w = wire_writer_new(WIRE_PLAN, SENDER, 1);
    REQUIRE(w);
    wire_put_bin(w, "chunk", payload, WIRE_MAX_MESSAGE - overhead + 1);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), GG_ETOOBIG);
    CHECK(data == NULL && len == 0);
    wire_writer_destroy(&w);

    /* Writing on after the limit keeps failing, and never grows the buffer. */
    w = wire_writer_new(WIRE_PLAN, SENDER, 3);
    REQUIRE(w);
    wire_put_bin(w, "a", payload, WIRE_MAX_MESSAGE);
    wire_put_u64(w, "b", 1);
    wire_put_str(w, "c", "x");
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), GG_ETOOBIG);
    wire_writer_destroy(&w);
    wire_writer_destroy(&w); /* NULL-safe */
    wire_writer_destroy(NULL);
    free(payload);
}

static void test_writer_field_count(void)
{
    const uint8_t *data;
    size_t len;
    wire_writer_t *w = wire_writer_new(WIRE_PING, SENDER, 2);
    REQUIRE(w);
    wire_put_u64(w, "seq", 1);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), GG_EINVAL); /* one pair short */
    wire_put_u64(w, "inc", 2);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), 0);
    wire_put_u64(w, "extra", 3);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), GG_EINVAL); /* one pair over */
    wire_writer_destroy(&w);

    w = wire_writer_new(WIRE_ACK, SENDER, 0);
    REQUIRE(w);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), 0);
    wire_msg_t msg;
    CHECK_EQ_INT(wire_decode(data, len, &msg), 0);
    CHECK_EQ_INT(msg.type, WIRE_ACK);
    CHECK_EQ_INT(msg.body.via.map.size, 0);
    uint64_t u;
    CHECK_EQ_INT(wire_get_u64(&msg.body, "seq", &u), GG_ENOTFOUND);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);

    /* Unknown types decode: the dispatcher decides what to ignore. */
    w = wire_writer_new(999, SENDER, 0);
    REQUIRE(w);
    CHECK_EQ_INT(wire_writer_finish(w, &data, &len), 0);
    CHECK_EQ_INT(wire_decode(data, len, &msg), 0);
    CHECK_EQ_INT(msg.type, 999);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);
}

static void test_accessors(void)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    wire_msg_t msg;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    wire_writer_t *w = wire_writer_new(WIRE_COMMAND, SENDER, 12);
    REQUIRE(w);
    msgpack_packer *wp = wire_writer_packer(w);
    wire_put_u64(w, "big", (uint64_t) INT64_MAX + 1);
    wire_put_u64(w, "i64max", (uint64_t) INT64_MAX);
    wire_put_i64(w, "neg", -5);
    wire_put_str(w, "nul", "ab"); /* rewritten below with an embedded NUL */
    wire_put_str(w, "s5", "12345");
    wire_put_bool(w, "flag", true);
    wire_put_bin(w, "b4", "\x00\x01\x02\x03", 4);
    wire_put_u64(w, "dup", 1);
    wire_put_u64(w, "dup", 2);
    wire_put_u64(w, "a", 10);
    wire_put_u64(w, "ab", 20);
    wire_put_key(w, "arr");
    msgpack_pack_array(wp, 3);
    msgpack_pack_uint8(wp, 1);
    msgpack_pack_uint8(wp, 2);
    msgpack_pack_uint8(wp, 3);
    const uint8_t *data;
    size_t len;
    REQUIRE(wire_writer_finish(w, &data, &len) == 0);
    /* Patch "ab" after the "nul" key into "a\0". */
    msgpack_sbuffer_write(&sbuf, (const char *) data, len);
    char *nul = memmem(sbuf.data, sbuf.size,
                       "\xa3nul\xa2"
                       "ab",
                       7);
    REQUIRE(nul);
    nul[6] = '\0';
    REQUIRE(wire_decode(sbuf.data, sbuf.size, &msg) == 0);
    const msgpack_object *body = &msg.body;

    uint64_t u = 0;
    int64_t i = 0;
    bool b = false;
    char s[8];
    /* u64 */
    CHECK_EQ_INT(wire_get_u64(body, "neg", &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_u64(body, "s5", &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_u64(body, "flag", &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_u64(body, "missing", &u), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_u64(body, "", &u), GG_ENOTFOUND);
    /* i64 range */
    CHECK_EQ_INT(wire_get_i64(body, "big", &i), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_i64(body, "i64max", &i), 0);
    CHECK(i == INT64_MAX);
    CHECK_EQ_INT(wire_get_i64(body, "neg", &i), 0);
    CHECK_EQ_INT(i, -5);
    CHECK_EQ_INT(wire_get_i64(body, "b4", &i), GG_EMALFORMED);
    /* bool */
    CHECK_EQ_INT(wire_get_bool(body, "a", &b), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_bool(body, "flag", &b), 0);
    CHECK(b);
    /* str: bounds, NUL, type */
    CHECK_EQ_INT(wire_get_str(body, "s5", s, 5), 0);
    CHECK_STR(s, "12345");
    CHECK_EQ_INT(wire_get_str(body, "s5", s, 4), GG_EMALFORMED);
    CHECK_STR(s, ""); /* never left holding a partial value */
    CHECK_EQ_INT(wire_get_str(body, "nul", s, 7), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_str(body, "b4", s, 7), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_str(body, "missing", s, 7), GG_ENOTFOUND);
    /* bin */
    uint8_t b4[5];
    CHECK_EQ_INT(wire_get_bin_exact(body, "b4", b4, 4), 0);
    CHECK(memcmp(b4, "\x00\x01\x02\x03", 4) == 0);
    CHECK_EQ_INT(wire_get_bin_exact(body, "b4", b4, 3), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_bin_exact(body, "b4", b4, 5), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_bin_exact(body, "s5", b4, 5), GG_EMALFORMED);
    const uint8_t *bp;
    size_t bl;
    CHECK_EQ_INT(wire_get_bin(body, "b4", &bp, &bl, 4), 0);
    CHECK_EQ_INT(bl, 4);
    CHECK_EQ_INT(wire_get_bin(body, "b4", &bp, &bl, 3), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_bin(body, "s5", &bp, &bl, 100), GG_EMALFORMED);
    /* array / map */
    const msgpack_object_array *arr;
    const msgpack_object *m;
    CHECK_EQ_INT(wire_get_array(body, "arr", &arr, 3), 0);
    CHECK_EQ_INT(wire_get_array(body, "arr", &arr, 2), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_array(body, "a", &arr, 3), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_map(body, "arr", &m), GG_EMALFORMED);
    /* Duplicate keys: the first wins. Keys match on exact length. */
    CHECK_EQ_INT(wire_get_u64(body, "dup", &u), 0);
    CHECK_EQ_INT(u, 1);
    CHECK_EQ_INT(wire_get_u64(body, "a", &u), 0);
    CHECK_EQ_INT(u, 10);
    CHECK_EQ_INT(wire_get_u64(body, "ab", &u), 0);
    CHECK_EQ_INT(u, 20);
    /* Every accessor tells an absent key from a bad value. */
    CHECK_EQ_INT(wire_get_i64(body, "missing", &i), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_bool(body, "missing", &b), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_bin_exact(body, "missing", b4, 4), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_bin(body, "missing", &bp, &bl, 4), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_array(body, "missing", &arr, 4), GG_ENOTFOUND);
    CHECK_EQ_INT(wire_get_map(body, "missing", &m), GG_ENOTFOUND);
    /* A non-map where a map is expected. */
    const msgpack_object *aobj = wire_map_get(body, "arr");
    REQUIRE(aobj);
    CHECK(wire_map_get(aobj, "a") == NULL);
    CHECK(wire_map_get(NULL, "a") == NULL);
    CHECK_EQ_INT(wire_get_u64(aobj, "a", &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_get_u64(NULL, "a", &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_obj_u64(NULL, &u), GG_EMALFORMED);
    CHECK_EQ_INT(wire_obj_str(NULL, s, 7), GG_EMALFORMED);
    CHECK_EQ_INT(wire_obj_bin_exact(NULL, b4, 4), GG_EMALFORMED);
    CHECK_EQ_INT(wire_obj_u64(&aobj->via.array.ptr[2], &u), 0);
    CHECK_EQ_INT(u, 3);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);
    msgpack_sbuffer_destroy(&sbuf);
}

/* Also covers every format family the pre-scan knows, decoded by msgpack-c. */
static void test_all_formats(void)
{
    static const uint8_t items[] = {
        0x00, 0x7f, 0xe0, 0xff, 0xc0, 0xc2, 0xc3,                /* fixints, nil, bools */
        0xcc, 0x01, 0xcd, 0x01, 0x02, 0xce, 1,    2,    3,    4, /* uint 8/16/32 */
        0xcf, 1,    2,    3,    4,    5,    6,    7,    8,       /* uint 64 */
        0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0,    0,    0, /* int 8/16/32 */
        0xd3, 0x80, 0,    0,    0,    0,    0,    0,    0,       /* int 64 */
        0xca, 0x3f, 0x80, 0,    0,                               /* float 32 */
        0xcb, 0x3f, 0xf0, 0,    0,    0,    0,    0,    0,       /* float 64 */
        0xa1, 'x',  0xd9, 0x01, 'y',  0xda, 0x00, 0x01, 'z',     /* fixstr, str 8/16 */
        0xdb, 0,    0,    0,    1,    'w',                       /* str 32 */
        0xc4, 0x01, 0xaa, 0xc5, 0x00, 0x01, 0xbb,                /* bin 8/16 */
        0xc6, 0,    0,    0,    1,    0xcc,                      /* bin 32 */
        0xd4, 0x01, 0x11, 0xd5, 0x01, 1,    2,                   /* fixext 1/2 */
        0xd6, 0x01, 1,    2,    3,    4,                         /* fixext 4 */
        0xd7, 0x01, 1,    2,    3,    4,    5,    6,    7,    8, /* fixext 8 */
        0xd8, 0x01, 1,    2,    3,    4,    5,    6,    7,    8, 9,    10,
        11,   12,   13,   14,   15,   16,                                    /* fixext 16 */
        0xc7, 0x01, 0x05, 0xee, 0xc8, 0x00, 0x01, 0x05, 0xee,                /* ext 8/16 */
        0xc9, 0,    0,    0,    1,    0x05, 0xee,                            /* ext 32 */
        0x90, 0x80, 0xdc, 0x00, 0x01, 0xc0, 0xdd, 0,    0,    0, 1,    0xc0, /* arrays */
        0xde, 0x00, 0x01, 0x01, 0x02, 0xdf, 0,    0,    0,    1, 0x01, 0x02, /* maps */
    };
    static const unsigned count = 38;
    uint8_t buf[sizeof items + 8];
    size_t n = 0;
    buf[n++] = 0xdc; /* array 16 of `count` items */
    buf[n++] = (uint8_t) (count >> 8);
    buf[n++] = (uint8_t) count;
    memcpy(buf + n, items, sizeof items);
    n += sizeof items;
    CHECK_EQ_INT(wire_validate(buf, n), 0);
    CHECK_EQ_INT(wire_validate(buf, n - 1), GG_EMALFORMED);

    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    REQUIRE(msgpack_zone_init(&zone, 1024));
    CHECK_EQ_INT(msgpack_unpack((const char *) buf, n, &off, &zone, &obj), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(off, n);
    CHECK(obj.type == MSGPACK_OBJECT_ARRAY && obj.via.array.size == count);
    msgpack_zone_destroy(&zone);
}

/* Deterministic xorshift64: the same inputs on every run. */
static uint64_t s_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static void test_random_bytes(void)
{
    uint64_t state = 0x9e3779b97f4a7c15ull;
    uint8_t *buf = malloc(257);
    REQUIRE(buf);
    int odd = 0;
    for (int round = 0; round < 100000; round++) {
        size_t len = (size_t) (s_rand(&state) % 257);
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t) s_rand(&state);
        /* Bias some inputs towards the envelope's first byte. */
        if (len > 0 && round % 4 == 0)
            buf[0] = 0x84;
        wire_msg_t msg;
        int rc = wire_decode(buf, len, &msg);
        if (rc != 0 && rc != GG_EMALFORMED && rc != GG_EVERSION)
            odd++;
        (void) wire_validate(buf, len);
        wire_msg_release(&msg);
    }
    CHECK_EQ_INT(odd, 0);

    /* Mutations of a valid message: one to four bytes overwritten. */
    msgpack_sbuffer sbuf;
    s_sample(&sbuf);
    REQUIRE(sbuf.size > 0);
    uint8_t *mut = malloc(sbuf.size);
    REQUIRE(mut);
    int ok = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(mut, sbuf.data, sbuf.size);
        int edits = 1 + (int) (s_rand(&state) % 4);
        for (int e = 0; e < edits; e++)
            mut[s_rand(&state) % sbuf.size] = (uint8_t) s_rand(&state);
        wire_msg_t msg;
        int rc = wire_decode(mut, sbuf.size, &msg);
        if (rc == 0) {
            ok++;
            char s[64];
            uint64_t u;
            (void) wire_get_str(&msg.body, "target", s, sizeof s - 1);
            (void) wire_get_u64(&msg.body, "epoch", &u);
        } else if (rc != GG_EMALFORMED && rc != GG_EVERSION) {
            odd++;
        }
        wire_msg_release(&msg);
    }
    CHECK_EQ_INT(odd, 0);
    CHECK(ok > 0); /* some mutations only touch values */
    free(mut);
    free(buf);
    msgpack_sbuffer_destroy(&sbuf);
}

static void test_type_names(void)
{
    CHECK_STR(wire_type_name(WIRE_HELLO), "hello");
    CHECK_STR(wire_type_name(WIRE_PING), "ping");
    CHECK_STR(wire_type_name(WIRE_ACK), "ack");
    CHECK_STR(wire_type_name(WIRE_PING_REQ), "ping_req");
    CHECK_STR(wire_type_name(WIRE_NACK), "nack");
    CHECK_STR(wire_type_name(WIRE_SYNC), "sync");
    CHECK_STR(wire_type_name(WIRE_SYNC_REPLY), "sync_reply");
    CHECK_STR(wire_type_name(WIRE_LEAVE), "leave");
    CHECK_STR(wire_type_name(WIRE_HELLO_REQ), "hello_req");
    CHECK_STR(wire_type_name(WIRE_GOSSIP), "gossip");
    CHECK_STR(wire_type_name(WIRE_PLAN), "plan");
    CHECK_STR(wire_type_name(WIRE_PROGRESS), "progress");
    CHECK_STR(wire_type_name(WIRE_DIGEST), "digest");
    CHECK_STR(wire_type_name(WIRE_COMMAND), "command");
    CHECK_STR(wire_type_name(WIRE_LOG_REQ), "log_req");
    CHECK_STR(wire_type_name(WIRE_LOG_REP), "log_rep");
    CHECK_STR(wire_type_name(WIRE_LEASE), "lease");
    CHECK_STR(wire_type_name(WIRE_SCALE), "scale");
    CHECK_STR(wire_type_name(0), "unknown");
    CHECK_STR(wire_type_name(11), "unknown");
    CHECK_STR(wire_type_name(UINT32_MAX), "unknown");
}

int main(void)
{
    GG_RUN(test_round_trip);
    GG_RUN(test_nested);
    GG_RUN(test_truncated_every_offset);
    GG_RUN(test_decode_in_zone);
    GG_RUN(test_trailing_and_not_a_map);
    GG_RUN(test_envelope_fields);
    GG_RUN(test_versions);
    GG_RUN(test_hostile_headers);
    GG_RUN(test_depth);
    GG_RUN(test_sizes);
    GG_RUN(test_writer_field_count);
    GG_RUN(test_accessors);
    GG_RUN(test_all_formats);
    GG_RUN(test_random_bytes);
    GG_RUN(test_type_names);
    GG_DONE();
}
