/*
 * http.c: libmicrohttpd driven by the agent's zloop (see http.h).
 *
 * Request life cycle, as MHD calls the access handler:
 *   1st call  (headers read)  refuse at once with 413 (declared Content-Length
 *                             too big), 404, 405 or 401, in that order, so a
 *                             refused body is never read; else pick the route.
 *   Nth call  (body bytes)    append to the request buffer up to HTTP_BODY_MAX;
 *                             past it drop the bytes and remember (a chunked
 *                             body has no declared length).
 *   last call (no more data)  413 if the body overflowed, else run the handler
 *                             and queue its response.
 * MHD's completion callback frees the per-request state.
 *
 * We create the listening socket ourselves (close-on-exec, non-blocking) so a
 * bind failure is one clear line, then hand it to MHD, which closes it on stop.
 */
#include "http.h"
#include "gg_error.h"
#include "gg_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_METHOD_MAX   16
#define S_TIMER_MAX_MS (60 * 1000)

typedef struct {
    char method[S_METHOD_MAX];
    char *path;
    bool prefix;
    http_handler_fn *fn;
    void *arg;
} s_route_t;

struct _http_t {
    metrics_t *metrics;
    s_route_t routes[HTTP_ROUTES_MAX];
    size_t nroutes;
    char *token;
    size_t token_len;
    struct MHD_Daemon *mhd;
    zloop_t *loop;
    zmq_pollitem_t item;
    bool polling;
    int timer_id;
    uint16_t port;
};

/* Per-request state, from the first call to MHD's completion callback. */
typedef struct {
    const s_route_t *route;
    char *body;
    size_t len;
    size_t cap;
    size_t hint; /* declared Content-Length */
    bool too_big;
    bool answered;
} s_request_t;

/* ---- responses ---- */

int http_respond_text(http_response_t *resp, int status, const char *content_type, const char *text,
                      size_t len)
{
    char *body = malloc(len + 1);
    if (!body)
        return GG_ENOMEM;
    memcpy(body, text, len);
    body[len] = '\0';
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len;
    return GG_OK;
}

int http_respond_json(http_response_t *resp, int status, json_t *value)
{
    int rc = GG_ENOMEM;
    char *text = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (text) {
        size_t len = strlen(text);
        char *body = realloc(text, len + 2);
        if (body) {
            text = NULL;
            body[len] = '\n';
            body[len + 1] = '\0';
            free(resp->body);
            resp->status = status;
            resp->content_type = "application/json";
            resp->body = body;
            resp->body_len = len + 1;
            rc = GG_OK;
        }
    }
    free(text);
    json_decref(value);
    return rc;
}

int http_respond_error(http_response_t *resp, int status, const char *message)
{
    return http_respond_json(resp, status, json_pack("{s:s}", "error", message));
}

/* ---- request accessors ---- */

const char *http_request_query(const http_request_t *req, const char *key)
{
    return MHD_lookup_connection_value((struct MHD_Connection *) req->conn_, MHD_GET_ARGUMENT_KIND,
                                       key);
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *) req->conn_, MHD_HEADER_KIND, name);
}

/* ---- routing and auth ---- */

static bool s_method_is(const s_route_t *r, const char *method)
{
    if (strcmp(r->method, method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
}

static bool s_path_matches(const s_route_t *r, const char *path)
{
    if (r->prefix)
        return strncmp(path, r->path, strlen(r->path)) == 0;
    return strcmp(path, r->path) == 0;
}

/* Finds the route for method+path: exact routes first, then the longest
 * prefix. Returns 0, 404 or 405 (allow then lists the methods). */
static int s_resolve(const http_t *self, const char *method, const char *path,
                     const s_route_t **out, char *allow, size_t alen)
{
    const s_route_t *best = NULL;
    bool path_known = false;
    allow[0] = '\0';
    for (int pass = 0; pass < 2 && !best; pass++) {
        size_t best_len = 0;
        for (size_t i = 0; i < self->nroutes; i++) {
            const s_route_t *r = &self->routes[i];
            if (r->prefix != (pass == 1) || !s_path_matches(r, path))
                continue;
            path_known = true;
            if (!s_method_is(r, method)) {
                size_t used = strlen(allow);
                if (!strstr(allow, r->method))
                    snprintf(allow + used, alen - used, "%s%s", used ? ", " : "", r->method);
                continue;
            }
            if (!best || strlen(r->path) > best_len) {
                best = r;
                best_len = strlen(r->path);
            }
        }
    }
    *out = best;
    if (best)
        return 0;
    return path_known ? 405 : 404;
}

static bool s_needs_token(const http_t *self, const char *path)
{
    return self->token && (strncmp(path, "/v1/", 4) == 0 || strcmp(path, "/v1") == 0);
}

/* Compares digests, so neither the token's length nor its content leaks
 * through timing. */
static bool s_authorized(const http_t *self, struct MHD_Connection *conn)
{
    unsigned char want[crypto_generichash_BYTES], got[crypto_generichash_BYTES];
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *presented = auth + 7;
    while (*presented == ' ')
        presented++;
    crypto_generichash(want, sizeof want, (const unsigned char *) self->token, self->token_len,
                       NULL, 0);
    crypto_generichash(got, sizeof got, (const unsigned char *) presented, strlen(presented), NULL,
                       0);
    return sodium_memcmp(want, got, sizeof want) == 0;
}

/* ---- MHD callbacks ---- */

static enum MHD_Result s_queue(http_t *self, struct MHD_Connection *conn, const char *method,
                               const char *url, http_response_t *resp, const char *allow)
{
    char code[16];
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
    if (!mr) {
        free(resp->body);
        resp->body = NULL;
        return MHD_NO;
    }
    resp->body = NULL; /* MHD frees it */
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "text/plain");
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (resp->status == 405 && allow && *allow)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, allow);
    if (resp->status == 401)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int) resp->status, mr);
    MHD_destroy_response(mr);
    gg_debug("http: %.16s %.200s %d", method, url, resp->status);
    if (self->metrics) {
        snprintf(code, sizeof code, "%d", resp->status);
        metrics_counter_add(self->metrics, "gaggle_http_requests_total",
                            (const char *[]){"code", code, NULL}, 1);
    }
    return ret;
}

static enum MHD_Result s_queue_error(http_t *self, struct MHD_Connection *conn, const char *method,
                                     const char *url, int status, const char *message,
                                     const char *allow)
{
    http_response_t resp = {0};
    if (http_respond_error(&resp, status, message) != 0)
        return MHD_NO;
    return s_queue(self, conn, method, url, &resp, allow);
}

static enum MHD_Result s_first_call(http_t *self, struct MHD_Connection *conn, const char *url,
                                    const char *method, s_request_t *r)
{
    char allow[128], msg[256];
    /* A declared body over the limit is refused before anything else. */
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (length) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(length, &end, 10);
        if (errno || end == length || n > HTTP_BODY_MAX) {
            r->answered = true;
            snprintf(msg, sizeof msg, "request body is larger than the limit of %u bytes",
                     HTTP_BODY_MAX);
            return s_queue_error(self, conn, method, url, 413, msg, NULL);
        }
        r->hint = (size_t) n; /* allocate once for a declared length */
    }
    int status = s_resolve(self, method, url, &r->route, allow, sizeof allow);
    if (status == 404) {
        r->answered = true;
        return s_queue_error(self, conn, method, url, 404, "no such path", NULL);
    }
    if (status == 405) {
        r->answered = true;
        snprintf(msg, sizeof msg, "method %.16s is not allowed here (allowed: %s)", method, allow);
        return s_queue_error(self, conn, method, url, 405, msg, allow);
    }
    if (s_needs_token(self, url) && !s_authorized(self, conn)) {
        r->answered = true;
        return s_queue_error(self, conn, method, url, 401,
                             "this agent needs a bearer token (Authorization: Bearer TOKEN)", NULL);
    }
    return MHD_YES;
}

static void s_drop_body(s_request_t *r)
{
    r->too_big = true;
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->cap = 0;
}

static void s_append(s_request_t *r, const char *data, size_t n)
{
    if (r->too_big)
        return;
    if (n > HTTP_BODY_MAX - r->len) {
        s_drop_body(r);
        return;
    }
    size_t need = r->len + n;
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap : (r->hint ? r->hint : 4096);
        while (cap < need)
            cap = cap > HTTP_BODY_MAX / 2 ? HTTP_BODY_MAX : cap * 2;
        char *body = realloc(r->body, cap + 1);
        if (!body) {
            s_drop_body(r); /* cannot hold it: the same answer as too big */
            return;
        }
        r->body = body;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len = need;
    r->body[r->len] = '\0';
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    http_t *self = cls;
    s_request_t *r = *con_cls;
    char msg[256];
    (void) version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return s_first_call(self, conn, url, method, r);
    }
    if (*upload_data_size) {
        if (!r->answered)
            s_append(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    r->answered = true;
    if (r->too_big) {
        snprintf(msg, sizeof msg, "request body is larger than the limit of %u bytes",
                 HTTP_BODY_MAX);
        return s_queue_error(self, conn, method, url, 413, msg, NULL);
    }
    http_request_t req = {method, url, r->body ? r->body : "", r->len, conn};
    http_response_t resp = {0};
    int rc = r->route->fn(r->route->arg, &req, &resp);
    if (rc || resp.status < 100 || resp.status > 599) {
        free(resp.body);
        if (rc)
            gg_warn("http: %s %s failed: %s", method, url, gg_strerror(rc));
        snprintf(msg, sizeof msg, "internal error: %s", rc ? gg_strerror(rc) : "no response");
        return s_queue_error(self, conn, method, url, 500, msg, NULL);
    }
    return s_queue(self, conn, method, url, &resp, NULL);
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void) cls;
    (void) conn;
    (void) toe;
    s_request_t *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void) cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    gg_info("http: %s", line);
}

/* ---- the loop ---- */

static int s_on_timer(zloop_t *loop, int timer_id, void *arg);

/* One pass of MHD, then the timer re-armed to MHD's next deadline. */
static void s_run(http_t *self)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    MHD_run(self->mhd);
    if (self->timer_id >= 0) {
        zloop_timer_end(self->loop, self->timer_id);
        self->timer_id = -1;
    }
    if (MHD_get_timeout(self->mhd, &ms) == MHD_YES) {
        if (ms > S_TIMER_MAX_MS)
            ms = S_TIMER_MAX_MS;
        self->timer_id = zloop_timer(self->loop, (size_t) ms, 1, s_on_timer, self);
        if (self->timer_id < 0)
            gg_warn("http: cannot arm the timer; idle connections may linger");
    }
}

static int s_on_epoll(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    (void) item;
    s_run(arg);
    return 0;
}

static int s_on_timer(zloop_t *loop, int timer_id, void *arg)
{
    http_t *self = arg;
    (void) loop;
    if (timer_id == self->timer_id)
        self->timer_id = -1; /* one-shot: zloop has dropped it */
    s_run(self);
    return 0;
}

/* ---- lifecycle ---- */

http_t *http_new(metrics_t *metrics)
{
    if (sodium_init() < 0)
        return NULL;
    http_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->timer_id = -1;
    if (metrics)
        metrics_describe(metrics, "gaggle_http_requests_total", METRICS_COUNTER,
                         "HTTP requests answered, by status code.");
    return self;
}

void http_destroy(http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    http_t *self = *self_p;
    http_stop(self);
    for (size_t i = 0; i < self->nroutes; i++)
        free(self->routes[i].path);
    http_set_token(self, NULL);
    free(self);
    *self_p = NULL;
}

static int s_add_route(http_t *self, const char *method, const char *path, bool prefix,
                       http_handler_fn *fn, void *arg)
{
    if (!method || !path || !fn || path[0] != '/' || strlen(method) >= S_METHOD_MAX)
        return GG_EINVAL;
    for (size_t i = 0; i < self->nroutes; i++)
        if (self->routes[i].prefix == prefix && strcmp(self->routes[i].method, method) == 0 &&
            strcmp(self->routes[i].path, path) == 0)
            return GG_EEXIST;
    if (self->nroutes >= HTTP_ROUTES_MAX)
        return GG_ETOOBIG;
    s_route_t *r = &self->routes[self->nroutes];
    r->path = strdup(path);
    if (!r->path)
        return GG_ENOMEM;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->prefix = prefix;
    r->fn = fn;
    r->arg = arg;
    self->nroutes++;
    return GG_OK;
}

int http_route(http_t *self, const char *method, const char *path, http_handler_fn *fn, void *arg)
{
    return s_add_route(self, method, path, false, fn, arg);
}

int http_route_prefix(http_t *self, const char *method, const char *prefix, http_handler_fn *fn,
                      void *arg)
{
    return s_add_route(self, method, prefix, true, fn, arg);
}

int http_set_token(http_t *self, const char *token)
{
    char *copy = NULL;
    size_t len = token ? strlen(token) : 0;
    if (len > HTTP_TOKEN_MAX)
        return GG_ETOOBIG;
    if (len) {
        copy = malloc(len + 1);
        if (!copy)
            return GG_ENOMEM;
        memcpy(copy, token, len + 1);
    }
    if (self->token) {
        sodium_memzero(self->token, self->token_len);
        free(self->token);
    }
    self->token = copy;
    self->token_len = len;
    return GG_OK;
}

static int s_listen(const char *addr, int *fd_out, uint16_t *port_out, char *err, size_t errlen)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sin = {0};
    int fd = -1, one = 1, rc = GG_OK;
    if (!colon || (size_t) (colon - addr) >= sizeof host) {
        snprintf(err, errlen, "cannot listen on %s: expected IP:PORT", addr);
        return GG_EINVAL;
    }
    memcpy(host, addr, (size_t) (colon - addr));
    host[colon - addr] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    if (*end || port > 65535 || inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        snprintf(err, errlen, "cannot listen on %s: expected IP:PORT", addr);
        return GG_EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *) &sin, sizeof sin) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        rc = GG_EIO;
        goto out;
    }
    socklen_t slen = sizeof sin;
    if (getsockname(fd, (struct sockaddr *) &sin, &slen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        rc = GG_EIO;
        goto out;
    }
    *port_out = ntohs(sin.sin_port);
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int http_start(http_t *self, zloop_t *loop, const char *addr, char *err, size_t errlen)
{
    int fd = -1, rc;
    uint16_t port = 0;
    if (self->mhd) {
        snprintf(err, errlen, "the HTTP server is already running");
        return GG_EINVAL;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd has no epoll support");
        return GG_EINTERNAL;
    }
    rc = s_listen(addr, &fd, &port, err, errlen);
    if (rc)
        return rc;
    self->mhd =
        MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, s_access, self,
                         MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self, MHD_OPTION_LISTEN_SOCKET, fd,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int) HTTP_CONNECTIONS_MAX,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) HTTP_IDLE_TIMEOUT_S,
                         MHD_OPTION_NOTIFY_COMPLETED, s_completed, self, MHD_OPTION_END);
    if (!self->mhd) {
        close(fd);
        snprintf(err, errlen, "cannot start the HTTP server on %s", addr);
        return GG_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        snprintf(err, errlen, "cannot get the HTTP server's epoll descriptor");
        rc = GG_EINTERNAL;
        goto fail;
    }
    self->loop = loop;
    self->item = (zmq_pollitem_t){NULL, info->epoll_fd, ZMQ_POLLIN, 0};
    if (zloop_poller(loop, &self->item, s_on_epoll, self) != 0) {
        snprintf(err, errlen, "cannot register the HTTP server with the loop");
        rc = GG_EINTERNAL;
        goto fail;
    }
    self->polling = true;
    self->port = port;
    s_run(self); /* arm the first timer */
    return GG_OK;
fail:
    MHD_stop_daemon(self->mhd); /* closes fd */
    self->mhd = NULL;
    self->loop = NULL;
    return rc;
}

void http_stop(http_t *self)
{
    if (!self || !self->mhd)
        return;
    if (self->timer_id >= 0)
        zloop_timer_end(self->loop, self->timer_id);
    self->timer_id = -1;
    if (self->polling)
        zloop_poller_end(self->loop, &self->item);
    self->polling = false;
    MHD_stop_daemon(self->mhd);
    self->mhd = NULL;
    self->loop = NULL;
    self->port = 0;
}

uint16_t http_port(const http_t *self)
{
    return self ? self->port : 0;
}
