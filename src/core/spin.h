/*
 * spin.h - a lock for holds of a few loads and stores (private).
 *
 * Acquired with one exchange, released with a plain store: a pthread
 * mutex's release is a second locked instruction, which shows on hot paths
 * (ping-pong over channels spent a quarter to a third of its time in
 * mutexes).  A waiter spins a little, then yields its CPU, so a holder
 * that was preempted gets to run.  Never hold one across a syscall or a
 * call into user code.
 */
#ifndef PN_CORE_SPIN_H
#define PN_CORE_SPIN_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef atomic_bool pn__spin;

static inline void pn__spin_init(pn__spin *l) { atomic_init(l, false); }

static inline void pn__spin_lock(pn__spin *l)
{
    while (atomic_exchange_explicit(l, true, memory_order_acquire)) {
        for (unsigned spins = 0; atomic_load_explicit(l, memory_order_relaxed); spins++) {
            if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else {
                sched_yield();
            }
        }
    }
}

static inline void pn__spin_unlock(pn__spin *l)
{
    atomic_store_explicit(l, false, memory_order_release);
}

#endif
