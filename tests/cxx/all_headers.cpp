/*
 * tests/cxx/all_headers.cpp - pollen's public headers from C++.
 *
 * Includes pollen.h and every pollen/<name>.h (the list, all_headers.inc, is
 * generated from the include directory, so a new header is covered without
 * an edit here), then <atomic>, which must not clash with them.  Built with
 * -std=c++17 -Wall -Wextra -pedantic -Werror by g++ and clang++ (make
 * check-cxx), linked with libpollen.a and run:
 *  - every type's size and alignment, and the offsets around the atomic
 *    fields, must equal C's (layout.c);
 *  - pn_version() links and matches the header;
 *  - the static initialisers, the inline waker functions, PN_WAKER_NONE and
 *    the PN_ASYNC macros compile as C++;
 *  - a current-thread and a multi-thread runtime run real futures: yield,
 *    sleep, a spawned task joined, a mutex lock inside an async future.
 * Exits 0 and prints "ok", or prints what failed and exits 1.  A lost
 * wakeup cannot hang it: alarm() kills it after 20 seconds.
 */
#include <pollen.h>
#include "all_headers.inc"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "layout.h"

static int failures;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,   \
                         __LINE__, #cond);                                \
            failures++;                                                   \
        }                                                                 \
    } while (0)

/* ---- Layout: C++'s view against C's ---------------------------------- */

#define TYPE(t) { #t, sizeof(t), alignof(t) },
#define FIELD(t, f) { #t "." #f, offsetof(t, f), 0 },
static const pn_cxx_layout cxx_layout[] = { PN_CXX_TYPES(TYPE) PN_CXX_FIELDS(FIELD) };

static void check_layout()
{
    size_t n = sizeof cxx_layout / sizeof cxx_layout[0];
    CHECK(n == pn_cxx_c_layout_len);
    for (size_t i = 0; i < n && i < pn_cxx_c_layout_len; i++) {
        const pn_cxx_layout *c = &pn_cxx_c_layout[i], *x = &cxx_layout[i];
        if (std::strcmp(c->name, x->name) != 0 || c->size != x->size ||
            c->align != x->align) {
            std::fprintf(stderr, "layout differs: C %s %zu/%zu, C++ %s %zu/%zu\n",
                         c->name, c->size, c->align, x->name, x->size, x->align);
            failures++;
        }
    }
}

/* ---- Static initialisers ---------------------------------------------- */

static pn_mutex mutex = PN_MUTEX_INIT;
static pn_rwlock rwlock = PN_RWLOCK_INIT;
static pn_semaphore sem = PN_SEMAPHORE_INIT(2);
static pn_notify notify = PN_NOTIFY_INIT;
static pn_wait_group wait_group = PN_WAIT_GROUP_INIT;
static pn_waker_slot slot = PN_WAKER_SLOT_INIT;

/* ---- A future written with the PN_ASYNC macros ------------------------ */

struct lock_and_nap {
    pn_future base;
    int pc;
    pn_sleep_future nap;
    pn_mutex_guard guard;
    int *counter;   /* incremented under the mutex */
    int status;     /* output: the lock's status */
};

static pn_poll lock_and_nap_poll(pn_future *f, pn_cx *cx)
{
    lock_and_nap *t = (lock_and_nap *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->nap = pn_sleep(PN_MS(1));
    PN_AWAIT(t->pc, &t->nap, cx);
    t->guard = pn_mutex_lock(&mutex);
    PN_AWAIT(t->pc, &t->guard, cx);
    t->status = t->guard.res;
    PN_YIELD(t->pc, cx);
    (*t->counter)++;
    pn_mutex_unlock(&t->guard);
    PN_ASYNC_END(t->pc);
}

static void lock_and_nap_drop(pn_future *f)
{
    lock_and_nap *t = (lock_and_nap *)f;
    pn_future_drop(&t->nap.base);
    pn_future_drop(&t->guard.base);
}

static const pn_future_vtable lock_and_nap_vt = { lock_and_nap_poll, lock_and_nap_drop,
                                                  "lock_and_nap" };

static lock_and_nap lock_and_nap_new(int *counter)
{
    lock_and_nap t;
    std::memset(&t, 0, sizeof t);
    t.base.vt = &lock_and_nap_vt;
    t.counter = counter;
    return t;
}

/* ---- Runtimes ----------------------------------------------------------- */

static void run_on(pn_runtime_flavor flavor)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = flavor;
    cfg.workers = 2;
    pn_runtime *rt = NULL;
    int rc = pn_runtime_new(&cfg, &rt);
    CHECK(rc == 0);
    if (rc != 0) {
        std::fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(rc));
        return;
    }
    CHECK(std::strlen(pn_backend_name(pn_runtime_backend(rt))) > 0);

    pn_yield_now_future y = pn_yield();
    CHECK(pn_block_on(rt, &y.base) == 0);

    pn_instant before = pn_now();
    pn_sleep_future s = pn_sleep(PN_MS(2));
    CHECK(pn_block_on(rt, &s.base) == 0);
    CHECK(pn_now() >= pn_sleep_deadline(&s));
    CHECK(pn_sleep_deadline(&s) >= before + PN_MS(2));

    int counter = 0;
    lock_and_nap task = lock_and_nap_new(&counter);
    pn_join_handle *h = NULL;
    CHECK(PN_SPAWN(rt, task, &h) == 0);
    lock_and_nap mine = lock_and_nap_new(&counter);
    CHECK(pn_block_on(rt, &mine.base) == 0);
    CHECK(mine.status == 0);
    if (h) {
        pn_join_future j = pn_join(h);
        CHECK(pn_block_on(rt, &j.base) == 0);
        CHECK(j.res == 0);
        CHECK(j.output && ((lock_and_nap *)j.output)->status == 0);
        pn_join_handle_free(h);
    }
    CHECK(counter == 2);

    CHECK(pn_runtime_free(rt) == 0);
}

int main()
{
    alarm(20);

    check_layout();

    CHECK(pn_version() == PN_VERSION_HEX);
    char v[32];
    std::snprintf(v, sizeof v, "%d.%d.%d", PN_VERSION_MAJOR, PN_VERSION_MINOR,
                  PN_VERSION_PATCH);
    CHECK(std::strcmp(pn_version_string(), v) == 0);
    CHECK(std::strcmp(pn_err_name(-EAGAIN), "EAGAIN") == 0);

    pn_waker w = PN_WAKER_NONE;
    CHECK(pn_waker_is_none(&w));
    pn_waker c = pn_waker_clone(&w);
    CHECK(pn_waker_will_wake(&c, &w));
    pn_waker_set(&c, &w);
    pn_waker_wake_by_ref(&w);
    pn_waker_wake(&c);
    pn_waker_drop(&w);

    CHECK(pn_semaphore_available(&sem) == 2);
    CHECK(pn_wait_group_count(&wait_group) == 0);
    (void)rwlock;
    (void)notify;
    (void)slot;

    std::atomic<int> a{1};
    CHECK(std::atomic_load(&a) == 1);

    run_on(PN_RUNTIME_CURRENT_THREAD);
    run_on(PN_RUNTIME_MULTI_THREAD);

    if (failures) {
        std::fprintf(stderr, "all_headers: %d check(s) failed\n", failures);
        return 1;
    }
    std::puts("all_headers: ok");
    return 0;
}
