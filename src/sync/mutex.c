/*
 * mutex.c - pn_mutex and pn_rwlock (pollen/semaphore.h): thin names over
 * the semaphore.  A mutex is a semaphore of one permit; an rwlock one of
 * PN_RWLOCK_MAX_READS, a reader taking one and a writer all of them.  The
 * futures are permit futures with vtables of their own, for their names.
 */
#include "sync/sem.h"

static const pn_future_vtable lock_vt = { pn__semaphore_permit_poll, pn__semaphore_permit_drop,
                                          "mutex.lock" };
static const pn_future_vtable read_vt = { pn__semaphore_permit_poll, pn__semaphore_permit_drop,
                                          "rwlock.read" };
static const pn_future_vtable write_vt = { pn__semaphore_permit_poll, pn__semaphore_permit_drop,
                                           "rwlock.write" };

/* ---- mutex ----------------------------------------------------------------- */

int pn_mutex_init(pn_mutex *m) { return m ? pn_semaphore_init(&m->sem, 1) : -EINVAL; }

void pn_mutex_destroy(pn_mutex *m)
{
    if (m)
        pn_semaphore_destroy(&m->sem);
}

pn_mutex_guard pn_mutex_lock(pn_mutex *m)
{
    return pn__semaphore_permit(m ? &m->sem : NULL, 1, &lock_vt);
}

void pn_mutex_unlock(pn_mutex_guard *g) { pn_semaphore_release(g); }

int pn_mutex_try_lock(pn_mutex *m, pn_mutex_guard *g)
{
    return pn__semaphore_try_guard(m ? &m->sem : NULL, 1, &lock_vt, g);
}

int pn_mutex_blocking_lock(pn_mutex *m, pn_mutex_guard *g)
{
    if (!g)
        return -EINVAL;
    *g = pn_mutex_lock(m);
    return pn__semaphore_block(g);
}

/* ---- rwlock ---------------------------------------------------------------- */

int pn_rwlock_init(pn_rwlock *rw)
{
    return rw ? pn_semaphore_init(&rw->sem, PN_RWLOCK_MAX_READS) : -EINVAL;
}

void pn_rwlock_destroy(pn_rwlock *rw)
{
    if (rw)
        pn_semaphore_destroy(&rw->sem);
}

pn_rwlock_guard pn_rwlock_read(pn_rwlock *rw)
{
    return pn__semaphore_permit(rw ? &rw->sem : NULL, 1, &read_vt);
}

pn_rwlock_guard pn_rwlock_write(pn_rwlock *rw)
{
    return pn__semaphore_permit(rw ? &rw->sem : NULL, PN_RWLOCK_MAX_READS, &write_vt);
}

void pn_rwlock_unlock(pn_rwlock_guard *g) { pn_semaphore_release(g); }

int pn_rwlock_try_read(pn_rwlock *rw, pn_rwlock_guard *g)
{
    return pn__semaphore_try_guard(rw ? &rw->sem : NULL, 1, &read_vt, g);
}

int pn_rwlock_try_write(pn_rwlock *rw, pn_rwlock_guard *g)
{
    return pn__semaphore_try_guard(rw ? &rw->sem : NULL, PN_RWLOCK_MAX_READS, &write_vt, g);
}

int pn_rwlock_blocking_read(pn_rwlock *rw, pn_rwlock_guard *g)
{
    if (!g)
        return -EINVAL;
    *g = pn_rwlock_read(rw);
    return pn__semaphore_block(g);
}

int pn_rwlock_blocking_write(pn_rwlock *rw, pn_rwlock_guard *g)
{
    if (!g)
        return -EINVAL;
    *g = pn_rwlock_write(rw);
    return pn__semaphore_block(g);
}
