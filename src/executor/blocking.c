/*
 * blocking.c - the blocking pool: pn_spawn_blocking and its threads.
 *
 * One pool per runtime, in a registry keyed by the runtime pointer (the
 * runtime struct has no field for it).  A pool is a FIFO of job records
 * under one mutex, a condition variable (CLOCK_MONOTONIC) for idle threads,
 * and exact counts of threads, idle threads and pending notifications, in
 * the manner of Tokio's blocking pool: a submit either signals one idle
 * thread (num_idle--, num_notify++) or starts a thread, never both, and a
 * thread that wakes takes a notification only if one is pending, so
 * spurious wakeups are filtered out.
 *
 * Job record.  The future and the job are separate allocations: the job
 * outlives a dropped future while a pool thread runs it.  Ownership:
 *   - while `state` is QUEUED the job is on the queue (pool->mu): whoever
 *     takes it off (a pool thread, the dropping future, shutdown) sets
 *     TAKEN under pool->mu;
 *   - after that, job->mu guards `done`, `detached`, the result and the
 *     waker.  The completer (pool thread or shutdown) sets done and takes
 *     the waker, then wakes it outside the lock; if the future was dropped
 *     first (detached) the completer frees the job instead.  The future
 *     frees it when it sees done (poll: PN_READY; drop: discard).
 *   So exactly one side frees the job, and nobody touches it afterwards.
 * A future's drop reads `state` without the pool lock first: once a job is
 * TAKEN it never goes back, so a dropped future touches the pool only for
 * a job still queued -- and pn__blocking_pool_free takes every queued job,
 * so no future reaches a freed pool.
 *
 * Wakes.  A pool thread whose queue is empty after a call counts itself
 * idle and wakes the future under pool->mu, then waits: the next submit
 * finds it idle and waiting (no new thread, no lock ping-pong).  Wakers
 * are called there under pool->mu, so a waker must not submit a blocking
 * call itself (pollen's wakers only schedule a task).  Submits signal the
 * condition variable after unlocking.  On a 2-vCPU VM (noisy) a task
 * awaiting no-op calls one after another sees a round trip of ~7-20 us;
 * batches of 100 run at ~90-200K calls/s.
 *
 * Threads.  Joinable.  A thread that retires (keep-alive expired, or more
 * threads than max_threads) moves its record to the pool's single `exited`
 * slot and joins the thread that was there before; shutdown joins the live
 * threads and the one in the slot.  No thread outlives the pool.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include "blocking.h"
#include "rt.h"
#include "core/sys.h"

#define DEFAULT_MAX_THREADS 64u
#define DEFAULT_KEEP_ALIVE_NS (10ull * 1000000000ull)

enum { JOB_QUEUED = 0, JOB_TAKEN = 1 };

typedef struct qlink {
    struct qlink *next, *prev;
} qlink;

typedef struct pn__blocking_job {
    qlink link;                        /* first: queue link, under pool->mu */
    struct pn__blocking_pool *pool;
    pn_blocking_fn fn;
    void *arg;
    pn_blocking_discard_fn discard;
    _Atomic int state;                 /* JOB_QUEUED -> JOB_TAKEN under pool->mu */
    pthread_mutex_t mu;                /* guards what follows */
    bool done;                         /* result and status are final */
    bool detached;                     /* the future was dropped */
    void *result;
    int status;
    pn_waker waker;
} job;

typedef struct pool_thread {
    struct pool_thread *next, *prev;   /* pool->live, under pool->mu */
    struct pn__blocking_pool *pool;
    pthread_t tid;
} pool_thread;

struct pn__blocking_pool {
    struct pn__blocking_pool *reg_next;  /* registry, under reg_mu */
    pn_runtime *rt;
    pthread_mutex_t mu;
    pthread_cond_t cv;                 /* idle threads wait here */
    qlink queue;                       /* jobs not started, FIFO */
    unsigned queued;
    unsigned num_threads;              /* started and not retired */
    unsigned num_idle;                 /* waiting on cv and not notified */
    unsigned num_notify;               /* notifications not yet taken */
    unsigned max_threads;
    uint64_t keep_alive_ns;
    uint64_t spawned;
    bool shutdown;
    pool_thread *live;                 /* records of running threads */
    pool_thread *exited;               /* a retired thread, not joined yet */
};

typedef struct pn__blocking_pool pool;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pool *reg_head;

static pn__blocking_thread_create_fn thread_create = pthread_create;

void pn__blocking_set_thread_create(pn__blocking_thread_create_fn fn)
{
    thread_create = fn ? fn : pthread_create;
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void q_push(pool *p, job *j)
{
    j->link.next = &p->queue;
    j->link.prev = p->queue.prev;
    p->queue.prev->next = &j->link;
    p->queue.prev = &j->link;
    p->queued++;
}

static void q_unlink(pool *p, job *j)
{
    j->link.prev->next = j->link.next;
    j->link.next->prev = j->link.prev;
    j->link.next = j->link.prev = NULL;
    p->queued--;
    atomic_store_explicit(&j->state, JOB_TAKEN, memory_order_release);
}

static void job_free(job *j)
{
    pn_waker_drop(&j->waker);
    pthread_mutex_destroy(&j->mu);
    pn__free(j);
}

/*
 * The call is over (status 0: fn returned `result`) or will never run
 * (status < 0).  Hand the result to the future and return its waker for
 * the caller to wake, or, if the future is gone, discard the result, free
 * the job and return the empty waker.  The job is TAKEN.  After this the
 * future may free the job at any time: the caller touches only the waker.
 */
static pn_waker job_finish(job *j, void *result, int status)
{
    pthread_mutex_lock(&j->mu);
    if (j->detached) {
        pthread_mutex_unlock(&j->mu);
        if (j->discard)
            j->discard(j->arg, result, status);
        job_free(j);
        return PN_WAKER_NONE;
    }
    j->result = result;
    j->status = status;
    j->done = true;
    pn_waker w = j->waker;
    j->waker = PN_WAKER_NONE;
    pthread_mutex_unlock(&j->mu);
    return w;
}

/* Wake the future of a call that is over, then count the call out of its
 * runtime's in-flight calls (a paused clock waits for them: rt.h).  In
 * this order, so that the loop sees the woken task before it may jump. */
static void wake_done(pool *p, pn_waker *w)
{
    pn_waker_wake(w);
    pn__runtime_blocking_done(p->rt);
}

/* ---- pool threads -------------------------------------------------------- */

/* Move the caller's record to the exited slot and join the previous
 * occupant.  Called with p->mu held; returns with it released. */
static void retire(pool *p, pool_thread *self)
{
    p->num_threads--;
    if (self->prev)
        self->prev->next = self->next;
    else
        p->live = self->next;
    if (self->next)
        self->next->prev = self->prev;
    pool_thread *zombie = p->exited;
    p->exited = self;
    pthread_mutex_unlock(&p->mu);
    /* self now belongs to whoever joins it: do not touch it (or p). */
    if (zombie) {
        pthread_join(zombie->tid, NULL);
        pn__free(zombie);
    }
}

static void *pool_main(void *arg)
{
    pool_thread *self = arg;
    pool *p = self->pool;
    pthread_setname_np(pthread_self(), "pn-blocking");

    pthread_mutex_lock(&p->mu);
    for (;;) {
        uint64_t since;
        if (p->queue.next != &p->queue) {
            job *j = (job *)p->queue.next;
            q_unlink(p, j);
            pthread_mutex_unlock(&p->mu);
            pn_waker w = job_finish(j, j->fn(j->arg), 0);
            pthread_mutex_lock(&p->mu);
            if (!p->shutdown && p->num_threads > p->max_threads) {
                wake_done(p, &w);
                retire(p, self);
                return NULL;
            }
            if (p->queue.next != &p->queue || p->shutdown) {
                pthread_mutex_unlock(&p->mu);
                wake_done(p, &w);
                pthread_mutex_lock(&p->mu);
                continue;
            }
            /* The queue is empty: count ourselves idle, then wake the
             * future while still holding p->mu and go straight to wait.
             * The call its task submits next then finds this thread idle
             * (instead of starting another) and, usually, already waiting
             * (instead of contending for p->mu with us).  Waking under the
             * lock is cheap here: nobody else is queueing work. */
            p->num_idle++;
            since = mono_ns();
            wake_done(p, &w);
        } else {
            if (p->shutdown)
                break;
            p->num_idle++;
            since = mono_ns();
        }

        /* Idle: wait for a notification, shutdown or the keep-alive. */
        for (;;) {
            if (p->num_notify > 0) {
                p->num_notify--;
                break;
            }
            if (p->shutdown) {
                p->num_idle--;
                break;
            }
            uint64_t now = mono_ns();
            uint64_t deadline = since + p->keep_alive_ns;
            if (deadline < since)
                deadline = UINT64_MAX;
            if (now >= deadline || p->num_threads > p->max_threads) {
                p->num_idle--;
                retire(p, self);
                return NULL;
            }
            struct timespec ts = {
                .tv_sec = (time_t)(deadline / 1000000000ull),
                .tv_nsec = (long)(deadline % 1000000000ull),
            };
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
    }
    /* Shutdown: leave the record on the live list for the joiner. */
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start one thread.  p->mu held.  Returns 0 or -errno. */
static int spawn_thread(pool *p)
{
    pool_thread *t = pn__calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->pool = p;
    /* Pool threads block every signal: signals go to the program's own
     * threads, not to a thread stuck in a blocking call. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = thread_create(&t->tid, NULL, pool_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pn__free(t);
        return -e;
    }
    /* The thread waits for p->mu before it looks at anything. */
    t->next = p->live;
    if (p->live)
        p->live->prev = t;
    p->live = t;
    p->num_threads++;
    p->spawned++;
    return 0;
}

/* ---- the registry -------------------------------------------------------- */

static pool *pool_new(pn_runtime *rt)
{
    pool *p = pn__calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        pn__free(p);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        pn__free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->rt = rt;
    p->queue.next = p->queue.prev = &p->queue;
    p->max_threads = DEFAULT_MAX_THREADS;
    p->keep_alive_ns = DEFAULT_KEEP_ALIVE_NS;
    return p;
}

struct pn__blocking_pool *pn__blocking_pool_get(pn_runtime *rt)
{
    pthread_mutex_lock(&reg_mu);
    pool *p = reg_head;
    while (p && p->rt != rt)
        p = p->reg_next;
    if (!p) {
        p = pool_new(rt);
        if (p) {
            p->reg_next = reg_head;
            reg_head = p;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return p;
}

void pn__blocking_pool_free(struct pn__blocking_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = true;
    /* Take the queued jobs; they never run. */
    qlink taken = { &taken, &taken };
    if (p->queue.next != &p->queue) {
        taken.next = p->queue.next;
        taken.prev = p->queue.prev;
        taken.next->prev = &taken;
        taken.prev->next = &taken;
        p->queue.next = p->queue.prev = &p->queue;
        p->queued = 0;
        for (qlink *l = taken.next; l != &taken; l = l->next)
            atomic_store_explicit(&((job *)l)->state, JOB_TAKEN, memory_order_release);
    }
    /* After the flag no thread moves its record: take them all. */
    pool_thread *live = p->live, *exited = p->exited;
    p->live = p->exited = NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);

    for (qlink *l = taken.next, *next; l != &taken; l = next) {
        next = l->next;
        pn_waker w = job_finish((job *)l, NULL, -ESHUTDOWN);
        wake_done(p, &w);
    }
    /* Running calls finish first: this waits for them. */
    while (live) {
        pool_thread *t = live;
        live = t->next;
        pthread_join(t->tid, NULL);
        pn__free(t);
    }
    if (exited) {
        pthread_join(exited->tid, NULL);
        pn__free(exited);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pn__free(p);
}

void pn__blocking_shutdown(pn_runtime *rt)
{
    pthread_mutex_lock(&reg_mu);
    pool **pp = &reg_head;
    while (*pp && (*pp)->rt != rt)
        pp = &(*pp)->reg_next;
    pool *p = *pp;
    if (p)
        *pp = p->reg_next;
    pthread_mutex_unlock(&reg_mu);
    pn__blocking_pool_free(p);
}

void pn__blocking_pool_stats(pn_runtime *rt, pn__blocking_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&reg_mu);
    pool *p = reg_head;
    while (p && p->rt != rt)
        p = p->reg_next;
    if (p) {
        pthread_mutex_lock(&p->mu);
        out->threads = p->num_threads;
        out->idle = p->num_idle;
        out->queued = p->queued;
        out->spawned_threads = p->spawned;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

int pn_blocking_pool_configure(pn_runtime *rt, unsigned max_threads, uint64_t keep_alive_ns)
{
    if (!rt || max_threads == 0)
        return -EINVAL;
    pool *p = pn__blocking_pool_get(rt);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&p->mu);
    p->max_threads = max_threads;
    p->keep_alive_ns = keep_alive_ns;
    /* A higher limit may leave queued jobs without a thread: start some. */
    while (!p->shutdown && p->queued > p->num_notify && p->num_threads < p->max_threads &&
           spawn_thread(p) == 0)
        ;
    /* Idle threads re-read the keep-alive and the limit. */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* ---- the future ---------------------------------------------------------- */

/* First poll: make the job record and queue it.  0 or -errno. */
static int submit(pn_blocking_future *b, pn_cx *cx)
{
    if (!b->fn || !cx->rt)
        return -EINVAL;
    pool *p = pn__blocking_pool_get(cx->rt);
    if (!p)
        return -ENOMEM;
    job *j = pn__calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    pthread_mutex_init(&j->mu, NULL);
    j->pool = p;
    j->fn = b->fn;
    j->arg = b->arg;
    j->discard = b->discard;
    atomic_init(&j->state, JOB_QUEUED);
    j->waker = pn_waker_clone(cx->waker);

    pthread_mutex_lock(&p->mu);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->mu);
        job_free(j);
        return -ESHUTDOWN;
    }
    q_push(p, j);
    atomic_fetch_add(&p->rt->blocking_inflight, 1);
    bool signal = false;
    if (p->num_idle > 0) {
        p->num_idle--;
        p->num_notify++;
        signal = true;
    } else if (p->num_threads < p->max_threads) {
        int e = spawn_thread(p);
        if (e != 0 && p->num_threads == 0) {
            /* Nobody would ever run it. */
            q_unlink(p, j);
            pthread_mutex_unlock(&p->mu);
            pn__runtime_blocking_done(p->rt);
            job_free(j);
            return e == -ENOMEM ? -ENOMEM : -EAGAIN;
        }
        /* Otherwise a running thread takes it when it is free. */
    }
    pthread_mutex_unlock(&p->mu);
    /* Signal after unlocking, so the woken thread does not block on p->mu
     * at once.  The notification itself is the count, taken under the
     * lock: whichever idle thread wakes first takes it. */
    if (signal)
        pthread_cond_signal(&p->cv);
    b->job = j;
    return 0;
}

static pn_poll blocking_poll(pn_future *f, pn_cx *cx)
{
    pn_blocking_future *b = (pn_blocking_future *)f;
    job *j = b->job;
    if (!j) {
        int e = submit(b, cx);
        if (e == 0)
            return PN_PENDING;
        b->value = NULL;
        b->res = e;
        return PN_READY;
    }
    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        pn_waker_set(&j->waker, cx->waker);
        pthread_mutex_unlock(&j->mu);
        return PN_PENDING;
    }
    pthread_mutex_unlock(&j->mu);
    /* done: the completer no longer touches j; it is ours. */
    if (pn_cx_budget_spend(cx) == PN_PENDING)
        return PN_PENDING;
    b->value = j->result;
    b->res = j->status;
    b->job = NULL;
    job_free(j);
    return PN_READY;
}

static void blocking_drop(pn_future *f)
{
    pn_blocking_future *b = (pn_blocking_future *)f;
    job *j = b->job;
    if (!j)
        return;
    b->job = NULL;

    if (atomic_load_explicit(&j->state, memory_order_acquire) == JOB_QUEUED) {
        pool *p = j->pool;
        pthread_mutex_lock(&p->mu);
        if (atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_QUEUED) {
            /* Not started: it never runs.  Nobody else holds it now. */
            q_unlink(p, j);
            pthread_mutex_unlock(&p->mu);
            pn__runtime_blocking_done(p->rt);
            if (j->discard)
                j->discard(j->arg, NULL, -ECANCELED);
            job_free(j);
            return;
        }
        pthread_mutex_unlock(&p->mu);
    }

    pthread_mutex_lock(&j->mu);
    if (j->done) {
        /* Finished but not collected: discard here. */
        pthread_mutex_unlock(&j->mu);
        if (j->discard)
            j->discard(j->arg, j->result, j->status);
        job_free(j);
        return;
    }
    /* Running (or about to be completed by shutdown): the completer frees it. */
    j->detached = true;
    pn_waker w = j->waker;
    j->waker = PN_WAKER_NONE;
    pthread_mutex_unlock(&j->mu);
    pn_waker_drop(&w);
}

static const pn_future_vtable blocking_vt = { blocking_poll, blocking_drop, "blocking" };

pn_blocking_future pn_spawn_blocking_ex(pn_blocking_fn fn, void *arg, pn_blocking_discard_fn discard)
{
    return (pn_blocking_future){ .base = { &blocking_vt }, .fn = fn, .arg = arg, .discard = discard };
}

pn_blocking_future pn_spawn_blocking(pn_blocking_fn fn, void *arg)
{
    return pn_spawn_blocking_ex(fn, arg, NULL);
}
