/*
 * cli_signed.h: signing a payload with the operator's key and posting it to
 * the agent, shared by every mutating command (plan apply, plan pause, cert
 * revoke, ...). The key comes from --key FILE, else $GAGGLE_KEY.
 */
#ifndef GG_CLI_SIGNED_H
#define GG_CLI_SIGNED_H

#include "cert.h"

#include <jansson.h>

/* Loads the secret operator key at key_path (else $GAGGLE_KEY) into *key
 * (wipe it with operator_key_wipe). `what` names the action for error lines.
 * Returns CLI_EXIT_OK, or an exit code after printing one line. */
int cli_operator_key(const char *what, const char *key_path, operator_key_t *key);

/* Signs payload (borrowed) with the secret operator key at key_path and POSTs
 * the signed document to path. `what` names the action for error lines
 * ("plan apply"). On success *answer holds the agent's JSON (caller decrefs).
 * Returns a CLI exit code; every failure has printed its one line. */
int cli_signed_post(const char *what, const char *key_path, json_t *payload, const char *path,
                    json_t **answer);

/* Builds an operator command (signed.h) from its fields and posts it. */
int cli_command_post(const char *what, const char *key_path, const char *type, const char *plan,
                     const char *const *targets, size_t n_targets, const char *state,
                     const char *node, const char *subject, const char *path, json_t **answer);

#endif
