/*
 * test_store.c: the LMDB store: persistence, group commit, batch isolation,
 * scans, limits, schema stamping, refusal and migration, map-full and
 * disk-full survival, exclusive ownership, close-on-exec descriptors, and
 * all-or-nothing batches when the writer is SIGKILLed mid-batch or mid-commit.
 */
#include "gg_error.h"
#include "gg_log.h"
#include "gg_test.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void s_rmtree(const char *dir)
{
    nftw(dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh temp dir into buf (at least 64 bytes). */
static int s_tmpdir(char *buf, size_t size)
{
    snprintf(buf, size, "/tmp/gg-store-XXXXXX");
    return mkdtemp(buf) ? 0 : -1;
}

static int s_put_str(store_t *s, store_db_t db, const char *k, const char *v)
{
    return store_put(s, db, k, strlen(k), v, strlen(v));
}

/* 1 when db holds key with exactly the string value v. */
static int s_has(store_t *s, store_db_t db, const char *k, const char *v)
{
    void *got = NULL;
    size_t len = 0;
    int ok = store_get(s, db, k, strlen(k), &got, &len) == 0 && len == strlen(v) &&
             memcmp(got, v, len) == 0;
    free(got);
    return ok;
}

/* Captures what the process writes to stderr between start and stop. */
typedef struct {
    int saved;
    FILE *file;
} s_capture_t;

static int s_capture_start(s_capture_t *c)
{
    fflush(stderr);
    c->file = tmpfile();
    c->saved = dup(STDERR_FILENO);
    if (!c->file || c->saved < 0 || dup2(fileno(c->file), STDERR_FILENO) < 0)
        return -1;
    return 0;
}

/* Restores stderr and returns the captured text (malloc'd) and echoes it. */
static char *s_capture_stop(s_capture_t *c)
{
    char *text = NULL;
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    long n = ftell(c->file);
    if (n >= 0 && (text = calloc(1, (size_t) n + 1)) != NULL) {
        rewind(c->file);
        size_t got = fread(text, 1, (size_t) n, c->file);
        text[got] = '\0';
        fputs(text, stderr);
    }
    fclose(c->file);
    return text;
}

/* Raw LMDB access to build stores as other builds would have left them. */
static MDB_env *s_raw_open(const char *data_dir)
{
    char path[256];
    MDB_env *env = NULL;
    snprintf(path, sizeof path, "%s/store", data_dir);
    mkdir(path, 0700);
    if (mdb_env_create(&env) != 0)
        return NULL;
    if (mdb_env_set_maxdbs(env, 16) != 0 || mdb_env_set_mapsize(env, 1 << 22) != 0 ||
        mdb_env_open(env, path, 0, 0600) != 0) {
        mdb_env_close(env);
        return NULL;
    }
    return env;
}

static int s_raw_put(MDB_env *env, const char *db, const char *k, const void *v, size_t vlen)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val key = {strlen(k), (void *) k}, val = {vlen, (void *) v};
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, db, MDB_CREATE, &dbi);
    if (!rc)
        rc = mdb_put(txn, dbi, &key, &val, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Reads a value: 0 and *len/buf filled, or an LMDB error (MDB_NOTFOUND when
 * the key or the database is missing). */
static int s_raw_get(MDB_env *env, const char *db, const char *k, void *buf, size_t *len)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val key = {strlen(k), (void *) k}, val;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, db, 0, &dbi);
    if (!rc)
        rc = mdb_get(txn, dbi, &key, &val);
    if (!rc) {
        size_t n = val.mv_size < *len ? val.mv_size : *len;
        memcpy(buf, val.mv_data, n);
        *len = val.mv_size;
    }
    mdb_txn_abort(txn);
    return rc;
}

/* ---- tests ---- */

static void test_db_names(void)
{
    for (int i = 0; i < STORE_DB_COUNT; i++) {
        REQUIRE(store_db_name((store_db_t) i) != NULL);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(store_db_name((store_db_t) i), store_db_name((store_db_t) j)) != 0);
    }
    CHECK_STR(store_db_name(STORE_DB_META), "meta");
    CHECK_STR(store_db_name(STORE_DB_KV), "kv");
    CHECK(store_db_name(STORE_DB_COUNT) == NULL);
    CHECK(store_db_name((store_db_t) -1) == NULL);
}

static void test_open_persist(void)
{
    char tmp[64], dir[128], path[160];
    struct stat st;
    store_t *s = NULL, *s2 = NULL;
    store_stats_t stats;
    REQUIRE(s_tmpdir(tmp, sizeof tmp) == 0);
    snprintf(dir, sizeof dir, "%s/a/b/data", tmp); /* missing parents are created */

    CHECK_EQ_INT(store_open(NULL, 0, &s), GG_EINVAL);
    CHECK_EQ_INT(store_open("", 0, &s), GG_EINVAL);
    CHECK_EQ_INT(store_open(dir, 4096, &s), GG_EINVAL); /* under the minimum map */
    CHECK(s == NULL);

    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(stat(dir, &st), 0);
    CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK_STR(store_path(s), path);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK((st.st_mode & 0777) == 0700);
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    store_stats(s, &stats);
    CHECK_EQ_INT(stats.map_size, STORE_DEFAULT_MAP_SIZE);
    CHECK(stats.used_bytes > 0 && stats.used_bytes < stats.map_size);

    /* A second open of the same store, here or by another process, is refused. */
    CHECK_EQ_INT(store_open(dir, 0, &s2), GG_EBUSY);
    CHECK(s2 == NULL);

    CHECK_EQ_INT(s_put_str(s, STORE_DB_TARGETS, "t/1", "one"), 0);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_PLANS, "t/1", "plan-one"), 0); /* databases are separate */
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, "empty", 5, NULL, 0), 0);
    store_destroy(&s);
    CHECK(s == NULL);
    store_destroy(&s); /* NULL-safe */

    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK(s_has(s, STORE_DB_TARGETS, "t/1", "one"));
    CHECK(s_has(s, STORE_DB_PLANS, "t/1", "plan-one"));
    CHECK(s_has(s, STORE_DB_KV, "empty", ""));
    CHECK(!s_has(s, STORE_DB_LEASES, "t/1", "one"));
    void *v = NULL;
    size_t vlen = 99;
    CHECK_EQ_INT(store_get(s, STORE_DB_TARGETS, "nope", 4, &v, &vlen), GG_ENOTFOUND);
    CHECK(v == NULL && vlen == 0);
    CHECK_EQ_INT(store_del(s, STORE_DB_TARGETS, "t/1", 3), 0);
    CHECK_EQ_INT(store_del(s, STORE_DB_TARGETS, "t/1", 3), 0); /* absent: still 0 */
    CHECK(!s_has(s, STORE_DB_TARGETS, "t/1", "one"));
out:
    store_destroy(&s);
    s_rmtree(tmp);
}

static void test_group_commit(void)
{
    char dir[64], key[32], val[64];
    store_t *s = NULL;
    store_batch_t *b = NULL;
    store_stats_t before, after;
    size_t n = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    store_stats(s, &before);
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    if (!b)
        goto out;
    for (int i = 0; i < 10000; i++) {
        int kl = snprintf(key, sizeof key, "target/%05d", i);
        int vl = snprintf(val, sizeof val, "state=%d", i * 7);
        if (store_batch_put(b, STORE_DB_TARGETS, key, (size_t) kl, val, (size_t) vl) != 0) {
            CHECK(!"batch put failed");
            break;
        }
    }
    CHECK_EQ_INT(store_batch_count(b), 10000);
    CHECK_EQ_INT(store_batch_commit(&b), 0);
    CHECK(b == NULL);
    store_stats(s, &after);
    CHECK_EQ_INT(after.commits - before.commits, 1);
    CHECK_EQ_INT(after.changes - before.changes, 10000);
    CHECK(after.used_bytes > before.used_bytes);
    CHECK_EQ_INT(store_count(s, STORE_DB_TARGETS, &n), 0);
    CHECK_EQ_INT(n, 10000);
    CHECK(s_has(s, STORE_DB_TARGETS, "target/00000", "state=0"));
    CHECK(s_has(s, STORE_DB_TARGETS, "target/09999", "state=69993"));

    /* An empty batch commits nothing. */
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    CHECK_EQ_INT(store_batch_commit(&b), 0);
    store_stats(s, &before);
    CHECK_EQ_INT(before.commits, after.commits);
    CHECK_EQ_INT(store_batch_commit(&b), GG_EINVAL); /* already consumed */
out:
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_abort_and_busy(void)
{
    char dir[64];
    store_t *s = NULL;
    store_batch_t *b = NULL, *b2 = NULL;
    store_stats_t before, after;
    size_t n = 99;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(s_put_str(s, STORE_DB_LEASES, "kept", "1"), 0);
    store_stats(s, &before);
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    if (!b)
        goto out;
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_LEASES, "x", 1, "1", 1), 0);
    CHECK_EQ_INT(store_batch_del(b, STORE_DB_LEASES, "kept", 4), 0);
    CHECK_EQ_INT(store_batch_count(b), 2);

    /* One write at a time: a second batch or single write is refused. */
    CHECK_EQ_INT(store_batch_begin(s, &b2), GG_EBUSY);
    CHECK(b2 == NULL);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_LEASES, "y", "1"), GG_EBUSY);
    CHECK_EQ_INT(store_del(s, STORE_DB_LEASES, "kept", 4), GG_EBUSY);
    CHECK_EQ_INT(store_check_writable(s), GG_EBUSY);

    store_batch_abort(&b);
    CHECK(b == NULL);
    store_batch_abort(&b); /* NULL-safe */
    store_stats(s, &after);
    CHECK_EQ_INT(after.commits, before.commits);
    CHECK(!s_has(s, STORE_DB_LEASES, "x", "1"));
    CHECK(s_has(s, STORE_DB_LEASES, "kept", "1"));
    CHECK_EQ_INT(store_count(s, STORE_DB_LEASES, &n), 0);
    CHECK_EQ_INT(n, 1);

    /* The slot is free again; closing with an open batch discards it. */
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_LEASES, "lost", 4, "1", 1), 0);
    b = NULL; /* store_destroy aborts and frees it */
    store_destroy(&s);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK(!s_has(s, STORE_DB_LEASES, "lost", "1"));
    CHECK(s_has(s, STORE_DB_LEASES, "kept", "1"));
out:
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_read_your_writes(void)
{
    char dir[64];
    store_t *s = NULL;
    store_batch_t *b = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(s_put_str(s, STORE_DB_TARGETS, "old", "committed"), 0);
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    if (!b)
        goto out;
    CHECK_EQ_INT(store_batch_get(b, STORE_DB_TARGETS, "new", 3, &v, &vlen), GG_ENOTFOUND);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_TARGETS, "new", 3, "v1", 2), 0);
    CHECK_EQ_INT(store_batch_get(b, STORE_DB_TARGETS, "new", 3, &v, &vlen), 0);
    CHECK(vlen == 2 && memcmp(v, "v1", 2) == 0);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_TARGETS, "new", 3, "v2-longer", 9), 0);
    CHECK_EQ_INT(store_batch_get(b, STORE_DB_TARGETS, "new", 3, &v, &vlen), 0);
    CHECK(vlen == 9 && memcmp(v, "v2-longer", 9) == 0);
    CHECK_EQ_INT(store_batch_get(b, STORE_DB_TARGETS, "old", 3, &v, &vlen), 0);
    CHECK(vlen == 9 && memcmp(v, "committed", 9) == 0);
    CHECK_EQ_INT(store_batch_del(b, STORE_DB_TARGETS, "old", 3), 0);
    CHECK_EQ_INT(store_batch_get(b, STORE_DB_TARGETS, "old", 3, &v, &vlen), GG_ENOTFOUND);
    CHECK_EQ_INT(store_batch_del(b, STORE_DB_TARGETS, "absent", 6), 0);
    CHECK_EQ_INT(store_batch_count(b), 3); /* two puts, one delete that removed a key */

    /* Readers outside the batch see committed data only. */
    CHECK(!s_has(s, STORE_DB_TARGETS, "new", "v1"));
    CHECK(!s_has(s, STORE_DB_TARGETS, "new", "v2-longer"));
    CHECK(s_has(s, STORE_DB_TARGETS, "old", "committed"));

    CHECK_EQ_INT(store_batch_commit(&b), 0);
    CHECK(s_has(s, STORE_DB_TARGETS, "new", "v2-longer"));
    CHECK(!s_has(s, STORE_DB_TARGETS, "old", "committed"));
out:
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

typedef struct {
    char keys[16][32];
    int n;
    int stop_after; /* 0: never */
    int fail_with;  /* returned at stop_after when non-zero */
} s_seen_t;

static int s_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_seen_t *seen = arg;
    (void) val;
    (void) vlen;
    if (seen->n < 16 && klen < 32) {
        memcpy(seen->keys[seen->n], key, klen);
        seen->keys[seen->n][klen] = '\0';
    }
    seen->n++;
    if (seen->stop_after && seen->n == seen->stop_after)
        return seen->fail_with ? seen->fail_with : 1;
    return 0;
}

static void test_scan(void)
{
    char dir[64];
    store_t *s = NULL;
    store_batch_t *b = NULL;
    s_seen_t seen;
    const char *keys[] = {"a/2", "b/1", "a", "a/10", "a/1", "a0", "a/", "`z"};
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    if (!b)
        goto out;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK_EQ_INT(store_batch_put(b, STORE_DB_PLANS, keys[i], strlen(keys[i]), "v", 1), 0);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_KV, "a/other-db", 10, "v", 1), 0);
    CHECK_EQ_INT(store_batch_commit(&b), 0);

    memset(&seen, 0, sizeof seen);
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, "a/", 2, s_visit, &seen), 0);
    CHECK_EQ_INT(seen.n, 4);
    CHECK_STR(seen.keys[0], "a/");
    CHECK_STR(seen.keys[1], "a/1");
    CHECK_STR(seen.keys[2], "a/10");
    CHECK_STR(seen.keys[3], "a/2");

    memset(&seen, 0, sizeof seen);
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, NULL, 0, s_visit, &seen), 0);
    CHECK_EQ_INT(seen.n, 8);
    CHECK_STR(seen.keys[0], "`z");
    CHECK_STR(seen.keys[1], "a");
    CHECK_STR(seen.keys[6], "a0");
    CHECK_STR(seen.keys[7], "b/1");

    memset(&seen, 0, sizeof seen);
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, "zz", 2, s_visit, &seen), 0);
    CHECK_EQ_INT(seen.n, 0);
    memset(&seen, 0, sizeof seen);
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, "a/1", 3, s_visit, &seen), 0);
    CHECK_EQ_INT(seen.n, 2);

    /* Early stop, and a visitor's error comes back. */
    memset(&seen, 0, sizeof seen);
    seen.stop_after = 2;
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, "a", 1, s_visit, &seen), 0);
    CHECK_EQ_INT(seen.n, 2);
    memset(&seen, 0, sizeof seen);
    seen.stop_after = 3;
    seen.fail_with = GG_EMALFORMED;
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, NULL, 0, s_visit, &seen), GG_EMALFORMED);
    CHECK_EQ_INT(seen.n, 3);

    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, NULL, 3, s_visit, &seen), GG_EINVAL);
    CHECK_EQ_INT(store_scan(s, STORE_DB_PLANS, NULL, 0, NULL, &seen), GG_EINVAL);
    CHECK_EQ_INT(store_scan(s, STORE_DB_COUNT, NULL, 0, s_visit, &seen), GG_EINVAL);
out:
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_limits(void)
{
    char dir[64];
    char key[STORE_MAX_KEY + 1];
    store_t *s = NULL;
    store_batch_t *b = NULL;
    char *big = NULL;
    size_t n = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    memset(key, 'k', sizeof key);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, key, STORE_MAX_KEY, "v", 1), 0);
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, key, STORE_MAX_KEY + 1, "v", 1), GG_ETOOBIG);
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, key, 0, "v", 1), GG_EINVAL);
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, NULL, 1, "v", 1), GG_EINVAL);
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, "k", 1, NULL, 1), GG_EINVAL);
    CHECK_EQ_INT(store_put(s, STORE_DB_COUNT, "k", 1, "v", 1), GG_EINVAL);
    CHECK_EQ_INT(store_put(s, (store_db_t) -1, "k", 1, "v", 1), GG_EINVAL);
    void *v = NULL;
    size_t vlen = 0;
    CHECK_EQ_INT(store_get(s, STORE_DB_KV, key, STORE_MAX_KEY + 1, &v, &vlen), GG_ETOOBIG);
    CHECK_EQ_INT(store_del(s, STORE_DB_KV, key, STORE_MAX_KEY + 1), GG_ETOOBIG);
    CHECK_EQ_INT(store_scan(s, STORE_DB_KV, key, STORE_MAX_KEY + 1, s_visit, NULL), GG_ETOOBIG);

    /* Refused arguments leave a batch usable. */
    big = calloc(1, STORE_MAX_VALUE + 1);
    REQUIRE(big != NULL);
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    if (!b)
        goto out;
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_KV, "big", 3, big, STORE_MAX_VALUE + 1), GG_ETOOBIG);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_KV, key, STORE_MAX_KEY + 1, "v", 1), GG_ETOOBIG);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_KV, "ok", 2, big, 100000), 0);
    CHECK_EQ_INT(store_batch_count(b), 1);
    CHECK_EQ_INT(store_batch_commit(&b), 0);
    CHECK_EQ_INT(store_count(s, STORE_DB_KV, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(store_get(s, STORE_DB_KV, "ok", 2, &v, &vlen), 0);
    CHECK_EQ_INT(vlen, 100000);
    free(v);
out:
    free(big);
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_schema_fresh_stamp(void)
{
    char dir[64];
    unsigned char buf[8];
    size_t len = sizeof buf;
    store_t *s = NULL;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    store_destroy(&s);
    MDB_env *env = s_raw_open(dir);
    REQUIRE(env != NULL);
    CHECK_EQ_INT(s_raw_get(env, "meta", "schema", buf, &len), 0);
    CHECK_EQ_INT(len, 4);
    CHECK(buf[0] == 0 && buf[1] == 0 && buf[2] == 0 && buf[3] == STORE_SCHEMA_VERSION);
    len = sizeof buf;
    CHECK_EQ_INT(s_raw_get(env, "targets", "nothing", buf, &len), MDB_NOTFOUND);
    mdb_env_close(env);
    s_rmtree(dir);
}

static void test_schema_newer_refused(void)
{
    char dir[64];
    unsigned char buf[8], v999[4] = {0, 0, 0x03, 0xe7};
    size_t len = sizeof buf;
    store_t *s = NULL;
    s_capture_t cap;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    MDB_env *env = s_raw_open(dir);
    REQUIRE(env != NULL);
    CHECK_EQ_INT(s_raw_put(env, "meta", "schema", v999, 4), 0);
    CHECK_EQ_INT(s_raw_put(env, "future", "k", "v", 1), 0);
    mdb_env_close(env);

    REQUIRE(s_capture_start(&cap) == 0);
    int rc = store_open(dir, 0, &s);
    char *log = s_capture_stop(&cap);
    CHECK_EQ_INT(rc, GG_ESCHEMA);
    CHECK(s == NULL);
    CHECK(log && strstr(log, "store schema 999 is newer than this build's 1") != NULL);
    free(log);
    store_destroy(&s);

    /* Left untouched: same schema, no database of ours created. */
    env = s_raw_open(dir);
    REQUIRE(env != NULL);
    CHECK_EQ_INT(s_raw_get(env, "meta", "schema", buf, &len), 0);
    CHECK(len == 4 && memcmp(buf, v999, 4) == 0);
    len = sizeof buf;
    CHECK_EQ_INT(s_raw_get(env, "future", "k", buf, &len), 0);
    len = sizeof buf;
    CHECK_EQ_INT(s_raw_get(env, "targets", "k", buf, &len), MDB_NOTFOUND);
    /* A malformed schema value is refused too. */
    CHECK_EQ_INT(s_raw_put(env, "meta", "schema", v999, 3), 0);
    mdb_env_close(env);
    CHECK_EQ_INT(store_open(dir, 0, &s), GG_EMALFORMED);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_schema_migrate_v0(void)
{
    char dir[64];
    unsigned char buf[8];
    size_t len = sizeof buf;
    store_t *s = NULL;
    s_capture_t cap;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    /* A version 0 store: data, but no schema key. */
    MDB_env *env = s_raw_open(dir);
    REQUIRE(env != NULL);
    CHECK_EQ_INT(s_raw_put(env, "targets", "t/1", "running", 7), 0);
    CHECK_EQ_INT(s_raw_put(env, "targets", "t/2", "done", 4), 0);
    CHECK_EQ_INT(s_raw_put(env, "members", "node-a", "alive", 5), 0);
    len = sizeof buf;
    CHECK_EQ_INT(s_raw_get(env, "meta", "schema", buf, &len), MDB_NOTFOUND);
    mdb_env_close(env);

    gg_log_set_level(GG_LOG_INFO); /* migrations are logged at info */
    REQUIRE(s_capture_start(&cap) == 0);
    int rc = store_open(dir, 0, &s);
    char *log = s_capture_stop(&cap);
    CHECK_EQ_INT(rc, 0);
    CHECK(log && strstr(log, "migrated schema 0 to 1") != NULL);
    free(log);
    if (!s)
        goto out;
    CHECK_EQ_INT(store_schema_version(s), 1);
    CHECK(s_has(s, STORE_DB_TARGETS, "t/1", "running"));
    CHECK(s_has(s, STORE_DB_TARGETS, "t/2", "done"));
    CHECK(s_has(s, STORE_DB_MEMBERS, "node-a", "alive"));
    void *v = NULL;
    size_t vlen = 0;
    CHECK_EQ_INT(store_get(s, STORE_DB_META, "schema", 6, &v, &vlen), 0);
    CHECK(vlen == 4 && v && memcmp(v, "\0\0\0\1", 4) == 0);
    free(v);
    store_destroy(&s);

    /* Once migrated, a reopen migrates nothing. */
    REQUIRE(s_capture_start(&cap) == 0);
    rc = store_open(dir, 0, &s);
    log = s_capture_stop(&cap);
    CHECK_EQ_INT(rc, 0);
    CHECK(log && strstr(log, "opened") != NULL && strstr(log, "migrated") == NULL);
    free(log);
    gg_log_set_level(GG_LOG_WARN);
    CHECK(s_has(s, STORE_DB_TARGETS, "t/1", "running"));
out:
    gg_log_set_level(GG_LOG_WARN);
    store_destroy(&s);
    s_rmtree(dir);
}

static void test_map_size_kept(void)
{
    char dir[64];
    store_t *s = NULL;
    store_stats_t st;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 4u << 20, &s), 0);
    store_stats(s, &st);
    CHECK_EQ_INT(st.map_size, 4u << 20);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "k", "v"), 0);
    store_destroy(&s);
    /* Smaller request: the existing, larger map is kept. */
    CHECK_EQ_INT(store_open(dir, 1u << 20, &s), 0);
    store_stats(s, &st);
    CHECK_EQ_INT(st.map_size, 4u << 20);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "k2", "v"), 0);
    store_destroy(&s);
    CHECK_EQ_INT(store_open(dir, 1u << 20, &s), 0);
    store_stats(s, &st);
    CHECK_EQ_INT(st.map_size, 4u << 20);
    store_destroy(&s);
    /* Larger request: the map grows, and stays grown. */
    CHECK_EQ_INT(store_open(dir, 8u << 20, &s), 0);
    store_stats(s, &st);
    CHECK_EQ_INT(st.map_size, 8u << 20);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "k3", "v"), 0);
    store_destroy(&s);
    CHECK_EQ_INT(store_open(dir, 0 /* 1 GiB */, &s), 0);
    store_stats(s, &st);
    CHECK_EQ_INT(st.map_size, STORE_DEFAULT_MAP_SIZE);
    CHECK(s_has(s, STORE_DB_KV, "k", "v") && s_has(s, STORE_DB_KV, "k3", "v"));
    store_destroy(&s);
    s_rmtree(dir);
}

/* Writes batches of `per` values of vsize bytes until one fails; returns the
 * error and the number of batches committed in *done. Keys "b%04d/%03d". */
static int s_fill(store_t *s, int per, size_t vsize, int max_batches, int *done)
{
    char key[32];
    char *val = malloc(vsize);
    int rc = val ? 0 : GG_ENOMEM;
    *done = 0;
    for (int bn = 0; bn < max_batches && rc == 0; bn++) {
        store_batch_t *b = NULL;
        rc = store_batch_begin(s, &b);
        for (int i = 0; i < per && rc == 0; i++) {
            int kl = snprintf(key, sizeof key, "b%04d/%03d", bn, i);
            memset(val, 'a' + (bn + i) % 26, vsize);
            rc = store_batch_put(b, STORE_DB_LOGS, key, (size_t) kl, val, vsize);
        }
        int crc = b ? store_batch_commit(&b) : rc;
        if (rc && crc != rc) /* a poisoned batch's commit returns its error */
            rc = GG_EINTERNAL;
        else
            rc = crc;
        if (rc == 0)
            (*done)++;
    }
    free(val);
    return rc;
}

/* 1 when every key of the first `batches` batches holds its value. */
static int s_fill_intact(store_t *s, int per, size_t vsize, int batches)
{
    char key[32];
    for (int bn = 0; bn < batches; bn++)
        for (int i = 0; i < per; i++) {
            void *v = NULL;
            size_t vlen = 0;
            int kl = snprintf(key, sizeof key, "b%04d/%03d", bn, i);
            int ok = store_get(s, STORE_DB_LOGS, key, (size_t) kl, &v, &vlen) == 0 &&
                     vlen == vsize && ((char *) v)[0] == 'a' + (bn + i) % 26 &&
                     ((char *) v)[vsize - 1] == 'a' + (bn + i) % 26;
            free(v);
            if (!ok)
                return 0;
        }
    return 1;
}

static void test_map_full(void)
{
    char dir[64];
    store_t *s = NULL;
    store_stats_t st;
    int done = 0;
    size_t n = 0;
    char *huge = NULL;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, STORE_MIN_MAP_SIZE, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "first", "kept"), 0);
    CHECK_EQ_INT(s_fill(s, 50, 1000, 200, &done), GG_EMAPFULL);
    CHECK(done > 5);
    store_stats(s, &st);
    CHECK(st.errors_map_full >= 1);
    CHECK_EQ_INT(st.errors_io, 0);
    /* Committed data intact, the failed batch gone. */
    CHECK(s_has(s, STORE_DB_KV, "first", "kept"));
    CHECK(s_fill_intact(s, 50, 1000, done));
    CHECK_EQ_INT(store_count(s, STORE_DB_LOGS, &n), 0);
    CHECK_EQ_INT(n, (size_t) done * 50);

    /* A value larger than the whole map fails the same way. */
    huge = calloc(1, 2u << 20);
    REQUIRE(huge != NULL);
    CHECK_EQ_INT(store_put(s, STORE_DB_KV, "huge", 4, huge, 2u << 20), GG_EMAPFULL);

    /* Still usable: free some room, then small writes succeed. */
    CHECK_EQ_INT(store_del(s, STORE_DB_LOGS, "b0000/000", 9), 0);
    CHECK_EQ_INT(store_del(s, STORE_DB_LOGS, "b0000/001", 9), 0);
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "after", "full"), 0);
    CHECK_EQ_INT(store_check_writable(s), 0);
    CHECK(s_has(s, STORE_DB_KV, "after", "full"));
    store_destroy(&s);

    /* And after a restart with a bigger map, writing resumes. */
    CHECK_EQ_INT(store_open(dir, 4u << 20, &s), 0);
    if (!s)
        goto out;
    CHECK(s_has(s, STORE_DB_KV, "first", "kept"));
    CHECK(s_has(s, STORE_DB_KV, "after", "full"));
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "bigger", "map"), 0);
out:
    free(huge);
    store_destroy(&s);
    s_rmtree(dir);
}

/* In a child: a file size limit makes the data file's growth fail like a full
 * disk (EFBIG). Returns 0 or the number of the failed step. */
static int s_disk_full_child(const char *dir)
{
    store_t *s = NULL;
    store_stats_t st;
    struct rlimit rl, saved;
    int done = 0, rc;
    if (store_open(dir, 64u << 20, &s) != 0)
        return 1;
    if (s_put_str(s, STORE_DB_KV, "first", "kept") != 0)
        return 2;
    store_stats(s, &st);
    signal(SIGXFSZ, SIG_IGN);
    if (getrlimit(RLIMIT_FSIZE, &saved) != 0)
        return 3;
    rl = saved;
    rl.rlim_cur = st.used_bytes + (256u << 10);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 3;
    rc = s_fill(s, 25, 1000, 100, &done);
    if (rc != GG_ENOSPC)
        return 4;
    store_stats(s, &st);
    if (st.errors_no_space < 1 || done < 1)
        return 5;
    if (!s_has(s, STORE_DB_KV, "first", "kept") || !s_fill_intact(s, 25, 1000, done))
        return 6;
    if (store_del(s, STORE_DB_KV, "first", 5) != 0 ||
        s_put_str(s, STORE_DB_KV, "after", "full") != 0 || !s_has(s, STORE_DB_KV, "after", "full"))
        return 7;
    store_destroy(&s);
    if (setrlimit(RLIMIT_FSIZE, &saved) != 0)
        return 8;
    if (store_open(dir, 64u << 20, &s) != 0)
        return 9;
    if (!s_fill_intact(s, 25, 1000, done) || !s_has(s, STORE_DB_KV, "after", "full") ||
        s_has(s, STORE_DB_KV, "first", "kept"))
        return 10;
    store_destroy(&s);
    return 0;
}

static void test_disk_full(void)
{
    char dir[64];
    int status = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(s_disk_full_child(dir));
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    s_rmtree(dir);
}

static void test_check_writable(void)
{
    char dir[64];
    store_t *s = NULL;
    store_stats_t before, after;
    void *v = NULL;
    size_t vlen = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    store_stats(s, &before);
    CHECK_EQ_INT(store_check_writable(s), 0);
    store_stats(s, &after);
    CHECK_EQ_INT(after.commits - before.commits, 1);
    CHECK_EQ_INT(store_get(s, STORE_DB_META, "heartbeat", 9, &v, &vlen), 0);
    CHECK_EQ_INT(vlen, 8);
    free(v);
out:
    store_destroy(&s);
    s_rmtree(dir);
}

/* Every descriptor the store holds is close-on-exec. */
static void test_cloexec(void)
{
    char dir[64], fdpath[64], target[512];
    store_t *s = NULL;
    int seen = 0;
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    DIR *d = opendir("/proc/self/fd");
    REQUIRE(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd == dirfd(d))
            continue;
        snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(fdpath, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, store_path(s), strlen(store_path(s))) != 0)
            continue;
        seen++;
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || !(flags & FD_CLOEXEC)) {
            fprintf(stderr, "fd %d (%s) is inherited by children\n", fd, target);
            CHECK(!"store descriptor without FD_CLOEXEC");
        }
    }
    closedir(d);
    CHECK(seen >= 3); /* lock file, lock.mdb, data.mdb */
out:
    store_destroy(&s);
    s_rmtree(dir);
}

/* Readers run beside an open batch, from other threads and nested in a scan. */
typedef struct {
    store_t *s;
    int got_committed;
    int put_rc;
} s_reader_t;

static void *s_reader_thread(void *arg)
{
    s_reader_t *r = arg;
    r->got_committed = s_has(r->s, STORE_DB_KV, "a", "1");
    r->put_rc = s_put_str(r->s, STORE_DB_KV, "b", "1");
    return NULL;
}

static int s_nested_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    store_t *s = arg;
    (void) key;
    (void) klen;
    (void) val;
    (void) vlen;
    /* A second read transaction in this thread: needs MDB_NOTLS. */
    return s_has(s, STORE_DB_KV, "a", "2") ? 0 : GG_EINTERNAL;
}

static void test_concurrent_reads(void)
{
    char dir[64];
    store_t *s = NULL;
    store_batch_t *b = NULL;
    pthread_t th;
    s_reader_t r = {0};
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "a", "1"), 0);
    CHECK_EQ_INT(store_batch_begin(s, &b), 0);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_KV, "a", 1, "2", 1), 0);
    r.s = s;
    REQUIRE(pthread_create(&th, NULL, s_reader_thread, &r) == 0);
    pthread_join(th, NULL);
    CHECK(r.got_committed);
    CHECK_EQ_INT(r.put_rc, GG_EBUSY);
    CHECK_EQ_INT(store_batch_commit(&b), 0);
    CHECK_EQ_INT(store_scan(s, STORE_DB_KV, NULL, 0, s_nested_visit, s), 0);
out:
    store_batch_abort(&b);
    store_destroy(&s);
    s_rmtree(dir);
}

/* ---- crash consistency ---- */

#define S_CRASH_N 5000

/* Child: one batch of S_CRASH_N puts for this run. Writes 'k' on the pipe at
 * put number kill_at (kill_at == S_CRASH_N: just before commit), and commits
 * only in that case; then waits to be killed. */
static int s_crash_child(const char *dir, int run, int kill_at, int pipe_fd)
{
    store_t *s = NULL;
    store_batch_t *b = NULL;
    char key[32], val[96];
    if (store_open(dir, 0, &s) != 0 || store_batch_begin(s, &b) != 0)
        return 2;
    memset(val, 'v', sizeof val);
    for (int i = 0; i < S_CRASH_N; i++) {
        if (i == kill_at && write(pipe_fd, "k", 1) != 1)
            return 3;
        int kl = snprintf(key, sizeof key, "run%02d/%05d", run, i);
        if (store_batch_put(b, STORE_DB_TARGETS, key, (size_t) kl, val, sizeof val) != 0)
            return 4;
    }
    if (kill_at == S_CRASH_N) {
        if (write(pipe_fd, "k", 1) != 1)
            return 3;
        (void) !store_batch_commit(&b);
    }
    for (;;)
        pause();
}

static int s_count_prefix(store_t *s, const char *prefix, size_t *n)
{
    s_seen_t seen;
    memset(&seen, 0, sizeof seen);
    int rc = store_scan(s, STORE_DB_TARGETS, prefix, strlen(prefix), s_visit, &seen);
    *n = (size_t) seen.n;
    return rc;
}

static void test_crash_consistency(void)
{
    char dir[64], prefix[16];
    store_t *s = NULL;
    int all = 0, none = 0;
    unsigned seed = (unsigned) time(NULL) ^ (unsigned) getpid();
    srand(seed);
    REQUIRE(s_tmpdir(dir, sizeof dir) == 0);
    CHECK_EQ_INT(store_open(dir, 0, &s), 0);
    if (!s)
        goto out;
    CHECK_EQ_INT(s_put_str(s, STORE_DB_KV, "base", "line"), 0);
    store_destroy(&s);

    for (int run = 0; run < 20; run++) {
        int at_commit = run >= 8;
        int kill_at = at_commit ? S_CRASH_N : rand() % S_CRASH_N;
        /* Kill points spread over the commit (~3 ms here) and a little past it. */
        long delay_us = at_commit && run % 3 != 0 ? rand() % 8000 : 0;
        int pfd[2];
        char c = 0;
        int status = 0;
        size_t n = 0, total = 0;
        REQUIRE(pipe(pfd) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            _exit(s_crash_child(dir, run, kill_at, pfd[1]));
        }
        close(pfd[1]);
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int ready = poll(&p, 1, 60000) == 1 && read(pfd[0], &c, 1) == 1 && c == 'k';
        if (ready && delay_us > 0) {
            struct timespec ts = {0, delay_us * 1000};
            nanosleep(&ts, NULL); /* chooses the kill point, waits for nothing */
        }
        kill(pid, SIGKILL);
        CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
        close(pfd[0]);
        CHECK(ready);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        CHECK_EQ_INT(store_open(dir, 0, &s), 0); /* the dead writer's lock is gone */
        if (!s)
            break;
        snprintf(prefix, sizeof prefix, "run%02d/", run);
        CHECK_EQ_INT(s_count_prefix(s, prefix, &n), 0);
        if (n != 0 && n != S_CRASH_N)
            fprintf(stderr, "run %d (seed %u, kill at %d, +%ld us): %zu of %d keys visible\n", run,
                    seed, kill_at, delay_us, n, S_CRASH_N);
        CHECK(n == 0 || n == S_CRASH_N);
        if (!at_commit)
            CHECK_EQ_INT(n, 0);
        all += n == S_CRASH_N;
        none += n == 0;
        CHECK(s_has(s, STORE_DB_KV, "base", "line"));
        CHECK_EQ_INT(store_count(s, STORE_DB_TARGETS, &total), 0);
        CHECK_EQ_INT(total, (size_t) all * S_CRASH_N);
        CHECK_EQ_INT(store_check_writable(s), 0);
        store_destroy(&s);
    }
    fprintf(stderr, "crash runs (seed %u): %d committed, %d discarded\n", seed, all, none);
out:
    store_destroy(&s);
    s_rmtree(dir);
}

int main(void)
{
    gg_log_set_level(GG_LOG_WARN);
    GG_RUN(test_db_names);
    GG_RUN(test_open_persist);
    GG_RUN(test_group_commit);
    GG_RUN(test_abort_and_busy);
    GG_RUN(test_read_your_writes);
    GG_RUN(test_scan);
    GG_RUN(test_limits);
    GG_RUN(test_schema_fresh_stamp);
    GG_RUN(test_schema_newer_refused);
    GG_RUN(test_schema_migrate_v0);
    GG_RUN(test_map_size_kept);
    GG_RUN(test_map_full);
    GG_RUN(test_disk_full);
    GG_RUN(test_check_writable);
    GG_RUN(test_cloexec);
    GG_RUN(test_concurrent_reads);
    GG_RUN(test_crash_consistency);
    GG_DONE();
}
