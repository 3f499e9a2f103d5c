/* progress.c: see progress.h for the record, its order and the state machine. */
#include "progress.h"
#include "gg_error.h"
#include "wire.h"

#include <string.h>

static const char *s_names[TARGET_STATE_COUNT] = {
    "pending", "awaiting_approval", "running", "retry_wait", "succeeded",
    "skipped", "needs_review",      "failed",  "cancelled",
};

const char *target_state_name(target_state_t state)
{
    if ((unsigned) state >= TARGET_STATE_COUNT)
        return "unknown";
    return s_names[state];
}

int target_state_parse(const char *name, target_state_t *out)
{
    for (int i = 0; i < TARGET_STATE_COUNT; i++)
        if (strcmp(name, s_names[i]) == 0) {
            *out = (target_state_t) i;
            return GG_OK;
        }
    return GG_EINVAL;
}

bool target_state_terminal(target_state_t state)
{
    return state == TARGET_SUCCEEDED || state == TARGET_SKIPPED || state == TARGET_NEEDS_REVIEW ||
           state == TARGET_FAILED || state == TARGET_CANCELLED;
}

/* Within one (epoch, generation, attempt): waiting < running < retry_wait <
 * terminal. Terminal states rank alike; the state number breaks the tie so the
 * order stays total. */
static int s_rank(uint8_t state)
{
    switch (state) {
    case TARGET_PENDING:
    case TARGET_AWAITING_APPROVAL: return 0;
    case TARGET_RUNNING: return 1;
    case TARGET_RETRY_WAIT: return 2;
    default: return 3;
    }
}

#define S_CMP(a, b)                                                                                \
    do {                                                                                           \
        if ((a) != (b))                                                                            \
            return (a) < (b) ? -1 : 1;                                                             \
    } while (0)

int progress_compare(const progress_rec_t *a, const progress_rec_t *b)
{
    S_CMP(a->epoch, b->epoch);
    S_CMP(a->generation, b->generation);
    S_CMP(a->attempt, b->attempt);
    S_CMP(s_rank(a->state), s_rank(b->state));
    S_CMP(a->state, b->state);
    int h = memcmp(a->holder, b->holder, PROGRESS_ID_LEN);
    if (h)
        return h < 0 ? -1 : 1;
    /* Equal keys from one holder are the same event; the remaining fields
     * still order so that join stays deterministic on malformed peers. */
    S_CMP(a->step, b->step);
    S_CMP(a->finished_ms, b->finished_ms);
    return 0;
}

bool progress_merge(progress_rec_t *local, const progress_rec_t *incoming)
{
    if (progress_compare(incoming, local) <= 0)
        return false;
    *local = *incoming;
    return true;
}

void progress_pack(const progress_rec_t *rec, msgpack_packer *pk)
{
    size_t err_len = strnlen(rec->error, PROGRESS_ERROR_MAX);
    msgpack_pack_map(pk, 11);
    msgpack_pack_str_with_body(pk, "e", 1);
    msgpack_pack_uint32(pk, rec->epoch);
    msgpack_pack_str_with_body(pk, "g", 1);
    msgpack_pack_uint32(pk, rec->generation);
    msgpack_pack_str_with_body(pk, "a", 1);
    msgpack_pack_uint32(pk, rec->attempt);
    msgpack_pack_str_with_body(pk, "st", 2);
    msgpack_pack_uint8(pk, rec->state);
    msgpack_pack_str_with_body(pk, "sp", 2);
    msgpack_pack_uint8(pk, rec->step);
    msgpack_pack_str_with_body(pk, "h", 1);
    msgpack_pack_bin_with_body(pk, rec->holder, PROGRESS_ID_LEN);
    msgpack_pack_str_with_body(pk, "x", 1);
    msgpack_pack_int32(pk, rec->exit_code);
    msgpack_pack_str_with_body(pk, "t0", 2);
    msgpack_pack_uint64(pk, rec->started_ms);
    msgpack_pack_str_with_body(pk, "t1", 2);
    msgpack_pack_uint64(pk, rec->finished_ms);
    msgpack_pack_str_with_body(pk, "d", 1);
    msgpack_pack_uint32(pk, rec->duration_ms);
    msgpack_pack_str_with_body(pk, "err", 3);
    msgpack_pack_str_with_body(pk, rec->error, err_len);
}

static int s_u32(const msgpack_object *map, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = wire_get_u64(map, key, &v);
    if (rc)
        return GG_EMALFORMED;
    if (v > UINT32_MAX)
        return GG_EMALFORMED;
    *out = (uint32_t) v;
    return GG_OK;
}

int progress_unpack(const msgpack_object *obj, progress_rec_t *out)
{
    if (!obj || obj->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    uint32_t state, step, dur;
    int64_t exit_code;
    if (s_u32(obj, "e", &r.epoch) || s_u32(obj, "g", &r.generation) ||
        s_u32(obj, "a", &r.attempt) || s_u32(obj, "st", &state) || s_u32(obj, "sp", &step) ||
        s_u32(obj, "d", &dur) || wire_get_bin_exact(obj, "h", r.holder, PROGRESS_ID_LEN) ||
        wire_get_i64(obj, "x", &exit_code) || wire_get_u64(obj, "t0", &r.started_ms) ||
        wire_get_u64(obj, "t1", &r.finished_ms) ||
        wire_get_str(obj, "err", r.error, PROGRESS_ERROR_MAX))
        return GG_EMALFORMED;
    if (state >= TARGET_STATE_COUNT || step > UINT8_MAX || exit_code < INT32_MIN ||
        exit_code > INT32_MAX)
        return GG_EMALFORMED;
    r.state = (uint8_t) state;
    r.step = (uint8_t) step;
    r.exit_code = (int32_t) exit_code;
    r.duration_ms = dur;
    *out = r;
    return GG_OK;
}
