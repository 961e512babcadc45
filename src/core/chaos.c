/*
 * chaos.c - the named points' test hook, and the chaos build's schedule
 * perturbation (see chaos.h).
 *
 * Owns: pn__point_hook; in chaos builds, the seed and each thread's PRNG.
 *
 * A seed picks the whole policy, so a failing seed replays the same policy:
 *   rate    one point in 2^k perturbs, k in 2..7 (a thread's stream of
 *           draws is fixed by the seed and the order threads first reach a
 *           point, which the schedule decides: a replay reproduces the
 *           policy, and a race again with high odds, not with certainty)
 *   action  yield, spin up to 4k iterations, or sleep up to max_us (1-200
 *           microseconds), with weights drawn from the seed
 *   a slow  thread ordinal (seed-chosen) sleeps 4x as long: the long
 *           thread that a priority-based scheduler (PCT) would starve
 * This file uses none of the calls chaos.h wraps: the PRNG is not itself a
 * schedule point (the thread counter is a legacy __sync builtin, the
 * policy is read once through pthread_once).
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include "core/chaos.h"

_Atomic(pn__point_fn) pn__point_hook;

void pn__point_set_hook(pn__point_fn fn)
{
    atomic_store(&pn__point_hook, fn);
}

#ifdef PN_CHAOS

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static pthread_once_t policy_once = PTHREAD_ONCE_INIT;
static struct {
    uint64_t seed;
    unsigned rate_mask;         /* perturb when (draw & mask) == 0 */
    unsigned w_yield, w_spin;   /* of 100; the rest sleeps */
    unsigned max_us;
    unsigned slow;              /* thread ordinal that sleeps longer */
} policy;
static unsigned thread_count;

static _Thread_local uint64_t tls_rng;
static _Thread_local unsigned tls_ordinal;
static _Thread_local int tls_inited;

static void read_policy(void)
{
    const char *s = getenv("POLLEN_CHAOS_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0;
    uint64_t x = seed;
    policy.seed = seed;
    policy.rate_mask = (1u << (2 + splitmix(&x) % 6)) - 1;
    policy.w_yield = 20 + splitmix(&x) % 50;
    policy.w_spin = (unsigned)(splitmix(&x) % (100 - policy.w_yield));
    policy.max_us = 1 + (unsigned)(splitmix(&x) % 200);
    policy.slow = (unsigned)(splitmix(&x) % 4);
}

uint64_t pn__chaos_seed(void)
{
    pthread_once(&policy_once, read_policy);
    return policy.seed;
}

void pn__chaos_point(void)
{
    if (!tls_inited) {
        pthread_once(&policy_once, read_policy);
        tls_ordinal = __sync_fetch_and_add(&thread_count, 1);
        tls_rng = policy.seed * 0x100000001b3ull + tls_ordinal;
        tls_inited = 1;
    }
    if (!policy.seed)
        return;
    uint64_t r = splitmix(&tls_rng);
    if ((r & policy.rate_mask) != 0)
        return;
    unsigned pick = (unsigned)((r >> 16) % 100);
    if (pick < policy.w_yield) {
        sched_yield();
    } else if (pick < policy.w_yield + policy.w_spin) {
        for (volatile unsigned i = (unsigned)((r >> 32) % 4096); i; i--)
            ;
    } else {
        unsigned us = 1 + (unsigned)((r >> 32) % policy.max_us);
        if (tls_ordinal % 4 == policy.slow)
            us *= 4;
        struct timespec ts = { 0, (long)us * 1000 };
        nanosleep(&ts, NULL);
    }
}

#endif

void pn__point_slow(const char *name, void *arg)
{
#ifdef PN_CHAOS
    pn__chaos_point();
#endif
    pn__point_fn fn = atomic_load_explicit(&pn__point_hook, memory_order_acquire);
    if (fn)
        fn(name, arg);
}
