/*
 * cli.h: what every `gaggle` command shares: the global flags (--addr,
 * --json), the agent's bearer token, HTTP calls to the local agent (libcurl)
 * with JSON answers (jansson), and the one-line error convention.
 *
 * Exit codes: 0 success, 1 failure (agent unreachable, HTTP error, runtime
 * error), 2 usage error. Errors are one line on stderr: "gaggle: ...".
 */
#ifndef GG_CLI_H
#define GG_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CLI_DEFAULT_ADDR       "127.0.0.1:7701"
#define CLI_CONNECT_TIMEOUT_MS 2000L
#define CLI_TIMEOUT_MS         60000L       /* a whole request */
#define CLI_RESPONSE_MAX       (256u << 20) /* bytes of an answer */
#define CLI_ADDR_MAX           256
#define CLI_TOKEN_MAX          4096

#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

typedef struct {
    const char *addr; /* --addr, else GAGGLE_ADDR, else CLI_DEFAULT_ADDR */
    bool json;        /* --json */
} cli_options_t;

/* A command: argv[0] is the command name, global flags already removed.
 * Returns the exit code. */
typedef int(cli_command_fn)(int argc, char **argv);

/* Removes --addr VALUE, --addr=VALUE and --json from anywhere in argv (up to
 * a "--"), in place, and records them. Returns 0, or CLI_EXIT_USAGE with the
 * error printed. */
int cli_parse_globals(int *argc, char **argv);
const cli_options_t *cli_options(void);

/* Prints "gaggle: <message>" on stderr. */
void cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One HTTP exchange with the agent at addr. On 0, *status holds the HTTP
 * status and *json the parsed body (NULL when the body is empty or not
 * JSON; the caller decrefs). Otherwise err holds one line: GG_ECONN ("cannot
 * reach the agent at ADDR: Connection refused (is gaggled running? set
 * --addr or GAGGLE_ADDR)"), GG_ETIMEOUT, GG_ETOOBIG, GG_ECONFIG (token file),
 * GG_EINVAL (bad addr) or GG_ENOMEM. The bearer token from GAGGLE_HTTP_TOKEN
 * or the file named by GAGGLE_HTTP_TOKEN_FILE is sent when set. */
int cli_get(const char *addr, const char *path, json_t **json, long *status, char *err,
            size_t errlen);
int cli_post(const char *addr, const char *path, const void *body, size_t len, json_t **json,
             long *status, char *err, size_t errlen);

/* For commands: a GET (body NULL) or POST to cli_options()->addr. Returns
 * CLI_EXIT_OK with *out set to the JSON answer of a 2xx, or prints the one
 * line (the agent's {"error"} sentence for an HTTP error) and returns
 * CLI_EXIT_FAIL. */
int cli_call(const char *path, const void *body, size_t len, json_t **out);

/* Prints value as indented JSON plus a newline on stdout. Returns 0 or 1. */
int cli_print_json(const json_t *value);

/* Escapes a path segment or query value for a URL (RFC 3986 unreserved kept).
 * Returns a malloc'd string or NULL. */
char *cli_url_escape(const char *text);

#endif
