/* cli_signed.c: see cli_signed.h. */
#include "cli_signed.h"
#include "cert.h"
#include "cli.h"
#include "gg_error.h"
#include "signed.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_operator_key(const char *what, const char *key_path, operator_key_t *key)
{
    memset(key, 0, sizeof *key);
    if (!key_path || !*key_path)
        key_path = getenv("GAGGLE_KEY");
    if (!key_path || !*key_path) {
        cli_fail("%s needs an operator key: --key FILE or GAGGLE_KEY", what);
        return CLI_EXIT_USAGE;
    }
    int err = operator_key_load(key_path, key);
    if (err != 0) {
        cli_fail("cannot load the operator key %s: %s", key_path, gg_strerror(err));
        return CLI_EXIT_FAIL;
    }
    if (!key->has_secret) {
        cli_fail("%s holds only a public key: --key needs the secret .key file", key_path);
        operator_key_wipe(key);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_signed_post(const char *what, const char *key_path, json_t *payload, const char *path,
                    json_t **answer)
{
    operator_key_t key;
    json_t *doc = NULL;
    char *body = NULL;
    int rc = cli_operator_key(what, key_path, &key);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = CLI_EXIT_FAIL;
    int err;
    if ((err = signed_sign(payload, &key, &doc)) != 0) {
        cli_fail("%s: cannot sign: %s", what, gg_strerror(err));
        goto out;
    }
    size_t len = 0;
    if ((err = signed_canonical(doc, &body, &len)) != 0) {
        cli_fail("%s: cannot encode the signed document: %s", what, gg_strerror(err));
        goto out;
    }
    rc = cli_call(path, body, len, answer);
out:
    operator_key_wipe(&key);
    json_decref(doc);
    free(body);
    return rc;
}

int cli_command_post(const char *what, const char *key_path, const char *type, const char *plan,
                     const char *const *targets, size_t n_targets, const char *state,
                     const char *node, const char *subject, const char *path, json_t **answer)
{
    signed_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = type;
    cmd.plan = plan;
    cmd.targets = targets;
    cmd.target_count = n_targets;
    cmd.state = state;
    cmd.node = node;
    cmd.subject = subject;
    json_t *payload = NULL;
    char err[256] = "";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
    if (signed_command_build(&cmd, now_ms, &payload, err, sizeof err) != 0) {
        cli_fail("%s: %s", what, err[0] ? err : "invalid command");
        return CLI_EXIT_USAGE;
    }
    int rc = cli_signed_post(what, key_path, payload, path, answer);
    json_decref(payload);
    return rc;
}
