/*
 * units.h: durations ("500ms", "2s", "10m", "1h") and sizes ("64MiB", "1GiB")
 * as written in flags, config files and plans.
 */
#ifndef GG_UNITS_H
#define GG_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration into milliseconds. Accepts an unsigned integer followed by
 * ms, s, m, h or d (a bare number is seconds). Returns 0 or GG_EINVAL. */
int units_parse_duration(const char *text, uint64_t *ms_out);

/* Parses a size into bytes: an integer with an optional B, KiB, MiB, GiB, TiB
 * (or KB/MB/GB/TB/K/M/G/T, all binary). Returns 0, GG_EINVAL or GG_ETOOBIG. */
int units_parse_size(const char *text, uint64_t *bytes_out);

/* Writes a duration such as "1.5s" or "250ms" into buf. Returns buf. */
char *units_format_duration(uint64_t ms, char *buf, size_t size);

#endif
