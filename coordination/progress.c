/* progress.c: see progress.h for the record, its order and the state machine. */
#include "progress.h"
#include "gg_error.h"
#include "wire.h"

#include <assert.h>
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
    return progress_compare_prefix(a, b, PROGRESS_ID_LEN);
}

int progress_compare_prefix(const progress_rec_t *a, const progress_rec_t *b, size_t holder_len)
{
    assert(holder_len <= PROGRESS_ID_LEN);
    S_CMP(a->epoch, b->epoch);
    S_CMP(a->generation, b->generation);
    S_CMP(a->attempt, b->attempt);
    S_CMP(s_rank(a->state), s_rank(b->state));
    S_CMP(a->state, b->state);
    int h = memcmp(a->holder, b->holder, holder_len);
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

/* The record's fields, in the order progress_pack writes them. */
enum { S_F_E, S_F_G, S_F_A, S_F_ST, S_F_SP, S_F_H, S_F_X, S_F_T0, S_F_T1, S_F_D, S_F_ERR, S_F_N };

/* Which field a key names (S_F_N: none). */
static int s_field(const msgpack_object *key)
{
    if (key->type != MSGPACK_OBJECT_STR || key->via.str.size == 0 || key->via.str.size > 3)
        return S_F_N;
    const char *k = key->via.str.ptr;
    switch (key->via.str.size) {
    case 1:
        switch (k[0]) {
        case 'e': return S_F_E;
        case 'g': return S_F_G;
        case 'a': return S_F_A;
        case 'h': return S_F_H;
        case 'x': return S_F_X;
        case 'd': return S_F_D;
        default: return S_F_N;
        }
    case 2:
        if (k[0] == 's' && k[1] == 't')
            return S_F_ST;
        if (k[0] == 's' && k[1] == 'p')
            return S_F_SP;
        if (k[0] == 't' && k[1] == '0')
            return S_F_T0;
        if (k[0] == 't' && k[1] == '1')
            return S_F_T1;
        return S_F_N;
    default: return memcmp(k, "err", 3) == 0 ? S_F_ERR : S_F_N;
    }
}

static int s_u32(const msgpack_object *v, uint32_t *out)
{
    uint64_t x;
    if (wire_obj_u64(v, &x) != 0 || x > UINT32_MAX)
        return GG_EMALFORMED;
    *out = (uint32_t) x;
    return GG_OK;
}

static int s_i32(const msgpack_object *v, int32_t *out)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX) {
        *out = (int32_t) v->via.u64;
        return GG_OK;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v->via.i64 >= INT32_MIN) {
        *out = (int32_t) v->via.i64;
        return GG_OK;
    }
    return GG_EMALFORMED;
}

/* One pass over the map (records arrive by the thousand in every feed): the
 * first occurrence of each key counts, as with wire_map_get; unknown keys
 * are ignored; every field is required and type-checked. */
int progress_unpack(const msgpack_object *obj, progress_rec_t *out)
{
    if (!obj || obj->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    const msgpack_object *v[S_F_N] = {0};
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        int f = s_field(&obj->via.map.ptr[i].key);
        if (f != S_F_N && !v[f])
            v[f] = &obj->via.map.ptr[i].val;
    }
    for (int f = 0; f < S_F_N; f++)
        if (!v[f])
            return GG_EMALFORMED;
    progress_rec_t r;
    memset(&r, 0, sizeof r);
    uint32_t state, step;
    if (s_u32(v[S_F_E], &r.epoch) || s_u32(v[S_F_G], &r.generation) ||
        s_u32(v[S_F_A], &r.attempt) || s_u32(v[S_F_ST], &state) || s_u32(v[S_F_SP], &step) ||
        s_u32(v[S_F_D], &r.duration_ms) ||
        wire_obj_bin_exact(v[S_F_H], r.holder, PROGRESS_ID_LEN) || s_i32(v[S_F_X], &r.exit_code) ||
        wire_obj_u64(v[S_F_T0], &r.started_ms) || wire_obj_u64(v[S_F_T1], &r.finished_ms) ||
        wire_obj_str(v[S_F_ERR], r.error, PROGRESS_ERROR_MAX))
        return GG_EMALFORMED;
    if (state >= TARGET_STATE_COUNT || step > UINT8_MAX)
        return GG_EMALFORMED;
    r.state = (uint8_t) state;
    r.step = (uint8_t) step;
    *out = r;
    return GG_OK;
}
