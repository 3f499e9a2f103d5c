/*
 * membership_codec.c: membership messages and their wire encoding.
 *
 * Kept apart from the state machine so that membership.c stays pure logic:
 * this file is the only one that knows how a membership_msg_t looks as
 * msgpack. Body layout (inside wire.h's envelope, whose "s" is the sender):
 *
 *   "c"  u64   sender's membership checksum          (every type)
 *   "n"  str   sender name (<= 64 bytes)              (every type)
 *   "a"  str   sender address, non-empty (<= 255)     (every type)
 *   "i"  u64   sender incarnation                     (every type)
 *   "st" u64   sender state (0..3)                    (every type)
 *   "f"  u64   sender flags (<= UINT32_MAX)           (every type)
 *   "u"  array updates, each [id bin32, name str, address str, state u64,
 *              incarnation u64, flags u64 (, accuser bin32 | nil)]; at most
 *              MEMBERSHIP_MAX_SYNC for SYNC/SYNC_REPLY, else
 *              MEMBERSHIP_MAX_PIGGYBACK; extra trailing elements are ignored
 *              (room for later versions).
 *        bin   in wire version 2: the same updates packed one after another,
 *              each S_PACKED_HEAD bytes (id 32, state u8, name length u8,
 *              address length u8, a widths byte: bit 0 accuser, bits 1-3
 *              the incarnation's bytes less one, bits 4-6 the flags' bytes
 *              (0-4), bit 7 zero), the incarnation and the flags in those
 *              bytes LE, the accuser's id when it has one, then name and
 *              address (no NUL); the same bounds
 *   "q"  u64   probe sequence number                  (PING, ACK, PING_REQ, NACK)
 *   "ti" bin32 target id                              (PING, ACK, PING_REQ, NACK)
 *   "ta" str   target address, non-empty              (PING_REQ)
 *
 * Decoding trusts nothing: the envelope was structurally validated by
 * wire_decode, and every field here is type-, range- and length-checked.
 */
#include "gg_error.h"
#include "membership.h"

#include <stdlib.h>
#include <string.h>

#define S_UPDATE_MIN_FIELDS 6
#define S_UPDATE_MAX_FIELDS 16
#define S_PACKED_HEAD       36 /* a version 2 update before its numbers and strings */
#define S_PACKED_MAX        (S_PACKED_HEAD + 8 + 4 + MEMBER_ID_LEN + MEMBER_NAME_MAX + MEMBER_ADDRESS_MAX)

bool membership_msg_type_known(uint32_t type)
{
    switch (type) {
    case WIRE_PING:
    case WIRE_ACK:
    case WIRE_PING_REQ:
    case WIRE_NACK:
    case WIRE_GOSSIP:
    case WIRE_SYNC:
    case WIRE_SYNC_REPLY:
    case WIRE_LEAVE: return true;
    default: return false;
    }
}

static bool s_has_seq(uint32_t type)
{
    return type == WIRE_PING || type == WIRE_ACK || type == WIRE_PING_REQ || type == WIRE_NACK;
}

static bool s_is_full(uint32_t type)
{
    return type == WIRE_SYNC || type == WIRE_SYNC_REPLY;
}

membership_msg_t *membership_msg_new(uint32_t type, uint32_t max_updates)
{
    if (max_updates > MEMBERSHIP_MAX_SYNC)
        return NULL;
    membership_msg_t *msg = calloc(1, sizeof *msg);
    if (!msg)
        return NULL;
    msg->type = type;
    msg->wire_version = WIRE_MIN_VERSION;
    if (max_updates > 0) {
        msg->updates = calloc(max_updates, sizeof *msg->updates);
        if (!msg->updates) {
            free(msg);
            return NULL;
        }
    }
    msg->max_updates = max_updates;
    return msg;
}

void membership_msg_destroy(membership_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->updates);
    free(*self_p);
    *self_p = NULL;
}

/* ---- encoding ---- */

static bool s_str_ok(const char *s, size_t size, bool nonempty)
{
    size_t n = strnlen(s, size);
    return n < size && (!nonempty || n > 0);
}

static bool s_update_ok(const member_update_t *u)
{
    return u->state <= MEMBER_LEFT && s_str_ok(u->name, sizeof u->name, false) &&
           s_str_ok(u->address, sizeof u->address, true);
}

static int s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0)
        return GG_ENOMEM;
    return 0;
}

static int s_pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    if (msgpack_pack_bin(pk, n) != 0 || msgpack_pack_bin_body(pk, b, n) != 0)
        return GG_ENOMEM;
    return 0;
}

static int s_pack_update(msgpack_packer *pk, const member_update_t *u)
{
    if (msgpack_pack_array(pk, u->has_accuser ? 7 : 6) != 0)
        return GG_ENOMEM;
    if (s_pack_bin(pk, u->id, MEMBER_ID_LEN) != 0 || s_pack_str(pk, u->name) != 0 ||
        s_pack_str(pk, u->address) != 0 || msgpack_pack_uint64(pk, (uint64_t) u->state) != 0 ||
        msgpack_pack_uint64(pk, u->incarnation) != 0 || msgpack_pack_uint64(pk, u->flags) != 0)
        return GG_ENOMEM;
    if (u->has_accuser && s_pack_bin(pk, u->accuser, MEMBER_ID_LEN) != 0)
        return GG_ENOMEM;
    return 0;
}

/* Bytes that hold v (0 for 0). */
static int s_width(uint64_t v)
{
    int n = 0;
    for (; v; v >>= 8)
        n++;
    return n;
}

/* The size of u packed (version 2). */
static size_t s_packed_size(const member_update_t *u)
{
    int iw = s_width(u->incarnation);
    return S_PACKED_HEAD + (size_t) (iw ? iw : 1) + (size_t) s_width(u->flags) +
           (u->has_accuser ? MEMBER_ID_LEN : 0) + strlen(u->name) + strlen(u->address);
}

/* One update packed (version 2) into b (S_PACKED_MAX bytes); returns its
 * size. Numbers take the bytes they need. */
static size_t s_packed_put(uint8_t *b, const member_update_t *u)
{
    size_t nl = strlen(u->name), al = strlen(u->address);
    int iw = s_width(u->incarnation), fw = s_width(u->flags);
    if (iw == 0)
        iw = 1;
    memcpy(b, u->id, MEMBER_ID_LEN);
    b[32] = (uint8_t) u->state;
    b[33] = (uint8_t) nl;
    b[34] = (uint8_t) al;
    b[35] = (uint8_t) ((u->has_accuser ? 1 : 0) | (iw - 1) << 1 | fw << 4);
    size_t at = S_PACKED_HEAD;
    wire_put_le(b + at, u->incarnation, (size_t) iw);
    at += (size_t) iw;
    wire_put_le(b + at, u->flags, (size_t) fw);
    at += (size_t) fw;
    if (u->has_accuser) {
        memcpy(b + at, u->accuser, MEMBER_ID_LEN);
        at += MEMBER_ID_LEN;
    }
    memcpy(b + at, u->name, nl);
    memcpy(b + at + nl, u->address, al);
    return at + nl + al;
}

/* Reads the packed update at b (left bytes to the end) into u, if u is not
 * NULL. Returns its size, or 0 when it is malformed: cut short, a state, a
 * length, a width or the widths byte's top bit out of range, an empty
 * address, a NUL in a string. */
static size_t s_packed_get(const uint8_t *b, size_t left, member_update_t *u)
{
    if (left < S_PACKED_HEAD)
        return 0;
    size_t nl = b[33], al = b[34], acc = (b[35] & 1) ? MEMBER_ID_LEN : 0;
    int iw = ((b[35] >> 1) & 7) + 1, fw = (b[35] >> 4) & 7;
    size_t body = (size_t) iw + (size_t) fw + acc + nl + al;
    if (b[32] > MEMBER_LEFT || nl > MEMBER_NAME_MAX || al == 0 || (b[35] & 0x80) || fw > 4 ||
        left - S_PACKED_HEAD < body)
        return 0;
    const uint8_t *num = b + S_PACKED_HEAD;
    const uint8_t *name = num + iw + fw + acc, *address = name + nl;
    if (memchr(name, '\0', nl) || memchr(address, '\0', al))
        return 0;
    if (u) {
        memcpy(u->id, b, MEMBER_ID_LEN);
        u->state = (member_state_t) b[32];
        u->incarnation = wire_get_le(num, (size_t) iw);
        u->flags = (uint32_t) wire_get_le(num + iw, (size_t) fw);
        u->has_accuser = acc != 0;
        if (acc)
            memcpy(u->accuser, num + iw + fw, MEMBER_ID_LEN);
        memcpy(u->name, name, nl);
        u->name[nl] = '\0';
        memcpy(u->address, address, al);
        u->address[al] = '\0';
    }
    return S_PACKED_HEAD + body;
}

int membership_msg_encode(const membership_msg_t *msg, uint8_t **data, size_t *len)
{
    if (!msg || !data || !len)
        return GG_EINVAL;
    *data = NULL;
    *len = 0;
    uint32_t type = msg->type;
    uint32_t max = s_is_full(type) ? MEMBERSHIP_MAX_SYNC : MEMBERSHIP_MAX_PIGGYBACK;
    if (!membership_msg_type_known(type) || msg->n_updates > max ||
        msg->n_updates > msg->max_updates || (msg->n_updates > 0 && !msg->updates) ||
        !s_update_ok(&msg->sender))
        return GG_EINVAL;
    if (type == WIRE_PING_REQ && !s_str_ok(msg->target_address, sizeof msg->target_address, true))
        return GG_EINVAL;
    for (uint32_t i = 0; i < msg->n_updates; i++)
        if (!s_update_ok(&msg->updates[i]))
            return GG_EINVAL;
    if (msg->wire_version < WIRE_MIN_VERSION || msg->wire_version > WIRE_VERSION)
        return GG_EINVAL;

    int rc = 0;
    bool packed = msg->wire_version >= 2;
    uint32_t fields = 7 + (s_has_seq(type) ? 2 : 0) + (type == WIRE_PING_REQ ? 1 : 0);
    wire_writer_t *w = wire_writer_new_version(msg->wire_version, type, msg->sender.id, fields);
    if (!w)
        return GG_ENOMEM;
    wire_put_u64(w, "c", msg->checksum);
    wire_put_str(w, "n", msg->sender.name);
    wire_put_str(w, "a", msg->sender.address);
    wire_put_u64(w, "i", msg->sender.incarnation);
    wire_put_u64(w, "st", (uint64_t) msg->sender.state);
    wire_put_u64(w, "f", msg->sender.flags);
    if (s_has_seq(type)) {
        wire_put_u64(w, "q", msg->seq);
        wire_put_bin(w, "ti", msg->target_id, MEMBER_ID_LEN);
    }
    if (type == WIRE_PING_REQ)
        wire_put_str(w, "ta", msg->target_address);
    wire_put_key(w, "u");
    msgpack_packer *pk = wire_writer_packer(w);
    if (packed) {
        size_t total = 0;
        for (uint32_t i = 0; i < msg->n_updates; i++)
            total += s_packed_size(&msg->updates[i]);
        rc = msgpack_pack_bin(pk, total) != 0 ? GG_ENOMEM : 0;
        uint8_t b[S_PACKED_MAX];
        for (uint32_t i = 0; i < msg->n_updates && rc == 0; i++)
            rc = msgpack_pack_bin_body(pk, b, s_packed_put(b, &msg->updates[i])) != 0 ? GG_ENOMEM
                                                                                      : 0;
    } else {
        rc = msgpack_pack_array(pk, msg->n_updates) != 0 ? GG_ENOMEM : 0;
        for (uint32_t i = 0; i < msg->n_updates && rc == 0; i++)
            rc = s_pack_update(pk, &msg->updates[i]);
    }
    /* A failed pack is usually the writer's size bound: let it say which. */
    const uint8_t *bytes = NULL;
    size_t n = 0;
    int frc = wire_writer_finish(w, &bytes, &n);
    if (frc != 0)
        rc = frc;
    if (rc != 0)
        goto out;
    *data = malloc(n ? n : 1);
    if (!*data) {
        rc = GG_ENOMEM;
        goto out;
    }
    memcpy(*data, bytes, n);
    *len = n;
out:
    wire_writer_destroy(&w);
    return rc;
}

/* ---- decoding ---- */

/* A required field: absent counts as malformed. */
static int s_req(int rc)
{
    return rc == GG_ENOTFOUND ? GG_EMALFORMED : rc;
}

static int s_get_state(const msgpack_object *obj_or_map, const char *key, member_state_t *out)
{
    uint64_t v = 0;
    int rc = key ? s_req(wire_get_u64(obj_or_map, key, &v)) : wire_obj_u64(obj_or_map, &v);
    if (rc != 0)
        return GG_EMALFORMED;
    if (v > MEMBER_LEFT)
        return GG_EMALFORMED;
    *out = (member_state_t) v;
    return 0;
}

static int s_get_flags(const msgpack_object *obj_or_map, const char *key, uint32_t *out)
{
    uint64_t v = 0;
    int rc = key ? s_req(wire_get_u64(obj_or_map, key, &v)) : wire_obj_u64(obj_or_map, &v);
    if (rc != 0 || v > UINT32_MAX)
        return GG_EMALFORMED;
    *out = (uint32_t) v;
    return 0;
}

static int s_decode_update(const msgpack_object *obj, member_update_t *u)
{
    if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size < S_UPDATE_MIN_FIELDS ||
        obj->via.array.size > S_UPDATE_MAX_FIELDS)
        return GG_EMALFORMED;
    const msgpack_object *f = obj->via.array.ptr;
    if (wire_obj_bin_exact(&f[0], u->id, MEMBER_ID_LEN) != 0 ||
        wire_obj_str(&f[1], u->name, MEMBER_NAME_MAX) != 0 ||
        wire_obj_str(&f[2], u->address, MEMBER_ADDRESS_MAX) != 0 || !u->address[0] ||
        s_get_state(&f[3], NULL, &u->state) != 0 || wire_obj_u64(&f[4], &u->incarnation) != 0 ||
        s_get_flags(&f[5], NULL, &u->flags) != 0)
        return GG_EMALFORMED;
    if (obj->via.array.size >= 7 && f[6].type != MSGPACK_OBJECT_NIL) {
        if (wire_obj_bin_exact(&f[6], u->accuser, MEMBER_ID_LEN) != 0)
            return GG_EMALFORMED;
        u->has_accuser = true;
    }
    return 0;
}

int membership_msg_decode(const wire_msg_t *w, membership_msg_t **out)
{
    if (!w || !out)
        return GG_EINVAL;
    *out = NULL;
    if (!membership_msg_type_known(w->type))
        return GG_EINVAL;
    const msgpack_object *body = &w->body;
    if (body->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    uint32_t max = s_is_full(w->type) ? MEMBERSHIP_MAX_SYNC : MEMBERSHIP_MAX_PIGGYBACK;
    const msgpack_object_array *arr = NULL;
    const uint8_t *packed = NULL;
    size_t packed_len = 0;
    uint32_t count = 0;
    if (w->version >= 2) {
        /* updates packed in one bin: every one checked (and counted) first */
        if (s_req(wire_get_bin(body, "u", &packed, &packed_len, WIRE_MAX_MESSAGE)) != 0)
            return GG_EMALFORMED;
        for (size_t at = 0, n; at < packed_len; at += n, count++)
            if (count == max || !(n = s_packed_get(packed + at, packed_len - at, NULL)))
                return GG_EMALFORMED;
    } else {
        int rc = s_req(wire_get_array(body, "u", &arr, max));
        if (rc != 0)
            return rc == GG_ENOMEM ? rc : GG_EMALFORMED;
        if (!arr || arr->size > max)
            return GG_EMALFORMED;
        count = arr->size;
    }

    membership_msg_t *msg = membership_msg_new(w->type, count);
    if (!msg)
        return GG_ENOMEM;
    msg->wire_version = w->version;
    int rc;
    member_update_t *s = &msg->sender;
    memcpy(s->id, w->sender, MEMBER_ID_LEN);
    rc = GG_EMALFORMED;
    if (s_req(wire_get_u64(body, "c", &msg->checksum)) != 0 ||
        s_req(wire_get_str(body, "n", s->name, MEMBER_NAME_MAX)) != 0 ||
        s_req(wire_get_str(body, "a", s->address, MEMBER_ADDRESS_MAX)) != 0 || !s->address[0] ||
        s_req(wire_get_u64(body, "i", &s->incarnation)) != 0 ||
        s_get_state(body, "st", &s->state) != 0 || s_get_flags(body, "f", &s->flags) != 0)
        goto out;
    if (s_has_seq(w->type) &&
        (s_req(wire_get_u64(body, "q", &msg->seq)) != 0 ||
         s_req(wire_get_bin_exact(body, "ti", msg->target_id, MEMBER_ID_LEN)) != 0))
        goto out;
    if (w->type == WIRE_PING_REQ &&
        (s_req(wire_get_str(body, "ta", msg->target_address, MEMBER_ADDRESS_MAX)) != 0 ||
         !msg->target_address[0]))
        goto out;
    for (size_t at = 0, n; packed && at < packed_len; at += n, msg->n_updates++)
        if (msg->n_updates == count ||
            !(n = s_packed_get(packed + at, packed_len - at, &msg->updates[msg->n_updates])))
            goto out; /* checked above: cannot happen */
    for (uint32_t i = 0; arr && i < arr->size; i++) {
        if (s_decode_update(&arr->ptr[i], &msg->updates[i]) != 0)
            goto out;
        msg->n_updates++;
    }
    rc = 0;
out:
    if (rc != 0)
        membership_msg_destroy(&msg);
    *out = msg;
    return rc;
}
