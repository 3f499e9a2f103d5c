/*
 * store.c: the node's LMDB environment (see store.h for the contract and the
 * layout on disk).
 *
 * Design notes
 * - One process per store: store_open() takes an exclusive flock() on
 *   <data-dir>/store/owner.lock before LMDB sees the environment. LMDB must not
 *   be opened twice by one process (closing the second descriptor would drop
 *   the first one's POSIX locks), and two agents on one data dir would claim
 *   the same leases; both get GG_EBUSY instead. The kernel drops the lock when
 *   the holder dies, so `kill -9` never leaves the store locked.
 * - One writer: self->batch is the single write slot, taken by
 *   store_batch_begin() and freed by commit or abort under self->mutex, so a
 *   second write, even from the same thread (which would deadlock on LMDB's
 *   writer mutex), gets GG_EBUSY.
 * - A batch is one MDB_txn. Argument errors are checked before LMDB is called
 *   and leave the transaction usable; an error from LMDB inside the transaction
 *   (map full, I/O) poisons it (LMDB allows only an abort afterwards), which
 *   b->failed remembers so that every later call and the commit return it.
 * - Map size: LMDB adopts the size recorded in an existing data file when none
 *   is set before mdb_env_open(), but a size set before open replaces it, even
 *   a smaller one. So the size is set before open only for a fresh file; for
 *   an existing one it is raised after open when the request is larger.
 * - LMDB opens data.mdb's main descriptor without FD_CLOEXEC; it is set here so
 *   no step process inherits the data file.
 * - Schema: opened and checked in one write transaction, which also creates
 *   the named databases and runs the migrations, so a store is either fully
 *   migrated and stamped or untouched. A newer schema is refused before any
 *   other database is opened (a newer build may have changed their flags).
 */
#include "store.h"
#include "gg_error.h"
#include "gg_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_DBS       16 /* named databases the environment can hold */
#define S_SCHEMA_KEY    "schema"
#define S_HEARTBEAT_KEY "heartbeat"
#define S_LOCK_FILE     "owner.lock"
#define S_LOW_SPACE     (1u << 20) /* under this, an I/O error on write is a full disk */

struct store_t {
    MDB_env *env;
    MDB_dbi dbi[STORE_DB_COUNT];
    char *path; /* <data-dir>/store */
    int lock_fd;
    uint32_t schema;
    size_t max_key;
    pthread_mutex_t mutex; /* guards batch and stats */
    store_batch_t *batch;  /* the open write, or NULL */
    store_stats_t stats;
};

struct store_batch_t {
    store_t *store;
    MDB_txn *txn;
    size_t changes;
    int failed; /* 0, or the GG_E* error that poisoned the transaction */
};

static const char *s_db_names[STORE_DB_COUNT] = {
    [STORE_DB_META] = "meta",         [STORE_DB_MEMBERS] = "members",
    [STORE_DB_PLANS] = "plans",       [STORE_DB_TARGETS] = "targets",
    [STORE_DB_LEASES] = "leases",     [STORE_DB_LOGS] = "logs",
    [STORE_DB_AUDIT] = "audit",       [STORE_DB_CERTS] = "certs",
    [STORE_DB_COMMANDS] = "commands", [STORE_DB_KV] = "kv",
};

const char *store_db_name(store_db_t db)
{
    if ((unsigned) db >= STORE_DB_COUNT)
        return NULL;
    return s_db_names[db];
}

/* ---- errors ---- */

/* Maps an LMDB or errno code to a GG_E* code, counting and logging failures.
 * op names what was being done, for the log line. */
static int s_err(store_t *self, int rc, const char *op)
{
    switch (rc) {
    case MDB_SUCCESS: return GG_OK;
    case MDB_NOTFOUND: return GG_ENOTFOUND;
    case ENOMEM: gg_error("store: %s: %s", op, mdb_strerror(rc)); return GG_ENOMEM;
    case MDB_MAP_FULL:
        pthread_mutex_lock(&self->mutex);
        self->stats.errors_map_full++;
        pthread_mutex_unlock(&self->mutex);
        gg_warn("store: %s: %s (raise --map-size)", op, mdb_strerror(rc));
        return GG_EMAPFULL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        pthread_mutex_lock(&self->mutex);
        self->stats.errors_no_space++;
        pthread_mutex_unlock(&self->mutex);
        gg_error("store: %s: %s", op, mdb_strerror(rc));
        return GG_ENOSPC;
    case MDB_TXN_FULL:
    case MDB_BAD_VALSIZE: gg_warn("store: %s: %s", op, mdb_strerror(rc)); return GG_ETOOBIG;
    case MDB_READERS_FULL: gg_warn("store: %s: %s", op, mdb_strerror(rc)); return GG_EBUSY;
    case EACCES:
    case EPERM: gg_error("store: %s: %s", op, mdb_strerror(rc)); return GG_EPERM;
    default:
        pthread_mutex_lock(&self->mutex);
        self->stats.errors_io++;
        pthread_mutex_unlock(&self->mutex);
        gg_error("store: %s: %s", op, mdb_strerror(rc));
        return GG_EIO;
    }
}

/* 1 when the store's file system, or this process's file size limit, has less
 * than S_LOW_SPACE left. LMDB reports a short write (which is how a full disk
 * usually shows) as EIO, so a write path's EIO is checked against this. */
static int s_out_of_space(store_t *self)
{
    struct statvfs vfs;
    struct stat st;
    struct rlimit rl;
    int fd = -1;
    if (statvfs(self->path, &vfs) == 0) {
        uint64_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
        if (blocks * vfs.f_frsize < S_LOW_SPACE)
            return 1;
    }
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        mdb_env_get_fd(self->env, &fd) == MDB_SUCCESS && fstat(fd, &st) == 0 &&
        (uint64_t) st.st_size + S_LOW_SPACE > (uint64_t) rl.rlim_cur)
        return 1;
    return 0;
}

/* s_err for operations that write to the data file (puts and deletes may spill
 * pages; commits write them). */
static int s_write_err(store_t *self, int rc, const char *op)
{
    if (rc == EIO && s_out_of_space(self)) {
        pthread_mutex_lock(&self->mutex);
        self->stats.errors_no_space++;
        pthread_mutex_unlock(&self->mutex);
        gg_error("store: %s: short write with under %u KiB left: out of space", op,
                 S_LOW_SPACE >> 10);
        return GG_ENOSPC;
    }
    return s_err(self, rc, op);
}

/* Checks a database id and a key; 0, GG_EINVAL or GG_ETOOBIG. */
static int s_check_key(const store_t *self, store_db_t db, const void *key, size_t klen)
{
    if ((unsigned) db >= STORE_DB_COUNT || !key || klen == 0)
        return GG_EINVAL;
    if (klen > self->max_key)
        return GG_ETOOBIG;
    return GG_OK;
}

/* ---- opening ---- */

/* mkdir -p with mode for every directory it creates; the last component must
 * end up a directory. */
static int s_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    struct stat st;
    if (len == 0 || len >= sizeof buf)
        return GG_EINVAL;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) {
            int e = errno;
            gg_error("store: cannot create directory %s: %s", buf, strerror(e));
            return (e == EACCES || e == EPERM) ? GG_EPERM : (e == ENOSPC ? GG_ENOSPC : GG_EIO);
        }
        buf[i] = saved;
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        gg_error("store: %s is not a directory", path);
        return GG_EINVAL;
    }
    return GG_OK;
}

/* Takes the store's exclusive lock; GG_EBUSY if another holder has it. */
static int s_lock(store_t *self)
{
    char file[PATH_MAX];
    int n = snprintf(file, sizeof file, "%s/%s", self->path, S_LOCK_FILE);
    if (n < 0 || (size_t) n >= sizeof file)
        return GG_EINVAL;
    self->lock_fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (self->lock_fd < 0) {
        int e = errno;
        gg_error("store: cannot open %s: %s", file, strerror(e));
        return (e == EACCES || e == EPERM) ? GG_EPERM : GG_EIO;
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            gg_error("store: %s is in use by another process", self->path);
            return GG_EBUSY;
        }
        gg_error("store: cannot lock %s: %s", file, strerror(e));
        return GG_EIO;
    }
    return GG_OK;
}

static void s_put_u32be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}

static int s_write_schema(store_t *self, MDB_txn *txn, uint32_t version)
{
    unsigned char buf[4];
    s_put_u32be(buf, version);
    MDB_val k = {sizeof S_SCHEMA_KEY - 1, (void *) S_SCHEMA_KEY};
    MDB_val v = {sizeof buf, buf};
    return s_err(self, mdb_put(txn, self->dbi[STORE_DB_META], &k, &v, 0), "stamp schema");
}

/* Migration steps: s_migrations[i] takes a store from version i to i+1, inside
 * the opening transaction. Add one entry (and bump STORE_SCHEMA_VERSION) per
 * format change. */
typedef int(s_migrate_fn)(store_t *self, MDB_txn *txn);

/* Version 0 is a store written before the schema key existed. Its databases
 * already have the version 1 layout, so nothing is converted: the stamp that
 * follows every step is the whole migration. */
static int s_migrate_0_to_1(store_t *self, MDB_txn *txn)
{
    (void) self;
    (void) txn;
    return GG_OK;
}

static const struct {
    const char *what;
    s_migrate_fn *fn;
} s_migrations[] = {
    {"stamp a store written before the schema key", s_migrate_0_to_1},
};
_Static_assert(sizeof s_migrations / sizeof s_migrations[0] == STORE_SCHEMA_VERSION,
               "one migration step per schema version");

/* Opens every database, checks the schema, stamps a fresh store and migrates
 * an old one, in one transaction. */
static int s_open_dbs(store_t *self)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    size_t entries = 0;
    uint32_t version = 0;
    int has_schema = 0;
    int rc = s_err(self, mdb_txn_begin(self->env, NULL, 0, &txn), "begin opening transaction");
    if (rc)
        goto out;

    rc = s_err(self,
               mdb_dbi_open(txn, s_db_names[STORE_DB_META], MDB_CREATE, &self->dbi[STORE_DB_META]),
               "open database meta");
    if (rc)
        goto out;
    MDB_val k = {sizeof S_SCHEMA_KEY - 1, (void *) S_SCHEMA_KEY};
    MDB_val v;
    int mrc = mdb_get(txn, self->dbi[STORE_DB_META], &k, &v);
    if (mrc == MDB_SUCCESS) {
        if (v.mv_size != 4) {
            gg_error("store: %s: schema key has %zu bytes, expected 4", self->path, v.mv_size);
            rc = GG_EMALFORMED;
            goto out;
        }
        const unsigned char *p = v.mv_data;
        version = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
        has_schema = 1;
    } else if (mrc != MDB_NOTFOUND) {
        rc = s_err(self, mrc, "read schema");
        goto out;
    }
    if (has_schema && version > STORE_SCHEMA_VERSION) {
        gg_error("store: %s: store schema %u is newer than this build's %u; not opening it",
                 self->path, version, STORE_SCHEMA_VERSION);
        rc = GG_ESCHEMA;
        goto out;
    }

    for (int db = 0; db < STORE_DB_COUNT; db++) {
        char op[64];
        snprintf(op, sizeof op, "open database %s", s_db_names[db]);
        rc = s_err(self, mdb_dbi_open(txn, s_db_names[db], MDB_CREATE, &self->dbi[db]), op);
        if (rc)
            goto out;
        rc = s_err(self, mdb_stat(txn, self->dbi[db], &st), op);
        if (rc)
            goto out;
        entries += st.ms_entries;
    }

    if (!has_schema && entries == 0) {
        rc = s_write_schema(self, txn, STORE_SCHEMA_VERSION);
        if (rc)
            goto out;
        gg_info("store: %s: new store, schema %u", self->path, STORE_SCHEMA_VERSION);
        version = STORE_SCHEMA_VERSION;
    }
    /* !has_schema with data: version stays 0. */
    while (version < STORE_SCHEMA_VERSION) {
        rc = s_migrations[version].fn(self, txn);
        if (rc) {
            gg_error("store: %s: migrating schema %u to %u (%s) failed: %s", self->path, version,
                     version + 1, s_migrations[version].what, gg_strerror(rc));
            goto out;
        }
        rc = s_write_schema(self, txn, version + 1);
        if (rc)
            goto out;
        gg_info("store: %s: migrated schema %u to %u (%s)", self->path, version, version + 1,
                s_migrations[version].what);
        version++;
    }

    rc = s_write_err(self, mdb_txn_commit(txn), "commit opening transaction");
    txn = NULL; /* commit frees it, failed or not */
    if (rc)
        goto out;
    self->schema = version;
out:
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* Opens the LMDB environment in self->path with the map size rules above. */
static int s_open_env(store_t *self, uint64_t map_size)
{
    char file[PATH_MAX];
    struct stat st;
    MDB_envinfo info;
    int fd = -1;
    int n = snprintf(file, sizeof file, "%s/data.mdb", self->path);
    if (n < 0 || (size_t) n >= sizeof file)
        return GG_EINVAL;
    int fresh = stat(file, &st) != 0 || st.st_size == 0;

    int rc = s_err(self, mdb_env_create(&self->env), "create environment");
    if (rc)
        return rc;
    rc = s_err(self, mdb_env_set_maxdbs(self->env, S_MAX_DBS), "set max databases");
    if (!rc && fresh)
        rc = s_err(self, mdb_env_set_mapsize(self->env, (size_t) map_size), "set map size");
    if (rc)
        return rc;
    /* No MDB_WRITEMAP: a full disk must be an error, not SIGBUS. */
    rc = s_err(self, mdb_env_open(self->env, self->path, MDB_NOTLS, 0600), "open environment");
    if (rc)
        return rc;
    if (mdb_env_get_fd(self->env, &fd) == MDB_SUCCESS && fd >= 0) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
            return s_err(self, errno, "set close-on-exec on data file");
    }
    int dead = 0;
    rc = s_err(self, mdb_reader_check(self->env, &dead), "check reader table");
    if (rc)
        return rc;
    if (dead > 0)
        gg_debug("store: %s: cleared %d stale reader slots", self->path, dead);
    rc = s_err(self, mdb_env_info(self->env, &info), "read environment info");
    if (rc)
        return rc;
    if (info.me_mapsize < map_size) {
        rc = s_err(self, mdb_env_set_mapsize(self->env, (size_t) map_size), "grow map size");
        if (rc)
            return rc;
    }
    int max_key = mdb_env_get_maxkeysize(self->env);
    self->max_key =
        max_key > 0 && (size_t) max_key < STORE_MAX_KEY ? (size_t) max_key : STORE_MAX_KEY;
    return GG_OK;
}

int store_open(const char *data_dir, uint64_t map_size, store_t **out)
{
    store_t *self = NULL;
    int rc = GG_OK;
    if (!out)
        return GG_EINVAL;
    *out = NULL;
    if (!data_dir || !*data_dir)
        return GG_EINVAL;
    if (map_size == 0)
        map_size = STORE_DEFAULT_MAP_SIZE;
    if (map_size < STORE_MIN_MAP_SIZE || map_size > STORE_MAX_MAP_SIZE || map_size > SIZE_MAX) {
        gg_error("store: map size %llu is outside %llu..%llu bytes", (unsigned long long) map_size,
                 (unsigned long long) STORE_MIN_MAP_SIZE, (unsigned long long) STORE_MAX_MAP_SIZE);
        return GG_EINVAL;
    }

    self = calloc(1, sizeof *self);
    if (!self)
        return GG_ENOMEM;
    self->lock_fd = -1;
    if (pthread_mutex_init(&self->mutex, NULL) != 0) {
        free(self);
        return GG_ENOMEM;
    }
    size_t dlen = strlen(data_dir);
    while (dlen > 1 && data_dir[dlen - 1] == '/')
        dlen--;
    size_t plen = dlen + sizeof "/store";
    if (plen > PATH_MAX) {
        rc = GG_EINVAL;
        goto out;
    }
    self->path = malloc(plen);
    if (!self->path) {
        rc = GG_ENOMEM;
        goto out;
    }
    snprintf(self->path, plen, "%.*s/store", (int) dlen, data_dir);

    rc = s_mkdirs(self->path, 0700);
    if (rc)
        goto out;
    rc = s_lock(self);
    if (rc)
        goto out;
    rc = s_open_env(self, map_size);
    if (rc)
        goto out;
    rc = s_open_dbs(self);
    if (rc)
        goto out;

    store_stats_t st;
    store_stats(self, &st);
    gg_info("store: opened %s (schema %u, map %llu MiB, %llu KiB used)", self->path, self->schema,
            (unsigned long long) (st.map_size >> 20), (unsigned long long) (st.used_bytes >> 10));
    *out = self;
    self = NULL;
out:
    store_destroy(&self);
    return rc;
}

void store_destroy(store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    *self_p = NULL;
    if (self->batch) {
        gg_warn("store: closing with an open batch of %zu changes: discarded",
                self->batch->changes);
        if (self->batch->txn)
            mdb_txn_abort(self->batch->txn);
        free(self->batch);
        self->batch = NULL;
    }
    if (self->env)
        mdb_env_close(self->env);
    if (self->lock_fd >= 0)
        close(self->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&self->mutex);
    free(self->path);
    free(self);
}

uint32_t store_schema_version(store_t *self)
{
    return self ? self->schema : 0;
}

const char *store_path(store_t *self)
{
    return self ? self->path : NULL;
}

/* ---- batches ---- */

/* Frees the batch and its write slot; the transaction must be gone. */
static void s_batch_release(store_batch_t *b)
{
    store_t *self = b->store;
    pthread_mutex_lock(&self->mutex);
    if (self->batch == b)
        self->batch = NULL;
    pthread_mutex_unlock(&self->mutex);
    free(b);
}

int store_batch_begin(store_t *self, store_batch_t **out)
{
    store_batch_t *b = NULL;
    int busy = 0;
    int rc = GG_OK;
    if (!out)
        return GG_EINVAL;
    *out = NULL;
    if (!self)
        return GG_EINVAL;
    b = calloc(1, sizeof *b);
    if (!b)
        return GG_ENOMEM;
    b->store = self;
    pthread_mutex_lock(&self->mutex);
    if (self->batch)
        busy = 1;
    else
        self->batch = b;
    pthread_mutex_unlock(&self->mutex);
    if (busy) {
        free(b);
        return GG_EBUSY;
    }
    rc = s_err(self, mdb_txn_begin(self->env, NULL, 0, &b->txn), "begin write transaction");
    if (rc) {
        b->txn = NULL;
        s_batch_release(b);
        return rc;
    }
    *out = b;
    return GG_OK;
}

int store_batch_put(store_batch_t *b, store_db_t db, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    if (!b)
        return GG_EINVAL;
    if (b->failed)
        return b->failed;
    int rc = s_check_key(b->store, db, key, klen);
    if (rc)
        return rc;
    if (!val && vlen > 0)
        return GG_EINVAL;
    if (vlen > STORE_MAX_VALUE)
        return GG_ETOOBIG;
    MDB_val k = {klen, (void *) key};
    MDB_val v = {vlen, (void *) (val ? val : "")};
    char op[48];
    snprintf(op, sizeof op, "put in %s", s_db_names[db]);
    rc = s_write_err(b->store, mdb_put(b->txn, b->store->dbi[db], &k, &v, 0), op);
    if (rc) {
        b->failed = rc;
        return rc;
    }
    b->changes++;
    return GG_OK;
}

int store_batch_del(store_batch_t *b, store_db_t db, const void *key, size_t klen)
{
    if (!b)
        return GG_EINVAL;
    if (b->failed)
        return b->failed;
    int rc = s_check_key(b->store, db, key, klen);
    if (rc)
        return rc;
    MDB_val k = {klen, (void *) key};
    int mrc = mdb_del(b->txn, b->store->dbi[db], &k, NULL);
    if (mrc == MDB_NOTFOUND)
        return GG_OK;
    char op[48];
    snprintf(op, sizeof op, "delete in %s", s_db_names[db]);
    rc = s_write_err(b->store, mrc, op);
    if (rc) {
        b->failed = rc;
        return rc;
    }
    b->changes++;
    return GG_OK;
}

int store_batch_get(store_batch_t *b, store_db_t db, const void *key, size_t klen, const void **val,
                    size_t *vlen)
{
    if (!b || !val || !vlen)
        return GG_EINVAL;
    *val = NULL;
    *vlen = 0;
    if (b->failed)
        return b->failed;
    int rc = s_check_key(b->store, db, key, klen);
    if (rc)
        return rc;
    MDB_val k = {klen, (void *) key};
    MDB_val v;
    char op[48];
    snprintf(op, sizeof op, "get in %s", s_db_names[db]);
    rc = s_err(b->store, mdb_get(b->txn, b->store->dbi[db], &k, &v), op);
    if (rc)
        return rc; /* a failed read does not poison the transaction */
    *val = v.mv_data;
    *vlen = v.mv_size;
    return GG_OK;
}

size_t store_batch_count(const store_batch_t *b)
{
    return b ? b->changes : 0;
}

int store_batch_commit(store_batch_t **b_p)
{
    if (!b_p || !*b_p)
        return GG_EINVAL;
    store_batch_t *b = *b_p;
    *b_p = NULL;
    store_t *self = b->store;
    int rc = GG_OK;
    if (b->failed) {
        rc = b->failed;
        mdb_txn_abort(b->txn);
    } else if (b->changes == 0) {
        mdb_txn_abort(b->txn); /* nothing to write: no fsync */
    } else {
        rc = s_write_err(self, mdb_txn_commit(b->txn), "commit");
        if (rc == GG_OK) {
            pthread_mutex_lock(&self->mutex);
            self->stats.commits++;
            self->stats.changes += b->changes;
            pthread_mutex_unlock(&self->mutex);
        }
    }
    b->txn = NULL;
    s_batch_release(b);
    return rc;
}

void store_batch_abort(store_batch_t **b_p)
{
    if (!b_p || !*b_p)
        return;
    store_batch_t *b = *b_p;
    *b_p = NULL;
    mdb_txn_abort(b->txn);
    b->txn = NULL;
    s_batch_release(b);
}

/* ---- reads ---- */

int store_get(store_t *self, store_db_t db, const void *key, size_t klen, void **val_out,
              size_t *vlen_out)
{
    MDB_txn *txn = NULL;
    if (!self || !val_out || !vlen_out)
        return GG_EINVAL;
    *val_out = NULL;
    *vlen_out = 0;
    int rc = s_check_key(self, db, key, klen);
    if (rc)
        return rc;
    rc = s_err(self, mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn), "begin read transaction");
    if (rc) {
        txn = NULL;
        goto out;
    }
    MDB_val k = {klen, (void *) key};
    MDB_val v;
    char op[48];
    snprintf(op, sizeof op, "get in %s", s_db_names[db]);
    rc = s_err(self, mdb_get(txn, self->dbi[db], &k, &v), op);
    if (rc)
        goto out;
    if (v.mv_size > STORE_MAX_VALUE) {
        gg_error("store: %s: value of %zu bytes exceeds the %u byte bound", op, v.mv_size,
                 STORE_MAX_VALUE);
        rc = GG_ETOOBIG;
        goto out;
    }
    void *copy = malloc(v.mv_size ? v.mv_size : 1);
    if (!copy) {
        rc = GG_ENOMEM;
        goto out;
    }
    if (v.mv_size)
        memcpy(copy, v.mv_data, v.mv_size);
    *val_out = copy;
    *vlen_out = v.mv_size;
out:
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

int store_scan(store_t *self, store_db_t db, const void *prefix, size_t plen, store_visit_fn *fn,
               void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = GG_OK;
    if (!self || !fn || (unsigned) db >= STORE_DB_COUNT || (!prefix && plen > 0))
        return GG_EINVAL;
    if (plen > self->max_key)
        return GG_ETOOBIG;
    char op[48];
    snprintf(op, sizeof op, "scan %s", s_db_names[db]);
    rc = s_err(self, mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn), "begin read transaction");
    if (rc) {
        txn = NULL;
        goto out;
    }
    rc = s_err(self, mdb_cursor_open(txn, self->dbi[db], &cur), op);
    if (rc) {
        cur = NULL;
        goto out;
    }
    MDB_val k = {plen, (void *) prefix};
    MDB_val v;
    MDB_cursor_op cop = plen ? MDB_SET_RANGE : MDB_FIRST;
    for (;;) {
        int mrc = mdb_cursor_get(cur, &k, &v, cop);
        if (mrc == MDB_NOTFOUND)
            break;
        rc = s_err(self, mrc, op);
        if (rc)
            goto out;
        cop = MDB_NEXT;
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        int vr = fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg);
        if (vr < 0) {
            rc = vr;
            goto out;
        }
        if (vr > 0)
            break;
    }
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

int store_count(store_t *self, store_db_t db, size_t *count)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    if (!self || !count || (unsigned) db >= STORE_DB_COUNT)
        return GG_EINVAL;
    *count = 0;
    int rc =
        s_err(self, mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn), "begin read transaction");
    if (rc)
        return rc;
    rc = s_err(self, mdb_stat(txn, self->dbi[db], &st), "count");
    if (rc == GG_OK)
        *count = st.ms_entries;
    mdb_txn_abort(txn);
    return rc;
}

/* ---- single writes ---- */

static int s_write_one(store_t *self, store_db_t db, const void *key, size_t klen, const void *val,
                       size_t vlen, int del)
{
    store_batch_t *b = NULL;
    int rc = store_batch_begin(self, &b);
    if (rc)
        goto out;
    rc = del ? store_batch_del(b, db, key, klen) : store_batch_put(b, db, key, klen, val, vlen);
    if (rc)
        goto out;
    rc = store_batch_commit(&b);
out:
    store_batch_abort(&b);
    return rc;
}

int store_put(store_t *self, store_db_t db, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    return s_write_one(self, db, key, klen, val, vlen, 0);
}

int store_del(store_t *self, store_db_t db, const void *key, size_t klen)
{
    return s_write_one(self, db, key, klen, NULL, 0, 1);
}

int store_check_writable(store_t *self)
{
    struct timespec ts;
    unsigned char buf[8];
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char) (ms >> (56 - 8 * i));
    return s_write_one(self, STORE_DB_META, S_HEARTBEAT_KEY, sizeof S_HEARTBEAT_KEY - 1, buf,
                       sizeof buf, 0);
}

/* ---- stats ---- */

void store_stats(store_t *self, store_stats_t *out)
{
    MDB_envinfo info;
    MDB_stat st;
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!self)
        return;
    pthread_mutex_lock(&self->mutex);
    *out = self->stats;
    pthread_mutex_unlock(&self->mutex);
    if (mdb_env_info(self->env, &info) == MDB_SUCCESS &&
        mdb_env_stat(self->env, &st) == MDB_SUCCESS) {
        out->map_size = info.me_mapsize;
        out->used_bytes = ((uint64_t) info.me_last_pgno + 1) * st.ms_psize;
    }
}
