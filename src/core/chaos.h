/*
 * chaos.h - schedule points: where tests force an interleaving, and where
 * the chaos build perturbs the schedule.
 *
 * Two tools share this header.
 *
 * Named points, every build.  PN_POINT("name", arg) marks a place where
 * another thread can run between two steps that must not be separated by
 * anything that breaks an invariant ("spawn.queued": a foreign spawn's
 * task is queued, pn_spawn has not returned).  A test installs a hook with
 * pn__point_set_hook() and runs code of its own right there, so a race
 * that needs a one-in-a-million window happens on every run.  Without a
 * hook a point is one relaxed load and a branch that is never taken.
 *
 * The chaos build (make test-chaos: -DPN_CHAOS=1, and this header forced
 * into every source with -include).  Every atomic operation, mutex lock and
 * unlock, raw syscall (futex waits and wakes) and named point becomes a
 * schedule point: pn__chaos_point() draws from a per-thread PRNG seeded by
 * POLLEN_CHAOS_SEED and now and then yields, spins or sleeps a few
 * microseconds, so other threads get to run inside windows that a 2-core
 * machine almost never opens.  The wrapping is done here, on the compiler's
 * atomic builtins that <stdatomic.h> expands to, so the runtime's code is
 * the same in both builds.  Why and what it cannot see:
 * docs/ARCHITECTURE.md ("How concurrency is verified").
 */
#ifndef PN_CORE_CHAOS_H
#define PN_CORE_CHAOS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef void (*pn__point_fn)(const char *name, void *arg);

/* The test hook; NULL outside tests.  Set it while no runtime thread runs,
 * or at least before the code under test can reach a point. */
extern _Atomic(pn__point_fn) pn__point_hook;

void pn__point_set_hook(pn__point_fn fn);
void pn__point_slow(const char *name, void *arg);

#ifdef PN_CHAOS
/* One schedule point: maybe yield, spin or sleep (chaos builds only). */
void pn__chaos_point(void);
/* The seed this process runs with (POLLEN_CHAOS_SEED, or 0: chaos off). */
uint64_t pn__chaos_seed(void);
#define PN_POINT(name, arg) pn__point_slow((name), (arg))
#else
#define PN_POINT(name, arg)                                                   \
    do {                                                                      \
        if (__builtin_expect(atomic_load_explicit(&pn__point_hook,            \
                                                  memory_order_relaxed) != NULL, 0)) \
            pn__point_slow((name), (arg));                                    \
    } while (0)
#endif

/*
 * The chaos build's wrappers.  Defined after the system headers that
 * declare the wrapped functions, so their prototypes stay intact; a macro
 * does not expand inside its own expansion, so each one still reaches the
 * real function or builtin.  chaos.c calls none of them: the PRNG itself
 * is not a schedule point.
 */
#ifdef PN_CHAOS
#include <pthread.h>
#include <unistd.h>
#include <sys/syscall.h>

#define PN__CH(expr) (pn__chaos_point(), (expr))

/* gcc's <stdatomic.h> */
#define __atomic_load(p, r, o) PN__CH(__atomic_load(p, r, o))
#define __atomic_store(p, v, o) PN__CH(__atomic_store(p, v, o))
#define __atomic_exchange(p, v, r, o) PN__CH(__atomic_exchange(p, v, r, o))
#define __atomic_compare_exchange(p, e, d, w, s, f)                           \
    PN__CH(__atomic_compare_exchange(p, e, d, w, s, f))
#define __atomic_fetch_add(p, v, o) PN__CH(__atomic_fetch_add(p, v, o))
#define __atomic_fetch_sub(p, v, o) PN__CH(__atomic_fetch_sub(p, v, o))
#define __atomic_fetch_or(p, v, o) PN__CH(__atomic_fetch_or(p, v, o))
#define __atomic_fetch_and(p, v, o) PN__CH(__atomic_fetch_and(p, v, o))
#define __atomic_fetch_xor(p, v, o) PN__CH(__atomic_fetch_xor(p, v, o))
#define __atomic_test_and_set(p, o) PN__CH(__atomic_test_and_set(p, o))
#define __atomic_thread_fence(o) PN__CH(__atomic_thread_fence(o))

/* clang's <stdatomic.h> */
#define __c11_atomic_load(p, o) PN__CH(__c11_atomic_load(p, o))
#define __c11_atomic_store(p, v, o) PN__CH(__c11_atomic_store(p, v, o))
#define __c11_atomic_exchange(p, v, o) PN__CH(__c11_atomic_exchange(p, v, o))
#define __c11_atomic_compare_exchange_strong(p, e, d, s, f)                   \
    PN__CH(__c11_atomic_compare_exchange_strong(p, e, d, s, f))
#define __c11_atomic_compare_exchange_weak(p, e, d, s, f)                     \
    PN__CH(__c11_atomic_compare_exchange_weak(p, e, d, s, f))
#define __c11_atomic_fetch_add(p, v, o) PN__CH(__c11_atomic_fetch_add(p, v, o))
#define __c11_atomic_fetch_sub(p, v, o) PN__CH(__c11_atomic_fetch_sub(p, v, o))
#define __c11_atomic_fetch_or(p, v, o) PN__CH(__c11_atomic_fetch_or(p, v, o))
#define __c11_atomic_fetch_and(p, v, o) PN__CH(__c11_atomic_fetch_and(p, v, o))
#define __c11_atomic_fetch_xor(p, v, o) PN__CH(__c11_atomic_fetch_xor(p, v, o))
#define __c11_atomic_thread_fence(o) PN__CH(__c11_atomic_thread_fence(o))

/* locks, and the futex and eventfd syscalls of parking and unparking */
#define pthread_mutex_lock(m) PN__CH(pthread_mutex_lock(m))
#define pthread_mutex_unlock(m) PN__CH(pthread_mutex_unlock(m))
#define pthread_cond_wait(c, m) PN__CH(pthread_cond_wait(c, m))
#define pthread_cond_signal(c) PN__CH(pthread_cond_signal(c))
#define pthread_cond_broadcast(c) PN__CH(pthread_cond_broadcast(c))
#define syscall(...) PN__CH(syscall(__VA_ARGS__))
#endif

#endif
