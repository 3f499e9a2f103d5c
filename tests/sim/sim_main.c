/*
 * sim_main.c: gaggle-sim's command line -- one run, a seed sweep, the
 * figures as a table or JSON.
 *
 * Any numeric scenario option may be a range "A..B" (e.g. --nodes 5..12,
 * --loss 0..0.1): each seed then draws its own value from a scenario PRNG
 * seeded by that seed, so one seed always means one concrete scenario, and
 * the replay command printed for it names the values drawn. A sweep
 * (--sweep N) runs seeds --seed .. --seed+N-1; where it is given no value it
 * draws loss, duplication, reordering, crashes, a slow node and a partition
 * at random. Every 25th seed of a sweep is run twice and must give the same
 * trace hash. --jobs N forks N workers that share the seeds (each seed's run
 * is the same whichever process runs it).
 *
 * Exit status: 0 all invariants held, 1 an invariant was violated (the
 * invariant, nodes, virtual time and replay command are printed), 2 bad
 * usage, 3 a run could not be carried out.
 */
#include "sim.h"

#include "gg_error.h"
#include "units.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_DETERMINISM_EVERY 25
#define S_MAX_SWEEP         1000000
#define S_MAX_JOBS          64
#define S_MAX_WORKER_OUTPUT (64u << 20) /* failures a sweep worker reports */

typedef struct {
    double lo, hi;
    bool given;
} s_range_t;

typedef struct {
    sim_config_t base;
    s_range_t nodes, loss, dup, reorder, crash_rate, slow;
    bool random_partition, partition_given, codec_given, targets_given, fleet_given;
    uint64_t sweep;
    uint32_t jobs;
    bool json;
    bool self_test;
} s_opts_t;

static void s_usage(FILE *f)
{
    fprintf(f, "usage: gaggle-sim [options]\n"
               "  --seed N             run seed (default 1; first seed of a sweep)\n"
               "  --nodes N|A..B       fleet size (default 10)\n"
               "  --targets N          the plan's targets (default 200), or the targets of the\n"
               "                       ownership figures of an experiment (default 10000)\n"
               "  --fleet on|off       run the fleet core: a plan applied on one node, executed\n"
               "                       by simulated workers (default on; off for disseminate\n"
               "                       and detect)\n"
               "  --workers N          executions at once per node (default 4)\n"
               "  --exec D             mean execution time (default 100ms test, 1s lan, 3s wan)\n"
               "  --fail-rate P        probability that an attempt fails (default 0.1)\n"
               "  --attempts N         attempts per target before it fails (default 3)\n"
               "  --plan-at D          when the plan is applied (default 5 probe intervals)\n"
               "  --load-cap F         bounded load: nobody owns more than F x the mean (1..100;\n"
               "                       default 0: plain rendezvous)\n"
               "  --push-eager N       peers of a push round sent the records; the others get\n"
               "                       an announcement (default 3; 0: records to every peer)\n"
               "  --profile P          lan, wan or test: timings and network (default lan)\n"
               "  --duration D         chaos phase, e.g. 60s, 10m, 1h (default 60s)\n"
               "  --settle D           longest settle phase (default from the profile)\n"
               "  --loss P|A..B        message loss probability\n"
               "  --loss-on all|gossip which messages are lost (default all; gossip: only\n"
               "                       piggyback-only GOSSIP messages, as Serf's model)\n"
               "  --dup P|A..B         duplication probability\n"
               "  --reorder P|A..B     probability of an extra random delay\n"
               "  --partition T1:T2:F  split at T1, heal at T2: fraction F cut off, or gK for\n"
               "                       a random K-way split (repeatable); 'random' in sweeps\n"
               "  --crash-rate R|A..B  crashes per node-hour (restart after --downtime)\n"
               "  --downtime D         mean downtime of a crashed node (default from profile)\n"
               "  --slow N|A..B        slow nodes (inputs handled late, in order)\n"
               "  --slow-factor F      how slow (default 5)\n"
               "  --codec MODE         verify (default up to 100 nodes), on (default above), off\n"
               "  --experiment E       none, disseminate, detect or join\n"
               "  --trials N           experiment trials (default 5)\n"
               "  --fault F            inject a fault the checker must catch: mute-refutations,\n"
               "                       blind-fleet, hang-runs (repeatable)\n"
               "  --sweep N            run N seeds, report failures with replay commands\n"
               "  --jobs N             sweep in N worker processes (default 1)\n"
               "  --json               JSON instead of the table\n"
               "  --verbose            print crashes, restarts, splits and heals\n"
               "  --self-test          check the simulator itself (queue, replay commands)\n");
}

/* ---- parsing ---- */

static int s_parse_double(const char *text, double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!text[0] || *end || !isfinite(v))
        return GG_EINVAL;
    *out = v;
    return 0;
}

static int s_parse_range(const char *text, s_range_t *r)
{
    char buf[64];
    if (strlen(text) >= sizeof buf)
        return GG_EINVAL;
    snprintf(buf, sizeof buf, "%s", text);
    char *dots = strstr(buf, "..");
    if (dots) {
        *dots = '\0';
        if (s_parse_double(buf, &r->lo) || s_parse_double(dots + 2, &r->hi) || r->hi < r->lo)
            return GG_EINVAL;
    } else {
        if (s_parse_double(buf, &r->lo))
            return GG_EINVAL;
        r->hi = r->lo;
    }
    /* Every ranged option is a non-negative count, rate or probability. */
    if (r->lo < 0 || r->hi > 1e9)
        return GG_EINVAL;
    r->given = true;
    return 0;
}

static int s_parse_u64(const char *text, uint64_t *out)
{
    char *end = NULL;
    if (!text[0] || text[0] == '-')
        return GG_EINVAL;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end)
        return GG_EINVAL;
    *out = v;
    return 0;
}

static int s_parse_partition(const char *text, sim_partition_t *pt)
{
    char buf[96];
    if (strlen(text) >= sizeof buf)
        return GG_EINVAL;
    snprintf(buf, sizeof buf, "%s", text);
    char *a = buf, *b = strchr(a, ':');
    if (!b)
        return GG_EINVAL;
    *b++ = '\0';
    char *c = strchr(b, ':');
    if (!c)
        return GG_EINVAL;
    *c++ = '\0';
    memset(pt, 0, sizeof *pt);
    if (units_parse_duration(a, &pt->split_ms) || units_parse_duration(b, &pt->heal_ms))
        return GG_EINVAL;
    if (c[0] == 'g') {
        uint64_t k;
        if (s_parse_u64(c + 1, &k) || k < 2 || k > 16)
            return GG_EINVAL;
        pt->groups = (uint32_t) k;
        return 0;
    }
    double f;
    if (s_parse_double(c, &f) || !(f > 0.0 && f < 1.0))
        return GG_EINVAL;
    pt->fraction_milli = (uint32_t) lround(f * 1000.0);
    if (pt->fraction_milli < 1 || pt->fraction_milli > 999 ||
        fabs((double) pt->fraction_milli / 1000.0 - f) > 1e-9)
        return GG_EINVAL; /* thousandths only: the replay command is exact */
    return 0;
}

enum {
    O_SEED = 256,
    O_NODES,
    O_TARGETS,
    O_PROFILE,
    O_DURATION,
    O_SETTLE,
    O_LOSS,
    O_LOSS_ON,
    O_DUP,
    O_REORDER,
    O_PARTITION,
    O_CRASH_RATE,
    O_DOWNTIME,
    O_SLOW,
    O_SLOW_FACTOR,
    O_CODEC,
    O_EXPERIMENT,
    O_TRIALS,
    O_FAULT,
    O_SWEEP,
    O_JOBS,
    O_JSON,
    O_VERBOSE,
    O_SELF_TEST,
    O_HELP,
    O_FLEET,
    O_WORKERS,
    O_EXEC,
    O_FAIL_RATE,
    O_ATTEMPTS,
    O_PLAN_AT,
    O_LOAD_CAP,
    O_PUSH_EAGER,
};

static const struct option s_options[] = {
    {"seed", required_argument, NULL, O_SEED},
    {"nodes", required_argument, NULL, O_NODES},
    {"targets", required_argument, NULL, O_TARGETS},
    {"profile", required_argument, NULL, O_PROFILE},
    {"duration", required_argument, NULL, O_DURATION},
    {"settle", required_argument, NULL, O_SETTLE},
    {"loss", required_argument, NULL, O_LOSS},
    {"loss-on", required_argument, NULL, O_LOSS_ON},
    {"dup", required_argument, NULL, O_DUP},
    {"reorder", required_argument, NULL, O_REORDER},
    {"partition", required_argument, NULL, O_PARTITION},
    {"crash-rate", required_argument, NULL, O_CRASH_RATE},
    {"downtime", required_argument, NULL, O_DOWNTIME},
    {"slow", required_argument, NULL, O_SLOW},
    {"slow-factor", required_argument, NULL, O_SLOW_FACTOR},
    {"codec", required_argument, NULL, O_CODEC},
    {"experiment", required_argument, NULL, O_EXPERIMENT},
    {"trials", required_argument, NULL, O_TRIALS},
    {"fault", required_argument, NULL, O_FAULT},
    {"sweep", required_argument, NULL, O_SWEEP},
    {"jobs", required_argument, NULL, O_JOBS},
    {"json", no_argument, NULL, O_JSON},
    {"verbose", no_argument, NULL, O_VERBOSE},
    {"self-test", no_argument, NULL, O_SELF_TEST},
    {"help", no_argument, NULL, O_HELP},
    {"fleet", required_argument, NULL, O_FLEET},
    {"workers", required_argument, NULL, O_WORKERS},
    {"exec", required_argument, NULL, O_EXEC},
    {"fail-rate", required_argument, NULL, O_FAIL_RATE},
    {"attempts", required_argument, NULL, O_ATTEMPTS},
    {"plan-at", required_argument, NULL, O_PLAN_AT},
    {"load-cap", required_argument, NULL, O_LOAD_CAP},
    {"push-eager", required_argument, NULL, O_PUSH_EAGER},
    {NULL, 0, NULL, 0},
};

/* Returns 0, 1 (help printed) or GG_EINVAL (message printed). */
static int s_parse(int argc, char **argv, s_opts_t *o)
{
    memset(o, 0, sizeof *o);
    sim_config_defaults(&o->base);
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", s_options, NULL)) != -1) {
        const char *v = optarg;
        int rc = 0;
        uint64_t u = 0;
        switch (c) {
        case O_SEED: rc = s_parse_u64(v, &o->base.seed); break;
        case O_NODES: rc = s_parse_range(v, &o->nodes); break;
        case O_TARGETS:
            rc = s_parse_u64(v, &u);
            o->base.targets = u > SIM_MAX_TARGETS ? SIM_MAX_TARGETS + 1 : (uint32_t) u;
            o->targets_given = true;
            break;
        case O_FLEET:
            o->fleet_given = true;
            if (strcmp(v, "on") == 0)
                o->base.fleet = true;
            else if (strcmp(v, "off") == 0)
                o->base.fleet = false;
            else
                rc = GG_EINVAL;
            break;
        case O_WORKERS:
            rc = s_parse_u64(v, &u);
            o->base.workers = u > 100000 ? 100000 : (uint32_t) u;
            break;
        case O_EXEC: rc = units_parse_duration(v, &o->base.exec_ms); break;
        case O_FAIL_RATE: rc = s_parse_double(v, &o->base.fail_rate); break;
        case O_ATTEMPTS:
            rc = s_parse_u64(v, &u);
            o->base.attempts = u > 100000 ? 100000 : (uint32_t) u;
            break;
        case O_PLAN_AT: rc = units_parse_duration(v, &o->base.plan_at_ms); break;
        case O_PUSH_EAGER:
            rc = s_parse_u64(v, &u);
            if (rc == 0 && u > 64)
                rc = GG_EINVAL;
            o->base.push_eager = (int32_t) u;
            break;
        case O_LOAD_CAP: {
            double cap = 0;
            rc = s_parse_double(v, &cap);
            if (rc == 0 && cap != 0 && !(cap >= 1.0 && cap <= 100.0))
                rc = GG_EINVAL;
            o->base.bounded_load_milli = (uint32_t) llround(cap * 1000.0);
            break;
        }
        case O_PROFILE:
            if (strlen(v) >= sizeof o->base.profile)
                rc = GG_EINVAL;
            else
                snprintf(o->base.profile, sizeof o->base.profile, "%s", v);
            break;
        case O_DURATION: rc = units_parse_duration(v, &o->base.duration_ms); break;
        case O_SETTLE: rc = units_parse_duration(v, &o->base.settle_ms); break;
        case O_LOSS: rc = s_parse_range(v, &o->loss); break;
        case O_LOSS_ON:
            if (strcmp(v, "all") == 0)
                o->base.loss_gossip_only = false;
            else if (strcmp(v, "gossip") == 0)
                o->base.loss_gossip_only = true;
            else
                rc = GG_EINVAL;
            break;
        case O_DUP: rc = s_parse_range(v, &o->dup); break;
        case O_REORDER: rc = s_parse_range(v, &o->reorder); break;
        case O_CRASH_RATE: rc = s_parse_range(v, &o->crash_rate); break;
        case O_DOWNTIME: rc = units_parse_duration(v, &o->base.downtime_ms); break;
        case O_SLOW: rc = s_parse_range(v, &o->slow); break;
        case O_SLOW_FACTOR: rc = s_parse_double(v, &o->base.slow_factor); break;
        case O_PARTITION:
            o->partition_given = true;
            if (strcmp(v, "random") == 0) {
                o->random_partition = true;
            } else if (strcmp(v, "none") == 0) {
                o->random_partition = false;
            } else if (o->base.n_partitions >= SIM_MAX_PARTITIONS) {
                rc = GG_EINVAL;
            } else {
                rc = s_parse_partition(v, &o->base.partitions[o->base.n_partitions++]);
            }
            break;
        case O_CODEC:
            o->codec_given = true;
            if (strcmp(v, "verify") == 0)
                o->base.codec = SIM_CODEC_VERIFY;
            else if (strcmp(v, "on") == 0)
                o->base.codec = SIM_CODEC_ON;
            else if (strcmp(v, "off") == 0)
                o->base.codec = SIM_CODEC_OFF;
            else
                rc = GG_EINVAL;
            break;
        case O_EXPERIMENT:
            if (strcmp(v, "none") == 0)
                o->base.experiment = SIM_EXP_NONE;
            else if (strcmp(v, "disseminate") == 0)
                o->base.experiment = SIM_EXP_DISSEMINATE;
            else if (strcmp(v, "detect") == 0)
                o->base.experiment = SIM_EXP_DETECT;
            else if (strcmp(v, "join") == 0)
                o->base.experiment = SIM_EXP_JOIN;
            else
                rc = GG_EINVAL;
            break;
        case O_TRIALS:
            rc = s_parse_u64(v, &u);
            o->base.trials = u > SIM_MAX_TRIALS ? SIM_MAX_TRIALS + 1 : (uint32_t) u;
            break;
        case O_FAULT:
            if (strcmp(v, "mute-refutations") == 0)
                o->base.faults |= SIM_FAULT_MUTE_REFUTATIONS;
            else if (strcmp(v, "blind-fleet") == 0)
                o->base.faults |= SIM_FAULT_BLIND_FLEET;
            else if (strcmp(v, "hang-runs") == 0)
                o->base.faults |= SIM_FAULT_HANG_RUNS;
            else
                rc = GG_EINVAL;
            break;
        case O_SWEEP:
            rc = s_parse_u64(v, &o->sweep);
            if (rc == 0 && (o->sweep < 1 || o->sweep > S_MAX_SWEEP))
                rc = GG_EINVAL;
            break;
        case O_JOBS:
            rc = s_parse_u64(v, &u);
            if (rc == 0 && (u < 1 || u > S_MAX_JOBS))
                rc = GG_EINVAL;
            o->jobs = (uint32_t) u;
            break;
        case O_JSON: o->json = true; break;
        case O_VERBOSE: o->base.verbose = true; break;
        case O_SELF_TEST: o->self_test = true; break;
        case O_HELP: s_usage(stdout); return 1;
        default:
            fprintf(stderr, "gaggle-sim: unknown option %s\n", argv[optind - 1]);
            return GG_EINVAL;
        }
        if (rc != 0) {
            const char *name = "?";
            for (const struct option *opt = s_options; opt->name; opt++)
                if (opt->val == c)
                    name = opt->name;
            fprintf(stderr, "gaggle-sim: bad value for --%s: %s\n", name, v ? v : "");
            return GG_EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gaggle-sim: unexpected argument %s\n", argv[optind]);
        return GG_EINVAL;
    }
    if (o->sweep) {
        /* A sweep explores: whatever is not fixed is drawn per seed. */
        if (!o->loss.given)
            o->loss = (s_range_t){0, 0.1, true};
        if (!o->dup.given)
            o->dup = (s_range_t){0, 0.05, true};
        if (!o->reorder.given)
            o->reorder = (s_range_t){0, 0.2, true};
        if (!o->crash_rate.given)
            o->crash_rate = (s_range_t){0, 240, true};
        if (!o->slow.given)
            o->slow = (s_range_t){0, 1, true};
        if (!o->partition_given)
            o->random_partition = true;
    }
    return 0;
}

/* ---- one seed, one scenario ---- */

static uint64_t s_draw_int(rng_t *r, const s_range_t *range, uint64_t dflt)
{
    if (!range->given)
        return dflt;
    uint64_t lo = (uint64_t) llround(range->lo), hi = (uint64_t) llround(range->hi);
    if (range->lo < 0 || hi < lo)
        return UINT64_MAX; /* refused by sim_config_check */
    return lo + rng_below(r, hi - lo + 1);
}

/* A value on a grid of `step` (exactly printable), or the value given. */
static double s_draw_real(rng_t *r, const s_range_t *range, double step)
{
    if (!range->given)
        return 0;
    if (range->lo == range->hi)
        return range->lo;
    int64_t lo = (int64_t) ceil(range->lo / step - 1e-9);
    int64_t hi = (int64_t) floor(range->hi / step + 1e-9);
    if (hi < lo)
        return range->lo;
    int64_t k = lo + (int64_t) rng_below(r, (uint64_t) (hi - lo + 1));
    return (double) k / (1.0 / step);
}

static void s_resolve(const s_opts_t *o, uint64_t seed, sim_config_t *cfg)
{
    *cfg = o->base;
    cfg->seed = seed;
    rng_t r;
    uint64_t st = seed ^ 0x5CE7A810C0FFEEull;
    rng_seed(&r, rng_splitmix64(&st));
    uint64_t nodes = s_draw_int(&r, &o->nodes, o->base.nodes);
    cfg->nodes = nodes > SIM_MAX_NODES ? 0 : (uint32_t) nodes;
    cfg->loss = s_draw_real(&r, &o->loss, 0.001);
    cfg->dup = s_draw_real(&r, &o->dup, 0.001);
    cfg->reorder = s_draw_real(&r, &o->reorder, 0.001);
    cfg->crash_rate = s_draw_real(&r, &o->crash_rate, 0.1);
    uint64_t slow = s_draw_int(&r, &o->slow, 0);
    cfg->slow = slow > cfg->nodes ? cfg->nodes + 1 : (uint32_t) slow;
    if (o->random_partition && cfg->n_partitions == 0 && rng_below(&r, 2) == 1) {
        sim_partition_t *pt = &cfg->partitions[cfg->n_partitions++];
        uint64_t d = cfg->duration_ms;
        pt->split_ms = d * (100 + rng_below(&r, 401)) / 1000;
        /* It may still be split when the chaos phase ends (the settle
         * phase heals it): convergence right after a long partition. */
        pt->heal_ms = pt->split_ms + d * (100 + rng_below(&r, 501)) / 1000;
        if (pt->heal_ms <= pt->split_ms)
            pt->heal_ms = pt->split_ms + 1;
        if (rng_below(&r, 4) == 0)
            pt->groups = 3;
        else
            pt->fraction_milli = (uint32_t) (200 + rng_below(&r, 301));
    }
    if (!o->codec_given)
        cfg->codec = cfg->nodes <= 100 ? SIM_CODEC_VERIFY : SIM_CODEC_ON;
    if (!o->targets_given)
        cfg->targets = cfg->experiment == SIM_EXP_NONE ? 200 : 10000;
    if (!o->fleet_given)
        cfg->fleet = cfg->experiment != SIM_EXP_DISSEMINATE && cfg->experiment != SIM_EXP_DETECT;
}

/* ---- replay commands ---- */

static bool s_same_config(const sim_config_t *a, const sim_config_t *b)
{
    if (a->seed != b->seed || a->nodes != b->nodes || a->targets != b->targets ||
        strcmp(a->profile, b->profile) != 0 || a->loss != b->loss ||
        (a->loss > 0 && a->loss_gossip_only != b->loss_gossip_only) || a->dup != b->dup ||
        a->reorder != b->reorder || a->crash_rate != b->crash_rate ||
        a->downtime_ms != b->downtime_ms || a->slow != b->slow ||
        (a->slow && a->slow_factor != b->slow_factor) || a->n_partitions != b->n_partitions ||
        a->duration_ms != b->duration_ms || a->settle_ms != b->settle_ms || a->codec != b->codec ||
        a->faults != b->faults || a->experiment != b->experiment || a->fleet != b->fleet ||
        (a->fleet &&
         (a->workers != b->workers || a->exec_ms != b->exec_ms || a->fail_rate != b->fail_rate ||
          a->attempts != b->attempts || a->plan_at_ms != b->plan_at_ms)) ||
        a->bounded_load_milli != b->bounded_load_milli || a->push_eager != b->push_eager ||
        (a->experiment != SIM_EXP_NONE && a->trials != b->trials))
        return false;
    for (uint32_t i = 0; i < a->n_partitions; i++) {
        const sim_partition_t *x = &a->partitions[i], *y = &b->partitions[i];
        if (x->split_ms != y->split_ms || x->heal_ms != y->heal_ms ||
            x->fraction_milli != y->fraction_milli || x->groups != y->groups)
            return false;
    }
    return true;
}

/* True when the replay command printed for cfg parses back to cfg. */
static bool s_replay_ok(const sim_config_t *cfg)
{
    char cmd[1024];
    char *argv[96];
    int argc = 0;
    bool ok = false;
    s_opts_t *o = calloc(1, sizeof *o);
    if (!o)
        return false;
    sim_config_command(cfg, cmd, sizeof cmd);
    char *save = NULL;
    for (char *tok = strtok_r(cmd, " ", &save); tok && argc < 95; tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    argv[argc] = NULL;
    optind = 0; /* restart getopt */
    if (s_parse(argc, argv, o) == 0) {
        sim_config_t again;
        s_resolve(o, o->base.seed, &again);
        ok = s_same_config(cfg, &again);
    }
    free(o);
    return ok;
}

/* Every scenario a sweep can draw must replay from its printed command. */
static int s_self_test_replay(void)
{
    s_opts_t *o = calloc(1, sizeof *o);
    char arg0[] = "gaggle-sim", a1[] = "--sweep", a2[] = "1", a3[] = "--nodes", a4[] = "1..200",
         a5[] = "--slow-factor", a6[] = "3.7", a7[] = "--downtime", a8[] = "1500ms";
    char *argv[] = {arg0, a1, a2, a3, a4, a5, a6, a7, a8, NULL};
    int rc = 0;
    if (!o)
        return 1;
    optind = 0;
    if (s_parse(9, argv, o) != 0) {
        free(o);
        return 1;
    }
    for (uint64_t seed = 1; seed <= 2000 && rc == 0; seed++) {
        sim_config_t cfg;
        s_resolve(o, seed, &cfg);
        cfg.codec = (sim_codec_t) (seed % 3);
        cfg.loss_gossip_only = seed % 2 == 0;
        if (!s_replay_ok(&cfg)) {
            char cmd[1024];
            sim_config_command(&cfg, cmd, sizeof cmd);
            fprintf(stderr, "gaggle-sim: self-test failed: does not replay: %s\n", cmd);
            rc = 1;
        }
    }
    free(o);
    return rc;
}

/* ---- output ---- */

static const char *s_node_name(int32_t i, char *buf, size_t size)
{
    if (i < 0)
        return "-";
    snprintf(buf, size, "n%d", i);
    return buf;
}

static void s_print_violation(const sim_config_t *cfg, const sim_result_t *res)
{
    char cmd[1024], a[16], b[16];
    sim_config_command(cfg, cmd, sizeof cmd);
    if (res->error) {
        fprintf(stderr, "gaggle-sim: seed %llu: run failed: %s\n", (unsigned long long) cfg->seed,
                res->error_text);
    } else {
        const sim_violation_t *v = &res->violation;
        fprintf(
            stderr, "gaggle-sim: seed %llu: INVARIANT VIOLATED [%s] at t=%llums, nodes %s %s: %s\n",
            (unsigned long long) cfg->seed, v->invariant, (unsigned long long) v->at,
            s_node_name(v->node_a, a, sizeof a), s_node_name(v->node_b, b, sizeof b), v->detail);
    }
    fprintf(stderr, "gaggle-sim: replay: %s\n", cmd);
}

typedef struct {
    double mean, median, max;
    uint32_t n, missing;
} s_summary_t;

static int s_dcmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static s_summary_t s_summarise(const sim_exp_result_t *e, size_t offset)
{
    s_summary_t s = {0};
    double v[SIM_MAX_TRIALS];
    for (uint32_t i = 0; i < e->trials_done; i++) {
        double x = *(const double *) ((const char *) &e->trials[i] + offset);
        if (x < 0) {
            s.missing++;
            continue;
        }
        v[s.n++] = x;
        s.mean += x;
        s.max = x > s.max ? x : s.max;
    }
    if (s.n) {
        s.mean /= s.n;
        qsort(v, s.n, sizeof v[0], s_dcmp);
        s.median = s.n % 2 ? v[s.n / 2] : (v[s.n / 2 - 1] + v[s.n / 2]) / 2;
    }
    return s;
}

static void s_row(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_row(const char *label, const char *fmt, ...)
{
    va_list ap;
    printf("  %-40s ", label);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static const char *s_exp_name(sim_experiment_t e)
{
    switch (e) {
    case SIM_EXP_DISSEMINATE: return "disseminate";
    case SIM_EXP_DETECT: return "detect";
    case SIM_EXP_JOIN: return "join";
    case SIM_EXP_NONE: break;
    }
    return "none";
}

static void s_summary_row(const char *label, s_summary_t s)
{
    char extra[48] = "";
    if (s.missing)
        snprintf(extra, sizeof extra, "  (%u trials never reached it)", s.missing);
    if (s.n)
        s_row(label, "mean %.2f s  median %.2f s  max %.2f s%s", s.mean, s.median, s.max, extra);
    else
        s_row(label, "not reached%s", extra);
}

static double s_per_node_hour(uint64_t count, uint64_t node_ms)
{
    return node_ms ? (double) count / ((double) node_ms / 3600e3) : 0;
}

static void s_print_fleet(const sim_fleet_result_t *f)
{
    if (!f->on || !f->targets)
        return;
    s_row("plan: targets (applied at)", "%u (%.3f s)", f->targets, f->applied_s);
    s_row("terminal everywhere: succeeded / failed", "%u: %u / %u", f->terminal, f->succeeded,
          f->failed);
    if (f->done_s >= 0)
        s_row("all targets done after apply", "%.3f s", f->done_s);
    else
        s_row("all targets done after apply", "no");
    s_row("executions started / completed / aborted", "%llu / %llu / %llu",
          (unsigned long long) f->runs, (unsigned long long) f->completions,
          (unsigned long long) f->aborted);
    s_row("claims/takeovers/re-claims/hand-backs", "%llu / %llu / %llu / %llu",
          (unsigned long long) f->claims, (unsigned long long) f->takeovers,
          (unsigned long long) f->reclaims, (unsigned long long) f->handbacks);
    s_row("same-epoch claims (views unsettled)", "%llu (%llu), conflicts lost %llu",
          (unsigned long long) f->same_epoch, (unsigned long long) f->same_epoch_partition,
          (unsigned long long) f->conflicts);
    s_row("concurrent executions (views unsettled)", "%llu (%llu)",
          (unsigned long long) f->overlaps, (unsigned long long) f->overlaps_partition);
    s_row("same-epoch results from two nodes", "%llu", (unsigned long long) f->double_results);
    s_row("fenced results discarded", "%llu", (unsigned long long) f->fenced_results);
    s_row("claims per node: max / mean", "%.3f", f->claimed_max_mean);
    s_row("records persisted / lost in crashes", "%llu / %llu",
          (unsigned long long) f->records_persisted, (unsigned long long) f->records_lost);
    s_row("fleet messages (bytes)", "%llu (%llu)", (unsigned long long) f->msgs_sent,
          (unsigned long long) f->bytes_sent);
    s_row("records received / news (ratio)", "%llu / %llu (%.1f)",
          (unsigned long long) f->records_in, (unsigned long long) f->records_merged,
          f->records_merged ? (double) f->records_in / (double) f->records_merged : 0.0);
    if (f->converge_samples)
        s_row("progress convergence p50 / p99 / max", "%.3f / %.3f / %.3f s (%u targets)",
              f->converge_p50, f->converge_p99, f->converge_max, f->converge_samples);
}

static json_t *s_fleet_json(const sim_fleet_result_t *f)
{
    json_t *x = json_object();
    json_object_set_new(x, "targets", json_integer(f->targets));
    json_object_set_new(x, "applied_s", json_real(f->applied_s));
    json_object_set_new(x, "done_s", f->done_s >= 0 ? json_real(f->done_s) : json_null());
    json_object_set_new(x, "terminal", json_integer(f->terminal));
    json_object_set_new(x, "succeeded", json_integer(f->succeeded));
    json_object_set_new(x, "failed", json_integer(f->failed));
    json_object_set_new(x, "runs", json_integer((json_int_t) f->runs));
    json_object_set_new(x, "completions", json_integer((json_int_t) f->completions));
    json_object_set_new(x, "aborted", json_integer((json_int_t) f->aborted));
    json_object_set_new(x, "claims", json_integer((json_int_t) f->claims));
    json_object_set_new(x, "takeovers", json_integer((json_int_t) f->takeovers));
    json_object_set_new(x, "reclaims", json_integer((json_int_t) f->reclaims));
    json_object_set_new(x, "handbacks", json_integer((json_int_t) f->handbacks));
    json_object_set_new(x, "conflicts", json_integer((json_int_t) f->conflicts));
    json_object_set_new(x, "same_epoch", json_integer((json_int_t) f->same_epoch));
    json_object_set_new(x, "same_epoch_unsettled",
                        json_integer((json_int_t) f->same_epoch_partition));
    json_object_set_new(x, "overlaps", json_integer((json_int_t) f->overlaps));
    json_object_set_new(x, "overlaps_unsettled", json_integer((json_int_t) f->overlaps_partition));
    json_object_set_new(x, "double_results", json_integer((json_int_t) f->double_results));
    json_object_set_new(x, "fenced_results", json_integer((json_int_t) f->fenced_results));
    json_object_set_new(x, "records_in", json_integer((json_int_t) f->records_in));
    json_object_set_new(x, "records_merged", json_integer((json_int_t) f->records_merged));
    json_object_set_new(x, "claimed_max_mean", json_real(f->claimed_max_mean));
    json_object_set_new(x, "records_persisted", json_integer((json_int_t) f->records_persisted));
    json_object_set_new(x, "records_lost", json_integer((json_int_t) f->records_lost));
    json_object_set_new(x, "messages", json_integer((json_int_t) f->msgs_sent));
    json_object_set_new(x, "bytes", json_integer((json_int_t) f->bytes_sent));
    if (f->converge_samples)
        json_object_set_new(x, "convergence",
                            json_pack("{s:f, s:f, s:f, s:i}", "p50", f->converge_p50, "p99",
                                      f->converge_p99, "max", f->converge_max, "samples",
                                      (json_int_t) f->converge_samples));
    return x;
}

static void s_print_table(const sim_config_t *cfg, const sim_result_t *r)
{
    char cmd[1024];
    sim_config_command(cfg, cmd, sizeof cmd);
    const sim_stats_t *s = &r->stats;
    double sim_s = (double) r->end_ms / 1000.0;
    printf("gaggle-sim: seed %llu, %u nodes, profile %s\n", (unsigned long long) cfg->seed,
           cfg->nodes, cfg->profile);
    s_row("replay", "%s", cmd);
    if (r->ok)
        s_row("result", "ok (all invariants held)");
    else if (r->error)
        s_row("result", "ERROR: %s", r->error_text);
    else
        s_row("result", "INVARIANT VIOLATED [%s] at t=%llums: %s", r->violation.invariant,
              (unsigned long long) r->violation.at, r->violation.detail);
    s_row("trace", "%016llx", (unsigned long long) r->trace);
    s_row("virtual time", "%.3f s (settle from %.3f s)", sim_s, (double) r->settle_start / 1000.0);
    if (r->converged_s >= 0)
        s_row("views converged after settle start", "%.3f s", r->converged_s);
    else
        s_row("views converged after settle start", "no");
    if (r->formed_s >= 0)
        s_row("fleet formed (views first converged)", "%.3f s (%.1f s of wall time)", r->formed_s,
              r->formed_wall_s);
    else
        s_row("fleet formed (views first converged)", "not during the chaos phase");
    s_row("wall time", "%.3f s", r->wall_s);
    s_row("simulated seconds per wall second", "%.1f (after forming: %.1f)",
          r->wall_s > 0 ? sim_s / r->wall_s : 0, r->steady_speed);
    s_row("events (queue high-water)", "%llu (%zu)", (unsigned long long) s->events,
          r->queue_high_water);
    s_row("messages sent / delivered", "%llu / %llu", (unsigned long long) s->msgs_sent,
          (unsigned long long) s->msgs_delivered);
    s_row("delivered ping/ack/ping_req/nack", "%llu / %llu / %llu / %llu",
          (unsigned long long) s->by_type[2], (unsigned long long) s->by_type[3],
          (unsigned long long) s->by_type[4], (unsigned long long) s->by_type[5]);
    s_row("delivered gossip/sync/sync_reply", "%llu / %llu / %llu",
          (unsigned long long) s->by_type[10], (unsigned long long) s->by_type[6],
          (unsigned long long) s->by_type[7]);
    s_row("dropped loss/partition/down/unknown", "%llu / %llu / %llu / %llu",
          (unsigned long long) s->dropped_loss, (unsigned long long) s->dropped_partition,
          (unsigned long long) s->dropped_down, (unsigned long long) s->dropped_unknown);
    s_row("duplicated / reordered", "%llu / %llu", (unsigned long long) s->duplicated,
          (unsigned long long) s->reordered);
    if (s->bytes_sent)
        s_row("bytes sent (mean per message)", "%llu (%.0f)", (unsigned long long) s->bytes_sent,
              (double) s->bytes_sent / (double) (s->msgs_sent ? s->msgs_sent : 1));
    s_row("crashes / restarts / splits / heals", "%llu / %llu / %llu / %llu",
          (unsigned long long) s->crashes, (unsigned long long) s->restarts,
          (unsigned long long) s->splits, (unsigned long long) s->heals);
    s_row("probes (failed)", "%llu (%llu)", (unsigned long long) s->probes,
          (unsigned long long) s->probes_failed);
    s_row("suspicions / refutations", "%llu / %llu", (unsigned long long) s->suspicions,
          (unsigned long long) s->refutations);
    if (cfg->slow)
        s_row("suspicions of slow nodes", "%llu", (unsigned long long) s->suspicions_of_slow);
    s_row("dead declarations", "%llu", (unsigned long long) s->dead_declarations);
    s_row("false dead declarations (per node-hour)", "%llu (%.4f)",
          (unsigned long long) s->false_dead, s_per_node_hour(s->false_dead, s->node_ms));
    s_row("false dead episodes (per node-hour)", "%llu (%.4f)",
          (unsigned long long) s->false_dead_episodes,
          s_per_node_hour(s->false_dead_episodes, s->node_ms));
    s_row("dead across or just after a partition", "%llu",
          (unsigned long long) s->false_dead_partition);
    s_row("node-hours", "%.3f", (double) s->node_ms / 3600e3);
    s_row("distinct checksums at the end", "%u", r->distinct_checksums);
    if (r->owners)
        s_row("ownership: owners, max/mean owned", "%u, %.3f (%u targets)", r->owners,
              r->owned_max_mean, cfg->targets);
    s_print_fleet(&r->fleet);
    const sim_exp_result_t *e = &r->exp;
    if (cfg->experiment == SIM_EXP_NONE)
        return;
    s_row("experiment", "%s, %u/%u trials, warm-up converged at %.2f s", s_exp_name(e->kind),
          e->trials_done, cfg->trials, e->warmup_s);
    if (e->kind == SIM_EXP_DISSEMINATE) {
        s_summary_row("reached 50%", s_summarise(e, offsetof(sim_trial_t, t50)));
        s_summary_row("reached 90%", s_summarise(e, offsetof(sim_trial_t, t90)));
        s_summary_row("reached 99%", s_summarise(e, offsetof(sim_trial_t, t99)));
        s_summary_row("reached 99.99%", s_summarise(e, offsetof(sim_trial_t, t9999)));
        s_summary_row("reached 100%", s_summarise(e, offsetof(sim_trial_t, t100)));
    } else if (e->kind == SIM_EXP_DETECT) {
        s_summary_row("first suspicion", s_summarise(e, offsetof(sim_trial_t, first_suspect)));
        s_summary_row("first dead declaration", s_summarise(e, offsetof(sim_trial_t, first_dead)));
        s_summary_row("dead in every view", s_summarise(e, offsetof(sim_trial_t, all_dead)));
    } else if (e->kind == SIM_EXP_JOIN) {
        if (!e->join_done) {
            s_row("join", "did not converge");
            return;
        }
        s_row("join converged after", "%.2f s", e->trials[0].t100);
        s_row("targets moved by one join", "%u of %u (%.2f%%; 1/N = %.2f%%)", e->moved, e->targets,
              100.0 * e->moved / (e->targets ? e->targets : 1), 100.0 / (double) cfg->nodes);
        s_row("max/mean owned before / after", "%.3f (%u owners) / %.3f (%u owners)",
              e->max_mean_before, e->owners_before, e->max_mean_after, e->owners_after);
    }
}

static json_t *s_summary_json(s_summary_t s)
{
    if (!s.n)
        return json_pack("{s:n, s:i}", "mean", "missing", (json_int_t) s.missing);
    return json_pack("{s:f, s:f, s:f, s:i, s:i}", "mean", s.mean, "median", s.median, "max", s.max,
                     "n", (json_int_t) s.n, "missing", (json_int_t) s.missing);
}

static json_t *s_result_json(const sim_config_t *cfg, const sim_result_t *r)
{
    char cmd[1024], trace[20];
    sim_config_command(cfg, cmd, sizeof cmd);
    snprintf(trace, sizeof trace, "%016llx", (unsigned long long) r->trace);
    const sim_stats_t *s = &r->stats;
    double sim_s = (double) r->end_ms / 1000.0;
    json_t *o = json_object();
    json_object_set_new(o, "seed", json_integer((json_int_t) cfg->seed));
    json_object_set_new(o, "nodes", json_integer(cfg->nodes));
    json_object_set_new(o, "profile", json_string(cfg->profile));
    json_object_set_new(o, "replay", json_string(cmd));
    json_object_set_new(o, "ok", json_boolean(r->ok));
    if (r->error)
        json_object_set_new(o, "error", json_string(r->error_text));
    if (r->n_violations)
        json_object_set_new(
            o, "violation",
            json_pack("{s:s, s:I, s:i, s:i, s:s}", "invariant", r->violation.invariant, "at_ms",
                      (json_int_t) r->violation.at, "node_a", (json_int_t) r->violation.node_a,
                      "node_b", (json_int_t) r->violation.node_b, "detail", r->violation.detail));
    json_object_set_new(o, "trace", json_string(trace));
    json_object_set_new(o, "virtual_s", json_real(sim_s));
    json_object_set_new(o, "settle_start_s", json_real((double) r->settle_start / 1000.0));
    json_object_set_new(o, "converged_s",
                        r->converged_s >= 0 ? json_real(r->converged_s) : json_null());
    json_object_set_new(o, "wall_s", json_real(r->wall_s));
    json_object_set_new(o, "sim_s_per_wall_s", json_real(r->wall_s > 0 ? sim_s / r->wall_s : 0));
    json_object_set_new(o, "formed_s", r->formed_s >= 0 ? json_real(r->formed_s) : json_null());
    json_object_set_new(o, "sim_s_per_wall_s_after_forming", json_real(r->steady_speed));
    json_object_set_new(o, "formed_wall_s",
                        r->formed_wall_s >= 0 ? json_real(r->formed_wall_s) : json_null());
    json_t *st = json_object();
    json_object_set_new(st, "events", json_integer((json_int_t) s->events));
    json_object_set_new(st, "messages_sent", json_integer((json_int_t) s->msgs_sent));
    json_object_set_new(st, "messages_delivered", json_integer((json_int_t) s->msgs_delivered));
    json_object_set_new(st, "bytes_sent", json_integer((json_int_t) s->bytes_sent));
    json_object_set_new(st, "dropped_loss", json_integer((json_int_t) s->dropped_loss));
    json_object_set_new(st, "dropped_partition", json_integer((json_int_t) s->dropped_partition));
    json_object_set_new(st, "dropped_down", json_integer((json_int_t) s->dropped_down));
    json_object_set_new(st, "duplicated", json_integer((json_int_t) s->duplicated));
    json_object_set_new(st, "reordered", json_integer((json_int_t) s->reordered));
    json_object_set_new(st, "crashes", json_integer((json_int_t) s->crashes));
    json_object_set_new(st, "restarts", json_integer((json_int_t) s->restarts));
    json_object_set_new(st, "probes", json_integer((json_int_t) s->probes));
    json_object_set_new(st, "probes_failed", json_integer((json_int_t) s->probes_failed));
    json_object_set_new(st, "suspicions", json_integer((json_int_t) s->suspicions));
    json_object_set_new(st, "refutations", json_integer((json_int_t) s->refutations));
    json_object_set_new(st, "suspicions_of_slow", json_integer((json_int_t) s->suspicions_of_slow));
    json_object_set_new(st, "dead_declarations", json_integer((json_int_t) s->dead_declarations));
    json_object_set_new(st, "false_dead", json_integer((json_int_t) s->false_dead));
    json_object_set_new(st, "false_dead_episodes",
                        json_integer((json_int_t) s->false_dead_episodes));
    json_object_set_new(st, "false_dead_per_node_hour",
                        json_real(s_per_node_hour(s->false_dead, s->node_ms)));
    json_object_set_new(st, "false_dead_episodes_per_node_hour",
                        json_real(s_per_node_hour(s->false_dead_episodes, s->node_ms)));
    json_object_set_new(st, "dead_across_partition",
                        json_integer((json_int_t) s->false_dead_partition));
    json_object_set_new(st, "node_hours", json_real((double) s->node_ms / 3600e3));
    json_object_set_new(o, "stats", st);
    json_object_set_new(o, "distinct_checksums", json_integer(r->distinct_checksums));
    if (r->owners)
        json_object_set_new(o, "ownership",
                            json_pack("{s:i, s:i, s:f}", "targets", (json_int_t) cfg->targets,
                                      "owners", (json_int_t) r->owners, "max_mean",
                                      r->owned_max_mean));
    if (r->fleet.on && r->fleet.targets)
        json_object_set_new(o, "fleet", s_fleet_json(&r->fleet));
    const sim_exp_result_t *e = &r->exp;
    if (cfg->experiment != SIM_EXP_NONE) {
        json_t *x = json_object();
        json_object_set_new(x, "kind", json_string(s_exp_name(e->kind)));
        json_object_set_new(x, "trials", json_integer(e->trials_done));
        json_object_set_new(x, "warmup_s", json_real(e->warmup_s));
        if (e->kind == SIM_EXP_DISSEMINATE) {
            json_object_set_new(x, "t50",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, t50))));
            json_object_set_new(x, "t90",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, t90))));
            json_object_set_new(x, "t99",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, t99))));
            json_object_set_new(x, "t9999",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, t9999))));
            json_object_set_new(x, "t100",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, t100))));
        } else if (e->kind == SIM_EXP_DETECT) {
            json_object_set_new(
                x, "first_suspect",
                s_summary_json(s_summarise(e, offsetof(sim_trial_t, first_suspect))));
            json_object_set_new(x, "first_dead",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, first_dead))));
            json_object_set_new(x, "all_dead",
                                s_summary_json(s_summarise(e, offsetof(sim_trial_t, all_dead))));
        } else if (e->kind == SIM_EXP_JOIN && e->join_done) {
            json_object_set_new(x, "converged_s", json_real(e->trials[0].t100));
            json_object_set_new(x, "targets", json_integer(e->targets));
            json_object_set_new(x, "moved", json_integer(e->moved));
            json_object_set_new(x, "max_mean_before", json_real(e->max_mean_before));
            json_object_set_new(x, "max_mean_after", json_real(e->max_mean_after));
            json_object_set_new(x, "owners_before", json_integer(e->owners_before));
            json_object_set_new(x, "owners_after", json_integer(e->owners_after));
        }
        json_object_set_new(o, "experiment", x);
    }
    return o;
}

static void s_print_json(json_t *o)
{
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text) {
        printf("%s\n", text);
        free(text);
    }
}

/* ---- modes ---- */

static int s_single(const s_opts_t *o)
{
    sim_config_t cfg;
    s_resolve(o, o->base.seed, &cfg);
    char why[160];
    if (sim_config_check(&cfg, why, sizeof why) != 0) {
        fprintf(stderr, "gaggle-sim: %s\n", why);
        return 2;
    }
    sim_result_t *res = calloc(1, sizeof *res);
    if (!res) {
        fprintf(stderr, "gaggle-sim: out of memory\n");
        return 3;
    }
    int rc = sim_run(&cfg, res);
    int status = res->ok ? 0 : res->error || rc ? 3 : 1;
    if (o->json) {
        json_t *j = s_result_json(&cfg, res);
        s_print_json(j);
        json_decref(j);
    } else {
        s_print_table(&cfg, res);
    }
    if (!res->ok)
        s_print_violation(&cfg, res);
    free(res);
    return status;
}

typedef struct {
    uint64_t failed, errors, virtual_ms;
    int status; /* 0, or 2 when a drawn scenario is invalid */
} s_tally_t;

/* Runs the seeds of part `part` of `parts` (seed index k with k % parts ==
 * part), printing each failure with its replay command and appending it to
 * failures (JSON). */
static void s_sweep_part(const s_opts_t *o, uint32_t part, uint32_t parts, s_tally_t *t,
                         json_t *failures)
{
    sim_result_t *res = calloc(1, sizeof *res), *again = calloc(1, sizeof *again);
    if (!res || !again) {
        fprintf(stderr, "gaggle-sim: out of memory\n");
        t->errors++;
        goto out;
    }
    for (uint64_t k = part; k < o->sweep; k += parts) {
        sim_config_t cfg;
        s_resolve(o, o->base.seed + k, &cfg);
        char why[160];
        if (sim_config_check(&cfg, why, sizeof why) != 0) {
            fprintf(stderr, "gaggle-sim: seed %llu: %s\n", (unsigned long long) cfg.seed, why);
            t->status = 2;
            goto out;
        }
        if (!s_replay_ok(&cfg)) {
            char cmd[1024];
            sim_config_command(&cfg, cmd, sizeof cmd);
            fprintf(stderr,
                    "gaggle-sim: seed %llu: the replay command does not reproduce the "
                    "scenario: %s\n",
                    (unsigned long long) cfg.seed, cmd);
            t->errors++;
            continue;
        }
        int rc = sim_run(&cfg, res);
        t->virtual_ms += res->end_ms;
        if (rc == 0 && res->ok && k % S_DETERMINISM_EVERY == 0) {
            /* Same seed, same run: the trace hash must repeat. */
            rc = sim_run(&cfg, again);
            if (rc == 0 && again->ok && again->trace != res->trace) {
                res->ok = false;
                res->n_violations = 1;
                snprintf(res->violation.invariant, sizeof res->violation.invariant, "determinism");
                snprintf(res->violation.detail, sizeof res->violation.detail,
                         "trace %016llx, then %016llx on a second run",
                         (unsigned long long) res->trace, (unsigned long long) again->trace);
                res->violation.at = res->end_ms;
                res->violation.node_a = res->violation.node_b = -1;
            } else if (rc != 0 || !again->ok) {
                *res = *again;
            }
        }
        if (rc != 0 || !res->ok) {
            s_print_violation(&cfg, res);
            if (failures)
                json_array_append_new(failures, s_result_json(&cfg, res));
            if (res->error || rc != 0)
                t->errors++;
            else
                t->failed++;
        }
    }
out:
    free(res);
    free(again);
}

static double s_wall_now(void)
{
    /* Reporting only. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static bool s_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t) n;
    }
    return true;
}

/* Reads until EOF, at most max bytes; returns the length or -1. */
static ssize_t s_read_all(int fd, char *buf, size_t max)
{
    size_t got = 0;
    for (;;) {
        if (got == max)
            return -1;
        ssize_t n = read(fd, buf + got, max - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return (ssize_t) got;
        got += (size_t) n;
    }
}

/* A forked worker: runs its part, writes the tally then its failures (JSON)
 * to fd, and exits. */
static void s_worker(const s_opts_t *o, uint32_t part, int fd)
{
    s_tally_t t = {0};
    json_t *failures = o->json ? json_array() : NULL;
    s_sweep_part(o, part, o->jobs, &t, failures);
    char *text = failures ? json_dumps(failures, JSON_COMPACT) : NULL;
    bool ok = s_write_all(fd, &t, sizeof t) && (!text || s_write_all(fd, text, strlen(text)));
    free(text);
    json_decref(failures);
    close(fd);
    fflush(stdout);
    fflush(stderr);
    _exit(ok ? 0 : 3);
}

static void s_collect_worker(pid_t pid, int fd, s_tally_t *total, json_t *failures)
{
    s_tally_t t;
    char *buf = malloc(S_MAX_WORKER_OUTPUT);
    ssize_t n = buf ? s_read_all(fd, buf, S_MAX_WORKER_OUTPUT) : -1;
    int wstatus = 0;
    close(fd);
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    if (n < (ssize_t) sizeof t || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "gaggle-sim: a sweep worker failed (status %d)\n", wstatus);
        total->errors++;
        goto out;
    }
    memcpy(&t, buf, sizeof t);
    total->failed += t.failed;
    total->errors += t.errors;
    total->virtual_ms += t.virtual_ms;
    if (t.status)
        total->status = t.status;
    if (failures && (size_t) n > sizeof t) {
        json_t *arr = json_loadb(buf + sizeof t, (size_t) n - sizeof t, 0, NULL);
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) json_array_append(failures, item);
        json_decref(arr);
    }
out:
    free(buf);
}

static int s_sweep(const s_opts_t *o)
{
    s_tally_t total = {0};
    json_t *failures = o->json ? json_array() : NULL;
    double wall0 = s_wall_now();
    uint32_t jobs = o->jobs > o->sweep ? (uint32_t) o->sweep : o->jobs;
    if (jobs <= 1) {
        s_sweep_part(o, 0, 1, &total, failures);
    } else {
        pid_t pids[S_MAX_JOBS];
        int fds[S_MAX_JOBS];
        uint32_t started = 0;
        fflush(stdout);
        fflush(stderr);
        for (uint32_t j = 0; j < jobs; j++) {
            int fd[2];
            if (pipe(fd) != 0)
                break;
            pid_t pid = fork();
            if (pid < 0) {
                close(fd[0]);
                close(fd[1]);
                break;
            }
            if (pid == 0) {
                for (uint32_t k = 0; k < started; k++)
                    close(fds[k]);
                close(fd[0]);
                s_worker(o, j, fd[1]);
            }
            close(fd[1]);
            pids[started] = pid;
            fds[started++] = fd[0];
        }
        if (started < jobs) {
            fprintf(stderr, "gaggle-sim: cannot start %u sweep workers\n", jobs);
            total.errors++;
        }
        for (uint32_t j = 0; j < started; j++)
            s_collect_worker(pids[j], fds[j], &total, failures);
    }
    double wall = s_wall_now() - wall0;
    if (o->json) {
        json_t *j =
            json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:O}", "seeds", (json_int_t) o->sweep,
                      "first_seed", (json_int_t) o->base.seed, "failed", (json_int_t) total.failed,
                      "errors", (json_int_t) total.errors, "virtual_s",
                      (double) total.virtual_ms / 1000.0, "wall_s", wall, "failures", failures);
        s_print_json(j);
        json_decref(j);
    }
    /* With --json, stdout holds the JSON document only. */
    fprintf(o->json ? stderr : stdout,
            "gaggle-sim: sweep of %llu seeds from %llu (%u jobs): %llu violated, %llu errors; "
            "%.1f virtual s in %.2f wall s\n",
            (unsigned long long) o->sweep, (unsigned long long) o->base.seed, jobs ? jobs : 1,
            (unsigned long long) total.failed, (unsigned long long) total.errors,
            (double) total.virtual_ms / 1000.0, wall);
    json_decref(failures);
    if (total.status)
        return total.status;
    return total.errors ? 3 : total.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    /* Full-state messages of a large fleet are a few hundred KiB each: keep
     * them on the heap instead of an mmap and a page fault storm per message. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    s_opts_t *o = calloc(1, sizeof *o);
    if (!o || sodium_init() < 0) {
        fprintf(stderr, "gaggle-sim: cannot initialise\n");
        free(o);
        return 3;
    }
    int rc = s_parse(argc, argv, o);
    int status;
    if (rc == 1)
        status = 0;
    else if (rc != 0)
        status = 2;
    else if (o->self_test)
        status = sim_self_test() == 0 && s_self_test_replay() == 0 ? 0 : 1;
    else
        status = o->sweep ? s_sweep(o) : s_single(o);
    if (o->self_test && status == 0)
        printf("gaggle-sim: self-test passed\n");
    free(o);
    return status;
}
