/*
 * worker_pool.c - a bounded job queue served by a group of worker tasks,
 * stopped through a cancellation token.
 *
 * Usage: worker_pool [--workers N]   (N = 0: the current-thread runtime;
 *                                     default: multi-thread, 2 workers)
 *
 * A feeder task sends JOBS jobs into a bounded mpsc channel (its send
 * waits while the queue is full: back-pressure).  WORKERS worker tasks,
 * spawned into one task group, share the queue's receiving end under an
 * async mutex, compute each job (the number of Collatz steps from n to 1)
 * and send the result into a second channel.  The main task collects every
 * result, checks each against a sequential computation, then cancels the
 * token: each worker, waiting for a job or for the token, sees the cancel,
 * leaves, and the main task joins the group.  Exit status 0 when every
 * result arrived once and was right.
 *
 * What it shows: values are copied into and out of channels (the sender's
 * variable is free again once the send is READY); a READY lock future is
 * the guard, so a task's drop can drop its children whatever state they
 * are in; a select of a receive and the token's cancelled() is how a task
 * waits for work or shutdown, whichever comes first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pollen.h>

#define JOBS 1000
#define WORKERS 4
#define QUEUE 16

typedef struct job { uint32_t id; uint64_t n; } job;
typedef struct result { uint32_t id; uint32_t steps; } result;

typedef struct pool {
    pn_mutex jobs_lock;          /* the workers share one receiving end */
    pn_mpsc_rx *jobs;
    pn_mpsc_tx *results;
    pn_cancel_token *stop;
} pool;

static uint32_t collatz_steps(uint64_t n)
{
    uint32_t steps = 0;
    for (; n != 1; steps++)
        n = n % 2 ? 3 * n + 1 : n / 2;
    return steps;
}

/* ---- the feeder: JOBS jobs into the bounded queue ----------------------- */

typedef struct feeder {
    pn_future base;
    int pc;
    pn_mpsc_tx *jobs;
    job j;
    pn_mpsc_send_future send;
} feeder;

static pn_poll feeder_poll(pn_future *f, pn_cx *cx)
{
    feeder *t = (feeder *)f;
    PN_ASYNC_BEGIN(t->pc);
    for (t->j.id = 0; t->j.id < JOBS; t->j.id++) {
        t->j.n = t->j.id + 1;
        t->send = pn_mpsc_send(t->jobs, &t->j);   /* waits while the queue is full */
        PN_AWAIT(t->pc, &t->send, cx);
        if (t->send.res < 0)
            break;                                /* the pool went away */
    }
    PN_ASYNC_END(t->pc);
}

static void feeder_drop(pn_future *f) { pn_future_drop(PN_FUTURE(&((feeder *)f)->send)); }

static const pn_future_vtable feeder_vt = { feeder_poll, feeder_drop, "feeder" };

/* ---- a worker: a job or the stop token, whichever comes first ------------ */

typedef struct worker {
    pn_future base;
    int pc;
    pool *p;
    job j;
    result r;
    pn_mutex_guard lock;
    pn_mpsc_recv_future recv;
    pn_cancel_wait_future stopped;
    pn_select2_future next;
    pn_mpsc_send_future send;
} worker;

static pn_poll worker_poll(pn_future *f, pn_cx *cx)
{
    worker *w = (worker *)f;
    PN_ASYNC_BEGIN(w->pc);
    for (;;) {
        w->lock = pn_mutex_lock(&w->p->jobs_lock);
        PN_AWAIT(w->pc, &w->lock, cx);
        w->recv = pn_mpsc_recv(w->p->jobs, &w->j);
        w->stopped = pn_cancel_token_cancelled(w->p->stop);
        w->next = pn_select2(PN_FUTURE(&w->recv), PN_FUTURE(&w->stopped));
        PN_AWAIT(w->pc, &w->next, cx);
        pn_mutex_unlock(&w->lock);
        if (w->next.index == 1 || w->recv.res < 0)
            break;                                /* stopped, or the queue closed */
        w->r = (result){ w->j.id, collatz_steps(w->j.n) };
        w->send = pn_mpsc_send(w->p->results, &w->r);
        PN_AWAIT(w->pc, &w->send, cx);
        if (w->send.res < 0)
            break;
    }
    PN_ASYNC_END(w->pc);
}

/* Aborted or dropped at shutdown: drop whatever is live.  A held lock is
 * released by dropping its guard; futures that were never made, finished
 * or released are no-ops to drop. */
static void worker_drop(pn_future *f)
{
    worker *w = (worker *)f;
    pn_future_drop(PN_FUTURE(&w->next));
    pn_future_drop(PN_FUTURE(&w->send));
    pn_future_drop(PN_FUTURE(&w->lock));
}

static const pn_future_vtable worker_vt = { worker_poll, worker_drop, "worker" };

/* ---- main task: start, collect, check, stop, join ----------------------- */

typedef struct run_pool {
    pn_future base;
    int pc;
    pool *p;
    pn_mpsc_rx *results;
    pn_task_group *workers;
    result r;
    pn_mpsc_recv_future recv;
    pn_task_group_join_future join;
    unsigned got, wrong;
    unsigned char seen[JOBS];
    int err;
} run_pool;

static pn_poll run_pool_poll(pn_future *f, pn_cx *cx)
{
    run_pool *s = (run_pool *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->got = 0; s->got < JOBS; s->got++) {
        s->recv = pn_mpsc_recv(s->results, &s->r);
        PN_AWAIT(s->pc, &s->recv, cx);
        if (s->recv.res < 0) {
            s->err = s->recv.res;
            break;
        }
        if (s->r.id >= JOBS || s->seen[s->r.id]++ || s->r.steps != collatz_steps(s->r.id + 1))
            s->wrong++;
    }
    pn_cancel_token_cancel(s->p->stop);           /* every worker leaves */
    for (;;) {
        s->join = pn_task_group_join_next(s->workers);
        PN_AWAIT(s->pc, &s->join, cx);
        if (s->join.res == -ENOENT)
            break;                                /* the group is empty */
        if (s->join.res < 0 && !s->err)
            s->err = s->join.res;
        pn_task_group_join_release(&s->join);
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable run_pool_vt = { run_pool_poll, NULL, "run_pool" };

static int fail(const char *what, int err)
{
    fprintf(stderr, "worker_pool: %s: %s\n", what, pn_strerror(err));
    return 1;
}

/* Run the pool on a runtime with `workers` workers (0: current-thread).
 * 0 when every result arrived once and was right. */
static int worker_pool_run(long workers)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
    }
    pn_runtime *rt;
    int err = pn_runtime_new(&cfg, &rt);
    if (err < 0)
        return fail("pn_runtime_new", err);

    pool *p = calloc(1, sizeof *p);
    run_pool *s = calloc(1, sizeof *s);           /* futures live in memory that stays */
    pn_mpsc_tx *jobs_tx;
    if (!p || !s)
        return fail("calloc", -ENOMEM);
    pn_mutex_init(&p->jobs_lock);
    p->stop = pn_cancel_token_new();
    if (!p->stop || (err = pn_mpsc_new(QUEUE, sizeof(job), &jobs_tx, &p->jobs)) < 0 ||
        (err = pn_mpsc_new(QUEUE, sizeof(result), &p->results, &s->results)) < 0 ||
        (err = pn_task_group_new(rt, &s->workers)) < 0)
        return fail("setting up", err ? err : -ENOMEM);

    for (int i = 0; i < WORKERS && !err; i++) {
        worker w = { .base = { &worker_vt }, .p = p };
        err = PN_TASK_GROUP_SPAWN(s->workers, w);
    }
    feeder fd = { .base = { &feeder_vt }, .jobs = jobs_tx };
    if (err < 0 || (err = PN_SPAWN(rt, fd, NULL)) < 0)
        return fail("spawn", err);

    s->base.vt = &run_pool_vt;
    s->p = p;
    err = pn_block_on(rt, PN_FUTURE(s));
    if (err < 0 || s->err < 0)
        return fail("run", err < 0 ? err : s->err);
    printf("%u jobs by %d workers: %u results, %u wrong\n", JOBS, WORKERS, s->got, s->wrong);
    int status = s->got == JOBS && s->wrong == 0 ? 0 : 1;

    pn_task_group_free(s->workers);
    pn_runtime_free(rt);                          /* the feeder is done: nothing left */
    pn_mpsc_tx_free(jobs_tx);
    pn_mpsc_rx_free(p->jobs);
    pn_mpsc_tx_free(p->results);
    pn_mpsc_rx_free(s->results);
    pn_cancel_token_free(p->stop);
    pn_mutex_destroy(&p->jobs_lock);
    free(s);
    free(p);
    return status;
}

#ifndef WORKER_POOL_NO_MAIN
int main(int argc, char **argv)
{
    long workers = argc == 3 && !strcmp(argv[1], "--workers") ? atol(argv[2]) : 2;
    return worker_pool_run(workers);
}
#endif
