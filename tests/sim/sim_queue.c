/*
 * sim_queue.c: binary min-heap of events ordered by (time, sequence).
 * See sim_queue.h for the contract.
 */
#include "sim_queue.h"

#include "gg_error.h"

#include <stdlib.h>

struct _sim_queue_t {
    sim_event_t *v;
    size_t n, cap, max, high;
    uint64_t next_seq;
};

sim_queue_t *sim_queue_new(size_t max_events)
{
    if (max_events == 0)
        return NULL;
    sim_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->max = max_events;
    return q;
}

void sim_queue_destroy(sim_queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->v);
    free(*self_p);
    *self_p = NULL;
}

static bool s_before(const sim_event_t *a, const sim_event_t *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

int sim_queue_push(sim_queue_t *q, uint64_t at, uint32_t kind, uint32_t node, uint64_t arg,
                   void *ptr)
{
    if (q->n == q->cap) {
        if (q->cap >= q->max)
            return GG_ETOOBIG;
        size_t cap = q->cap ? q->cap * 2 : 1024;
        if (cap > q->max)
            cap = q->max;
        sim_event_t *nv = realloc(q->v, cap * sizeof *nv);
        if (!nv)
            return GG_ENOMEM;
        q->v = nv;
        q->cap = cap;
    }
    sim_event_t ev = {
        .at = at, .seq = q->next_seq++, .kind = kind, .node = node, .arg = arg, .ptr = ptr};
    size_t i = q->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_before(&ev, &q->v[parent]))
            break;
        q->v[i] = q->v[parent];
        i = parent;
    }
    q->v[i] = ev;
    if (q->n > q->high)
        q->high = q->n;
    return 0;
}

bool sim_queue_pop(sim_queue_t *q, sim_event_t *out)
{
    if (q->n == 0)
        return false;
    *out = q->v[0];
    sim_event_t last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const sim_event_t *b = &last;
        if (l < q->n && s_before(&q->v[l], b)) {
            best = l;
            b = &q->v[l];
        }
        if (r < q->n && s_before(&q->v[r], b))
            best = r;
        if (best == i)
            break;
        q->v[i] = q->v[best];
        i = best;
    }
    if (q->n > 0)
        q->v[i] = last;
    return true;
}

size_t sim_queue_size(const sim_queue_t *q)
{
    return q->n;
}

size_t sim_queue_high_water(const sim_queue_t *q)
{
    return q->high;
}
