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

#include <stdbool.h>
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
/* Whether node `self` (< n) is rendezvous_owner's answer, without scoring
 * every node when it is not: the scan stops at the first node that beats
 * it, after about ln n scores on average instead of n. *scored (may be
 * NULL) is set to the number of scores computed. */
bool rendezvous_is_owner(const uint64_t *node_seeds, size_t n, uint64_t target_key, size_t self,
                         size_t *scored);

/* The canonical order: sorts idx[0..n) so that the 32-byte ids at
 * base + idx[i] * stride are in bytewise order (distinct ids; equal ones
 * keep no particular order). A radix sort of the ids' first 8 bytes, ids
 * sharing those put in order by insertion: a fleet's table is rebuilt at
 * every view change, and at 1,000 members a comparison sort's mispredicted
 * branches were most of the rebuild. Insertion sort alone when no scratch
 * memory is left. */
void rendezvous_sort_ids(uint32_t *idx, uint32_t n, const void *base, size_t stride);

/* Bounded load (DESIGN.md §3): no node owns more than `cap` of a set of
 * targets. Targets are assigned in a fixed order (their index in the plan),
 * each to the highest-scoring node that still has room, so every node with
 * the same view computes the same assignment. rendezvous_cap gives
 * floor(cap_milli/1000 * targets / n), so no share exceeds cap_milli/1000 x
 * the mean, but at least ceil(targets / n) (and 1), so there is always
 * room. A join moves more than 1/(N+1) of the targets (the
 * caps shift), but no node's share exceeds the cap. */
uint32_t rendezvous_cap(size_t targets, size_t n, uint32_t cap_milli);
/* One step: the owner of target_key among n nodes given the loads so far
 * (load[i] < cap for some i); increments load of the chosen node. */
size_t rendezvous_owner_bounded(const uint64_t *node_seeds, size_t n, uint64_t target_key,
                                uint32_t cap, uint32_t *load);

#endif
