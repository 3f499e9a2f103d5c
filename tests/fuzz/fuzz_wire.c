/*
 * fuzz_wire.c: libFuzzer target for the wire codec. Any input is decoded;
 * when it decodes, every body key is read through every accessor (and array
 * elements through the wire_obj_* ones), then the message is re-encoded with
 * the writer and decoded again. The re-encoding must decode, and encoding is
 * a fixpoint: encode(decode(encode(m))) == encode(m), byte for byte. Any
 * crash, sanitizer report or broken invariant is a finding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gg_error.h"
#include "wire.h"

#define FUZZ_KEY_MAX 64

static void s_exercise_value(const msgpack_object *map, const char *key)
{
    uint64_t u;
    int64_t i;
    bool b;
    char str[FUZZ_KEY_MAX + 1];
    uint8_t id[WIRE_ID_LEN];
    const uint8_t *bin;
    size_t bin_len;
    const msgpack_object_array *arr;
    const msgpack_object *sub;

    (void) wire_get_u64(map, key, &u);
    (void) wire_get_i64(map, key, &i);
    (void) wire_get_bool(map, key, &b);
    (void) wire_get_str(map, key, str, FUZZ_KEY_MAX);
    (void) wire_get_str(map, key, str, 0);
    (void) wire_get_bin_exact(map, key, id, sizeof id);
    if (wire_get_bin(map, key, &bin, &bin_len, WIRE_MAX_MESSAGE) == 0 && bin_len > 0) {
        volatile uint8_t sink = bin[0] ^ bin[bin_len - 1];
        (void) sink;
    }
    if (wire_get_array(map, key, &arr, 1024) == 0) {
        for (uint32_t k = 0; k < arr->size; k++) {
            (void) wire_obj_u64(&arr->ptr[k], &u);
            (void) wire_obj_str(&arr->ptr[k], str, FUZZ_KEY_MAX);
            (void) wire_obj_bin_exact(&arr->ptr[k], id, sizeof id);
        }
    }
    if (wire_get_map(map, key, &sub) == 0) {
        (void) wire_get_u64(sub, "id", &u);
        (void) wire_get_str(sub, "name", str, FUZZ_KEY_MAX);
    }
}

/* Re-encodes msg's body with the writer. Returns the writer, or NULL when the
 * writer refused (allocation or size). */
static wire_writer_t *s_reencode(const wire_msg_t *msg, const uint8_t **data, size_t *len)
{
    wire_writer_t *w = wire_writer_new(msg->type, msg->sender, msg->body.via.map.size);
    if (!w)
        return NULL;
    msgpack_packer *pk = wire_writer_packer(w);
    for (uint32_t k = 0; k < msg->body.via.map.size; k++) {
        msgpack_pack_object(pk, msg->body.via.map.ptr[k].key);
        msgpack_pack_object(pk, msg->body.via.map.ptr[k].val);
    }
    if (wire_writer_finish(w, data, len) != 0)
        wire_writer_destroy(&w);
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_msg_t msg, again;
    wire_writer_t *w1 = NULL, *w2 = NULL;
    const uint8_t *enc1 = NULL, *enc2 = NULL;
    size_t len1 = 0, len2 = 0;

    (void) wire_validate(data, size);
    int rc = wire_decode(data, size, &msg);
    if (rc != 0) {
        if (rc != GG_EMALFORMED && rc != GG_EVERSION && rc != GG_ETOOBIG && rc != GG_ENOMEM)
            abort();
        return 0;
    }
    if (msg.body.type != MSGPACK_OBJECT_MAP || msg.version < WIRE_MIN_VERSION ||
        msg.version > WIRE_VERSION)
        abort();
    (void) wire_type_name(msg.type);

    for (uint32_t k = 0; k < msg.body.via.map.size; k++) {
        const msgpack_object *key = &msg.body.via.map.ptr[k].key;
        char name[FUZZ_KEY_MAX + 1];
        if (wire_obj_str(key, name, FUZZ_KEY_MAX) != 0)
            continue; /* not a string, too long or with a NUL: no accessor can name it */
        if (wire_map_get(&msg.body, name) == NULL)
            abort(); /* a key present in the map must be found */
        s_exercise_value(&msg.body, name);
    }

    /* Re-encode, decode again, re-encode again: same bytes. */
    w1 = s_reencode(&msg, &enc1, &len1);
    if (w1) {
        if (wire_decode(enc1, len1, &again) != 0)
            abort();
        if (again.type != msg.type || memcmp(again.sender, msg.sender, WIRE_ID_LEN) != 0 ||
            again.body.via.map.size != msg.body.via.map.size)
            abort();
        w2 = s_reencode(&again, &enc2, &len2);
        if (!w2 || len2 != len1 || memcmp(enc1, enc2, len1) != 0)
            abort();
        wire_msg_release(&again);
    }
    wire_writer_destroy(&w2);
    wire_writer_destroy(&w1);
    wire_msg_release(&msg);
    return 0;
}
