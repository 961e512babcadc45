/*
 * ok_macros.c - must compile cleanly with pollen's own warnings (gcc adds
 * -Wjump-misses-init): every PN_ASYNC_* form, with the pn_async state and
 * with a plain int resume point, locals kept in blocks that end before an
 * await, and a child re-assigned in a loop.
 */
#include <pollen.h>

typedef struct all_forms {
    pn_future base;
    pn_async as;
    pn_sleep_future nap;
    pn_async_fd afd;
    char buf[16];
    ssize_t n;
    int i, out;
} all_forms;

pn_poll all_forms_poll(pn_future *f, pn_cx *cx);

pn_poll all_forms_poll(pn_future *f, pn_cx *cx)
{
    all_forms *t = (all_forms *)f;
    PN_ASYNC_BEGIN(t->as);
    for (t->i = 0; t->i < 3; t->i++) {
        {
            int ms = t->i + 1;      /* a local that ends before the await */
            t->nap = pn_sleep(PN_MS(ms));
        }
        PN_AWAIT(t->as, &t->nap, cx);
    }
    PN_AWAIT_POLL(t->as, pn_async_fd_poll_read(&t->afd, cx, t->buf, sizeof t->buf, &t->n));
    PN_YIELD(t->as, cx);
    int after = t->i * 2;           /* a local after the last await is fine */
    t->out = after;
    PN_ASYNC_END(t->as);
}

PN_ASYNC_VTABLE(all_forms_vt, all_forms, as, all_forms_poll);

const pn_future_vtable *all_forms_vtable(void);
const pn_future_vtable *all_forms_vtable(void) { return &all_forms_vt; }

/* The int form (no live child tracking). */
typedef struct int_form {
    pn_future base;
    int pc;
    pn_sleep_future nap;
} int_form;

pn_poll int_form_poll(pn_future *f, pn_cx *cx);

pn_poll int_form_poll(pn_future *f, pn_cx *cx)
{
    int_form *t = (int_form *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->nap = pn_sleep(PN_MS(1));
    PN_AWAIT(t->pc, &t->nap, cx);
    PN_AWAIT_POLL(t->pc, pn_future_poll(PN_FUTURE(&t->nap), cx));
    PN_YIELD(t->pc, cx);
    PN_ASYNC_END(t->pc);
}
