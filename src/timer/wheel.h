/*
 * wheel.h - the hierarchical timer wheel (pure data structure, no wakers).
 *
 * 7 levels x 64 slots; a slot of level L spans 64^L ticks of
 * PN_TIMER_TICK_NS (65.536 us), so level 0 covers 4.2 ms and level 6 about
 * 9 years.  Each level keeps a 64-bit occupancy bitmap: the next occupied
 * slot is a rotate and a count-trailing-zeros.  Insert and remove are O(1)
 * (intrusive doubly-linked slot lists through pn_timer_entry.next/prev).
 *
 * An entry with deadline d is due at tick ceil(d / TICK).  Advancing to time
 * `now` fires every entry whose due tick <= floor(now / TICK), and those of
 * the next tick whose deadline <= now when that tick's level-0 slot is short
 * (wheel.c): never one whose deadline is after `now`.  Higher-level slots
 * are cascaded (their entries re-filed one level down or fired) when the
 * wheel reaches them.
 * Deadlines beyond the wheel's range are filed in the farthest slot and
 * re-filed when they come up.
 */
#ifndef PN_WHEEL_H
#define PN_WHEEL_H

#include <stdint.h>
#include <stddef.h>
#include "pollen/time.h"

#define PN__WHEEL_LEVELS 7
#define PN__WHEEL_SLOTS 64

typedef struct pn__wheel_level {
    uint64_t occupied;                             /* bit i: slot i non-empty */
    pn_timer_entry *slots[PN__WHEEL_SLOTS];        /* list heads (NULL = empty) */
    uint32_t count[PN__WHEEL_SLOTS];               /* entries per slot */
} pn__wheel_level;

typedef struct pn__wheel {
    uint64_t elapsed;            /* ticks processed so far */
    pn__wheel_level levels[PN__WHEEL_LEVELS];
} pn__wheel;

void pn__wheel_init(pn__wheel *w, pn_instant now);
/* File e by e->deadline.  An entry already due (tick <= elapsed) is filed in
 * level 0's current slot and fires on the next advance. */
void pn__wheel_insert(pn__wheel *w, pn_timer_entry *e);
/* Unlink e (must be filed in w). O(1). */
void pn__wheel_remove(pn__wheel *w, pn_timer_entry *e);
/* The instant at which the next advance can have work, or UINT64_MAX if
 * the wheel is empty: a tick boundary (a slot comes up), or, for a short
 * slot, the exact earliest deadline when an advance to it fires that entry.
 * Never later than the earliest due tick of any entry; may be earlier (a
 * higher-level slot to cascade).  An advance to it fires something or
 * moves it later (no busy loop). */
pn_instant pn__wheel_next(const pn__wheel *w);
/* The exact earliest deadline of a filed entry, UINT64_MAX if none.  Scans
 * the first occupied slot of levels 0-5 (within those levels a slot's
 * entries are due before any later slot's) and every slot of level 6. */
pn_instant pn__wheel_min_deadline(const pn__wheel *w);
/* Advance to `now`: unlink and pass to fire() every entry due at `now`, in
 * no particular order.  fire() may insert or remove other entries.
 * Returns the number fired. */
size_t pn__wheel_advance(pn__wheel *w, pn_instant now,
                         void (*fire)(pn_timer_entry *e, void *arg), void *arg);
/* Visit every filed entry (for shutdown); visit may not modify the wheel
 * except by reading. */
void pn__wheel_each(pn__wheel *w, void (*visit)(pn_timer_entry *e, void *arg), void *arg);

#endif
