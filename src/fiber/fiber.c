/*
 * fiber.c - stackful tasks: the pn_fiber_future future, pn_fiber_await, spawn,
 * and the unwinding of a thread's fibers when its worker stops.
 *
 * A fiber's poll switches from the polling thread's stack to the fiber's;
 * the fiber runs until its function returns or an await finds its future
 * pending, and switches back.  So from the executor's side a fiber is an
 * ordinary future whose poll happens to run user code on another stack:
 * wakers, budgets, pinning and cancellation are the task's.
 *
 * The control block (struct pn__fiber) and the argument copy live at the
 * top of the fiber's own stack mapping, so a fiber costs its task cell and
 * the pages its stack touches, with no other allocation.
 *
 * Threads.  The first poll pins the polling task to its thread
 * (pn__task_pin_running) and records the thread; any later poll elsewhere
 * is a misuse that stops the process with a message, because the stack's
 * frames may hold that thread's thread-local addresses.  Every worker keeps
 * a list of the fibers it started that have not finished, so that it can
 * unwind them on its own thread when it stops (pn__fiber_thread_exit)
 * rather than leave it to the thread that frees the runtime.  Other
 * threads (pn_block_on's) keep none: their fibers are dropped by whoever
 * owns the future, maybe on another thread (a current-thread runtime freed
 * there), and a list entry would outlive them in the home thread's list.
 *
 * Nesting.  A fiber may poll another fiber (pn_await on a pn_fiber_future): each
 * remembers the context that resumed it and the fiber that was running on
 * the thread before it, and switches back to exactly that.
 */
#include "pollen/fiber.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fiber/switch.h"
#include "fiber/stack.h"
#include "fiber/fiber_int.h"
#include "executor/rt.h"
#include "executor/task.h"
#include "core/spin.h"

struct pn__fiber {
    pn__ctx ctx;                  /* the fiber's, while it is suspended */
    pn__ctx caller;               /* whoever resumed it, while it runs */
    pn__stack *stack;
    char *top;                    /* the fiber's stack ends here (below the arg copy) */
    pn_fiber_fn *fn;
    void *arg;
    const char *name;
    pn_runtime *rt;
    pn_cx *cx;                    /* the poll that resumed it; NULL when cancelled */
    struct pn__fiber *outer;      /* the fiber running on this thread before it */
    struct pn__fiber *prev, *next;/* the home thread's unfinished fibers */
    const void *home;             /* the thread it runs on (&tls_home), once started */
    bool linked;                  /* in the home thread's list */
    bool finished;
    bool cancelled;
    void *asan_fake;              /* AddressSanitizer's fake stack while switched out */
    const void *caller_lo;        /* the resumer's stack, for AddressSanitizer */
    size_t caller_size;
    void *tsan_fiber, *tsan_caller;
};

static _Thread_local struct pn__fiber *tls_fiber;    /* running on this thread */
static _Thread_local struct pn__fiber *tls_started;  /* this thread's unfinished */
static _Thread_local bool tls_unwinds;   /* a worker: pn__fiber_thread_exit comes */
static _Thread_local char tls_home;

static const pn_future_vtable fiber_vt;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- Switching -------------------------------------------------------------- */

static void fiber_entry(void *p);

/* The fiber's usable stack: from above the guard to below its control
 * block and argument copy. */
static void stack_bounds(struct pn__fiber *fb, void **lo, size_t *size)
{
    char *bottom = fb->stack->map + fb->stack->guard;
    *lo = bottom;
    *size = (size_t)(fb->top - bottom);
}

/* Run fb until it suspends or finishes (on the calling thread). */
static void resume(struct pn__fiber *fb)
{
    struct pn__fiber *outer = tls_fiber;
    fb->outer = outer;
    tls_fiber = fb;
    void *lo;
    size_t size;
    stack_bounds(fb, &lo, &size);
    void *fake = NULL;
    pn__asan_start(&fake, lo, size);
#ifdef PN__TSAN
    fb->tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(fb->tsan_fiber, 0);
#endif
    pn__ctx_switch(&fb->caller, &fb->ctx);
    pn__asan_finish(fake, NULL, NULL);
    tls_fiber = outer;
}

/* From inside fb: back to whoever resumed it. */
static void suspend(struct pn__fiber *fb)
{
    pn__asan_start(&fb->asan_fake, fb->caller_lo, fb->caller_size);
#ifdef PN__TSAN
    __tsan_switch_to_fiber(fb->tsan_caller, 0);
#endif
    pn__ctx_switch(&fb->ctx, &fb->caller);
    pn__asan_finish(fb->asan_fake, &fb->caller_lo, &fb->caller_size);
}

static void fiber_entry(void *p)
{
    struct pn__fiber *fb = p;
    pn__asan_finish(NULL, &fb->caller_lo, &fb->caller_size);
    fb->fn(fb->arg);
    fb->finished = true;
    /* For good: AddressSanitizer may free this fiber's fake stack. */
    pn__asan_start(NULL, fb->caller_lo, fb->caller_size);
#ifdef PN__TSAN
    __tsan_switch_to_fiber(fb->tsan_caller, 0);
#endif
    pn__ctx_switch(&fb->ctx, &fb->caller);
    abort();                      /* a finished fiber is never resumed */
}

/* ---- Life cycle ------------------------------------------------------------- */

static void list_add(struct pn__fiber *fb)
{
    fb->linked = true;
    fb->prev = NULL;
    fb->next = tls_started;
    if (tls_started)
        tls_started->prev = fb;
    tls_started = fb;
}

static void list_del(struct pn__fiber *fb)
{
    if (!fb->linked)
        return;
    fb->linked = false;
    if (fb->prev)
        fb->prev->next = fb->next;
    else
        tls_started = fb->next;
    if (fb->next)
        fb->next->prev = fb->prev;
    fb->prev = fb->next = NULL;
}

static pn__stack_pool *runtime_pool(pn_runtime *rt)
{
    pn__stack_pool *p = atomic_load_explicit(&rt->stacks, memory_order_acquire);
    if (p)
        return p;
    pn__stack_pool *mine = pn__stack_pool_new();
    if (!mine)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(&rt->stacks, &p, mine,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    pn__stack_pool_close(mine);   /* another thread made one first */
    return p;
}

static int opts_check(const pn_fiber_opts *o)
{
    if (o->stack_size && (o->stack_size < PN_FIBER_STACK_MIN || o->stack_size > PN_FIBER_STACK_MAX))
        return -EINVAL;
    if (o->arg_size > PN_FIBER_ARG_MAX)
        return -EINVAL;
    return 0;
}

/* Map (or reuse) fb's stack, lay out the control block and argument copy at
 * its top and prepare the first switch.  0, -EINVAL, -ENOMEM. */
static int fiber_make(pn_fiber_future *F, pn_runtime *rt)
{
    int err = opts_check(&F->opts);
    if (err)
        return err;
    pn__stack_pool *pool = runtime_pool(rt);
    if (!pool)
        return -ENOMEM;
    /* stack_size is what fn gets: the stack header, the control block (at
     * its 64-byte alignment) and the argument copy come on top. */
    size_t want = F->opts.stack_size ? F->opts.stack_size : PN_FIBER_STACK_DEFAULT;
    want += sizeof(pn__stack) + sizeof(struct pn__fiber) + 63 + round16(F->opts.arg_size);
    pn__stack *s = pn__stack_get(pool, pn__stack_usable_for(want));
    if (!s)
        return -ENOMEM;
    struct pn__fiber *fb = (struct pn__fiber *)(void *)
        (((uintptr_t)s - sizeof(struct pn__fiber)) & ~(uintptr_t)63);
    memset(fb, 0, sizeof(*fb));
    fb->stack = s;
    fb->fn = F->fn;
    fb->name = F->opts.name ? F->opts.name : "fiber";
    fb->rt = rt;
    s->name = fb->name;
    fb->arg = F->arg;
    fb->top = (char *)fb;
    if (F->opts.arg_size) {
        fb->top -= round16(F->opts.arg_size);
        memcpy(fb->top, F->arg, F->opts.arg_size);
        fb->arg = fb->top;
    }
    F->impl = fb;
    return 0;
}

static void fiber_release(pn_fiber_future *F)
{
    struct pn__fiber *fb = F->impl;
    if (!fb)
        return;
    F->impl = NULL;
    list_del(fb);
#ifdef PN__TSAN
    if (fb->tsan_fiber)
        __tsan_destroy_fiber(fb->tsan_fiber);
#endif
    pn__stack_put(fb->stack);
}

static void wrong_thread(struct pn__fiber *fb)
{
    fprintf(stderr, "pollen: fiber '%s' polled on another thread than the one it "
                    "started on; a fiber's stack cannot move (see pollen/fiber.h)\n",
            fb->name);
    abort();
}

static pn_poll fiber_poll(pn_future *f, pn_cx *cx)
{
    pn_fiber_future *F = (pn_fiber_future *)f;
    struct pn__fiber *fb = F->impl;
    if (!fb) {
        if (!F->fn) {                       /* finished, or never valid */
            if (!F->res)
                F->res = -EINVAL;
            return PN_READY;
        }
        int err = fiber_make(F, cx->rt);
        if (err) {
            F->res = err;
            F->fn = NULL;
            return PN_READY;
        }
        fb = F->impl;
    }
    if (!fb->home) {
        /* The context is made here, on its thread: the ucontext fallback
         * takes the signal mask of the thread that makes it. */
        void *lo;
        size_t size;
        stack_bounds(fb, &lo, &size);
        pn__ctx_make(&fb->ctx, lo, size, fiber_entry, fb);
        fb->home = &tls_home;
        pn__stack_thread_init();
        if (tls_unwinds)
            list_add(fb);
        pn__task_pin_running(cx);
#ifdef PN__TSAN
        fb->tsan_fiber = __tsan_create_fiber(0);
#endif
    } else if (fb->home != &tls_home) {
        wrong_thread(fb);
    }
    fb->cx = cx;
    resume(fb);
    fb->cx = NULL;
    if (!fb->finished)
        return PN_PENDING;
    fiber_release(F);
    F->fn = NULL;
    F->res = 0;
    return PN_READY;
}

/* Resume a started, unfinished fiber with every await failing, until its
 * function returns. */
static void unwind(struct pn__fiber *fb)
{
    fb->cancelled = true;
    fb->cx = NULL;
    while (!fb->finished)
        resume(fb);
}

static void fiber_drop(pn_future *f)
{
    pn_fiber_future *F = (pn_fiber_future *)f;
    struct pn__fiber *fb = F->impl;
    if (!fb)
        return;
    if (fb->home && !fb->finished)
        unwind(fb);
    fiber_release(F);
    F->fn = NULL;
    F->res = -ECANCELED;
}

static const pn_future_vtable fiber_vt = { fiber_poll, fiber_drop, "pn_fiber_future" };

void pn__fiber_thread_start(void)
{
    tls_unwinds = true;
}

void pn__fiber_thread_exit(void)
{
    while (tls_started) {
        struct pn__fiber *fb = tls_started;
        unwind(fb);
        list_del(fb);             /* the future releases the stack when dropped */
    }
    tls_unwinds = false;
}

pn__stack *pn__fiber_running_stack(void)
{
    return tls_fiber ? tls_fiber->stack : NULL;
}

size_t pn__fiber_thread_count(void)
{
    size_t n = 0;
    for (struct pn__fiber *fb = tls_started; fb; fb = fb->next)
        n++;
    return n;
}

/* ---- Public ---------------------------------------------------------------------- */

pn_fiber_future pn_fiber(pn_fiber_fn *fn, void *arg, const pn_fiber_opts *opts)
{
    pn_fiber_future F;
    memset(&F, 0, sizeof(F));
    F.base.vt = &fiber_vt;
    F.fn = fn;
    F.arg = arg;
    if (opts)
        F.opts = *opts;
    if (!fn || (F.opts.arg_size && !arg))
        F.fn = NULL;              /* polls READY with -EINVAL */
    return F;
}

int pn_fiber_spawn(pn_runtime *rt, pn_fiber_fn *fn, void *arg, const pn_fiber_opts *opts,
                   pn_join_handle **out)
{
    if (out)
        *out = NULL;
    if (!rt || !fn)
        return -EINVAL;
    pn_fiber_future F = pn_fiber(fn, arg, opts);
    if (!F.fn)
        return -EINVAL;
    int err = fiber_make(&F, rt);
    if (err)
        return err;
    err = pn_spawn(rt, &F.base, sizeof(F), out);
    if (err)
        fiber_release(&F);
    return err;
}

int pn_fiber_run(pn_runtime *rt, pn_fiber_fn *fn, void *arg, const pn_fiber_opts *opts)
{
    pn_fiber_future F = pn_fiber(fn, arg, opts);
    int err = pn_block_on(rt, &F.base);
    if (err) {
        pn_future_drop(&F.base);
        return err;
    }
    return F.res;
}

int pn_fiber_await(pn_future *f)
{
    struct pn__fiber *fb = tls_fiber;
    if (!fb)
        return -EPERM;
    if (!f || !f->vt || !f->vt->poll)
        return -EINVAL;
    for (;;) {
        if (fb->cancelled) {
            pn_future_drop(f);
            return -ECANCELED;
        }
        if (pn_future_poll(f, fb->cx) == PN_READY)
            return 0;
        suspend(fb);
    }
}

pn_runtime *pn_fiber_runtime(void)
{
    return tls_fiber ? tls_fiber->rt : NULL;
}

const char *pn_fiber_name(void)
{
    return tls_fiber ? tls_fiber->name : NULL;
}

bool pn_fiber_cancelled(void)
{
    return tls_fiber && tls_fiber->cancelled;
}
