/*
 * fail_gcc_local_after_await.c - must NOT compile with gcc's
 * -Wjump-misses-init -Werror: a local initialised before an await and read
 * after it holds garbage when the poll resumes (clang has no such warning).
 * expect: jump-misses-init
 */
#include <pollen.h>

typedef struct trap {
    pn_future base;
    pn_async as;
    pn_sleep_future nap;
    int out;
} trap;

pn_poll trap_poll(pn_future *f, pn_cx *cx);

pn_poll trap_poll(pn_future *f, pn_cx *cx)
{
    trap *t = (trap *)f;
    PN_ASYNC_BEGIN(t->as);
    int n = 42;                     /* lost at the await below */
    t->nap = pn_sleep(PN_MS(1));
    PN_AWAIT(t->as, &t->nap, cx);
    t->out = n;                     /* garbage on resume */
    PN_ASYNC_END(t->as);
}
