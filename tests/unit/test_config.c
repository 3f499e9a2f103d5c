/* test_config.c: gaggled's configuration: defaults, flags, the YAML file,
 * flags over the file, validation and derived values, the reload policy, and
 * a message naming the flag or file:line:key for every class of bad input. */
#include "config.h"
#include "gg_error.h"
#include "gg_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[] = "/tmp/gg-test-config-XXXXXX";
static char s_err[CONFIG_ERR_MAX];

/* Writes text to a file in the temp dir; returns its path (static buffer). */
static const char *s_write(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

/* Parses a NULL-terminated list of arguments (argv[0] added). */
static int s_parse(config_t *cfg, ...)
{
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, cfg);
    argv[argc++] = "gaggled";
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    s_err[0] = '\0';
    return config_parse_args(argc, argv, cfg, s_err, sizeof s_err);
}

static bool s_contains(const char *text, const char *part)
{
    bool ok = text && strstr(text, part) != NULL;
    if (!ok)
        fprintf(stderr, "  expected \"%s\" in \"%s\"\n", part, text ? text : "(null)");
    return ok;
}

static void test_defaults(void)
{
    config_t cfg;
    REQUIRE(s_parse(&cfg, NULL) == 0);
    CHECK_STR(cfg.data_dir, "/var/lib/gaggle");
    CHECK_EQ_INT(cfg.map_size, 1ull << 30);
    CHECK_STR(cfg.bind, "tcp://0.0.0.0:7700");
    CHECK_STR(cfg.http, "127.0.0.1:7701");
    CHECK_STR(cfg.node_cert, "/etc/gaggle/node.cert");
    CHECK(cfg.node_key == NULL);
    CHECK_STR(cfg.operators, "/etc/gaggle/operators");
    CHECK_EQ_INT(cfg.workers, 8);
    CHECK_EQ_INT(cfg.profile, CONFIG_PROFILE_LAN);
    CHECK_EQ_INT(cfg.log_level, GG_LOG_INFO);
    CHECK_EQ_INT(cfg.reap_ms, 24ull * 3600 * 1000);
    CHECK(cfg.http_token_file == NULL);
    CHECK_EQ_INT(cfg.join_count, 0);
    CHECK(!cfg.scale.enabled);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    CHECK_STR(cfg.name, host);
    /* validate derives the key path and an address peers can dial */
    free(cfg.name);
    cfg.name = strdup("node-1");
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);
    CHECK_STR(cfg.node_key, "/etc/gaggle/node.key");
    REQUIRE(cfg.advertise != NULL);
    CHECK(strncmp(cfg.advertise, "tcp://", 6) == 0);
    CHECK(strstr(cfg.advertise, "0.0.0.0") == NULL);
    CHECK(strstr(cfg.advertise, ":7700") != NULL);
    config_free(&cfg);
    config_free(&cfg); /* idempotent */
}

static void test_flags(void)
{
    config_t cfg;
    REQUIRE(s_parse(&cfg, "--name", "n1", "--data-dir=/d", "--map-size", "64MiB", "--bind",
                    "tcp://127.0.0.1:9000", "--join", "seed1", "--join", "tcp://10.0.0.2:7800",
                    "--join=seed3:1234", "--http", "127.0.0.1:9001", "--node-cert", "/k/n1.cert",
                    "--operators", "/ops", "--workers", "1024", "--profile", "test", "--log-level",
                    "debug", "--http-token", "/tok", "--reap", "90m", NULL) == 0);
    CHECK_STR(cfg.name, "n1");
    CHECK_STR(cfg.data_dir, "/d");
    CHECK_EQ_INT(cfg.map_size, 64ull << 20);
    CHECK_STR(cfg.bind, "tcp://127.0.0.1:9000");
    REQUIRE(cfg.join_count == 3);
    CHECK_STR(cfg.join[0], "tcp://seed1:7700");
    CHECK_STR(cfg.join[1], "tcp://10.0.0.2:7800");
    CHECK_STR(cfg.join[2], "tcp://seed3:1234");
    CHECK_STR(cfg.http, "127.0.0.1:9001");
    CHECK_EQ_INT(cfg.workers, 1024);
    CHECK_EQ_INT(cfg.profile, CONFIG_PROFILE_TEST);
    CHECK_EQ_INT(cfg.log_level, GG_LOG_DEBUG);
    CHECK_STR(cfg.http_token_file, "/tok");
    CHECK_EQ_INT(cfg.reap_ms, 90ull * 60 * 1000);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);
    CHECK_STR(cfg.node_key, "/k/n1.key");
    CHECK_STR(cfg.advertise, "tcp://127.0.0.1:9000");
    config_free(&cfg);

    /* a cert path without .cert gets .key appended; "*" binds everything */
    REQUIRE(s_parse(&cfg, "--name", "n1", "--node-cert", "/k/cert.pem", "--bind", "tcp://*:7000",
                    "--advertise", "tcp://host.example.com:7000", NULL) == 0);
    CHECK_STR(cfg.bind, "tcp://0.0.0.0:7000");
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);
    CHECK_STR(cfg.node_key, "/k/cert.pem.key");
    CHECK_STR(cfg.advertise, "tcp://host.example.com:7000");
    config_free(&cfg);

    REQUIRE(s_parse(&cfg, "--version", NULL) == 0);
    CHECK(cfg.show_version);
    config_free(&cfg);
    REQUIRE(s_parse(&cfg, "-h", NULL) == 0);
    CHECK(cfg.show_help);
    config_free(&cfg);
}

static const char *s_full_file = "# every key\n"
                                 "name: filenode\n"
                                 "data-dir: /data\n"
                                 "map-size: 2GiB\n"
                                 "bind: tcp://127.0.0.1:7710\n"
                                 "advertise: tcp://10.1.2.3:7710\n"
                                 "join: [a.example, 'tcp://b.example:7711']\n"
                                 "http: 127.0.0.1:7711\n"
                                 "node-cert: /etc/x/node.cert\n"
                                 "node-key: /etc/x/secret.key\n"
                                 "operators: /etc/x/ops\n"
                                 "workers: 3\n"
                                 "profile: wan\n"
                                 "log-level: warn\n"
                                 "http-token: /etc/x/token\n"
                                 "reap: 2h\n"
                                 "scale:\n"
                                 "  run: ./scale.sh\n"
                                 "  targetsPerAgent: 50\n"
                                 "  minAgents: 2\n"
                                 "  maxAgents: 20\n"
                                 "  cooldown: 5m\n"
                                 "  elastic: true\n";

static void test_file(void)
{
    config_t cfg;
    const char *path = s_write("full.yaml", s_full_file);
    REQUIRE(path);
    REQUIRE(s_parse(&cfg, "--config", path, NULL) == 0);
    CHECK_STR(cfg.config_file, path);
    CHECK_STR(cfg.name, "filenode");
    CHECK_STR(cfg.data_dir, "/data");
    CHECK_EQ_INT(cfg.map_size, 2ull << 30);
    CHECK_STR(cfg.bind, "tcp://127.0.0.1:7710");
    CHECK_STR(cfg.advertise, "tcp://10.1.2.3:7710");
    REQUIRE(cfg.join_count == 2);
    CHECK_STR(cfg.join[0], "tcp://a.example:7700");
    CHECK_STR(cfg.join[1], "tcp://b.example:7711");
    CHECK_STR(cfg.http, "127.0.0.1:7711");
    CHECK_STR(cfg.node_cert, "/etc/x/node.cert");
    CHECK_STR(cfg.node_key, "/etc/x/secret.key");
    CHECK_STR(cfg.operators, "/etc/x/ops");
    CHECK_EQ_INT(cfg.workers, 3);
    CHECK_EQ_INT(cfg.profile, CONFIG_PROFILE_WAN);
    CHECK_EQ_INT(cfg.log_level, GG_LOG_WARN);
    CHECK_STR(cfg.http_token_file, "/etc/x/token");
    CHECK_EQ_INT(cfg.reap_ms, 2ull * 3600 * 1000);
    CHECK(cfg.scale.enabled);
    CHECK_STR(cfg.scale.run, "./scale.sh");
    CHECK_EQ_INT(cfg.scale.targets_per_agent, 50);
    CHECK_EQ_INT(cfg.scale.min_agents, 2);
    CHECK_EQ_INT(cfg.scale.max_agents, 20);
    CHECK_EQ_INT(cfg.scale.cooldown_ms, 300000);
    CHECK(cfg.scale.elastic);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);

    /* a deep copy compares equal and shares no pointer */
    config_t copy;
    REQUIRE(config_copy(&copy, &cfg) == 0);
    CHECK_STR(copy.name, cfg.name);
    CHECK(copy.name != cfg.name);
    REQUIRE(copy.join_count == 2);
    CHECK_STR(copy.join[1], cfg.join[1]);
    CHECK(copy.join != cfg.join);
    CHECK_STR(copy.scale.run, "./scale.sh");
    config_free(&copy);
    config_free(&cfg);

    /* a single join string; an empty file changes nothing */
    path = s_write("single.yaml", "join: seed.example:7000\n");
    REQUIRE(s_parse(&cfg, "--config", path, NULL) == 0);
    REQUIRE(cfg.join_count == 1);
    CHECK_STR(cfg.join[0], "tcp://seed.example:7000");
    config_free(&cfg);
    path = s_write("empty.yaml", "# nothing\n");
    REQUIRE(s_parse(&cfg, "--config", path, NULL) == 0);
    CHECK_EQ_INT(cfg.workers, 8);
    config_free(&cfg);
}

static void test_flags_override_file(void)
{
    config_t cfg;
    const char *path = s_write("over.yaml", "workers: 3\nlog-level: warn\njoin: [a, b]\n"
                                            "data-dir: /from-file\n");
    REQUIRE(path);
    /* flags before and after --config both win */
    REQUIRE(s_parse(&cfg, "--workers", "5", "--config", path, "--join", "c", NULL) == 0);
    CHECK_EQ_INT(cfg.workers, 5);
    CHECK_EQ_INT(cfg.log_level, GG_LOG_WARN);
    CHECK_STR(cfg.data_dir, "/from-file");
    REQUIRE(cfg.join_count == 1); /* flag seeds replace the file's */
    CHECK_STR(cfg.join[0], "tcp://c:7700");
    config_free(&cfg);
}

/* Each bad flag: exit-2 class error whose message starts with the flag. */
static void test_bad_flags(void)
{
    config_t cfg;
    CHECK_EQ_INT(s_parse(&cfg, "--workers", "0", NULL), GG_ECONFIG);
    CHECK_STR(s_err, "--workers: must be between 1 and 1024, got 0");
    CHECK_EQ_INT(s_parse(&cfg, "--workers", "1025", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--workers: must be between 1 and 1024, got 1025"));
    CHECK_EQ_INT(s_parse(&cfg, "--workers", "many", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--workers: must be a number"));
    CHECK_EQ_INT(s_parse(&cfg, "--workers", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--workers: needs a value"));
    CHECK_EQ_INT(s_parse(&cfg, "--map-size", "12parsecs", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--map-size: must be a size"));
    CHECK_EQ_INT(s_parse(&cfg, "--map-size", "1KiB", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--map-size:"));
    CHECK_EQ_INT(s_parse(&cfg, "--reap", "soon", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--reap: must be a duration"));
    CHECK_EQ_INT(s_parse(&cfg, "--bind", "0.0.0.0:7700", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--bind: expected tcp://IP:PORT"));
    CHECK_EQ_INT(s_parse(&cfg, "--bind", "tcp://example.com:7700", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--bind: expected an IPv4 address"));
    CHECK_EQ_INT(s_parse(&cfg, "--bind", "tcp://1.2.3.4:70000", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--bind:"));
    CHECK_EQ_INT(s_parse(&cfg, "--advertise", "tcp://0.0.0.0:7700", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--advertise: 'tcp://0.0.0.0:7700' is a wildcard"));
    CHECK_EQ_INT(s_parse(&cfg, "--advertise", "tcp://host", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--advertise: expected tcp://HOST:PORT"));
    CHECK_EQ_INT(s_parse(&cfg, "--join", "tcp://bad host:1", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--join: expected tcp://HOST:PORT"));
    CHECK_EQ_INT(s_parse(&cfg, "--http", "localhost:7701", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--http: expected IP:PORT"));
    CHECK_EQ_INT(s_parse(&cfg, "--http", "127.0.0.1", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--http:"));
    CHECK_EQ_INT(s_parse(&cfg, "--profile", "fast", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--profile: must be lan, wan or test, got 'fast'"));
    CHECK_EQ_INT(s_parse(&cfg, "--log-level", "loud", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--log-level: must be error, warn, info or debug, got 'loud'"));
    CHECK_EQ_INT(s_parse(&cfg, "--name", "-bad", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--name: '-bad' is not a valid node name"));
    CHECK_EQ_INT(s_parse(&cfg, "--data-dir=", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--data-dir: needs a path"));
    CHECK_EQ_INT(s_parse(&cfg, "--frobnicate", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "unknown flag '--frobnicate'"));
    CHECK_EQ_INT(s_parse(&cfg, "--scale", "x", NULL), GG_ECONFIG); /* file only */
    CHECK(s_contains(s_err, "unknown flag '--scale'"));
    CHECK_EQ_INT(s_parse(&cfg, "stray", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "unexpected argument 'stray'"));
    CHECK_EQ_INT(s_parse(&cfg, "--version=2", NULL), GG_ECONFIG);
    CHECK(s_contains(s_err, "--version: takes no value"));
    /* control characters in a value are escaped, the message stays one line */
    CHECK_EQ_INT(s_parse(&cfg, "--profile", "a\nb", NULL), GG_ECONFIG);
    CHECK(strchr(s_err, '\n') == NULL);
    CHECK(s_contains(s_err, "a\\x0ab"));
    /* a missing file */
    CHECK_EQ_INT(s_parse(&cfg, "--config", "/nonexistent/gaggled.yaml", NULL), GG_EIO);
    CHECK(s_contains(s_err, "/nonexistent/gaggled.yaml: cannot read"));
    config_free(&cfg);
}

/* Each bad file: the message names the file, the line and the key. */
static void test_bad_file(void)
{
    static const struct {
        const char *yaml;
        const char *expect; /* after "PATH:" */
    } cases[] = {
        {"workers: 4\nfrobnicate: 1\n", "2: frobnicate: unknown key"},
        {"workers: 0\n", "1: workers: must be between 1 and 1024, got 0"},
        {"name: ok\nworkers: [1, 2]\n", "2: workers: must be a value, got a list"},
        {"workers:\n", "1: workers: must be a value, got nothing"},
        {"profile: {a: b}\n", "1: profile: must be a value, got a mapping"},
        {"workers: 2\nworkers: 3\n", "2: workers: given twice"},
        {"bind: 1.2.3.4\n", "1: bind: expected tcp://IP:PORT"},
        {"map-size: lots\n", "1: map-size: must be a size"},
        {"reap: 5 minutes\n", "1: reap: must be a duration"},
        {"log-level: chatty\n", "1: log-level: must be error, warn, info or debug"},
        {"join:\n  - a\n  - {b: c}\n",
         "3: join: list items must be tcp://HOST:PORT, got a mapping"},
        {"join: [tcp://]\n", "1: join: expected tcp://HOST:PORT"},
        {"scale: 5\n", "1: scale: must be a mapping"},
        {"scale:\n  run: x\n  speed: 3\n", "3: scale.speed: unknown key"},
        {"scale:\n  maxAgents: zero\n", "2: scale.maxAgents: must be a number"},
        {"scale:\n  cooldown: later\n", "2: scale.cooldown: must be a duration"},
        {"scale:\n  elastic: yes please\n", "2: scale.elastic: must be true or false"},
        {"config: /etc/other.yaml\n", "1: config: unknown key"},
        {"- just\n- a list\n", "1: the file must be a mapping"},
        {"workers: [1\n", "2: "}, /* YAML syntax: the parser's own words */
        {"workers: 2\n---\nworkers: 3\n", "more than one YAML document"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t cfg;
        char want[512];
        const char *path = s_write("bad.yaml", cases[i].yaml);
        REQUIRE(path);
        int rc = s_parse(&cfg, "--config", path, NULL);
        if (rc != GG_ECONFIG)
            fprintf(stderr, "  case %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, GG_ECONFIG);
        if (strstr(cases[i].expect, "YAML document"))
            snprintf(want, sizeof want, "%s: %s", path, cases[i].expect);
        else
            snprintf(want, sizeof want, "%s:%s", path, cases[i].expect);
        CHECK(s_contains(s_err, want));
        CHECK(strchr(s_err, '\n') == NULL);
        config_free(&cfg);
    }
}

static void test_validate(void)
{
    config_t cfg;
    const char *path = s_write("scale.yaml", "scale: {run: x, minAgents: 5, maxAgents: 2}\n");
    REQUIRE(s_parse(&cfg, "--name", "n", "--config", path, NULL) == 0);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK(s_contains(s_err, "scale.minAgents: 5 is more than scale.maxAgents 2"));
    config_free(&cfg);

    path = s_write("scale2.yaml", "scale: {minAgents: 1}\n");
    REQUIRE(s_parse(&cfg, "--name", "n", "--config", path, NULL) == 0);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK(s_contains(s_err, "scale.run:"));
    config_free(&cfg);

    /* a struct filled by code goes through the same checkers */
    REQUIRE(s_parse(&cfg, "--name", "n", NULL) == 0);
    cfg.workers = 0;
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK_STR(s_err, "--workers: must be between 1 and 1024, got 0");
    cfg.workers = 4;
    free(cfg.http);
    cfg.http = strdup("nowhere");
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK(s_contains(s_err, "--http: expected IP:PORT"));
    free(cfg.http);
    cfg.http = strdup("127.0.0.1:1");
    free(cfg.name);
    cfg.name = NULL;
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK(s_contains(s_err, "--name:"));
    cfg.name = strdup("n");
    free(cfg.node_cert);
    cfg.node_cert = strdup("/x/node.key");
    free(cfg.node_key);
    cfg.node_key = strdup("/x/node.key");
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), GG_ECONFIG);
    CHECK(s_contains(s_err, "--node-key: must not be the certificate file"));
    config_free(&cfg);
}

static void test_restart_fields(void)
{
    config_t cur, next;
    char changed[256];
    REQUIRE(s_parse(&cur, "--name", "a", "--http", "127.0.0.1:1000", NULL) == 0);
    REQUIRE(config_validate(&cur, s_err, sizeof s_err) == 0);
    REQUIRE(s_parse(&next, "--name", "b", "--http", "127.0.0.1:2000", "--log-level", "debug",
                    "--workers", "2", "--profile", "wan", NULL) == 0);
    REQUIRE(config_validate(&next, s_err, sizeof s_err) == 0);
    CHECK_EQ_INT(config_keep_restart_fields(&next, &cur, changed, sizeof changed), 0);
    CHECK_STR(changed, "name, http, profile");
    CHECK_STR(next.name, "a");
    CHECK_STR(next.http, "127.0.0.1:1000");
    CHECK_EQ_INT(next.profile, CONFIG_PROFILE_LAN);
    CHECK_EQ_INT(next.log_level, GG_LOG_DEBUG); /* reloadable: applied */
    CHECK_EQ_INT(next.workers, 2);
    /* nothing left to carry over */
    CHECK_EQ_INT(config_keep_restart_fields(&next, &cur, changed, sizeof changed), 0);
    CHECK_STR(changed, "");
    config_free(&cur);
    config_free(&next);
}

static void test_help(void)
{
    char path[256], text[8192];
    snprintf(path, sizeof path, "%s/help.txt", s_dir);
    FILE *f = fopen(path, "w+");
    REQUIRE(f);
    config_print_help(f);
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    static const char *flags[] = {
        "--config",  "--name",      "--data-dir",   "--map-size", "--bind",      "--advertise",
        "--join",    "--http",      "--node-cert",  "--node-key", "--operators", "--workers",
        "--profile", "--log-level", "--http-token", "--reap",     "--help",      "--version"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        CHECK(s_contains(text, flags[i]));
    /* no line wider than 80 columns */
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        CHECK(strlen(line) <= 80);
}

/* The shipped example config is accepted, with its optional scale: section
 * switched on too. */
static void test_example_file(void)
{
    const char *src = getenv("GAGGLE_SOURCE");
    char path[512], line[512];
    if (!src) {
        fprintf(stderr, "  GAGGLE_SOURCE not set: skipping the example config\n");
        return;
    }
    snprintf(path, sizeof path, "%s/deploy/gaggled.example.yaml", src);
    FILE *in = fopen(path, "r");
    REQUIRE(in);
    char out_path[256];
    snprintf(out_path, sizeof out_path, "%s/example.yaml", s_dir);
    FILE *out = fopen(out_path, "w");
    REQUIRE(out);
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "# scale:", 8) == 0)
            fputs(line + 2, out);
        else if (strncmp(line, "#   ", 4) == 0)
            fputs(line + 2, out);
        else
            fputs(line, out);
    }
    fclose(in);
    fclose(out);
    config_t cfg;
    CHECK_EQ_INT(s_parse(&cfg, "--config", path, NULL), 0);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);
    config_free(&cfg);
    CHECK_EQ_INT(s_parse(&cfg, "--config", out_path, NULL), 0);
    CHECK_EQ_INT(config_validate(&cfg, s_err, sizeof s_err), 0);
    CHECK(cfg.scale.enabled);
    CHECK(cfg.scale.run != NULL);
    config_free(&cfg);
}

int main(void)
{
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    GG_RUN(test_defaults);
    GG_RUN(test_flags);
    GG_RUN(test_file);
    GG_RUN(test_flags_override_file);
    GG_RUN(test_bad_flags);
    GG_RUN(test_bad_file);
    GG_RUN(test_validate);
    GG_RUN(test_restart_fields);
    GG_RUN(test_help);
    GG_RUN(test_example_file);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", s_dir);
    GG_DONE();
}
