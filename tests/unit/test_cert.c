/*
 * test_cert.c: operator and node keys, certificates and the trust store.
 * Covers the file formats (round trips, modes, exclusive creation, damaged
 * files), signatures, every way a certificate must fail verification, the
 * msgpack wire form and loading a directory of operator keys.
 */
#include "cert.h"
#include "gg_error.h"
#include "gg_test.h"

#include <czmq.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_tmp[256];

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static int s_setup(void)
{
    snprintf(s_tmp, sizeof s_tmp, "/tmp/gg-test-cert-XXXXXX");
    return mkdtemp(s_tmp) ? 0 : -1;
}

static void s_teardown(void)
{
    nftw(s_tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Path under the test directory. Lifetime: eight calls (rotating buffers). */
static const char *s_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *buf = bufs[next++ % 8];
    snprintf(buf, sizeof bufs[0], "%s/%s", s_tmp, name);
    return buf;
}

static int s_write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    close(fd);
    chmod(path, mode);
    return n == (ssize_t) len ? 0 : -1;
}

static char *s_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 8192);
    if (buf)
        fread(buf, 1, 8191, f);
    fclose(f);
    return buf;
}

static mode_t s_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (mode_t) -1;
    return st.st_mode & 07777;
}

static void s_z85(const uint8_t *data, size_t len, char *out)
{
    zmq_z85_encode(out, data, len);
}

/* Issues a certificate for a fresh node key. */
static int s_make_cert(const char *name, const operator_key_t *op, uint64_t now, cert_t *cert,
                       node_key_t *node)
{
    node_key_t local;
    node_key_t *key = node ? node : &local;
    int rc = node_key_generate(name, key);
    if (rc == 0)
        rc = cert_issue(key, op, now, 30, cert);
    if (!node)
        node_key_wipe(&local);
    return rc;
}

static void test_names(void)
{
    CHECK_EQ_INT(cert_check_name("alice"), 0);
    CHECK_EQ_INT(cert_check_name("n1.prod-eu_2"), 0);
    CHECK_EQ_INT(cert_check_name("9lives"), 0);
    CHECK_EQ_INT(cert_check_name("a"), 0);
    char longest[CERT_NAME_MAX + 2];
    memset(longest, 'x', CERT_NAME_MAX);
    longest[CERT_NAME_MAX] = '\0';
    CHECK_EQ_INT(cert_check_name(longest), 0);
    longest[CERT_NAME_MAX] = 'x';
    longest[CERT_NAME_MAX + 1] = '\0';
    CHECK_EQ_INT(cert_check_name(longest), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name(""), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name(NULL), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("-a"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name(".a"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("_a"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("a b"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("a/b"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("a\"b"), GG_EINVAL);
    CHECK_EQ_INT(cert_check_name("caf\xc3\xa9"), GG_EINVAL);
}

static void test_operator_round_trip(void)
{
    operator_key_t key, loaded, pub;
    REQUIRE(operator_key_generate("alice", &key) == 0);
    CHECK(key.has_secret);
    CHECK_STR(key.name, "alice");
    CHECK_EQ_INT(operator_key_generate("bad name", &loaded), GG_EINVAL);

    char dir[512];
    snprintf(dir, sizeof dir, "%s", s_path("ops/nested"));
    REQUIRE(operator_key_save(&key, dir) == 0);
    CHECK_EQ_INT(s_mode(dir), 0700);
    const char *key_path = s_path("ops/nested/alice.key");
    const char *pub_path = s_path("ops/nested/alice.pub");
    CHECK_EQ_INT(s_mode(key_path), 0600);
    mode_t mask = umask(022);
    umask(mask);
    CHECK_EQ_INT(s_mode(pub_path), 0644 & ~mask);

    REQUIRE(operator_key_load(key_path, &loaded) == 0);
    CHECK(loaded.has_secret);
    CHECK_STR(loaded.name, "alice");
    CHECK(memcmp(loaded.public_key, key.public_key, CERT_PUBLIC_LEN) == 0);
    CHECK(memcmp(loaded.secret_key, key.secret_key, OPERATOR_SECRET_LEN) == 0);

    REQUIRE(operator_key_load(pub_path, &pub) == 0);
    CHECK(!pub.has_secret);
    CHECK_STR(pub.name, "alice");
    CHECK(memcmp(pub.public_key, key.public_key, CERT_PUBLIC_LEN) == 0);
    uint8_t zero[OPERATOR_SECRET_LEN] = {0};
    CHECK(memcmp(pub.secret_key, zero, sizeof zero) == 0);
    char *pub_text = s_read_file(pub_path);
    CHECK(pub_text && !strstr(pub_text, "secret-key"));
    free(pub_text);

    /* Refuses to overwrite and leaves the existing files untouched. */
    char *before = s_read_file(key_path);
    operator_key_t other;
    REQUIRE(operator_key_generate("alice", &other) == 0);
    CHECK_EQ_INT(operator_key_save(&other, dir), GG_EEXIST);
    char *after = s_read_file(key_path);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    /* Only the .pub present is refused as well, and no .key is left. */
    REQUIRE(unlink(key_path) == 0);
    CHECK_EQ_INT(operator_key_save(&other, dir), GG_EEXIST);
    CHECK_EQ_INT(access(key_path, F_OK), -1);

    /* A public-only key cannot be saved as a secret file. */
    CHECK_EQ_INT(operator_key_save(&pub, s_path("ops2")), GG_EINVAL);

    operator_key_wipe(&key);
    CHECK(memcmp(key.secret_key, zero, sizeof zero) == 0);
    operator_key_wipe(&loaded);
    operator_key_wipe(&other);
    operator_key_wipe(&pub);
    operator_key_wipe(NULL);
}

static void test_node_round_trip(void)
{
    node_key_t key, loaded;
    REQUIRE(node_key_generate("node-1", &key) == 0);
    const char *path = s_path("nodes/deeper/node-1.key");
    REQUIRE(node_key_save(&key, path) == 0);
    CHECK_EQ_INT(s_mode(path), 0600);
    CHECK_EQ_INT(s_mode(s_path("nodes/deeper")), 0700);
    REQUIRE(node_key_load(path, &loaded) == 0);
    CHECK_STR(loaded.name, "node-1");
    CHECK(memcmp(loaded.public_key, key.public_key, CERT_PUBLIC_LEN) == 0);
    CHECK(memcmp(loaded.secret_key, key.secret_key, NODE_SECRET_LEN) == 0);

    /* Exclusive creation: a second save fails and keeps the first key. */
    node_key_t other;
    REQUIRE(node_key_generate("node-1", &other) == 0);
    CHECK_EQ_INT(node_key_save(&other, path), GG_EEXIST);
    node_key_t again;
    REQUIRE(node_key_load(path, &again) == 0);
    CHECK(memcmp(again.public_key, key.public_key, CERT_PUBLIC_LEN) == 0);

    /* The same key as CZMQ sees it. */
    zcert_t *zc = zcert_new_from(loaded.public_key, loaded.secret_key);
    REQUIRE(zc);
    char z85[41];
    s_z85(loaded.public_key, CERT_PUBLIC_LEN, z85);
    CHECK_STR(zcert_public_txt(zc), z85);
    char *text = s_read_file(path);
    CHECK(text && strstr(text, z85));
    free(text);
    zcert_destroy(&zc);

    CHECK_EQ_INT(node_key_load(s_path("nodes/missing.key"), &again), GG_ENOTFOUND);
    node_key_wipe(&key);
    node_key_wipe(&loaded);
    node_key_wipe(&other);
    node_key_wipe(&again);
    node_key_wipe(NULL);
}

/* A node key works as a CurveZMQ key pair: a real handshake over TCP. */
static void test_node_key_is_curve(void)
{
    node_key_t server_key, client_key;
    REQUIRE(node_key_generate("server", &server_key) == 0);
    REQUIRE(node_key_generate("client", &client_key) == 0);
    zsock_t *server = zsock_new(ZMQ_PULL);
    zsock_t *client = zsock_new(ZMQ_PUSH);
    REQUIRE(server && client);
    zsock_set_curve_server(server, 1);
    zsock_set_curve_secretkey_bin(server, server_key.secret_key);
    zsock_set_curve_publickey_bin(server, server_key.public_key);
    int port = zsock_bind(server, "tcp://127.0.0.1:*");
    CHECK(port > 0);
    zsock_set_curve_serverkey_bin(client, server_key.public_key);
    zsock_set_curve_secretkey_bin(client, client_key.secret_key);
    zsock_set_curve_publickey_bin(client, client_key.public_key);
    zsock_set_sndtimeo(client, 5000);
    zsock_set_rcvtimeo(server, 5000); /* the deadline for the handshake */
    CHECK_EQ_INT(zsock_connect(client, "tcp://127.0.0.1:%d", port), 0);
    CHECK_EQ_INT(zstr_send(client, "hello"), 0);
    char *msg = zstr_recv(server);
    CHECK_STR(msg, "hello");
    zstr_free(&msg);
    zsock_destroy(&client);
    zsock_destroy(&server);
    node_key_wipe(&server_key);
    node_key_wipe(&client_key);
}

static void test_mismatched_keys(void)
{
    operator_key_t a, b, out;
    REQUIRE(operator_key_generate("alice", &a) == 0);
    REQUIRE(operator_key_generate("bob", &b) == 0);
    char pub[41], sec[81], text[512];
    s_z85(a.public_key, 32, pub);
    s_z85(b.secret_key, 64, sec);
    snprintf(text, sizeof text,
             "operator\n    name = \"alice\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             pub, sec);
    REQUIRE(s_write_file(s_path("mix.key"), text, 0600) == 0);
    CHECK_EQ_INT(operator_key_load(s_path("mix.key"), &out), GG_ECRYPTO);
    CHECK(!out.has_secret);

    /* Same public tail, a different seed: still refused. */
    uint8_t forged[64];
    memcpy(forged, b.secret_key, 32);
    memcpy(forged + 32, a.public_key, 32);
    s_z85(forged, 64, sec);
    snprintf(text, sizeof text,
             "operator\n    name = \"alice\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             pub, sec);
    REQUIRE(s_write_file(s_path("forged.key"), text, 0600) == 0);
    CHECK_EQ_INT(operator_key_load(s_path("forged.key"), &out), GG_ECRYPTO);

    /* Right seed, wrong public tail inside the secret key: refused too. */
    memcpy(forged, a.secret_key, 32);
    memcpy(forged + 32, b.public_key, 32);
    s_z85(forged, 64, sec);
    snprintf(text, sizeof text,
             "operator\n    name = \"alice\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             pub, sec);
    REQUIRE(s_write_file(s_path("tail.key"), text, 0600) == 0);
    CHECK_EQ_INT(operator_key_load(s_path("tail.key"), &out), GG_ECRYPTO);
    sodium_memzero(forged, sizeof forged);

    node_key_t n1, n2, nout;
    REQUIRE(node_key_generate("n1", &n1) == 0);
    REQUIRE(node_key_generate("n2", &n2) == 0);
    char npub[41], nsec[41];
    s_z85(n1.public_key, 32, npub);
    s_z85(n2.secret_key, 32, nsec);
    snprintf(text, sizeof text,
             "node\n    name = \"n1\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", npub,
             nsec);
    REQUIRE(s_write_file(s_path("nmix.key"), text, 0600) == 0);
    CHECK_EQ_INT(node_key_load(s_path("nmix.key"), &nout), GG_ECRYPTO);
    /* The right secret loads: the test above fails for the right reason. */
    s_z85(n1.secret_key, 32, nsec);
    snprintf(text, sizeof text,
             "node\n    name = \"n1\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", npub,
             nsec);
    REQUIRE(s_write_file(s_path("nok.key"), text, 0600) == 0);
    CHECK_EQ_INT(node_key_load(s_path("nok.key"), &nout), 0);

    /* node_key_save refuses a pair that does not match. */
    memcpy(n1.secret_key, n2.secret_key, 32);
    CHECK_EQ_INT(node_key_save(&n1, s_path("never.key")), GG_ECRYPTO);
    CHECK_EQ_INT(access(s_path("never.key"), F_OK), -1);
    operator_key_wipe(&a);
    operator_key_wipe(&b);
    node_key_wipe(&n1);
    node_key_wipe(&n2);
    node_key_wipe(&nout);
}

/* Writes a node key file with the given field values. */
static int s_write_node(const char *file, const char *name, const char *pub, const char *sec)
{
    char text[1024];
    snprintf(text, sizeof text,
             "node\n    name = \"%s\"\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", name,
             pub, sec);
    return s_write_file(s_path(file), text, 0600);
}

static void test_corrupt_files(void)
{
    node_key_t key, out;
    REQUIRE(node_key_generate("n1", &key) == 0);
    char pub[41], sec[41], bad[41];
    s_z85(key.public_key, 32, pub);
    s_z85(key.secret_key, 32, sec);
    REQUIRE(s_write_node("good.key", "n1", pub, sec) == 0);
    CHECK_EQ_INT(node_key_load(s_path("good.key"), &out), 0);

    memcpy(bad, pub, sizeof bad);
    bad[7] = '~'; /* not in the Z85 alphabet */
    REQUIRE(s_write_node("z85char.key", "n1", bad, sec) == 0);
    CHECK_EQ_INT(node_key_load(s_path("z85char.key"), &out), GG_EMALFORMED);
    REQUIRE(s_write_node("short.key", "n1", pub + 1, sec) == 0);
    CHECK_EQ_INT(node_key_load(s_path("short.key"), &out), GG_EMALFORMED);
    char longer[48];
    snprintf(longer, sizeof longer, "%s12345", pub);
    REQUIRE(s_write_node("long.key", "n1", longer, sec) == 0);
    CHECK_EQ_INT(node_key_load(s_path("long.key"), &out), GG_EMALFORMED);
    /* "%%%%%" decodes to a value over 2^32: invalid Z85. */
    memcpy(bad, sec, sizeof bad);
    memcpy(bad, "%%%%%", 5);
    REQUIRE(s_write_node("overflow.key", "n1", pub, bad) == 0);
    CHECK_EQ_INT(node_key_load(s_path("overflow.key"), &out), GG_EMALFORMED);
    REQUIRE(s_write_node("badname.key", "-n1", pub, sec) == 0);
    CHECK_EQ_INT(node_key_load(s_path("badname.key"), &out), GG_EMALFORMED);

    REQUIRE(s_write_file(s_path("nosecret.key"),
                         "node\n    name = \"n1\"\n    public-key = \"x\"\n", 0600) == 0);
    CHECK_EQ_INT(node_key_load(s_path("nosecret.key"), &out), GG_EMALFORMED);
    REQUIRE(s_write_file(s_path("empty.key"), "", 0600) == 0);
    CHECK_EQ_INT(node_key_load(s_path("empty.key"), &out), GG_EMALFORMED);
    REQUIRE(s_write_file(s_path("garbage.key"), "\x01\x02 not zpl {{{\n", 0600) == 0);
    CHECK_EQ_INT(node_key_load(s_path("garbage.key"), &out), GG_EMALFORMED);
    /* An operator file is not a node key and vice versa. */
    CHECK_EQ_INT(operator_key_load(s_path("good.key"), &(operator_key_t){0}), GG_EMALFORMED);
    CHECK_EQ_INT(node_key_load(s_path("ops/nested/alice.pub"), &out), GG_EMALFORMED);
    CHECK_EQ_INT(node_key_load(s_tmp, &out), GG_EINVAL); /* a directory */

    /* Too big a file is refused before parsing. */
    char *huge = malloc(40000);
    REQUIRE(huge);
    memset(huge, '#', 39999);
    huge[39999] = '\0';
    REQUIRE(s_write_file(s_path("huge.key"), huge, 0600) == 0);
    free(huge);
    CHECK_EQ_INT(node_key_load(s_path("huge.key"), &out), GG_ETOOBIG);

    /* A damaged line must not be echoed (zconfig prints bad lines to stdout). */
    char text[512];
    snprintf(text, sizeof text,
             "node\n    name = \"n1\"\n    public-key = \"%s\"\n    secret-key: \"%s\"\n", pub,
             sec);
    REQUIRE(s_write_file(s_path("syntax.key"), text, 0600) == 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(s_path("stdout.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(saved >= 0 && fd >= 0);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    int rc = node_key_load(s_path("syntax.key"), &out);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    CHECK_EQ_INT(rc, GG_EMALFORMED);
    char *printed = s_read_file(s_path("stdout.txt"));
    CHECK(printed && !strstr(printed, sec));
    free(printed);

    /* A secret readable by others still loads (with a warning). */
    REQUIRE(s_write_node("open.key", "n1", pub, sec) == 0);
    REQUIRE(chmod(s_path("open.key"), 0644) == 0);
    CHECK_EQ_INT(node_key_load(s_path("open.key"), &out), 0);
    node_key_wipe(&key);
    node_key_wipe(&out);
}

static void test_sign_verify(void)
{
    operator_key_t key, pub;
    REQUIRE(operator_key_generate("alice", &key) == 0);
    const char msg[] = "plan apply 1234";
    uint8_t sig[CERT_SIG_LEN];
    REQUIRE(operator_sign(&key, msg, sizeof msg, sig) == 0);
    CHECK_EQ_INT(operator_verify(key.public_key, msg, sizeof msg, sig), 0);
    char other[sizeof msg];
    memcpy(other, msg, sizeof msg);
    other[3] ^= 1;
    CHECK_EQ_INT(operator_verify(key.public_key, other, sizeof other, sig), GG_ECRYPTO);
    sig[10] ^= 0x40;
    CHECK_EQ_INT(operator_verify(key.public_key, msg, sizeof msg, sig), GG_ECRYPTO);
    sig[10] ^= 0x40;
    operator_key_t stranger;
    REQUIRE(operator_key_generate("mallory", &stranger) == 0);
    CHECK_EQ_INT(operator_verify(stranger.public_key, msg, sizeof msg, sig), GG_ECRYPTO);
    CHECK_EQ_INT(operator_sign(&key, NULL, 0, sig), 0);
    CHECK_EQ_INT(operator_verify(key.public_key, NULL, 0, sig), 0);

    memset(&pub, 0, sizeof pub);
    memcpy(pub.public_key, key.public_key, CERT_PUBLIC_LEN);
    CHECK_EQ_INT(operator_sign(&pub, msg, sizeof msg, sig), GG_EPERM);
    operator_key_wipe(&key);
    operator_key_wipe(&stranger);
}

static void test_cert_issue_verify(void)
{
    operator_key_t op;
    node_key_t node;
    cert_t cert, loaded;
    const uint64_t now = 1700000000;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(node_key_generate("n1", &node) == 0);
    REQUIRE(cert_issue(&node, &op, now, 365, &cert) == 0);
    CHECK_EQ_INT(cert.version, CERT_VERSION);
    CHECK_STR(cert.name, "n1");
    CHECK(cert.issued == now);
    CHECK(cert.expires == now + 365ull * 86400);
    CHECK(memcmp(cert.curve_public, node.public_key, CERT_PUBLIC_LEN) == 0);
    CHECK(memcmp(cert.operator_public, op.public_key, CERT_PUBLIC_LEN) == 0);

    trust_t *trust = trust_new();
    REQUIRE(trust);
    CHECK_EQ_INT(trust_add_operator(trust, op.public_key), 0);
    CHECK_EQ_INT(trust_add_operator(trust, op.public_key), 0); /* idempotent */
    CHECK_EQ_INT(trust_operator_count(trust), 1);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, now + 10), 0);

    /* File round trip keeps every field and the signature valid. */
    const char *path = s_path("n1.cert");
    REQUIRE(cert_save(&cert, path) == 0);
    CHECK(s_mode(path) != (mode_t) -1);
    REQUIRE(cert_load(path, &loaded) == 0);
    CHECK(memcmp(&loaded, &cert, sizeof cert) == 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &loaded, now + 10), 0);
    CHECK_EQ_INT(cert_save(&cert, path), GG_EEXIST);

    /* Bad issuing arguments. */
    cert_t tmp;
    CHECK_EQ_INT(cert_issue(&node, &op, now, 0, &tmp), GG_EINVAL);
    CHECK_EQ_INT(cert_issue(&node, &op, now, 36501, &tmp), GG_EINVAL);
    CHECK_EQ_INT(cert_issue(&node, &op, now, 36500, &tmp), 0);
    CHECK_EQ_INT(cert_issue(&node, &op, UINT64_MAX - 10, 1, &tmp), GG_EINVAL);
    operator_key_t pub_only = op;
    pub_only.has_secret = false;
    memset(pub_only.secret_key, 0, sizeof pub_only.secret_key);
    CHECK_EQ_INT(cert_issue(&node, &pub_only, now, 1, &tmp), GG_EPERM);

    /* A damaged certificate file. */
    char *text = s_read_file(path);
    REQUIRE(text);
    char *sig = strstr(text, "signature = \"");
    REQUIRE(sig);
    sig[17] = sig[17] == '0' ? '1' : '0'; /* last digit of a group: never overflows */
    REQUIRE(s_write_file(s_path("flipped.cert"), text, 0644) == 0);
    REQUIRE(cert_load(s_path("flipped.cert"), &tmp) == 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &tmp, now + 10), GG_ECRYPTO);
    char *issued = strstr(text, "issued = \"");
    REQUIRE(issued);
    issued[10] = '-';
    REQUIRE(s_write_file(s_path("negative.cert"), text, 0644) == 0);
    CHECK_EQ_INT(cert_load(s_path("negative.cert"), &tmp), GG_EMALFORMED);
    free(text);

    trust_destroy(&trust);
    CHECK(trust == NULL);
    trust_destroy(&trust);
    trust_destroy(NULL);
    operator_key_wipe(&op);
    node_key_wipe(&node);
}

static void test_cert_bit_flips(void)
{
    operator_key_t op;
    cert_t good, bad;
    const uint64_t now = 1700000000;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(s_make_cert("node7", &op, now, &good, NULL) == 0);
    trust_t *trust = trust_new();
    REQUIRE(trust);
    REQUIRE(trust_add_operator(trust, op.public_key) == 0);
    REQUIRE(trust_verify_cert(trust, &good, now) == 0);

    bad = good;
    bad.version ^= 1;
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_EMALFORMED);
    bad = good;
    bad.name[2] ^= 1; /* 'd' -> 'e': still a valid name */
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_ECRYPTO);
    bad = good;
    bad.name[0] ^= 0x40; /* 'n' -> '.': an invalid name */
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_EMALFORMED);
    bad = good;
    memset(bad.name, 'a', sizeof bad.name); /* no terminator */
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_EMALFORMED);
    for (size_t i = 0; i < CERT_PUBLIC_LEN; i += 7) {
        bad = good;
        bad.curve_public[i] ^= 0x10;
        CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_ECRYPTO);
        bad = good;
        bad.operator_public[i] ^= 0x10;
        CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_EPERM);
    }
    bad = good;
    bad.issued ^= 1;
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_ECRYPTO);
    bad = good;
    bad.expires ^= 1ull << 40;
    CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_ECRYPTO);
    for (size_t i = 0; i < CERT_SIG_LEN; i += 9) {
        bad = good;
        bad.signature[i] ^= 0x01;
        CHECK_EQ_INT(trust_verify_cert(trust, &bad, now), GG_ECRYPTO);
    }
    trust_destroy(&trust);
    operator_key_wipe(&op);
}

static void test_untrusted_operator(void)
{
    operator_key_t op, other;
    cert_t cert;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(operator_key_generate("bob", &other) == 0);
    REQUIRE(s_make_cert("n1", &op, 1000, &cert, NULL) == 0);
    trust_t *trust = trust_new();
    REQUIRE(trust);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, 1000), GG_EPERM);
    REQUIRE(trust_add_operator(trust, other.public_key) == 0);
    CHECK(!trust_is_operator(trust, op.public_key));
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, 1000), GG_EPERM);
    /* Claiming a trusted operator without its signature does not help. */
    cert_t forged = cert;
    memcpy(forged.operator_public, other.public_key, CERT_PUBLIC_LEN);
    CHECK_EQ_INT(trust_verify_cert(trust, &forged, 1000), GG_ECRYPTO);
    REQUIRE(trust_add_operator(trust, op.public_key) == 0);
    CHECK(trust_is_operator(trust, op.public_key));
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, 1000), 0);
    trust_destroy(&trust);
    operator_key_wipe(&op);
    operator_key_wipe(&other);
}

static void test_validity_window(void)
{
    operator_key_t op;
    cert_t cert;
    const uint64_t t = 1700000000;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(s_make_cert("n1", &op, t, &cert, NULL) == 0); /* 30 days */
    trust_t *trust = trust_new();
    REQUIRE(trust);
    REQUIRE(trust_add_operator(trust, op.public_key) == 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, t), 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, t - 300), 0); /* skew allowance */
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, t - 301), GG_EEXPIRED);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, 0), GG_EEXPIRED);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, cert.expires - 1), 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, cert.expires), GG_EEXPIRED);
    CHECK_EQ_INT(trust_verify_cert(trust, &cert, UINT64_MAX), GG_EEXPIRED);
    /* Issued near the epoch: no underflow in the allowance. */
    cert_t early;
    REQUIRE(s_make_cert("n2", &op, 100, &early, NULL) == 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &early, 0), 0);
    trust_destroy(&trust);
    operator_key_wipe(&op);
}

static void test_revocation(void)
{
    operator_key_t op;
    cert_t a, b;
    node_key_t key_b;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(s_make_cert("node-a", &op, 5000, &a, NULL) == 0);
    REQUIRE(s_make_cert("node-b", &op, 5000, &b, &key_b) == 0);
    trust_t *trust = trust_new();
    REQUIRE(trust);
    REQUIRE(trust_add_operator(trust, op.public_key) == 0);
    CHECK(!trust_is_revoked(trust, &a));
    CHECK_EQ_INT(trust_revoke_name(trust, "node-a"), 0);
    CHECK_EQ_INT(trust_revoke_name(trust, "node-a"), 0);
    CHECK_EQ_INT(trust_revoke_name(trust, "bad name"), GG_EINVAL);
    CHECK(trust_is_revoked(trust, &a));
    CHECK_EQ_INT(trust_verify_cert(trust, &a, 5000), GG_EREVOKED);
    CHECK_EQ_INT(trust_verify_cert(trust, &b, 5000), 0);

    CHECK_EQ_INT(trust_revoke_key(trust, key_b.public_key), 0);
    CHECK_EQ_INT(trust_revoke_key(trust, key_b.public_key), 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &b, 5000), GG_EREVOKED);
    /* A new cert for the same revoked key under another name stays revoked. */
    cert_t renamed;
    snprintf(key_b.name, sizeof key_b.name, "node-c");
    REQUIRE(cert_issue(&key_b, &op, 5000, 1, &renamed) == 0);
    CHECK_EQ_INT(trust_verify_cert(trust, &renamed, 5000), GG_EREVOKED);
    /* Checks run in order: an expired revoked cert reports expiry first. */
    CHECK_EQ_INT(trust_verify_cert(trust, &a, a.expires), GG_EEXPIRED);
    trust_destroy(&trust);
    operator_key_wipe(&op);
    node_key_wipe(&key_b);
}

static void test_trust_bounds(void)
{
    trust_t *trust = trust_new();
    REQUIRE(trust);
    uint8_t key[CERT_PUBLIC_LEN] = {0};
    for (int i = 0; i < 256; i++) {
        key[0] = (uint8_t) i;
        CHECK_EQ_INT(trust_add_operator(trust, key), 0);
    }
    key[0] = 0;
    key[1] = 1;
    CHECK_EQ_INT(trust_add_operator(trust, key), GG_ETOOBIG);
    key[1] = 0;
    CHECK_EQ_INT(trust_add_operator(trust, key), 0); /* already present */
    CHECK_EQ_INT(trust_operator_count(trust), 256);

    char name[32];
    int failures = 0;
    for (int i = 0; i < 65536; i++) {
        snprintf(name, sizeof name, "n%d", i);
        if (trust_revoke_name(trust, name) != 0)
            failures++;
    }
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(trust_revoke_name(trust, "one-more"), GG_ETOOBIG);
    CHECK_EQ_INT(trust_revoke_key(trust, key), GG_ETOOBIG);
    CHECK_EQ_INT(trust_revoke_name(trust, "n5"), 0); /* idempotent when full */
    trust_destroy(&trust);
}

static void test_signed_bytes(void)
{
    operator_key_t op;
    cert_t cert;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(s_make_cert("n1", &op, 42, &cert, NULL) == 0);
    uint8_t buf[256];
    size_t len = 0;
    REQUIRE(cert_signed_bytes(&cert, buf, sizeof buf, &len) == 0);
    CHECK_EQ_INT(operator_verify(op.public_key, buf, len, cert.signature), 0);
    size_t len2 = 0;
    CHECK_EQ_INT(cert_signed_bytes(&cert, buf, len - 1, &len2), GG_ETOOBIG);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(cert_signed_bytes(&cert, buf, sizeof buf, &len) == 0);
    CHECK_EQ_INT(msgpack_unpack_next(&up, (const char *) buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(off, len);
    const msgpack_object *o = &up.data;
    CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 7);
    if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 7) {
        const msgpack_object *e = o->via.array.ptr;
        CHECK(e[0].type == MSGPACK_OBJECT_STR && e[0].via.str.size == 11 &&
              memcmp(e[0].via.str.ptr, "gaggle-cert", 11) == 0);
        CHECK(e[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[1].via.u64 == CERT_VERSION);
        CHECK(e[2].type == MSGPACK_OBJECT_STR && e[2].via.str.size == 2);
        CHECK(e[3].type == MSGPACK_OBJECT_BIN && e[3].via.bin.size == 32 &&
              memcmp(e[3].via.bin.ptr, cert.curve_public, 32) == 0);
        CHECK(e[4].type == MSGPACK_OBJECT_BIN && e[4].via.bin.size == 32 &&
              memcmp(e[4].via.bin.ptr, cert.operator_public, 32) == 0);
        CHECK(e[5].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[5].via.u64 == 42);
        CHECK(e[6].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[6].via.u64 == 42 + 30 * 86400);
    }
    msgpack_unpacked_destroy(&up);
    operator_key_wipe(&op);
}

/* ---- wire form ---- */

/* Field overrides for s_pack_custom: which field to change and how. */
typedef enum {
    MUT_NONE,
    MUT_VERSION_STR,
    MUT_VERSION_BIG,
    MUT_NAME_BIN,
    MUT_NAME_EMPTY,
    MUT_NAME_LONG,
    MUT_NAME_NUL,
    MUT_NAME_BADCHAR,
    MUT_KEY_SHORT,
    MUT_KEY_LONG,
    MUT_KEY_STR,
    MUT_OP_SHORT,
    MUT_ISSUED_NEG,
    MUT_ISSUED_FLOAT,
    MUT_EXPIRES_STR,
    MUT_SIG_SHORT,
    MUT_SIG_LONG,
    MUT_MISSING_SIG,
    MUT_DUPLICATE,
    MUT_EXTRA_FIELD,
    MUT_INT_KEY,
    MUT_COUNT
} mutation_t;

static void s_pack_custom(const cert_t *c, mutation_t m, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    char big[80];
    memset(big, 'a', sizeof big);
    int fields = 7 + (m == MUT_DUPLICATE || m == MUT_EXTRA_FIELD || m == MUT_INT_KEY) -
                 (m == MUT_MISSING_SIG);
    msgpack_pack_map(&pk, (size_t) fields);
    msgpack_pack_str_with_body(&pk, "v", 1);
    if (m == MUT_VERSION_STR)
        msgpack_pack_str_with_body(&pk, "1", 1);
    else if (m == MUT_VERSION_BIG)
        msgpack_pack_uint64(&pk, 1ull << 32);
    else
        msgpack_pack_uint32(&pk, c->version);
    msgpack_pack_str_with_body(&pk, "n", 1);
    if (m == MUT_NAME_BIN)
        msgpack_pack_bin_with_body(&pk, c->name, strlen(c->name));
    else if (m == MUT_NAME_EMPTY)
        msgpack_pack_str_with_body(&pk, "", 0);
    else if (m == MUT_NAME_LONG)
        msgpack_pack_str_with_body(&pk, big, CERT_NAME_MAX + 1);
    else if (m == MUT_NAME_NUL)
        msgpack_pack_str_with_body(&pk, "n1\0x", 4);
    else if (m == MUT_NAME_BADCHAR)
        msgpack_pack_str_with_body(&pk, "n 1", 3);
    else
        msgpack_pack_str_with_body(&pk, c->name, strlen(c->name));
    msgpack_pack_str_with_body(&pk, "k", 1);
    if (m == MUT_KEY_SHORT)
        msgpack_pack_bin_with_body(&pk, c->curve_public, 31);
    else if (m == MUT_KEY_LONG)
        msgpack_pack_bin_with_body(&pk, big, 33);
    else if (m == MUT_KEY_STR)
        msgpack_pack_str_with_body(&pk, c->curve_public, 32);
    else
        msgpack_pack_bin_with_body(&pk, c->curve_public, 32);
    msgpack_pack_str_with_body(&pk, "o", 1);
    msgpack_pack_bin_with_body(&pk, c->operator_public, m == MUT_OP_SHORT ? 16 : 32);
    msgpack_pack_str_with_body(&pk, "i", 1);
    if (m == MUT_ISSUED_NEG)
        msgpack_pack_int64(&pk, -5);
    else if (m == MUT_ISSUED_FLOAT)
        msgpack_pack_double(&pk, 1.5);
    else
        msgpack_pack_uint64(&pk, c->issued);
    msgpack_pack_str_with_body(&pk, "e", 1);
    if (m == MUT_EXPIRES_STR)
        msgpack_pack_str_with_body(&pk, "soon", 4);
    else
        msgpack_pack_uint64(&pk, c->expires);
    if (m != MUT_MISSING_SIG) {
        msgpack_pack_str_with_body(&pk, "sig", 3);
        if (m == MUT_SIG_SHORT)
            msgpack_pack_bin_with_body(&pk, c->signature, 63);
        else if (m == MUT_SIG_LONG)
            msgpack_pack_bin_with_body(&pk, big, 65);
        else
            msgpack_pack_bin_with_body(&pk, c->signature, 64);
    }
    if (m == MUT_DUPLICATE) {
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_uint32(&pk, c->version);
    } else if (m == MUT_EXTRA_FIELD) {
        msgpack_pack_str_with_body(&pk, "future", 6);
        msgpack_pack_array(&pk, 0);
    } else if (m == MUT_INT_KEY) {
        msgpack_pack_uint32(&pk, 7);
        msgpack_pack_uint32(&pk, 7);
    }
}

static int s_unpack_buf(const char *data, size_t len, cert_t *out)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = -100;
    if (msgpack_unpack_next(&up, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
        rc = cert_unpack(&up.data, out);
    msgpack_unpacked_destroy(&up);
    return rc;
}

static void test_pack_unpack(void)
{
    operator_key_t op;
    cert_t cert, out;
    REQUIRE(operator_key_generate("alice", &op) == 0);
    REQUIRE(s_make_cert("n1", &op, 1700000000, &cert, NULL) == 0);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cert_pack(&cert, &pk);
    CHECK_EQ_INT(s_unpack_buf(sb.data, sb.size, &out), 0);
    CHECK(memcmp(&out, &cert, sizeof cert) == 0);
    msgpack_sbuffer_destroy(&sb);

    for (int m = MUT_NONE; m < MUT_COUNT; m++) {
        msgpack_sbuffer_init(&sb);
        s_pack_custom(&cert, (mutation_t) m, &sb);
        int rc = s_unpack_buf(sb.data, sb.size, &out);
        if (m == MUT_NONE || m == MUT_EXTRA_FIELD) {
            if (rc != 0)
                fprintf(stderr, "mutation %d: %d\n", m, rc);
            CHECK_EQ_INT(rc, 0);
            CHECK(memcmp(&out, &cert, sizeof cert) == 0);
        } else {
            if (rc != GG_EMALFORMED)
                fprintf(stderr, "mutation %d accepted (%d)\n", m, rc);
            CHECK_EQ_INT(rc, GG_EMALFORMED);
        }
        msgpack_sbuffer_destroy(&sb);
    }

    /* Not a map at all. */
    msgpack_object arr = {.type = MSGPACK_OBJECT_ARRAY};
    CHECK_EQ_INT(cert_unpack(&arr, &out), GG_EMALFORMED);
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    CHECK_EQ_INT(cert_unpack(&nil, &out), GG_EMALFORMED);
    operator_key_wipe(&op);
}

static void test_trust_load_dir(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", s_path("trust"));
    REQUIRE(mkdir(dir, 0755) == 0);
    operator_key_t a, b, c, secret_only;
    REQUIRE(operator_key_generate("alice", &a) == 0);
    REQUIRE(operator_key_generate("bob", &b) == 0);
    REQUIRE(operator_key_generate("carol", &c) == 0);
    REQUIRE(operator_key_generate("dave", &secret_only) == 0);
    REQUIRE(operator_key_save(&a, dir) == 0);
    REQUIRE(operator_key_save(&b, dir) == 0);
    /* carol's public key under an unrelated name: ignored (not *.pub). */
    REQUIRE(operator_key_save(&c, s_path("elsewhere")) == 0);
    char *carol = s_read_file(s_path("elsewhere/carol.pub"));
    REQUIRE(carol);
    REQUIRE(s_write_file(s_path("trust/carol.pub.bak"), carol, 0644) == 0);
    free(carol);
    /* dave's secret key file only (*.key is not read). */
    REQUIRE(operator_key_save(&secret_only, s_path("dave")) == 0);
    REQUIRE(rename(s_path("dave/dave.key"), s_path("trust/dave.key")) == 0);
    REQUIRE(s_write_file(s_path("trust/broken.pub"), "operator\n    name = \"x\"\n", 0644) == 0);
    REQUIRE(s_write_file(s_path("trust/junk.pub"), "\x7f\x45\x4c\x46 binary\n", 0644) == 0);
    REQUIRE(s_write_file(s_path("trust/README.txt"), "operators\n", 0644) == 0);
    REQUIRE(mkdir(s_path("trust/sub.pub"), 0755) == 0);
    REQUIRE(mkfifo(s_path("trust/fifo.pub"), 0644) == 0); /* must not block the load */

    trust_t *trust = trust_new();
    REQUIRE(trust);
    size_t count = 99;
    CHECK_EQ_INT(trust_load_dir(trust, dir, &count), 0);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(trust_operator_count(trust), 2);
    CHECK(trust_is_operator(trust, a.public_key));
    CHECK(trust_is_operator(trust, b.public_key));
    CHECK(!trust_is_operator(trust, c.public_key));
    CHECK(!trust_is_operator(trust, secret_only.public_key));
    trust_destroy(&trust);

    /* Only bad or unrelated files: a configuration error. */
    trust = trust_new();
    REQUIRE(trust);
    REQUIRE(mkdir(s_path("trust-bad"), 0755) == 0);
    REQUIRE(s_write_file(s_path("trust-bad/broken.pub"), "nope = 1\n", 0644) == 0);
    REQUIRE(s_write_file(s_path("trust-bad/notes.txt"), "x\n", 0644) == 0);
    CHECK_EQ_INT(trust_load_dir(trust, s_path("trust-bad"), &count), GG_ECONFIG);
    CHECK_EQ_INT(count, 0);
    REQUIRE(mkdir(s_path("trust-empty"), 0755) == 0);
    CHECK_EQ_INT(trust_load_dir(trust, s_path("trust-empty"), &count), GG_ECONFIG);
    CHECK_EQ_INT(trust_load_dir(trust, s_path("no-such-dir"), &count), GG_ECONFIG);
    CHECK_EQ_INT(trust_operator_count(trust), 0);
    trust_destroy(&trust);
    operator_key_wipe(&a);
    operator_key_wipe(&b);
    operator_key_wipe(&c);
    operator_key_wipe(&secret_only);
}

int main(void)
{
    zsys_init();
    if (s_setup() != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    GG_RUN(test_names);
    GG_RUN(test_operator_round_trip);
    GG_RUN(test_node_round_trip);
    GG_RUN(test_node_key_is_curve);
    GG_RUN(test_mismatched_keys);
    GG_RUN(test_corrupt_files);
    GG_RUN(test_sign_verify);
    GG_RUN(test_cert_issue_verify);
    GG_RUN(test_cert_bit_flips);
    GG_RUN(test_untrusted_operator);
    GG_RUN(test_validity_window);
    GG_RUN(test_revocation);
    GG_RUN(test_trust_bounds);
    GG_RUN(test_signed_bytes);
    GG_RUN(test_pack_unpack);
    GG_RUN(test_trust_load_dir);
    s_teardown();
    zsys_shutdown();
    GG_DONE();
}
