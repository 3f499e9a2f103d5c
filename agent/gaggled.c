/*
 * gaggled.c: the daemon's main: block signals, parse and validate the
 * configuration, start the agent, run it until SIGTERM.
 *
 * Exit status: 0 after a clean shutdown (and for --help, --version, a good
 * --check-config), 1 when
 * the agent cannot start or fails while running, 2 for a usage or
 * configuration error. Every failure is one line on stderr.
 */
#include "agent.h"
#include "config.h"
#include "gg_error.h"
#include "gg_log.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    char err[CONFIG_ERR_MAX];
    config_t cfg;
    agent_t *agent = NULL;
    int status = 0;

    /* Before anything that could start a thread (CZMQ, ZeroMQ, libsodium). */
    if (agent_signals_block() != 0) {
        fprintf(stderr, "gaggled: cannot block signals\n");
        return 1;
    }
    if (config_parse_args(argc, argv, &cfg, err, sizeof err) != 0) {
        if (cfg.show_help) {
            config_print_help(stdout);
            return 0;
        }
        fprintf(stderr, "gaggled: %s\n", err);
        return 2;
    }
    if (cfg.show_help) {
        config_print_help(stdout);
        config_free(&cfg);
        return 0;
    }
    if (cfg.show_version) {
        printf("gaggled %s\n", GAGGLE_VERSION);
        config_free(&cfg);
        return 0;
    }
    if (config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "gaggled: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (cfg.check_only) {
        if (agent_check_identity(&cfg, err, sizeof err) != 0) {
            fprintf(stderr, "gaggled: %s\n", err);
            config_free(&cfg);
            return 2;
        }
        printf("gaggled: configuration %s%sis good (node %s, bind %s, http %s)\n",
               cfg.config_file ? cfg.config_file : "", cfg.config_file ? " " : "", cfg.name,
               cfg.bind, cfg.http);
        config_free(&cfg);
        return 0;
    }
    gg_log_set_level(cfg.log_level);
    agent = agent_new(&cfg, argc, argv);
    if (!agent) {
        fprintf(stderr, "gaggled: out of memory\n");
        config_free(&cfg);
        return 1;
    }
    if (agent_start(agent, err, sizeof err) != 0) {
        fprintf(stderr, "gaggled: %s\n", err);
        status = 1;
        goto out;
    }
    if (agent_run(agent) != 0)
        status = 1;
out:
    agent_destroy(&agent);
    if (status == 0)
        gg_info("gaggled: stopped");
    return status;
}
