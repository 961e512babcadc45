/*
 * test_race_stress.c - the stress programs behind the races of
 * test_races.c, without any hook: they only give the race many chances.
 * Run plain they seldom hit a window; under `make test-chaos` the schedule
 * perturbation opens the windows, and with a mend reverted they fail
 * (docs/ARCHITECTURE.md, "How concurrency is verified", has the counts).
 *
 *   foreign_spawners_racing_shutdown_account_for_every_future
 *       threads outside the runtime spawn while the runtime shuts down;
 *       every future is completed or dropped exactly once, by the runtime
 *       if pn_spawn said 0, by the caller if it said -ESHUTDOWN
 *   closing_and_reusing_fds_under_dispatch_never_leaks_a_hang_up
 *       tasks hang up a connection, close it and register a new one while
 *       the reactor thread (or the worker holding the driver) dispatches
 *       the hang-up; the new connection must never see it
 *
 * Failures off the test thread are counted and asserted on it.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

TestSuite(race_stress, .timeout = PN_TIMEOUT(60));

static _Atomic int errors, error_line;
#define CHECK(cond) do { if (!(cond)) { atomic_store(&error_line, __LINE__); \
                                       atomic_fetch_add(&errors, 1); } } while (0)

/* ---- foreign spawners racing shutdown ----------------------------------------- */

#define SPAWNERS 3
#define PER_SPAWNER 400
#define ROUNDS 12

/* Per future: done (completed) + dropped, each must end at exactly 1 for
 * a future whose spawn was tried, 0 for one never tried. */
static _Atomic int fate[SPAWNERS * PER_SPAWNER];
static _Atomic int tried[SPAWNERS];
static pn_runtime *sp_rt;

typedef struct fated {
    pn_future base;
    int id;
} fated;

static pn_poll fated_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    fated *x = (fated *)f;
    if (x->id % 2)
        return PN_PENDING;                  /* odd ones wait for ever */
    atomic_fetch_add(&fate[x->id], 1);
    return PN_READY;
}

static void fated_drop(pn_future *f) { atomic_fetch_add(&fate[((fated *)f)->id], 1); }

static const pn_future_vtable fated_vt = { fated_poll, fated_drop, "fated" };

static void *sp_spawner(void *arg)
{
    int s = (int)(intptr_t)arg;
    for (int j = 0; j < PER_SPAWNER; j++) {
        fated f = { { &fated_vt }, s * PER_SPAWNER + j };
        atomic_store(&tried[s], j + 1);
        int err = pn_spawn(sp_rt, &f.base, sizeof f, NULL);
        if (err == -ESHUTDOWN) {
            fated_drop(&f.base);            /* still ours */
            break;
        }
        CHECK(err == 0);
    }
    return NULL;
}

static void spawners_run(unsigned workers)
{
    for (int round = 0; round < ROUNDS; round++) {
        sp_rt = mt_driver_new(workers, PN_DRIVER_WORKERS);
        for (int i = 0; i < SPAWNERS * PER_SPAWNER; i++)
            atomic_store(&fate[i], 0);
        pthread_t th[SPAWNERS];
        for (int s = 0; s < SPAWNERS; s++) {
            atomic_store(&tried[s], 0);
            cr_assert_eq(pthread_create(&th[s], NULL, sp_spawner, (void *)(intptr_t)s), 0);
        }
        /* Shut down once the spawners are under way: at a different point
         * of their loops each round. */
        int at = 1 + (round * 37) % (PER_SPAWNER - 1);
        while (atomic_load(&tried[round % SPAWNERS]) < at)
            sched_yield();
        cr_assert_eq(pn_runtime_shutdown(sp_rt), 0);
        for (int s = 0; s < SPAWNERS; s++)
            pthread_join(th[s], NULL);
        pn_runtime_free(sp_rt);
        for (int s = 0; s < SPAWNERS; s++)
            for (int j = 0; j < PER_SPAWNER; j++) {
                int id = s * PER_SPAWNER + j, want = j < atomic_load(&tried[s]);
                cr_assert_eq(atomic_load(&fate[id]), want,
                             "round %d, future %d: completed or dropped %d times, want %d",
                             round, id, atomic_load(&fate[id]), want);
            }
    }
    cr_assert_eq(atomic_load(&errors), 0, "a check failed at line %d", atomic_load(&error_line));
}

Test(race_stress, foreign_spawners_racing_shutdown_account_for_every_future_1_worker)
{
    spawners_run(1);
}

Test(race_stress, foreign_spawners_racing_shutdown_account_for_every_future_2_workers)
{
    spawners_run(2);
}

/* ---- fd close and reuse under dispatch ------------------------------------------ */

#define CHURNERS 4
#define CHURN_ITERS 150

typedef struct churn {
    pn_future base;
    int state, iter, wrote;
    int peer;                   /* the live connection's other end */
    pn_async_fd conn;
    char c;
} churn;

static _Atomic int churn_done;

/* The hang-up bits a connection whose peer is open must never have. */
static void check_no_hangup(pn_async_fd *afd)
{
    if (afd->reg) {
        uint64_t w = atomic_load(&afd->reg->readiness);
        if (PN__GEN(w) == afd->gen)
            CHECK(!(w & (PN__READY_READ_CLOSED | PN__READY_WRITE_CLOSED)));
    }
}

static pn_poll churn_poll(pn_future *f, pn_cx *cx)
{
    churn *k = (churn *)f;
    ssize_t res;
    for (;;) {
        if (k->state == 0) {
            if (k->iter == CHURN_ITERS) {
                atomic_fetch_add(&churn_done, 1);
                return PN_READY;
            }
            /* A connection that waits, is hung up, and closed at once:
             * its hang-up is on its way to the dispatcher. */
            int p[2], q[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0 ||
                socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) < 0) {
                CHECK(0);
                return PN_READY;
            }
            pn_async_fd old;
            CHECK(pn_async_fd_init(&old, p[0]) == 0);
            CHECK(pn_async_fd_poll_read(&old, cx, &k->c, 1, &res) == PN_PENDING);
            close(p[1]);
            if (k->iter % 2)
                sched_yield();          /* half the time, let it arrive */
            pn_async_fd_close(&old);
            /* A new connection, likely on the record just freed. */
            CHECK(pn_async_fd_init(&k->conn, q[0]) == 0);
            k->peer = q[1];
            k->wrote = 0;
            k->state = 1;
        }
        pn_poll r = pn_async_fd_poll_read(&k->conn, cx, &k->c, 1, &res);
        check_no_hangup(&k->conn);
        if (r == PN_PENDING) {
            if (k->wrote)
                return PN_PENDING;
            k->wrote = 1;
            CHECK(write(k->peer, "x", 1) == 1);
            continue;
        }
        CHECK(res == 1 && k->c == 'x');
        pn_async_fd_close(&k->conn);
        close(k->peer);
        k->state = 0;
        k->iter++;
        if (k->iter % 8 == 0) {         /* let the other churners in */
            pn_waker_wake_by_ref(cx->waker);
            return PN_PENDING;
        }
    }
}

static const pn_future_vtable churn_vt = { churn_poll, NULL, "churn" };

static void churn_run(pn_driver_mode driver)
{
    pn_runtime *rt = mt_driver_new(2, driver);
    atomic_store(&churn_done, 0);
    pn_join_handle *h[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) {
        churn k = { .base = { &churn_vt } };
        cr_assert_eq(pn_spawn(rt, &k.base, sizeof k, &h[i]), 0);
    }
    for (int i = 0; i < CHURNERS; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(atomic_load(&churn_done), CHURNERS);
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&errors), 0, "a check failed at line %d", atomic_load(&error_line));
}

Test(race_stress, closing_and_reusing_fds_under_dispatch_never_leaks_a_hang_up_reactor_thread)
{
    int before = count_fds();
    churn_run(PN_DRIVER_REACTOR_THREAD);
    cr_assert_eq(count_fds(), before, "fds left");
}

Test(race_stress, closing_and_reusing_fds_under_dispatch_never_leaks_a_hang_up_workers_drive)
{
    int before = count_fds();
    churn_run(PN_DRIVER_WORKERS);
    cr_assert_eq(count_fds(), before, "fds left");
}
