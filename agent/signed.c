/*
 * signed.c: canonical JSON, Ed25519 signatures over it, operator commands
 * (see signed.h).
 *
 * The per-type field table below is the one place that says which fields a
 * command carries; build and check both use it, so a command this node
 * builds is always one every node accepts.
 */
#include "signed.h"

#include "gg_error.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CANON_FLAGS SIGNED_CANON_FLAGS

/* The canonical envelope around a payload (signed.h). */
#define S_ENV_HEAD "{\"payload\":"
#define S_ENV_KEY  ",\"signature\":{\"key\":\""
#define S_ENV_SIG  "\",\"sig\":\""
#define S_ENV_END  "\"}}"
#define S_ENV_TAIL_LEN                                                                             \
    (sizeof S_ENV_KEY - 1 + 2 * CERT_PUBLIC_LEN + sizeof S_ENV_SIG - 1 + 2 * CERT_SIG_LEN +        \
     sizeof S_ENV_END - 1)

/* The dump's growing buffer: one pass over the value (a large plan's
 * document is not dumped twice, once to size it and once to write it). */
typedef struct {
    char *buf;
    size_t len, cap;
    int error;
} s_dump_t;

static int s_dump_append(const char *data, size_t size, void *arg)
{
    s_dump_t *d = arg;
    if (size > SIGNED_DOC_MAX - d->len) {
        d->error = GG_ETOOBIG;
        return -1;
    }
    if (d->len + size + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + size + 1)
            cap *= 2;
        char *grown = realloc(d->buf, cap);
        if (!grown) {
            d->error = GG_ENOMEM;
            return -1;
        }
        d->buf = grown;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, size);
    d->len += size;
    return 0;
}

int signed_canonical(const json_t *value, char **bytes, size_t *len)
{
    *bytes = NULL;
    *len = 0;
    if (!json_is_object(value) && !json_is_array(value))
        return GG_EINVAL;
    s_dump_t d = {0};
    if (json_dump_callback(value, s_dump_append, &d, S_CANON_FLAGS) != 0 || !d.buf) {
        free(d.buf);
        return d.error ? d.error : GG_ENOMEM;
    }
    d.buf[d.len] = '\0';
    *bytes = d.buf;
    *len = d.len;
    return 0;
}

void signed_hex_encode(const uint8_t *data, size_t len, char *out)
{
    sodium_bin2hex(out, 2 * len + 1, data, len);
}

int signed_hex_decode(const char *hex, uint8_t *out, size_t len)
{
    if (!hex || strlen(hex) != 2 * len)
        return GG_EMALFORMED;
    for (const char *p = hex; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return GG_EMALFORMED;
    size_t got = 0;
    if (sodium_hex2bin(out, len, hex, 2 * len, NULL, &got, NULL) != 0 || got != len)
        return GG_EMALFORMED;
    return 0;
}

int signed_hash_hex(const json_t *value, char out[SIGNED_HASH_HEX_LEN + 1])
{
    char *bytes = NULL;
    size_t len = 0;
    out[0] = '\0';
    int rc = signed_canonical(value, &bytes, &len);
    if (rc != 0)
        return rc;
    uint8_t hash[32];
    crypto_generichash(hash, sizeof hash, (const unsigned char *) bytes, len, NULL, 0);
    signed_hex_encode(hash, sizeof hash, out);
    free(bytes);
    return 0;
}

int signed_parse(const char *text, size_t len, json_t **doc)
{
    *doc = NULL;
    if (len > SIGNED_DOC_MAX)
        return GG_ETOOBIG;
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return GG_EMALFORMED;
    if (!json_is_object(v)) {
        json_decref(v);
        return GG_EMALFORMED;
    }
    *doc = v;
    return 0;
}

int signed_sign(json_t *payload, const operator_key_t *key, json_t **doc)
{
    *doc = NULL;
    if (!json_is_object(payload) || !key)
        return GG_EINVAL;
    if (!key->has_secret)
        return GG_EPERM;
    char *bytes = NULL;
    size_t len = 0;
    int rc = signed_canonical(payload, &bytes, &len);
    if (rc != 0)
        return rc;
    uint8_t sig[CERT_SIG_LEN];
    char sig_hex[2 * CERT_SIG_LEN + 1], key_hex[2 * CERT_PUBLIC_LEN + 1];
    if ((rc = operator_sign(key, bytes, len, sig)) != 0)
        goto out;
    signed_hex_encode(sig, sizeof sig, sig_hex);
    signed_hex_encode(key->public_key, CERT_PUBLIC_LEN, key_hex);
    *doc = json_pack("{s:O,s:{s:s,s:s}}", "payload", payload, "signature", "key", key_hex, "sig",
                     sig_hex);
    if (!*doc)
        rc = GG_ENOMEM;
out:
    free(bytes);
    return rc;
}

int signed_verify(const json_t *doc, const trust_t *trust, json_t **payload,
                  uint8_t signer[CERT_PUBLIC_LEN])
{
    if (payload)
        *payload = NULL;
    json_t *p = json_object_get(doc, "payload");
    json_t *s = json_object_get(doc, "signature");
    if (!json_is_object(doc) || json_object_size(doc) != 2 || !json_is_object(p) ||
        !json_is_object(s) || json_object_size(s) != 2)
        return GG_EMALFORMED;
    uint8_t key[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    if (signed_hex_decode(json_string_value(json_object_get(s, "key")), key, sizeof key) != 0 ||
        signed_hex_decode(json_string_value(json_object_get(s, "sig")), sig, sizeof sig) != 0)
        return GG_EMALFORMED;
    if (!trust || !trust_is_operator(trust, key))
        return GG_EPERM;
    char *bytes = NULL;
    size_t len = 0;
    int rc = signed_canonical(p, &bytes, &len);
    if (rc == GG_ETOOBIG)
        return GG_EMALFORMED;
    if (rc != 0)
        return rc;
    rc = operator_verify(key, bytes, len, sig) == 0 ? 0 : GG_ECRYPTO;
    free(bytes);
    if (rc == 0) {
        if (payload)
            *payload = p;
        if (signer)
            memcpy(signer, key, sizeof key);
    }
    return rc;
}

/* ---- large documents ---- */

static int s_hex_at(const char *text, uint8_t *out, size_t len)
{
    char hex[2 * CERT_SIG_LEN + 1];
    if (2 * len >= sizeof hex)
        return GG_EINVAL;
    memcpy(hex, text, 2 * len);
    hex[2 * len] = '\0';
    return signed_hex_decode(hex, out, len);
}

int signed_split(const char *text, size_t len, size_t *payload_off, size_t *payload_len,
                 uint8_t key[CERT_PUBLIC_LEN], uint8_t sig[CERT_SIG_LEN])
{
    const size_t head = sizeof S_ENV_HEAD - 1;
    if (!text || len > SIGNED_DOC_MAX || len < head + 2 + S_ENV_TAIL_LEN ||
        memcmp(text, S_ENV_HEAD, head) != 0 || text[head] != '{')
        return GG_EMALFORMED;
    const char *t = text + len - S_ENV_TAIL_LEN;
    if (t[-1] != '}' || memcmp(t, S_ENV_KEY, sizeof S_ENV_KEY - 1) != 0)
        return GG_EMALFORMED;
    t += sizeof S_ENV_KEY - 1;
    if (s_hex_at(t, key, CERT_PUBLIC_LEN) != 0)
        return GG_EMALFORMED;
    t += 2 * CERT_PUBLIC_LEN;
    if (memcmp(t, S_ENV_SIG, sizeof S_ENV_SIG - 1) != 0)
        return GG_EMALFORMED;
    t += sizeof S_ENV_SIG - 1;
    if (s_hex_at(t, sig, CERT_SIG_LEN) != 0)
        return GG_EMALFORMED;
    t += 2 * CERT_SIG_LEN;
    if (memcmp(t, S_ENV_END, sizeof S_ENV_END - 1) != 0)
        return GG_EMALFORMED;
    *payload_off = head;
    *payload_len = len - head - S_ENV_TAIL_LEN;
    return 0;
}

int signed_verify_bytes(const char *bytes, size_t len, const uint8_t key[CERT_PUBLIC_LEN],
                        const uint8_t sig[CERT_SIG_LEN], const trust_t *trust)
{
    if (!trust || !trust_is_operator(trust, key))
        return GG_EPERM;
    return operator_verify(key, bytes, len, sig) == 0 ? 0 : GG_ECRYPTO;
}

int signed_sign_bytes(const char *payload, size_t len, const operator_key_t *key, char **doc,
                      size_t *doc_len)
{
    *doc = NULL;
    *doc_len = 0;
    if (!payload || !key || len < 2 || payload[0] != '{')
        return GG_EINVAL;
    if (!key->has_secret)
        return GG_EPERM;
    size_t total = sizeof S_ENV_HEAD - 1 + len + S_ENV_TAIL_LEN;
    if (total > SIGNED_DOC_MAX)
        return GG_ETOOBIG;
    uint8_t sig[CERT_SIG_LEN];
    int rc = operator_sign(key, payload, len, sig);
    if (rc != 0)
        return rc;
    char *out = malloc(total + 1);
    if (!out)
        return GG_ENOMEM;
    char *w = out;
    memcpy(w, S_ENV_HEAD, sizeof S_ENV_HEAD - 1);
    w += sizeof S_ENV_HEAD - 1;
    memcpy(w, payload, len);
    w += len;
    memcpy(w, S_ENV_KEY, sizeof S_ENV_KEY - 1);
    w += sizeof S_ENV_KEY - 1;
    signed_hex_encode(key->public_key, CERT_PUBLIC_LEN, w);
    w += 2 * CERT_PUBLIC_LEN;
    memcpy(w, S_ENV_SIG, sizeof S_ENV_SIG - 1);
    w += sizeof S_ENV_SIG - 1;
    signed_hex_encode(sig, CERT_SIG_LEN, w);
    w += 2 * CERT_SIG_LEN;
    memcpy(w, S_ENV_END, sizeof S_ENV_END);
    *doc = out;
    *doc_len = total;
    return 0;
}

/* ---- commands ---- */

enum { S_NO = 0, S_OPT = 1, S_REQ = 2 };

typedef struct {
    const char *type;
    int plan, targets, state, node, subject;
    const char *states[3]; /* accepted values of state */
} s_cmd_rule_t;

static const s_cmd_rule_t s_rules[] = {
    {"pause", S_REQ, S_NO, S_NO, S_NO, S_NO, {NULL}},
    {"resume", S_REQ, S_NO, S_NO, S_NO, S_NO, {NULL}},
    {"cancel", S_REQ, S_NO, S_NO, S_NO, S_NO, {NULL}},
    {"retry", S_REQ, S_OPT, S_OPT, S_NO, S_NO, {"failed", "needs_review", NULL}},
    {"approve", S_REQ, S_OPT, S_NO, S_NO, S_NO, {NULL}},
    {"mark", S_REQ, S_REQ, S_REQ, S_NO, S_NO, {"succeeded", "skipped", NULL}},
    {"revoke", S_NO, S_NO, S_NO, S_NO, S_REQ, {NULL}},
    {"drain", S_NO, S_NO, S_NO, S_REQ, S_NO, {NULL}},
    {"force-leave", S_NO, S_NO, S_NO, S_REQ, S_NO, {NULL}},
};

static const s_cmd_rule_t *s_rule(const char *type)
{
    for (size_t i = 0; type && i < sizeof s_rules / sizeof s_rules[0]; i++)
        if (!strcmp(s_rules[i].type, type))
            return &s_rules[i];
    return NULL;
}

static int s_bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_bad(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return GG_EMALFORMED;
}

static bool s_is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* A bounded, NUL-free, non-empty string field. */
static bool s_good_string(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0 &&
           json_string_length(v) <= SIGNED_FIELD_MAX &&
           strlen(json_string_value(v)) == json_string_length(v);
}

static int s_check_field(const json_t *payload, const char *field, int rule, char *err,
                         size_t errlen)
{
    json_t *v = json_object_get(payload, field);
    if (rule == S_NO && v)
        return s_bad(err, errlen, "field '%s' is not allowed in this command", field);
    if (rule == S_REQ && !v)
        return s_bad(err, errlen, "field '%s' is required", field);
    return 0;
}

int signed_command_check(const json_t *payload, signed_command_t *cmd, char *err, size_t errlen)
{
    memset(cmd, 0, sizeof *cmd);
    if (err && errlen)
        err[0] = '\0';
    if (!json_is_object(payload))
        return s_bad(err, errlen, "a command must be a JSON object");
    const char *type = json_string_value(json_object_get(payload, "type"));
    const s_cmd_rule_t *r = s_rule(type);
    if (!r)
        return s_bad(err, errlen, "unknown command type '%.64s'", type ? type : "(none)");
    int rc;
    if ((rc = s_check_field(payload, "plan", r->plan, err, errlen)) ||
        (rc = s_check_field(payload, "targets", r->targets, err, errlen)) ||
        (rc = s_check_field(payload, "state", r->state, err, errlen)) ||
        (rc = s_check_field(payload, "node", r->node, err, errlen)) ||
        (rc = s_check_field(payload, "subject", r->subject, err, errlen)))
        return rc;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *) payload, key, v)
    {
        if (strcmp(key, "type") && strcmp(key, "plan") && strcmp(key, "targets") &&
            strcmp(key, "state") && strcmp(key, "node") && strcmp(key, "subject") &&
            strcmp(key, "nonce") && strcmp(key, "issued"))
            return s_bad(err, errlen, "unknown field '%.64s'", key);
    }
    cmd->type = r->type;
    json_t *plan = json_object_get(payload, "plan");
    if (plan) {
        if (!s_is_hex(json_string_value(plan), SIGNED_HASH_HEX_LEN))
            return s_bad(err, errlen, "plan must be a plan id (64 lower-case hex digits)");
        cmd->plan = json_string_value(plan);
    }
    json_t *targets = json_object_get(payload, "targets");
    if (targets) {
        if (!json_is_array(targets) || json_array_size(targets) > SIGNED_TARGETS_MAX)
            return s_bad(err, errlen, "targets must be a list of at most %u refs",
                         SIGNED_TARGETS_MAX);
        if (r->targets == S_REQ && json_array_size(targets) == 0)
            return s_bad(err, errlen, "targets must name at least one target");
        size_t i;
        json_array_foreach(targets, i, v)
        {
            if (!s_good_string(v))
                return s_bad(err, errlen, "targets[%zu] must be a non-empty string", i);
        }
        cmd->target_count = json_array_size(targets);
    }
    json_t *state = json_object_get(payload, "state");
    if (state) {
        const char *s = json_string_value(state);
        bool ok = false;
        for (size_t i = 0; s && i < 3 && r->states[i]; i++)
            ok = ok || !strcmp(s, r->states[i]);
        if (!ok)
            return s_bad(err, errlen, "state '%.32s' is not valid for %s", s ? s : "(none)",
                         r->type);
        cmd->state = s;
    }
    json_t *node = json_object_get(payload, "node");
    if (node) {
        if (!s_good_string(node) || cert_check_name(json_string_value(node)) != 0)
            return s_bad(err, errlen, "node must be a node name");
        cmd->node = json_string_value(node);
    }
    json_t *subject = json_object_get(payload, "subject");
    if (subject) {
        if (!s_good_string(subject))
            return s_bad(err, errlen, "subject must be a node name or key");
        cmd->subject = json_string_value(subject);
    }
    const char *nonce = json_string_value(json_object_get(payload, "nonce"));
    if (!s_is_hex(nonce, SIGNED_NONCE_HEX_LEN))
        return s_bad(err, errlen, "nonce must be %d lower-case hex digits", SIGNED_NONCE_HEX_LEN);
    memcpy(cmd->nonce, nonce, SIGNED_NONCE_HEX_LEN + 1);
    json_t *issued = json_object_get(payload, "issued");
    if (!json_is_integer(issued) || json_integer_value(issued) < 0)
        return s_bad(err, errlen, "issued must be a unix time in milliseconds");
    cmd->issued = (uint64_t) json_integer_value(issued);
    return 0;
}

int signed_command_build(signed_command_t *cmd, uint64_t now, json_t **payload, char *err,
                         size_t errlen)
{
    *payload = NULL;
    int rc = 0;
    json_t *p = NULL, *t = NULL;
    if (sodium_init() < 0)
        return GG_EINTERNAL;
    uint8_t nonce[SIGNED_NONCE_HEX_LEN / 2];
    randombytes_buf(nonce, sizeof nonce);
    signed_hex_encode(nonce, sizeof nonce, cmd->nonce);
    cmd->issued = now;
    if (now > (uint64_t) INT64_MAX) {
        s_bad(err, errlen, "issued is out of range");
        return GG_EINVAL;
    }
    p = json_pack("{s:s?,s:s,s:I}", "type", cmd->type, "nonce", cmd->nonce, "issued",
                  (json_int_t) now);
    if (!p) {
        rc = cmd->type ? GG_ENOMEM : GG_EINVAL;
        goto out;
    }
    if ((cmd->plan && json_object_set_new(p, "plan", json_string(cmd->plan))) ||
        (cmd->state && json_object_set_new(p, "state", json_string(cmd->state))) ||
        (cmd->node && json_object_set_new(p, "node", json_string(cmd->node))) ||
        (cmd->subject && json_object_set_new(p, "subject", json_string(cmd->subject)))) {
        rc = GG_EINVAL; /* NULL from json_string: not UTF-8 */
        goto out;
    }
    if (cmd->targets) {
        if (!(t = json_array())) {
            rc = GG_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < cmd->target_count; i++) {
            json_t *s = cmd->targets[i] ? json_string(cmd->targets[i]) : NULL;
            if (!s || json_array_append_new(t, s) != 0) {
                rc = GG_EINVAL;
                goto out;
            }
        }
        if (json_object_set(p, "targets", t) != 0) {
            rc = GG_ENOMEM;
            goto out;
        }
    }
    signed_command_t check;
    if (signed_command_check(p, &check, err, errlen) != 0) {
        rc = GG_EINVAL;
        goto out;
    }
    *payload = p;
    p = NULL;
out:
    json_decref(t);
    json_decref(p);
    return rc;
}
