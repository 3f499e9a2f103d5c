/*
 * agent.c: gaggled's body (see agent.h).
 *
 * Everything runs on one thread, in one zloop:
 *   signalfd poller   SIGTERM/SIGINT stop the loop; SIGHUP reloads; SIGCHLD
 *                     and SIGPIPE are drained (child exits are the
 *                     executor's, through pidfds, once it exists)
 *   heartbeat timer   proves to /healthz that the loop still turns
 *   HTTP              MHD's epoll fd and timer (http.c)
 * Signals are blocked in every thread from the start of main, so none of
 * them interrupts a system call or zloop_start; they are only read here.
 *
 * Startup order: identity (key, certificate), trust (the certificate must
 * verify), store, loop, HTTP. Shutdown is the reverse. A reload builds a
 * complete new state (config, trust, certificate, token) before touching the
 * running one, nginx-style: a bad file changes nothing.
 */
#include "agent.h"
#include "api.h"
#include "cluster.h"
#include "engine.h"
#include "gg_error.h"
#include "gg_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define S_HEARTBEAT_MS       1000
#define S_HEARTBEAT_STALE_MS 10000 /* /healthz fails when the loop is this late */

struct _agent_t {
    config_t cfg;
    int argc;
    char **argv;
    node_key_t node_key;
    cert_t node_cert;
    char node_id[AGENT_NODE_ID_LEN + 1];
    trust_t *trust;
    store_t *store;
    metrics_t *metrics;
    zloop_t *loop;
    http_t *http;
    int signal_fd;
    zmq_pollitem_t signal_item;
    bool signal_polling;
    int heartbeat_id;
    int64_t last_beat_ms;
    bool stopping;
    int loop_error;
    cluster_t *cluster;
    engine_t *engine;
    scaler_t *scaler;
    int leave_timer_id;
    bool cluster_leaving;
};

/* ---- small helpers ---- */

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t s_unix_now(void)
{
    return (uint64_t) time(NULL);
}

static void s_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGPIPE);
}

static void s_format_time(uint64_t unix_s, char *buf, size_t len)
{
    time_t t = (time_t) unix_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%llu", (unsigned long long) unix_s);
}

/* Reads the bearer token: the file's content without trailing whitespace. */
static int s_read_token(const char *path, char **out, char *err, size_t errlen)
{
    int rc = GG_OK;
    char *buf = NULL;
    size_t n = 0;
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "cannot read the HTTP token file %s: %s", path, strerror(errno));
        return GG_EIO;
    }
    buf = malloc(HTTP_TOKEN_MAX + 2);
    if (!buf) {
        rc = GG_ENOMEM;
        goto out;
    }
    n = fread(buf, 1, HTTP_TOKEN_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read the HTTP token file %s: %s", path, strerror(errno));
        rc = GG_EIO;
        goto out;
    }
    if (n > HTTP_TOKEN_MAX) {
        snprintf(err, errlen, "the HTTP token file %s is longer than %d bytes", path,
                 HTTP_TOKEN_MAX);
        rc = GG_ECONFIG;
        goto out;
    }
    while (n &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0 || strlen(buf) != n || strpbrk(buf, " \t\r\n")) {
        snprintf(err, errlen, "the HTTP token file %s must hold one token on one line", path);
        rc = GG_ECONFIG;
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    if (buf) {
        sodium_memzero(buf, HTTP_TOKEN_MAX + 2);
        free(buf);
    }
    fclose(f);
    return rc;
}

static void s_free_token(char **token)
{
    if (*token) {
        sodium_memzero(*token, strlen(*token));
        free(*token);
        *token = NULL;
    }
}

/* Loads a certificate and checks that it belongs to key and to name and that
 * trust accepts it now. */
static int s_load_cert(const config_t *cfg, const node_key_t *key, const trust_t *trust,
                       cert_t *out, char *err, size_t errlen)
{
    char when[64];
    int rc = cert_load(cfg->node_cert, out);
    if (rc) {
        snprintf(err, errlen, "cannot load the node certificate %s: %s", cfg->node_cert,
                 gg_strerror(rc));
        return rc;
    }
    if (sodium_memcmp(out->curve_public, key->public_key, CERT_PUBLIC_LEN) != 0) {
        snprintf(err, errlen, "the node certificate %s is not for the key in %s", cfg->node_cert,
                 cfg->node_key);
        return GG_ECRYPTO;
    }
    if (strcmp(out->name, cfg->name) != 0) {
        snprintf(err, errlen,
                 "the node name is '%s' but the certificate %s names '%s' (pass --name %s or "
                 "issue a certificate for %s)",
                 cfg->name, cfg->node_cert, out->name, out->name, cfg->name);
        return GG_ECONFIG;
    }
    rc = trust_verify_cert(trust, out, s_unix_now());
    switch (rc) {
    case GG_OK: break;
    case GG_EPERM:
        snprintf(err, errlen,
                 "the node certificate %s is signed by an operator whose key is not in %s",
                 cfg->node_cert, cfg->operators);
        break;
    case GG_EEXPIRED:
        s_format_time(out->expires, when, sizeof when);
        snprintf(err, errlen,
                 "the node certificate %s has expired or is not valid yet "
                 "(valid until %s); issue a new one",
                 cfg->node_cert, when);
        break;
    case GG_EREVOKED:
        snprintf(err, errlen, "the node certificate %s has been revoked", cfg->node_cert);
        break;
    default:
        snprintf(err, errlen, "the node certificate %s does not verify: %s", cfg->node_cert,
                 gg_strerror(rc));
        break;
    }
    return rc;
}

static int s_load_trust(const config_t *cfg, trust_t **out, char *err, size_t errlen)
{
    size_t count = 0;
    trust_t *trust = trust_new();
    if (!trust)
        return GG_ENOMEM;
    int rc = trust_load_dir(trust, cfg->operators, &count);
    if (rc) {
        snprintf(err, errlen, "no trusted operator key could be loaded from %s (--operators)",
                 cfg->operators);
        trust_destroy(&trust);
        return rc;
    }
    gg_debug("agent: trusting %zu operator key(s) from %s", count, cfg->operators);
    *out = trust;
    return GG_OK;
}

int agent_check_identity(const config_t *cfg, char *err, size_t errlen)
{
    node_key_t key;
    trust_t *trust = NULL;
    cert_t cert;
    int rc = node_key_load(cfg->node_key, &key);
    if (rc) {
        snprintf(err, errlen, "cannot load the node key %s: %s", cfg->node_key, gg_strerror(rc));
        return rc;
    }
    rc = s_load_trust(cfg, &trust, err, errlen);
    if (rc == GG_OK)
        rc = s_load_cert(cfg, &key, trust, &cert, err, errlen);
    trust_destroy(&trust);
    node_key_wipe(&key);
    return rc;
}

/* ---- metrics ---- */

static void s_collect_store(metrics_t *m, void *arg)
{
    agent_t *self = arg;
    store_stats_t st;
    if (!self->store)
        return;
    store_stats(self->store, &st);
    metrics_counter_set(m, "gaggle_store_commits_total", NULL, (double) st.commits);
    metrics_gauge_set(m, "gaggle_store_map_size_bytes", NULL, (double) st.map_size);
    metrics_gauge_set(m, "gaggle_store_used_bytes", NULL, (double) st.used_bytes);
    metrics_counter_set(m, "gaggle_store_errors_total", (const char *[]){"kind", "map_full", NULL},
                        (double) st.errors_map_full);
    metrics_counter_set(m, "gaggle_store_errors_total", (const char *[]){"kind", "no_space", NULL},
                        (double) st.errors_no_space);
    metrics_counter_set(m, "gaggle_store_errors_total", (const char *[]){"kind", "io", NULL},
                        (double) st.errors_io);
}

static int s_metrics_setup(agent_t *self)
{
    metrics_t *m = self->metrics;
    int rc = 0;
    rc |= metrics_describe(m, "gaggle_build_info", METRICS_GAUGE,
                           "Always 1; the version label names this build.");
    rc |= metrics_gauge_set(m, "gaggle_build_info",
                            (const char *[]){"version", GAGGLE_VERSION, NULL}, 1);
    rc |= metrics_describe(m, "gaggle_cert_expiry_timestamp_seconds", METRICS_GAUGE,
                           "When this node's own certificate expires, unix seconds.");
    rc |= metrics_describe(m, "gaggle_store_commits_total", METRICS_COUNTER,
                           "Store write transactions committed.");
    rc |= metrics_describe(m, "gaggle_store_map_size_bytes", METRICS_GAUGE,
                           "LMDB map size (the store's maximum size), bytes.");
    rc |= metrics_describe(m, "gaggle_store_used_bytes", METRICS_GAUGE,
                           "Bytes of the LMDB map in use.");
    rc |= metrics_describe(m, "gaggle_store_errors_total", METRICS_COUNTER,
                           "Store errors by kind (map_full, no_space, io).");
    rc |= metrics_on_collect(m, metrics_collect_process, NULL);
    rc |= metrics_on_collect(m, s_collect_store, self);
    return rc ? GG_EINTERNAL : GG_OK;
}

static void s_set_cert_metric(agent_t *self)
{
    metrics_gauge_set(self->metrics, "gaggle_cert_expiry_timestamp_seconds", NULL,
                      (double) self->node_cert.expires);
}

/* ---- HTTP routes ---- */

static int s_get_healthz(void *arg, const http_request_t *req, http_response_t *resp)
{
    agent_t *self = arg;
    char why[160];
    (void) req;
    int64_t late = s_now_ms() - self->last_beat_ms;
    if (late > S_HEARTBEAT_STALE_MS) {
        snprintf(why, sizeof why, "the event loop has not run its timers for %lld ms",
                 (long long) late);
        return http_respond_json(resp, 503,
                                 json_pack("{s:s,s:s}", "status", "unhealthy", "error", why));
    }
    int rc = store_check_writable(self->store);
    /* GG_EBUSY: a write batch is open, so the store is taking writes. */
    if (rc && rc != GG_EBUSY) {
        snprintf(why, sizeof why, "the store does not take writes: %s", gg_strerror(rc));
        return http_respond_json(resp, 503,
                                 json_pack("{s:s,s:s}", "status", "unhealthy", "error", why));
    }
    return http_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static int s_get_metrics(void *arg, const http_request_t *req, http_response_t *resp)
{
    agent_t *self = arg;
    (void) req;
    char *text = metrics_render(self->metrics);
    if (!text)
        return http_respond_error(resp, 500, "the metrics could not be rendered");
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = text;
    resp->body_len = strlen(text);
    return GG_OK;
}

static int s_routes(agent_t *self)
{
    int rc = 0;
    rc |= http_route(self->http, "GET", "/healthz", s_get_healthz, self);
    rc |= http_route(self->http, "GET", "/metrics", s_get_metrics, self);
    /* /v1/status and the dashboard (/) are the plan API's (api.c). */
    return rc ? GG_EINTERNAL : GG_OK;
}

/* ---- loop handlers ---- */

static int s_on_heartbeat(zloop_t *loop, int timer_id, void *arg)
{
    agent_t *self = arg;
    (void) loop;
    (void) timer_id;
    self->last_beat_ms = s_now_ms();
    return 0;
}

/* Ends the loop once the leave announcement has gone out (or timed out). */
static int s_on_leave_tick(zloop_t *loop, int timer_id, void *arg)
{
    agent_t *self = arg;
    (void) loop;
    (void) timer_id;
    if (self->engine && !engine_leave_done(self->engine))
        return 0;
    if (self->engine && !self->cluster_leaving) {
        /* Leases are handed back: now announce the leave. */
        self->cluster_leaving = true;
        cluster_leave(self->cluster);
    }
    if (!cluster_leave_done(self->cluster))
        return 0;
    self->stopping = true;
    return -1;
}

static int s_on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agent_t *self = arg;
    struct signalfd_siginfo info;
    (void) loop;
    (void) item;
    for (;;) {
        ssize_t n = read(self->signal_fd, &info, sizeof info);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t) sizeof info)
            break; /* EAGAIN: drained */
        switch (info.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            if (self->leave_timer_id >= 0) {
                gg_warn("agent: second signal: stopping without waiting for the leave");
                self->stopping = true;
                break;
            }
            gg_info("agent: %s received; leaving the fleet and shutting down",
                    info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            if (self->cluster) {
                if (self->engine)
                    engine_leave(self->engine);
                else
                    cluster_leave(self->cluster);
                self->leave_timer_id = zloop_timer(self->loop, 10, 0, s_on_leave_tick, self);
                if (self->leave_timer_id >= 0)
                    break;
            }
            self->stopping = true;
            break;
        case SIGHUP:
            gg_info("agent: SIGHUP received; reloading");
            agent_reload(self);
            break;
        default: break; /* SIGCHLD, SIGPIPE: nothing to do yet */
        }
    }
    return self->stopping ? -1 : 0;
}

/* ---- public ---- */

int agent_signals_block(void)
{
    sigset_t set;
    s_sigset(&set);
    /* Mask first: any thread started from here on inherits it. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return GG_EINTERNAL;
    zsys_handler_set(NULL);
    return GG_OK;
}

agent_t *agent_new(config_t *cfg, int argc, char **argv)
{
    agent_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    self->argc = argc;
    self->argv = argv;
    self->signal_fd = -1;
    self->heartbeat_id = -1;
    self->leave_timer_id = -1;
    return self;
}

void agent_destroy(agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    agent_t *self = *self_p;
    http_stop(self->http);
    scaler_destroy(&self->scaler);
    engine_destroy(&self->engine);
    cluster_destroy(&self->cluster);
    http_destroy(&self->http);
    if (self->loop) {
        if (self->heartbeat_id >= 0)
            zloop_timer_end(self->loop, self->heartbeat_id);
        if (self->signal_polling)
            zloop_poller_end(self->loop, &self->signal_item);
    }
    zloop_destroy(&self->loop);
    if (self->signal_fd >= 0)
        close(self->signal_fd);
    if (self->store)
        gg_info("agent: closing the store");
    store_destroy(&self->store);
    metrics_destroy(&self->metrics);
    trust_destroy(&self->trust);
    node_key_wipe(&self->node_key);
    config_free(&self->cfg);
    free(self);
    *self_p = NULL;
}

int agent_start(agent_t *self, char *err, size_t errlen)
{
    char *token = NULL;
    sigset_t set;
    int rc;
    config_t *cfg = &self->cfg;

    gg_log_set_level(cfg->log_level);
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return GG_EINTERNAL;
    }
    /* Identity and trust: a node whose own certificate does not verify
     * refuses to start. */
    rc = node_key_load(cfg->node_key, &self->node_key);
    if (rc) {
        snprintf(err, errlen, "cannot load the node key %s: %s", cfg->node_key, gg_strerror(rc));
        goto out;
    }
    sodium_bin2hex(self->node_id, sizeof self->node_id, self->node_key.public_key, CERT_PUBLIC_LEN);
    rc = s_load_trust(cfg, &self->trust, err, errlen);
    if (rc)
        goto out;
    rc = s_load_cert(cfg, &self->node_key, self->trust, &self->node_cert, err, errlen);
    if (rc)
        goto out;
    if (cfg->http_token_file) {
        rc = s_read_token(cfg->http_token_file, &token, err, errlen);
        if (rc)
            goto out;
    }

    self->metrics = metrics_new();
    if (!self->metrics || s_metrics_setup(self) != 0) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "cannot set up metrics: %s", gg_strerror(rc));
        goto out;
    }
    s_set_cert_metric(self);

    rc = store_open(cfg->data_dir, cfg->map_size, &self->store);
    if (rc) {
        if (rc == GG_EBUSY)
            snprintf(err, errlen, "the store in %s is in use by another gaggled", cfg->data_dir);
        else
            snprintf(err, errlen, "cannot open the store in %s: %s", cfg->data_dir,
                     gg_strerror(rc));
        goto out;
    }

    /* The loop: signals first, so a SIGTERM during startup is not lost. */
    self->loop = zloop_new();
    if (!self->loop) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "cannot create the event loop");
        goto out;
    }
    s_sigset(&set);
    self->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->signal_fd < 0) {
        rc = GG_EINTERNAL;
        snprintf(err, errlen, "cannot create a signalfd: %s", strerror(errno));
        goto out;
    }
    self->signal_item = (zmq_pollitem_t){NULL, self->signal_fd, ZMQ_POLLIN, 0};
    if (zloop_poller(self->loop, &self->signal_item, s_on_signal, self) != 0) {
        rc = GG_EINTERNAL;
        snprintf(err, errlen, "cannot register the signalfd with the loop");
        goto out;
    }
    self->signal_polling = true;
    self->last_beat_ms = s_now_ms();
    self->heartbeat_id = zloop_timer(self->loop, S_HEARTBEAT_MS, 0, s_on_heartbeat, self);
    if (self->heartbeat_id < 0) {
        rc = GG_EINTERNAL;
        snprintf(err, errlen, "cannot register the heartbeat timer");
        goto out;
    }

    self->http = http_new(self->metrics);
    if (!self->http || s_routes(self) != 0 || http_set_token(self->http, token) != 0) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "cannot set up the HTTP server");
        goto out;
    }
    rc = http_start(self->http, self->loop, cfg->http, err, errlen);
    if (rc)
        goto out;

    self->cluster = cluster_new(self, err, errlen);
    if (!self->cluster) {
        rc = GG_ECONFIG;
        goto out;
    }
    self->engine = engine_new(self, self->cluster, err, errlen);
    if (!self->engine) {
        rc = GG_ECONFIG;
        goto out;
    }
    self->scaler = scaler_new(self, self->cluster, self->engine);
    if (!self->scaler) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "cannot start the fleet scaler");
        goto out;
    }
    if (api_register(self, self->engine, self->cluster) != 0) {
        rc = GG_EINTERNAL;
        snprintf(err, errlen, "cannot register the plan API");
        goto out;
    }

    gg_info("agent: node %s (id %s) started: version %s, profile %s, http %s%s, advertise %s, "
            "data %s",
            cfg->name, self->node_id, GAGGLE_VERSION, config_profile_name(cfg->profile), cfg->http,
            token ? " (token required for /v1)" : "", cfg->advertise, cfg->data_dir);
out:
    s_free_token(&token);
    return rc;
}

int agent_run(agent_t *self)
{
    zloop_start(self->loop);
    if (!self->stopping) {
        gg_error("agent: the event loop stopped unexpectedly");
        self->loop_error = GG_EINTERNAL;
    }
    /* Graceful shutdown, in reverse order of startup. Leaving the fleet and
     * handing back leases go here, before the store closes. */
    gg_info("agent: stopping the HTTP server");
    http_stop(self->http);
    return self->loop_error;
}

int agent_reload(agent_t *self)
{
    char err[CONFIG_ERR_MAX], changed[256];
    config_t next;
    trust_t *trust = NULL;
    cert_t cert;
    char *token = NULL;
    int rc;

    memset(&next, 0, sizeof next);
    rc = config_parse_args(self->argc, self->argv, &next, err, sizeof err);
    if (!rc)
        rc = config_validate(&next, err, sizeof err);
    if (rc) {
        gg_warn("agent: reload: keeping the running configuration: %s", err);
        goto out;
    }
    rc = config_keep_restart_fields(&next, &self->cfg, changed, sizeof changed);
    if (rc) {
        gg_warn("agent: reload: keeping the running configuration: %s", gg_strerror(rc));
        goto out;
    }
    if (changed[0])
        gg_warn("agent: reload: %s changed; that needs a restart (keeping the running value)",
                changed);
    rc = s_load_trust(&next, &trust, err, sizeof err);
    if (!rc)
        rc = s_load_cert(&next, &self->node_key, trust, &cert, err, sizeof err);
    if (!rc && next.http_token_file)
        rc = s_read_token(next.http_token_file, &token, err, sizeof err);
    if (rc) {
        gg_warn("agent: reload: keeping the running configuration: %s", err);
        goto out;
    }
    rc = http_set_token(self->http, token);
    if (rc) {
        gg_warn("agent: reload: keeping the running configuration: %s", gg_strerror(rc));
        goto out;
    }

    /* All good: swap. Nothing below can fail. */
    /* Swapped in place: the transport holds a pointer to the trust store. */
    trust_swap(self->trust, trust);
    self->node_cert = cert;
    s_set_cert_metric(self);
    config_free(&self->cfg);
    self->cfg = next;
    memset(&next, 0, sizeof next);
    gg_log_set_level(self->cfg.log_level);
    if (self->cluster)
        cluster_reload(self->cluster);
    gg_info("agent: reload: applied (log-level %s, workers %u, operators %s, http token %s)",
            config_log_level_name(self->cfg.log_level), (unsigned) self->cfg.workers,
            self->cfg.operators, token ? "required" : "off");
out:
    s_free_token(&token);
    trust_destroy(&trust);
    config_free(&next);
    return rc;
}

const scaler_stats_t *agent_scaler_stats(const agent_t *self)
{
    return self->scaler ? scaler_stats(self->scaler) : NULL;
}

const config_t *agent_config(const agent_t *self)
{
    return &self->cfg;
}

const char *agent_node_id(const agent_t *self)
{
    return self->node_id;
}

const node_key_t *agent_node_key(const agent_t *self)
{
    return &self->node_key;
}

const cert_t *agent_node_cert(const agent_t *self)
{
    return &self->node_cert;
}

trust_t *agent_trust(agent_t *self)
{
    return self->trust;
}

store_t *agent_store(agent_t *self)
{
    return self->store;
}

metrics_t *agent_metrics(agent_t *self)
{
    return self->metrics;
}

http_t *agent_http(agent_t *self)
{
    return self->http;
}

zloop_t *agent_loop(agent_t *self)
{
    return self->loop;
}
