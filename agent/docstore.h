/*
 * docstore.h: signed documents (plans, operator commands) kept in the
 * store's plans database, in chunks.
 *
 * A plan with every frozen target is tens of MiB; LMDB values are bounded
 * (STORE_MAX_VALUE) and a reader wants a few hundred bytes of it at a time
 * (a compact plan's target, a chunk served to a peer). So a document is:
 *
 *   plans  "d" + id (32)              -> {kind u8, size u64 BE}     index
 *          "c" + id (32) + n (u32 BE) -> bytes [n * 1 MiB, ...)     chunks
 *
 * and a read of any byte range copies exactly that range out of a short read
 * transaction, never a whole chunk.
 */
#ifndef GG_DOCSTORE_H
#define GG_DOCSTORE_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define DOCSTORE_CHUNK_BYTES (1u << 20)
#define DOCSTORE_ID_LEN      32
#define DOCSTORE_META_KEY    33 /* "d" + id */
#define DOCSTORE_META_LEN    9  /* kind + size */

/* Writes the document's index entry and chunks into batch b (the caller
 * commits). Returns 0 or store_batch_put's error. */
int docstore_put(store_batch_t *b, const uint8_t id[DOCSTORE_ID_LEN], uint8_t kind,
                 const void *data, size_t len);

/* Deletes the index entry and chunks of a document of len bytes in batch b
 * (what docstore_put wrote; the caller commits). Returns 0 or
 * store_batch_del's error (a missing key is not one). */
int docstore_del(store_batch_t *b, const uint8_t id[DOCSTORE_ID_LEN], size_t len);

/* Copies [offset, offset + len) of the stored document into buf. Returns the
 * bytes copied: fewer than len when the document is shorter, absent or
 * unreadable. */
size_t docstore_read(store_t *store, const uint8_t id[DOCSTORE_ID_LEN], uint64_t offset,
                     uint8_t *buf, size_t len);

/* Decodes an index entry seen by a scan of the "d" prefix. Returns 0 with
 * the id (pointing into key), kind and size, or GG_EMALFORMED. */
int docstore_meta(const void *key, size_t klen, const void *val, size_t vlen, const uint8_t **id,
                  uint8_t *kind, uint64_t *size);

#endif
