/*
 * cmd_keygen.c: `gaggle keygen operator|node`.
 *
 *   gaggle keygen operator --out DIR [--name NAME]
 *       DIR/NAME.key (secret, 0600) and DIR/NAME.pub; NAME defaults to
 *       "operator".
 *   gaggle keygen node --name NAME --out DIR --sign-with OPERATOR.key
 *                      [--valid-days N]
 *       DIR/NAME.key (CURVE secret, 0600) and DIR/NAME.cert, signed by the
 *       operator, valid for N days (default 365, 1..36500).
 *
 * Existing files are never overwritten: every output path is checked before
 * anything is generated, and the library creates files exclusively anyway.
 * If the second file of a pair cannot be written, the first is removed, so a
 * failed run leaves nothing behind. Exit codes: 0 done, 1 runtime failure,
 * 2 usage error; errors are one line on stderr.
 */
#include "cmd_keygen.h"
#include "cert.h"
#include "gg_error.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define KEYGEN_DEFAULT_DAYS 365
#define KEYGEN_MAX_DAYS     36500
#define EXIT_RUNTIME        1
#define EXIT_USAGE          2

static const char s_usage[] =
    "usage: gaggle keygen operator --out DIR [--name NAME] [--json]\n"
    "       gaggle keygen node --name NAME --out DIR --sign-with OPERATOR.key\n"
    "                          [--valid-days N] [--json]\n"
    "\n"
    "operator   make an Ed25519 operator key pair: DIR/NAME.key (secret, mode 0600)\n"
    "           and DIR/NAME.pub (NAME defaults to \"operator\"). Agents trust the\n"
    "           .pub files found in their --operators directory.\n"
    "node       make a node's CURVE key pair and a certificate for it signed with\n"
    "           the operator's secret key: DIR/NAME.key (secret, mode 0600) and\n"
    "           DIR/NAME.cert, valid for N days (default 365, at most 36500).\n"
    "\n"
    "options:\n"
    "  --out DIR              directory for the new files (created, mode 0700, if missing)\n"
    "  --name NAME            1-64 letters, digits, '.', '_' or '-', starting with a\n"
    "                         letter or digit\n"
    "  --sign-with FILE       the operator's secret key file (node only)\n"
    "  --valid-days N         certificate validity in days (node only)\n"
    "  --json                 print the result as JSON\n"
    "  -h, --help             show this help\n"
    "\n"
    "Existing files are never overwritten.\n";

typedef struct {
    const char *kind;
    const char *out;
    const char *name;
    const char *sign_with;
    const char *valid_days;
    bool json;
    bool help;
} s_args_t;

static void s_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void s_fail(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "gaggle: keygen: %s\n", line);
}

/* Matches "--flag VALUE" or "--flag=VALUE". Returns 1 when argv[*i] is the
 * flag (with *value set, *i advanced past a separate value), 0 when it is
 * not, -1 when the value is missing. */
static int s_flag(int argc, char **argv, int *i, const char *flag, const char **value)
{
    const char *arg = argv[*i];
    size_t len = strlen(flag);
    if (strncmp(arg, flag, len) != 0)
        return 0;
    if (arg[len] == '=') {
        *value = arg + len + 1;
        return **value ? 1 : -1;
    }
    if (arg[len] != '\0')
        return 0;
    if (*i + 1 >= argc || argv[*i + 1][0] == '\0' || strncmp(argv[*i + 1], "--", 2) == 0)
        return -1;
    *value = argv[++*i];
    return 1;
}

static int s_parse(int argc, char **argv, s_args_t *args)
{
    static const char *const flags[] = {"--out", "--name", "--sign-with", "--valid-days", "--addr"};
    const char *ignored = NULL;
    const char **slots[] = {&args->out, &args->name, &args->sign_with, &args->valid_days, &ignored};
    memset(args, 0, sizeof *args);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--json") == 0) {
            args->json = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            args->help = true;
            continue;
        }
        bool matched = false;
        for (size_t f = 0; f < sizeof flags / sizeof flags[0] && !matched; f++) {
            const char *value = NULL;
            int rc = s_flag(argc, argv, &i, flags[f], &value);
            if (rc == 0)
                continue;
            if (rc < 0) {
                s_fail("%s needs a value", flags[f]);
                return EXIT_USAGE;
            }
            /* --addr is the CLI's global flag: accepted, not used here. */
            if (*slots[f] && slots[f] != &ignored) {
                s_fail("%s given twice", flags[f]);
                return EXIT_USAGE;
            }
            *slots[f] = value;
            matched = true;
        }
        if (matched)
            continue;
        if (arg[0] == '-') {
            s_fail("unknown option '%s' (see gaggle keygen --help)", arg);
            return EXIT_USAGE;
        }
        if (args->kind) {
            s_fail("unexpected argument '%s' (see gaggle keygen --help)", arg);
            return EXIT_USAGE;
        }
        args->kind = arg;
    }
    return 0;
}

static int s_check_name(const char *name)
{
    if (cert_check_name(name) == 0)
        return 0;
    s_fail("invalid name '%s': use 1-%d letters, digits, '.', '_' or '-', starting with a "
           "letter or digit",
           name, CERT_NAME_MAX);
    return EXIT_USAGE;
}

static int s_join(char *out, size_t size, const char *dir, const char *name, const char *suffix)
{
    size_t dlen = strlen(dir);
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    int n = snprintf(out, size, "%s%s%s%s", dir, sep, name, suffix);
    if (n < 0 || (size_t) n >= size) {
        s_fail("--out path is too long");
        return EXIT_USAGE;
    }
    return 0;
}

/* The output directory must be a directory if it exists, and no output file
 * may exist yet. */
static int s_check_outputs(const char *dir, const char *a, const char *b)
{
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        s_fail("%s exists and is not a directory", dir);
        return EXIT_RUNTIME;
    }
    const char *paths[] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (lstat(paths[i], &st) == 0) {
            s_fail("%s already exists; refusing to overwrite it", paths[i]);
            return EXIT_RUNTIME;
        }
        if (errno != ENOENT && errno != ENOTDIR) {
            s_fail("cannot check %s: %s", paths[i], strerror(errno));
            return EXIT_RUNTIME;
        }
    }
    return 0;
}

static void s_save_error(const char *path, int rc)
{
    if (rc == GG_EEXIST)
        s_fail("%s already exists; refusing to overwrite it", path);
    else
        s_fail("cannot write %s: %s", path, gg_strerror(rc));
}

static void s_z85(const uint8_t key[CERT_PUBLIC_LEN], char out[CERT_PUBLIC_LEN * 5 / 4 + 1])
{
    zmq_z85_encode(out, key, CERT_PUBLIC_LEN);
}

static void s_format_time(uint64_t t, char *buf, size_t size)
{
    time_t tt = (time_t) t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%llu", (unsigned long long) t);
}

/* Prints a JSON object (and takes ownership of it). */
static int s_print_json(json_t *obj)
{
    int rc = 0;
    if (!obj) {
        s_fail("out of memory");
        return EXIT_RUNTIME;
    }
    char *text = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        s_fail("out of memory");
        rc = EXIT_RUNTIME;
    } else {
        printf("%s\n", text);
        free(text);
    }
    json_decref(obj);
    return rc;
}

static int s_finish_output(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        s_fail("cannot write to standard output");
        return EXIT_RUNTIME;
    }
    return 0;
}

static int s_operator(const s_args_t *args)
{
    operator_key_t key;
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    char pub_z85[CERT_PUBLIC_LEN * 5 / 4 + 1];
    const char *name = args->name ? args->name : "operator";
    int rc;
    memset(&key, 0, sizeof key);

    if (args->sign_with || args->valid_days) {
        s_fail("%s applies to keygen node only", args->sign_with ? "--sign-with" : "--valid-days");
        return EXIT_USAGE;
    }
    if (!args->out) {
        s_fail("operator: --out DIR is required");
        return EXIT_USAGE;
    }
    if ((rc = s_check_name(name)) != 0)
        return rc;
    if ((rc = s_join(key_path, sizeof key_path, args->out, name, ".key")) != 0 ||
        (rc = s_join(pub_path, sizeof pub_path, args->out, name, ".pub")) != 0)
        return rc;
    if ((rc = s_check_outputs(args->out, key_path, pub_path)) != 0)
        return rc;

    int err = operator_key_generate(name, &key);
    if (err != GG_OK) {
        s_fail("cannot generate a key pair: %s", gg_strerror(err));
        rc = EXIT_RUNTIME;
        goto out;
    }
    err = operator_key_save(&key, args->out);
    if (err != GG_OK) {
        if (err == GG_EEXIST)
            s_fail("%s or %s already exists; refusing to overwrite it", key_path, pub_path);
        else
            s_fail("cannot write the key pair in %s: %s", args->out, gg_strerror(err));
        rc = EXIT_RUNTIME;
        goto out;
    }
    s_z85(key.public_key, pub_z85);
    if (args->json) {
        rc = s_print_json(json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", "operator", "name", name,
                                    "secret_key_file", key_path, "public_key_file", pub_path,
                                    "public_key", pub_z85));
    } else {
        printf("wrote %s (secret key, mode 0600: keep it safe, never share it)\n", key_path);
        printf("wrote %s (public key: copy it into every agent's --operators directory)\n",
               pub_path);
        printf("operator public key: %s\n", pub_z85);
    }
    if (rc == 0)
        rc = s_finish_output();
out:
    operator_key_wipe(&key);
    return rc;
}

static int s_parse_days(const char *text, uint32_t *days)
{
    uint64_t v = 0;
    bool ok = text && *text && strlen(text) <= 6;
    for (const char *p = text; ok && *p; p++) {
        if (*p < '0' || *p > '9')
            ok = false;
        else
            v = v * 10 + (uint64_t) (*p - '0');
    }
    if (!ok || v < 1 || v > KEYGEN_MAX_DAYS) {
        s_fail("--valid-days must be a whole number of days from 1 to %d", KEYGEN_MAX_DAYS);
        return EXIT_USAGE;
    }
    *days = (uint32_t) v;
    return 0;
}

static void s_load_error(const char *path, int err)
{
    switch (err) {
    case GG_ENOTFOUND: s_fail("cannot read %s: no such file", path); break;
    case GG_EPERM: s_fail("cannot read %s: permission denied", path); break;
    case GG_ECRYPTO:
        s_fail("%s is damaged: its public key does not match its secret key", path);
        break;
    case GG_EMALFORMED:
    case GG_ETOOBIG:
    case GG_EINVAL: s_fail("%s is not an operator key file", path); break;
    default: s_fail("cannot read %s: %s", path, gg_strerror(err)); break;
    }
}

static int s_node(const s_args_t *args)
{
    operator_key_t op;
    node_key_t key;
    cert_t cert;
    trust_t *trust = NULL;
    char key_path[PATH_MAX], cert_path[PATH_MAX];
    char node_z85[CERT_PUBLIC_LEN * 5 / 4 + 1], op_z85[CERT_PUBLIC_LEN * 5 / 4 + 1];
    char expires_text[64];
    uint32_t days = KEYGEN_DEFAULT_DAYS;
    bool key_written = false, cert_written = false;
    int rc;
    memset(&op, 0, sizeof op);
    memset(&key, 0, sizeof key);

    const char *missing = !args->name        ? "--name NAME"
                          : !args->out       ? "--out DIR"
                          : !args->sign_with ? "--sign-with OPERATOR.key"
                                             : NULL;
    if (missing) {
        s_fail("node: %s is required", missing);
        return EXIT_USAGE;
    }
    if ((rc = s_check_name(args->name)) != 0)
        return rc;
    if (args->valid_days && (rc = s_parse_days(args->valid_days, &days)) != 0)
        return rc;
    if ((rc = s_join(key_path, sizeof key_path, args->out, args->name, ".key")) != 0 ||
        (rc = s_join(cert_path, sizeof cert_path, args->out, args->name, ".cert")) != 0)
        return rc;
    if ((rc = s_check_outputs(args->out, key_path, cert_path)) != 0)
        return rc;

    int err = operator_key_load(args->sign_with, &op);
    if (err != GG_OK) {
        s_load_error(args->sign_with, err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    if (!op.has_secret) {
        s_fail("%s holds only a public key; --sign-with needs the operator's secret .key file",
               args->sign_with);
        rc = EXIT_RUNTIME;
        goto out;
    }
    uint64_t now = (uint64_t) time(NULL);
    if ((err = node_key_generate(args->name, &key)) != GG_OK ||
        (err = cert_issue(&key, &op, now, days, &cert)) != GG_OK) {
        s_fail("cannot make the node key and certificate: %s", gg_strerror(err));
        rc = EXIT_RUNTIME;
        goto out;
    }
    /* Never hand out a certificate an agent trusting this operator would refuse. */
    trust = trust_new();
    if (!trust || trust_add_operator(trust, op.public_key) != GG_OK ||
        (err = trust_verify_cert(trust, &cert, now)) != GG_OK) {
        s_fail("the new certificate does not verify: %s", gg_strerror(trust ? err : GG_ENOMEM));
        rc = EXIT_RUNTIME;
        goto out;
    }
    if ((err = node_key_save(&key, key_path)) != GG_OK) {
        s_save_error(key_path, err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    key_written = true;
    if ((err = cert_save(&cert, cert_path)) != GG_OK) {
        s_save_error(cert_path, err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    cert_written = true;
    s_z85(key.public_key, node_z85);
    s_z85(op.public_key, op_z85);
    s_format_time(cert.expires, expires_text, sizeof expires_text);
    if (args->json) {
        rc = s_print_json(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "kind", "node",
                                    "name", args->name, "secret_key_file", key_path, "cert_file",
                                    cert_path, "public_key", node_z85, "operator_name", op.name,
                                    "operator_key", op_z85, "issued", (json_int_t) cert.issued,
                                    "expires", (json_int_t) cert.expires));
    } else {
        printf("wrote %s (node secret key, mode 0600: keep it on this node only)\n", key_path);
        printf("wrote %s (certificate signed by operator \"%s\", valid until %s)\n", cert_path,
               op.name, expires_text);
        printf("node id (CURVE public key): %s\n", node_z85);
    }
    if (rc == 0)
        rc = s_finish_output();
out:
    if (key_written && !cert_written)
        unlink(key_path); /* no key without its certificate */
    trust_destroy(&trust);
    node_key_wipe(&key);
    operator_key_wipe(&op);
    return rc;
}

int cmd_keygen(int argc, char **argv)
{
    s_args_t args;
    int rc = s_parse(argc, argv, &args);
    if (rc != 0)
        return rc;
    if (args.help) {
        fputs(s_usage, stdout);
        return s_finish_output();
    }
    if (!args.kind) {
        s_fail("say what to generate: operator or node (see gaggle keygen --help)");
        return EXIT_USAGE;
    }
    if (strcmp(args.kind, "operator") == 0)
        return s_operator(&args);
    if (strcmp(args.kind, "node") == 0)
        return s_node(&args);
    s_fail("unknown key kind '%s': use operator or node", args.kind);
    return EXIT_USAGE;
}
