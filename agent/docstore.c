/*
 * docstore.c: documents in chunks in the plans database (see docstore.h).
 */
#include "docstore.h"

#include "gg_error.h"

#include <string.h>

static void s_chunk_key(const uint8_t id[DOCSTORE_ID_LEN], uint32_t chunk, uint8_t key[37])
{
    key[0] = 'c';
    memcpy(key + 1, id, DOCSTORE_ID_LEN);
    key[33] = (uint8_t) (chunk >> 24);
    key[34] = (uint8_t) (chunk >> 16);
    key[35] = (uint8_t) (chunk >> 8);
    key[36] = (uint8_t) chunk;
}

int docstore_put(store_batch_t *b, const uint8_t id[DOCSTORE_ID_LEN], uint8_t kind,
                 const void *data, size_t len)
{
    uint8_t key[DOCSTORE_META_KEY], meta[DOCSTORE_META_LEN];
    key[0] = 'd';
    memcpy(key + 1, id, DOCSTORE_ID_LEN);
    meta[0] = kind;
    for (int i = 0; i < 8; i++)
        meta[1 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
    int rc = store_batch_put(b, STORE_DB_PLANS, key, sizeof key, meta, sizeof meta);
    for (size_t off = 0, chunk = 0; rc == 0 && off < len; off += DOCSTORE_CHUNK_BYTES, chunk++) {
        uint8_t ckey[37];
        s_chunk_key(id, (uint32_t) chunk, ckey);
        size_t n = len - off < DOCSTORE_CHUNK_BYTES ? len - off : DOCSTORE_CHUNK_BYTES;
        rc = store_batch_put(b, STORE_DB_PLANS, ckey, sizeof ckey, (const uint8_t *) data + off, n);
    }
    return rc;
}

int docstore_del(store_batch_t *b, const uint8_t id[DOCSTORE_ID_LEN], size_t len)
{
    uint8_t key[DOCSTORE_META_KEY];
    key[0] = 'd';
    memcpy(key + 1, id, DOCSTORE_ID_LEN);
    int rc = store_batch_del(b, STORE_DB_PLANS, key, sizeof key);
    for (size_t off = 0, chunk = 0; rc == 0 && off < len; off += DOCSTORE_CHUNK_BYTES, chunk++) {
        uint8_t ckey[37];
        s_chunk_key(id, (uint32_t) chunk, ckey);
        rc = store_batch_del(b, STORE_DB_PLANS, ckey, sizeof ckey);
    }
    return rc;
}

/* Copies part of one chunk straight out of the read transaction. */
typedef struct {
    size_t within;
    uint8_t *dst;
    size_t want;
    size_t got;
} s_chunk_read_t;

static int s_chunk_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_chunk_read_t *r = arg;
    if (klen != 37 || r->within >= vlen)
        return 1;
    size_t n = vlen - r->within;
    if (n > r->want)
        n = r->want;
    memcpy(r->dst, (const uint8_t *) val + r->within, n);
    r->got = n;
    return 1;
}

size_t docstore_read(store_t *store, const uint8_t id[DOCSTORE_ID_LEN], uint64_t offset,
                     uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        uint64_t pos = offset + done;
        if (pos / DOCSTORE_CHUNK_BYTES > UINT32_MAX)
            break;
        uint8_t ckey[37];
        s_chunk_key(id, (uint32_t) (pos / DOCSTORE_CHUNK_BYTES), ckey);
        s_chunk_read_t r = {(size_t) (pos % DOCSTORE_CHUNK_BYTES), buf + done, len - done, 0};
        /* The chunk key is the whole prefix: the scan visits that one value. */
        if (store_scan(store, STORE_DB_PLANS, ckey, sizeof ckey, s_chunk_visit, &r) != 0 ||
            r.got == 0)
            break;
        done += r.got;
    }
    return done;
}

int docstore_meta(const void *key, size_t klen, const void *val, size_t vlen, const uint8_t **id,
                  uint8_t *kind, uint64_t *size)
{
    const uint8_t *k = key, *v = val;
    if (klen != DOCSTORE_META_KEY || k[0] != 'd' || vlen != DOCSTORE_META_LEN)
        return GG_EMALFORMED;
    uint64_t s = 0;
    for (int i = 0; i < 8; i++)
        s = (s << 8) | v[1 + i];
    *id = k + 1;
    *kind = v[0];
    *size = s;
    return 0;
}
