/*
 * interval.c - pn_interval_future: a stream of ticks, one per period.
 *
 * Owns: the pn_interval_future future and its embedded sleep, whose deadline is
 * always the instant of the next tick to deliver.
 *
 * Invariants:
 *  - Each PN_READY delivers one tick: .tick = the instant it was scheduled
 *    for, which is <= the runtime's clock at delivery (never early).
 *  - After a tick scheduled at T is delivered at `now`, the next one is at
 *    T + period unless that is already due (now >= T + period: ticks were
 *    missed), in which case the policy decides:
 *        BURST  T + period (catch up back to back)
 *        DELAY  now + period
 *        SKIP   the first T + k*period strictly after now
 *  - Between ticks the sleep is idle (unlinked) until the next poll arms it.
 */
#include "pollen/time.h"
#include "timer/timers.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static pn_instant next_tick(const pn_interval_future *iv, pn_instant sched, pn_instant now)
{
    pn_instant next = sat_add(sched, iv->period);
    if (now < next)
        return next;
    switch (iv->missed) {
    case PN_MISSED_DELAY:
        return sat_add(now, iv->period);
    case PN_MISSED_SKIP: {
        uint64_t k = (now - sched) / iv->period + 1;
        if (k > UINT64_MAX / iv->period)
            return UINT64_MAX;
        return sat_add(sched, k * iv->period);
    }
    case PN_MISSED_BURST:
    default:
        return next;
    }
}

static pn_poll interval_poll(pn_future *f, pn_cx *cx)
{
    pn_interval_future *iv = (pn_interval_future *)f;
    if (pn_future_poll(PN_FUTURE(&iv->timer), cx) == PN_PENDING)
        return PN_PENDING;
    pn_instant sched = pn_sleep_deadline(&iv->timer);
    iv->tick = sched;
    pn_sleep_reset(&iv->timer, next_tick(iv, sched, pn__cx_now(cx)));
    return PN_READY;
}

static void interval_drop(pn_future *f)
{
    pn_interval_future *iv = (pn_interval_future *)f;
    pn_future_drop(PN_FUTURE(&iv->timer));
}

static const pn_future_vtable interval_vt = {
    .poll = interval_poll,
    .drop = interval_drop,
    .name = "pn_interval_future",
};

pn_interval_future pn_interval_at(pn_instant start, uint64_t period)
{
    pn_interval_future iv = {
        .base = { &interval_vt },
        .timer = pn_sleep_until(start),
        .period = period ? period : 1,
        .missed = PN_MISSED_BURST,
        .tick = 0,
    };
    return iv;
}

pn_interval_future pn_interval(uint64_t period)
{
    return pn_interval_at(pn_now(), period);
}
