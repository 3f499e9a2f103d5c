/* rendezvous.c: see rendezvous.h. */
#include "rendezvous.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
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
    /* rounded down, so that no share exceeds cap_milli/1000 x the mean;
     * but never below the mean rounded up, or some targets had no room */
    uint64_t cap = (uint64_t) cap_milli * targets / ((uint64_t) 1000 * n);
    uint64_t least = (targets + n - 1) / n;
    if (cap < least)
        cap = least;
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

typedef struct {
    uint64_t order; /* the id's first 8 bytes, big-endian: sorts like the id */
    uint32_t k;
} s_by_id_t;

static const uint8_t *s_id_at(const void *base, size_t stride, uint32_t k)
{
    return (const uint8_t *) base + (size_t) k * stride;
}

static uint64_t s_order(const uint8_t *id)
{
    uint64_t v = 0;
    for (int b = 0; b < 8; b++)
        v = v << 8 | id[b];
    return v;
}

void rendezvous_sort_ids(uint32_t *idx, uint32_t n, const void *base, size_t stride)
{
    assert(idx || n == 0);
    s_by_id_t *a = n > 1 ? malloc((size_t) n * 2 * sizeof *a) : NULL;
    if (!a) {
        for (uint32_t i = 1; i < n; i++) {
            uint32_t x = idx[i], j = i;
            while (j > 0 &&
                   memcmp(s_id_at(base, stride, idx[j - 1]), s_id_at(base, stride, x), 32) > 0) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = x;
        }
        return;
    }
    s_by_id_t *tmp = a + n;
    for (uint32_t i = 0; i < n; i++)
        a[i] = (s_by_id_t){s_order(s_id_at(base, stride, idx[i])), idx[i]};
    for (unsigned shift = 0; shift < 64; shift += 8) {
        uint32_t at[257] = {0};
        for (uint32_t i = 0; i < n; i++)
            at[(a[i].order >> shift & 0xff) + 1]++;
        if (at[(a[0].order >> shift & 0xff) + 1] == n)
            continue; /* every id has this byte alike */
        for (int b = 0; b < 256; b++)
            at[b + 1] += at[b];
        for (uint32_t i = 0; i < n; i++)
            tmp[at[a[i].order >> shift & 0xff]++] = a[i];
        s_by_id_t *t = a;
        a = tmp;
        tmp = t;
    }
    for (uint32_t i = 1; i < n; i++) {
        s_by_id_t x = a[i];
        uint32_t j = i;
        while (j > 0 && a[j - 1].order == x.order &&
               memcmp(s_id_at(base, stride, a[j - 1].k), s_id_at(base, stride, x.k), 32) > 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
    for (uint32_t i = 0; i < n; i++)
        idx[i] = a[i].k;
    free(a < tmp ? a : tmp);
}
