/*
 * countdown.c - the smallest pollen program: a hand-written future.
 *
 * CountdownFuture counts down from 3.  Each poll prints the count, wakes its
 * own task (so the runtime polls it again right away) and returns
 * PN_PENDING; when the count reaches 0 it returns PN_READY with its output,
 * "Blastoff!".  Creating the future runs nothing: only pn_block_on's polls
 * advance it, four in all.  This is the CountdownFuture of the article that
 * pollen's model comes from ("Rust's poll-based futures"), in C.
 *
 *     $ build/examples/countdown
 *     Counting down: 3
 *     Counting down: 2
 *     Counting down: 1
 *     Blastoff!
 */
#include <stdio.h>
#include <pollen.h>

typedef struct countdown_future {
    pn_future base;      /* first: the vtable */
    unsigned count;      /* state */
    unsigned polls;      /* how many times we were polled */
    const char *output;  /* set when ready */
} countdown_future;

static pn_poll countdown_poll(pn_future *f, pn_cx *cx)
{
    countdown_future *self = (countdown_future *)f;
    self->polls++;
    if (self->count == 0) {
        self->output = "Blastoff!";
        return PN_READY;
    }
    printf("Counting down: %u\n", self->count);
    self->count--;
    /* We made progress and want to run again: without this wake the task
     * would never be polled again (the PENDING contract). */
    pn_waker_wake_by_ref(pn_cx_waker(cx));
    return PN_PENDING;
}

static const pn_future_vtable countdown_vt = { countdown_poll, NULL, "countdown" };

static countdown_future countdown_new(unsigned count)
{
    return (countdown_future){ .base = { &countdown_vt }, .count = count };
}

#ifndef COUNTDOWN_NO_MAIN
int main(void)
{
    pn_runtime *rt;
    int err = pn_runtime_new(NULL, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        return 1;
    }
    countdown_future cd = countdown_new(3);   /* nothing runs yet */
    err = pn_block_on(rt, PN_FUTURE(&cd));
    if (err < 0) {
        fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
        pn_runtime_free(rt);
        return 1;
    }
    printf("%s\n", cd.output);
    pn_runtime_free(rt);
    return 0;
}
#endif
