/*
 * cmd_keygen.h: `gaggle keygen`, which makes operator key pairs and node keys
 * with their operator-signed certificates. Needs no running agent.
 */
#ifndef GG_CMD_KEYGEN_H
#define GG_CMD_KEYGEN_H

/* Runs `gaggle keygen ...`; argv[0] is "keygen". `--json` may appear anywhere.
 * Returns the process exit code: 0 done, 1 runtime failure (an existing
 * file, an unreadable operator key, ...), 2 usage error. Errors are printed
 * as one line "gaggle: ..." on stderr. */
int cmd_keygen(int argc, char **argv);

#endif
