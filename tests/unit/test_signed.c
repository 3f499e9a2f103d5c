/* test_signed.c: canonical JSON, signing and verification of operator
 * documents, and operator command payloads. */
#include "cert.h"
#include "gg_error.h"
#include "gg_test.h"
#include "signed.h"

#include <sodium.h>

static void test_canonical(void)
{
    json_t *a = json_loads("{\"b\": [1, 2.5, \"x\"], \"a\": {\"z\": null, \"y\": true}}", 0, NULL);
    json_t *b = json_loads("{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2.5,\"x\"]}", 0, NULL);
    REQUIRE(a && b);
    char *ca = NULL, *cb = NULL;
    size_t la = 0, lb = 0;
    CHECK_EQ_INT(signed_canonical(a, &ca, &la), 0);
    CHECK_EQ_INT(signed_canonical(b, &cb, &lb), 0);
    CHECK_STR(ca, "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2.5,\"x\"]}");
    CHECK_STR(ca, cb);
    CHECK_EQ_INT(la, strlen(ca));
    free(ca);
    free(cb);

    /* Reals and odd strings dump back to the same bytes after a parse. */
    json_t *c = json_pack("{s:f,s:f,s:s,s:I}", "r", 0.1, "e", 1e300, "s", "é\"\\\n\x01/", "i",
                          (json_int_t) -9007199254740993LL);
    REQUIRE(c);
    CHECK_EQ_INT(signed_canonical(c, &ca, &la), 0);
    json_t *back = json_loadb(ca, la, 0, NULL);
    REQUIRE(back);
    CHECK_EQ_INT(signed_canonical(back, &cb, &lb), 0);
    CHECK_STR(ca, cb);
    free(ca);
    free(cb);

    char h1[SIGNED_HASH_HEX_LEN + 1], h2[SIGNED_HASH_HEX_LEN + 1];
    CHECK_EQ_INT(signed_hash_hex(a, h1), 0);
    CHECK_EQ_INT(signed_hash_hex(b, h2), 0);
    CHECK_STR(h1, h2);
    CHECK_EQ_INT(strlen(h1), 64);
    /* The id is BLAKE2b-256 of the canonical bytes. */
    const char *bytes = "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2.5,\"x\"]}";
    uint8_t hash[32];
    char want[65];
    crypto_generichash(hash, 32, (const unsigned char *) bytes, strlen(bytes), NULL, 0);
    signed_hex_encode(hash, 32, want);
    CHECK_STR(h1, want);
    json_object_set_new(b, "c", json_integer(1));
    CHECK_EQ_INT(signed_hash_hex(b, h2), 0);
    CHECK(strcmp(h1, h2) != 0);

    json_t *str = json_string("x");
    CHECK_EQ_INT(signed_canonical(str, &ca, &la), GG_EINVAL);
    json_decref(str);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(back);
}

static void test_sign_verify(void)
{
    operator_key_t op, other;
    REQUIRE(operator_key_generate("ops", &op) == 0);
    REQUIRE(operator_key_generate("other", &other) == 0);
    trust_t *trust = trust_new();
    REQUIRE(trust);
    REQUIRE(trust_add_operator(trust, op.public_key) == 0);

    json_t *payload =
        json_pack("{s:s,s:[s,s],s:f}", "kind", "MigrationPlan", "targets", "a", "b", "ratio", 0.1);
    json_t *doc = NULL, *got = NULL;
    uint8_t signer[CERT_PUBLIC_LEN];
    REQUIRE(payload);
    CHECK_EQ_INT(signed_sign(payload, &op, &doc), 0);
    REQUIRE(doc);
    CHECK_EQ_INT(signed_verify(doc, trust, &got, signer), 0);
    CHECK(got == json_object_get(doc, "payload"));
    CHECK(memcmp(signer, op.public_key, CERT_PUBLIC_LEN) == 0);

    /* Whitespace and key order of the transport do not matter. */
    char *pretty = json_dumps(doc, JSON_INDENT(3));
    json_t *parsed = NULL;
    REQUIRE(pretty);
    CHECK_EQ_INT(signed_parse(pretty, strlen(pretty), &parsed), 0);
    CHECK_EQ_INT(signed_verify(parsed, trust, NULL, NULL), 0);
    free(pretty);
    json_decref(parsed);

    /* An untrusted signer. */
    json_t *doc2 = NULL;
    CHECK_EQ_INT(signed_sign(payload, &other, &doc2), 0);
    CHECK_EQ_INT(signed_verify(doc2, trust, &got, NULL), GG_EPERM);
    CHECK(got == NULL);
    /* A tampered payload. */
    json_object_set_new(json_object_get(doc, "payload"), "kind", json_string("Other"));
    CHECK_EQ_INT(signed_verify(doc, trust, NULL, NULL), GG_ECRYPTO);
    json_object_set_new(json_object_get(doc, "payload"), "kind", json_string("MigrationPlan"));
    CHECK_EQ_INT(signed_verify(doc, trust, NULL, NULL), 0);
    /* A signature from another key under a trusted key's name. */
    json_object_set(json_object_get(doc2, "signature"), "key",
                    json_object_get(json_object_get(doc, "signature"), "key"));
    CHECK_EQ_INT(signed_verify(doc2, trust, NULL, NULL), GG_ECRYPTO);
    /* Shape errors. */
    json_t *bad = json_deep_copy(doc);
    json_object_set_new(bad, "extra", json_true());
    CHECK_EQ_INT(signed_verify(bad, trust, NULL, NULL), GG_EMALFORMED);
    json_decref(bad);
    bad = json_deep_copy(doc);
    json_object_set_new(json_object_get(bad, "signature"), "sig", json_string("zz"));
    CHECK_EQ_INT(signed_verify(bad, trust, NULL, NULL), GG_EMALFORMED);
    json_decref(bad);
    bad = json_deep_copy(doc);
    json_object_set_new(bad, "payload", json_string("x"));
    CHECK_EQ_INT(signed_verify(bad, trust, NULL, NULL), GG_EMALFORMED);
    json_decref(bad);
    bad = json_pack("{s:{}}", "payload");
    CHECK_EQ_INT(signed_verify(bad, trust, NULL, NULL), GG_EMALFORMED);
    json_decref(bad);

    /* A public key cannot sign. */
    operator_key_t pub = op;
    memset(pub.secret_key, 0, sizeof pub.secret_key);
    pub.has_secret = false;
    json_t *doc3 = NULL;
    CHECK_EQ_INT(signed_sign(payload, &pub, &doc3), GG_EPERM);
    CHECK(doc3 == NULL);

    operator_key_wipe(&op);
    operator_key_wipe(&other);
    json_decref(doc);
    json_decref(doc2);
    json_decref(payload);
    trust_destroy(&trust);
    CHECK(trust == NULL);
}

static void test_parse(void)
{
    json_t *doc = NULL;
    const char *dup = "{\"payload\": {\"a\": 1, \"a\": 2}, \"signature\": {}}";
    CHECK_EQ_INT(signed_parse(dup, strlen(dup), &doc), GG_EMALFORMED);
    CHECK(doc == NULL);
    CHECK_EQ_INT(signed_parse("[1]", 3, &doc), GG_EMALFORMED);
    CHECK_EQ_INT(signed_parse("{\"a\":", 5, &doc), GG_EMALFORMED);
    CHECK_EQ_INT(signed_parse("{}", 2, &doc), 0);
    json_decref(doc);
    uint8_t bin[4];
    CHECK_EQ_INT(signed_hex_decode("0a0B0c0D", bin, 4), 0);
    CHECK(bin[0] == 0x0a && bin[1] == 0x0b && bin[3] == 0x0d);
    CHECK_EQ_INT(signed_hex_decode("0a0b0c", bin, 4), GG_EMALFORMED);
    CHECK_EQ_INT(signed_hex_decode("0a0b0c0g", bin, 4), GG_EMALFORMED);
    CHECK_EQ_INT(signed_hex_decode(NULL, bin, 4), GG_EMALFORMED);
}

static const char *s_plan_id = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void test_commands(void)
{
    char err[256];
    json_t *p = NULL;
    signed_command_t cmd = {.type = "pause", .plan = s_plan_id};
    CHECK_EQ_INT(signed_command_build(&cmd, 1700000000, &p, err, sizeof err), 0);
    REQUIRE(p);
    CHECK_EQ_INT(strlen(cmd.nonce), SIGNED_NONCE_HEX_LEN);
    signed_command_t got;
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), 0);
    CHECK_STR(got.type, "pause");
    CHECK_STR(got.plan, s_plan_id);
    CHECK_STR(got.nonce, cmd.nonce);
    CHECK_EQ_INT(got.issued, 1700000000);
    /* Nonces differ between commands. */
    json_t *p2 = NULL;
    signed_command_t cmd2 = {.type = "pause", .plan = s_plan_id};
    CHECK_EQ_INT(signed_command_build(&cmd2, 1700000000, &p2, err, sizeof err), 0);
    CHECK(strcmp(cmd.nonce, cmd2.nonce) != 0);
    json_decref(p2);

    /* Fields a type does not take, or misses. */
    json_object_set_new(p, "state", json_string("failed"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    CHECK(strstr(err, "state") != NULL);
    json_object_del(p, "state");
    json_object_set_new(p, "colour", json_string("red"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    json_object_del(p, "colour");
    json_object_set_new(p, "plan", json_string("not-an-id"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    json_object_set_new(p, "plan", json_string(s_plan_id));
    json_object_set_new(p, "nonce", json_string("00"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    json_object_set_new(p, "nonce", json_string(cmd.nonce));
    json_object_set_new(p, "issued", json_string("now"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    json_object_set_new(p, "issued", json_integer(5));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), 0);
    json_object_set_new(p, "type", json_string("explode"));
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), GG_EMALFORMED);
    json_decref(p);

    /* mark needs targets and a state among succeeded|skipped. */
    const char *targets[] = {"component:default/a", "component:default/b"};
    signed_command_t mark = {.type = "mark",
                             .plan = s_plan_id,
                             .targets = targets,
                             .target_count = 2,
                             .state = "succeeded"};
    CHECK_EQ_INT(signed_command_build(&mark, 1, &p, err, sizeof err), 0);
    CHECK_EQ_INT(signed_command_check(p, &got, err, sizeof err), 0);
    CHECK_EQ_INT(got.target_count, 2);
    CHECK_STR(got.state, "succeeded");
    json_decref(p);
    mark.state = "failed";
    CHECK_EQ_INT(signed_command_build(&mark, 1, &p, err, sizeof err), GG_EINVAL);
    CHECK(p == NULL);
    mark.state = NULL;
    CHECK_EQ_INT(signed_command_build(&mark, 1, &p, err, sizeof err), GG_EINVAL);
    signed_command_t retry = {.type = "retry", .plan = s_plan_id, .state = "needs_review"};
    CHECK_EQ_INT(signed_command_build(&retry, 1, &p, err, sizeof err), 0);
    json_decref(p);
    signed_command_t drain = {.type = "drain", .node = "node-1"};
    CHECK_EQ_INT(signed_command_build(&drain, 1, &p, err, sizeof err), 0);
    json_decref(p);
    drain.plan = s_plan_id;
    CHECK_EQ_INT(signed_command_build(&drain, 1, &p, err, sizeof err), GG_EINVAL);
    signed_command_t leave = {.type = "force-leave"};
    CHECK_EQ_INT(signed_command_build(&leave, 1, &p, err, sizeof err), GG_EINVAL);
    signed_command_t revoke = {.type = "revoke", .subject = "node-7"};
    CHECK_EQ_INT(signed_command_build(&revoke, 1, &p, err, sizeof err), 0);
    json_decref(p);
    signed_command_t approve = {.type = "approve", .plan = s_plan_id};
    CHECK_EQ_INT(signed_command_build(&approve, 1, &p, err, sizeof err), 0);

    /* A signed command verifies and checks end to end. */
    operator_key_t op;
    REQUIRE(operator_key_generate("ops", &op) == 0);
    trust_t *trust = trust_new();
    REQUIRE(trust && trust_add_operator(trust, op.public_key) == 0);
    json_t *doc = NULL, *payload = NULL;
    CHECK_EQ_INT(signed_sign(p, &op, &doc), 0);
    CHECK_EQ_INT(signed_verify(doc, trust, &payload, NULL), 0);
    CHECK_EQ_INT(signed_command_check(payload, &got, err, sizeof err), 0);
    CHECK_STR(got.type, "approve");
    operator_key_wipe(&op);
    trust_destroy(&trust);
    json_decref(doc);
    json_decref(p);
}

int main(void)
{
    GG_RUN(test_canonical);
    GG_RUN(test_sign_verify);
    GG_RUN(test_parse);
    GG_RUN(test_commands);
    GG_DONE();
}
