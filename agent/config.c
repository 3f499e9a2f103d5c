/*
 * config.c: gaggled's options, one table for flags, the YAML file, --help and
 * the reload policy (see config.h).
 *
 * Each option has a kind that says how its text is checked and stored. The
 * same checker serves a flag, a file value and config_validate, so the rules
 * cannot drift apart; only the origin in the message differs. YAML is read
 * with libyaml's document API, which keeps the line of every node.
 */
#include "config.h"
#include "cert.h"
#include "gg_error.h"
#include "units.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define S_DEFAULT_DATA_DIR  "/var/lib/gaggle"
#define S_DEFAULT_BIND      "tcp://0.0.0.0:7700"
#define S_DEFAULT_HTTP      "127.0.0.1:7701"
#define S_DEFAULT_CERT      "/etc/gaggle/node.cert"
#define S_DEFAULT_OPERATORS "/etc/gaggle/operators"
#define S_DEFAULT_MAP_SIZE  (1ull << 30)
#define S_DEFAULT_WORKERS   8
#define S_DEFAULT_REAP_MS   (24ull * 3600 * 1000)
#define S_MIN_MAP_SIZE      (1ull << 20)
#define S_MAX_MAP_SIZE      (1ull << 46) /* 64 TiB */
#define S_MIN_REAP_MS       1000ull
#define S_MAX_REAP_MS       (365ull * 24 * 3600 * 1000)
#define S_MAX_AGENTS        100000u
#define S_HOST_MAX          253

typedef enum {
    K_NAME,      /* node name, cert rules */
    K_PATH,      /* non-empty path */
    K_SIZE,      /* map size */
    K_DURATION,  /* reap */
    K_WORKERS,   /* 1..1024 */
    K_BIND,      /* tcp://IPv4:PORT, '*' allowed */
    K_ADVERTISE, /* tcp://HOST:PORT */
    K_JOIN,      /* list of tcp://HOST:PORT */
    K_HTTP,      /* IPv4:PORT */
    K_PROFILE,
    K_LOG_LEVEL,
    K_SCALE,   /* file only: a mapping */
    K_CONFIG,  /* flag only */
    K_HELP,    /* flag only, no value */
    K_VERSION, /* flag only, no value */
    K_CHECK,   /* flag only, no value */
} s_kind_t;

enum {
    S_FLAG_ONLY = 1, /* not a file key */
    S_FILE_ONLY = 2, /* not a flag */
    S_RESTART = 4,   /* cannot change without a restart */
    S_NO_VALUE = 8,  /* a switch */
};

typedef struct {
    const char *name;
    s_kind_t kind;
    size_t offset;
    unsigned flags;
    const char *metavar;
    const char *help;
} s_option_t;

#define S_OFF(field) offsetof(config_t, field)

static const s_option_t s_options[] = {
    {"config", K_CONFIG, S_OFF(config_file), S_FLAG_ONLY, "FILE",
     "YAML file with the same keys as the flags (flags win)"},
    {"name", K_NAME, S_OFF(name), S_RESTART, "NAME",
     "node name, as in its certificate (default: the host name)"},
    {"data-dir", K_PATH, S_OFF(data_dir), S_RESTART, "DIR",
     "LMDB store and logs (default " S_DEFAULT_DATA_DIR ")"},
    {"map-size", K_SIZE, S_OFF(map_size), S_RESTART, "SIZE", "LMDB map size (default 1GiB)"},
    {"bind", K_BIND, S_OFF(bind), S_RESTART, "tcp://IP:PORT",
     "peer traffic (default " S_DEFAULT_BIND ")"},
    {"advertise", K_ADVERTISE, S_OFF(advertise), S_RESTART, "tcp://HOST:PORT",
     "address peers use (default: --bind's, with 0.0.0.0 replaced by the first non-loopback "
     "address)"},
    {"join", K_JOIN, S_OFF(join), 0, "tcp://HOST:PORT",
     "seed to join, repeatable (port defaults to 7700)"},
    {"http", K_HTTP, S_OFF(http), S_RESTART, "IP:PORT",
     "API, metrics and dashboard (default " S_DEFAULT_HTTP ")"},
    {"node-cert", K_PATH, S_OFF(node_cert), S_RESTART, "FILE",
     "node certificate (default " S_DEFAULT_CERT ")"},
    {"node-key", K_PATH, S_OFF(node_key), S_RESTART, "FILE",
     "node secret key (default: the certificate's path with .key)"},
    {"operators", K_PATH, S_OFF(operators), 0, "DIR",
     "trusted operator public keys, *.pub (default " S_DEFAULT_OPERATORS ")"},
    {"workers", K_WORKERS, S_OFF(workers), 0, "N",
     "concurrent step processes, 1..1024 (default 8)"},
    {"profile", K_PROFILE, S_OFF(profile), S_RESTART, "lan|wan|test",
     "protocol timings (default lan)"},
    {"log-level", K_LOG_LEVEL, S_OFF(log_level), 0, "error|warn|info|debug",
     "log verbosity (default info)"},
    {"http-token", K_PATH, S_OFF(http_token_file), 0, "FILE",
     "file holding a bearer token that /v1 requests must carry"},
    {"reap", K_DURATION, S_OFF(reap_ms), 0, "DURATION",
     "how long dead and left members stay listed (default 24h)"},
    {"scale", K_SCALE, S_OFF(scale), S_FILE_ONLY, NULL, NULL},
    {"help", K_HELP, S_OFF(show_help), S_FLAG_ONLY | S_NO_VALUE, NULL, "print this help and exit"},
    {"version", K_VERSION, S_OFF(show_version), S_FLAG_ONLY | S_NO_VALUE, NULL,
     "print the version and exit"},
    {"check-config", K_CHECK, S_OFF(check_only), S_FLAG_ONLY | S_NO_VALUE, NULL,
     "check the configuration (file and flags) and exit: 0 when good, 2 otherwise"},
};

#define S_OPTION_COUNT (sizeof s_options / sizeof s_options[0])

static const char *s_profiles[] = {"lan", "wan", "test"};
static const char *s_levels[] = {"error", "warn", "info", "debug"};

/* ---- small helpers ---- */

static void s_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fmt(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Copies at most 60 bytes of untrusted text, escaping what is not printable,
 * so an error line stays one short line. */
static const char *s_sample(const char *text, char *buf, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; text[i] && o + 5 < len; i++) {
        unsigned char c = (unsigned char) text[i];
        if (i >= 60) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (isprint(c) && c != '\'')
            buf[o++] = (char) c;
        else
            o += (size_t) snprintf(buf + o, len - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

static char **s_str_field(config_t *cfg, const s_option_t *opt)
{
    return (char **) ((char *) cfg + opt->offset);
}

static const s_option_t *s_find(const char *name, size_t len)
{
    for (size_t i = 0; i < S_OPTION_COUNT; i++)
        if (strlen(s_options[i].name) == len && strncmp(s_options[i].name, name, len) == 0)
            return &s_options[i];
    return NULL;
}

static int s_set_string(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return GG_ENOMEM;
    free(*field);
    *field = copy;
    return GG_OK;
}

static int s_parse_port(const char *text, uint16_t *port)
{
    if (!*text || strlen(text) > 5)
        return GG_EINVAL;
    unsigned long v = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char) *p))
            return GG_EINVAL;
        v = v * 10 + (unsigned long) (*p - '0');
    }
    if (v < 1 || v > 65535)
        return GG_EINVAL;
    *port = (uint16_t) v;
    return GG_OK;
}

static bool s_is_hostname(const char *host)
{
    size_t len = strlen(host);
    if (len == 0 || len > S_HOST_MAX || host[0] == '-' || host[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) host[i];
        if (!isalnum(c) && c != '-' && c != '.')
            return false;
    }
    return true;
}

static bool s_is_ipv4(const char *host)
{
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1;
}

/* Splits "HOST:PORT" (the last colon). host must hold S_HOST_MAX + 1. */
static int s_split_host_port(const char *text, char *host, uint16_t *port, bool port_optional)
{
    const char *colon = strrchr(text, ':');
    size_t hlen = colon ? (size_t) (colon - text) : strlen(text);
    if (hlen == 0 || hlen > S_HOST_MAX)
        return GG_EINVAL;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (!colon) {
        if (!port_optional)
            return GG_EINVAL;
        *port = CONFIG_DEFAULT_PORT;
        return GG_OK;
    }
    return s_parse_port(colon + 1, port);
}

/* ---- value checkers: text in, normalised value out, reason in why ---- */

static int s_check_name(const char *text, char *why, size_t wlen)
{
    char sample[96];
    if (cert_check_name(text) != 0) {
        s_fmt(why, wlen,
              "'%s' is not a valid node name (1-%d of A-Z a-z 0-9 . _ -, starting with a letter "
              "or digit)",
              s_sample(text, sample, sizeof sample), CERT_NAME_MAX);
        return GG_ECONFIG;
    }
    return GG_OK;
}

/* tcp://IPv4:PORT (or tcp://[*]:PORT); out receives the normalised form. */
static int s_check_bind(const char *text, char *out, size_t olen, char *why, size_t wlen)
{
    char sample[96], host[S_HOST_MAX + 1];
    uint16_t port = 0;
    if (strncmp(text, "tcp://", 6) != 0 || s_split_host_port(text + 6, host, &port, false) != 0) {
        s_fmt(why, wlen, "expected tcp://IP:PORT, got '%s'", s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    if (strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    if (!s_is_ipv4(host)) {
        s_fmt(why, wlen, "expected an IPv4 address in tcp://IP:PORT, got '%s'",
              s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    snprintf(out, olen, "tcp://%s:%u", host, (unsigned) port);
    return GG_OK;
}

/* tcp://HOST:PORT for advertise (port required) or join (optional, and the
 * tcp:// prefix too). A wildcard address cannot be dialled. */
static int s_check_peer(const char *text, bool lenient, char *out, size_t olen, char *why,
                        size_t wlen)
{
    char sample[96], host[S_HOST_MAX + 1];
    uint16_t port = 0;
    const char *rest = text;
    if (strncmp(text, "tcp://", 6) == 0)
        rest = text + 6;
    else if (!lenient)
        rest = NULL;
    if (!rest || s_split_host_port(rest, host, &port, lenient) != 0 || !s_is_hostname(host)) {
        s_fmt(why, wlen, "expected tcp://HOST:PORT, got '%s'",
              s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    if (strcmp(host, "0.0.0.0") == 0) {
        s_fmt(why, wlen, "'%s' is a wildcard address, not one a peer can reach",
              s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    snprintf(out, olen, "tcp://%s:%u", host, (unsigned) port);
    return GG_OK;
}

static int s_check_http(const char *text, char *out, size_t olen, char *why, size_t wlen)
{
    char sample[96], host[S_HOST_MAX + 1];
    uint16_t port = 0;
    if (s_split_host_port(text, host, &port, false) != 0 || !s_is_ipv4(host)) {
        s_fmt(why, wlen, "expected IP:PORT (IPv4), got '%s'",
              s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    snprintf(out, olen, "%s:%u", host, (unsigned) port);
    return GG_OK;
}

static int s_check_uint(const char *text, uint64_t min, uint64_t max, uint64_t *value, char *why,
                        size_t wlen)
{
    char sample[96];
    uint64_t v = 0;
    const char *p = text;
    if (!*p) {
        s_fmt(why, wlen, "must be a number between %" PRIu64 " and %" PRIu64 ", got ''", min, max);
        return GG_ECONFIG;
    }
    for (; *p; p++) {
        if (!isdigit((unsigned char) *p) || v > (UINT64_MAX - 9) / 10) {
            s_fmt(why, wlen, "must be a number between %" PRIu64 " and %" PRIu64 ", got '%s'", min,
                  max, s_sample(text, sample, sizeof sample));
            return GG_ECONFIG;
        }
        v = v * 10 + (uint64_t) (*p - '0');
    }
    if (v < min || v > max) {
        s_fmt(why, wlen, "must be between %" PRIu64 " and %" PRIu64 ", got %s", min, max,
              s_sample(text, sample, sizeof sample));
        return GG_ECONFIG;
    }
    *value = v;
    return GG_OK;
}

static int s_check_enum(const char *text, const char **names, int count, int *value, char *why,
                        size_t wlen)
{
    char sample[96], list[128] = "";
    for (int i = 0; i < count; i++)
        if (strcmp(text, names[i]) == 0) {
            *value = i;
            return GG_OK;
        }
    for (int i = 0; i < count; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < count)
            strncat(list, i + 2 == count ? " or " : ", ", sizeof list - strlen(list) - 1);
    }
    s_fmt(why, wlen, "must be %s, got '%s'", list, s_sample(text, sample, sizeof sample));
    return GG_ECONFIG;
}

static int s_join_add(config_t *cfg, const char *text, char *why, size_t wlen)
{
    char norm[S_HOST_MAX + 16];
    int rc = s_check_peer(text, true, norm, sizeof norm, why, wlen);
    if (rc)
        return rc;
    if (cfg->join_count >= CONFIG_JOIN_MAX) {
        s_fmt(why, wlen, "at most %d seeds", CONFIG_JOIN_MAX);
        return GG_ECONFIG;
    }
    char **list = realloc(cfg->join, (cfg->join_count + 1) * sizeof *list);
    if (!list)
        return GG_ENOMEM;
    cfg->join = list;
    list[cfg->join_count] = strdup(norm);
    if (!list[cfg->join_count])
        return GG_ENOMEM;
    cfg->join_count++;
    return GG_OK;
}

static void s_join_clear(config_t *cfg)
{
    for (size_t i = 0; i < cfg->join_count; i++)
        free(cfg->join[i]);
    free(cfg->join);
    cfg->join = NULL;
    cfg->join_count = 0;
}

/* Checks text for the scalar option opt and stores it in cfg. Returns 0,
 * GG_ECONFIG (reason in why) or GG_ENOMEM. */
static int s_set_value(config_t *cfg, const s_option_t *opt, const char *text, char *why,
                       size_t wlen)
{
    char norm[S_HOST_MAX + 16], sample[96];
    uint64_t v = 0;
    int e = 0, rc = GG_OK;
    if (strlen(text) > CONFIG_VALUE_MAX) {
        s_fmt(why, wlen, "value longer than %d bytes", CONFIG_VALUE_MAX);
        return GG_ECONFIG;
    }
    switch (opt->kind) {
    case K_NAME:
        rc = s_check_name(text, why, wlen);
        if (!rc)
            rc = s_set_string(s_str_field(cfg, opt), text);
        break;
    case K_PATH:
    case K_CONFIG:
        if (!*text) {
            s_fmt(why, wlen, "needs a path");
            return GG_ECONFIG;
        }
        rc = s_set_string(s_str_field(cfg, opt), text);
        break;
    case K_SIZE:
        rc = units_parse_size(text, &v);
        if (rc || v < S_MIN_MAP_SIZE || v > S_MAX_MAP_SIZE || v > SIZE_MAX) {
            s_fmt(why, wlen,
                  "must be a size between 1MiB and 64TiB such as 512MiB or 2GiB, got '%s'",
                  s_sample(text, sample, sizeof sample));
            return GG_ECONFIG;
        }
        cfg->map_size = v;
        break;
    case K_DURATION:
        rc = units_parse_duration(text, &v);
        if (rc || v < S_MIN_REAP_MS || v > S_MAX_REAP_MS) {
            s_fmt(why, wlen, "must be a duration between 1s and 365d such as 30m or 24h, got '%s'",
                  s_sample(text, sample, sizeof sample));
            return GG_ECONFIG;
        }
        cfg->reap_ms = v;
        break;
    case K_WORKERS:
        rc = s_check_uint(text, 1, CONFIG_WORKERS_MAX, &v, why, wlen);
        if (!rc)
            cfg->workers = (uint32_t) v;
        break;
    case K_BIND:
        rc = s_check_bind(text, norm, sizeof norm, why, wlen);
        if (!rc)
            rc = s_set_string(s_str_field(cfg, opt), norm);
        break;
    case K_ADVERTISE:
        rc = s_check_peer(text, false, norm, sizeof norm, why, wlen);
        if (!rc)
            rc = s_set_string(s_str_field(cfg, opt), norm);
        break;
    case K_JOIN: rc = s_join_add(cfg, text, why, wlen); break;
    case K_HTTP:
        rc = s_check_http(text, norm, sizeof norm, why, wlen);
        if (!rc)
            rc = s_set_string(s_str_field(cfg, opt), norm);
        break;
    case K_PROFILE:
        rc = s_check_enum(text, s_profiles, 3, &e, why, wlen);
        if (!rc)
            cfg->profile = (config_profile_t) e;
        break;
    case K_LOG_LEVEL:
        if (strcmp(text, "warning") == 0)
            text = "warn";
        rc = s_check_enum(text, s_levels, 4, &e, why, wlen);
        if (!rc)
            cfg->log_level = (gg_log_level_t) e;
        break;
    case K_SCALE:
    case K_HELP:
    case K_VERSION:
    case K_CHECK:
        s_fmt(why, wlen, "takes no value here");
        rc = GG_ECONFIG;
        break;
    }
    return rc;
}

/* ---- defaults, free, copy ---- */

int config_defaults(config_t *cfg)
{
    char host[256] = "";
    memset(cfg, 0, sizeof *cfg);
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    cfg->name = strdup(host);
    cfg->data_dir = strdup(S_DEFAULT_DATA_DIR);
    cfg->bind = strdup(S_DEFAULT_BIND);
    cfg->http = strdup(S_DEFAULT_HTTP);
    cfg->node_cert = strdup(S_DEFAULT_CERT);
    cfg->operators = strdup(S_DEFAULT_OPERATORS);
    cfg->map_size = S_DEFAULT_MAP_SIZE;
    cfg->workers = S_DEFAULT_WORKERS;
    cfg->profile = CONFIG_PROFILE_LAN;
    cfg->log_level = GG_LOG_INFO;
    cfg->reap_ms = S_DEFAULT_REAP_MS;
    cfg->scale.targets_per_agent = 100;
    cfg->scale.min_agents = 1;
    cfg->scale.max_agents = 100;
    cfg->scale.cooldown_ms = 5 * 60 * 1000;
    if (!cfg->name || !cfg->data_dir || !cfg->bind || !cfg->http || !cfg->node_cert ||
        !cfg->operators) {
        config_free(cfg);
        return GG_ENOMEM;
    }
    return GG_OK;
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *opt = &s_options[i];
        switch (opt->kind) {
        case K_NAME:
        case K_PATH:
        case K_CONFIG:
        case K_BIND:
        case K_ADVERTISE:
        case K_HTTP: free(*s_str_field(cfg, opt)); break;
        default: break;
        }
    }
    s_join_clear(cfg);
    free(cfg->scale.run);
    memset(cfg, 0, sizeof *cfg);
}

static bool s_is_string_kind(s_kind_t kind)
{
    return kind == K_NAME || kind == K_PATH || kind == K_CONFIG || kind == K_BIND ||
           kind == K_ADVERTISE || kind == K_HTTP;
}

int config_copy(config_t *dst, const config_t *src)
{
    int rc = GG_OK;
    *dst = *src;
    /* Detach every pointer first so a failure frees only our copies. */
    for (size_t i = 0; i < S_OPTION_COUNT; i++)
        if (s_is_string_kind(s_options[i].kind))
            *s_str_field(dst, &s_options[i]) = NULL;
    dst->join = NULL;
    dst->join_count = 0;
    dst->scale.run = NULL;
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *opt = &s_options[i];
        if (!s_is_string_kind(opt->kind))
            continue;
        const char *value = *s_str_field((config_t *) src, opt);
        if (!value)
            continue;
        rc = s_set_string(s_str_field(dst, opt), value);
        if (rc)
            goto out;
    }
    if (src->join_count) {
        dst->join = calloc(src->join_count, sizeof *dst->join);
        if (!dst->join) {
            rc = GG_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < src->join_count; i++) {
            dst->join[i] = strdup(src->join[i]);
            if (!dst->join[i]) {
                dst->join_count = i;
                rc = GG_ENOMEM;
                goto out;
            }
        }
        dst->join_count = src->join_count;
    }
    if (src->scale.run && !(dst->scale.run = strdup(src->scale.run)))
        rc = GG_ENOMEM;
out:
    if (rc)
        config_free(dst);
    return rc;
}

/* ---- YAML file ---- */

typedef struct {
    const char *path;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
} s_loader_t;

static unsigned long s_line(const yaml_node_t *node)
{
    return (unsigned long) node->start_mark.line + 1;
}

static int s_file_error(s_loader_t *ld, const yaml_node_t *node, const char *key, const char *why)
{
    if (key)
        s_fmt(ld->err, ld->errlen, "%s:%lu: %s: %s", ld->path, s_line(node), key, why);
    else
        s_fmt(ld->err, ld->errlen, "%s:%lu: %s", ld->path, s_line(node), why);
    return GG_ECONFIG;
}

/* A scalar with a value: plain empty, "~" and "null" are YAML's null. */
static const char *s_scalar(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE)
        return NULL;
    const char *v = (const char *) node->data.scalar.value;
    if (strlen(v) != node->data.scalar.length)
        return NULL; /* an embedded NUL: not a value we accept */
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
         strcmp(v, "NULL") == 0))
        return NULL;
    return v;
}

static const char *s_node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static int s_load_scale(s_loader_t *ld, yaml_node_t *map, config_t *cfg)
{
    char why[CONFIG_ERR_MAX], key[64];
    static const char *keys[] = {"run",       "targetsPerAgent", "minAgents",
                                 "maxAgents", "cooldown",        "elastic"};
    bool seen[6] = {false};
    if (map->type != YAML_MAPPING_NODE)
        return s_file_error(ld, map, "scale",
                            "must be a mapping {run, targetsPerAgent, "
                            "minAgents, maxAgents, cooldown, elastic}");
    cfg->scale.enabled = true;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        if (!k || !v)
            return s_file_error(ld, map, "scale", "malformed mapping");
        const char *kname = s_scalar(k);
        if (!kname)
            return s_file_error(ld, k, "scale", "keys must be plain names");
        int which = -1;
        for (int i = 0; i < 6; i++)
            if (strcmp(kname, keys[i]) == 0)
                which = i;
        char sample[96];
        snprintf(key, sizeof key, "scale.%s", s_sample(kname, sample, 40));
        if (which < 0)
            return s_file_error(ld, k, key,
                                "unknown key (expected run, targetsPerAgent, minAgents, "
                                "maxAgents, cooldown or elastic)");
        if (seen[which])
            return s_file_error(ld, k, key, "given twice");
        seen[which] = true;
        const char *text = s_scalar(v);
        if (!text) {
            snprintf(why, sizeof why, "must be a value, got %s",
                     v->type == YAML_SCALAR_NODE ? "nothing" : s_node_kind(v));
            return s_file_error(ld, v, key, why);
        }
        uint64_t n = 0;
        int rc = GG_OK;
        switch (which) {
        case 0:
            if (strlen(text) > CONFIG_VALUE_MAX)
                return s_file_error(ld, v, key, "command too long");
            rc = s_set_string(&cfg->scale.run, text);
            if (rc)
                return rc;
            break;
        case 1:
            rc = s_check_uint(text, 1, 1000000, &n, why, sizeof why);
            cfg->scale.targets_per_agent = (uint32_t) n;
            break;
        case 2:
            rc = s_check_uint(text, 0, S_MAX_AGENTS, &n, why, sizeof why);
            cfg->scale.min_agents = (uint32_t) n;
            break;
        case 3:
            rc = s_check_uint(text, 1, S_MAX_AGENTS, &n, why, sizeof why);
            cfg->scale.max_agents = (uint32_t) n;
            break;
        case 4:
            if (units_parse_duration(text, &n) != 0 || n > S_MAX_REAP_MS) {
                snprintf(why, sizeof why, "must be a duration such as 30s or 5m, got '%s'",
                         s_sample(text, sample, sizeof sample));
                rc = GG_ECONFIG;
            }
            cfg->scale.cooldown_ms = n;
            break;
        case 5:
            if (!strcmp(text, "true")) {
                cfg->scale.elastic = true;
            } else if (!strcmp(text, "false")) {
                cfg->scale.elastic = false;
            } else {
                snprintf(why, sizeof why, "must be true or false, got '%s'",
                         s_sample(text, sample, sizeof sample));
                rc = GG_ECONFIG;
            }
            break;
        }
        if (rc)
            return s_file_error(ld, v, key, why);
    }
    return GG_OK;
}

static int s_load_root(s_loader_t *ld, yaml_node_t *root, config_t *cfg)
{
    char why[CONFIG_ERR_MAX], sample[96];
    bool seen[S_OPTION_COUNT] = {false};
    if (root->type != YAML_MAPPING_NODE)
        return s_file_error(ld, root, NULL, "the file must be a mapping of option: value");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        if (!k || !v)
            return s_file_error(ld, root, NULL, "malformed mapping");
        const char *kname = s_scalar(k);
        if (!kname)
            return s_file_error(ld, k, NULL, "keys must be plain option names");
        const s_option_t *opt = s_find(kname, strlen(kname));
        if (!opt || (opt->flags & S_FLAG_ONLY))
            return s_file_error(ld, k, s_sample(kname, sample, sizeof sample),
                                "unknown key (see gaggled --help)");
        size_t idx = (size_t) (opt - s_options);
        if (seen[idx])
            return s_file_error(ld, k, opt->name, "given twice");
        seen[idx] = true;
        int rc;
        if (opt->kind == K_SCALE) {
            rc = s_load_scale(ld, v, cfg);
        } else if (opt->kind == K_JOIN && v->type == YAML_SEQUENCE_NODE) {
            s_join_clear(cfg);
            rc = GG_OK;
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top && !rc; it++) {
                yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
                const char *text = item ? s_scalar(item) : NULL;
                if (!text) {
                    snprintf(why, sizeof why, "list items must be tcp://HOST:PORT, got %s",
                             item && item->type != YAML_SCALAR_NODE ? s_node_kind(item)
                                                                    : "nothing");
                    return s_file_error(ld, item ? item : v, opt->name, why);
                }
                rc = s_set_value(cfg, opt, text, why, sizeof why);
                if (rc == GG_ECONFIG)
                    return s_file_error(ld, item, opt->name, why);
            }
        } else {
            const char *text = s_scalar(v);
            if (!text) {
                snprintf(why, sizeof why, "must be a value, got %s",
                         v->type == YAML_SCALAR_NODE ? "nothing" : s_node_kind(v));
                return s_file_error(ld, v, opt->name, why);
            }
            if (opt->kind == K_JOIN)
                s_join_clear(cfg);
            rc = s_set_value(cfg, opt, text, why, sizeof why);
            if (rc == GG_ECONFIG)
                return s_file_error(ld, v, opt->name, why);
        }
        if (rc)
            return rc;
    }
    return GG_OK;
}

int config_load_file(const char *path, config_t *cfg, char *err, size_t errlen)
{
    int rc = GG_OK;
    char *text = NULL;
    size_t len = 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_ok = false, doc_ok = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        s_fmt(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return GG_EIO;
    }
    text = malloc(CONFIG_FILE_MAX + 1);
    if (!text) {
        rc = GG_ENOMEM;
        goto out;
    }
    len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        s_fmt(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = GG_EIO;
        goto out;
    }
    if (len > CONFIG_FILE_MAX) {
        s_fmt(err, errlen, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
        rc = GG_ECONFIG;
        goto out;
    }
    if (!yaml_parser_initialize(&parser)) {
        rc = GG_ENOMEM;
        goto out;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        s_fmt(err, errlen, "%s:%lu: %s%s%s", path, (unsigned long) parser.problem_mark.line + 1,
              parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
              parser.context ? parser.context : "");
        rc = GG_ECONFIG;
        goto out;
    }
    doc_ok = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        goto out; /* an empty file: nothing to overlay */
    s_loader_t ld = {path, &doc, err, errlen};
    rc = s_load_root(&ld, root, cfg);
    if (rc)
        goto out;
    /* A second document would be silently ignored: refuse it. */
    yaml_document_t extra;
    if (!yaml_parser_load(&parser, &extra)) {
        s_fmt(err, errlen, "%s:%lu: %s", path, (unsigned long) parser.problem_mark.line + 1,
              parser.problem ? parser.problem : "invalid YAML");
        rc = GG_ECONFIG;
        goto out;
    }
    bool more = yaml_document_get_root_node(&extra) != NULL;
    yaml_document_delete(&extra);
    if (more) {
        s_fmt(err, errlen, "%s: more than one YAML document", path);
        rc = GG_ECONFIG;
    }
out:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free(text);
    fclose(f);
    return rc;
}

/* ---- flags ---- */

typedef struct {
    const s_option_t *opt;
    const char *value;
} s_flag_t;

int config_parse_args(int argc, char **argv, config_t *cfg, char *err, size_t errlen)
{
    char why[CONFIG_ERR_MAX], sample[96];
    int rc = GG_OK;
    s_flag_t *flags = NULL;
    size_t nflags = 0;
    bool saw_join = false;
    config_t scratch;

    memset(&scratch, 0, sizeof scratch);
    rc = config_defaults(cfg);
    if (rc)
        return rc;
    flags = calloc((size_t) (argc > 0 ? argc : 1), sizeof *flags);
    if (!flags) {
        rc = GG_ENOMEM;
        goto out;
    }
    /* Pass 1: syntax, and every value checked on a scratch config so a bad
     * flag is reported before the file is read. */
    rc = config_defaults(&scratch);
    if (rc)
        goto out;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            s_fmt(err, errlen, "unexpected argument '%s' (see gaggled --help)",
                  s_sample(arg, sample, sizeof sample));
            rc = GG_ECONFIG;
            goto out;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t) (eq - name) : strlen(name);
        const s_option_t *opt = s_find(name, nlen);
        if (!opt || (opt->flags & S_FILE_ONLY)) {
            s_fmt(err, errlen, "unknown flag '%s' (see gaggled --help)",
                  s_sample(arg, sample, sizeof sample));
            rc = GG_ECONFIG;
            goto out;
        }
        const char *value = NULL;
        if (opt->flags & S_NO_VALUE) {
            if (eq) {
                s_fmt(err, errlen, "--%s: takes no value", opt->name);
                rc = GG_ECONFIG;
                goto out;
            }
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            s_fmt(err, errlen, "--%s: needs a value (%s)", opt->name, opt->metavar);
            rc = GG_ECONFIG;
            goto out;
        }
        if (opt->kind == K_HELP) {
            cfg->show_help = true;
        } else if (opt->kind == K_VERSION) {
            cfg->show_version = true;
        } else if (opt->kind == K_CHECK) {
            cfg->check_only = true;
        } else {
            rc = s_set_value(&scratch, opt, value, why, sizeof why);
            if (rc == GG_ECONFIG)
                s_fmt(err, errlen, "--%s: %s", opt->name, why);
            if (rc)
                goto out;
            flags[nflags++] = (s_flag_t){opt, value};
        }
    }
    if (cfg->show_help || cfg->show_version)
        goto out;
    /* The file, then the flags over it. */
    for (size_t i = 0; i < nflags; i++)
        if (flags[i].opt->kind == K_CONFIG) {
            rc = s_set_value(cfg, flags[i].opt, flags[i].value, why, sizeof why);
            if (rc)
                goto out;
        }
    if (cfg->config_file) {
        rc = config_load_file(cfg->config_file, cfg, err, errlen);
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < nflags; i++) {
        if (flags[i].opt->kind == K_JOIN && !saw_join) {
            s_join_clear(cfg); /* flags replace the file's seeds */
            saw_join = true;
        }
        rc = s_set_value(cfg, flags[i].opt, flags[i].value, why, sizeof why);
        if (rc == GG_ECONFIG)
            s_fmt(err, errlen, "--%s: %s", flags[i].opt->name, why);
        if (rc)
            goto out;
    }
out:
    config_free(&scratch);
    free(flags);
    if (rc) {
        bool help = cfg->show_help, version = cfg->show_version;
        config_free(cfg);
        cfg->show_help = help;
        cfg->show_version = version;
    }
    return rc;
}

/* ---- validation ---- */

/* The first IPv4 address of an interface that is up and not loopback, or
 * 127.0.0.1 when there is none. */
static void s_first_address(char *out, size_t len)
{
    struct ifaddrs *list = NULL;
    snprintf(out, len, "127.0.0.1");
    if (getifaddrs(&list) != 0)
        return;
    for (struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET)
            continue;
        if (!(ifa->ifa_flags & IFF_UP) || (ifa->ifa_flags & IFF_LOOPBACK))
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *) ifa->ifa_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t) len))
            break;
        snprintf(out, len, "127.0.0.1");
    }
    freeifaddrs(list);
}

static int s_derive(config_t *cfg)
{
    if (!cfg->node_key) {
        size_t n = strlen(cfg->node_cert);
        const char *suffix = ".cert";
        size_t slen = strlen(suffix);
        char *key = malloc(n + 5);
        if (!key)
            return GG_ENOMEM;
        if (n > slen && strcmp(cfg->node_cert + n - slen, suffix) == 0)
            snprintf(key, n + 5, "%.*s.key", (int) (n - slen), cfg->node_cert);
        else
            snprintf(key, n + 5, "%s.key", cfg->node_cert);
        cfg->node_key = key;
    }
    if (!cfg->advertise) {
        char host[S_HOST_MAX + 1], addr[S_HOST_MAX + 16];
        uint16_t port = 0;
        if (s_split_host_port(cfg->bind + 6, host, &port, false) != 0)
            return GG_EINTERNAL; /* bind was checked */
        if (strcmp(host, "0.0.0.0") == 0)
            s_first_address(host, sizeof host);
        snprintf(addr, sizeof addr, "tcp://%s:%u", host, (unsigned) port);
        cfg->advertise = strdup(addr);
        if (!cfg->advertise)
            return GG_ENOMEM;
    }
    return GG_OK;
}

int config_validate(config_t *cfg, char *err, size_t errlen)
{
    char why[CONFIG_ERR_MAX];
    int rc;
    /* Every value again through its checker: the struct may have been
     * filled by code rather than parsed. */
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *opt = &s_options[i];
        char text[64];
        const char *value = NULL;
        switch (opt->kind) {
        case K_NAME:
        case K_PATH:
        case K_BIND:
        case K_ADVERTISE:
        case K_HTTP:
            value = *s_str_field(cfg, opt);
            if (!value) {
                if (opt->kind == K_ADVERTISE || opt->offset == S_OFF(node_key) ||
                    opt->offset == S_OFF(http_token_file))
                    continue; /* optional or derived */
                if (opt->kind == K_NAME)
                    s_fmt(err, errlen, "--name: the host name is unknown; pass --name");
                else
                    s_fmt(err, errlen, "--%s: must be set", opt->name);
                return GG_ECONFIG;
            }
            break;
        case K_WORKERS:
            snprintf(text, sizeof text, "%" PRIu32, cfg->workers);
            value = text;
            break;
        case K_PROFILE:
            if ((unsigned) cfg->profile > CONFIG_PROFILE_TEST) {
                s_fmt(err, errlen, "--profile: must be lan, wan or test");
                return GG_ECONFIG;
            }
            continue;
        case K_LOG_LEVEL:
            if ((unsigned) cfg->log_level > GG_LOG_DEBUG) {
                s_fmt(err, errlen, "--log-level: must be error, warn, info or debug");
                return GG_ECONFIG;
            }
            continue;
        case K_SIZE:
            if (cfg->map_size < S_MIN_MAP_SIZE || cfg->map_size > S_MAX_MAP_SIZE) {
                s_fmt(err, errlen, "--map-size: must be between 1MiB and 64TiB, got %" PRIu64,
                      cfg->map_size);
                return GG_ECONFIG;
            }
            continue;
        case K_DURATION:
            if (cfg->reap_ms < S_MIN_REAP_MS || cfg->reap_ms > S_MAX_REAP_MS) {
                s_fmt(err, errlen, "--reap: must be between 1s and 365d");
                return GG_ECONFIG;
            }
            continue;
        default: continue;
        }
        /* Check into a scratch copy so the stored value is untouched. */
        config_t scratch;
        memset(&scratch, 0, sizeof scratch);
        rc = s_set_value(&scratch, opt, value, why, sizeof why);
        config_free(&scratch);
        if (rc == GG_ECONFIG)
            s_fmt(err, errlen, "--%s: %s", opt->name, why);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < cfg->join_count; i++) {
        char norm[S_HOST_MAX + 16];
        if (s_check_peer(cfg->join[i], true, norm, sizeof norm, why, sizeof why) != 0) {
            s_fmt(err, errlen, "--join: %s", why);
            return GG_ECONFIG;
        }
    }
    if (cfg->scale.enabled) {
        if (!cfg->scale.run || !*cfg->scale.run) {
            s_fmt(err, errlen, "scale.run: must name the command that scales the fleet");
            return GG_ECONFIG;
        }
        if (cfg->scale.min_agents > cfg->scale.max_agents) {
            s_fmt(err, errlen, "scale.minAgents: %" PRIu32 " is more than scale.maxAgents %" PRIu32,
                  cfg->scale.min_agents, cfg->scale.max_agents);
            return GG_ECONFIG;
        }
        if (cfg->scale.targets_per_agent < 1) {
            s_fmt(err, errlen, "scale.targetsPerAgent: must be at least 1");
            return GG_ECONFIG;
        }
    }
    rc = s_derive(cfg);
    if (rc)
        return rc;
    if (strcmp(cfg->node_key, cfg->node_cert) == 0) {
        s_fmt(err, errlen, "--node-key: must not be the certificate file itself");
        return GG_ECONFIG;
    }
    return GG_OK;
}

/* ---- reload ---- */

static bool s_field_equal(const config_t *a, const config_t *b, const s_option_t *opt)
{
    const char *pa = (const char *) a + opt->offset;
    const char *pb = (const char *) b + opt->offset;
    switch (opt->kind) {
    case K_NAME:
    case K_PATH:
    case K_CONFIG:
    case K_BIND:
    case K_ADVERTISE:
    case K_HTTP: {
        const char *sa = *(char *const *) pa, *sb = *(char *const *) pb;
        if (!sa || !sb)
            return sa == sb;
        return strcmp(sa, sb) == 0;
    }
    case K_SIZE:
    case K_DURATION: return *(const uint64_t *) pa == *(const uint64_t *) pb;
    case K_WORKERS: return *(const uint32_t *) pa == *(const uint32_t *) pb;
    case K_PROFILE: return a->profile == b->profile;
    case K_LOG_LEVEL: return a->log_level == b->log_level;
    default: return true;
    }
}

int config_keep_restart_fields(config_t *next, const config_t *cur, char *changed, size_t len)
{
    if (changed && len)
        changed[0] = '\0';
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *opt = &s_options[i];
        if (!(opt->flags & S_RESTART) || s_field_equal(next, cur, opt))
            continue;
        if (s_is_string_kind(opt->kind)) {
            const char *old = *s_str_field((config_t *) cur, opt);
            char **field = s_str_field(next, opt);
            if (old) {
                if (s_set_string(field, old))
                    return GG_ENOMEM;
            } else {
                free(*field);
                *field = NULL;
            }
        } else {
            memcpy((char *) next + opt->offset, (const char *) cur + opt->offset,
                   opt->kind == K_WORKERS                             ? sizeof(uint32_t)
                   : (opt->kind == K_SIZE || opt->kind == K_DURATION) ? sizeof(uint64_t)
                                                                      : sizeof(int));
        }
        if (changed && len) {
            size_t used = strlen(changed);
            snprintf(changed + used, len - used, "%s%s", used ? ", " : "", opt->name);
        }
    }
    return GG_OK;
}

/* ---- help ---- */

const char *config_profile_name(config_profile_t profile)
{
    return (unsigned) profile <= CONFIG_PROFILE_TEST ? s_profiles[profile] : "?";
}

const char *config_log_level_name(gg_log_level_t level)
{
    return (unsigned) level <= GG_LOG_DEBUG ? s_levels[level] : "?";
}

/* Prints text from column 34, wrapped before column 80. */
static void s_print_wrapped(FILE *out, const char *text)
{
    const int indent = 34, width = 80;
    int col = indent;
    const char *p = text;
    while (*p) {
        const char *sp = strchr(p, ' ');
        int word = sp ? (int) (sp - p) : (int) strlen(p);
        if (col > indent && col + 1 + word > width) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", word, p);
        col += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

void config_print_help(FILE *out)
{
    fprintf(out, "usage: gaggled [--config FILE] [OPTIONS]\n\n"
                 "Runs the gaggle agent: joins the fleet, claims and runs migration targets,\n"
                 "and serves the HTTP API, metrics and dashboard.\n\noptions:\n");
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *opt = &s_options[i];
        char left[64];
        if (opt->flags & S_FILE_ONLY)
            continue;
        if (opt->metavar)
            snprintf(left, sizeof left, "--%s %s", opt->name, opt->metavar);
        else
            snprintf(left, sizeof left, "--%s", opt->name);
        if (strlen(left) > 30)
            fprintf(out, "  %s\n  %-30s  ", left, "");
        else
            fprintf(out, "  %-30s  ", left);
        s_print_wrapped(out, opt->help);
    }
    fprintf(out, "\nDurations are written 500ms, 2s, 10m, 1h or 1d; sizes 64MiB or 1GiB.\n"
                 "The config file takes the same keys without the dashes (data-dir: /x,\n"
                 "join: [a, b]) plus scale: {run: CMD, targetsPerAgent: N, minAgents: N,\n"
                 "maxAgents: N, cooldown: 5m}. Flags win over the file.\n\n"
                 "signals: SIGTERM/SIGINT leave gracefully and exit 0; SIGHUP reloads the\n"
                 "config file, the trust files and the node certificate.\n"
                 "exit status: 0 after a clean shutdown, 1 on a runtime error, 2 on a\n"
                 "usage or configuration error.\n");
}
