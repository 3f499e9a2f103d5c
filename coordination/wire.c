/*
 * wire.c: the peer-to-peer message codec (msgpack), see wire.h.
 *
 * Decoding never trusts the peer. msgpack-c 4.0 has four traps this file
 * exists to avoid:
 *   1. msgpack_unpack* succeed with trailing bytes: we require the whole buffer
 *      to be consumed (off == len) and reject EXTRA_BYTES.
 *   2. They return 0 (CONTINUE) on truncation and negative values on bad data
 *      or deep nesting: anything but SUCCESS is malformed.
 *   3. They allocate an array's or map's storage from its header count before
 *      the elements arrive (array32 0xffffffff is ~100 GB). wire_validate()
 *      walks the raw bytes first, iteratively, and checks that every
 *      container's pending elements fit in the bytes left (each element takes
 *      at least one byte), so the object tree is at most ~24 bytes per input
 *      byte, and that nesting stays within WIRE_MAX_DEPTH.
 *   4. Strings and bins point into the input and are not NUL-terminated: the
 *      input is copied into the message's own zone, and accessors copy strings
 *      out with an explicit length and a terminating NUL.
 *
 * The message owns one msgpack_zone holding both the input copy and the object
 * tree. msgpack_unpack_next() cannot use a caller's zone in 4.0 (it frees a
 * zone preset in msgpack_unpacked and allocates its own), so decoding uses
 * msgpack_unpack(), which takes the zone explicitly and reports trailing bytes.
 *
 * Writers pack through a bounded write callback: the buffer never grows past
 * WIRE_MAX_MESSAGE, and finishing validates the output so that a body whose
 * field count does not match its header is caught at the sender.
 */
#include "wire.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gg_error.h"

/* Zone chunks: small messages (probes) fit in the first chunk; big ones grow. */
#define WIRE_ZONE_CHUNK_MIN 1024u
#define WIRE_ZONE_CHUNK_MAX (64u * 1024u)

/* A writer's first buffer: within glibc's per-thread cache (1,032 bytes). */
#define WIRE_FIRST_BUFFER 1024u

const char *wire_type_name(uint32_t type)
{
    switch (type) {
    case WIRE_HELLO: return "hello";
    case WIRE_PING: return "ping";
    case WIRE_ACK: return "ack";
    case WIRE_PING_REQ: return "ping_req";
    case WIRE_NACK: return "nack";
    case WIRE_SYNC: return "sync";
    case WIRE_SYNC_REPLY: return "sync_reply";
    case WIRE_LEAVE: return "leave";
    case WIRE_HELLO_REQ: return "hello_req";
    case WIRE_GOSSIP: return "gossip";
    case WIRE_PLAN: return "plan";
    case WIRE_PROGRESS: return "progress";
    case WIRE_DIGEST: return "digest";
    case WIRE_COMMAND: return "command";
    case WIRE_LOG_REQ: return "log_req";
    case WIRE_LOG_REP: return "log_rep";
    case WIRE_LEASE: return "lease";
    case WIRE_SCALE: return "scale";
    case WIRE_HAVE: return "have";
    default: return "unknown";
    }
}

/* ---- structural pre-scan ---- */

static uint64_t s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Formats 0xc0..0xdf: the bytes of their length or count field, an ext type
 * byte, the payload of fixed-size scalars, and what the length counts. */
enum { F_SCALAR, F_DATA, F_ARRAY, F_MAP, F_INVALID };
typedef struct {
    uint8_t lenbytes;
    uint8_t ext_type;
    uint8_t fixed;
    uint8_t kind;
} format_t;

static const format_t s_formats[32] = {
    [0x00] = {0, 0, 0, F_SCALAR},  /* nil */
    [0x01] = {0, 0, 0, F_INVALID}, /* never used */
    [0x02] = {0, 0, 0, F_SCALAR},  /* false */
    [0x03] = {0, 0, 0, F_SCALAR},  /* true */
    [0x04] = {1, 0, 0, F_DATA},    /* bin 8 */
    [0x05] = {2, 0, 0, F_DATA},    /* bin 16 */
    [0x06] = {4, 0, 0, F_DATA},    /* bin 32 */
    [0x07] = {1, 1, 0, F_DATA},    /* ext 8 */
    [0x08] = {2, 1, 0, F_DATA},    /* ext 16 */
    [0x09] = {4, 1, 0, F_DATA},    /* ext 32 */
    [0x0a] = {0, 0, 4, F_SCALAR},  /* float 32 */
    [0x0b] = {0, 0, 8, F_SCALAR},  /* float 64 */
    [0x0c] = {0, 0, 1, F_SCALAR},  /* uint 8 */
    [0x0d] = {0, 0, 2, F_SCALAR},  /* uint 16 */
    [0x0e] = {0, 0, 4, F_SCALAR},  /* uint 32 */
    [0x0f] = {0, 0, 8, F_SCALAR},  /* uint 64 */
    [0x10] = {0, 0, 1, F_SCALAR},  /* int 8 */
    [0x11] = {0, 0, 2, F_SCALAR},  /* int 16 */
    [0x12] = {0, 0, 4, F_SCALAR},  /* int 32 */
    [0x13] = {0, 0, 8, F_SCALAR},  /* int 64 */
    [0x14] = {0, 1, 1, F_SCALAR},  /* fixext 1 */
    [0x15] = {0, 1, 2, F_SCALAR},  /* fixext 2 */
    [0x16] = {0, 1, 4, F_SCALAR},  /* fixext 4 */
    [0x17] = {0, 1, 8, F_SCALAR},  /* fixext 8 */
    [0x18] = {0, 1, 16, F_SCALAR}, /* fixext 16 */
    [0x19] = {1, 0, 0, F_DATA},    /* str 8 */
    [0x1a] = {2, 0, 0, F_DATA},    /* str 16 */
    [0x1b] = {4, 0, 0, F_DATA},    /* str 32 */
    [0x1c] = {2, 0, 0, F_ARRAY},   /* array 16 */
    [0x1d] = {4, 0, 0, F_ARRAY},   /* array 32 */
    [0x1e] = {2, 0, 0, F_MAP},     /* map 16 */
    [0x1f] = {4, 0, 0, F_MAP},     /* map 32 */
};

/* One msgpack item's header at p (avail >= 1 bytes readable): its header size
 * (format byte, length/count field, ext type), the payload bytes after the
 * header, and for a container the number of child items (2 per map entry).
 * Returns 0, or GG_EMALFORMED for a truncated header or the byte 0xc1. */
static int s_item_header(const uint8_t *p, size_t avail, size_t *hdr, uint64_t *payload,
                         bool *container, uint64_t *items)
{
    uint8_t b = p[0];
    format_t f = {0, 0, 0, F_SCALAR};

    *hdr = 1;
    *payload = 0;
    *container = false;
    *items = 0;
    if (b <= 0x7f || b >= 0xe0) /* positive / negative fixint */
        return 0;
    if (b <= 0x8f) { /* fixmap */
        *container = true;
        *items = 2u * (uint64_t) (b & 0x0f);
        return 0;
    }
    if (b <= 0x9f) { /* fixarray */
        *container = true;
        *items = b & 0x0f;
        return 0;
    }
    if (b <= 0xbf) { /* fixstr */
        *payload = b & 0x1f;
        return 0;
    }
    f = s_formats[b - 0xc0];
    if (f.kind == F_INVALID)
        return GG_EMALFORMED;
    *hdr = 1u + f.lenbytes + f.ext_type;
    if (*hdr > avail)
        return GG_EMALFORMED;
    uint64_t n = s_be(p + 1, f.lenbytes);
    switch (f.kind) {
    case F_DATA: *payload = n; break;
    case F_ARRAY:
        *container = true;
        *items = n;
        break;
    case F_MAP:
        *container = true;
        *items = 2 * n; /* n < 2^32: no overflow */
        break;
    default: *payload = f.fixed; break;
    }
    return 0;
}

int wire_validate(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t stack[WIRE_MAX_DEPTH]; /* items still expected in each open container */
    size_t depth = 0;               /* open non-empty containers */
    uint64_t pending = 0;           /* sum of stack[]: items still owed */
    size_t pos = 0;

    if (!data || len == 0)
        return GG_EMALFORMED;
    do {
        size_t hdr = 0;
        uint64_t payload = 0, items = 0;
        bool container = false;

        if (pos >= len)
            return GG_EMALFORMED; /* truncated: an item is still owed */
        if (s_item_header(p + pos, len - pos, &hdr, &payload, &container, &items) != 0)
            return GG_EMALFORMED;
        pos += hdr;
        uint64_t left = len - pos;
        if (payload > left)
            return GG_EMALFORMED;
        pos += (size_t) payload;
        left -= payload;
        if (depth > 0) {
            stack[depth - 1]--; /* this item is one of its parent's */
            pending--;
        }
        if (container) {
            if (depth >= WIRE_MAX_DEPTH)
                return GG_EMALFORMED;
            /* Every item still owed, here or in an enclosing container,
             * takes at least one byte. */
            if (pending + items > left)
                return GG_EMALFORMED;
            if (items > 0) {
                stack[depth++] = items;
                pending += items;
            }
        }
        while (depth > 0 && stack[depth - 1] == 0)
            depth--; /* containers completed by this item */
    } while (depth > 0);
    return pos == len ? 0 : GG_EMALFORMED;
}

/* ---- decoding ---- */

const msgpack_object *wire_map_get(const msgpack_object *map, const char *key)
{
    if (!map || !key || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            (klen == 0 || memcmp(k->via.str.ptr, key, klen) == 0))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* Looks a key up for the typed accessors: GG_EMALFORMED when `map` is not a
 * map, GG_ENOTFOUND when the key is absent. */
static int s_lookup(const msgpack_object *map, const char *key, const msgpack_object **val)
{
    *val = NULL;
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    *val = wire_map_get(map, key);
    return *val ? 0 : GG_ENOTFOUND;
}

int wire_obj_u64(const msgpack_object *obj, uint64_t *out)
{
    if (!obj || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return GG_EMALFORMED;
    *out = obj->via.u64;
    return 0;
}

static int s_obj_i64(const msgpack_object *obj, int64_t *out)
{
    if (!obj)
        return GG_EMALFORMED;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (obj->via.u64 > (uint64_t) INT64_MAX)
            return GG_EMALFORMED;
        *out = (int64_t) obj->via.u64;
        return 0;
    }
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = obj->via.i64;
        return 0;
    }
    return GG_EMALFORMED;
}

int wire_obj_str(const msgpack_object *obj, char *buf, size_t max_len)
{
    assert(buf);
    buf[0] = '\0';
    if (!obj || obj->type != MSGPACK_OBJECT_STR)
        return GG_EMALFORMED;
    size_t n = obj->via.str.size;
    if (n > max_len)
        return GG_EMALFORMED;
    if (n > 0 && memchr(obj->via.str.ptr, '\0', n) != NULL)
        return GG_EMALFORMED;
    if (n > 0)
        memcpy(buf, obj->via.str.ptr, n);
    buf[n] = '\0';
    return 0;
}

int wire_obj_bin_exact(const msgpack_object *obj, void *out, size_t len)
{
    if (!obj || obj->type != MSGPACK_OBJECT_BIN || obj->via.bin.size != len)
        return GG_EMALFORMED;
    if (len > 0)
        memcpy(out, obj->via.bin.ptr, len);
    return 0;
}

int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    return rc ? rc : wire_obj_u64(v, out);
}

int wire_get_i64(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    return rc ? rc : s_obj_i64(v, out);
}

int wire_get_bool(const msgpack_object *map, const char *key, bool *out)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    if (rc)
        return rc;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return GG_EMALFORMED;
    *out = v->via.boolean;
    return 0;
}

int wire_get_str(const msgpack_object *map, const char *key, char *buf, size_t max_len)
{
    const msgpack_object *v;
    assert(buf);
    buf[0] = '\0';
    int rc = s_lookup(map, key, &v);
    return rc ? rc : wire_obj_str(v, buf, max_len);
}

int wire_get_bin_exact(const msgpack_object *map, const char *key, void *out, size_t len)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    return rc ? rc : wire_obj_bin_exact(v, out, len);
}

int wire_get_bin(const msgpack_object *map, const char *key, const uint8_t **data, size_t *out_len,
                 size_t max_len)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    if (rc)
        return rc;
    if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size > max_len)
        return GG_EMALFORMED;
    *data = (const uint8_t *) v->via.bin.ptr;
    *out_len = v->via.bin.size;
    return 0;
}

int wire_get_array(const msgpack_object *map, const char *key, const msgpack_object_array **arr,
                   size_t max_count)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    if (rc)
        return rc;
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > max_count)
        return GG_EMALFORMED;
    *arr = &v->via.array;
    return 0;
}

int wire_get_map(const msgpack_object *map, const char *key, const msgpack_object **out)
{
    const msgpack_object *v;
    int rc = s_lookup(map, key, &v);
    if (rc)
        return rc;
    if (v->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    *out = v;
    return 0;
}

/* Checks the envelope fields of a decoded root and fills msg. The version is
 * checked first: a newer peer may change everything else. */
static int s_envelope(const msgpack_object *root, wire_msg_t *msg)
{
    uint64_t version = 0, type = 0;
    const msgpack_object *body = NULL;

    if (root->type != MSGPACK_OBJECT_MAP)
        return GG_EMALFORMED;
    if (wire_get_u64(root, "v", &version) != 0)
        return GG_EMALFORMED;
    if (version < WIRE_MIN_VERSION || version > WIRE_VERSION)
        return GG_EVERSION;
    if (wire_get_u64(root, "t", &type) != 0 || type > UINT32_MAX)
        return GG_EMALFORMED;
    if (wire_get_bin_exact(root, "s", msg->sender, WIRE_ID_LEN) != 0)
        return GG_EMALFORMED;
    if (wire_get_map(root, "b", &body) != 0)
        return GG_EMALFORMED;
    msg->version = (uint32_t) version;
    msg->type = (uint32_t) type;
    msg->body = *body;
    return 0;
}

int wire_decode(const void *data, size_t len, wire_msg_t *msg)
{
    msgpack_zone *zone = NULL;
    msgpack_object root;
    size_t off = 0;
    int rc;

    assert(msg);
    memset(msg, 0, sizeof *msg);
    if (!data || len == 0)
        return GG_EMALFORMED;
    if (len > WIRE_MAX_MESSAGE)
        return GG_ETOOBIG;
    rc = wire_validate(data, len);
    if (rc)
        goto out;

    size_t chunk = 2 * len + 512;
    if (chunk < WIRE_ZONE_CHUNK_MIN)
        chunk = WIRE_ZONE_CHUNK_MIN;
    if (chunk > WIRE_ZONE_CHUNK_MAX)
        chunk = WIRE_ZONE_CHUNK_MAX;
    zone = msgpack_zone_new(chunk);
    if (!zone) {
        rc = GG_ENOMEM;
        goto out;
    }
    /* Strings and bins will point into this copy, which lives in the zone. */
    char *copy = msgpack_zone_malloc_no_align(zone, len);
    if (!copy) {
        rc = GG_ENOMEM;
        goto out;
    }
    memcpy(copy, data, len);
    if (msgpack_unpack(copy, len, &off, zone, &root) != MSGPACK_UNPACK_SUCCESS || off != len) {
        rc = GG_EMALFORMED;
        goto out;
    }
    rc = s_envelope(&root, msg);
out:
    if (rc) {
        if (zone)
            msgpack_zone_free(zone);
        memset(msg, 0, sizeof *msg);
    } else {
        msg->zone = zone;
    }
    return rc;
}

int wire_decode_in(const void *data, size_t len, msgpack_zone *zone, wire_msg_t *msg)
{
    msgpack_object root;
    size_t off = 0;
    assert(msg && zone);
    memset(msg, 0, sizeof *msg);
    if (!data || len == 0)
        return GG_EMALFORMED;
    if (len > WIRE_MAX_MESSAGE)
        return GG_ETOOBIG;
    int rc = wire_validate(data, len);
    if (rc)
        return rc;
    if (msgpack_unpack(data, len, &off, zone, &root) != MSGPACK_UNPACK_SUCCESS || off != len)
        return GG_EMALFORMED;
    rc = s_envelope(&root, msg);
    if (rc)
        memset(msg, 0, sizeof *msg);
    return rc;
}

void wire_msg_release(wire_msg_t *msg)
{
    if (!msg)
        return;
    if (msg->zone)
        msgpack_zone_free(msg->zone);
    memset(msg, 0, sizeof *msg);
}

/* ---- encoding ---- */

struct _wire_writer_t {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    int err; /* first write error: GG_ETOOBIG or GG_ENOMEM; later writes are refused */
};

/* The packer's sink: refuses to grow the buffer past WIRE_MAX_MESSAGE. */
static int s_write(void *data, const char *buf, size_t len)
{
    wire_writer_t *self = data;
    if (self->err)
        return -1;
    if (len > WIRE_MAX_MESSAGE - self->sbuf.size) {
        self->err = GG_ETOOBIG;
        return -1;
    }
    /* Most writes are a header, a small integer or a short key (a record
     * is 30 of them): copied in place rather than through memcpy's call,
     * as two overlapping fixed-size copies. */
    if (len > 0 && len <= 8 && self->sbuf.alloc - self->sbuf.size >= len) {
        char *at = self->sbuf.data + self->sbuf.size;
        if (len >= 4) {
            memcpy(at, buf, 4);
            memcpy(at + len - 4, buf + len - 4, 4);
        } else {
            at[0] = buf[0];
            at[len / 2] = buf[len / 2];
            at[len - 1] = buf[len - 1];
        }
        self->sbuf.size += len;
        return 0;
    }
    if (msgpack_sbuffer_write(&self->sbuf, buf, len) != 0) {
        self->err = GG_ENOMEM;
        return -1;
    }
    return 0;
}

static void s_pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

wire_writer_t *wire_writer_new(uint32_t type, const uint8_t sender[WIRE_ID_LEN],
                               uint32_t body_fields)
{
    return wire_writer_new_version(WIRE_MIN_VERSION, type, sender, body_fields);
}

wire_writer_t *wire_writer_new_version(uint32_t version, uint32_t type,
                                       const uint8_t sender[WIRE_ID_LEN], uint32_t body_fields)
{
    assert(sender);
    assert(version >= WIRE_MIN_VERSION && version <= WIRE_VERSION);
    wire_writer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    msgpack_sbuffer_init(&self->sbuf);
    /* Most messages are small (probes, requests, announcements): a first
     * buffer the allocator keeps per thread, instead of msgpack's 8 KB one
     * taken from the heap's bins at every message; larger ones double it. */
    self->sbuf.data = malloc(WIRE_FIRST_BUFFER);
    if (self->sbuf.data)
        self->sbuf.alloc = WIRE_FIRST_BUFFER;
    msgpack_packer_init(&self->pk, self, s_write);

    msgpack_pack_map(&self->pk, 4);
    s_pack_cstr(&self->pk, "v");
    msgpack_pack_unsigned_int(&self->pk, version);
    s_pack_cstr(&self->pk, "t");
    msgpack_pack_uint32(&self->pk, type);
    s_pack_cstr(&self->pk, "s");
    msgpack_pack_bin(&self->pk, WIRE_ID_LEN);
    msgpack_pack_bin_body(&self->pk, sender, WIRE_ID_LEN);
    s_pack_cstr(&self->pk, "b");
    msgpack_pack_map(&self->pk, body_fields);
    if (self->err)
        wire_writer_destroy(&self);
    return self;
}

void wire_writer_destroy(wire_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    wire_writer_t *self = *self_p;
    msgpack_sbuffer_destroy(&self->sbuf);
    free(self);
    *self_p = NULL;
}

msgpack_packer *wire_writer_packer(wire_writer_t *self)
{
    assert(self);
    return &self->pk;
}

void wire_put_key(wire_writer_t *self, const char *key)
{
    assert(self && key);
    s_pack_cstr(&self->pk, key);
}

void wire_put_u64(wire_writer_t *self, const char *key, uint64_t value)
{
    wire_put_key(self, key);
    msgpack_pack_uint64(&self->pk, value);
}

void wire_put_i64(wire_writer_t *self, const char *key, int64_t value)
{
    wire_put_key(self, key);
    msgpack_pack_int64(&self->pk, value);
}

void wire_put_bool(wire_writer_t *self, const char *key, bool value)
{
    wire_put_key(self, key);
    if (value)
        msgpack_pack_true(&self->pk);
    else
        msgpack_pack_false(&self->pk);
}

void wire_put_str(wire_writer_t *self, const char *key, const char *value)
{
    assert(value);
    wire_put_key(self, key);
    s_pack_cstr(&self->pk, value);
}

void wire_put_bin(wire_writer_t *self, const char *key, const void *data, size_t len)
{
    assert(data || len == 0);
    wire_put_key(self, key);
    if (len > UINT32_MAX) {
        self->err = GG_ETOOBIG;
        return;
    }
    msgpack_pack_bin(&self->pk, len);
    if (len > 0)
        msgpack_pack_bin_body(&self->pk, data, len);
}

int wire_writer_finish(wire_writer_t *self, const uint8_t **data, size_t *len)
{
    assert(self && data && len);
    *data = NULL;
    *len = 0;
    if (self->err)
        return self->err;
    /* A body that does not hold exactly body_fields pairs (or nests too deep)
     * would be refused by every peer: refuse it here instead. */
    if (wire_validate(self->sbuf.data, self->sbuf.size) != 0)
        return GG_EINVAL;
    *data = (const uint8_t *) self->sbuf.data;
    *len = self->sbuf.size;
    return 0;
}
