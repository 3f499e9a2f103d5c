/*
 * cert.c: operator keys, node keys, node certificates and the trust store.
 *
 * Why it looks the way it does:
 * - Keys are libsodium's: operators sign with Ed25519 (crypto_sign), nodes
 *   hold X25519 pairs (crypto_box), which is exactly CurveZMQ's key type, so
 *   a node key goes straight into zsock_set_curve_secretkey_bin.
 * - Files are CZMQ ZPL text with Z85 keys (CZMQ's own certificate style).
 *   They are read with open/fstat/read into a bounded buffer (at most
 *   CERT_FILE_MAX bytes) and parsed by zconfig_chunk_load; reading the file
 *   ourselves lets us check the mode of the very file we read and wipe every
 *   copy of a secret we own: the read buffer, the chunk handed to zconfig and
 *   every value in the parsed tree are zeroed before they are freed.
 * - Files are written with open(O_CREAT | O_EXCL), secrets with mode 0600
 *   from the first byte: no window in which a secret is world-readable, and
 *   an existing file is never overwritten (GG_EEXIST). A file that fails
 *   half-way is removed. The text is formatted into a stack buffer that is
 *   wiped afterwards; every value written is a validated name, a number or
 *   Z85 (whose alphabet has no quote), so the output is always valid ZPL.
 * - What a certificate signature covers is a canonical msgpack array
 *   ["gaggle-cert", version, name, curve key, operator key, issued, expires];
 *   the wire form is a msgpack map checked field by field on decode.
 * - Loading and saving report through the returned code only (details at
 *   debug level), so that the CLI can print its one-line errors; the
 *   exceptions are the warning about a secret file others can read (as ssh
 *   does) and trust_load_dir, which logs each operator file it skips.
 * - The trust store is bounded: TRUST_MAX_OPERATORS operator keys and
 *   TRUST_MAX_REVOKED revocations (names and keys together).
 */
#include "cert.h"
#include "gg_error.h"
#include "gg_log.h"

#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <regex.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zmq.h>

#define CERT_FILE_MAX          (16 * 1024) /* bytes: our files are ~400 */
#define CERT_MAX_VALID_DAYS    36500       /* a hundred years */
#define CERT_SKEW_ALLOWANCE    300         /* seconds a cert may be early */
#define CERT_SIGNED_MAX        256         /* bytes of cert_signed_bytes output */
#define TRUST_MAX_OPERATORS    256
#define TRUST_MAX_REVOKED      65536        /* names and keys together */
#define CERT_UNPACK_MAX_FIELDS 32           /* map entries accepted on decode */
#define Z85_LEN(n)             ((n) *5 / 4) /* text length for n bytes */
#define Z85_MAX                (Z85_LEN(OPERATOR_SECRET_LEN) + 1)
#define CERT_DAY_SECONDS       86400ull

static const char s_cert_tag[] = "gaggle-cert";

/* ---- small helpers ---- */

static int s_sodium_ready(void)
{
    /* Thread-safe and idempotent: returns 1 once initialised. */
    if (sodium_init() < 0) {
        gg_error("cert: libsodium failed to initialise");
        return GG_EINTERNAL;
    }
    return GG_OK;
}

/* 0 when buf (of size bytes) holds a NUL-terminated valid name. */
static int s_name_buf_ok(const char *buf, size_t size)
{
    if (!memchr(buf, '\0', size))
        return GG_EINVAL;
    return cert_check_name(buf);
}

int cert_check_name(const char *name)
{
    if (!name)
        return GG_EINVAL;
    size_t len = strnlen(name, CERT_NAME_MAX + 1);
    if (len == 0 || len > CERT_NAME_MAX)
        return GG_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (i == 0 && !alnum)
            return GG_EINVAL;
        if (!alnum && c != '.' && c != '_' && c != '-')
            return GG_EINVAL;
    }
    return GG_OK;
}

/* Writes the Z85 text of len bytes (a multiple of 4) into out. */
static void s_z85_encode(const uint8_t *data, size_t len, char out[Z85_MAX])
{
    assert(len % 4 == 0 && Z85_LEN(len) < Z85_MAX);
    char *rc = zmq_z85_encode(out, data, len);
    assert(rc);
    (void) rc;
}

/* Decodes text that must be exactly the Z85 form of len bytes. On failure
 * out is zeroed and GG_EMALFORMED returned. */
static int s_z85_decode(const char *text, uint8_t *out, size_t len)
{
    if (!text || strnlen(text, Z85_MAX) != Z85_LEN(len))
        return GG_EMALFORMED;
    if (!zmq_z85_decode(out, text)) {
        sodium_memzero(out, len);
        return GG_EMALFORMED;
    }
    return GG_OK;
}

/* Strict unsigned decimal: digits only, no sign or spaces, no overflow. */
static int s_parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    if (!text || !*text || strlen(text) > 20)
        return GG_EMALFORMED;
    uint64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return GG_EMALFORMED;
        unsigned d = (unsigned) (*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return GG_EMALFORMED;
        v = v * 10 + d;
    }
    if (v > max)
        return GG_EMALFORMED;
    *out = v;
    return GG_OK;
}

static int s_errno_to_gg(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR: return GG_ENOTFOUND;
    case EEXIST: return GG_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS: return GG_EPERM;
    case ENOSPC:
    case EDQUOT: return GG_ENOSPC;
    case ENOMEM: return GG_ENOMEM;
    case ENAMETOOLONG: return GG_EINVAL;
    default: return GG_EIO;
    }
}

/* Creates dir and any missing parents, each with mode 0700. */
static int s_mkdirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strnlen(dir, sizeof path);
    if (len == 0 || len >= sizeof path)
        return GG_EINVAL;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            int err = errno;
            gg_debug("cert: cannot create directory %s: %s", path, strerror(err));
            return s_errno_to_gg(err);
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return s_errno_to_gg(errno);
    if (!S_ISDIR(st.st_mode)) {
        gg_debug("cert: %s is not a directory", dir);
        return GG_ENOTFOUND;
    }
    return GG_OK;
}

/* Creates the parent directory of path when it is missing. */
static int s_mkdirs_parent(const char *path)
{
    char dir[PATH_MAX];
    size_t len = strnlen(path, sizeof dir);
    if (len == 0 || len >= sizeof dir)
        return GG_EINVAL;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return GG_OK; /* the current directory or the root */
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? GG_OK : GG_ENOTFOUND;
    return s_mkdirs(dir);
}

/* Writes text to a new file created exclusively with mode; removes the file
 * again when anything fails after its creation. */
static int s_write_new(const char *path, mode_t mode, const char *text, size_t len)
{
    int rc = GG_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        rc = s_errno_to_gg(errno);
        if (rc != GG_EEXIST)
            gg_debug("cert: cannot create %s: %s", path, strerror(errno));
        return rc;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? s_errno_to_gg(errno) : GG_EIO;
            goto out;
        }
        done += (size_t) n;
    }
    if (fsync(fd) != 0) {
        rc = s_errno_to_gg(errno);
        goto out;
    }
out:
    if (close(fd) != 0 && rc == GG_OK)
        rc = s_errno_to_gg(errno);
    if (rc != GG_OK) {
        gg_debug("cert: cannot write %s: %s", path, gg_strerror(rc));
        unlink(path);
    }
    return rc;
}

/* zconfig prints the rest of a line it cannot parse to stdout, which for a
 * damaged key file could be a secret. Lines are therefore first matched
 * against the shapes zconfig parses without complaint (blank, comment,
 * section name, name = "quoted" or 'quoted' or unquoted value); anything
 * else makes the file malformed before zconfig sees it. */
#define ZPL_LINE_MAX 1024
#define ZPL_NAME     "[A-Za-z0-9$_@.&+/-]+"
static const char s_zpl_line_re[] =
    "^ *(#.*|" ZPL_NAME "[[:space:]]*(#.*|=[[:space:]]*(\"[^\"]*\"|'[^']*')[[:space:]]*(#.*)?"
    "|=[[:space:]]*([^\"'[:space:]].*)?)?)?[[:space:]]*$";

static int s_zpl_lines_ok(const char *buf, size_t len)
{
    regex_t re;
    char line[ZPL_LINE_MAX + 1];
    int rc = GG_OK;
    if (regcomp(&re, s_zpl_line_re, REG_EXTENDED | REG_NOSUB) != 0)
        return GG_EINTERNAL;
    size_t pos = 0;
    while (pos < len && rc == GG_OK) {
        const char *eol = memchr(buf + pos, '\n', len - pos);
        size_t n = eol ? (size_t) (eol - (buf + pos)) : len - pos;
        if (n > ZPL_LINE_MAX) {
            rc = GG_EMALFORMED;
            break;
        }
        memcpy(line, buf + pos, n);
        line[n] = '\0';
        if (regexec(&re, line, 0, NULL, 0) != 0)
            rc = GG_EMALFORMED;
        pos += n + 1;
    }
    sodium_memzero(line, sizeof line);
    regfree(&re);
    return rc;
}

/* Reads a whole (regular, at most CERT_FILE_MAX bytes) file and parses it as
 * ZPL. Every copy of the content we own is wiped before it is freed. */
static int s_load_zpl(const char *path, zconfig_t **root_p, mode_t *mode_p)
{
    int rc = GG_OK;
    char *buf = NULL;
    size_t len = 0;
    zchunk_t *chunk = NULL;
    *root_p = NULL;

    /* O_NONBLOCK: opening a FIFO must not hang (it is refused below). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        rc = s_errno_to_gg(errno);
        gg_debug("cert: cannot open %s: %s", path, strerror(errno));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = s_errno_to_gg(errno);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        gg_debug("cert: %s is not a regular file", path);
        rc = GG_EINVAL;
        goto out;
    }
    if (st.st_size > CERT_FILE_MAX) {
        gg_debug("cert: %s is larger than %d bytes", path, CERT_FILE_MAX);
        rc = GG_ETOOBIG;
        goto out;
    }
    *mode_p = st.st_mode;
    buf = malloc(CERT_FILE_MAX + 1);
    if (!buf) {
        rc = GG_ENOMEM;
        goto out;
    }
    /* Read until EOF, never past the bound (the file may grow meanwhile). */
    while (len <= CERT_FILE_MAX) {
        ssize_t n = read(fd, buf + len, CERT_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = s_errno_to_gg(errno);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    if (len > CERT_FILE_MAX) {
        rc = GG_ETOOBIG;
        goto out;
    }
    if (len == 0 || memchr(buf, '\0', len)) {
        rc = GG_EMALFORMED;
        goto out;
    }
    if ((rc = s_zpl_lines_ok(buf, len)) != GG_OK)
        goto out;
    chunk = zchunk_new(buf, len);
    if (!chunk) {
        rc = GG_ENOMEM;
        goto out;
    }
    *root_p = zconfig_chunk_load(chunk);
    if (!*root_p)
        rc = GG_EMALFORMED;
out:
    if (chunk) {
        sodium_memzero(zchunk_data(chunk), zchunk_size(chunk));
        zchunk_destroy(&chunk);
    }
    if (buf) {
        sodium_memzero(buf, CERT_FILE_MAX + 1);
        free(buf);
    }
    close(fd);
    if (rc == GG_EMALFORMED)
        gg_debug("cert: %s is not a valid key or certificate file", path);
    return rc;
}

static int s_wipe_item(zconfig_t *item, void *arg, int level)
{
    (void) arg;
    (void) level;
    char *value = zconfig_value(item);
    if (value)
        sodium_memzero(value, strlen(value));
    return 0;
}

/* Wipes every value of the tree (secrets included), then frees it. */
static void s_zpl_destroy(zconfig_t **root_p)
{
    if (!*root_p)
        return;
    zconfig_execute(*root_p, s_wipe_item, NULL);
    zconfig_destroy(root_p);
}

/* Reads the name at section/name into out (CERT_NAME_MAX + 1 bytes). */
static int s_get_name(zconfig_t *root, const char *section, char *out)
{
    char field[64];
    snprintf(field, sizeof field, "%s/name", section);
    const char *name = zconfig_get(root, field, NULL);
    if (cert_check_name(name) != 0)
        return GG_EMALFORMED;
    memcpy(out, name, strlen(name) + 1);
    return GG_OK;
}

static int s_get_z85(zconfig_t *root, const char *field, uint8_t *out, size_t len)
{
    return s_z85_decode(zconfig_get(root, field, NULL), out, len);
}

/* A secret key file may be read by its group (0640 root:gaggle, how a
 * service account reads its node key), never written by it nor reached by
 * others. */
static void s_warn_mode(const char *path, mode_t mode)
{
    if (mode & 027)
        gg_warn("cert: %s holds a secret key but is %s (mode %04o); run chmod 600 (or 640 "
                "for a service's group) on it",
                path, (mode & 007) ? "accessible by others" : "writable by its group",
                (unsigned) (mode & 07777));
}

/* ---- operator keys ---- */

/* 0 when secret (seed || public) really is the secret of public. */
static int s_operator_pair_ok(const uint8_t public_key[CERT_PUBLIC_LEN],
                              const uint8_t secret[OPERATOR_SECRET_LEN])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    int rc = GG_OK;
    crypto_sign_ed25519_sk_to_seed(seed, secret);
    if (crypto_sign_seed_keypair(pk, sk, seed) != 0 || sodium_memcmp(sk, secret, sizeof sk) != 0 ||
        memcmp(pk, public_key, sizeof pk) != 0)
        rc = GG_ECRYPTO;
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

int operator_key_generate(const char *name, operator_key_t *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    if (cert_check_name(name) != 0)
        return GG_EINVAL;
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if (crypto_sign_keypair(out->public_key, out->secret_key) != 0) {
        sodium_memzero(out, sizeof *out);
        return GG_ECRYPTO;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    out->has_secret = true;
    return GG_OK;
}

/* Joins dir, name and suffix into out; GG_EINVAL when it does not fit. */
static int s_join(char *out, size_t size, const char *dir, const char *name, const char *suffix)
{
    size_t dlen = strlen(dir);
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    int n = snprintf(out, size, "%s%s%s%s", dir, sep, name, suffix);
    return (n < 0 || (size_t) n >= size) ? GG_EINVAL : GG_OK;
}

int operator_key_save(const operator_key_t *key, const char *dir)
{
    assert(key && dir);
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    char text[1024];
    char pub_z85[Z85_MAX], sec_z85[Z85_MAX];
    int rc;
    bool key_written = false;

    if (s_name_buf_ok(key->name, sizeof key->name) != 0 || !key->has_secret)
        return GG_EINVAL;
    if ((rc = s_sodium_ready()) != GG_OK)
        return rc;
    if (s_operator_pair_ok(key->public_key, key->secret_key) != 0)
        return GG_ECRYPTO;
    if (s_join(key_path, sizeof key_path, dir, key->name, ".key") != 0 ||
        s_join(pub_path, sizeof pub_path, dir, key->name, ".pub") != 0)
        return GG_EINVAL;
    if ((rc = s_mkdirs(dir)) != GG_OK)
        return rc;
    /* Refuse before writing anything when either file exists. */
    struct stat st;
    if (lstat(key_path, &st) == 0 || lstat(pub_path, &st) == 0)
        return GG_EEXIST;

    s_z85_encode(key->public_key, CERT_PUBLIC_LEN, pub_z85);
    s_z85_encode(key->secret_key, OPERATOR_SECRET_LEN, sec_z85);
    int n = snprintf(text, sizeof text,
                     "#   gaggle operator secret key: keep it safe, never share it\n"
                     "operator\n"
                     "    name = \"%s\"\n"
                     "    public-key = \"%s\"\n"
                     "    secret-key = \"%s\"\n",
                     key->name, pub_z85, sec_z85);
    assert(n > 0 && (size_t) n < sizeof text);
    rc = s_write_new(key_path, 0600, text, (size_t) n);
    if (rc != GG_OK)
        goto out;
    key_written = true;
    n = snprintf(text, sizeof text,
                 "#   gaggle operator public key: put it in every agent's --operators directory\n"
                 "operator\n"
                 "    name = \"%s\"\n"
                 "    public-key = \"%s\"\n",
                 key->name, pub_z85);
    assert(n > 0 && (size_t) n < sizeof text);
    rc = s_write_new(pub_path, 0644, text, (size_t) n);
out:
    if (rc != GG_OK && key_written)
        unlink(key_path);
    sodium_memzero(sec_z85, sizeof sec_z85);
    sodium_memzero(text, sizeof text);
    return rc;
}

int operator_key_load(const char *path, operator_key_t *out)
{
    assert(path && out);
    zconfig_t *root = NULL;
    mode_t mode = 0;
    memset(out, 0, sizeof *out);
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if ((rc = s_load_zpl(path, &root, &mode)) != GG_OK)
        goto out;
    if (!zconfig_locate(root, "operator") || s_get_name(root, "operator", out->name) != 0 ||
        s_get_z85(root, "operator/public-key", out->public_key, CERT_PUBLIC_LEN) != 0) {
        rc = GG_EMALFORMED;
        goto out;
    }
    const char *secret = zconfig_get(root, "operator/secret-key", NULL);
    if (secret) {
        if (s_z85_decode(secret, out->secret_key, OPERATOR_SECRET_LEN) != 0) {
            rc = GG_EMALFORMED;
            goto out;
        }
        if (s_operator_pair_ok(out->public_key, out->secret_key) != 0) {
            gg_debug("cert: %s: the public key does not match the secret key", path);
            rc = GG_ECRYPTO;
            goto out;
        }
        out->has_secret = true;
        s_warn_mode(path, mode);
    }
out:
    s_zpl_destroy(&root);
    if (rc != GG_OK) {
        if (rc == GG_EMALFORMED)
            gg_debug("cert: %s is not a valid operator key file", path);
        sodium_memzero(out, sizeof *out);
    }
    return rc;
}

void operator_key_wipe(operator_key_t *key)
{
    if (key)
        sodium_memzero(key, sizeof *key);
}

int operator_sign(const operator_key_t *key, const void *data, size_t len,
                  uint8_t sig[CERT_SIG_LEN])
{
    assert(key && sig && (data || len == 0));
    if (!key->has_secret)
        return GG_EPERM;
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if (crypto_sign_detached(sig, NULL, data, len, key->secret_key) != 0)
        return GG_ECRYPTO;
    return GG_OK;
}

int operator_verify(const uint8_t public_key[CERT_PUBLIC_LEN], const void *data, size_t len,
                    const uint8_t sig[CERT_SIG_LEN])
{
    assert(public_key && sig && (data || len == 0));
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if (crypto_sign_verify_detached(sig, data, len, public_key) != 0)
        return GG_ECRYPTO;
    return GG_OK;
}

/* ---- node keys ---- */

int node_key_generate(const char *name, node_key_t *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    if (cert_check_name(name) != 0)
        return GG_EINVAL;
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if (crypto_box_keypair(out->public_key, out->secret_key) != 0) {
        sodium_memzero(out, sizeof *out);
        return GG_ECRYPTO;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    return GG_OK;
}

static int s_node_pair_ok(const node_key_t *key)
{
    uint8_t pk[crypto_scalarmult_BYTES];
    if (crypto_scalarmult_base(pk, key->secret_key) != 0 ||
        memcmp(pk, key->public_key, sizeof pk) != 0)
        return GG_ECRYPTO;
    return GG_OK;
}

int node_key_save(const node_key_t *key, const char *path)
{
    assert(key && path);
    char text[1024];
    char pub_z85[Z85_MAX], sec_z85[Z85_MAX];
    int rc;
    if (s_name_buf_ok(key->name, sizeof key->name) != 0 || !*path)
        return GG_EINVAL;
    if ((rc = s_sodium_ready()) != GG_OK)
        return rc;
    if (s_node_pair_ok(key) != 0)
        return GG_ECRYPTO;
    if ((rc = s_mkdirs_parent(path)) != GG_OK)
        return rc;
    s_z85_encode(key->public_key, CERT_PUBLIC_LEN, pub_z85);
    s_z85_encode(key->secret_key, NODE_SECRET_LEN, sec_z85);
    int n = snprintf(text, sizeof text,
                     "#   gaggle node secret key (CURVE): keep it on this node only\n"
                     "node\n"
                     "    name = \"%s\"\n"
                     "    public-key = \"%s\"\n"
                     "    secret-key = \"%s\"\n",
                     key->name, pub_z85, sec_z85);
    assert(n > 0 && (size_t) n < sizeof text);
    rc = s_write_new(path, 0600, text, (size_t) n);
    sodium_memzero(sec_z85, sizeof sec_z85);
    sodium_memzero(text, sizeof text);
    return rc;
}

int node_key_load(const char *path, node_key_t *out)
{
    assert(path && out);
    zconfig_t *root = NULL;
    mode_t mode = 0;
    memset(out, 0, sizeof *out);
    int rc = s_sodium_ready();
    if (rc != GG_OK)
        return rc;
    if ((rc = s_load_zpl(path, &root, &mode)) != GG_OK)
        goto out;
    if (!zconfig_locate(root, "node") || s_get_name(root, "node", out->name) != 0 ||
        s_get_z85(root, "node/public-key", out->public_key, CERT_PUBLIC_LEN) != 0 ||
        s_get_z85(root, "node/secret-key", out->secret_key, NODE_SECRET_LEN) != 0) {
        gg_debug("cert: %s is not a valid node key file", path);
        rc = GG_EMALFORMED;
        goto out;
    }
    if (s_node_pair_ok(out) != 0) {
        gg_debug("cert: %s: the public key does not match the secret key", path);
        rc = GG_ECRYPTO;
        goto out;
    }
    s_warn_mode(path, mode);
out:
    s_zpl_destroy(&root);
    if (rc != GG_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

void node_key_wipe(node_key_t *key)
{
    if (key)
        sodium_memzero(key, sizeof *key);
}

/* ---- certificates ---- */

typedef struct {
    uint8_t *buf;
    size_t size;
    size_t len;
    bool overflow;
} s_fixed_buf_t;

static int s_fixed_write(void *data, const char *buf, size_t len)
{
    s_fixed_buf_t *fb = data;
    if (fb->overflow || len > fb->size - fb->len) {
        fb->overflow = true;
        return -1;
    }
    memcpy(fb->buf + fb->len, buf, len);
    fb->len += len;
    return 0;
}

int cert_signed_bytes(const cert_t *cert, uint8_t *buf, size_t size, size_t *len)
{
    assert(cert && buf && len);
    if (!memchr(cert->name, '\0', sizeof cert->name))
        return GG_EINVAL;
    size_t name_len = strlen(cert->name);
    s_fixed_buf_t fb = {.buf = buf, .size = size};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, s_fixed_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_str(&pk, sizeof s_cert_tag - 1);
    msgpack_pack_str_body(&pk, s_cert_tag, sizeof s_cert_tag - 1);
    msgpack_pack_uint32(&pk, cert->version);
    msgpack_pack_str(&pk, name_len);
    msgpack_pack_str_body(&pk, cert->name, name_len);
    msgpack_pack_bin(&pk, CERT_PUBLIC_LEN);
    msgpack_pack_bin_body(&pk, cert->curve_public, CERT_PUBLIC_LEN);
    msgpack_pack_bin(&pk, CERT_PUBLIC_LEN);
    msgpack_pack_bin_body(&pk, cert->operator_public, CERT_PUBLIC_LEN);
    msgpack_pack_uint64(&pk, cert->issued);
    msgpack_pack_uint64(&pk, cert->expires);
    if (fb.overflow)
        return GG_ETOOBIG;
    *len = fb.len;
    return GG_OK;
}

int cert_issue(const node_key_t *key, const operator_key_t *op, uint64_t now, uint32_t valid_days,
               cert_t *out)
{
    assert(key && op && out);
    uint8_t bytes[CERT_SIGNED_MAX];
    size_t len = 0;
    memset(out, 0, sizeof *out);
    if (s_name_buf_ok(key->name, sizeof key->name) != 0 || valid_days == 0 ||
        valid_days > CERT_MAX_VALID_DAYS)
        return GG_EINVAL;
    if (!op->has_secret)
        return GG_EPERM;
    uint64_t span = (uint64_t) valid_days * CERT_DAY_SECONDS;
    if (now > UINT64_MAX - span)
        return GG_EINVAL;
    out->version = CERT_VERSION;
    memcpy(out->name, key->name, strlen(key->name) + 1);
    memcpy(out->curve_public, key->public_key, CERT_PUBLIC_LEN);
    memcpy(out->operator_public, op->public_key, CERT_PUBLIC_LEN);
    out->issued = now;
    out->expires = now + span;
    int rc = cert_signed_bytes(out, bytes, sizeof bytes, &len);
    if (rc == GG_OK)
        rc = operator_sign(op, bytes, len, out->signature);
    if (rc != GG_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

int cert_save(const cert_t *cert, const char *path)
{
    assert(cert && path);
    char text[1024];
    char curve_z85[Z85_MAX], op_z85[Z85_MAX], sig_z85[Z85_MAX];
    if (s_name_buf_ok(cert->name, sizeof cert->name) != 0 || !*path)
        return GG_EINVAL;
    s_z85_encode(cert->curve_public, CERT_PUBLIC_LEN, curve_z85);
    s_z85_encode(cert->operator_public, CERT_PUBLIC_LEN, op_z85);
    s_z85_encode(cert->signature, CERT_SIG_LEN, sig_z85);
    int n = snprintf(text, sizeof text,
                     "#   gaggle node certificate: public, signed by an operator\n"
                     "certificate\n"
                     "    version = \"%" PRIu32 "\"\n"
                     "    name = \"%s\"\n"
                     "    curve-public-key = \"%s\"\n"
                     "    operator-key = \"%s\"\n"
                     "    issued = \"%" PRIu64 "\"\n"
                     "    expires = \"%" PRIu64 "\"\n"
                     "    signature = \"%s\"\n",
                     cert->version, cert->name, curve_z85, op_z85, cert->issued, cert->expires,
                     sig_z85);
    assert(n > 0 && (size_t) n < sizeof text);
    return s_write_new(path, 0644, text, (size_t) n);
}

int cert_load(const char *path, cert_t *out)
{
    assert(path && out);
    zconfig_t *root = NULL;
    mode_t mode = 0;
    uint64_t version = 0;
    memset(out, 0, sizeof *out);
    int rc = s_load_zpl(path, &root, &mode);
    if (rc != GG_OK)
        goto out;
    if (!zconfig_locate(root, "certificate") ||
        s_parse_u64(zconfig_get(root, "certificate/version", NULL), UINT32_MAX, &version) != 0 ||
        s_get_name(root, "certificate", out->name) != 0 ||
        s_get_z85(root, "certificate/curve-public-key", out->curve_public, CERT_PUBLIC_LEN) != 0 ||
        s_get_z85(root, "certificate/operator-key", out->operator_public, CERT_PUBLIC_LEN) != 0 ||
        s_parse_u64(zconfig_get(root, "certificate/issued", NULL), UINT64_MAX, &out->issued) != 0 ||
        s_parse_u64(zconfig_get(root, "certificate/expires", NULL), UINT64_MAX, &out->expires) !=
            0 ||
        s_get_z85(root, "certificate/signature", out->signature, CERT_SIG_LEN) != 0) {
        gg_debug("cert: %s is not a valid certificate file", path);
        rc = GG_EMALFORMED;
        goto out;
    }
    out->version = (uint32_t) version;
out:
    s_zpl_destroy(&root);
    if (rc != GG_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

void cert_pack(const cert_t *cert, msgpack_packer *pk)
{
    assert(cert && pk);
    size_t name_len = strnlen(cert->name, CERT_NAME_MAX);
    msgpack_pack_map(pk, 7);
    msgpack_pack_str_with_body(pk, "v", 1);
    msgpack_pack_uint32(pk, cert->version);
    msgpack_pack_str_with_body(pk, "n", 1);
    msgpack_pack_str_with_body(pk, cert->name, name_len);
    msgpack_pack_str_with_body(pk, "k", 1);
    msgpack_pack_bin_with_body(pk, cert->curve_public, CERT_PUBLIC_LEN);
    msgpack_pack_str_with_body(pk, "o", 1);
    msgpack_pack_bin_with_body(pk, cert->operator_public, CERT_PUBLIC_LEN);
    msgpack_pack_str_with_body(pk, "i", 1);
    msgpack_pack_uint64(pk, cert->issued);
    msgpack_pack_str_with_body(pk, "e", 1);
    msgpack_pack_uint64(pk, cert->expires);
    msgpack_pack_str_with_body(pk, "sig", 3);
    msgpack_pack_bin_with_body(pk, cert->signature, CERT_SIG_LEN);
}

static bool s_key_is(const msgpack_object *key, const char *name)
{
    size_t len = strlen(name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len &&
           memcmp(key->via.str.ptr, name, len) == 0;
}

static int s_obj_bin(const msgpack_object *obj, uint8_t *out, size_t len)
{
    if (obj->type != MSGPACK_OBJECT_BIN || obj->via.bin.size != len)
        return GG_EMALFORMED;
    memcpy(out, obj->via.bin.ptr, len);
    return GG_OK;
}

static int s_obj_uint(const msgpack_object *obj, uint64_t max, uint64_t *out)
{
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER || obj->via.u64 > max)
        return GG_EMALFORMED;
    *out = obj->via.u64;
    return GG_OK;
}

int cert_unpack(const msgpack_object *obj, cert_t *out)
{
    assert(obj && out);
    enum { F_V = 1, F_N = 2, F_K = 4, F_O = 8, F_I = 16, F_E = 32, F_SIG = 64, F_ALL = 127 };
    unsigned seen = 0;
    uint64_t version = 0;
    int rc = GG_OK;
    memset(out, 0, sizeof *out);
    if (obj->type != MSGPACK_OBJECT_MAP || obj->via.map.size > CERT_UNPACK_MAX_FIELDS)
        return GG_EMALFORMED;
    for (uint32_t i = 0; i < obj->via.map.size && rc == GG_OK; i++) {
        const msgpack_object *k = &obj->via.map.ptr[i].key;
        const msgpack_object *v = &obj->via.map.ptr[i].val;
        unsigned bit = 0;
        if (s_key_is(k, "v")) {
            bit = F_V;
            rc = s_obj_uint(v, UINT32_MAX, &version);
        } else if (s_key_is(k, "n")) {
            bit = F_N;
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
                v->via.str.size > CERT_NAME_MAX) {
                rc = GG_EMALFORMED;
            } else {
                memcpy(out->name, v->via.str.ptr, v->via.str.size);
                out->name[v->via.str.size] = '\0';
                /* An embedded NUL or a bad character is malformed. */
                if (strlen(out->name) != v->via.str.size || cert_check_name(out->name) != 0)
                    rc = GG_EMALFORMED;
            }
        } else if (s_key_is(k, "k")) {
            bit = F_K;
            rc = s_obj_bin(v, out->curve_public, CERT_PUBLIC_LEN);
        } else if (s_key_is(k, "o")) {
            bit = F_O;
            rc = s_obj_bin(v, out->operator_public, CERT_PUBLIC_LEN);
        } else if (s_key_is(k, "i")) {
            bit = F_I;
            rc = s_obj_uint(v, UINT64_MAX, &out->issued);
        } else if (s_key_is(k, "e")) {
            bit = F_E;
            rc = s_obj_uint(v, UINT64_MAX, &out->expires);
        } else if (s_key_is(k, "sig")) {
            bit = F_SIG;
            rc = s_obj_bin(v, out->signature, CERT_SIG_LEN);
        } else if (k->type != MSGPACK_OBJECT_STR) {
            rc = GG_EMALFORMED; /* unknown string keys are ignored (newer fields) */
        }
        if (bit && (seen & bit))
            rc = GG_EMALFORMED; /* duplicate key */
        seen |= bit;
    }
    if (rc == GG_OK && seen != F_ALL)
        rc = GG_EMALFORMED;
    if (rc == GG_OK)
        out->version = (uint32_t) version;
    else
        memset(out, 0, sizeof *out);
    return rc;
}

/* ---- trust ---- */

struct _trust_t {
    uint8_t operators[TRUST_MAX_OPERATORS][CERT_PUBLIC_LEN];
    size_t operator_count;
    zhash_t *revoked_names; /* name -> s_present */
    zhash_t *revoked_keys;  /* Z85 of the curve key -> s_present */
};

static char s_present[] = "revoked"; /* zhash items must be non-NULL */

void trust_swap(trust_t *a, trust_t *b)
{
    trust_t tmp = *a;
    *a = *b;
    *b = tmp;
}

trust_t *trust_new(void)
{
    trust_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->revoked_names = zhash_new();
    self->revoked_keys = zhash_new();
    if (!self->revoked_names || !self->revoked_keys)
        trust_destroy(&self);
    return self;
}

void trust_destroy(trust_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    trust_t *self = *self_p;
    zhash_destroy(&self->revoked_names);
    zhash_destroy(&self->revoked_keys);
    free(self);
    *self_p = NULL;
}

static bool s_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

int trust_load_dir(trust_t *self, const char *dir, size_t *count)
{
    assert(self && dir);
    size_t loaded = 0;
    int rc = GG_OK;
    DIR *d = opendir(dir);
    if (!d) {
        gg_error("cert: cannot read operators directory %s: %s", dir, strerror(errno));
        if (count)
            *count = 0;
        return GG_ECONFIG;
    }
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (!s_has_suffix(entry->d_name, ".pub") || entry->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (n < 0 || (size_t) n >= sizeof path) {
            gg_warn("cert: skipping %s/%s: path too long", dir, entry->d_name);
            continue;
        }
        operator_key_t key;
        int err = operator_key_load(path, &key);
        if (err != GG_OK) {
            gg_warn("cert: skipping operator key %s: %s", path, gg_strerror(err));
            continue;
        }
        err = trust_add_operator(self, key.public_key);
        if (err != GG_OK) {
            gg_error("cert: cannot trust %s: more than %d operator keys", path,
                     TRUST_MAX_OPERATORS);
            operator_key_wipe(&key);
            rc = err;
            break;
        }
        gg_debug("cert: trusting operator %s from %s", key.name, path);
        operator_key_wipe(&key);
        loaded++;
    }
    closedir(d);
    if (rc == GG_OK && loaded == 0) {
        gg_error("cert: no operator public key (*.pub) could be loaded from %s", dir);
        rc = GG_ECONFIG;
    }
    if (count)
        *count = loaded;
    return rc;
}

int trust_add_operator(trust_t *self, const uint8_t public_key[CERT_PUBLIC_LEN])
{
    assert(self && public_key);
    if (trust_is_operator(self, public_key))
        return GG_OK;
    if (self->operator_count >= TRUST_MAX_OPERATORS)
        return GG_ETOOBIG;
    memcpy(self->operators[self->operator_count++], public_key, CERT_PUBLIC_LEN);
    return GG_OK;
}

bool trust_is_operator(const trust_t *self, const uint8_t public_key[CERT_PUBLIC_LEN])
{
    assert(self && public_key);
    for (size_t i = 0; i < self->operator_count; i++)
        if (memcmp(self->operators[i], public_key, CERT_PUBLIC_LEN) == 0)
            return true;
    return false;
}

size_t trust_operator_count(const trust_t *self)
{
    assert(self);
    return self->operator_count;
}

static size_t s_revoked_count(const trust_t *self)
{
    return zhash_size(self->revoked_names) + zhash_size(self->revoked_keys);
}

static int s_revoke(trust_t *self, zhash_t *set, const char *item)
{
    if (zhash_lookup(set, item))
        return GG_OK;
    if (s_revoked_count(self) >= TRUST_MAX_REVOKED)
        return GG_ETOOBIG;
    if (zhash_insert(set, item, s_present) != 0)
        return GG_ENOMEM;
    return GG_OK;
}

int trust_revoke_name(trust_t *self, const char *name)
{
    assert(self);
    if (cert_check_name(name) != 0)
        return GG_EINVAL;
    return s_revoke(self, self->revoked_names, name);
}

int trust_revoke_key(trust_t *self, const uint8_t curve_public[CERT_PUBLIC_LEN])
{
    assert(self && curve_public);
    char z85[Z85_MAX];
    s_z85_encode(curve_public, CERT_PUBLIC_LEN, z85);
    return s_revoke(self, self->revoked_keys, z85);
}

bool trust_is_revoked(const trust_t *self, const cert_t *cert)
{
    assert(self && cert);
    char z85[Z85_MAX];
    if (memchr(cert->name, '\0', sizeof cert->name) &&
        zhash_lookup(self->revoked_names, cert->name))
        return true;
    s_z85_encode(cert->curve_public, CERT_PUBLIC_LEN, z85);
    return zhash_lookup(self->revoked_keys, z85) != NULL;
}

int trust_verify_cert(const trust_t *self, const cert_t *cert, uint64_t now)
{
    assert(self && cert);
    uint8_t bytes[CERT_SIGNED_MAX];
    size_t len = 0;
    if (cert->version != CERT_VERSION)
        return GG_EMALFORMED;
    if (s_name_buf_ok(cert->name, sizeof cert->name) != 0)
        return GG_EMALFORMED;
    if (!trust_is_operator(self, cert->operator_public))
        return GG_EPERM;
    if (cert_signed_bytes(cert, bytes, sizeof bytes, &len) != GG_OK)
        return GG_EMALFORMED;
    if (operator_verify(cert->operator_public, bytes, len, cert->signature) != GG_OK)
        return GG_ECRYPTO;
    /* Not yet valid (now < issued - allowance, without underflow) or expired. */
    if ((cert->issued > CERT_SKEW_ALLOWANCE && now < cert->issued - CERT_SKEW_ALLOWANCE) ||
        now >= cert->expires)
        return GG_EEXPIRED;
    if (trust_is_revoked(self, cert))
        return GG_EREVOKED;
    return GG_OK;
}
