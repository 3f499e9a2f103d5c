/* rendezvous.c: see rendezvous.h. */
#include "rendezvous.h"

#include <assert.h>
#include <sodium.h>

static const unsigned char s_key[crypto_shorthash_KEYBYTES] = "gaggle-owners-01";

static uint64_t s_load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t rendezvous_key(const void *data, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, data, len, s_key);
    return s_load64(out);
}

uint64_t rendezvous_node_seed(const uint8_t id[32])
{
    return rendezvous_key(id, 32);
}

/* A strong 64-bit mixer (splitmix64's finaliser) of the pair. */
uint64_t rendezvous_score(uint64_t node_seed, uint64_t target_key)
{
    uint64_t z = node_seed ^ (target_key * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint32_t rendezvous_cap(size_t targets, size_t n, uint32_t cap_milli)
{
    if (n == 0)
        return 0;
    uint64_t num = (uint64_t) cap_milli * targets, den = (uint64_t) 1000 * n;
    uint64_t cap = (num + den - 1) / den;
    if (cap * n < targets) /* cap_milli below 1000: everyone still gets one */
        cap = (targets + n - 1) / n;
    return cap > UINT32_MAX ? UINT32_MAX : (cap ? (uint32_t) cap : 1);
}

size_t rendezvous_owner_bounded(const uint64_t *node_seeds, size_t n, uint64_t target_key,
                                uint32_t cap, uint32_t *load)
{
    assert(n > 0);
    size_t best = n;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (load[i] >= cap)
            continue;
        uint64_t s = rendezvous_score(node_seeds[i], target_key);
        if (best == n || s > best_score) {
            best = i;
            best_score = s;
        }
    }
    if (best == n) /* every node full: only when the caller's cap is too small */
        best = rendezvous_owner(node_seeds, n, target_key);
    load[best]++;
    return best;
}

size_t rendezvous_owner(const uint64_t *node_seeds, size_t n, uint64_t target_key)
{
    assert(n > 0);
    size_t best = 0;
    uint64_t best_score = rendezvous_score(node_seeds[0], target_key);
    for (size_t i = 1; i < n; i++) {
        uint64_t s = rendezvous_score(node_seeds[i], target_key);
        if (s > best_score) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

bool rendezvous_is_owner(const uint64_t *node_seeds, size_t n, uint64_t target_key, size_t self,
                         size_t *scored)
{
    assert(self < n);
    uint64_t mine = rendezvous_score(node_seeds[self], target_key);
    bool own = true;
    size_t i;
    /* rendezvous_owner keeps the first of equal scores: a node before self
     * wins a tie, one after it does not */
    for (i = 0; own && i < n; i++)
        if (i != self) {
            uint64_t s = rendezvous_score(node_seeds[i], target_key);
            own = i < self ? s < mine : s <= mine;
        }
    if (scored)
        *scored = i;
    return own;
}
