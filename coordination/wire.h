/*
 * wire.h: the peer-to-peer message codec (msgpack).
 *
 * Every message between agents is one msgpack map, the envelope:
 *
 *     { "v": <uint version>, "t": <uint type>, "s": <bin 32 sender node id>,
 *       "b": <body: a map whose fields each message type defines> }
 *
 * Decoding is defensive: the whole buffer must be exactly one msgpack object
 * (trailing bytes are malformed); before msgpack-c allocates anything, a
 * bounded structural pre-scan checks every container's element count against
 * the bytes left and the nesting depth against WIRE_MAX_DEPTH, so a 5-byte
 * message cannot make the decoder allocate gigabytes. Every accessor checks
 * type and length before use; strings are copied NUL-terminated.
 *
 * Versions. A node speaks WIRE_VERSION and accepts WIRE_MIN_VERSION
 * (WIRE_VERSION - 1) as well, so a fleet upgrades host by host. A message is
 * written at the oldest version that has its form: wire_writer_new writes
 * WIRE_MIN_VERSION, which every peer reads; a form new in WIRE_VERSION
 * (version 2: membership updates packed, membership_codec.c; fleet records
 * and announcements in binary, fleet.c) is written with
 * wire_writer_new_version and sent only to peers that advertise it
 * (MEMBER_FLAG_WIRE2 in their membership record). Unknown message types
 * decode fine (the dispatcher ignores them).
 */
#ifndef GG_WIRE_H
#define GG_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION     2
#define WIRE_MIN_VERSION 1 /* oldest version still accepted */
/* Bytes; larger messages are refused. The decoded tree of a message costs at
 * most ~24 bytes per input byte, so this also bounds a peer's memory cost per
 * message (large plans travel in chunks). */
#define WIRE_MAX_MESSAGE (1u << 20)
#define WIRE_MAX_DEPTH   16 /* nesting depth of containers */
#define WIRE_ID_LEN      32 /* node ids are CURVE public keys */

typedef enum {
    WIRE_HELLO = 1,    /* certificate presentation on a new connection */
    WIRE_PING = 2,     /* SWIM direct probe */
    WIRE_ACK = 3,      /* SWIM probe answer */
    WIRE_PING_REQ = 4, /* SWIM indirect probe request */
    WIRE_NACK = 5,     /* Lifeguard: indirect prober could not reach target */
    WIRE_SYNC = 6,     /* push-pull full membership state */
    WIRE_SYNC_REPLY = 7,
    WIRE_LEAVE = 8,     /* graceful leave announcement */
    WIRE_HELLO_REQ = 9, /* "I do not know your certificate: send HELLO" */
    WIRE_GOSSIP = 10,   /* piggyback-only message: membership updates to k random peers */
    WIRE_PLAN = 16,     /* a signed plan (or a chunk of one) */
    WIRE_PROGRESS = 17, /* target record deltas */
    WIRE_DIGEST = 18,   /* anti-entropy digest */
    WIRE_COMMAND = 19,  /* a signed operator command */
    WIRE_LOG_REQ = 20,  /* fetch a target's step output */
    WIRE_LOG_REP = 21,
    WIRE_LEASE = 22, /* lease claims and renewals */
    WIRE_SCALE = 23, /* the fleet's scaler asks a member to retire (scale-down) */
    WIRE_HAVE = 24,  /* announced record versions (lazy push) and requests for them */
} wire_type_t;

/* Returns a short lower-case name for metrics labels ("ping", "ack", ...);
 * "unknown" for a type this build does not know. */
const char *wire_type_name(uint32_t type);

/* ---- encoding ---- */

/* A writer builds one envelope. The body is a map of `body_fields` entries
 * that the caller then writes with the wire_put_* helpers (a key, then a
 * value; nested maps/arrays with msgpack_pack_map/array on wire_writer_packer). */
typedef struct _wire_writer_t wire_writer_t;

/* Starts a message at WIRE_MIN_VERSION. Returns NULL on allocation failure. */
wire_writer_t *wire_writer_new(uint32_t type, const uint8_t sender[WIRE_ID_LEN],
                               uint32_t body_fields);
/* The same at `version` (WIRE_MIN_VERSION..WIRE_VERSION): for a body in a
 * form only that version reads. */
wire_writer_t *wire_writer_new_version(uint32_t version, uint32_t type,
                                       const uint8_t sender[WIRE_ID_LEN], uint32_t body_fields);
void wire_writer_destroy(wire_writer_t **self_p);
/* The packer for nested values. Lifetime: that of the writer. */
msgpack_packer *wire_writer_packer(wire_writer_t *self);
void wire_put_key(wire_writer_t *self, const char *key);
void wire_put_u64(wire_writer_t *self, const char *key, uint64_t value);
void wire_put_i64(wire_writer_t *self, const char *key, int64_t value);
void wire_put_bool(wire_writer_t *self, const char *key, bool value);
void wire_put_str(wire_writer_t *self, const char *key, const char *value);
void wire_put_bin(wire_writer_t *self, const char *key, const void *data, size_t len);
/* Finishes the message: *data points into the writer (valid until it is
 * destroyed). Returns 0, GG_ETOOBIG when over WIRE_MAX_MESSAGE, GG_ENOMEM, or
 * GG_EINVAL when the body does not hold body_fields pairs or nests too deep. */
int wire_writer_finish(wire_writer_t *self, const uint8_t **data, size_t *len);

/* Little-endian integers inside bin fields (the packed forms of version 2,
 * hashes of ids): the n low bytes of v at b (n <= 8), and back. */
static inline void wire_put_le(uint8_t *b, uint64_t v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        b[k] = (uint8_t) (v >> (8 * k));
}

static inline uint64_t wire_get_le(const uint8_t *b, size_t n)
{
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;)
        v = v << 8 | b[k];
    return v;
}

/* ---- decoding ---- */

typedef struct {
    uint32_t version;
    uint32_t type;
    uint8_t sender[WIRE_ID_LEN];
    msgpack_object body; /* a MAP; valid while the wire_msg_t lives */
    msgpack_zone *zone;  /* owns body's memory */
} wire_msg_t;

/* Decodes one envelope. On success fills *msg (release with wire_msg_release).
 * Errors: GG_ETOOBIG (len > WIRE_MAX_MESSAGE), GG_EMALFORMED (not exactly one
 * well-formed msgpack map with the envelope's fields, depth or counts out of
 * bounds), GG_EVERSION (version outside [WIRE_MIN_VERSION, WIRE_VERSION]),
 * GG_ENOMEM. Never crashes on any input. */
int wire_decode(const void *data, size_t len, wire_msg_t *msg);
/* The same, for a hot path: the objects are allocated in `zone`, which the
 * caller keeps and empties with msgpack_zone_clear once it is done with the
 * message (whatever the result), and strings and bins point into `data`,
 * which must outlive the message. msg->zone is NULL: wire_msg_release frees
 * nothing. Saves an allocation and a copy per message. */
int wire_decode_in(const void *data, size_t len, msgpack_zone *zone, wire_msg_t *msg);
void wire_msg_release(wire_msg_t *msg);

/* Field accessors on a map object (the body or any nested map); with
 * duplicate keys the first wins. Each returns
 * 0, GG_ENOTFOUND when the key is absent, or GG_EMALFORMED when the value has
 * the wrong type or is out of bounds. */
const msgpack_object *wire_map_get(const msgpack_object *map, const char *key);
int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out);
int wire_get_i64(const msgpack_object *map, const char *key, int64_t *out);
int wire_get_bool(const msgpack_object *map, const char *key, bool *out);
/* Copies a string of at most max_len bytes (no embedded NUL) into buf, which
 * must hold max_len + 1 bytes. */
int wire_get_str(const msgpack_object *map, const char *key, char *buf, size_t max_len);
/* wire_get_bin_exact copies a bin of exactly `len` bytes into out.
 * wire_get_bin points *data at a bin of at most max_len bytes; *out_len
 * receives its length. Lifetime: the message's. */
int wire_get_bin_exact(const msgpack_object *map, const char *key, void *out, size_t len);
int wire_get_bin(const msgpack_object *map, const char *key, const uint8_t **data, size_t *out_len,
                 size_t max_len);
/* Points *arr at an array of at most max_count elements. */
int wire_get_array(const msgpack_object *map, const char *key, const msgpack_object_array **arr,
                   size_t max_count);
int wire_get_map(const msgpack_object *map, const char *key, const msgpack_object **out);

/* Same checks on a bare object (an array element). */
int wire_obj_u64(const msgpack_object *obj, uint64_t *out);
int wire_obj_str(const msgpack_object *obj, char *buf, size_t max_len);
int wire_obj_bin_exact(const msgpack_object *obj, void *out, size_t len);

/* Structural pre-scan of a raw msgpack buffer (also used for stored records):
 * 0 when `data` holds exactly one object within the depth and count bounds. */
int wire_validate(const void *data, size_t len);

#endif
