/*
 * fuzz_membership.c: libFuzzer target for membership messages from peers.
 * Each input is one message: it is decoded (envelope, then the membership
 * body in either wire version), and when it decodes it is handed to a
 * membership that knows two members, then its timers run and its outputs
 * are drained, every SEND encoded again. Bad input gets an error code,
 * never a crash, a leak or a sanitizer report; whatever the membership
 * sends must encode. The seed corpus (corpus/membership) holds a GOSSIP
 * and a SYNC in both wire versions and a PING.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gg_error.h"
#include "membership.h"
#include "wire.h"

static void s_drain(membership_t *m)
{
    membership_out_t o;
    while (membership_poll(m, &o)) {
        if (o.type == MOUT_SEND && o.msg) {
            uint8_t *data = NULL;
            size_t len = 0;
            int rc = membership_msg_encode(o.msg, &data, &len);
            if (rc != 0 && rc != GG_ETOOBIG && rc != GG_ENOMEM)
                abort(); /* the state machine built a message it cannot send */
            free(data);
        }
        membership_out_release(&o);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_msg_t w;
    if (wire_decode(data, size, &w) != 0)
        return 0;
    membership_msg_t *msg = NULL;
    int rc = membership_msg_decode(&w, &msg);
    if (rc == 0 && !msg)
        abort();
    if (rc != 0) {
        wire_msg_release(&w);
        return 0;
    }
    membership_profile_t p;
    if (membership_profile_get("test", &p) != 0)
        abort();
    uint8_t self[MEMBER_ID_LEN];
    memset(self, 0xAA, sizeof self);
    membership_t *m = membership_new(&p, self, "self", "tcp://a:1", 1, 1, 0);
    if (!m)
        abort();
    member_t known[2];
    memset(known, 0, sizeof known);
    memset(known[0].id, 0xBB, MEMBER_ID_LEN);
    strcpy(known[0].name, "b");
    strcpy(known[0].address, "tcp://b:1");
    known[0].incarnation = 1;
    memset(known[1].id, 0xCC, MEMBER_ID_LEN);
    strcpy(known[1].name, "c");
    strcpy(known[1].address, "tcp://c:1");
    known[1].incarnation = 1;
    (void) membership_restore(m, known, 2, 0);
    s_drain(m);
    rc = membership_handle(m, 10, w.sender, msg);
    if (rc > 0)
        abort(); /* 0 or an error code */
    membership_msg_destroy(&msg);
    wire_msg_release(&w);
    for (uint64_t now = 10; now <= 3010; now += 250) {
        membership_tick(m, now);
        s_drain(m);
    }
    membership_destroy(&m);
    return 0;
}
