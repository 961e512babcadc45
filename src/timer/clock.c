/*
 * clock.c - pn_now and the runtimes' clocks: the monotonic clock, or a
 * virtual one a test pauses and advances (interface in clock.h).
 *
 * Owns: every pn__clock (refcounted: its runtime and each thread bound to
 * it) and the calling thread's binding.  CLOCK_MONOTONIC never goes
 * backwards and never fails on Linux (vDSO, no syscall).
 *
 * Which clock pn_now() reads, in order:
 *   1. on a thread that runs a runtime (a current-thread runtime's
 *      pn_block_on, a worker, a multi-thread pn_block_on): that runtime's;
 *   2. on a thread bound to a live clock (clock.h): that clock;
 *   3. otherwise the monotonic clock.
 *
 * Invariants:
 *  - A clock never goes backwards: advance only moves the frozen instant
 *    forward, pause freezes at the current reading, resume sets the offset
 *    so that the first running reading is the frozen instant.
 *  - `offset` is written before `paused` is cleared (release), `frozen`
 *    before it is set: a reader that sees the flag sees the matching value.
 */
#include <pthread.h>
#include <time.h>
#include "clock.h"
#include "timers.h"
#include "core/sys.h"
#include "executor/rt.h"

pn_instant pn__mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

pn__clock *pn__clock_new(bool paused)
{
    pn__clock *c = pn__malloc(sizeof(*c));
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    atomic_init(&c->paused, paused);
    atomic_init(&c->controlled, paused);
    atomic_init(&c->dead, false);
    atomic_init(&c->frozen, pn__mono_now());
    atomic_init(&c->offset, 0);
    return c;
}

static void clock_unref(pn__clock *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        pn__free(c);
}

pn_instant pn__clock_now(const pn__clock *c)
{
    if (atomic_load_explicit(&c->paused, memory_order_acquire))
        return atomic_load_explicit(&c->frozen, memory_order_relaxed);
    return pn__mono_now() + atomic_load_explicit(&c->offset, memory_order_relaxed);
}

bool pn__clock_paused(const pn__clock *c)
{
    return atomic_load_explicit(&c->paused, memory_order_acquire);
}

bool pn__clock_controlled(const pn__clock *c)
{
    return atomic_load_explicit(&c->controlled, memory_order_relaxed);
}

void pn__clock_pause(pn__clock *c)
{
    atomic_store_explicit(&c->frozen, pn__clock_now(c), memory_order_relaxed);
    atomic_store_explicit(&c->controlled, true, memory_order_relaxed);
    atomic_store_explicit(&c->paused, true, memory_order_release);
}

void pn__clock_resume(pn__clock *c)
{
    uint64_t frozen = atomic_load_explicit(&c->frozen, memory_order_relaxed);
    atomic_store_explicit(&c->offset, frozen - pn__mono_now(), memory_order_relaxed);
    atomic_store_explicit(&c->paused, false, memory_order_release);
}

void pn__clock_advance_to(pn__clock *c, pn_instant t)
{
    /* A CAS: on the multi-thread runtime an advance and an auto-advance
     * may race, and the clock must keep the later of the two. */
    uint64_t cur = atomic_load_explicit(&c->frozen, memory_order_relaxed);
    while (t > cur && !atomic_compare_exchange_weak_explicit(&c->frozen, &cur, t,
                                                             memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

/* ---- the calling thread's binding ------------------------------------------ */

static _Thread_local pn__clock *tls_bound;
static pthread_key_t bound_key;         /* its destructor drops the binding at exit */
static pthread_once_t bound_once = PTHREAD_ONCE_INIT;
static bool bound_key_ok;

static void bound_dtor(void *p)
{
    tls_bound = NULL;
    clock_unref(p);
}

static void bound_key_init(void)
{
    bound_key_ok = pthread_key_create(&bound_key, bound_dtor) == 0;
}

static void unbind(void)
{
    pn__clock *old = tls_bound;
    if (!old)
        return;
    tls_bound = NULL;
    if (bound_key_ok)
        pthread_setspecific(bound_key, NULL);
    clock_unref(old);
}

void pn__clock_bind(pn__clock *c)
{
    if (tls_bound == c)
        return;
    pthread_once(&bound_once, bound_key_init);
    if (!bound_key_ok)
        return;                         /* no key: pn_now stays real outside */
    unbind();
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    tls_bound = c;
    pthread_setspecific(bound_key, c);
}

void pn__clock_kill(pn__clock *c)
{
    atomic_store_explicit(&c->dead, true, memory_order_release);
    if (tls_bound == c)
        unbind();
    clock_unref(c);
}

pn_instant pn_now(void)
{
    pn_runtime *rt = pn__tls_rt;
    if (rt) {
        pn__clock *c = rt->timers.clock;
        return c ? pn__clock_now(c) : pn__mono_now();
    }
    pn__clock *b = tls_bound;
    if (b) {
        if (!atomic_load_explicit(&b->dead, memory_order_acquire))
            return pn__clock_now(b);
        unbind();                       /* its runtime was freed */
    }
    return pn__mono_now();
}
