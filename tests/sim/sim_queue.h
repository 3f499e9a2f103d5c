/*
 * sim_queue.h: the simulator's event queue, a binary min-heap keyed by
 * (virtual time, sequence number).
 *
 * The sequence number is assigned at insertion and strictly increases, so two
 * events due at the same millisecond always come out in the order they were
 * queued: the run depends on nothing but the seed (no pointer values, no
 * allocation addresses, no hash-table iteration order). The heap has a fixed
 * maximum; pushing beyond it fails instead of growing without bound.
 */
#ifndef GG_SIM_QUEUE_H
#define GG_SIM_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t at;   /* virtual time, ms */
    uint64_t seq;  /* insertion order: the tie-breaker */
    uint32_t kind; /* what happens (the simulator's SIM_EV_*) */
    uint32_t node; /* the node it happens to, when any */
    uint64_t arg;  /* kind-specific: a generation, a flag, an index */
    void *ptr;     /* kind-specific: a packet */
} sim_event_t;

typedef struct _sim_queue_t sim_queue_t;

/* A queue holding at most max_events events; NULL on allocation failure. */
sim_queue_t *sim_queue_new(size_t max_events);
/* Frees the queue. Events still queued are dropped: drain them first with
 * sim_queue_pop when they own memory. NULL-safe; clears the pointer. */
void sim_queue_destroy(sim_queue_t **self_p);

/* Queues an event. Returns 0, GG_ETOOBIG when the queue is at its maximum or
 * GG_ENOMEM. */
int sim_queue_push(sim_queue_t *q, uint64_t at, uint32_t kind, uint32_t node, uint64_t arg,
                   void *ptr);
/* Takes the earliest event (lowest time, then lowest sequence); false when
 * the queue is empty. */
bool sim_queue_pop(sim_queue_t *q, sim_event_t *out);
size_t sim_queue_size(const sim_queue_t *q);
/* The largest number of events queued at once so far. */
size_t sim_queue_high_water(const sim_queue_t *q);

#endif
