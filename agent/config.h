/*
 * config.h: gaggled's configuration, from a YAML file and command-line flags.
 *
 * Every option is described once, in one table (config.c), which drives the
 * flag parser, the YAML loader, --help and the reload policy. The result is a
 * plain struct. Order of precedence: built-in defaults, then the file named by
 * --config, then flags (flags win). A value is checked where it is read, so an
 * error names its origin: "--workers: must be between 1 and 1024, got 0" or
 * "/etc/gaggle/gaggled.yaml:7: workers: must be between 1 and 1024, got 0".
 *
 * SIGHUP re-runs the same parse (same argv, re-read file), validates the new
 * struct and only then swaps it in; config_keep_restart_fields() carries over
 * the options that cannot change while running.
 */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H

#include "gg_log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_JOIN_MAX     64         /* --join seeds */
#define CONFIG_FILE_MAX     (1u << 20) /* bytes of YAML read from --config */
#define CONFIG_VALUE_MAX    4096       /* bytes in one option value */
#define CONFIG_WORKERS_MAX  1024
#define CONFIG_DEFAULT_PORT 7700 /* peer traffic */
#define CONFIG_ERR_MAX      512  /* a good size for error buffers */

typedef enum {
    CONFIG_PROFILE_LAN = 0,
    CONFIG_PROFILE_WAN = 1,
    CONFIG_PROFILE_TEST = 2,
} config_profile_t;

/* scale: {run, targetsPerAgent, minAgents, maxAgents, cooldown}. */
typedef struct {
    bool enabled; /* the file has a scale: section */
    char *run;    /* shell command given the desired count on stdin */
    uint32_t targets_per_agent;
    uint32_t min_agents;
    uint32_t max_agents;
    uint64_t cooldown_ms;
    bool elastic; /* the scaler may retire this agent (it was started by the provider) */
} config_scale_t;

typedef struct {
    char *config_file; /* --config, NULL when none */
    char *name;        /* node name; default: the host name */
    char *data_dir;    /* LMDB and logs */
    uint64_t map_size; /* LMDB map size, bytes */
    char *bind;        /* tcp://IP:PORT */
    char *advertise;   /* tcp://HOST:PORT; derived from bind when not given */
    char **join;       /* tcp://HOST:PORT seeds */
    size_t join_count;
    char *http; /* IP:PORT */
    char *node_cert;
    char *node_key;  /* default: node_cert with .cert replaced by .key */
    char *operators; /* directory of trusted operator *.pub keys */
    uint32_t workers;
    config_profile_t profile;
    gg_log_level_t log_level;
    char *http_token_file; /* NULL: the API is open */
    uint64_t reap_ms;      /* how long dead and left members stay listed */
    config_scale_t scale;
    bool show_help;    /* --help was given: print config_print_help, exit 0 */
    bool show_version; /* --version was given */
    bool check_only;   /* --check-config: validate, report, exit */
} config_t;

/* Fills cfg with the built-in defaults (strings are malloc'd). Returns 0 or
 * GG_ENOMEM. cfg need not be initialised; free it with config_free. */
int config_defaults(config_t *cfg);

/* Builds cfg from argv: defaults, then the --config file, then the flags.
 * On error, err receives one line naming the flag or file:line and key, and
 * cfg is left freed (config_free is still safe). --help and --version set
 * show_help/show_version and skip the file. Does not validate cross-field
 * rules or derive defaults: call config_validate next. */
int config_parse_args(int argc, char **argv, config_t *cfg, char *err, size_t errlen);

/* Overlays the YAML file at path onto cfg. Unknown keys, wrong types and bad
 * values are GG_ECONFIG with "PATH:LINE: KEY: reason" in err; an unreadable
 * file is GG_EIO. On error cfg may be partly updated. */
int config_load_file(const char *path, config_t *cfg, char *err, size_t errlen);

/* Checks every field and the rules that span fields, then fills the derived
 * ones (node_key from node_cert, advertise from bind). Returns 0 or
 * GG_ECONFIG with "--key: reason" in err. */
int config_validate(config_t *cfg, char *err, size_t errlen);

/* Frees every string and zeroes cfg. NULL-safe, idempotent. */
void config_free(config_t *cfg);

/* Deep copy. Returns 0 or GG_ENOMEM (dst is then freed). */
int config_copy(config_t *dst, const config_t *src);

/* For a reload: every option that needs a restart and differs between cur
 * and next gets cur's value back in next, and its name is appended to
 * changed ("name, bind"; empty when none). Returns 0 or GG_ENOMEM. */
int config_keep_restart_fields(config_t *next, const config_t *cur, char *changed, size_t len);

/* Writes the usage text: every flag with its default. */
void config_print_help(FILE *out);

const char *config_profile_name(config_profile_t profile);
const char *config_log_level_name(gg_log_level_t level);

#endif
