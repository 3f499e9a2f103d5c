/*
 * fuzz_fleet.c: libFuzzer target for the fleet core's message handling.
 * Each input is one message from a peer: it is decoded, and when it decodes
 * it is handed to a fleet that knows the sender (a live member reading wire
 * version 2) and one plan of 16 targets, then the fleet runs its timers and
 * its outputs are drained. Bad input gets an error code, never a crash, a
 * leak or a sanitizer report, and what the fleet keeps must still be
 * within bounds: every record it reports has a known state and a NUL within
 * its error text. The seed corpus (corpus/fleet) holds valid PROGRESS pushes
 * in both wire versions, a feed page, an announcement and a request.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "gg_error.h"
#include "wire.h"

#define FUZZ_TARGETS 16

/* The ids the seed corpus uses: this node 0xAA.., the peer 0xBB.., the plan
 * 0x11... */
static void s_ids(uint8_t self[FLEET_ID_LEN], uint8_t peer[FLEET_ID_LEN],
                  uint8_t plan[FLEET_ID_LEN])
{
    memset(self, 0xAA, FLEET_ID_LEN);
    memset(peer, 0xBB, FLEET_ID_LEN);
    memset(plan, 0x11, FLEET_ID_LEN);
}

static fleet_t *s_fleet(void)
{
    uint8_t self[FLEET_ID_LEN], peer[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    s_ids(self, peer, plan);
    fleet_config_t cfg;
    if (fleet_config_get("test", &cfg) != 0)
        abort();
    fleet_t *f = fleet_new(&cfg, self, "tcp://a:1", 1, 0);
    if (!f)
        abort();
    fleet_member_t m[2];
    memset(m, 0, sizeof m);
    memcpy(m[0].id, self, FLEET_ID_LEN);
    memcpy(m[1].id, peer, FLEET_ID_LEN);
    strcpy(m[0].address, "tcp://a:1");
    strcpy(m[1].address, "tcp://b:1");
    m[0].live = m[1].live = true;
    m[0].wire_version = m[1].wire_version = WIRE_VERSION;
    fleet_set_members(f, 0, m, 2);
    uint64_t keys[FUZZ_TARGETS];
    for (uint32_t i = 0; i < FUZZ_TARGETS; i++)
        keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
    fleet_rollout_t ro;
    memset(&ro, 0, sizeof ro);
    if (fleet_add_plan(f, 0, plan, FUZZ_TARGETS, keys, NULL, &ro) != 0)
        abort();
    return f;
}

static void s_drain(fleet_t *f)
{
    fleet_out_t o;
    while (fleet_poll(f, &o))
        fleet_out_release(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_msg_t msg;
    if (wire_decode(data, size, &msg) != 0)
        return 0;
    fleet_t *f = s_fleet();
    s_drain(f);
    int rc = fleet_handle(f, 10, &msg);
    if (rc > 0)
        abort(); /* 0 or an error code */
    wire_msg_release(&msg);
    for (uint64_t now = 10; now <= 2010; now += 500) {
        fleet_tick(f, now);
        s_drain(f);
    }
    uint8_t self[FLEET_ID_LEN], peer[FLEET_ID_LEN], plan[FLEET_ID_LEN];
    s_ids(self, peer, plan);
    for (uint32_t i = 0; i < FUZZ_TARGETS; i++) {
        const progress_rec_t *r = fleet_record(f, plan, i);
        if (!r || r->state >= TARGET_STATE_COUNT || !memchr(r->error, '\0', sizeof r->error))
            abort();
    }
    fleet_destroy(&f);
    return 0;
}
