/*
 * cert.h: operator keys, node keys and node certificates; the trust store.
 *
 * An operator holds an Ed25519 key pair (libsodium crypto_sign). A node holds
 * a CURVE (X25519, crypto_box) key pair: its public key is the node's id and
 * its CurveZMQ client key. A node certificate binds {name, curve public key,
 * validity} and is signed by an operator. Agents trust the operator public
 * keys found in --operators DIR and a set of revocations (by node name or by
 * curve key) that spreads by gossip.
 *
 * Files (text, CZMQ ZPL format; keys in Z85):
 *   DIR/NAME.pub   operator public key           (mode 0644)
 *   DIR/NAME.key   operator secret + public key  (mode 0600)
 *   DIR/NAME.cert  node certificate              (mode 0644)
 *   DIR/NAME.key   node CURVE secret + public    (mode 0600)
 * Secret keys are wiped from memory (sodium_memzero) by the *_wipe calls.
 */
#ifndef GG_CERT_H
#define GG_CERT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CERT_VERSION        1
#define CERT_NAME_MAX       64 /* bytes; [A-Za-z0-9._-], starting alphanumeric */
#define CERT_PUBLIC_LEN     32 /* curve and ed25519 public keys */
#define CERT_SIG_LEN        64
#define OPERATOR_SECRET_LEN 64 /* libsodium ed25519 secret key */
#define NODE_SECRET_LEN     32

typedef struct {
    char name[CERT_NAME_MAX + 1];
    uint8_t public_key[CERT_PUBLIC_LEN];
    uint8_t secret_key[OPERATOR_SECRET_LEN]; /* all zero when only the public key is loaded */
    bool has_secret;
} operator_key_t;

typedef struct {
    char name[CERT_NAME_MAX + 1];
    uint8_t public_key[CERT_PUBLIC_LEN]; /* CURVE public key: the node id */
    uint8_t secret_key[NODE_SECRET_LEN];
} node_key_t;

typedef struct {
    uint32_t version;
    char name[CERT_NAME_MAX + 1];
    uint8_t curve_public[CERT_PUBLIC_LEN];
    uint8_t operator_public[CERT_PUBLIC_LEN];
    uint64_t issued;  /* unix seconds */
    uint64_t expires; /* unix seconds */
    uint8_t signature[CERT_SIG_LEN];
} cert_t;

/* 0 when name is a valid node/operator name. */
int cert_check_name(const char *name);

/* ---- operator keys ---- */
int operator_key_generate(const char *name, operator_key_t *out);
/* Writes DIR/NAME.key (0600, created exclusively: an existing file is
 * GG_EEXIST) and DIR/NAME.pub. Creates DIR (0700) if missing. */
int operator_key_save(const operator_key_t *key, const char *dir);
/* Loads a .key (secret) or a .pub (public only) file. */
int operator_key_load(const char *path, operator_key_t *out);
void operator_key_wipe(operator_key_t *key);
/* Detached Ed25519 signature of data. GG_EPERM without a secret key. */
int operator_sign(const operator_key_t *key, const void *data, size_t len,
                  uint8_t sig[CERT_SIG_LEN]);
/* 0 when sig is a valid signature of data by public_key, else GG_ECRYPTO. */
int operator_verify(const uint8_t public_key[CERT_PUBLIC_LEN], const void *data, size_t len,
                    const uint8_t sig[CERT_SIG_LEN]);

/* ---- node keys and certificates ---- */
int node_key_generate(const char *name, node_key_t *out);
int node_key_save(const node_key_t *key, const char *path); /* 0600, exclusive */
int node_key_load(const char *path, node_key_t *out);
void node_key_wipe(node_key_t *key);

/* Fills and signs a certificate for key, valid from now for valid_days. */
int cert_issue(const node_key_t *key, const operator_key_t *op, uint64_t now, uint32_t valid_days,
               cert_t *out);
int cert_save(const cert_t *cert, const char *path);
int cert_load(const char *path, cert_t *out);
/* The bytes the signature covers (a canonical msgpack array of the fields
 * without the signature), written into buf; *len receives the length. */
int cert_signed_bytes(const cert_t *cert, uint8_t *buf, size_t size, size_t *len);
/* Wire form: a msgpack map. Decode checks every field's type and length. */
void cert_pack(const cert_t *cert, msgpack_packer *pk);
int cert_unpack(const msgpack_object *obj, cert_t *out);

/* ---- trust ---- */
typedef struct _trust_t trust_t;

trust_t *trust_new(void);
void trust_destroy(trust_t **self_p);
/* Adds every DIR/ *.pub operator key; returns the count loaded in *count.
 * A directory with no readable key is GG_ECONFIG. */
int trust_load_dir(trust_t *self, const char *dir, size_t *count);
/* Exchanges the contents of two trust stores, so that holders of a pointer
 * to `a` see the new set (a reload builds a fresh store, then swaps). */
void trust_swap(trust_t *a, trust_t *b);
int trust_add_operator(trust_t *self, const uint8_t public_key[CERT_PUBLIC_LEN]);
bool trust_is_operator(const trust_t *self, const uint8_t public_key[CERT_PUBLIC_LEN]);
size_t trust_operator_count(const trust_t *self);
/* Revocations: by name or by curve key. Idempotent. */
int trust_revoke_name(trust_t *self, const char *name);
int trust_revoke_key(trust_t *self, const uint8_t curve_public[CERT_PUBLIC_LEN]);
bool trust_is_revoked(const trust_t *self, const cert_t *cert);
/* Full check of a certificate at time now (unix seconds): version, name,
 * signer trusted (GG_EPERM otherwise), signature (GG_ECRYPTO), validity
 * window (GG_EEXPIRED), revocation (GG_EREVOKED). */
int trust_verify_cert(const trust_t *self, const cert_t *cert, uint64_t now);

#endif
