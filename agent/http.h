/*
 * http.h: the agent's HTTP server (API, metrics, dashboard) on libmicrohttpd,
 * run inside the agent's zloop.
 *
 * MHD runs in external-epoll mode with no thread of its own: its epoll
 * descriptor is a zloop poller that calls MHD_run, and a one-shot zloop timer
 * re-armed after every run honours MHD_get_timeout. Handlers therefore run on
 * the loop thread, beside everything else the agent does, and need no locks.
 * A handler must be quick: it answers from memory or a short store read.
 *
 * A declared request body over HTTP_BODY_MAX is refused first (413), then
 * routing: exact paths, then the longest matching prefix route. A path with
 * no route is 404; a path routed for other methods is 405 (with Allow); HEAD
 * is served by the GET route. With a token set, every path under /v1/ needs
 * "Authorization: Bearer <token>" (401 otherwise); other paths stay open.
 * A chunked body that grows past HTTP_BODY_MAX is also 413. Every error is a
 * JSON body {"error": "one clear sentence"}.
 */
#ifndef GG_HTTP_H
#define GG_HTTP_H

#include "metrics.h"

#include <czmq.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_BODY_MAX        (64u << 20) /* request body bytes */
#define HTTP_ROUTES_MAX      128
#define HTTP_CONNECTIONS_MAX 256
#define HTTP_IDLE_TIMEOUT_S  30 /* an idle or stalled connection is closed */
#define HTTP_TOKEN_MAX       4096

typedef struct _http_t http_t;

/* A request as a handler sees it; valid during the handler call only. path
 * is already percent-decoded by MHD (so refs travel as query parameters). */
typedef struct {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated for convenience; may hold NULs */
    size_t body_len;
    void *conn_; /* private */
} http_request_t;

/* What a handler fills. body is malloc'd and owned by the response. */
typedef struct {
    int status;
    const char *content_type; /* a static string */
    char *body;
    size_t body_len;
} http_response_t;

/* Returns 0 with resp filled, or a negative GG_E* code: the client then gets
 * a 500 (unless resp already holds a status). */
typedef int(http_handler_fn)(void *arg, const http_request_t *req, http_response_t *resp);

/* metrics may be NULL; otherwise gaggle_http_requests_total{code} is counted
 * there. */
http_t *http_new(metrics_t *metrics);
/* Stops serving (see http_stop) and frees everything. NULL-safe. */
void http_destroy(http_t **self_p);

/* Routes method + exact path to fn. GG_EEXIST for a duplicate, GG_ETOOBIG
 * past HTTP_ROUTES_MAX. */
int http_route(http_t *self, const char *method, const char *path, http_handler_fn *fn, void *arg);
/* Routes every path that starts with prefix (e.g. "/v1/plans/"). */
int http_route_prefix(http_t *self, const char *method, const char *prefix, http_handler_fn *fn,
                      void *arg);

/* Sets the bearer token that /v1/ paths require; NULL or "" opens them. The
 * token is copied and wiped on change. */
int http_set_token(http_t *self, const char *token);

/* Listens on addr ("IP:PORT") and registers with loop. On failure err holds
 * one line ("cannot listen on 127.0.0.1:7701: Address already in use"). */
int http_start(http_t *self, zloop_t *loop, const char *addr, char *err, size_t errlen);
/* Closes the listener and every connection and leaves the loop. Idempotent. */
void http_stop(http_t *self);
/* The bound port, 0 when not started. */
uint16_t http_port(const http_t *self);

/* Query parameter or header value; NULL when absent. Lifetime: the request. */
const char *http_request_query(const http_request_t *req, const char *key);
const char *http_request_header(const http_request_t *req, const char *name);

/* Fills resp with the JSON of value (takes the reference, even on error).
 * Returns 0 or GG_ENOMEM. */
int http_respond_json(http_response_t *resp, int status, json_t *value);
/* {"error": message}. */
int http_respond_error(http_response_t *resp, int status, const char *message);
/* A body copied from text (content_type static). */
int http_respond_text(http_response_t *resp, int status, const char *content_type, const char *text,
                      size_t len);

#endif
