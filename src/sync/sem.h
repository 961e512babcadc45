/*
 * sem.h - what mutex.c needs of semaphore.c (private): a permit future
 * with a vtable of the caller's (so a lock shows as "mutex.lock" in task
 * dumps), and a try_acquire that fills a guard.
 */
#ifndef PN_SYNC_SEM_H
#define PN_SYNC_SEM_H

#include "pollen/semaphore.h"

pn_poll pn__semaphore_permit_poll(pn_future *f, pn_cx *cx);
void pn__semaphore_permit_drop(pn_future *f);

/* An acquire of n permits of s whose vtable is vt (poll and drop above). */
pn_semaphore_permit pn__semaphore_permit(pn_semaphore *s, size_t n, const pn_future_vtable *vt);

/* try_acquire, and on success a holding guard in *g made with vt. */
int pn__semaphore_try_guard(pn_semaphore *s, size_t n, const pn_future_vtable *vt,
                            pn_semaphore_permit *g);

/* Block this plain thread until *g (made by the caller, unpolled) holds. */
int pn__semaphore_block(pn_semaphore_permit *g);

#endif
