/*
 * signed.h: operator-signed JSON documents (plans and operator commands).
 *
 * Every mutation a fleet accepts is a signed document:
 *
 *   {"payload": {...}, "signature": {"key": "<hex Ed25519 public key>",
 *                                    "sig": "<hex Ed25519 signature>"}}
 *
 * The signature covers the canonical bytes of the payload: jansson's compact
 * dump with keys sorted (JSON_SORT_KEYS | JSON_COMPACT), UTF-8 as is, no
 * trailing newline. Integers print as plain decimals and reals with 17
 * significant digits, so a parsed payload dumps back to the same bytes; a
 * verifier therefore re-canonicalises what it parsed instead of trusting the
 * sender's spacing or key order. Parse bodies with signed_parse, which
 * refuses duplicate keys (two readers must never see different values).
 *
 * A plan's payload is its canonical resolved form (plan.h); its id is
 * signed_hash_hex of the payload. An operator command's payload is:
 *
 *   {"type": pause|resume|cancel|retry|approve|mark|revoke|drain|force-leave,
 *    "plan": "<plan id>", "targets": ["<ref>", ...], "state": "<state>",
 *    "node": "<node name>", "subject": "<node name or key>",
 *    "nonce": "<16 random bytes, hex>", "issued": <unix milliseconds>}
 *
 * with exactly the fields its type needs (see signed_command_check).
 */
#ifndef GG_SIGNED_H
#define GG_SIGNED_H

#include "cert.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGNED_DOC_MAX       (512u << 20) /* bytes of a signed document's JSON text */
#define SIGNED_HASH_HEX_LEN  64           /* BLAKE2b-256 in hex */
#define SIGNED_NONCE_HEX_LEN 32           /* 16 bytes in hex */
#define SIGNED_TARGETS_MAX   1000000      /* refs in one command */
#define SIGNED_FIELD_MAX     1024         /* bytes in a command's string field */

/* jansson flags of the canonical form. */
#define SIGNED_CANON_FLAGS (JSON_SORT_KEYS | JSON_COMPACT)

/* Canonical bytes of a JSON value (object or array) in a new malloc'd,
 * NUL-terminated buffer; *len excludes the NUL. Returns 0, GG_EINVAL (not a
 * container), GG_ETOOBIG (over SIGNED_DOC_MAX) or GG_ENOMEM. */
int signed_canonical(const json_t *value, char **bytes, size_t *len);

/* Lower-case hex of BLAKE2b-256 (crypto_generichash, 32 bytes) of the value's
 * canonical bytes, NUL-terminated in out. Returns 0 or an error as above. */
int signed_hash_hex(const json_t *value, char out[SIGNED_HASH_HEX_LEN + 1]);

/* Parses a signed document's text: strict JSON (duplicate keys refused), at
 * most SIGNED_DOC_MAX bytes. Does not verify anything. Returns 0 and a new
 * reference in *doc, GG_ETOOBIG, or GG_EMALFORMED. */
int signed_parse(const char *text, size_t len, json_t **doc);

/* Signs payload (an object; a reference is taken) with the operator's secret
 * key into a new document in *doc. Returns 0, GG_EPERM (public key only),
 * GG_EINVAL, GG_ETOOBIG or GG_ENOMEM. */
int signed_sign(json_t *payload, const operator_key_t *key, json_t **doc);

/* Checks a document's shape and signature. Returns 0 when the signer is one
 * of trust's operators and the signature matches the payload's canonical
 * bytes; then *payload (may be NULL) borrows the payload from doc and
 * signer (may be NULL) receives the public key. GG_EMALFORMED for a bad
 * shape (extra fields, bad hex, payload not an object), GG_EPERM for a key
 * that is not a trusted operator, GG_ECRYPTO for a bad signature. */
int signed_verify(const json_t *doc, const trust_t *trust, json_t **payload,
                  uint8_t signer[CERT_PUBLIC_LEN]);

/* ---- large documents, without a JSON tree of the whole ----
 *
 * A signed document in canonical form is the bytes
 *   {"payload":PAYLOAD,"signature":{"key":"<64 hex>","sig":"<128 hex>"}}
 * with PAYLOAD the payload's canonical bytes (what the CLI sends). For such a
 * text the signature and the hash apply to a slice of it, so a verifier
 * need not parse and re-dump the whole document: it checks the slice is
 * canonical piece by piece (plan_from_canonical does for plans). */

/* Finds the payload slice and the signature of a text in the canonical
 * envelope form above. Returns 0 with the slice [*payload_off, *payload_off +
 * *payload_len) (starting with '{') and the decoded key and signature, or
 * GG_EMALFORMED when the text does not have that form (it may still be a
 * valid signed document: use signed_parse and signed_verify). Checks nothing
 * inside the payload. */
int signed_split(const char *text, size_t len, size_t *payload_off, size_t *payload_len,
                 uint8_t key[CERT_PUBLIC_LEN], uint8_t sig[CERT_SIG_LEN]);

/* Verifies sig by key over bytes (a payload's canonical bytes). Returns 0,
 * GG_EPERM (key not a trusted operator) or GG_ECRYPTO (bad signature). */
int signed_verify_bytes(const char *bytes, size_t len, const uint8_t key[CERT_PUBLIC_LEN],
                        const uint8_t sig[CERT_SIG_LEN], const trust_t *trust);

/* Signs a payload given as its canonical bytes and writes the signed
 * document's canonical text (the envelope above) into a new malloc'd,
 * NUL-terminated buffer; equal to signed_canonical of signed_sign's document.
 * Returns 0, GG_EPERM (public key only), GG_EINVAL, GG_ETOOBIG or GG_ENOMEM. */
int signed_sign_bytes(const char *payload, size_t len, const operator_key_t *key, char **doc,
                      size_t *doc_len);

/* ---- operator commands ---- */

typedef struct {
    const char *type;           /* see the list above; required */
    const char *plan;           /* plan id, for plan commands */
    const char *const *targets; /* refs (approve, retry, mark) */
    size_t target_count;
    const char *state;                    /* retry: failed|needs_review; mark: succeeded|skipped */
    const char *node;                     /* drain, force-leave */
    const char *subject;                  /* revoke: node name or key */
    char nonce[SIGNED_NONCE_HEX_LEN + 1]; /* filled by build, read by check */
    uint64_t issued;                      /* unix milliseconds: orders commands */
} signed_command_t;

/* Builds a command payload with a fresh random nonce and `issued` = now, after
 * checking it as signed_command_check does. cmd->nonce is filled in.
 * Returns 0 and a new object in *payload, GG_EINVAL (with a reason in err
 * when err is not NULL) or GG_ENOMEM. */
int signed_command_build(signed_command_t *cmd, uint64_t now, json_t **payload, char *err,
                         size_t errlen);

/* Checks a command payload: known type, exactly the fields that type takes,
 * each of the right type and bounded, a 32-hex-digit nonce, a plan id of 64
 * hex digits. Fills *cmd with pointers borrowed from payload (cmd->targets is
 * NOT filled: read payload's "targets" array). Returns 0 or GG_EMALFORMED
 * with a reason in err. */
int signed_command_check(const json_t *payload, signed_command_t *cmd, char *err, size_t errlen);

/* Hex helpers: 0 or GG_EMALFORMED (wrong length or not hex). */
int signed_hex_decode(const char *hex, uint8_t *out, size_t len);
void signed_hex_encode(const uint8_t *data, size_t len, char *out); /* out: 2*len+1 */

#endif
