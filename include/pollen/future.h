/*
 * pollen/future.h - futures, wakers and the poll context.
 *
 * A future is a state machine in a plain C struct whose first member is a
 * pn_future (a pointer to its vtable).  Creating one runs nothing: only
 * pn_future_poll() advances it.  poll returns PN_READY when the output is in
 * the future's own fields, or PN_PENDING after it has arranged for the
 * waker in the context to be woken when progress is possible (the PENDING
 * contract: a future that returns PN_PENDING without doing so hangs).
 *
 * Pinning.  A future may be copied or moved freely until it is first polled.
 * From its first poll until it completes or is dropped it must not move:
 * leaf futures link intrusive nodes (timer entries, waker slots) that point
 * into it.  Spawned tasks never move; a future polled by pn_block_on lives
 * in the caller's memory and must stay there.
 *
 * Dropping.  The rule: pn_future_drop(f) releases whatever f still holds,
 * and may be called on any future its owner has not dropped yet, in any
 * state.  Pending: it cancels (timer entry, fd interest, child futures).
 * Never polled, READY, or zero-initialised (and NULL): it is a no-op, for
 * every pollen future, and on a READY one it touches nothing the future
 * borrowed (the handle, fd or channel may be gone already).  The one thing
 * a READY future may still hold is what a guard of pollen/sync.h acquired
 * (a lock, permits, a channel slot, a finished task of a group), which its
 * drop releases, once.  So an owner unsure whether a child
 * completed simply drops it; hand-written drops must behave the same
 * (pn_async_drop below does).  Dropping a pending future twice, or after
 * its memory was freed, is undefined: forget a future once it is dropped.
 * Whoever owns the future calls drop, never concurrently with poll.
 * Polling a future again after PN_READY is a bug unless its header says
 * otherwise (streams such as pn_interval_future re-arm themselves).
 *
 * Composition.  A future embeds its children in its own struct and polls
 * them; locals that live across an await point live in the struct.  The
 * PN_ASYNC_* macros below turn such a poll function into a readable
 * sequence of await points (a switch on a resume line kept in a pn_async
 * field, which also records the child in flight for the drop).
 *
 * Names.  A future type ends in _future (pn_read_future), except the
 * guards pn_mutex_guard, pn_rwlock_guard and pn_semaphore_permit: futures
 * whose READY holds something until it is released.  A constructor is
 * named by its operation, without a preposition (pn_read, pn_sleep,
 * pn_tcp_connect, pn_join); a variant adds what distinguishes it (_until,
 * _at, _from, _to, _ex, _many, _owned).  The primary output of every
 * future is .res, a value or a negative errno; other outputs have their
 * own names (.output, .count, .stream; pn_blocking_future's .value).  A
 * *_close function closes now and returns 0 or -errno, as close(2); the
 * future that does it is *_close_async.
 */
#ifndef POLLEN_FUTURE_H
#define POLLEN_FUTURE_H

#include <assert.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Wakers ----------------------------------------------------------- */

typedef struct pn_waker pn_waker;

/*
 * The operations of a waker.  All are safe to call from any thread.
 *  clone        a new waker for the same task (the caller owns it)
 *  wake         wake the task and consume this waker
 *  wake_by_ref  wake the task, keep the waker
 *  drop         release the waker without waking
 * Waking a task that finished or was cancelled does nothing.  Waking a task
 * several times before it runs makes it run once; waking it while it is
 * being polled makes it run again after the poll.
 */
typedef struct pn_waker_vtable {
    pn_waker (*clone)(const void *data);
    void (*wake)(const void *data);
    void (*wake_by_ref)(const void *data);
    void (*drop)(const void *data);
} pn_waker_vtable;

/* A waker is a value: a data pointer and its vtable.  {NULL, NULL} is the
 * empty waker; every operation on it is a no-op. */
struct pn_waker {
    const void *data;
    const pn_waker_vtable *vt;
};

/* The empty waker as a value.  C++ has no compound literals: it gets a
 * braced temporary of the same meaning. */
#ifdef __cplusplus
#define PN_WAKER_NONE (pn_waker{ NULL, NULL })
#else
#define PN_WAKER_NONE ((pn_waker){ NULL, NULL })
#endif

static inline bool pn_waker_is_none(const pn_waker *w) { return w->vt == NULL; }

static inline pn_waker pn_waker_clone(const pn_waker *w)
{
    return w->vt ? w->vt->clone(w->data) : PN_WAKER_NONE;
}

/* Consumes *w (it becomes the empty waker). */
static inline void pn_waker_wake(pn_waker *w)
{
    pn_waker t = *w;
    *w = PN_WAKER_NONE;
    if (t.vt)
        t.vt->wake(t.data);
}

static inline void pn_waker_wake_by_ref(const pn_waker *w)
{
    if (w->vt)
        w->vt->wake_by_ref(w->data);
}

/* Releases *w without waking (it becomes the empty waker). */
static inline void pn_waker_drop(pn_waker *w)
{
    pn_waker t = *w;
    *w = PN_WAKER_NONE;
    if (t.vt)
        t.vt->drop(t.data);
}

/* True when waking a would wake the same task as waking b. */
static inline bool pn_waker_will_wake(const pn_waker *a, const pn_waker *b)
{
    return a->data == b->data && a->vt == b->vt;
}

/*
 * Store a clone of `w` into the slot `*slot` unless the slot already holds a
 * waker for the same task (the will_wake test): the leaf-future idiom for
 * "remember who to wake".  The previous waker, if different, is dropped.
 * Not thread-safe: it reads and writes the slot with plain stores, so the
 * slot must be touched by one thread only, or under a lock that the waking
 * side takes too.  A slot that another thread wakes without that lock (a
 * flag set by a thread, a wake from another task) is a pn_waker_slot
 * (pollen/sync.h).
 */
static inline void pn_waker_set(pn_waker *slot, const pn_waker *w)
{
    if (slot->vt && pn_waker_will_wake(slot, w))
        return;
    pn_waker old = *slot;
    *slot = pn_waker_clone(w);
    if (old.vt)
        old.vt->drop(old.data);
}

/* ---- The poll context -------------------------------------------------- */

struct pn_runtime;
struct pn__reactor;
struct pn__timers;

/*
 * What a poll gets besides the future: the waker of the task being polled,
 * the runtime driving it and the cooperative budget.  Contexts are made by
 * the runtime; a combinator passes its own context down to its children.
 */
typedef struct pn_cx {
    const pn_waker *waker;        /* read-only: the current task's waker */
    struct pn_runtime *rt;        /* read-only: the runtime polling it */
    /* private */
    struct pn__reactor *reactor;  /* I/O driver of this thread */
    struct pn__timers *timers;    /* timer driver of this thread */
    uint32_t budget;              /* operations left before a forced yield */
} pn_cx;

static inline const pn_waker *pn_cx_waker(const pn_cx *cx) { return cx->waker; }
static inline struct pn_runtime *pn_cx_runtime(const pn_cx *cx) { return cx->rt; }

/*
 * Cooperative scheduling.  Every pollen leaf future (I/O, timers, join,
 * channels) spends one unit of budget when it would return PN_READY; when
 * the budget is spent it wakes the task and returns PN_PENDING instead, so
 * a task that is always ready still lets timers and I/O of other tasks run.
 * Hand-written leaf futures that may be ready forever should do the same:
 *     if (pn_cx_budget_spend(cx) == PN_PENDING) return PN_PENDING;
 */
static inline pn_poll pn_cx_budget_spend(pn_cx *cx)
{
    if (cx->budget == 0) {
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    cx->budget--;
    return PN_READY;
}

/* ---- Futures ------------------------------------------------------------ */

typedef struct pn_future pn_future;

typedef struct pn_future_vtable {
    pn_poll (*poll)(pn_future *self, pn_cx *cx);
    void (*drop)(pn_future *self);   /* cancel; may be NULL when nothing is held */
    const char *name;                /* for task dumps and metrics; may be NULL */
} pn_future_vtable;

/* The first member of every future. */
struct pn_future {
    const pn_future_vtable *vt;
};

/* Poll once.  `f` must be an initialised future (a vtable with a poll
 * function): polling NULL or a zeroed future is undefined here, where
 * pn_block_on and pn_spawn refuse one with -EINVAL. */
static inline pn_poll pn_future_poll(pn_future *f, pn_cx *cx)
{
    return f->vt->poll(f, cx);
}

/* Release what the future holds (see "Dropping" above): cancels a pending
 * future; a no-op on a never-polled or READY one (a READY guard releases
 * what it acquired), on NULL and on a zero-initialised future. */
static inline void pn_future_drop(pn_future *f)
{
    if (f && f->vt && f->vt->drop)
        f->vt->drop(f);
}

/* Turn a pointer to any future struct into a pn_future pointer. */
#define PN_FUTURE(p) (&(p)->base)

/* ---- async/await-style state machines ----------------------------------

   A hand-written future keeps its async state in a pn_async field: the
   resume point and the child future it is suspended on.  Example (a future
   that sleeps twice then sets .out):

       typedef struct { pn_future base; pn_async as; pn_sleep_future nap; int out; } twice;

       static pn_poll twice_poll(pn_future *f, pn_cx *cx) {
           twice *t = (twice *)f;
           PN_ASYNC_BEGIN(t->as);
           t->nap = pn_sleep(PN_MS(10));
           PN_AWAIT(t->as, &t->nap, cx);
           t->nap = pn_sleep(PN_MS(10));         // re-assigning a child is fine
           PN_AWAIT(t->as, &t->nap, cx);
           t->out = 2;
           PN_ASYNC_END(t->as);
       }
       PN_ASYNC_VTABLE(twice_vt, twice, as, twice_poll);   // drop: pn_async_drop

   PN_AWAIT records the child in .live while it is pending and clears it
   when the child is READY, so pn_async_drop(&t->as) drops exactly the
   child that is live (none before the first poll, after PN_ASYNC_END, or
   while suspended in PN_AWAIT_POLL / PN_YIELD).  A future that holds more
   (an fd, a buffer, a READY guard it has not released) writes its own drop
   and calls pn_async_drop from it.

   Every macro also takes a plain `int` resume point (PN_ASYNC_BEGIN(t->pc),
   the older form, 0 before the first poll): it behaves the same but records
   no child, so its drop must work out the live child itself.

   Rules:
   - Locals do not survive an await: keep them in the struct.  A local
     initialised before an await and read after it holds garbage; gcc's
     -Wjump-misses-init reports it (recommended).
   - No `switch` statement of the body may enclose an await.  Debug builds
     (no NDEBUG) catch one at its first resume: the switch's default label
     asserts that the resume point is PN_ASYNC_DONE.
   - One await per source line (the resume point is the line number).
   - After PN_ASYNC_END the resume point is PN_ASYNC_DONE. */

#define PN_ASYNC_DONE (-1)

/* The standard async state; zero-initialised before the first poll. */
typedef struct pn_async {
    int pc;          /* resume point: 0, an await's line, or PN_ASYNC_DONE */
    pn_future *live; /* the child PN_AWAIT is suspended on, else NULL */
} pn_async;

/* Drop the live child (if any) and mark the state done: a second call, or
 * a call on a zeroed, never-polled or completed state, is a no-op. */
static inline void pn_async_drop(pn_async *as)
{
    pn_future *live = as->live;
    as->live = NULL;
    as->pc = PN_ASYNC_DONE;
    pn_future_drop(live);
}

/* Define `static const pn_future_vtable vt` for future type `type` whose
 * pn_async field is `field`: its drop is pn_async_drop on that field. */
#define PN_ASYNC_VTABLE(vt, type, field, poll_fn)                        \
    static void pn__async_drop_##vt(pn_future *f)                        \
    {                                                                    \
        pn_async_drop(&((type *)(void *)f)->field);                      \
    }                                                                    \
    static const pn_future_vtable vt = { poll_fn, pn__async_drop_##vt, #type }

#if defined(__GNUC__)
#define PN__FALLTHROUGH __attribute__((fallthrough))
#else
#define PN__FALLTHROUGH ((void)0)
#endif

/* private: the macros accept a pn_async or an int resume point. */
static inline int *pn__async_pc_as(pn_async *as) { return &as->pc; }
static inline int *pn__async_pc_int(int *pc) { return pc; }
static inline pn_future **pn__async_live_as(pn_async *as) { return &as->live; }
static inline pn_future **pn__async_live_int(int *pc) { (void)pc; return NULL; }

/* private: one poll of an awaited child, kept in *live while pending. */
static inline pn_poll pn__async_await(pn_future **live, pn_future *child, pn_cx *cx)
{
    if (live)
        *live = child;
    if (pn_future_poll(child, cx) == PN_PENDING)
        return PN_PENDING;
    if (live)
        *live = NULL;
    return PN_READY;
}

static inline void pn__async_no_child(pn_future **live)
{
    if (live)
        *live = NULL;
}

#ifdef __cplusplus
} /* the overloads below need C++ linkage */
static inline int *pn__async_pc(pn_async *as) { return &as->pc; }
static inline int *pn__async_pc(int *pc) { return pc; }
static inline pn_future **pn__async_live(pn_async *as) { return &as->live; }
static inline pn_future **pn__async_live(int *pc) { (void)pc; return NULL; }
extern "C" {
#define PN__ASYNC_PC(st) (*pn__async_pc(&(st)))
#define PN__ASYNC_LIVE(st) pn__async_live(&(st))
#else
#define PN__ASYNC_PC(st) \
    (*_Generic(&(st), pn_async *: pn__async_pc_as, int *: pn__async_pc_int)(&(st)))
#define PN__ASYNC_LIVE(st) \
    _Generic(&(st), pn_async *: pn__async_live_as, int *: pn__async_live_int)(&(st))
#endif

/* `st` is the async state: a pn_async field (or an int resume point).
 * The default label comes first so that reaching it (PN_ASYNC_DONE, or an
 * unknown resume point) jumps over no declaration of the body.  Debug
 * builds assert there: a resume point that no case of the body knows means
 * an await inside a switch statement of the body. */
#define PN_ASYNC_BEGIN(st)                                                   \
    switch (PN__ASYNC_PC(st)) {                                              \
    default:                                                                 \
        assert(PN__ASYNC_PC(st) == PN_ASYNC_DONE &&                          \
               "PN_ASYNC: unknown resume point (an await inside a switch?)"); \
        break;                                                               \
    case 0:

/* Suspend until `fut` (a pointer to a future) is ready; while it is
 * pending it is the state's live child. */
#define PN_AWAIT(st, fut, cx)                                                 \
    do {                                                                      \
        PN__ASYNC_PC(st) = __LINE__;                                          \
        PN__FALLTHROUGH;                                                      \
    case __LINE__:                                                            \
        if (pn__async_await(PN__ASYNC_LIVE(st), (pn_future *)(fut), (cx)) ==  \
            PN_PENDING)                                                       \
            return PN_PENDING;                                                \
    } while (0)

/* Suspend until the expression `poll_expr` (re-evaluated on each poll)
   yields PN_READY; use it with poll helpers such as pn_async_fd_poll_read.
   No child is live meanwhile: what the helper registered belongs to the
   object it polls (close or release that in the drop). */
#define PN_AWAIT_POLL(st, poll_expr)                  \
    do {                                              \
        PN__ASYNC_PC(st) = __LINE__;                  \
        pn__async_no_child(PN__ASYNC_LIVE(st));       \
        PN__FALLTHROUGH;                              \
    case __LINE__:                                    \
        if ((poll_expr) == PN_PENDING)                \
            return PN_PENDING;                        \
    } while (0)

/* Give the other tasks a turn: wake ourselves and return PN_PENDING once. */
#define PN_YIELD(st, cx)                              \
    do {                                              \
        PN__ASYNC_PC(st) = __LINE__;                  \
        pn__async_no_child(PN__ASYNC_LIVE(st));       \
        pn_waker_wake_by_ref((cx)->waker);            \
        return PN_PENDING;                            \
    case __LINE__:;                                   \
    } while (0)

#define PN_ASYNC_END(st)                         \
    }                                            \
    PN__ASYNC_PC(st) = PN_ASYNC_DONE;            \
    return PN_READY

/* The await line the future is suspended at (0: not started). */
#define PN_ASYNC_AT(st) (PN__ASYNC_PC(st))

/* ---- Small futures ------------------------------------------------------ */

/* pn_yield_now_future: PN_PENDING once (after waking itself), then PN_READY. */
typedef struct pn_yield_now_future {
    pn_future base;
    bool yielded;  /* private */
} pn_yield_now_future;

PN_EXTERN PN_MUST_USE pn_yield_now_future pn_yield(void);

#ifdef __cplusplus
}
#endif
#endif
