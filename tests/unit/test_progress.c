/* test_progress.c: the record merge is a join-semilattice; the codec is strict. */
#include "gg_error.h"
#include "gg_test.h"
#include "progress.h"
#include "wire.h"

#include <stdint.h>
#include <string.h>

static uint64_t s_rng = 0x1234567;

static uint32_t s_rand(uint32_t n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t) (s_rng % n);
}

static progress_rec_t s_random_rec(void)
{
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    r.epoch = s_rand(3);
    r.generation = s_rand(2);
    r.attempt = s_rand(3);
    r.state = (uint8_t) s_rand(TARGET_STATE_COUNT);
    r.holder[0] = (uint8_t) s_rand(3);
    r.step = (uint8_t) s_rand(2);
    r.finished_ms = s_rand(2);
    return r;
}

static progress_rec_t s_join(progress_rec_t a, const progress_rec_t *b)
{
    progress_merge(&a, b);
    return a;
}

static void test_semilattice(void)
{
    for (int i = 0; i < 20000; i++) {
        progress_rec_t a = s_random_rec(), b = s_random_rec(), c = s_random_rec();
        progress_rec_t ab = s_join(a, &b), ba = s_join(b, &a);
        CHECK(progress_compare(&ab, &ba) == 0 && memcmp(&ab, &ba, sizeof ab) == 0);
        progress_rec_t ab_c = s_join(ab, &c);
        progress_rec_t bc = s_join(b, &c);
        progress_rec_t a_bc = s_join(a, &bc);
        CHECK(memcmp(&ab_c, &a_bc, sizeof ab_c) == 0);
        progress_rec_t aa = s_join(a, &a);
        CHECK(memcmp(&aa, &a, sizeof a) == 0);
        CHECK(!progress_merge(&ab, &a)); /* already absorbed */
    }
}

static void test_order(void)
{
    progress_rec_t run = {.epoch = 1, .attempt = 1, .state = TARGET_RUNNING};
    progress_rec_t done = run;
    done.state = TARGET_SUCCEEDED;
    CHECK(progress_compare(&done, &run) > 0);
    /* A higher epoch wins even against a terminal state of a lower epoch. */
    progress_rec_t takeover = {.epoch = 2, .attempt = 1, .state = TARGET_RUNNING};
    CHECK(progress_compare(&takeover, &done) > 0);
    /* An operator retry (generation+1) reopens a terminal target. */
    progress_rec_t retry = {.epoch = 1, .generation = 1, .state = TARGET_PENDING};
    CHECK(progress_compare(&retry, &done) > 0);
    /* The next attempt supersedes retry_wait. */
    progress_rec_t wait = {.epoch = 1, .attempt = 1, .state = TARGET_RETRY_WAIT};
    progress_rec_t next = {.epoch = 1, .attempt = 2, .state = TARGET_RUNNING};
    CHECK(progress_compare(&wait, &run) > 0);
    CHECK(progress_compare(&next, &wait) > 0);
}

static void test_codec(void)
{
    progress_rec_t r = {.epoch = 7,
                        .generation = 2,
                        .attempt = 3,
                        .state = TARGET_FAILED,
                        .step = 4,
                        .exit_code = -9,
                        .started_ms = 1700000000000ull,
                        .finished_ms = 1700000001000ull,
                        .duration_ms = 1000};
    r.holder[5] = 0xEE;
    snprintf(r.error, sizeof r.error, "step build exited with 2");
    uint8_t sender[WIRE_ID_LEN] = {1};
    wire_writer_t *w = wire_writer_new(WIRE_PROGRESS, sender, 1);
    REQUIRE(w);
    wire_put_key(w, "r");
    progress_pack(&r, wire_writer_packer(w));
    const uint8_t *data;
    size_t len;
    REQUIRE(wire_writer_finish(w, &data, &len) == 0);
    wire_msg_t msg;
    REQUIRE(wire_decode(data, len, &msg) == 0);
    progress_rec_t back;
    CHECK_EQ_INT(progress_unpack(wire_map_get(&msg.body, "r"), &back), 0);
    CHECK(memcmp(&back, &r, sizeof r) == 0);
    /* Not a map, and a state out of range, are refused. */
    CHECK_EQ_INT(progress_unpack(&msg.body, &back), GG_EMALFORMED);
    wire_msg_release(&msg);
    wire_writer_destroy(&w);

    r.state = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    progress_pack(&r, &pk);
    /* patch "st" value (fixint after key "st") to 200 */
    for (size_t i = 0; i + 3 < sb.size; i++)
        if (sb.data[i] == (char) 0xa2 && sb.data[i + 1] == 's' && sb.data[i + 2] == 't') {
            sb.data[i + 3] = 0x7f; /* 127 >= TARGET_STATE_COUNT */
            break;
        }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    REQUIRE(msgpack_unpack_next(&up, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(progress_unpack(&up.data, &back), GG_EMALFORMED);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

/* Packs a record map by hand: keys in the given order, `dup` (if not NULL)
 * a key written a second time with another value, `skip` a key left out,
 * plus an unknown key and a non-string key. */
static int s_unpack_variant(const char *const *order, const char *dup, const char *skip,
                            progress_rec_t *out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t n = 0;
    for (int i = 0; order[i]; i++)
        n += skip && strcmp(order[i], skip) == 0 ? 0 : 1;
    msgpack_pack_map(&pk, n + (dup ? 1 : 0) + 2);
    msgpack_pack_str_with_body(&pk, "zz", 2); /* unknown: ignored */
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 5); /* an integer key: ignored */
    msgpack_pack_uint32(&pk, 1);
    uint8_t holder[32];
    memset(holder, 0xAB, sizeof holder);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; order[i]; i++) {
            const char *k = order[i];
            if ((skip && strcmp(k, skip) == 0) || (pass == 1 && (!dup || strcmp(k, dup) != 0)))
                continue;
            uint32_t v = pass == 0 ? 3 : 4; /* a duplicate carries another value */
            msgpack_pack_str_with_body(&pk, k, strlen(k));
            if (strcmp(k, "h") == 0)
                msgpack_pack_bin_with_body(&pk, holder, sizeof holder);
            else if (strcmp(k, "err") == 0)
                msgpack_pack_str_with_body(&pk, pass == 0 ? "first" : "second", pass == 0 ? 5 : 6);
            else if (strcmp(k, "x") == 0)
                msgpack_pack_int32(&pk, pass == 0 ? -3 : -4);
            else
                msgpack_pack_uint32(&pk, v);
        }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = GG_EINTERNAL;
    if (msgpack_unpack_next(&up, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS)
        rc = progress_unpack(&up.data, out);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Keys in any order; the first of a repeated key counts; unknown keys are
 * ignored; every field is required. */
static void test_unpack_keys(void)
{
    static const char *const fwd[] = {"e", "g",  "a",  "st", "sp",  "h",
                                      "x", "t0", "t1", "d",  "err", NULL};
    static const char *const rev[] = {"err", "d",  "t1", "t0", "x", "h",
                                      "sp",  "st", "a",  "g",  "e", NULL};
    progress_rec_t a, b;
    CHECK_EQ_INT(s_unpack_variant(fwd, NULL, NULL, &a), 0);
    CHECK_EQ_INT(s_unpack_variant(rev, NULL, NULL, &b), 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(a.epoch == 3 && a.state == 3 && a.exit_code == -3 && a.holder[31] == 0xAB);
    CHECK(strcmp(a.error, "first") == 0);
    for (int i = 0; fwd[i]; i++) {
        CHECK_EQ_INT(s_unpack_variant(fwd, fwd[i], NULL, &b), 0);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        CHECK_EQ_INT(s_unpack_variant(fwd, NULL, fwd[i], &b), GG_EMALFORMED);
    }
}

static void test_names(void)
{
    target_state_t s;
    for (int i = 0; i < TARGET_STATE_COUNT; i++) {
        CHECK_EQ_INT(target_state_parse(target_state_name((target_state_t) i), &s), 0);
        CHECK_EQ_INT(s, i);
    }
    CHECK_EQ_INT(target_state_parse("done", &s), GG_EINVAL);
    CHECK(target_state_terminal(TARGET_NEEDS_REVIEW));
    CHECK(!target_state_terminal(TARGET_RETRY_WAIT));
}

int main(void)
{
    GG_RUN(test_semilattice);
    GG_RUN(test_order);
    GG_RUN(test_codec);
    GG_RUN(test_unpack_keys);
    GG_RUN(test_names);
    GG_DONE();
}
