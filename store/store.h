/*
 * store.h: the node's durable state, one LMDB environment per node.
 *
 * Everything a node must remember across a restart (membership incarnation,
 * plans, targets, leases, progress, logs, audit trail, certificates, signed
 * commands) lives here, so that `kill -9` and a restart resume where the node
 * stopped. The store is a thin, checked layer over LMDB: it owns the
 * environment, the schema version and group commit; callers own the key and
 * value formats of their databases.
 *
 * Layout on disk
 *   <data-dir>/            created 0700 if missing
 *   <data-dir>/store/      the LMDB environment (created 0700)
 *       data.mdb           LMDB data file (mode 0600)
 *       lock.mdb           LMDB reader table
 *       owner.lock         flock()ed while a process has the store open, so a
 *                          second agent on the same data dir is refused
 *
 * Named databases (store_db_t, names from store_db_name()):
 *   meta      store bookkeeping. Reserved keys: "schema" (u32 big-endian, the
 *             schema version) and "heartbeat" (u64 big-endian, rewritten by
 *             store_check_writable()). Callers may add keys of their own. Its
 *             name and LMDB flags never change, so any build can read the schema.
 *   members, plans, targets, leases, logs, audit, certs, commands, kv:
 *             plain byte-keyed databases, keys sorted bytewise (memcmp, shorter
 *             first). Key and value formats belong to the modules that write them.
 *
 * Schema: STORE_SCHEMA_VERSION. A fresh store is stamped with it. A store
 * without the "schema" key but holding data is version 0 (written before the key
 * existed). An older store is migrated forward at open, one version at a time
 * through a table of migration steps, all in the single transaction that opens
 * the store (all steps or none). A newer store is refused with GG_ESCHEMA and
 * left untouched.
 *
 * Writes: at most one write is open per store at a time: a batch (one LMDB write
 * transaction, committed once, so one fsync for many changes) or one of the
 * single-write conveniences, which are one-change batches. Another write
 * attempted meanwhile, from any thread, gets GG_EBUSY; a batch must be finished
 * by the thread that began it. Reads are short read-only transactions, allowed
 * from any thread (MDB_NOTLS), and see committed data only.
 *
 * Failures: MDB_MAP_FULL -> GG_EMAPFULL; ENOSPC, EDQUOT and EFBIG (file size
 * limit) -> GG_ENOSPC, as is a short write (LMDB's EIO) when under 1 MiB is left
 * on the file system or under the file size limit; other LMDB or system errors
 * -> GG_EIO, logged with the operation and mdb_strerror(). After any of them the failed batch is
 * discarded and the store stays usable: committed data is intact and later writes that fit succeed.
 * Keys are 1..STORE_MAX_KEY bytes, values 0..STORE_MAX_VALUE bytes; beyond that
 * GG_ETOOBIG.
 *
 * No MDB_WRITEMAP (a full disk would be SIGBUS); every descriptor the store
 * holds is close-on-exec, so step processes inherit none.
 */
#ifndef GG_STORE_H
#define GG_STORE_H

#include "gg_error.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION   1u
#define STORE_DEFAULT_MAP_SIZE (1ull << 30) /* map_size 0 means this */
#define STORE_MIN_MAP_SIZE     (1ull << 20)
#define STORE_MAX_MAP_SIZE     (1ull << 46) /* 64 TiB of address space */
#define STORE_MAX_KEY          511u         /* LMDB's default maximum key size */
#define STORE_MAX_VALUE        (16u << 20)

typedef enum {
    STORE_DB_META,
    STORE_DB_MEMBERS,
    STORE_DB_PLANS,
    STORE_DB_TARGETS,
    STORE_DB_LEASES,
    STORE_DB_LOGS,
    STORE_DB_AUDIT,
    STORE_DB_CERTS,
    STORE_DB_COMMANDS,
    STORE_DB_KV,
    STORE_DB_COUNT
} store_db_t;

typedef struct store_t store_t;
typedef struct store_batch_t store_batch_t;

/* The database's name in LMDB ("meta", "members", ...); NULL for an invalid db. */
const char *store_db_name(store_db_t db);

/* Opens (creating if needed) the store under data_dir. map_size is the LMDB map
 * size in bytes, 0 for STORE_DEFAULT_MAP_SIZE; an existing store whose map is
 * larger keeps its size, a smaller one grows to map_size. Returns 0, GG_EINVAL
 * (bad argument or map size outside STORE_MIN_MAP_SIZE..STORE_MAX_MAP_SIZE),
 * GG_EBUSY (another process or store_t has it open), GG_ESCHEMA (newer schema),
 * GG_EMALFORMED (unreadable schema key), GG_EPERM, GG_ENOMEM, GG_EMAPFULL,
 * GG_ENOSPC or GG_EIO. */
int store_open(const char *data_dir, uint64_t map_size, store_t **out) GG_MUST_CHECK;

/* Closes the store; an open batch is aborted (its pointer becomes invalid).
 * NULL-safe; clears *self_p. */
void store_destroy(store_t **self_p);

/* The schema version of the open store (always STORE_SCHEMA_VERSION). */
uint32_t store_schema_version(store_t *self);

/* Group commit. A batch is one LMDB write transaction: many puts and deletes,
 * one commit (one fsync). Returns 0, GG_EBUSY if a write is already open, or an
 * error mapped as above. */
int store_batch_begin(store_t *self, store_batch_t **out) GG_MUST_CHECK;

/* Puts or replaces key. Returns 0; GG_EINVAL or GG_ETOOBIG for a bad key or
 * value (the batch stays usable); GG_EMAPFULL, GG_ENOSPC or GG_EIO when LMDB
 * fails, which poisons the batch: every later call on it returns that error and
 * commit discards it. */
int store_batch_put(store_batch_t *b, store_db_t db, const void *key, size_t klen, const void *val,
                    size_t vlen) GG_MUST_CHECK;

/* Deletes key; an absent key is not an error (returns 0). Errors as put. */
int store_batch_del(store_batch_t *b, store_db_t db, const void *key, size_t klen) GG_MUST_CHECK;

/* Reads key as this batch sees it (its own writes included). *val points into
 * the transaction and stays valid until the next put, delete, commit or abort of
 * this batch. Returns 0, GG_ENOTFOUND or an error as put. */
int store_batch_get(store_batch_t *b, store_db_t db, const void *key, size_t klen, const void **val,
                    size_t *vlen) GG_MUST_CHECK;

/* Number of changes made so far: puts, and deletes that removed a key. */
size_t store_batch_count(const store_batch_t *b);

/* Commits and consumes the batch (*b_p is cleared whatever happens). On failure
 * nothing of the batch is kept and the store stays usable. An empty batch
 * commits nothing and costs no fsync. Returns 0, the batch's poisoning error,
 * GG_EMAPFULL, GG_ENOSPC or GG_EIO. */
int store_batch_commit(store_batch_t **b_p) GG_MUST_CHECK;

/* Discards the batch. NULL-safe; clears *b_p. */
void store_batch_abort(store_batch_t **b_p);

/* Copies key's value into a malloc'd buffer the caller frees (never NULL on
 * success, even for an empty value). Returns 0, GG_ENOTFOUND, GG_EINVAL,
 * GG_ETOOBIG, GG_ENOMEM, GG_EBUSY (reader table full) or GG_EIO. */
int store_get(store_t *self, store_db_t db, const void *key, size_t klen, void **val_out,
              size_t *vlen_out) GG_MUST_CHECK;

/* Visitor for store_scan. key and val are valid during the call only. Return 0
 * to go on, a positive value to stop (store_scan then returns 0), a negative
 * GG_E* code to stop and have store_scan return it. */
typedef int(store_visit_fn)(const void *key, size_t klen, const void *val, size_t vlen, void *arg);

/* Visits, in key order, every key starting with prefix (prefix NULL or plen 0:
 * every key) in one read transaction: keep scans short or bounded, since a long
 * reader keeps old pages from being reused. The visitor may write through a
 * batch but must not call store_destroy. Returns 0, the visitor's negative
 * code, GG_EINVAL, GG_ETOOBIG (plen over STORE_MAX_KEY), GG_EBUSY or GG_EIO. */
int store_scan(store_t *self, store_db_t db, const void *prefix, size_t plen, store_visit_fn *fn,
               void *arg) GG_MUST_CHECK;

/* Number of keys in db. Returns 0, GG_EINVAL, GG_EBUSY or GG_EIO. */
int store_count(store_t *self, store_db_t db, size_t *count) GG_MUST_CHECK;

/* Single writes outside the hot path: each is a one-change batch and commit
 * (one fsync). GG_EBUSY while a batch is open. store_del of an absent key: 0. */
int store_put(store_t *self, store_db_t db, const void *key, size_t klen, const void *val,
              size_t vlen) GG_MUST_CHECK;
int store_del(store_t *self, store_db_t db, const void *key, size_t klen) GG_MUST_CHECK;

/* Proves the store takes writes: commits a tiny write (meta "heartbeat").
 * For /healthz. Returns 0, GG_EBUSY while a batch is open, or a write error. */
int store_check_writable(store_t *self) GG_MUST_CHECK;

typedef struct {
    uint64_t commits;         /* successful non-empty commits */
    uint64_t changes;         /* changes in those commits */
    uint64_t map_size;        /* current LMDB map size, bytes */
    uint64_t used_bytes;      /* pages in use in the data file, bytes */
    uint64_t errors_map_full; /* writes that failed with GG_EMAPFULL */
    uint64_t errors_no_space; /* writes that failed with GG_ENOSPC */
    uint64_t errors_io;       /* operations that failed with GG_EIO */
} store_stats_t;

/* Fills *out with counters since open and current sizes. Any thread. */
void store_stats(store_t *self, store_stats_t *out);

/* The environment's directory, "<data-dir>/store"; valid until destroy. */
const char *store_path(store_t *self);

#endif
