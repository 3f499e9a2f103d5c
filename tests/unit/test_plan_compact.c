/* test_plan_compact.c: a large plan held compact by an agent: the canonical
 * signed envelope (signed_split, signed_sign_bytes, signed_verify_bytes), the
 * per-target index built piece by piece from a plan document
 * (plan_from_canonical) compared with the whole plan, refusals, and each
 * target's entity read back from the document stored in LMDB chunks
 * (docstore). */
#include "catalog.h"
#include "docstore.h"
#include "gg_error.h"
#include "gg_test.h"
#include "plan.h"
#include "signed.h"
#include "store.h"

#include <errno.h>
#include <sodium.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[PATH_MAX];

static int s_write(const char *rel, const char *text)
{
    return gg_test_write_file(s_dir, rel, text);
}

/* A catalog of n consumers of resource:ds-v1; every third is marked for
 * approval, some carry a non-string annotation and tags. */
static int s_make_catalog(const char *folder, size_t n)
{
    size_t cap = 512 * (n + 2);
    char *text = malloc(cap), *w = text;
    if (!text)
        return -1;
    w += sprintf(w, "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
                    "metadata: {name: ds-v1}\nspec: {type: database, owner: group:data}\n");
    for (size_t i = 0; i < n; i++)
        w += sprintf(w,
                     "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
                     "metadata:\n  name: svc-%05zu\n  tags: [java, t%zu]\n"
                     "  annotations: {myorg.org/security: '%s', backstage.io/source-location: "
                     "'url:https://git/svc-%zu/', myorg.org/n: '%s'}\n"
                     "spec: {type: service, lifecycle: production, owner: team-%zu, "
                     "dependsOn: [resource:ds-v1]}\n",
                     i, i % 4, i % 3 == 0 ? "true" : "false", i, i % 5 == 0 ? "7" : "x", i % 2);
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/catalog-info.yaml", folder);
    int rc = s_write(rel, text);
    free(text);
    return rc;
}

static plan_t *s_resolved(const char *folder, const char *extra)
{
    char text[4096], rel[PATH_MAX];
    snprintf(text, sizeof text,
             "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: big}\n"
             "spec:\n  catalog: ./%s\n  dataset: {from: ds-v1, to: ds-v2}\n"
             "  vars: {team: x}\n"
             "  steps: [{name: s, run: 'echo {{target.name}} {{target.annotations.myorg.org/n}} "
             "{{target.path}}'}]\n%s",
             folder, extra ? extra : "");
    snprintf(rel, sizeof rel, "%s.yaml", folder);
    if (s_write(rel, text) != 0)
        return NULL;
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s_dir, rel);
    plan_diag_t *diag = plan_diag_new();
    plan_t *p = NULL;
    catalog_t *cat = NULL;
    plan_opts_t opts = {0};
    int rc = plan_load_file(path, NULL, &opts, &p, diag);
    if (rc == 0)
        rc = plan_load_catalog(p, &cat, diag);
    if (rc == 0)
        rc = plan_resolve(p, cat, diag);
    catalog_destroy(&cat);
    if (rc != 0) {
        json_t *e = json_array_get(plan_diag_errors(diag), 0);
        fprintf(stderr, "resolve: %s\n", json_string_value(json_object_get(e, "message")));
        plan_destroy(&p);
    }
    plan_diag_destroy(&diag);
    return p;
}

/* A reader over a document in memory, counting its calls. */
typedef struct {
    const char *text;
    size_t len;
    size_t calls;
} s_mem_doc_t;

static size_t s_mem_read(void *arg, const uint8_t id[32], uint64_t offset, uint8_t *buf, size_t len)
{
    (void) id;
    s_mem_doc_t *d = arg;
    d->calls++;
    if (offset >= d->len)
        return 0;
    size_t n = d->len - offset < len ? (size_t) (d->len - offset) : len;
    memcpy(buf, d->text + offset, n);
    return n;
}

/* The signed document text of p, as the CLI sends it. */
static char *s_signed_text(const plan_t *p, const operator_key_t *key, size_t *len)
{
    const char *bytes = NULL;
    size_t n = 0;
    char *doc = NULL;
    if (plan_canonical(p, &bytes, &n) != 0 || signed_sign_bytes(bytes, n, key, &doc, len) != 0)
        return NULL;
    return doc;
}

static bool s_same_target(const plan_target_t *a, const plan_target_t *b)
{
    const char *fa[] = {a->ref,   a->kind,      a->namespace, a->name,
                        a->owner, a->lifecycle, a->source,    a->path};
    const char *fb[] = {b->ref,   b->kind,      b->namespace, b->name,
                        b->owner, b->lifecycle, b->source,    b->path};
    for (size_t k = 0; k < sizeof fa / sizeof fa[0]; k++)
        if ((fa[k] == NULL) != (fb[k] == NULL) || (fa[k] && strcmp(fa[k], fb[k]) != 0))
            return false;
    return a->needs_approval == b->needs_approval && json_equal(a->annotations, b->annotations) &&
           json_equal(a->entity, b->entity);
}

static void test_envelope(void)
{
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    json_t *payload =
        json_pack("{s:s, s:[i, s], s:{s:b}}", "b", "two", "a", 1, "x", "z", "y", true);
    REQUIRE(payload);
    char *canon = NULL, *text = NULL, *via_json = NULL;
    size_t clen = 0, tlen = 0, jlen = 0;
    REQUIRE(signed_canonical(payload, &canon, &clen) == 0);
    CHECK_EQ_INT(signed_sign_bytes(canon, clen, &key, &text, &tlen), 0);
    REQUIRE(text);
    CHECK_EQ_INT(strlen(text), tlen);
    /* The same bytes as signing the JSON and dumping the signed document. */
    json_t *doc = NULL;
    REQUIRE(signed_sign(payload, &key, &doc) == 0);
    REQUIRE(signed_canonical(doc, &via_json, &jlen) == 0);
    CHECK_EQ_INT(jlen, tlen);
    CHECK(memcmp(via_json, text, tlen) == 0);

    size_t off = 0, plen = 0;
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    CHECK_EQ_INT(signed_split(text, tlen, &off, &plen, k, sig), 0);
    CHECK_EQ_INT(plen, clen);
    CHECK(memcmp(text + off, canon, clen) == 0);
    CHECK(memcmp(k, key.public_key, sizeof k) == 0);

    trust_t *trust = trust_new();
    REQUIRE(trust);
    CHECK_EQ_INT(signed_verify_bytes(text + off, plen, k, sig, trust), GG_EPERM);
    REQUIRE(trust_add_operator(trust, key.public_key) == 0);
    CHECK_EQ_INT(signed_verify_bytes(text + off, plen, k, sig, trust), 0);
    text[off + 6] ^= 1; /* a payload byte */
    CHECK_EQ_INT(signed_verify_bytes(text + off, plen, k, sig, trust), GG_ECRYPTO);
    text[off + 6] ^= 1;

    /* Other shapes are not the canonical envelope. */
    CHECK_EQ_INT(signed_split(text, tlen - 1, &off, &plen, k, sig), GG_EMALFORMED);
    char *spaced = malloc(tlen + 2);
    REQUIRE(spaced);
    memcpy(spaced, text, 11);
    spaced[11] = ' ';
    memcpy(spaced + 12, text + 11, tlen - 11);
    CHECK_EQ_INT(signed_split(spaced, tlen + 1, &off, &plen, k, sig), GG_EMALFORMED);
    text[tlen - 5] = 'g'; /* not hex */
    CHECK_EQ_INT(signed_split(text, tlen, &off, &plen, k, sig), GG_EMALFORMED);
    CHECK_EQ_INT(signed_split("{}", 2, &off, &plen, k, sig), GG_EMALFORMED);

    operator_key_t pub = key;
    pub.has_secret = false;
    char *none = NULL;
    size_t nlen = 0;
    CHECK_EQ_INT(signed_sign_bytes(canon, clen, &pub, &none, &nlen), GG_EPERM);
    CHECK(none == NULL);

    free(spaced);
    trust_destroy(&trust);
    json_decref(doc);
    json_decref(payload);
    free(canon);
    free(text);
    free(via_json);
    operator_key_wipe(&key);
}

static void test_index_matches_whole(void)
{
    REQUIRE(s_make_catalog("cat-a", 60) == 0);
    plan_t *p = s_resolved("cat-a", "  approval: {when: {annotations: {myorg.org/security: "
                                    "'true'}}}\n");
    REQUIRE(p);
    REQUIRE(plan_target_count(p) == 60);
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    size_t len = 0, off = 0, plen = 0;
    char *text = s_signed_text(p, &key, &len);
    REQUIRE(text);
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    REQUIRE(signed_split(text, len, &off, &plen, k, sig) == 0);
    s_mem_doc_t mem = {text, len, 0};
    plan_t *q = NULL;
    plan_diag_t *diag = plan_diag_new();
    CHECK_EQ_INT(plan_from_canonical(text, len, off, plen, NULL, s_mem_read, &mem, &q, diag), 0);
    REQUIRE(q);
    CHECK(plan_is_compact(q));
    CHECK(!plan_is_compact(p));
    CHECK(plan_is_resolved(q));
    /* Same id as the whole plan's canonical hash. */
    CHECK_STR(plan_id(q), plan_id(p));
    CHECK_STR(plan_name(q), "big");
    CHECK_EQ_INT(plan_target_count(q), 60);
    CHECK_EQ_INT(plan_spec(q)->step_count, 1);
    CHECK(plan_spec(q)->approval);
    CHECK(plan_target(q, 0) == NULL); /* not in memory */
    CHECK(json_object_get(plan_json(q), "targets") == NULL);
    CHECK_EQ_INT(mem.calls, 0); /* building the index reads nothing back */
    size_t gated = 0;
    for (size_t i = 0; i < 60; i++) {
        CHECK_STR(plan_target_ref(q, i), plan_target(p, i)->ref);
        CHECK_EQ_INT(plan_target_needs_approval(q, i), plan_target(p, i)->needs_approval);
        gated += plan_target_needs_approval(q, i);
        CHECK_EQ_INT(plan_find_target(q, plan_target(p, i)->ref), (long) i);
        plan_target_t *t = NULL;
        CHECK_EQ_INT(plan_target_load(q, i, &t), 0);
        REQUIRE(t);
        CHECK(s_same_target(t, plan_target(p, i)));
        plan_target_release(&t);
        CHECK(t == NULL);
    }
    CHECK_EQ_INT(gated, 20);
    CHECK_EQ_INT(plan_find_target(q, "svc-00007"), 7);
    CHECK_EQ_INT(plan_find_target(q, "svc-99999"), -1);
    CHECK(plan_target_ref(q, 60) == NULL);
    plan_target_t *none = NULL;
    CHECK_EQ_INT(plan_target_load(q, 60, &none), GG_ENOTFOUND);

    /* Rendering reads the target back and gives what the whole plan gives. */
    plan_render_ctx_t ctx = {.attempt = 1, .epoch = 2, .workdir = "/w"};
    char *a = NULL, *b = NULL, err[256];
    const char *tmpl = plan_spec(p)->steps[0].run;
    CHECK_EQ_INT(plan_render(p, 5, &ctx, tmpl, TEMPLATE_SHELL, &a, err, sizeof err), 0);
    CHECK_EQ_INT(plan_render(q, 5, &ctx, tmpl, TEMPLATE_SHELL, &b, err, sizeof err), 0);
    REQUIRE(a && b);
    CHECK_STR(b, a);
    CHECK(strstr(a, "svc-00005") != NULL && strstr(a, "cat-a") != NULL);
    free(a);
    free(b);
    CHECK_EQ_INT(plan_render(q, 61, &ctx, tmpl, TEMPLATE_SHELL, &b, err, sizeof err), GG_ENOTFOUND);

    /* A whole plan's targets load too (one call for both kinds). */
    plan_target_t *t = NULL;
    CHECK_EQ_INT(plan_target_load(p, 3, &t), 0);
    REQUIRE(t);
    CHECK(s_same_target(t, plan_target(p, 3)));
    plan_target_release(&t);

    /* The index is small: no JSON per target is kept. */
    CHECK(plan_targets_memory(q) < 60 * 64);

    plan_destroy(&q);
    plan_diag_destroy(&diag);
    free(text);
    plan_destroy(&p);
    operator_key_wipe(&key);
}

/* Replaces the first occurrence of `from` in the payload by `to` (same
 * length or not) and returns the new document text. */
static char *s_edit(const char *text, size_t len, const char *from, const char *to, size_t *out_len)
{
    const char *at = strstr(text, from);
    if (!at)
        return NULL;
    size_t fl = strlen(from), tl = strlen(to);
    char *out = malloc(len - fl + tl + 1);
    if (!out)
        return NULL;
    size_t pre = (size_t) (at - text);
    memcpy(out, text, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, len - pre - fl);
    *out_len = len - fl + tl;
    out[*out_len] = '\0';
    return out;
}

/* How an edited document reaches plan_from_canonical: submitted (no id), or
 * replicated under the hash of its payload bytes, or replicated under
 * another id (`other`). */
typedef enum { S_SUBMITTED, S_REPLICATED, S_REPLICATED_OTHER } s_as_t;

/* plan_from_canonical on an edited document: the edit stays inside the
 * payload, so the envelope still splits. When out is not NULL the plan is
 * handed over on success. */
static int s_from_edited_as(const char *text, size_t len, const char *from, const char *to,
                            s_as_t as, const uint8_t other[32], plan_t **out, plan_diag_t *diag)
{
    size_t elen = 0, off = 0, plen = 0;
    char *edited = s_edit(text, len, from, to, &elen);
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN], hash[32];
    if (!edited)
        return -1000;
    int rc = signed_split(edited, elen, &off, &plen, k, sig);
    crypto_generichash(hash, sizeof hash, (const unsigned char *) edited + off, plen, NULL, 0);
    const uint8_t *id = as == S_REPLICATED ? hash : as == S_REPLICATED_OTHER ? other : NULL;
    plan_t *q = NULL;
    if (rc == 0)
        rc = plan_from_canonical(edited, elen, off, plen, id, NULL, NULL, &q, diag);
    if (rc == 0 && !q)
        rc = -1001;
    if (rc == 0 && out)
        *out = q;
    else
        plan_destroy(&q);
    free(edited);
    return rc;
}

static int s_from_edited(const char *text, size_t len, const char *from, const char *to,
                         plan_diag_t *diag)
{
    return s_from_edited_as(text, len, from, to, S_SUBMITTED, NULL, NULL, diag);
}

static bool s_has_error(plan_diag_t *diag, const char *where, const char *what)
{
    size_t i;
    json_t *e;
    json_array_foreach(plan_diag_errors(diag), i, e)
    {
        const char *w = json_string_value(json_object_get(e, "where"));
        const char *m = json_string_value(json_object_get(e, "message"));
        if (w && m && strstr(w, where) && strstr(m, what))
            return true;
    }
    return false;
}

static void test_refusals(void)
{
    REQUIRE(s_make_catalog("cat-b", 5) == 0);
    plan_t *p = s_resolved("cat-b", NULL);
    REQUIRE(p);
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    size_t len = 0;
    char *text = s_signed_text(p, &key, &len);
    REQUIRE(text);
    plan_diag_t *diag = plan_diag_new();

    /* Not canonical: spacing, key order, escapes. The caller then parses
     * the whole document instead. */
    CHECK_EQ_INT(s_from_edited(text, len, "\"approval\":false", "\"approval\": false", diag),
                 GG_EMALFORMED);
    CHECK_EQ_INT(s_from_edited(text, len, "{\"annotations\":", "{\"zzz\":1,\"annotations\":", diag),
                 GG_EMALFORMED);
    CHECK_EQ_INT(
        s_from_edited(text, len, "\"name\":\"svc-00001\"", "\"name\":\"svc\\u002d00001\"", diag),
        GG_EMALFORMED);
    CHECK_EQ_INT(s_from_edited(text, len, "\"kind\":\"MigrationPlan\"", "\"kind\":\"Other\"", diag),
                 GG_EMALFORMED);
    CHECK_EQ_INT(s_from_edited(text, len, "}]}", "}],\"zzz\":1}", diag), GG_EMALFORMED);
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);

    /* Canonical but wrong: a flipped approval, a duplicated target, a spec
     * not in its normalised form. */
    CHECK_EQ_INT(s_from_edited(text, len, "\"approval\":false", "\"approval\":true", diag),
                 GG_EINVAL);
    CHECK(s_has_error(diag, "targets[0]", "does not match"));
    plan_diag_destroy(&diag);
    diag = plan_diag_new();
    CHECK_EQ_INT(s_from_edited(text, len, "\"ref\":\"component:default/svc-00002\"",
                               "\"ref\":\"component:default/svc-00001\"", diag),
                 GG_EINVAL);
    CHECK(s_has_error(diag, "targets[2]", "sorted"));
    plan_diag_destroy(&diag);
    diag = plan_diag_new();
    CHECK_EQ_INT(s_from_edited(text, len, "\"maxAttempts\":3", "\"maxAttempts\":0", diag),
                 GG_EINVAL);
    CHECK(plan_diag_error_count(diag) > 0);
    plan_diag_destroy(&diag);
    diag = plan_diag_new();
    CHECK_EQ_INT(s_from_edited(text, len, "\"ref\":\"component:default/svc-00003\"",
                               "\"ref\":\"component:default/Svc-00003\"", diag),
                 GG_EINVAL);
    CHECK(s_has_error(diag, "targets[3]", "not a valid frozen target"));
    plan_diag_destroy(&diag);

    /* A reader that serves other bytes, or too few, fails the load cleanly. */
    size_t off = 0, plen = 0;
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    REQUIRE(signed_split(text, len, &off, &plen, k, sig) == 0);
    s_mem_doc_t short_doc = {text, len / 2, 0};
    plan_t *q = NULL;
    REQUIRE(plan_from_canonical(text, len, off, plen, NULL, s_mem_read, &short_doc, &q, NULL) == 0);
    plan_target_t *t = NULL;
    CHECK_EQ_INT(plan_target_load(q, 4, &t), GG_EIO);
    CHECK(t == NULL);
    plan_destroy(&q);
    char *other = strdup(text);
    REQUIRE(other);
    char *swap = strstr(other, "component:default/svc-00001");
    REQUIRE(swap);
    swap[26] = '9'; /* target 1's ref now names svc-00009 */
    s_mem_doc_t wrong = {other, len, 0};
    REQUIRE(plan_from_canonical(text, len, off, plen, NULL, s_mem_read, &wrong, &q, NULL) == 0);
    CHECK_EQ_INT(plan_target_load(q, 1, &t), GG_EIO);
    CHECK_EQ_INT(plan_target_load(q, 0, &t), 0);
    plan_target_release(&t);
    plan_destroy(&q);
    REQUIRE(plan_from_canonical(text, len, off, plen, NULL, NULL, NULL, &q, NULL) == 0);
    CHECK_EQ_INT(plan_target_load(q, 0, &t), GG_EIO); /* no reader */
    plan_destroy(&q);
    CHECK_EQ_INT(plan_from_canonical(text, len, off, len, NULL, NULL, NULL, &q, NULL), GG_EINVAL);
    free(other);

    /* No targets at all is a plan too. */
    plan_t *empty = s_resolved("cat-b", "  targets: {consumersOf: resource:nothing}\n");
    REQUIRE(empty);
    char *etext = s_signed_text(empty, &key, &len);
    REQUIRE(etext);
    REQUIRE(signed_split(etext, len, &off, &plen, k, sig) == 0);
    CHECK_EQ_INT(plan_from_canonical(etext, len, off, plen, NULL, NULL, NULL, &q, NULL), 0);
    CHECK_EQ_INT(plan_target_count(q), 0);
    CHECK_STR(plan_id(q), plan_id(empty));
    plan_destroy(&q);
    free(etext);
    plan_destroy(&empty);

    plan_diag_destroy(&diag);
    free(text);
    plan_destroy(&p);
    operator_key_wipe(&key);
}

/* Targets with less common content (a real number, an escaped key, a
 * control character, a non-string annotation, approval by tags) give the
 * same plan as the whole-document path; canonical but inconsistent targets
 * are refused with the target named, whether submitted or replicated. */
static void test_unusual_targets(void)
{
    const char *cat =
        "apiVersion: backstage.io/v1alpha1\nkind: Resource\n"
        "metadata: {name: ds-v1}\nspec: {type: database, owner: group:data}\n"
        "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: a-plain, tags: [java], annotations: {x.io/n: '1'}}\n"
        "spec: {type: service, owner: team, lifecycle: x, dependsOn: [resource:ds-v1]}\n"
        "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: b-real, annotations: {x.io/n: '2'}}\n"
        "spec: {type: service, owner: team, lifecycle: x, ratio: 1.5, count: -3,\n"
        "       dependsOn: [resource:ds-v1]}\n"
        "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: c-escaped-key, tags: [go, java]}\n"
        "spec: {type: service, owner: team, lifecycle: x, 'we\"ird': x,\n"
        "       dependsOn: [resource:ds-v1]}\n"
        "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: d-text, description: \"tab\\there \\u00e9\\u0001 \\\"q\\\" \\\\\"}\n"
        "spec: {type: service, owner: team, lifecycle: beta, dependsOn: [resource:ds-v1]}\n";
    REQUIRE(s_write("cat-f/catalog-info.yaml", cat) == 0);
    plan_t *p = s_resolved("cat-f", "  approval: {when: {tags: [java]}}\n");
    REQUIRE(p);
    REQUIRE(plan_target_count(p) == 4);
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    size_t len = 0, off = 0, plen = 0;
    char *text = s_signed_text(p, &key, &len);
    REQUIRE(text);
    CHECK(strstr(text, "1.5") && strstr(text, "we\\\"ird") && strstr(text, "\\u0001"));
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN];
    REQUIRE(signed_split(text, len, &off, &plen, k, sig) == 0);
    s_mem_doc_t mem = {text, len, 0};
    plan_t *q = NULL;
    CHECK_EQ_INT(plan_from_canonical(text, len, off, plen, NULL, s_mem_read, &mem, &q, NULL), 0);
    REQUIRE(q);
    CHECK_STR(plan_id(q), plan_id(p));
    for (size_t i = 0; i < 4; i++) {
        CHECK_STR(plan_target_ref(q, i), plan_target(p, i)->ref);
        CHECK_EQ_INT(plan_target_needs_approval(q, i), plan_target(p, i)->needs_approval);
        plan_target_t *t = NULL;
        CHECK_EQ_INT(plan_target_load(q, i, &t), 0);
        CHECK(t && s_same_target(t, plan_target(p, i)));
        plan_target_release(&t);
    }
    CHECK(plan_target_needs_approval(q, 0) && !plan_target_needs_approval(q, 1) &&
          plan_target_needs_approval(q, 2) && !plan_target_needs_approval(q, 3));
    plan_destroy(&q);

    /* Canonical edits that make a target inconsistent: each refused, with
     * the target named. */
    static const struct {
        const char *from, *to, *where, *what;
    } bad[] = {
        /* a target annotation that the entity does not hold */
        {"\"annotations\":{\"x.io/n\":\"1\"}", "\"annotations\":{\"x.io/n\":\"9\"}", "targets[0]",
         "does not match"},
        /* a non-string annotation in the target */
        {"\"annotations\":{\"x.io/n\":\"2\"}",
         "\"annotations\":{\"x.io/count\":3,\"x.io/n\":\"2\"}", "targets[1]", "does not match"},
        /* a string annotation left out */
        {"\"annotations\":{\"x.io/n\":\"2\"}", "\"annotations\":{}", "targets[1]",
         "does not match"},
        /* approval against spec.approval.when (tags) */
        {"\"approval\":true", "\"approval\":false", "targets[0]", "does not match"},
        /* a field of the wrong type, an unknown field */
        {"\"lifecycle\":\"beta\",\"name\"", "\"lifecycle\":7,\"name\"", "targets[3]",
         "not a valid frozen target"},
        {"\"kind\":\"Component\",\"lifecycle\":\"beta\"",
         "\"kind\":\"Component\",\"l\":1,\"lifecycle\":\"beta\"", "targets[3]", "does not match"},
        /* annotations or the entity not an object */
        {"\"annotations\":{},\"approval\":true", "\"annotations\":[],\"approval\":true",
         "targets[2]", "does not match"},
        {"\"entity\":{", "\"entity\":1,\"entityx\":{", "targets[0]", "not a valid frozen target"},
    };
    for (size_t i = 0; i < 2 * (sizeof bad / sizeof bad[0]); i++) {
        plan_diag_t *diag = plan_diag_new();
        size_t e = i / 2;
        s_as_t as = i % 2 ? S_REPLICATED : S_SUBMITTED;
        int rc = s_from_edited_as(text, len, bad[e].from, bad[e].to, as, NULL, NULL, diag);
        if (rc != GG_EINVAL || !s_has_error(diag, bad[e].where, bad[e].what)) {
            fprintf(stderr, "edit %zu (%s): rc %d\n", e, i % 2 ? "replicated" : "submitted", rc);
            CHECK(false);
        }
        plan_diag_destroy(&diag);
    }
    /* A non-string annotation of the entity is not a target annotation. */
    plan_diag_t *diag = plan_diag_new();
    CHECK_EQ_INT(s_from_edited(text, len, "\"annotations\":{\"x.io/n\":\"2\"},\"name\"",
                               "\"annotations\":{\"x.io/n\":\"2\",\"x.io/z\":[]},\"name\"", diag),
                 0);
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);
    /* Bytes that are not valid UTF-8 or not canonical are not a compact
     * plan (the caller parses the whole, which refuses them); invalid UTF-8
     * and duplicate keys not even when replicated. */
    for (int as = S_SUBMITTED; as <= S_REPLICATED; as++) {
        CHECK_EQ_INT(
            s_from_edited_as(text, len, "a-plain\"", "a-pl\xc0\xafn\"", as, NULL, NULL, diag),
            GG_EMALFORMED);
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"ratio\":1.5", "\"ratio\":1.5,\"ratio\":2", as,
                                      NULL, NULL, diag),
                     GG_EMALFORMED);
    }
    CHECK_EQ_INT(s_from_edited(text, len, "\"ratio\":1.5", "\"ratio\":1.50", diag), GG_EMALFORMED);
    CHECK_EQ_INT(s_from_edited_as(text, len, "\"ratio\":1.5", "\"ratio\":1.50", S_REPLICATED, NULL,
                                  NULL, diag),
                 0);
    CHECK_EQ_INT(plan_diag_error_count(diag), 0);
    plan_diag_destroy(&diag);

    free(text);
    plan_destroy(&p);
    operator_key_wipe(&key);
}

/* The form of a target is proven (re-dumped and compared) on the node a
 * plan is submitted to; a document replicated under the hash of its own
 * bytes is taken in the form it has, every field still checked; one
 * replicated under another id (the id of its canonical form, given by a node
 * that parsed it whole) is proven, so the engine parses it whole too. */
static void test_replicated_form(void)
{
    REQUIRE(s_make_catalog("cat-r", 5) == 0);
    plan_t *p = s_resolved("cat-r", NULL);
    REQUIRE(p);
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    size_t len = 0, off = 0, plen = 0;
    char *text = s_signed_text(p, &key, &len);
    REQUIRE(text);
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN], canon_id[32];
    REQUIRE(signed_split(text, len, &off, &plen, k, sig) == 0);
    REQUIRE(signed_hex_decode(plan_id(p), canon_id, sizeof canon_id) == 0);

    /* The canonical document replicated under its id: the same plan. */
    plan_t *q = NULL;
    s_mem_doc_t mem = {text, len, 0};
    CHECK_EQ_INT(plan_from_canonical(text, len, off, plen, canon_id, s_mem_read, &mem, &q, NULL),
                 0);
    REQUIRE(q);
    CHECK_STR(plan_id(q), plan_id(p));
    for (size_t i = 0; i < 5; i++) {
        plan_target_t *t = NULL;
        CHECK_EQ_INT(plan_target_load(q, i, &t), 0);
        CHECK(t && s_same_target(t, plan_target(p, i)));
        plan_target_release(&t);
    }
    plan_destroy(&q);

    /* Target 0 in another form: spaced, keys out of order, an escape. */
    static const struct {
        const char *from, *to;
    } forms[] = {
        {"\"approval\":false", "\"approval\": false"},
        {"\"kind\":\"Component\",\"lifecycle\":\"production\",\"name\"",
         "\"lifecycle\":\"production\",\"kind\":\"Component\",\"name\""},
        {"\"name\":\"svc-00000\"", "\"name\":\"svc\\u002d00000\""},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        plan_diag_t *diag = plan_diag_new();
        /* Submitted: refused as not canonical (the engine then parses the
         * whole and the id is that of the canonical form). */
        CHECK_EQ_INT(s_from_edited(text, len, forms[i].from, forms[i].to, diag), GG_EMALFORMED);
        /* Replicated under the id of the canonical form: proven, refused
         * the same way. */
        CHECK_EQ_INT(s_from_edited_as(text, len, forms[i].from, forms[i].to, S_REPLICATED_OTHER,
                                      canon_id, NULL, diag),
                     GG_EMALFORMED);
        /* Replicated under the hash of these bytes: held, with that id and
         * the same targets. */
        q = NULL;
        CHECK_EQ_INT(
            s_from_edited_as(text, len, forms[i].from, forms[i].to, S_REPLICATED, NULL, &q, diag),
            0);
        CHECK_EQ_INT(plan_diag_error_count(diag), 0);
        if (q) {
            CHECK(strcmp(plan_id(q), plan_id(p)) != 0);
            CHECK_EQ_INT(plan_target_count(q), 5);
            CHECK_STR(plan_target_ref(q, 0), plan_target(p, 0)->ref);
            CHECK_EQ_INT(plan_target_needs_approval(q, 0), plan_target(p, 0)->needs_approval);
        }
        plan_destroy(&q);
        plan_diag_destroy(&diag);
    }

    /* Replicated or not, a target with wrong fields is refused, with the
     * target named. */
    for (int as = S_SUBMITTED; as <= S_REPLICATED; as++) {
        plan_diag_t *diag = plan_diag_new();
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"approval\":false", "\"approval\": true", as,
                                      NULL, NULL, diag),
                     as == S_SUBMITTED ? GG_EMALFORMED : GG_EINVAL);
        CHECK(as == S_SUBMITTED || s_has_error(diag, "targets[0]", "does not match"));
        plan_diag_destroy(&diag);
        diag = plan_diag_new();
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"ref\":\"component:default/svc-00002\"",
                                      "\"ref\" : \"component:default/svc-00001\"", as, NULL, NULL,
                                      diag),
                     as == S_SUBMITTED ? GG_EMALFORMED : GG_EINVAL);
        CHECK(as == S_SUBMITTED || s_has_error(diag, "targets[2]", "sorted"));
        plan_diag_destroy(&diag);
        diag = plan_diag_new();
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"ref\":\"component:default/svc-00003\"",
                                      "\"ref\":\"component:default/Svc-00003\"", as, NULL, NULL,
                                      diag),
                     GG_EINVAL);
        CHECK(s_has_error(diag, "targets[3]", "not a valid frozen target"));
        plan_diag_destroy(&diag);
        diag = plan_diag_new();
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"lifecycle\":\"production\",\"name\"",
                                      "\"lifecycle\":7,\"name\"", as, NULL, NULL, diag),
                     GG_EINVAL);
        CHECK(s_has_error(diag, "targets[0]", "not a valid frozen target"));
        plan_diag_destroy(&diag);
        /* A target that is not JSON, or has a key twice. */
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"approval\":false", "\"approval\":fals", as,
                                      NULL, NULL, NULL),
                     GG_EMALFORMED);
        CHECK_EQ_INT(s_from_edited_as(text, len, "\"approval\":false",
                                      "\"approval\":false,\"approval\":false", as, NULL, NULL,
                                      NULL),
                     GG_EMALFORMED);
    }

    free(text);
    plan_destroy(&p);
    operator_key_wipe(&key);
}

/* The engine's path: the document stored in 1 MiB LMDB chunks, targets
 * (some across a chunk boundary) read back from the store. */
static size_t s_store_read(void *arg, const uint8_t id[32], uint64_t offset, uint8_t *buf,
                           size_t len)
{
    return docstore_read(arg, id, offset, buf, len);
}

typedef struct {
    size_t docs;
    uint64_t size;
    uint8_t kind;
} s_meta_seen_t;

static int s_meta_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_meta_seen_t *m = arg;
    const uint8_t *id;
    if (docstore_meta(key, klen, val, vlen, &id, &m->kind, &m->size) == 0)
        m->docs++;
    return 0;
}

static void test_stored_document(void)
{
    /* 4,000 targets of ~700 bytes: a document of a few MiB. */
    REQUIRE(s_make_catalog("cat-c", 4000) == 0);
    plan_t *p = s_resolved("cat-c", NULL);
    REQUIRE(p);
    operator_key_t key;
    REQUIRE(operator_key_generate("op", &key) == 0);
    size_t len = 0, off = 0, plen = 0;
    char *text = s_signed_text(p, &key, &len);
    REQUIRE(text);
    CHECK(len > 2 * DOCSTORE_CHUNK_BYTES);
    uint8_t k[CERT_PUBLIC_LEN], sig[CERT_SIG_LEN], id[32];
    REQUIRE(signed_split(text, len, &off, &plen, k, sig) == 0);
    REQUIRE(signed_hex_decode(plan_id(p), id, 32) == 0);

    char data_dir[2 * PATH_MAX];
    snprintf(data_dir, sizeof data_dir, "%s/store", s_dir);
    store_t *store = NULL;
    REQUIRE(store_open(data_dir, 0, &store) == 0);
    store_batch_t *b = NULL;
    REQUIRE(store_batch_begin(store, &b) == 0);
    CHECK_EQ_INT(docstore_put(b, id, 1, text, len), 0);
    REQUIRE(store_batch_commit(&b) == 0);
    s_meta_seen_t seen = {0};
    CHECK_EQ_INT(store_scan(store, STORE_DB_PLANS, "d", 1, s_meta_visit, &seen), 0);
    CHECK_EQ_INT(seen.docs, 1);
    CHECK_EQ_INT(seen.size, len);
    CHECK_EQ_INT(seen.kind, 1);

    /* Byte ranges across chunk boundaries come back exactly. */
    uint8_t buf[4096];
    CHECK_EQ_INT(docstore_read(store, id, DOCSTORE_CHUNK_BYTES - 100, buf, 300), 300);
    CHECK(memcmp(buf, text + DOCSTORE_CHUNK_BYTES - 100, 300) == 0);
    CHECK_EQ_INT(docstore_read(store, id, len - 10, buf, 100), 10);
    CHECK_EQ_INT(docstore_read(store, id, len + 10, buf, 100), 0);
    uint8_t other_id[32] = {1};
    CHECK_EQ_INT(docstore_read(store, other_id, 0, buf, 100), 0);

    plan_t *q = NULL;
    CHECK_EQ_INT(plan_from_canonical(text, len, off, plen, NULL, s_store_read, store, &q, NULL), 0);
    REQUIRE(q);
    CHECK_STR(plan_id(q), plan_id(p));
    free(text); /* from here on the targets come from the store only */
    size_t n = plan_target_count(q), bad = 0;
    CHECK_EQ_INT(n, 4000);
    for (size_t i = 0; i < n; i++) {
        plan_target_t *t = NULL;
        if (plan_target_load(q, i, &t) != 0 || !s_same_target(t, plan_target(p, i)))
            bad++;
        plan_target_release(&t);
    }
    CHECK_EQ_INT(bad, 0);
    /* The index costs tens of bytes per target, not the JSON's hundreds. */
    CHECK(plan_targets_memory(q) < n * 64);

    /* A refused document is deleted again from the batch that wrote it: its
     * index entry and every chunk, and nothing else. */
    uint8_t gone_id[32] = {7};
    const char keep[] = "kept";
    REQUIRE(store_batch_begin(store, &b) == 0);
    CHECK_EQ_INT(store_batch_put(b, STORE_DB_PLANS, "x", 1, keep, sizeof keep), 0);
    CHECK_EQ_INT(docstore_put(b, gone_id, 1, buf, sizeof buf), 0);
    CHECK_EQ_INT(docstore_del(b, gone_id, sizeof buf), 0);
    REQUIRE(store_batch_commit(&b) == 0);
    CHECK_EQ_INT(docstore_read(store, gone_id, 0, buf, 10), 0);
    memset(&seen, 0, sizeof seen);
    CHECK_EQ_INT(store_scan(store, STORE_DB_PLANS, "d", 1, s_meta_visit, &seen), 0);
    CHECK_EQ_INT(seen.docs, 1);
    CHECK_EQ_INT(docstore_read(store, id, len - 10, buf, 100), 10);
    void *val = NULL;
    size_t vlen = 0;
    CHECK_EQ_INT(store_get(store, STORE_DB_PLANS, "x", 1, &val, &vlen), 0);
    CHECK(vlen == sizeof keep && val && memcmp(val, keep, vlen) == 0);
    free(val);
    /* Deleting what is not there is not an error. */
    REQUIRE(store_batch_begin(store, &b) == 0);
    CHECK_EQ_INT(docstore_del(b, gone_id, 3 * DOCSTORE_CHUNK_BYTES), 0);
    store_batch_abort(&b);

    plan_destroy(&q);
    store_destroy(&store);
    plan_destroy(&p);
    operator_key_wipe(&key);
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/gaggle-test-plan-compact-XXXXXX");
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_envelope);
    GG_RUN(test_index_matches_whole);
    GG_RUN(test_refusals);
    GG_RUN(test_unusual_targets);
    GG_RUN(test_replicated_form);
    GG_RUN(test_stored_document);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
    GG_DONE();
}
