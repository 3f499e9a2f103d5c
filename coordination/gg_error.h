/*
 * gg_error.h: the project-wide error codes.
 *
 * Every function that can fail returns int: 0 (GG_OK) on success or one of the
 * negative codes below. gg_strerror() turns a code into one short sentence
 * fragment suitable for logs and for the CLI's one-line errors.
 */
#ifndef GG_ERROR_H
#define GG_ERROR_H

typedef enum {
    GG_OK = 0,
    GG_ENOMEM = -1,     /* allocation failed */
    GG_EINVAL = -2,     /* invalid argument or input */
    GG_EIO = -3,        /* I/O error */
    GG_ENOTFOUND = -4,  /* no such key, file or entity */
    GG_EEXIST = -5,     /* already exists */
    GG_EMAPFULL = -6,   /* LMDB map is full */
    GG_ENOSPC = -7,     /* no space left on device */
    GG_ESCHEMA = -8,    /* store schema is newer than this build */
    GG_EMALFORMED = -9, /* malformed message or document */
    GG_ETOOBIG = -10,   /* over a size bound */
    GG_EVERSION = -11,  /* unsupported protocol version */
    GG_ECRYPTO = -12,   /* signature or key check failed */
    GG_EEXPIRED = -13,  /* certificate expired or not yet valid */
    GG_EREVOKED = -14,  /* certificate revoked */
    GG_EPERM = -15,     /* not permitted */
    GG_ECONFIG = -16,   /* bad configuration */
    GG_ETIMEOUT = -17,  /* timed out */
    GG_ECONN = -18,     /* connection failed */
    GG_EBUSY = -19,     /* resource busy */
    GG_ESTALE = -20,    /* lower epoch or older version: superseded */
    GG_EINTERNAL = -21, /* impossible state reached */
    GG_ECONFLICT = -22, /* conflicts with existing state */
} gg_err_t;

static inline const char *gg_strerror(int err)
{
    switch (err) {
    case GG_OK: return "success";
    case GG_ENOMEM: return "out of memory";
    case GG_EINVAL: return "invalid argument";
    case GG_EIO: return "input/output error";
    case GG_ENOTFOUND: return "not found";
    case GG_EEXIST: return "already exists";
    case GG_EMAPFULL: return "store map is full (raise --map-size)";
    case GG_ENOSPC: return "no space left on device";
    case GG_ESCHEMA: return "store schema is newer than this build";
    case GG_EMALFORMED: return "malformed input";
    case GG_ETOOBIG: return "too big";
    case GG_EVERSION: return "unsupported version";
    case GG_ECRYPTO: return "signature or key verification failed";
    case GG_EEXPIRED: return "certificate expired or not yet valid";
    case GG_EREVOKED: return "certificate revoked";
    case GG_EPERM: return "not permitted";
    case GG_ECONFIG: return "bad configuration";
    case GG_ETIMEOUT: return "timed out";
    case GG_ECONN: return "connection failed";
    case GG_EBUSY: return "busy";
    case GG_ESTALE: return "stale (superseded by a newer epoch or version)";
    case GG_EINTERNAL: return "internal error";
    case GG_ECONFLICT: return "conflicts with existing state";
    default: return "unknown error";
    }
}

#if defined(__GNUC__)
#define GG_MUST_CHECK __attribute__((warn_unused_result))
#else
#define GG_MUST_CHECK
#endif

#endif
