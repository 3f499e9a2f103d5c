/*
 * rendezvous.h: target ownership by rendezvous (highest random weight) hashing.
 *
 * The owner of a target is the live member with the highest score(node, target).
 * Every node computes it from its own membership view, with no coordination.
 * Adding a member moves only the targets the newcomer now scores highest on
 * (about 1/(N+1) of them); removing one moves only the targets it owned.
 * Pure: no state, no clock.
 */
#ifndef GG_RENDEZVOUS_H
#define GG_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

/* A target's hash key: SipHash-2-4 of its bytes under a fixed key. */
uint64_t rendezvous_key(const void *data, size_t len);

/* A node's seed: derived once from its 32-byte id. */
uint64_t rendezvous_node_seed(const uint8_t id[32]);

/* The score of a node for a target (higher wins). */
uint64_t rendezvous_score(uint64_t node_seed, uint64_t target_key);

/* Index of the winning node among n seeds (n > 0); ties broken by the lower
 * index, so callers should pass seeds in a canonical order (sorted by id). */
size_t rendezvous_owner(const uint64_t *node_seeds, size_t n, uint64_t target_key);

#endif
