/*
 * rng.h: a small deterministic pseudo-random generator for the protocol core.
 *
 * The pure state machines (membership, ...) must give the same outputs for the
 * same inputs and seed, so that the simulator can replay a failing run from its
 * seed. They therefore never call rand() or read /dev/urandom: each instance
 * owns an rng_t seeded by its driver. The generator is xoshiro256** (Blackman
 * and Vigna), seeded through splitmix64 so that any 64-bit seed, 0 included,
 * gives a well-mixed state.
 *
 * rng_t is a value type (four words, no allocation): embed it in the owning
 * object. Not for secrets: keys and nonces come from libsodium.
 */
#ifndef GG_RNG_H
#define GG_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

/* Seeds the generator; the same seed always gives the same sequence. */
void rng_seed(rng_t *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t rng_next(rng_t *rng);

/* A uniform integer in [0, bound), without modulo bias; 0 when bound is 0. */
uint64_t rng_below(rng_t *rng, uint64_t bound);

/* A uniform double in [0, 1). */
double rng_unit(rng_t *rng);

/* One splitmix64 step: advances *state and returns a well-mixed value. Also
 * useful to derive per-node seeds from one simulation seed. */
uint64_t rng_splitmix64(uint64_t *state);

/* A stateless 64-bit mixing function (splitmix64's finaliser): a bijection
 * that spreads every input bit over the output, for hashing. */
uint64_t rng_mix64(uint64_t x);

#endif
