/*
 * sim_world.c: nodes, the simulated network, the fault schedule and the
 * event loop of gaggle-sim (see sim.h for the phases and the pieces).
 *
 * Determinism. One PRNG per concern, each seeded from the run seed through
 * splitmix64 with its own constant: latency (and reordering), loss (and
 * duplication), faults (crash times, downtimes, partition groups, slow
 * nodes), slow-node lags, machine seeds and node ids. A concern's draws
 * happen in event order, so adding draws to one concern never shifts another.
 *
 * Network model. A message copy from i to j is delivered after
 *     base * link(i,j) + median * link(i,j) * exp(sigma * Z)      (Z ~ N(0,1))
 * milliseconds, where link(i,j) in [0.5, 2) is a fixed per-link factor (a hash
 * of the pair, so no N x N table). Each copy is lost with probability `loss`;
 * a message is duplicated with probability `dup` (the copies travel
 * independently); with probability `reorder` a copy gets an extra uniform
 * delay up to reorder_max, which lets later messages overtake it. Messages
 * between partition groups are dropped when sent and when they arrive.
 *
 * Slow node. Each input it handles (message or timer) waits an extra delay
 * uniform in [0, (factor - 1) * probe_timeout / 2] and inputs are handled in
 * the order they arrive (a node stalling, e.g. CPU-starved or pausing): with
 * factor 5 on lan a PING is answered up to 1 s late, twice the probe timeout.
 *
 * Ticks. Each node has at most one live tick event: when an input leaves a
 * machine with an earlier deadline than the queued tick, a new tick is queued
 * and the old one becomes stale (recognised by its time and generation and
 * skipped), so no event does O(N) work.
 */
#include "sim.h"

#include "gg_error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PI 3.14159265358979323846

enum {
    SIM_EV_DELIVER = 1,
    SIM_EV_TICK,
    SIM_EV_CRASH,
    SIM_EV_RESTART,
    SIM_EV_SPLIT,
    SIM_EV_HEAL,
    SIM_EV_CHECK,
    SIM_EV_SETTLE,
    SIM_EV_SETTLE_END,
};

#define S_LAGGED 1u /* a DELIVER already delayed by its slow receiver */

/* Seeds of the PRNG concerns (arbitrary distinct constants). */
enum {
    S_RNG_LATENCY = 0x11,
    S_RNG_LOSS = 0x22,
    S_RNG_FAULTS = 0x33,
    S_RNG_SLOW = 0x44,
    S_RNG_SEEDS = 0x55,
    S_RNG_IDS = 0x66,
    S_RNG_LINKS = 0x77,
};

typedef struct {
    double base_ms, median_ms, sigma;
    uint64_t reorder_max_ms;
    uint64_t downtime_ms;
} s_netmodel_t;

struct _sim_t {
    sim_config_t cfg;
    membership_profile_t profile;
    s_netmodel_t net;
    uint64_t now;
    sim_queue_t *queue;
    sim_node_t *nodes;
    uint32_t n;
    uint32_t *ids; /* node index + 1, open addressing by id */
    uint32_t ids_cap;
    rng_t rng_latency, rng_loss, rng_faults, rng_slow, rng_seeds;
    uint64_t link_salt;
    const sim_machine_ops_t *machines[SIM_MAX_MACHINES];
    void *shared[SIM_MAX_MACHINES]; /* world_new */
    uint32_t n_machines;
    bool views_ok; /* the last periodic check found the views converged */
    double loss, dup, reorder;
    uint64_t trace;
    sim_stats_t stats;
    uint64_t check_interval, settle_ms, slow_lag_max;
    uint64_t susp_max_ms; /* longest suspicion timeout at this fleet size */
    bool split;           /* a partition is in force */
    uint64_t healed_at;   /* last heal (0: none yet) */
    bool settling, stop, converged, error;
    char error_text[160];
    uint64_t settle_start, converged_at;
    uint64_t formed_at; /* first convergence in the chaos phase (0: not yet) */
    double wall_start, wall_formed;
    sim_violation_t violations[SIM_MAX_VIOLATIONS];
    uint32_t n_violations;
    sim_exp_t *exp;
    char seeds[SIM_MAX_SEEDS][32];
    uint32_t n_seeds;
};

/* ------------------------------------------------------------------ */
/* configuration                                                      */

void sim_config_defaults(sim_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->seed = 1;
    cfg->nodes = 10;
    cfg->targets = 0; /* resolved by the command line: 10000 or 200 */
    cfg->fleet = true;
    cfg->workers = 4;
    cfg->fail_rate = 0.1;
    cfg->attempts = 3;
    cfg->push_eager = -1;
    snprintf(cfg->profile, sizeof cfg->profile, "lan");
    cfg->slow_factor = 5.0;
    cfg->duration_ms = 60000;
    cfg->codec = SIM_CODEC_VERIFY;
    cfg->trials = 5;
}

static bool s_prob_ok(double p)
{
    return p >= 0.0 && p < 1.0;
}

int sim_config_check(const sim_config_t *cfg, char *why, size_t why_len)
{
    membership_profile_t p;
    const char *bad = NULL;
    if (membership_profile_get(cfg->profile, &p) != 0)
        bad = "--profile must be lan, wan or test";
    else if (cfg->nodes < 1 || cfg->nodes > SIM_MAX_NODES)
        bad = "--nodes must be between 1 and 4096";
    else if (cfg->targets > SIM_MAX_TARGETS)
        bad = "--targets must be at most 1048576";
    else if (cfg->fleet && cfg->targets > 200000)
        bad = "--targets must be at most 200000 with the fleet on (every node holds them)";
    else if (cfg->bounded_load_milli &&
             (cfg->bounded_load_milli < 1000 || cfg->bounded_load_milli > 100000))
        bad = "--load-cap must be 0 or between 1 and 100";
    else if (cfg->workers < 1 || cfg->workers > 1024)
        bad = "--workers must be between 1 and 1024";
    else if (!(cfg->fail_rate >= 0.0 && cfg->fail_rate < 1.0))
        bad = "--fail-rate must be in [0, 1)";
    else if (cfg->attempts < 1 || cfg->attempts > 100)
        bad = "--attempts must be between 1 and 100";
    else if (cfg->exec_ms > 24ull * 3600 * 1000 || cfg->plan_at_ms > 30ull * 24 * 3600 * 1000)
        bad = "--exec must be at most 24h and --plan-at at most 30d";
    else if (!s_prob_ok(cfg->loss) || !s_prob_ok(cfg->dup) || !s_prob_ok(cfg->reorder))
        bad = "--loss, --dup and --reorder must be in [0, 1)";
    else if (!(cfg->crash_rate >= 0.0 && cfg->crash_rate <= 1e6))
        bad = "--crash-rate must be between 0 and 1000000 per node-hour";
    else if (cfg->slow > cfg->nodes)
        bad = "--slow cannot exceed --nodes";
    else if (!(cfg->slow_factor >= 1.0 && cfg->slow_factor <= 100.0))
        bad = "--slow-factor must be between 1 and 100";
    else if (cfg->duration_ms == 0 || cfg->duration_ms > 30ull * 24 * 3600 * 1000)
        bad = "--duration must be between 1ms and 30d";
    else if (cfg->settle_ms > 30ull * 24 * 3600 * 1000 || cfg->downtime_ms > 24ull * 3600 * 1000)
        bad = "--settle must be at most 30d and --downtime at most 24h";
    else if (cfg->trials < 1 || cfg->trials > SIM_MAX_TRIALS)
        bad = "--trials must be between 1 and 1000";
    else if (cfg->experiment == SIM_EXP_JOIN && cfg->nodes < 2)
        bad = "the join experiment needs at least 2 nodes";
    else if (cfg->experiment == SIM_EXP_DETECT && cfg->nodes < 3)
        bad = "the detect experiment needs at least 3 nodes";
    else if (cfg->n_partitions > SIM_MAX_PARTITIONS)
        bad = "at most 8 partitions";
    for (uint32_t i = 0; !bad && i < cfg->n_partitions; i++) {
        const sim_partition_t *pt = &cfg->partitions[i];
        if (pt->split_ms >= pt->heal_ms)
            bad = "a partition must heal after it splits";
        else if (pt->fraction_milli == 0 && (pt->groups < 2 || pt->groups > 16))
            bad = "a partition splits a fraction in (0, 1) or into 2..16 groups";
        else if (pt->fraction_milli > 999)
            bad = "a partition fraction must be below 1";
        else if (i > 0 && pt->split_ms < cfg->partitions[i - 1].heal_ms)
            bad = "partitions must be in time order and must not overlap";
    }
    if (bad) {
        snprintf(why, why_len, "%s", bad);
        return GG_EINVAL;
    }
    return 0;
}

/* Shortest text that reads back as the same double. */
static void s_fmt_double(char *buf, size_t size, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static const char *s_codec_name(sim_codec_t c)
{
    switch (c) {
    case SIM_CODEC_OFF: return "off";
    case SIM_CODEC_ON: return "on";
    case SIM_CODEC_VERIFY: return "verify";
    }
    return "verify";
}

static const char *s_experiment_name(sim_experiment_t e)
{
    switch (e) {
    case SIM_EXP_DISSEMINATE: return "disseminate";
    case SIM_EXP_DETECT: return "detect";
    case SIM_EXP_JOIN: return "join";
    case SIM_EXP_NONE: break;
    }
    return "none";
}

static void s_append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_append(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strnlen(buf, size);
    if (len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

void sim_config_command(const sim_config_t *cfg, char *buf, size_t size)
{
    char d[40];
    buf[0] = '\0';
    s_append(buf, size, "gaggle-sim --seed %llu --nodes %u --profile %s --duration %llums",
             (unsigned long long) cfg->seed, cfg->nodes, cfg->profile,
             (unsigned long long) cfg->duration_ms);
    if (cfg->loss > 0) {
        s_fmt_double(d, sizeof d, cfg->loss);
        s_append(buf, size, " --loss %s%s", d, cfg->loss_gossip_only ? " --loss-on gossip" : "");
    }
    if (cfg->dup > 0) {
        s_fmt_double(d, sizeof d, cfg->dup);
        s_append(buf, size, " --dup %s", d);
    }
    if (cfg->reorder > 0) {
        s_fmt_double(d, sizeof d, cfg->reorder);
        s_append(buf, size, " --reorder %s", d);
    }
    if (cfg->crash_rate > 0) {
        s_fmt_double(d, sizeof d, cfg->crash_rate);
        s_append(buf, size, " --crash-rate %s", d);
    }
    if (cfg->downtime_ms)
        s_append(buf, size, " --downtime %llums", (unsigned long long) cfg->downtime_ms);
    if (cfg->slow) {
        s_fmt_double(d, sizeof d, cfg->slow_factor);
        s_append(buf, size, " --slow %u --slow-factor %s", cfg->slow, d);
    }
    for (uint32_t i = 0; i < cfg->n_partitions; i++) {
        const sim_partition_t *pt = &cfg->partitions[i];
        if (pt->fraction_milli)
            s_append(buf, size, " --partition %llums:%llums:0.%03u",
                     (unsigned long long) pt->split_ms, (unsigned long long) pt->heal_ms,
                     pt->fraction_milli);
        else
            s_append(buf, size, " --partition %llums:%llums:g%u", (unsigned long long) pt->split_ms,
                     (unsigned long long) pt->heal_ms, pt->groups);
    }
    if (cfg->settle_ms)
        s_append(buf, size, " --settle %llums", (unsigned long long) cfg->settle_ms);
    s_append(buf, size, " --codec %s", s_codec_name(cfg->codec));
    s_append(buf, size, " --targets %u --fleet %s", cfg->targets, cfg->fleet ? "on" : "off");
    if (cfg->fleet && cfg->workers != 4)
        s_append(buf, size, " --workers %u", cfg->workers);
    if (cfg->fleet && cfg->exec_ms)
        s_append(buf, size, " --exec %llums", (unsigned long long) cfg->exec_ms);
    if (cfg->fleet && cfg->fail_rate != 0.1) {
        s_fmt_double(d, sizeof d, cfg->fail_rate);
        s_append(buf, size, " --fail-rate %s", d);
    }
    if (cfg->fleet && cfg->attempts != 3)
        s_append(buf, size, " --attempts %u", cfg->attempts);
    if (cfg->bounded_load_milli)
        s_append(buf, size, " --load-cap %u.%03u", cfg->bounded_load_milli / 1000,
                 cfg->bounded_load_milli % 1000);
    if (cfg->fleet && cfg->plan_at_ms)
        s_append(buf, size, " --plan-at %llums", (unsigned long long) cfg->plan_at_ms);
    if (cfg->fleet && cfg->push_eager >= 0)
        s_append(buf, size, " --push-eager %d", cfg->push_eager);
    if (cfg->faults & SIM_FAULT_MUTE_REFUTATIONS)
        s_append(buf, size, " --fault mute-refutations");
    if (cfg->faults & SIM_FAULT_BLIND_FLEET)
        s_append(buf, size, " --fault blind-fleet");
    if (cfg->faults & SIM_FAULT_HANG_RUNS)
        s_append(buf, size, " --fault hang-runs");
    if (cfg->experiment != SIM_EXP_NONE)
        s_append(buf, size, " --experiment %s --trials %u", s_experiment_name(cfg->experiment),
                 cfg->trials);
}

static void s_netmodel(const char *profile, s_netmodel_t *net)
{
    if (strcmp(profile, "wan") == 0) {
        *net = (s_netmodel_t){.base_ms = 20,
                              .median_ms = 20,
                              .sigma = 0.5,
                              .reorder_max_ms = 200,
                              .downtime_ms = 60000};
    } else if (strcmp(profile, "test") == 0) {
        *net = (s_netmodel_t){.base_ms = 1,
                              .median_ms = 0.5,
                              .sigma = 0.5,
                              .reorder_max_ms = 10,
                              .downtime_ms = 3000};
    } else {
        *net = (s_netmodel_t){.base_ms = 1,
                              .median_ms = 0.5,
                              .sigma = 0.6,
                              .reorder_max_ms = 20,
                              .downtime_ms = 30000};
    }
}

/* memberlist's longest suspicion: max_mult * mult * max(1, log10 N) * probe. */
static uint64_t s_suspicion_max(const membership_profile_t *p, uint32_t nodes)
{
    double scale = log10((double) (nodes < 1 ? 1 : nodes));
    if (scale < 1.0)
        scale = 1.0;
    return (uint64_t) ((double) p->suspicion_mult * scale * (double) p->probe_interval_ms) *
           p->suspicion_max_timeout_mult;
}

/* Long enough for the slowest legitimate healing: suspicions at their
 * longest, a few reconnect rounds and a minute of probing. */
static uint64_t s_default_settle(const membership_profile_t *p, uint32_t nodes)
{
    return 2 * s_suspicion_max(p, nodes) + 4 * (uint64_t) p->reconnect_interval_ms +
           60 * (uint64_t) p->probe_interval_ms;
}

/* ------------------------------------------------------------------ */
/* accessors                                                          */

const sim_config_t *sim_config(const sim_t *sim)
{
    return &sim->cfg;
}

const membership_profile_t *sim_profile(const sim_t *sim)
{
    return &sim->profile;
}

uint64_t sim_now(const sim_t *sim)
{
    return sim->now;
}

uint32_t sim_node_count(const sim_t *sim)
{
    return sim->n;
}

sim_node_t *sim_node(sim_t *sim, uint32_t index)
{
    return index < sim->n ? &sim->nodes[index] : NULL;
}

static uint64_t s_load64(const uint8_t *b)
{
    uint64_t v;
    memcpy(&v, b, sizeof v);
    return v;
}

sim_node_t *sim_node_by_id(sim_t *sim, const uint8_t id[MEMBER_ID_LEN])
{
    uint32_t mask = sim->ids_cap - 1;
    for (uint32_t i = (uint32_t) rng_mix64(s_load64(id)) & mask; sim->ids[i]; i = (i + 1) & mask) {
        sim_node_t *node = &sim->nodes[sim->ids[i] - 1];
        if (memcmp(node->id, id, MEMBER_ID_LEN) == 0)
            return node;
    }
    return NULL;
}

/* Addresses are exactly "tcp://n<index>:7700". */
sim_node_t *sim_node_by_address(sim_t *sim, const char *address)
{
    static const char prefix[] = "tcp://n", suffix[] = ":7700";
    if (strncmp(address, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *p = address + sizeof prefix - 1;
    uint32_t index = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        index = index * 10 + (uint32_t) (*p - '0');
    if (digits == 0 || (digits > 1 && address[sizeof prefix - 1] == '0') ||
        strcmp(p, suffix) != 0 || index >= sim->n)
        return NULL;
    return &sim->nodes[index];
}

uint32_t sim_seed_count(const sim_t *sim)
{
    return sim->n_seeds;
}

const char *sim_seed_address(const sim_t *sim, uint32_t i)
{
    return i < sim->n_seeds ? sim->seeds[i] : NULL;
}

void *sim_shared(sim_t *sim, const sim_machine_ops_t *ops)
{
    for (uint32_t i = 0; i < sim->n_machines; i++)
        if (sim->machines[i] == ops)
            return sim->shared[i];
    return NULL;
}

void *sim_machine_state(sim_t *sim, sim_node_t *node, const sim_machine_ops_t *ops)
{
    (void) sim;
    for (uint32_t i = 0; i < sim->n_machines; i++)
        if (sim->machines[i] == ops)
            return node->up ? node->state[i] : NULL;
    return NULL;
}

uint64_t sim_machine_seed(sim_t *sim)
{
    return rng_next(&sim->rng_seeds);
}

sim_stats_t *sim_stats(sim_t *sim)
{
    return &sim->stats;
}

bool sim_failed(const sim_t *sim)
{
    return sim->n_violations > 0 || sim->error;
}

bool sim_partition_recent(const sim_t *sim)
{
    return sim->split || (sim->healed_at && sim->now < sim->healed_at + sim->susp_max_ms);
}

bool sim_settling(const sim_t *sim)
{
    return sim->settling;
}

sim_exp_t *sim_experiment(sim_t *sim)
{
    return sim->exp;
}

void sim_trace(sim_t *sim, uint64_t value)
{
    sim->trace = rng_mix64(sim->trace ^ value) + 0x9e3779b97f4a7c15ull;
}

static void s_error(sim_t *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_error(sim_t *sim, const char *fmt, ...)
{
    if (sim->error)
        return;
    sim->error = true;
    sim->stop = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sim->error_text, sizeof sim->error_text, fmt, ap);
    va_end(ap);
}

void sim_violation(sim_t *sim, const char *invariant, int32_t node_a, int32_t node_b,
                   const char *fmt, ...)
{
    sim->stop = true;
    if (sim->n_violations >= SIM_MAX_VIOLATIONS)
        return;
    sim_violation_t *v = &sim->violations[sim->n_violations++];
    snprintf(v->invariant, sizeof v->invariant, "%s", invariant);
    v->at = sim->now;
    v->node_a = node_a;
    v->node_b = node_b;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof v->detail, fmt, ap);
    va_end(ap);
    if (sim->cfg.verbose)
        fprintf(stderr, "sim: t=%llums violation [%s] %s\n", (unsigned long long) sim->now,
                invariant, v->detail);
}

static void s_push(sim_t *sim, uint64_t at, uint32_t kind, uint32_t node, uint64_t arg, void *ptr)
{
    int rc = sim_queue_push(sim->queue, at, kind, node, arg, ptr);
    if (rc != 0)
        s_error(sim, "event queue: %s (%zu events queued)", gg_strerror(rc),
                sim_queue_size(sim->queue));
}

/* ------------------------------------------------------------------ */
/* packets and the network                                            */

sim_packet_t *sim_packet_new(uint32_t type, uint32_t from, uint32_t to)
{
    sim_packet_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->type = type;
    p->from = from;
    p->to = to;
    return p;
}

void sim_packet_unref(sim_packet_t **packet_p)
{
    if (!packet_p || !*packet_p)
        return;
    sim_packet_t *p = *packet_p;
    *packet_p = NULL;
    if (--p->refs > 0)
        return;
    if (p->obj && p->obj_free)
        p->obj_free(p->obj);
    if (p->data_free)
        p->data_free(p->data);
    else
        free(p->data);
    free(p);
}

static double s_unit_open(rng_t *rng)
{
    return 1.0 - rng_unit(rng); /* (0, 1] */
}

static uint64_t s_latency(sim_t *sim, uint32_t from, uint32_t to)
{
    uint64_t h = rng_mix64(sim->link_salt ^ (((uint64_t) from << 32) | to));
    double link = 0.5 + 1.5 * (double) (h >> 11) * 0x1.0p-53;
    double u1 = s_unit_open(&sim->rng_latency), u2 = rng_unit(&sim->rng_latency);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * S_PI * u2);
    if (z > 6.0)
        z = 6.0;
    double ms = sim->net.base_ms * link + sim->net.median_ms * link * exp(sim->net.sigma * z);
    return (uint64_t) (ms + 0.5);
}

void sim_send(sim_t *sim, sim_packet_t *p)
{
    sim->stats.msgs_sent++;
    sim->stats.bytes_sent += p->len;
    if (p->from >= sim->n || p->to >= sim->n) {
        sim->stats.dropped_unknown++;
        sim_packet_unref(&p);
        return;
    }
    if (sim->nodes[p->from].group != sim->nodes[p->to].group) {
        sim->stats.dropped_partition++;
        sim_packet_unref(&p);
        return;
    }
    int copies = 1;
    if (sim->dup > 0 && rng_unit(&sim->rng_loss) < sim->dup) {
        copies = 2;
        sim->stats.duplicated++;
    }
    for (int c = 0; c < copies; c++) {
        if (sim->loss > 0 && (!sim->cfg.loss_gossip_only || p->type == WIRE_GOSSIP) &&
            rng_unit(&sim->rng_loss) < sim->loss) {
            sim->stats.dropped_loss++;
            continue;
        }
        uint64_t at = sim->now + s_latency(sim, p->from, p->to);
        if (sim->reorder > 0 && rng_unit(&sim->rng_latency) < sim->reorder) {
            at += rng_below(&sim->rng_latency, sim->net.reorder_max_ms + 1);
            sim->stats.reordered++;
        }
        p->refs++;
        if (sim_queue_push(sim->queue, at, SIM_EV_DELIVER, p->to, 0, p) != 0) {
            p->refs--;
            s_error(sim, "event queue full (%zu events)", sim_queue_size(sim->queue));
        }
    }
    sim_packet_unref(&p);
}

void sim_set_impairments(sim_t *sim, double loss, double dup, double reorder)
{
    sim->loss = loss;
    sim->dup = dup;
    sim->reorder = reorder;
}

/* When a slow node gets to an input due at t: after a random lag, and not
 * before the inputs it already has (in order). */
static uint64_t s_slow_at(sim_t *sim, sim_node_t *node, uint64_t t)
{
    uint64_t at = t + rng_below(&sim->rng_slow, sim->slow_lag_max + 1);
    if (at < node->busy_until)
        at = node->busy_until;
    node->busy_until = at;
    return at;
}

/* ------------------------------------------------------------------ */
/* nodes                                                              */

static uint64_t s_next_deadline(const sim_t *sim, const sim_node_t *node)
{
    uint64_t d = SIM_NEVER;
    for (uint32_t i = 0; i < sim->n_machines; i++) {
        if (!node->state[i])
            continue;
        uint64_t m = sim->machines[i]->next_deadline(node->state[i]);
        if (m < d)
            d = m;
    }
    return d;
}

static void s_schedule_tick(sim_t *sim, sim_node_t *node, uint64_t due, uint64_t not_before)
{
    node->tick_due = due;
    uint64_t at = due < not_before ? not_before : due;
    if (node->slow)
        at = s_slow_at(sim, node, at);
    node->tick_at = at;
    s_push(sim, at, SIM_EV_TICK, node->index, node->gen, NULL);
}

static void s_notify_view(sim_t *sim, sim_node_t *node)
{
    if (!node->view_dirty)
        return;
    node->view_dirty = false;
    for (uint32_t i = 0; i < sim->n_machines && node->up; i++)
        if (node->state[i] && sim->machines[i]->view_changed)
            sim->machines[i]->view_changed(sim, node, node->state[i], sim->now);
}

void sim_node_reschedule(sim_t *sim, sim_node_t *node)
{
    if (!node->up)
        return;
    s_notify_view(sim, node);
    uint64_t d = s_next_deadline(sim, node);
    if (d == SIM_NEVER || d >= node->tick_due)
        return;
    s_schedule_tick(sim, node, d, sim->now);
}

static void s_on_tick(sim_t *sim, const sim_event_t *ev)
{
    sim_node_t *node = &sim->nodes[ev->node];
    if (!node->up || ev->arg != node->gen || ev->at != node->tick_at)
        return; /* stale */
    node->tick_due = node->tick_at = SIM_NEVER;
    sim->stats.ticks++;
    for (uint32_t i = 0; i < sim->n_machines && node->up; i++) {
        if (node->state[i] && sim->machines[i]->next_deadline(node->state[i]) <= sim->now)
            sim->machines[i]->tick(sim, node, node->state[i], sim->now);
    }
    if (!node->up)
        return;
    s_notify_view(sim, node);
    uint64_t d = s_next_deadline(sim, node);
    if (d == SIM_NEVER)
        return;
    if (d <= sim->now) {
        /* A machine still due after its tick: try again a millisecond later
         * rather than spinning at one instant. */
        sim->stats.busy_ticks++;
        s_schedule_tick(sim, node, d, sim->now + 1);
        return;
    }
    s_schedule_tick(sim, node, d, sim->now);
}

static void s_schedule_crash(sim_t *sim, sim_node_t *node)
{
    if (sim->cfg.crash_rate <= 0 || sim->settling)
        return;
    double mean_ms = 3600e3 / sim->cfg.crash_rate;
    double wait = -log(s_unit_open(&sim->rng_faults)) * mean_ms;
    if (wait > 1e15)
        wait = 1e15;
    s_push(sim, sim->now + 1 + (uint64_t) wait, SIM_EV_CRASH, node->index, node->gen, NULL);
}

static int s_boot(sim_t *sim, sim_node_t *node)
{
    node->up = true;
    node->held = false;
    node->up_since = sim->now;
    node->busy_until = 0;
    node->tick_due = node->tick_at = SIM_NEVER;
    node->boots++;
    sim_trace(sim, ((uint64_t) 0xB007 << 48) ^ ((uint64_t) node->index << 16) ^ node->boots);
    for (uint32_t i = 0; i < sim->n_machines; i++) {
        int rc = sim->machines[i]->boot(sim, node, &node->state[i], sim->now);
        if (rc != 0) {
            s_error(sim, "node %s: %s cannot boot: %s", node->name, sim->machines[i]->name,
                    gg_strerror(rc));
            return rc;
        }
    }
    sim_node_reschedule(sim, node);
    s_schedule_crash(sim, node);
    return 0;
}

void sim_crash(sim_t *sim, sim_node_t *node)
{
    if (!node->up)
        return;
    sim_membership_collect(sim, node);
    for (uint32_t i = sim->n_machines; i > 0; i--)
        if (node->state[i - 1])
            sim->machines[i - 1]->halt(sim, node, &node->state[i - 1]);
    node->up = false;
    node->view_dirty = false;
    node->gen++;
    node->tick_due = node->tick_at = SIM_NEVER;
    node->down_since = sim->now;
    sim->stats.node_ms += sim->now - node->up_since;
    sim->stats.crashes++;
    sim_trace(sim, ((uint64_t) 0xC4A5 << 48) ^ node->index);
    if (sim->cfg.verbose)
        fprintf(stderr, "sim: t=%llums crash %s\n", (unsigned long long) sim->now, node->name);
}

int sim_restart(sim_t *sim, sim_node_t *node)
{
    if (node->up)
        return 0;
    if (!node->held)
        sim->stats.restarts++;
    if (sim->cfg.verbose)
        fprintf(stderr, "sim: t=%llums restart %s\n", (unsigned long long) sim->now, node->name);
    return s_boot(sim, node);
}

static void s_on_crash(sim_t *sim, const sim_event_t *ev)
{
    sim_node_t *node = &sim->nodes[ev->node];
    if (!node->up || ev->arg != node->gen || sim->settling)
        return;
    sim_crash(sim, node);
    double mean = (double) (sim->cfg.downtime_ms ? sim->cfg.downtime_ms : sim->net.downtime_ms);
    double down = -log(s_unit_open(&sim->rng_faults)) * mean;
    if (down < sim->profile.probe_interval_ms)
        down = sim->profile.probe_interval_ms;
    if (down > 1e12)
        down = 1e12;
    s_push(sim, sim->now + (uint64_t) down, SIM_EV_RESTART, node->index, node->gen, NULL);
}

static void s_on_restart(sim_t *sim, const sim_event_t *ev)
{
    sim_node_t *node = &sim->nodes[ev->node];
    if (node->up || node->held || ev->arg != node->gen)
        return;
    (void) sim_restart(sim, node);
}

/* ------------------------------------------------------------------ */
/* partitions                                                         */

static void s_on_split(sim_t *sim, const sim_event_t *ev)
{
    const sim_partition_t *pt = &sim->cfg.partitions[ev->arg];
    if (sim->settling)
        return;
    if (pt->fraction_milli) {
        uint32_t cut = (uint32_t) (((uint64_t) sim->n * pt->fraction_milli + 500) / 1000);
        if (cut == 0)
            cut = 1;
        if (cut >= sim->n)
            cut = sim->n - 1;
        /* A random subset of `cut` nodes: partial Fisher-Yates over indexes. */
        uint32_t *perm = malloc((size_t) sim->n * sizeof *perm);
        if (!perm) {
            s_error(sim, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < sim->n; i++) {
            perm[i] = i;
            sim->nodes[i].group = 0;
        }
        for (uint32_t i = 0; i < cut; i++) {
            uint32_t j = i + (uint32_t) rng_below(&sim->rng_faults, sim->n - i);
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            sim->nodes[perm[i]].group = 1;
        }
        free(perm);
    } else {
        for (uint32_t i = 0; i < sim->n; i++)
            sim->nodes[i].group = (uint32_t) rng_below(&sim->rng_faults, pt->groups);
    }
    sim->split = true;
    uint64_t h = 0;
    for (uint32_t i = 0; i < sim->n; i++)
        h = rng_mix64(h ^ sim->nodes[i].group);
    sim_trace(sim, ((uint64_t) 0x5B17 << 48) ^ h);
    sim->stats.splits++;
    if (sim->cfg.verbose) {
        fprintf(stderr, "sim: t=%llums split:", (unsigned long long) sim->now);
        for (uint32_t i = 0; i < sim->n && i < 64; i++)
            fprintf(stderr, " %s/%u", sim->nodes[i].name, sim->nodes[i].group);
        fprintf(stderr, "\n");
    }
}

static void s_heal(sim_t *sim)
{
    if (!sim->split)
        return;
    for (uint32_t i = 0; i < sim->n; i++)
        sim->nodes[i].group = 0;
    sim->split = false;
    sim->healed_at = sim->now;
    sim_trace(sim, (uint64_t) 0x4EA1 << 48);
    sim->stats.heals++;
    if (sim->cfg.verbose)
        fprintf(stderr, "sim: t=%llums heal\n", (unsigned long long) sim->now);
}

/* ------------------------------------------------------------------ */
/* delivery                                                           */

static void s_on_deliver(sim_t *sim, const sim_event_t *ev)
{
    sim_packet_t *p = ev->ptr;
    sim_node_t *to = &sim->nodes[p->to];
    if (!to->up) {
        sim->stats.dropped_down++;
        goto out;
    }
    if (sim->nodes[p->from].group != to->group) {
        sim->stats.dropped_partition++;
        goto out;
    }
    if (to->slow && !(ev->arg & S_LAGGED)) {
        /* Handled late: the packet keeps its reference in the new event. */
        s_push(sim, s_slow_at(sim, to, sim->now), SIM_EV_DELIVER, to->index, S_LAGGED, p);
        return;
    }
    sim->stats.msgs_delivered++;
    if (p->type < 32)
        sim->stats.by_type[p->type]++;
    sim_trace(sim, sim->now);
    sim_trace(sim, ((uint64_t) p->from << 32) | p->to);
    sim_trace(sim, ((uint64_t) p->type << 32) ^ (p->len ? p->len : p->items));
    for (uint32_t i = 0; i < sim->n_machines; i++) {
        if (!sim->machines[i]->accepts(p->type))
            continue;
        if (to->state[i])
            sim->machines[i]->deliver(sim, to, to->state[i], sim->now, p);
        sim_node_reschedule(sim, to);
        goto out;
    }
    sim->stats.dropped_unknown++;
out:
    sim_packet_unref(&p);
}

/* ------------------------------------------------------------------ */
/* the run                                                            */

static void s_start_settle(sim_t *sim)
{
    if (sim->settling)
        return;
    sim->settling = true;
    sim->settle_start = sim->now;
    s_heal(sim);
    sim_set_impairments(sim, 0, 0, 0);
    for (uint32_t i = 0; i < sim->n && !sim->error; i++) {
        sim_node_t *node = &sim->nodes[i];
        if (!node->up) {
            if (sim_restart(sim, node) != 0)
                return;
        }
    }
    sim_trace(sim, (uint64_t) 0x5E77 << 48);
    s_push(sim, sim->now + sim->settle_ms, SIM_EV_SETTLE_END, 0, 0, NULL);
    if (sim->cfg.verbose)
        fprintf(stderr, "sim: t=%llums settle phase\n", (unsigned long long) sim->now);
}

static double s_wall_seconds(void);

static void s_on_check(sim_t *sim)
{
    bool converged = sim_check_periodic(sim);
    if (sim->stop)
        return;
    sim->views_ok = converged;
    for (uint32_t i = 0; i < sim->n_machines && converged; i++)
        if (sim->machines[i]->settled && !sim->machines[i]->settled(sim, sim->shared[i]))
            converged = false;
    if (sim->stop)
        return;
    if (!sim->formed_at && !sim->settling && sim_views_converged(sim)) {
        sim->formed_at = sim->now;
        sim->wall_formed = s_wall_seconds(); /* reporting only */
    }
    if (sim->settling && converged) {
        sim->converged = true;
        sim->converged_at = sim->now;
        sim->stop = true;
        return;
    }
    if (!sim->settling && sim->exp && sim_exp_step(sim->exp, sim))
        s_start_settle(sim);
    s_push(sim, sim->now + sim->check_interval, SIM_EV_CHECK, 0, 0, NULL);
}

static void s_dispatch(sim_t *sim, const sim_event_t *ev)
{
    switch (ev->kind) {
    case SIM_EV_DELIVER: s_on_deliver(sim, ev); break;
    case SIM_EV_TICK: s_on_tick(sim, ev); break;
    case SIM_EV_CRASH: s_on_crash(sim, ev); break;
    case SIM_EV_RESTART: s_on_restart(sim, ev); break;
    case SIM_EV_SPLIT: s_on_split(sim, ev); break;
    case SIM_EV_HEAL:
        if (!sim->settling)
            s_heal(sim);
        break;
    case SIM_EV_CHECK: s_on_check(sim); break;
    case SIM_EV_SETTLE: s_start_settle(sim); break;
    case SIM_EV_SETTLE_END:
        if (!sim->converged) {
            if (!sim->views_ok)
                sim_check_settle_failed(sim);
            for (uint32_t i = 0; i < sim->n_machines && sim->views_ok; i++)
                if (sim->machines[i]->settle_failed)
                    sim->machines[i]->settle_failed(sim, sim->shared[i]);
            if (sim->n_violations == 0)
                sim_violation(sim, "not-settled", -1, -1,
                              "the settle phase ended before every machine settled");
            sim->stop = true;
        }
        break;
    default: s_error(sim, "unknown event kind %u", ev->kind); break;
    }
}

static uint64_t s_concern(uint64_t seed, uint64_t concern)
{
    uint64_t st = seed ^ (concern * 0xD1B54A32D192ED03ull);
    return rng_splitmix64(&st);
}

static int s_ids_build(sim_t *sim)
{
    uint32_t cap = 16;
    while (cap < sim->n * 2)
        cap *= 2;
    sim->ids = calloc(cap, sizeof *sim->ids);
    if (!sim->ids)
        return GG_ENOMEM;
    sim->ids_cap = cap;
    for (uint32_t n = 0; n < sim->n; n++) {
        if (sim_node_by_id(sim, sim->nodes[n].id))
            return GG_EEXIST; /* two equal random ids: impossible in practice */
        uint32_t i = (uint32_t) rng_mix64(s_load64(sim->nodes[n].id)) & (cap - 1);
        while (sim->ids[i])
            i = (i + 1) & (cap - 1);
        sim->ids[i] = n + 1;
    }
    return 0;
}

static int s_setup(sim_t *sim, const sim_config_t *cfg)
{
    sim->cfg = *cfg;
    if (membership_profile_get(cfg->profile, &sim->profile) != 0)
        return GG_EINVAL;
    s_netmodel(cfg->profile, &sim->net);
    sim->n = cfg->nodes;
    sim->check_interval = sim->profile.probe_interval_ms;
    sim->settle_ms = cfg->settle_ms ? cfg->settle_ms : s_default_settle(&sim->profile, sim->n);
    sim->susp_max_ms = s_suspicion_max(&sim->profile, sim->n);
    sim->slow_lag_max =
        (uint64_t) ((cfg->slow_factor - 1.0) * (double) sim->profile.probe_timeout_ms / 2.0);
    rng_seed(&sim->rng_latency, s_concern(cfg->seed, S_RNG_LATENCY));
    rng_seed(&sim->rng_loss, s_concern(cfg->seed, S_RNG_LOSS));
    rng_seed(&sim->rng_faults, s_concern(cfg->seed, S_RNG_FAULTS));
    rng_seed(&sim->rng_slow, s_concern(cfg->seed, S_RNG_SLOW));
    rng_seed(&sim->rng_seeds, s_concern(cfg->seed, S_RNG_SEEDS));
    sim->link_salt = s_concern(cfg->seed, S_RNG_LINKS);
    sim->machines[0] = &sim_membership_ops;
    sim->n_machines = 1;
    if (cfg->fleet)
        sim->machines[sim->n_machines++] = &sim_fleet_ops;
    for (uint32_t i = 0; i < sim->n_machines && !cfg->settle_ms; i++)
        if (sim->machines[i]->settle_extra_ms)
            sim->settle_ms += sim->machines[i]->settle_extra_ms(cfg);

    sim->queue = sim_queue_new(SIM_MAX_EVENTS);
    sim->nodes = calloc(sim->n, sizeof *sim->nodes);
    if (!sim->queue || !sim->nodes)
        return GG_ENOMEM;
    uint64_t id_state = s_concern(cfg->seed, S_RNG_IDS);
    for (uint32_t i = 0; i < sim->n; i++) {
        sim_node_t *node = &sim->nodes[i];
        node->index = i;
        for (int b = 0; b < MEMBER_ID_LEN; b += 8) {
            uint64_t v = rng_splitmix64(&id_state);
            memcpy(node->id + b, &v, 8);
        }
        snprintf(node->name, sizeof node->name, "n%u", i);
        snprintf(node->address, sizeof node->address, "tcp://n%u:7700", i);
        node->tick_due = node->tick_at = SIM_NEVER;
    }
    int rc = s_ids_build(sim);
    if (rc != 0)
        return rc;
    sim->n_seeds = sim->n < SIM_MAX_SEEDS ? sim->n : SIM_MAX_SEEDS;
    for (uint32_t i = 0; i < sim->n_seeds; i++)
        snprintf(sim->seeds[i], sizeof sim->seeds[i], "%s", sim->nodes[i].address);
    /* Slow nodes: a random subset (faults concern). */
    for (uint32_t k = 0; k < cfg->slow && cfg->slow_factor > 1.0;) {
        sim_node_t *node = &sim->nodes[rng_below(&sim->rng_faults, sim->n)];
        if (!node->slow) {
            node->slow = true;
            k++;
        }
    }
    if (cfg->experiment != SIM_EXP_NONE) {
        sim->exp = sim_exp_new(sim, cfg);
        if (!sim->exp)
            return GG_ENOMEM;
        /* Experiments measure on a clean network first: they switch the
         * configured impairments on themselves. */
        sim_set_impairments(sim, 0, 0, 0);
    } else {
        sim_set_impairments(sim, cfg->loss, cfg->dup, cfg->reorder);
    }
    for (uint32_t i = 0; i < sim->n_machines; i++) {
        if (!sim->machines[i]->world_new)
            continue;
        rc = sim->machines[i]->world_new(sim, &sim->shared[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void s_teardown(sim_t *sim)
{
    sim_event_t ev;
    while (sim->queue && sim_queue_pop(sim->queue, &ev)) {
        if (ev.kind == SIM_EV_DELIVER) {
            sim_packet_t *p = ev.ptr;
            sim_packet_unref(&p);
        }
    }
    sim_queue_destroy(&sim->queue);
    for (uint32_t i = 0; sim->nodes && i < sim->n; i++) {
        sim_node_t *node = &sim->nodes[i];
        for (uint32_t m = sim->n_machines; m > 0; m--)
            if (node->state[m - 1])
                sim->machines[m - 1]->halt(sim, node, &node->state[m - 1]);
        for (uint32_t m = 0; m < sim->n_machines; m++)
            if (node->disk.machine[m] && sim->machines[m]->disk_free)
                sim->machines[m]->disk_free(node->disk.machine[m]);
        free(node->disk.members);
    }
    for (uint32_t m = 0; m < sim->n_machines; m++)
        if (sim->machines[m]->world_free)
            sim->machines[m]->world_free(&sim->shared[m]);
    sim_exp_destroy(&sim->exp);
    free(sim->nodes);
    free(sim->ids);
}

static double s_wall_seconds(void)
{
    /* Reporting only: the wall clock never feeds the simulation. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void s_results(sim_t *sim, sim_result_t *res)
{
    for (uint32_t i = 0; i < sim->n; i++) {
        sim_node_t *node = &sim->nodes[i];
        if (node->up) {
            sim_membership_collect(sim, node);
            sim->stats.node_ms += sim->now - node->up_since;
        }
    }
    bool agree = false;
    res->distinct_checksums = sim_view_checksums(sim, &agree);
    res->trace = sim->trace;
    res->end_ms = sim->now;
    res->settle_start = sim->settle_start;
    res->converged_s =
        sim->converged ? (double) (sim->converged_at - sim->settle_start) / 1000.0 : -1.0;
    res->formed_s = sim->formed_at ? (double) sim->formed_at / 1000.0 : -1.0;
    res->formed_wall_s = sim->formed_at ? sim->wall_formed - sim->wall_start : -1.0;
    double wall_after = s_wall_seconds() - sim->wall_formed;
    if (sim->formed_at && sim->now > sim->formed_at && wall_after > 0)
        res->steady_speed = (double) (sim->now - sim->formed_at) / 1000.0 / wall_after;
    res->stats = sim->stats;
    res->n_violations = sim->n_violations;
    if (sim->n_violations)
        res->violation = sim->violations[0];
    res->error = sim->error;
    snprintf(res->error_text, sizeof res->error_text, "%s", sim->error_text);
    res->ok = !sim->error && sim->n_violations == 0;
    res->queue_high_water = sim_queue_high_water(sim->queue);
    if (sim->exp)
        sim_exp_result(sim->exp, &res->exp);
    /* Ownership over the first up node's final view. */
    sim_node_t *obs = NULL;
    for (uint32_t i = 0; i < sim->n && !obs; i++)
        if (sim->nodes[i].up)
            obs = &sim->nodes[i];
    if (obs && sim->cfg.targets > 0) {
        uint64_t *keys = sim_target_keys(sim->cfg.targets);
        /* The fleet core's own rule when it runs, else rendezvous. */
        if (keys &&
            (!sim->cfg.fleet || sim_fleet_ownership(sim, obs, keys, sim->cfg.targets, NULL,
                                                    &res->owners, &res->owned_max_mean) != 0))
            (void) sim_ownership(sim, obs, keys, sim->cfg.targets, NULL, &res->owners,
                                 &res->owned_max_mean);
        free(keys);
    }
}

int sim_run(const sim_config_t *cfg, sim_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->converged_s = -1.0;
    char why[160];
    if (sim_config_check(cfg, why, sizeof why) != 0) {
        res->error = true;
        snprintf(res->error_text, sizeof res->error_text, "%s", why);
        return GG_EINVAL;
    }
    sim_t *sim = calloc(1, sizeof *sim);
    if (!sim)
        return GG_ENOMEM;
    double wall0 = s_wall_seconds();
    sim->wall_start = wall0;
    int rc = s_setup(sim, cfg);
    if (rc != 0) {
        res->error = true;
        snprintf(res->error_text, sizeof res->error_text, "setup: %s", gg_strerror(rc));
        goto out;
    }
    for (uint32_t i = 0; i < cfg->n_partitions; i++) {
        s_push(sim, cfg->partitions[i].split_ms, SIM_EV_SPLIT, 0, i, NULL);
        s_push(sim, cfg->partitions[i].heal_ms, SIM_EV_HEAL, 0, i, NULL);
    }
    s_push(sim, cfg->duration_ms, SIM_EV_SETTLE, 0, 0, NULL);
    s_push(sim, sim->check_interval, SIM_EV_CHECK, 0, 0, NULL);
    for (uint32_t i = 0; i < sim->n && !sim->error; i++) {
        if (sim->nodes[i].held)
            continue;
        (void) s_boot(sim, &sim->nodes[i]);
    }
    sim_event_t ev;
    while (!sim->stop && sim_queue_pop(sim->queue, &ev)) {
        sim->now = ev.at;
        sim->stats.events++;
        s_dispatch(sim, &ev);
    }
    s_results(sim, res);
    for (uint32_t i = 0; i < sim->n_machines; i++)
        if (sim->machines[i]->results)
            sim->machines[i]->results(sim, sim->shared[i], res);
    res->wall_s = s_wall_seconds() - wall0;
out:
    s_teardown(sim);
    free(sim);
    return 0;
}
