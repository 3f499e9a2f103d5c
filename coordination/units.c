/* units.c: see units.h. */
#include "units.h"
#include "gg_error.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Reads the leading unsigned decimal number; *end points past it. */
static int s_leading_number(const char *text, uint64_t *value, const char **end)
{
    const char *p = text;
    uint64_t v = 0;
    if (!isdigit((unsigned char) *p))
        return GG_EINVAL;
    while (isdigit((unsigned char) *p)) {
        unsigned d = (unsigned) (*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return GG_ETOOBIG;
        v = v * 10 + d;
        p++;
    }
    *value = v;
    *end = p;
    return GG_OK;
}

static int s_scale(uint64_t v, uint64_t mult, uint64_t *out)
{
    if (mult != 0 && v > UINT64_MAX / mult)
        return GG_ETOOBIG;
    *out = v * mult;
    return GG_OK;
}

int units_parse_duration(const char *text, uint64_t *ms_out)
{
    if (!text)
        return GG_EINVAL;
    uint64_t v;
    const char *unit;
    int rc = s_leading_number(text, &v, &unit);
    if (rc)
        return rc == GG_ETOOBIG ? GG_EINVAL : rc;
    uint64_t mult;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        mult = 1000;
    else if (strcmp(unit, "ms") == 0)
        mult = 1;
    else if (strcmp(unit, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(unit, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(unit, "d") == 0)
        mult = 24 * 3600 * 1000;
    else
        return GG_EINVAL;
    return s_scale(v, mult, ms_out) ? GG_EINVAL : GG_OK;
}

int units_parse_size(const char *text, uint64_t *bytes_out)
{
    if (!text)
        return GG_EINVAL;
    uint64_t v;
    const char *unit;
    int rc = s_leading_number(text, &v, &unit);
    if (rc)
        return rc;
    static const struct {
        const char *name;
        unsigned shift;
    } units[] = {
        {"", 0},     {"B", 0},  {"K", 10},  {"KB", 10},  {"KiB", 10}, {"M", 20},  {"MB", 20},
        {"MiB", 20}, {"G", 30}, {"GB", 30}, {"GiB", 30}, {"T", 40},   {"TB", 40}, {"TiB", 40},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(unit, units[i].name) == 0)
            return s_scale(v, (uint64_t) 1 << units[i].shift, bytes_out);
    return GG_EINVAL;
}

char *units_format_duration(uint64_t ms, char *buf, size_t size)
{
    if (ms < 1000)
        snprintf(buf, size, "%llums", (unsigned long long) ms);
    else if (ms < 60 * 1000)
        snprintf(buf, size, "%.1fs", (double) ms / 1000.0);
    else if (ms < 3600 * 1000)
        snprintf(buf, size, "%.1fm", (double) ms / 60000.0);
    else
        snprintf(buf, size, "%.1fh", (double) ms / 3600000.0);
    return buf;
}
