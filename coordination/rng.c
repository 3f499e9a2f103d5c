/*
 * rng.c: xoshiro256** seeded by splitmix64 (see rng.h for why the protocol
 * core carries its own generator).
 */
#include "rng.h"

#include <assert.h>
#include <stddef.h>

uint64_t rng_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t rng_splitmix64(uint64_t *state)
{
    assert(state);
    *state += 0x9e3779b97f4a7c15ull;
    return rng_mix64(*state);
}

void rng_seed(rng_t *rng, uint64_t seed)
{
    assert(rng);
    uint64_t sm = seed;
    for (size_t i = 0; i < 4; i++)
        rng->s[i] = rng_splitmix64(&sm);
    /* splitmix64 cannot return four zero words in a row, but keep the
     * generator's one forbidden state impossible by construction. */
    if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0)
        rng->s[0] = 1;
}

static inline uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(rng_t *rng)
{
    assert(rng);
    uint64_t *s = rng->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

uint64_t rng_below(rng_t *rng, uint64_t bound)
{
    if (bound == 0)
        return 0;
    /* Rejection sampling: draw until the value falls below the largest
     * multiple of bound, so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    uint64_t x;
    do {
        x = rng_next(rng);
    } while (x >= limit);
    return x % bound;
}

double rng_unit(rng_t *rng)
{
    return (double) (rng_next(rng) >> 11) * 0x1.0p-53;
}
