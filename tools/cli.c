/*
 * cli.c: the CLI's shared plumbing (see cli.h): global flags, the token, and
 * HTTP to the agent through libcurl with bounded answers parsed by jansson.
 */
#include "cli.h"
#include "gg_error.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cli_options_t s_options = {CLI_DEFAULT_ADDR, false};

/* ---- globals ---- */

void cli_fail(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "gaggle: %s\n", line);
}

static int s_check_addr(const char *addr)
{
    size_t len = strlen(addr);
    if (len == 0 || len > CLI_ADDR_MAX || strpbrk(addr, "/?#@ \t\r\n") || !strchr(addr, ':'))
        return GG_EINVAL;
    return GG_OK;
}

int cli_parse_globals(int *argc, char **argv)
{
    const char *env = getenv("GAGGLE_ADDR");
    if (env && *env)
        s_options.addr = env;
    int out = 1;
    bool done = false;
    for (int i = 1; i < *argc; i++) {
        const char *arg = argv[i];
        if (done) {
            argv[out++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            done = true;
            argv[out++] = argv[i];
        } else if (strcmp(arg, "--json") == 0) {
            s_options.json = true;
        } else if (strcmp(arg, "--addr") == 0) {
            if (i + 1 >= *argc) {
                cli_fail("--addr needs a value (IP:PORT)");
                return CLI_EXIT_USAGE;
            }
            s_options.addr = argv[++i];
        } else if (strncmp(arg, "--addr=", 7) == 0) {
            s_options.addr = arg + 7;
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    *argc = out;
    if (strncmp(s_options.addr, "http://", 7) == 0)
        s_options.addr += 7;
    if (s_check_addr(s_options.addr) != 0) {
        cli_fail("--addr: expected IP:PORT, got '%.100s'", s_options.addr);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

const cli_options_t *cli_options(void)
{
    return &s_options;
}

/* ---- token ---- */

/* The token from GAGGLE_HTTP_TOKEN, else the file GAGGLE_HTTP_TOKEN_FILE;
 * *out NULL when neither is set. */
static int s_token(char **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *env = getenv("GAGGLE_HTTP_TOKEN");
    if (env && *env) {
        if (strlen(env) > CLI_TOKEN_MAX || strpbrk(env, "\r\n")) {
            snprintf(err, errlen, "GAGGLE_HTTP_TOKEN must be one line of at most %d bytes",
                     CLI_TOKEN_MAX);
            return GG_ECONFIG;
        }
        *out = strdup(env);
        return *out ? GG_OK : GG_ENOMEM;
    }
    const char *path = getenv("GAGGLE_HTTP_TOKEN_FILE");
    if (!path || !*path)
        return GG_OK;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "cannot read GAGGLE_HTTP_TOKEN_FILE %s: %s", path, strerror(errno));
        return GG_ECONFIG;
    }
    char *buf = calloc(1, CLI_TOKEN_MAX + 2);
    int rc = GG_OK;
    if (!buf) {
        rc = GG_ENOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, CLI_TOKEN_MAX + 1, f);
    while (n &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0 || n > CLI_TOKEN_MAX || strlen(buf) != n || strpbrk(buf, "\r\n")) {
        snprintf(err, errlen, "GAGGLE_HTTP_TOKEN_FILE %s must hold one token on one line", path);
        rc = GG_ECONFIG;
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* ---- HTTP ---- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool too_big;
} s_body_t;

static size_t s_on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_body_t *b = arg;
    size_t n = size * nmemb;
    if (n > CLI_RESPONSE_MAX - b->len) {
        b->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return 0;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static int s_request(const char *addr, const char *path, const void *body, size_t len, bool post,
                     json_t **json, long *status, char *err, size_t errlen)
{
    int rc = GG_OK;
    char url[CLI_ADDR_MAX + 4096], cerr[CURL_ERROR_SIZE] = "";
    char *token = NULL, *auth = NULL;
    struct curl_slist *headers = NULL;
    s_body_t answer = {0};
    CURL *curl = NULL;

    *json = NULL;
    *status = 0;
    if (strncmp(addr, "http://", 7) == 0)
        addr += 7;
    if (s_check_addr(addr) != 0 || path[0] != '/' || strlen(path) > 4000) {
        snprintf(err, errlen, "bad agent address '%.100s' or path", addr);
        return GG_EINVAL;
    }
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    rc = s_token(&token, err, errlen);
    if (rc)
        return rc;
    curl = curl_easy_init();
    if (!curl) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (token) {
        size_t n = strlen(token) + 32;
        auth = malloc(n);
        if (!auth) {
            rc = GG_ENOMEM;
            goto out;
        }
        snprintf(auth, n, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    if (post)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (!headers) {
        rc = GG_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long) CURLPROTO_HTTP);
#endif
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*"); /* the agent is local: never a proxy */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CLI_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, CLI_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "gaggle/" GAGGLE_VERSION);
    if (post) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
    }
    CURLcode cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        long os_errno = 0;
        curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
        const char *why =
            os_errno ? strerror((int) os_errno) : (cerr[0] ? cerr : curl_easy_strerror(cc));
        if (answer.too_big) {
            rc = GG_ETOOBIG;
            snprintf(err, errlen, "the agent at %s sent an answer larger than %u bytes", addr,
                     CLI_RESPONSE_MAX);
        } else if (cc == CURLE_OPERATION_TIMEDOUT) {
            rc = GG_ETIMEOUT;
            snprintf(err, errlen, "the agent at %s did not answer in time (is it overloaded?)",
                     addr);
        } else {
            rc = GG_ECONN;
            snprintf(err, errlen,
                     "cannot reach the agent at %s: %s (is gaggled running? set --addr or "
                     "GAGGLE_ADDR)",
                     addr, why);
        }
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    if (answer.len) {
        json_error_t jerr;
        *json = json_loadb(answer.data, answer.len, JSON_DECODE_ANY, &jerr);
    }
out:
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(answer.data);
    return rc;
}

int cli_get(const char *addr, const char *path, json_t **json, long *status, char *err,
            size_t errlen)
{
    return s_request(addr, path, NULL, 0, false, json, status, err, errlen);
}

int cli_post(const char *addr, const char *path, const void *body, size_t len, json_t **json,
             long *status, char *err, size_t errlen)
{
    return s_request(addr, path, body, len, true, json, status, err, errlen);
}

int cli_call(const char *path, const void *body, size_t len, json_t **out)
{
    char err[1024];
    long status = 0;
    json_t *json = NULL;
    int rc;
    *out = NULL;
    if (body)
        rc = cli_post(s_options.addr, path, body, len, &json, &status, err, sizeof err);
    else
        rc = cli_get(s_options.addr, path, &json, &status, err, sizeof err);
    if (rc) {
        cli_fail("%s", err);
        return CLI_EXIT_FAIL;
    }
    if (status < 200 || status > 299) {
        const char *msg = json_string_value(json_object_get(json, "error"));
        if (status == 401)
            cli_fail("%s (set GAGGLE_HTTP_TOKEN or GAGGLE_HTTP_TOKEN_FILE)",
                     msg ? msg : "the agent needs a bearer token");
        else if (msg)
            cli_fail("%s", msg);
        else
            cli_fail("the agent at %s answered HTTP %ld for %s", s_options.addr, status, path);
        json_decref(json);
        return CLI_EXIT_FAIL;
    }
    if (!json) {
        cli_fail("the agent at %s sent an answer that is not JSON for %s", s_options.addr, path);
        return CLI_EXIT_FAIL;
    }
    *out = json;
    return CLI_EXIT_OK;
}

int cli_print_json(const json_t *value)
{
    if (json_dumpf(value, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0)
        return CLI_EXIT_FAIL;
    fputc('\n', stdout);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

char *cli_url_escape(const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(text);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char) *p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
