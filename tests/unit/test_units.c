/* test_units.c: duration and size parsing. */
#include "gg_error.h"
#include "gg_test.h"
#include "units.h"

static void test_durations(void)
{
    uint64_t ms = 0;
    CHECK_EQ_INT(units_parse_duration("500ms", &ms), 0);
    CHECK_EQ_INT(ms, 500);
    CHECK_EQ_INT(units_parse_duration("2s", &ms), 0);
    CHECK_EQ_INT(ms, 2000);
    CHECK_EQ_INT(units_parse_duration("10m", &ms), 0);
    CHECK_EQ_INT(ms, 600000);
    CHECK_EQ_INT(units_parse_duration("1h", &ms), 0);
    CHECK_EQ_INT(ms, 3600000);
    CHECK_EQ_INT(units_parse_duration("3", &ms), 0);
    CHECK_EQ_INT(ms, 3000);
    CHECK_EQ_INT(units_parse_duration("", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration("-1s", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration("5 s", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration("5x", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration("99999999999999999999s", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration("9999999999999999h", &ms), GG_EINVAL);
    CHECK_EQ_INT(units_parse_duration(NULL, &ms), GG_EINVAL);
}

static void test_sizes(void)
{
    uint64_t b = 0;
    CHECK_EQ_INT(units_parse_size("64MiB", &b), 0);
    CHECK_EQ_INT(b, 64ull << 20);
    CHECK_EQ_INT(units_parse_size("1GiB", &b), 0);
    CHECK_EQ_INT(b, 1ull << 30);
    CHECK_EQ_INT(units_parse_size("4096", &b), 0);
    CHECK_EQ_INT(b, 4096);
    CHECK_EQ_INT(units_parse_size("2gb", &b), 0);
    CHECK_EQ_INT(b, 2ull << 30);
    CHECK_EQ_INT(units_parse_size("1PiB", &b), GG_EINVAL);
    CHECK_EQ_INT(units_parse_size("MiB", &b), GG_EINVAL);
    CHECK_EQ_INT(units_parse_size("99999999999TiB", &b), GG_ETOOBIG);
}

static void test_format(void)
{
    char buf[32];
    CHECK_STR(units_format_duration(250, buf, sizeof buf), "250ms");
    CHECK_STR(units_format_duration(1500, buf, sizeof buf), "1.5s");
    CHECK_STR(units_format_duration(90000, buf, sizeof buf), "1.5m");
}

int main(void)
{
    GG_RUN(test_durations);
    GG_RUN(test_sizes);
    GG_RUN(test_format);
    GG_DONE();
}
