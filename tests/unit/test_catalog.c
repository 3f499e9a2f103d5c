/*
 * test_catalog.c: entity refs, Backstage field validators and the catalog
 * reader (files, directories, Locations, by-query JSON, a live HTTP server,
 * a generated 10,000-consumer catalog).
 *
 * Fixtures come from ../shared/testdata/backstage-examples next to the source
 * tree (found through GAGGLE_SOURCE); tests that need them say so and pass
 * when they are absent. Everything else is written to a fresh temporary folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "entity_ref.h"
#include "gg_error.h"
#include "gg_test.h"

static char s_tmp[64];

static const char *s_source(void)
{
    const char *s = getenv("GAGGLE_SOURCE");
    return s && *s ? s : NULL;
}

/* The shared examples folder, or NULL (with a message) when absent. */
static const char *s_examples(void)
{
    static char path[PATH_MAX];
    struct stat st;
    if (!s_source()) {
        fprintf(stderr, "  (GAGGLE_SOURCE unset: Backstage examples skipped)\n");
        return NULL;
    }
    snprintf(path, sizeof path, "%s/../shared/testdata/backstage-examples", s_source());
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "  (%s absent: Backstage examples skipped)\n", path);
        return NULL;
    }
    return path;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Writes `text` to s_tmp/rel, creating folders. */
static void s_write(const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s_tmp, rel);
    for (char *p = path + strlen(s_tmp) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static const char *s_path(const char *rel)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s_tmp, rel);
    return path;
}

static int s_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void s_rmtree(const char *path)
{
    nftw(path, s_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh empty temp folder in s_tmp. */
static bool s_fresh_tmp(void)
{
    if (s_tmp[0])
        s_rmtree(s_tmp);
    snprintf(s_tmp, sizeof s_tmp, "/tmp/gg-test-catalog-XXXXXX");
    return mkdtemp(s_tmp) != NULL;
}

static size_t s_nwarnings(const catalog_t *cat)
{
    size_t n = 0;
    catalog_warnings(cat, &n);
    return n;
}

static void s_dump_warnings(const catalog_t *cat)
{
    size_t n = 0;
    const catalog_warning_t *w = catalog_warnings(cat, &n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "    warning: %s: %s\n", w[i].where, w[i].message);
}

/* Does some warning have `where` containing w and message containing m? */
static bool s_has_warning(const catalog_t *cat, const char *w, const char *m)
{
    size_t n = 0;
    const catalog_warning_t *ws = catalog_warnings(cat, &n);
    for (size_t i = 0; i < n; i++)
        if ((!w || strstr(ws[i].where, w)) && (!m || strstr(ws[i].message, m)))
            return true;
    return false;
}

static bool s_ends_with(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, k = strlen(suffix);
    return s && n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- entity refs ---- */

static void test_ref_parse(void)
{
    static const struct {
        const char *text, *dkind, *dns, *want; /* want NULL: must fail */
    } cases[] = {
        {"artist-lookup", "Component", NULL, "component:default/artist-lookup"},
        {"resource:artists-db", NULL, NULL, "resource:default/artists-db"},
        {"default/team-a", "Group", NULL, "group:default/team-a"},
        {"team-a", "Group", "alternative", "group:alternative/team-a"},
        {"Component:Alternative/Different-Namespace", NULL, NULL,
         "component:alternative/different-namespace"},
        {"user:guest", "Group", "development", "user:development/guest"},
        {"resource:default/user-ds-v1", NULL, "payments", "resource:default/user-ds-v1"},
        {"resource:user-ds-v1", NULL, "payments", "resource:payments/user-ds-v1"},
        {"component:default/foo:bar", NULL, NULL, "component:default/foo:bar"},
        {"ns/a:b", "API", NULL, "api:ns/a:b"},
        {"a:b:c", NULL, NULL, "a:default/b:c"},
        {"x", "Group", "", "group:default/x"},
        {"foo", NULL, NULL, NULL},
        {"foo", "", NULL, NULL},
        {"default/foo", NULL, NULL, NULL},
        {"", "Component", NULL, NULL},
        {":x", "Component", NULL, NULL},
        {"x:", NULL, NULL, NULL},
        {"k:/n", NULL, NULL, NULL},
        {"k:ns/", NULL, NULL, NULL},
        {"/n", "Component", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[ENTITY_REF_FORMAT_MAX], err[256];
        int rc = entity_ref_normalize(cases[i].text, cases[i].dkind, cases[i].dns, buf, sizeof buf,
                                      err, sizeof err);
        if (cases[i].want) {
            if (rc != 0)
                fprintf(stderr, "  case %zu \"%s\": %s\n", i, cases[i].text, err);
            CHECK_EQ_INT(rc, 0);
            CHECK_STR(buf, cases[i].want);
        } else {
            if (rc == 0)
                fprintf(stderr, "  case %zu \"%s\" parsed as %s\n", i, cases[i].text, buf);
            CHECK_EQ_INT(rc, GG_EINVAL);
            CHECK(err[0] != '\0');
        }
    }
    /* The parts keep their case; compare and format ignore it. */
    entity_ref_t a, b;
    char err[256];
    CHECK_EQ_INT(entity_ref_parse("Component:Default/Artist-Lookup", NULL, NULL, &a, NULL, 0), 0);
    CHECK_STR(a.kind, "Component");
    CHECK_STR(a.namespace, "Default");
    CHECK_STR(a.name, "Artist-Lookup");
    CHECK_EQ_INT(entity_ref_parse("artist-lookup", "component", NULL, &b, NULL, 0), 0);
    CHECK(entity_ref_equal(&a, &b));
    CHECK_EQ_INT(entity_ref_parse("artist-lookupx", "component", NULL, &b, NULL, 0), 0);
    CHECK(!entity_ref_equal(&a, &b));
    CHECK(entity_ref_compare(&a, &b) < 0);
    /* Backstage's messages name what is missing. */
    CHECK_EQ_INT(entity_ref_parse("artists-db", NULL, NULL, &a, err, sizeof err), GG_EINVAL);
    CHECK(strstr(err, "kind") != NULL);
    /* Bounds. */
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ_INT(entity_ref_parse(longname, "Component", NULL, &a, err, sizeof err), GG_EINVAL);
    CHECK_EQ_INT(entity_ref_parse(NULL, "Component", NULL, &a, err, sizeof err), GG_EINVAL);
    char small[8];
    CHECK_EQ_INT(entity_ref_parse("component:default/abc", NULL, NULL, &a, NULL, 0), 0);
    CHECK_EQ_INT(entity_ref_format(&a, small, sizeof small), GG_ETOOBIG);
    CHECK_STR(small, "");
}

static void test_validators(void)
{
    CHECK(entity_ref_valid_name("artist-lookup"));
    CHECK(entity_ref_valid_name("breanna.davison"));
    CHECK(entity_ref_valid_name("a"));
    CHECK(entity_ref_valid_name("A_b.C-9"));
    CHECK(entity_ref_valid_name("a--b")); /* Backstage allows runs of separators */
    CHECK(!entity_ref_valid_name("invalid component"));
    CHECK(!entity_ref_valid_name(""));
    CHECK(!entity_ref_valid_name("-a"));
    CHECK(!entity_ref_valid_name("a_"));
    CHECK(!entity_ref_valid_name("a/b"));
    CHECK(!entity_ref_valid_name("a:b"));
    CHECK(entity_ref_valid_name("a23456789012345678901234567890123456789012345678901234567890123"));
    CHECK(
        !entity_ref_valid_name("a234567890123456789012345678901234567890123456789012345678901234"));
    CHECK(!entity_ref_valid_name(NULL));

    CHECK(entity_ref_valid_namespace("default"));
    CHECK(entity_ref_valid_namespace("alt-1"));
    CHECK(!entity_ref_valid_namespace("Alternative"));
    CHECK(!entity_ref_valid_namespace("a--b"));
    CHECK(!entity_ref_valid_namespace("a_b"));
    CHECK(!entity_ref_valid_namespace("-a"));
    CHECK(!entity_ref_valid_namespace(""));

    CHECK(entity_ref_valid_kind("Component"));
    CHECK(entity_ref_valid_kind("API"));
    CHECK(entity_ref_valid_kind("x9"));
    CHECK(!entity_ref_valid_kind("9x"));
    CHECK(!entity_ref_valid_kind("Foo-Bar"));
    CHECK(!entity_ref_valid_kind(""));

    CHECK(entity_ref_valid_api_version("backstage.io/v1alpha1"));
    CHECK(entity_ref_valid_api_version("my-company.net/v1"));
    CHECK(entity_ref_valid_api_version("v1"));
    CHECK(!entity_ref_valid_api_version("1.0"));
    CHECK(!entity_ref_valid_api_version("Backstage.io/v1"));
    CHECK(!entity_ref_valid_api_version("/v1"));
    CHECK(!entity_ref_valid_api_version("a/b/c"));
    CHECK(!entity_ref_valid_api_version("backstage.io/"));
    CHECK(!entity_ref_valid_api_version("backstage..io/v1"));

    CHECK(entity_ref_valid_tag("java"));
    CHECK(entity_ref_valid_tag("c++"));
    CHECK(entity_ref_valid_tag("c#"));
    CHECK(entity_ref_valid_tag("k8s:prod-1"));
    CHECK(!entity_ref_valid_tag("go 1.15.3"));
    CHECK(!entity_ref_valid_tag("Java"));
    CHECK(!entity_ref_valid_tag("a--b"));
    CHECK(!entity_ref_valid_tag("a_b"));
    CHECK(!entity_ref_valid_tag("-a"));
    CHECK(!entity_ref_valid_tag(""));

    CHECK(entity_ref_valid_label_key("example.com/custom"));
    CHECK(entity_ref_valid_label_key("goVersion"));
    CHECK(entity_ref_valid_label_key("backstage.io/source-location"));
    CHECK(!entity_ref_valid_label_key("a/b/c"));
    CHECK(!entity_ref_valid_label_key("Example.com/x"));
    CHECK(!entity_ref_valid_label_key("example.com/"));
    CHECK(entity_ref_valid_label_value(""));
    CHECK(entity_ref_valid_label_value("go1.15.3"));
    CHECK(!entity_ref_valid_label_value("go 1"));
}

/* ---- the Backstage examples ---- */

static void test_examples_dir(void)
{
    const char *ex = s_examples();
    if (!ex)
        return;
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, ex), 0);
    static const char *const want[] = {
        "group:default/team-a",
        "user:default/breanna.davison",
        "user:default/janelle.dawe",
        "user:default/nigel.manning",
        "user:default/guest",
        "user:development/guest",
        "location:default/example-components",
        "component:default/artist-lookup",
        "component:alternative/different-namespace",
        "component:default/playback-order",
        "component:default/wayback-archive-ingestion",
        "component:default/wayback-search",
        "component:default/www-artist",
        "resource:default/artists-db",
        "system:default/artist-engagement-portal",
    };
    size_t nwant = sizeof want / sizeof want[0];
    CHECK_EQ_INT(catalog_count(cat), nwant);
    for (size_t i = 0; i < nwant; i++) {
        if (!catalog_find(cat, want[i], NULL, NULL)) {
            fprintf(stderr, "  missing %s\n", want[i]);
            CHECK(0);
        }
    }
    /* The invalid component is one warning naming its file, and is skipped. */
    CHECK_EQ_INT(s_nwarnings(cat), 1);
    CHECK(s_has_warning(cat, "components/invalid-component.yaml:", "metadata.name"));
    CHECK(catalog_find(cat, "invalid component", "Component", NULL) == NULL);
    if (s_nwarnings(cat) != 1)
        s_dump_warnings(cat);

    const catalog_entity_t *e = catalog_find(cat, "COMPONENT:Default/Artist-Lookup", NULL, NULL);
    REQUIRE(e);
    CHECK_STR(e->ref, "component:default/artist-lookup");
    CHECK_STR(e->kind, "Component");
    CHECK_STR(e->namespace, "default");
    CHECK_STR(e->name, "artist-lookup");
    CHECK_STR(e->type, "service");
    CHECK_STR(e->lifecycle, "experimental");
    CHECK_STR(e->owner, "group:default/team-a");
    CHECK_STR(e->system, "system:default/artist-engagement-portal");
    CHECK_EQ_INT(e->tag_count, 2);
    if (e->tag_count == 2) {
        CHECK_STR(e->tags[0], "java");
        CHECK_STR(e->tags[1], "data");
    }
    CHECK_EQ_INT(e->depends_on_count, 1);
    if (e->depends_on_count == 1)
        CHECK_STR(e->depends_on[0], "resource:default/artists-db");
    CHECK(s_ends_with(e->file, "/components/artist-lookup-component.yaml"));
    CHECK(s_ends_with(e->path, "/backstage-examples/components"));
    CHECK(s_ends_with(e->where, "artist-lookup-component.yaml:1"));
    CHECK(e->file && e->file[0] == '/');
    CHECK_STR(catalog_entity_annotation(e, "buildkite.com/project-slug"), "nutrien/digital-k8s");
    CHECK(catalog_entity_annotation(e, "nope") == NULL);
    CHECK(e->source == NULL);
    /* Every field is kept. */
    json_t *links = json_object_get(json_object_get(e->json, "metadata"), "links");
    CHECK_EQ_INT(json_array_size(links), 7);

    /* different-namespace.yaml's namespace is honoured; its owner keeps the
     * namespace it names. */
    e = catalog_find(cat, "different-namespace", "Component", "alternative");
    REQUIRE(e);
    CHECK_STR(e->namespace, "alternative");
    CHECK_STR(e->ref, "component:alternative/different-namespace");
    CHECK_STR(e->owner, "group:default/team-a");
    CHECK(catalog_find(cat, "component:default/different-namespace", NULL, NULL) == NULL);

    e = catalog_find(cat, "component:playback-order", NULL, NULL);
    REQUIRE(e);
    CHECK_STR(e->owner, "user:default/guest");
    e = catalog_find(cat, "wayback-search", "Component", NULL);
    REQUIRE(e);
    CHECK_STR(catalog_entity_annotation(e, "myorg.org/security"), "true");
    /* Multi-document files: each entity has its own line. */
    e = catalog_find(cat, "user:development/guest", NULL, NULL);
    REQUIRE(e);
    CHECK(s_ends_with(e->where, "team-a-group.yaml:64"));
    e = catalog_find(cat, "user:default/breanna.davison", NULL, NULL);
    REQUIRE(e);
    CHECK(s_ends_with(e->where, "team-a-group.yaml:15"));

    const catalog_entity_t **list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:artists-db", false, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_STR(list[0]->ref, "component:default/artist-lookup");
    free(list);
    catalog_destroy(&cat);
    CHECK(cat == NULL);
    catalog_destroy(&cat);
}

static void test_examples_location(void)
{
    const char *ex = s_examples();
    char path[PATH_MAX];
    if (!ex)
        return;
    snprintf(path, sizeof path, "%s/all-components.yaml", ex);
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, path), 0);
    CHECK_EQ_INT(catalog_count(cat), 7); /* the Location and its six components */
    CHECK_EQ_INT(s_nwarnings(cat), 0);
    CHECK(catalog_find(cat, "location:example-components", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:alternative/different-namespace", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:default/www-artist", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "resource:default/artists-db", NULL, NULL) == NULL);

    /* The directory after the Location: the six files count once. */
    CHECK_EQ_INT(catalog_load_path(cat, ex), 0);
    CHECK_EQ_INT(catalog_count(cat), 15);
    CHECK_EQ_INT(s_nwarnings(cat), 1);
    catalog_destroy(&cat);

    /* And the other way round, plus the Location file loaded once more. */
    cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, ex), 0);
    CHECK_EQ_INT(catalog_load_path(cat, path), 0);
    CHECK_EQ_INT(catalog_count(cat), 15);
    CHECK_EQ_INT(s_nwarnings(cat), 1);
    CHECK_EQ_INT(catalog_load_path(cat, "/nonexistent/catalog.yaml"), GG_ENOTFOUND);
    CHECK(s_has_warning(cat, "/nonexistent/catalog.yaml", NULL));
    catalog_destroy(&cat);
}

/* ---- hand-written catalogs ---- */

#define COMPONENT(name, extra)                                                                     \
    "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: " name "\n"            \
    "spec:\n  type: service\n  lifecycle: production\n  owner: team-a\n" extra

static void test_kindless_depends_on(void)
{
    REQUIRE(s_fresh_tmp());
    s_write(
        "c.yaml",
        COMPONENT("bad", "  dependsOn: [resource:default/ds, other-thing]\n") "---\n" COMPONENT(
            "good",
            "  dependsOn: ['resource:ds']\n") "---\n" COMPONENT("empty-ref",
                                                                "  dependsOn: ['']\n") "---"
                                                                                       "\n" COMPONENT(
                                                                                           "bad-"
                                                                                           "owner",
                                                                                           "  "
                                                                                           "owner: "
                                                                                           "'group:"
                                                                                           "'\n"));
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("c.yaml")), 0);
    CHECK_EQ_INT(catalog_count(cat), 1);
    CHECK(catalog_find(cat, "component:good", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:bad", NULL, NULL) == NULL);
    CHECK(s_has_warning(cat, "c.yaml:1", "\"bad\" skipped: \"spec.dependsOn[1]\""));
    CHECK(s_has_warning(cat, "c.yaml:1", "missing or empty kind"));
    CHECK(s_has_warning(cat, "c.yaml:", "\"empty-ref\" skipped"));
    CHECK_EQ_INT(s_nwarnings(cat), 3);
    if (s_nwarnings(cat) != 3)
        s_dump_warnings(cat);
    const catalog_entity_t **list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds", true, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    free(list);
    CHECK_EQ_INT(catalog_consumers_of(cat, "ds", true, &list, &n), GG_EINVAL);
    catalog_destroy(&cat);
}

static void test_validation(void)
{
    REQUIRE(s_fresh_tmp());
    s_write(
        "v.yaml",
        /* 1: unquoted boolean annotation: Backstage wants strings */
        COMPONENT(
            "ann-bool",
            "") "  x: 1\n" /* unknown spec fields are fine */
                "---\n"
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: ann-bool2\n"
                "  annotations:\n    myorg.org/security: true\n"
                "spec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* label value 1.0 is a number */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: lbl\n"
                "  labels: {version: 1.0}\n"
                "spec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* missing lifecycle */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: nolife}\n"
                "spec: {type: service, owner: team-a}\n"
                "---\n" /* bad tag */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: tagged\n"
                "  tags: [Java]\nspec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* bad namespace */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: nsbad\n"
                "  namespace: Alt\nspec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* builtin kind with a foreign apiVersion */
                "apiVersion: example.com/v1\nkind: Component\nmetadata: {name: foreign}\n"
                "spec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* wrong case kind */
                "apiVersion: backstage.io/v1alpha1\nkind: component\nmetadata: {name: lower}\n"
                "spec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* a custom kind with its own group */
                "apiVersion: example.com/v1\nkind: Dataset\nmetadata: {name: custom}\n"
                "spec: {dependsOn: ['resource:ds']}\n"
                "---\n" /* foreign root field */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: rooty}\n"
                "extra: 1\nspec: {type: service, lifecycle: production, owner: team-a}\n"
                "---\n" /* no apiVersion */
                "kind: Component\nmetadata: {name: noapi}\n"
                "---\n" /* Group needs children */
                "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: g}\n"
                "spec: {type: team}\n"
                "---\n" /* API needs a definition; a $text placeholder counts */
                "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata: {name: api1}\n"
                "spec: {type: openapi, lifecycle: production, owner: team-a, "
                "definition: {$text: ./openapi.yaml}}\n"
                "---\n"
                "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: noloc}\n"
                "spec: {type: file}\n"
                "---\n" /* User without memberOf is fine */
                "apiVersion: backstage.io/v1beta1\nkind: User\nmetadata: {name: solo}\nspec: {}\n"
                "---\n" /* quoted annotation and source-location prefix */
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: good\n"
                "  annotations:\n    myorg.org/security: 'true'\n"
                "    backstage.io/source-location: url:https://git.example.com/x/tree/main/\n"
                "  labels: {version: '1.0', empty: ''}\n"
                "spec: {type: service, lifecycle: production, owner: team-a}\n");
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("v.yaml")), 0);
    static const char *const valid[] = {"component:ann-bool", "dataset:custom", "api:api1",
                                        "user:solo", "component:good"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (!catalog_find(cat, valid[i], NULL, NULL)) {
            fprintf(stderr, "  missing %s\n", valid[i]);
            CHECK(0);
        }
    CHECK_EQ_INT(catalog_count(cat), 5);
    CHECK(s_has_warning(cat, "v.yaml:11", "annotations.myorg.org/security\" must be a string"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"labels.version\" must be a string"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"spec.lifecycle\" is required"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"tags.0\" is not valid"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"metadata.namespace\" is not valid"));
    CHECK(s_has_warning(cat, "v.yaml:", "not supported for kind Component"));
    CHECK(s_has_warning(cat, "v.yaml:", "kinds are case-sensitive"));
    CHECK(s_has_warning(cat, "v.yaml:", "unknown root field \"extra\""));
    CHECK(s_has_warning(cat, "v.yaml:", "\"apiVersion\" must have a value"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"spec.children\" is required"));
    CHECK(s_has_warning(cat, "v.yaml:", "\"spec.target\" or \"spec.targets\""));
    CHECK_EQ_INT(s_nwarnings(cat), 11);
    if (s_nwarnings(cat) != 11)
        s_dump_warnings(cat);
    const catalog_entity_t *e = catalog_find(cat, "component:good", NULL, NULL);
    REQUIRE(e);
    CHECK_STR(e->source, "https://git.example.com/x/tree/main/");
    CHECK_STR(catalog_entity_label(e, "version"), "1.0");
    /* The custom kind's dependsOn counts. */
    const catalog_entity_t **list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds", false, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_STR(list[0]->ref, "dataset:default/custom");
    free(list);
    catalog_destroy(&cat);
}

static void s_expect_refs(const catalog_entity_t **list, size_t n, const char *const *want,
                          size_t nwant)
{
    CHECK_EQ_INT(n, nwant);
    for (size_t i = 0; i < n && i < nwant; i++)
        CHECK_STR(list[i]->ref, want[i]);
    if (n != nwant)
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "    got %s\n", list[i]->ref);
}

static void test_consumers(void)
{
    REQUIRE(s_fresh_tmp());
    s_write("ds.yaml", "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata: {name: ds}\n"
                       "spec: {type: dataset, owner: team-a, dependsOn: ['component:c5']}\n"
                       "---\n"
                       "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata: {name: r2}\n"
                       "spec: {type: db, owner: team-a, dependencyOf: ['component:c6', "
                       "'component:ghost']}\n");
    s_write(
        "a/c.yaml",
        COMPONENT("c1", "  dependsOn: ['resource:ds']\n") "---\n" COMPONENT(
            "c2",
            "  "
            "depe"
            "ndsO"
            "n: "
            "['"
            "comp"
            "onen"
            "t:"
            "c1']"
            "\n") "---\n" COMPONENT("c3",
                                    "  dependsOn: ['Resource:Default/DS', "
                                    "'component:c2']\n") "---\n" COMPONENT("c4",
                                                                           "  dependsOn: "
                                                                           "['component:"
                                                                           "c5']\n") "---"
                                                                                     "\n" COMPONENT(
                                                                                         "c5",
                                                                                         "  "
                                                                                         "dependsOn"
                                                                                         ": "
                                                                                         "['"
                                                                                         "component"
                                                                                         ":c4', "
                                                                                         "'componen"
                                                                                         "t:"
                                                                                         "default/"
                                                                                         "c3']\n") "---"
                                                                                                   "\n" COMPONENT("c6", "") "---\n" COMPONENT(
                                                                                                       "u1",
                                                                                                       "  dependsOn: ['resource:other']\n"));
    s_write("b/p.yaml",
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: p1\n"
            "  namespace: payments\nspec:\n  type: service\n  lifecycle: production\n"
            "  owner: team-a\n  dependsOn: ['resource:ds']\n"
            "---\n"
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: p2\n"
            "  namespace: payments\nspec:\n  type: service\n  lifecycle: production\n"
            "  owner: team-a\n  dependsOn: ['resource:default/ds']\n");
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_tmp), 0);
    CHECK_EQ_INT(catalog_count(cat), 11);
    CHECK_EQ_INT(s_nwarnings(cat), 0);
    const catalog_entity_t *p1 = catalog_find(cat, "component:payments/p1", NULL, NULL);
    REQUIRE(p1);
    CHECK_STR(p1->owner, "group:payments/team-a");
    CHECK_STR(p1->depends_on[0], "resource:payments/ds");

    const catalog_entity_t **list = NULL;
    size_t n = 0;
    static const char *const direct[] = {"component:default/c1", "component:default/c3",
                                         "component:payments/p2"};
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds", false, &list, &n), 0);
    s_expect_refs(list, n, direct, 3);
    free(list);

    /* c5 -> c4 -> c5 is a cycle, and ds itself depends on c5: it is never
     * listed as its own consumer. */
    static const char *const all[] = {"component:default/c1", "component:default/c2",
                                      "component:default/c3", "component:default/c4",
                                      "component:default/c5", "component:payments/p2"};
    CHECK_EQ_INT(catalog_consumers_of(cat, "RESOURCE:ds", true, &list, &n), 0);
    s_expect_refs(list, n, all, 6);
    free(list);

    /* dependencyOf on a Resource: c6 depends on r2 (ghost is not loaded). */
    static const char *const r2[] = {"component:default/c6"};
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:r2", true, &list, &n), 0);
    s_expect_refs(list, n, r2, 1);
    free(list);

    /* A ref nothing depends on, and one not in the catalog at all. */
    CHECK_EQ_INT(catalog_consumers_of(cat, "component:u1", true, &list, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK(list == NULL);
    static const char *const other[] = {"component:default/u1"};
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:other", false, &list, &n), 0);
    s_expect_refs(list, n, other, 1);
    free(list);

    /* Loading more invalidates the index. */
    s_write("late.yaml", COMPONENT("c7", "  dependsOn: ['resource:ds']\n"));
    CHECK_EQ_INT(catalog_load_path(cat, s_path("late.yaml")), 0);
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds", false, &list, &n), 0);
    CHECK_EQ_INT(n, 4);
    free(list);
    catalog_destroy(&cat);
}

static void test_json(void)
{
    REQUIRE(s_fresh_tmp());
    static const char by_query[] =
        "{\"items\": ["
        "{\"apiVersion\": \"backstage.io/v1alpha1\", \"kind\": \"Component\","
        " \"metadata\": {\"name\": \"j1\", \"namespace\": \"default\", \"uid\": \"u-1\","
        "  \"etag\": \"e\", \"annotations\": {\"backstage.io/source-location\": \"dir:/src/j1\"}},"
        " \"spec\": {\"type\": \"service\", \"lifecycle\": \"production\", \"owner\": "
        "\"group:default/team-a\", \"dependsOn\": [\"resource:default/ds\"]},"
        " \"relations\": [{\"type\": \"dependsOn\", \"targetRef\": \"resource:default/ds\"}]},"
        "{\"apiVersion\": \"backstage.io/v1alpha1\", \"kind\": \"Component\","
        " \"metadata\": {\"name\": \"bad name\"}, \"spec\": {}},"
        "{\"apiVersion\": \"backstage.io/v1alpha1\", \"kind\": \"Location\","
        " \"metadata\": {\"name\": \"generated-1\"},"
        " \"spec\": {\"type\": \"url\", \"target\": \"./nowhere.yaml\"}},"
        "{\"apiVersion\": \"backstage.io/v1alpha1\", \"kind\": \"Component\","
        " \"metadata\": {\"name\": \"j2\"},"
        " \"spec\": {\"type\": \"service\", \"lifecycle\": \"production\", \"owner\": \"t\"},"
        " \"relations\": [{\"type\": \"dependsOn\", \"targetRef\": \"resource:default/ds2\"},"
        "  {\"type\": \"dependsOn\", \"target\": {\"kind\": \"resource\", \"namespace\": "
        "\"default\", \"name\": \"ds3\"}},"
        "  {\"type\": \"dependsOn\", \"targetRef\": \"no-kind\"},"
        "  {\"type\": \"ownedBy\", \"targetRef\": \"group:default/t\"}]}"
        "], \"totalItems\": 4, \"pageInfo\": {}}";
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_json_text(cat, by_query, strlen(by_query), "query.json"), 0);
    CHECK_EQ_INT(catalog_count(cat), 3);
    CHECK(s_has_warning(cat, "query.json", "items[1]: Component \"bad name\" skipped"));
    CHECK_EQ_INT(s_nwarnings(cat), 1); /* the Location is kept, not followed */
    const catalog_entity_t *e = catalog_find(cat, "component:j1", NULL, NULL);
    REQUIRE(e);
    CHECK_STR(e->source, "/src/j1");
    CHECK(e->file == NULL && e->path == NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(e->json, "metadata"), "uid")),
              "u-1");
    /* Relations computed by Backstage count as dependency edges. */
    e = catalog_find(cat, "component:j2", NULL, NULL);
    REQUIRE(e);
    CHECK_EQ_INT(e->depends_on_count, 2);
    const catalog_entity_t **list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds3", false, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_STR(list[0]->ref, "component:default/j2");
    free(list);

    /* A plain array in a file, and an entity that is already there. */
    s_write("arr.json",
            "[{\"apiVersion\": \"backstage.io/v1alpha1\", \"kind\": \"Resource\","
            " \"metadata\": {\"name\": \"ds\"}, \"spec\": {\"type\": \"t\", \"owner\": \"o\"}},"
            " 42]");
    CHECK_EQ_INT(catalog_load_path(cat, s_path("arr.json")), 0);
    CHECK_EQ_INT(catalog_count(cat), 4);
    CHECK(s_has_warning(cat, "arr.json", "items[1]: entity must be a mapping"));

    /* Malformed JSON: an error for text, a warning with its line for a file. */
    CHECK_EQ_INT(catalog_load_json_text(cat, "{\"items\": [", 11, "broken.json"), GG_EMALFORMED);
    CHECK(s_has_warning(cat, "broken.json", "JSON syntax error"));
    s_write("bad.json", "{\n\"a\": 1,\n\"a\": 2\n}\n");
    CHECK_EQ_INT(catalog_load_path(cat, s_path("bad.json")), 0);
    CHECK(s_has_warning(cat, "bad.json:", "JSON syntax error"));
    CHECK_EQ_INT(catalog_load_json_text(cat, "\"x\"", 3, "scalar.json"), GG_EMALFORMED);
    catalog_destroy(&cat);
}

static void test_yaml_errors(void)
{
    REQUIRE(s_fresh_tmp());
    s_write("cat/a-good.yaml", COMPONENT("good-one", ""));
    s_write("cat/b-bad.yaml",
            COMPONENT("before-error", "") "---\n"
                                          "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                                          "metadata:\n  name: [unclosed\n  x: y\n");
    s_write("cat/c-shapes.yaml", "---\n---\n- a\n- b\n---\nplain text\n---\n"
                                 "apiVersion: a/b\nkind: X\nkind: Y\n---\n" COMPONENT("last", ""));
    s_write("cat/d-good.yml", COMPONENT("good-two", ""));
    s_write("cat/notes.txt", "not: read\n");
    s_write("cat/.hidden/x.yaml", COMPONENT("hidden", ""));
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("cat")), 0);
    CHECK(catalog_find(cat, "component:good-one", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:good-two", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:before-error", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:last", NULL, NULL) != NULL);
    CHECK(catalog_find(cat, "component:hidden", NULL, NULL) == NULL);
    CHECK_EQ_INT(catalog_count(cat), 4);
    CHECK(s_has_warning(cat, "b-bad.yaml:14", "YAML syntax error"));
    CHECK(
        s_has_warning(cat, "c-shapes.yaml:3", "expected a mapping at its root, found a sequence"));
    CHECK(s_has_warning(cat, "c-shapes.yaml:6", "found a string"));
    CHECK(s_has_warning(cat, "c-shapes.yaml:10", "duplicate key \"kind\""));
    CHECK_EQ_INT(s_nwarnings(cat), 4);
    if (s_nwarnings(cat) != 4)
        s_dump_warnings(cat);
    catalog_destroy(&cat);
}

static void test_yaml_types(void)
{
    static const char text[] =
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: typed\n"
        "spec:\n  type: service\n  lifecycle: production\n  owner: team-a\n"
        "  base: &base {replicas: 3, ratio: 0.5, on: true, none: ~, hex: 0x10, oct: 0o17,\n"
        "    exp: 1e3, quoted: '123', qnull: 'null', yes11: yes, ver: 1.15.3, inf: .inf,\n"
        "    big: 123456789012345678901234567890, tagged: !!str 42, neg: -7}\n"
        "  copy: *base\n"
        "  block: |\n    line one\n    line two\n"
        "  key-anchor: {&k name: v, other: *k}\n";
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_yaml_text(cat, text, strlen(text), "types.yaml"), 0);
    s_dump_warnings(cat);
    const catalog_entity_t *e = catalog_find(cat, "component:typed", NULL, NULL);
    REQUIRE(e);
    json_t *spec = json_object_get(e->json, "spec");
    json_t *b = json_object_get(spec, "base");
    CHECK(json_is_integer(json_object_get(b, "replicas")));
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "replicas")), 3);
    CHECK(json_is_real(json_object_get(b, "ratio")));
    CHECK(json_is_true(json_object_get(b, "on")));
    CHECK(json_is_null(json_object_get(b, "none")));
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "hex")), 16);
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "oct")), 15);
    CHECK(json_is_real(json_object_get(b, "exp")));
    CHECK_STR(json_string_value(json_object_get(b, "quoted")), "123");
    CHECK_STR(json_string_value(json_object_get(b, "qnull")), "null");
    CHECK_STR(json_string_value(json_object_get(b, "yes11")), "yes"); /* YAML 1.2 */
    CHECK_STR(json_string_value(json_object_get(b, "ver")), "1.15.3");
    CHECK_STR(json_string_value(json_object_get(b, "inf")), ".inf");
    CHECK(json_is_real(json_object_get(b, "big")));
    CHECK_STR(json_string_value(json_object_get(b, "tagged")), "42");
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "neg")), -7);
    CHECK(json_equal(b, json_object_get(spec, "copy")));
    CHECK(b != json_object_get(spec, "copy")); /* a copy, not a shared node */
    CHECK_STR(json_string_value(json_object_get(spec, "block")), "line one\nline two\n");
    json_t *ka = json_object_get(spec, "key-anchor");
    CHECK_STR(json_string_value(json_object_get(ka, "name")), "v");
    CHECK_STR(json_string_value(json_object_get(ka, "other")), "name");
    catalog_destroy(&cat);
}

static void test_yaml_bounds(void)
{
    /* Nesting deeper than the bound, and an alias bomb. */
    char deep[600];
    size_t n = 0;
    n += (size_t) snprintf(deep + n, sizeof deep - n, "%s", COMPONENT("deep", "  x: "));
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '\n';
    deep[n] = '\0';
    static const char bomb[] =
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: bomb}\n"
        "spec:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
        "  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_yaml_text(cat, deep, strlen(deep), "deep.yaml"), 0);
    CHECK(s_has_warning(cat, "deep.yaml:", "nested deeper than 64"));
    double t0 = s_now();
    CHECK_EQ_INT(catalog_load_yaml_text(cat, bomb, strlen(bomb), "bomb.yaml"), 0);
    CHECK(s_has_warning(cat, "bomb.yaml:", "aliases expand to more than"));
    CHECK(s_now() - t0 < 10.0);
    CHECK_EQ_INT(catalog_count(cat), 0);
    /* A NUL inside a quoted string is refused. */
    static const char nul[] = COMPONENT("nul", "  x: \"a\\0b\"\n");
    CHECK_EQ_INT(catalog_load_yaml_text(cat, nul, strlen(nul), "nul.yaml"), 0);
    CHECK(s_has_warning(cat, "nul.yaml:", "NUL"));
    CHECK_EQ_INT(catalog_count(cat), 0);

    /* The entity limit. */
    catalog_set_max_entities(cat, 2);
    static const char three[] =
        COMPONENT("one", "") "---\n" COMPONENT("two", "") "---\n" COMPONENT("three", "");
    CHECK_EQ_INT(catalog_load_yaml_text(cat, three, strlen(three), "three.yaml"), GG_ETOOBIG);
    CHECK_EQ_INT(catalog_count(cat), 2);
    CHECK(s_has_warning(cat, "three.yaml:", "entity limit (2) reached"));
    catalog_destroy(&cat);
}

static void test_duplicates(void)
{
    REQUIRE(s_fresh_tmp());
    s_write("a.yaml", COMPONENT("same", "") "---\n" COMPONENT("differs", ""));
    s_write("b.yaml", COMPONENT("same", "") "---\n" COMPONENT("Differs", "  system: x\n"));
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_tmp), 0);
    CHECK_EQ_INT(catalog_count(cat), 2);
    CHECK_EQ_INT(s_nwarnings(cat), 1);
    CHECK(s_has_warning(cat, "b.yaml:", "duplicate entity ref component:default/differs in "));
    CHECK(s_has_warning(cat, NULL, "first seen in "));
    size_t nw = 0;
    const catalog_warning_t *w = catalog_warnings(cat, &nw);
    if (nw == 1)
        CHECK(strstr(w[0].message, "a.yaml:") != NULL);
    const catalog_entity_t *e = catalog_find(cat, "component:differs", NULL, NULL);
    REQUIRE(e);
    CHECK(s_ends_with(e->file, "/a.yaml"));
    catalog_destroy(&cat);
}

static void test_locations(void)
{
    REQUIRE(s_fresh_tmp());
#define LOCATION(name, spec)                                                                       \
    "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: " name "}\nspec: " spec   \
    "\n"
    /* root -> a (relative), b (file: prefix), a recursive glob under sub, an
     * http target, a missing file; a -> root (a loop); b -> root by an
     * absolute path. */
    char root[2048];
    snprintf(root, sizeof root,
             LOCATION("root", "{targets: [./a.yaml, 'file:./dir1/b.yaml', './sub/**/*.yaml', "
                              "'https://example.com/catalog-info.yaml', ./missing.yaml]}"));
    s_write("root.yaml", root);
    s_write("a.yaml", LOCATION("a", "{target: ./root.yaml}") "---\n" COMPONENT("ca", ""));
    char b[2048];
    snprintf(b, sizeof b,
             LOCATION("b", "{type: file, target: '%s/root.yaml'}") "---\n" COMPONENT("cb", ""),
             s_tmp);
    s_write("dir1/b.yaml", b);
    s_write("sub/x.yaml", COMPONENT("cx", ""));
    s_write("sub/deeper/y/z.yaml", COMPONENT("cz", ""));
    s_write("sub/deeper/y/z.txt", COMPONENT("ctxt", ""));
    s_write("sub/.git/w.yaml", COMPONENT("cgit", ""));
    s_write("other/ignored.yaml", COMPONENT("cother", ""));
    s_write("odd.yaml", LOCATION("odd", "{type: github-discovery, target: 'https://x/y'}"));
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("root.yaml")), 0);
    static const char *const want[] = {"location:root", "location:a",   "component:ca",
                                       "location:b",    "component:cb", "component:cx",
                                       "component:cz"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!catalog_find(cat, want[i], NULL, NULL)) {
            fprintf(stderr, "  missing %s\n", want[i]);
            CHECK(0);
        }
    CHECK_EQ_INT(catalog_count(cat), 7);
    CHECK(s_has_warning(cat, "root.yaml:1", "URL target https://example.com"));
    CHECK(s_has_warning(cat, "root.yaml:1", "missing.yaml"));
    CHECK_EQ_INT(s_nwarnings(cat), 2);
    if (s_nwarnings(cat) != 2)
        s_dump_warnings(cat);
    const catalog_entity_t *e = catalog_find(cat, "component:cz", NULL, NULL);
    REQUIRE(e);
    CHECK(s_ends_with(e->path, "/sub/deeper/y"));

    CHECK_EQ_INT(catalog_load_path(cat, s_path("odd.yaml")), 0);
    CHECK(s_has_warning(cat, "odd.yaml:1", "type \"github-discovery\" is not supported"));

    /* A glob that matches nothing. */
    s_write("g.yaml", LOCATION("g", "{target: './none/*.yaml'}"));
    CHECK_EQ_INT(catalog_load_path(cat, s_path("g.yaml")), 0);
    CHECK(s_has_warning(cat, "g.yaml:1", "no files match"));
    catalog_destroy(&cat);

    /* A chain of Locations deeper than the bound stops with a warning. */
    REQUIRE(s_fresh_tmp());
    for (int i = 0; i <= CATALOG_MAX_LOCATION_DEPTH + 1; i++) {
        char name[64], text[512];
        snprintf(name, sizeof name, "l%02d.yaml", i);
        snprintf(text, sizeof text,
                 "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: l%d}\n"
                 "spec: {target: ./l%02d.yaml}\n",
                 i, i + 1);
        s_write(name, text);
    }
    cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("l00.yaml")), 0);
    CHECK_EQ_INT(catalog_count(cat), CATALOG_MAX_LOCATION_DEPTH + 1);
    CHECK(s_has_warning(cat, NULL, "nested deeper than 32 Locations"));
    catalog_destroy(&cat);
}

static void test_filesystem_edges(void)
{
    char link[PATH_MAX];
    REQUIRE(s_fresh_tmp());
    s_write("d/c.yaml", COMPONENT("c1", ""));
    s_write("d/sub/c.yaml", COMPONENT("c2", ""));
    /* A symlink back up the tree, and a FIFO named like a catalog file that a
     * Location points at: neither may hang the load. */
    snprintf(link, sizeof link, "%s/d/sub/loop", s_tmp);
    CHECK_EQ_INT(symlink("..", link), 0);
    snprintf(link, sizeof link, "%s/d/sub/loop2", s_tmp);
    CHECK_EQ_INT(symlink(".", link), 0);
    CHECK_EQ_INT(mkfifo(s_path("d/fifo.yaml"), 0600), 0);
    s_write("d/loc.yaml", "apiVersion: backstage.io/v1alpha1\nkind: Location\n"
                          "metadata: {name: l}\nspec: {targets: [./fifo.yaml, './**/c.yaml']}\n");
    s_write("d/empty.yaml", "");
    s_write("d/comments.yaml", "# nothing here\n---\n# still nothing\n");
    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_path(cat, s_path("d")), 0);
    CHECK_EQ_INT(catalog_count(cat), 3);
    CHECK(s_has_warning(cat, "fifo.yaml", "not a regular file"));
    CHECK_EQ_INT(s_nwarnings(cat), 1);
    if (s_nwarnings(cat) != 1)
        s_dump_warnings(cat);
    catalog_destroy(&cat);
}

/* ---- generated catalog ---- */

/* Runs argv, waits; returns the exit status or -1. */
static int s_run(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void test_generated(void)
{
    char script[PATH_MAX], out[PATH_MAX], root[PATH_MAX + 32], summary_path[PATH_MAX + 32];
    if (!s_source()) {
        fprintf(stderr, "  (GAGGLE_SOURCE unset: generated catalog skipped)\n");
        return;
    }
    REQUIRE(s_fresh_tmp());
    snprintf(script, sizeof script, "%s/tools/gen-catalog.py", s_source());
    snprintf(out, sizeof out, "%s/gen", s_tmp);
    char *argv[] = {"python3",  script, "--out",  out, "--consumers", "10000",
                    "--owners", "50",   "--seed", "7", NULL};
    double t0 = s_now();
    REQUIRE(s_run(argv) == 0);
    fprintf(stderr, "  generated 10,000 consumers in %.2fs\n", s_now() - t0);

    snprintf(summary_path, sizeof summary_path, "%s/.gen-summary.json", out);
    json_error_t jerr;
    json_t *summary = json_load_file(summary_path, 0, &jerr);
    REQUIRE(summary);
    snprintf(root, sizeof root, "%s/catalog-info.yaml", out);

    catalog_t *cat = catalog_new();
    REQUIRE(cat);
    t0 = s_now();
    CHECK_EQ_INT(catalog_load_path(cat, root), 0);
    double load = s_now() - t0;
    CHECK_EQ_INT(catalog_count(cat), json_integer_value(json_object_get(summary, "entities")));
    CHECK(catalog_count(cat) > 10000);
    CHECK_EQ_INT(s_nwarnings(cat), 0);
    if (s_nwarnings(cat))
        s_dump_warnings(cat);

    const char *from =
        json_string_value(json_object_get(json_object_get(summary, "dataset"), "from"));
    REQUIRE(from);
    const catalog_entity_t **list = NULL;
    size_t n = 0;
    t0 = s_now();
    CHECK_EQ_INT(catalog_consumers_of(cat, from, false, &list, &n), 0);
    json_t *direct = json_object_get(summary, "direct");
    CHECK_EQ_INT(n, json_array_size(direct));
    size_t mismatches = 0;
    for (size_t i = 0; i < n && i < json_array_size(direct); i++)
        mismatches += strcmp(list[i]->ref, json_string_value(json_array_get(direct, i))) != 0;
    CHECK_EQ_INT(mismatches, 0);
    free(list);
    CHECK_EQ_INT(catalog_consumers_of(cat, from, true, &list, &n), 0);
    double query = s_now() - t0;
    json_t *trans = json_object_get(summary, "transitive");
    CHECK_EQ_INT(n, json_array_size(trans));
    CHECK(n > json_array_size(direct));
    mismatches = 0;
    for (size_t i = 0; i < n && i < json_array_size(trans); i++)
        mismatches += strcmp(list[i]->ref, json_string_value(json_array_get(trans, i))) != 0;
    CHECK_EQ_INT(mismatches, 0);
    free(list);
    fprintf(stderr, "  loaded %zu entities in %.2fs; consumers in %.3fs\n", catalog_count(cat),
            load, query);

    /* The folder itself gives the same catalog (the summary file is hidden). */
    catalog_t *dir = catalog_new();
    REQUIRE(dir);
    CHECK_EQ_INT(catalog_load_path(dir, out), 0);
    CHECK_EQ_INT(catalog_count(dir), catalog_count(cat));
    CHECK_EQ_INT(s_nwarnings(dir), 0);
    catalog_destroy(&dir);
    CHECK(load < 60.0);
    CHECK(query < 5.0);

    /* Security annotations are visible. */
    json_t *sec = json_object_get(summary, "security");
    size_t i;
    json_t *r;
    json_array_foreach(sec, i, r)
    {
        const catalog_entity_t *e = catalog_find(cat, json_string_value(r), NULL, NULL);
        const char *v = e ? catalog_entity_annotation(e, "myorg.org/security") : NULL;
        CHECK(v && strcmp(v, "true") == 0);
    }
    json_decref(summary);
    catalog_destroy(&cat);
}

/* ---- a live Backstage (a tiny python server) ---- */

static const char s_server_py[] =
    "import json, sys, urllib.parse\n"
    "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
    "def ent(n, dep=None):\n"
    "    spec = {'type': 'service', 'lifecycle': 'production', 'owner': 'team-a'}\n"
    "    if dep: spec['dependsOn'] = [dep]\n"
    "    return {'apiVersion': 'backstage.io/v1alpha1', 'kind': 'Component',\n"
    "            'metadata': {'name': n, 'namespace': 'default'}, 'spec': spec}\n"
    "PAGES = {None: {'items': [ent('web-1', 'resource:default/ds'), ent('web-2')],\n"
    "                'totalItems': 3, 'pageInfo': {'nextCursor': 'c/2=+'}},\n"
    "         'c/2=+': {'items': [ent('web-3', 'resource:default/ds')],\n"
    "                  'totalItems': 3, 'pageInfo': {'prevCursor': 'x'}}}\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def do_GET(self):\n"
    "        u = urllib.parse.urlparse(self.path)\n"
    "        q = urllib.parse.parse_qs(u.query)\n"
    "        if self.headers.get('Authorization') != 'Bearer s3cret':\n"
    "            self.send_response(401); self.end_headers(); return\n"
    "        cur = q.get('cursor', [None])[0]\n"
    "        if u.path != '/api/catalog/entities/by-query' or cur not in PAGES:\n"
    "            self.send_response(404); self.end_headers(); return\n"
    "        body = json.dumps(PAGES[cur]).encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', 'application/json')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "s = HTTPServer(('127.0.0.1', 0), H)\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(s.server_address[1]))\n"
    "import os; os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "s.serve_forever()\n";

static void test_url(void)
{
    char script[PATH_MAX + 16], portfile[PATH_MAX + 16], url[128];
    REQUIRE(s_fresh_tmp());
    snprintf(script, sizeof script, "%s/server.py", s_tmp);
    snprintf(portfile, sizeof portfile, "%s/port", s_tmp);
    s_write("server.py", s_server_py);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execlp("python3", "python3", script, portfile, (char *) NULL);
        _exit(127);
    }
    int port = 0;
    for (double deadline = s_now() + 20.0; s_now() < deadline && port == 0;) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port == 0)
            usleep(20000);
    }
    if (port == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        REQUIRE(port != 0);
    }
    catalog_t *cat = catalog_new();
    if (!cat)
        goto out;

    /* Without the token: 401 is an error with a hint. */
    unsetenv("GAGGLE_CATALOG_TOKEN");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    CHECK_EQ_INT(catalog_load_url(cat, url), GG_ECONN);
    CHECK(s_has_warning(cat, "127.0.0.1", "HTTP 401"));
    CHECK_EQ_INT(catalog_count(cat), 0);

    /* With it: both pages, the cursor passed back escaped. */
    setenv("GAGGLE_CATALOG_TOKEN", "s3cret", 1);
    CHECK_EQ_INT(catalog_load_path(cat, url), 0);
    CHECK_EQ_INT(catalog_count(cat), 3);
    CHECK(catalog_find(cat, "component:default/web-3", NULL, NULL) != NULL);
    const catalog_entity_t **list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(catalog_consumers_of(cat, "resource:default/ds", false, &list, &n), 0);
    CHECK_EQ_INT(n, 2);
    free(list);
    /* The full by-query URL works as well (the same entities count once). */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/catalog/entities/by-query", port);
    CHECK_EQ_INT(catalog_load_url(cat, url), 0);
    CHECK_EQ_INT(catalog_count(cat), 3);
    /* A wrong path is a 404. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/backstage", port);
    CHECK_EQ_INT(catalog_load_url(cat, url), GG_ECONN);
    CHECK(s_has_warning(cat, "/backstage/api/catalog/entities/by-query", "HTTP 404"));
    unsetenv("GAGGLE_CATALOG_TOKEN");
out:
    catalog_destroy(&cat);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    /* Nothing listens any more: a connection error, not a hang. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    cat = catalog_new();
    REQUIRE(cat);
    CHECK_EQ_INT(catalog_load_url(cat, url), GG_ECONN);
    CHECK_EQ_INT(catalog_load_url(cat, "ftp://example.com/"), GG_EINVAL);
    catalog_destroy(&cat);
}

int main(void)
{
    GG_RUN(test_ref_parse);
    GG_RUN(test_validators);
    GG_RUN(test_examples_dir);
    GG_RUN(test_examples_location);
    GG_RUN(test_kindless_depends_on);
    GG_RUN(test_validation);
    GG_RUN(test_consumers);
    GG_RUN(test_json);
    GG_RUN(test_yaml_errors);
    GG_RUN(test_yaml_types);
    GG_RUN(test_yaml_bounds);
    GG_RUN(test_duplicates);
    GG_RUN(test_locations);
    GG_RUN(test_filesystem_edges);
    GG_RUN(test_generated);
    GG_RUN(test_url);
    if (s_tmp[0])
        s_rmtree(s_tmp);
    GG_DONE();
}
