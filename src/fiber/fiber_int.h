/*
 * fiber_int.h - what the executor and the tests see of fibers (private).
 */
#ifndef PN_FIBER_INT_H
#define PN_FIBER_INT_H

#include <stddef.h>

/* A worker calls this on its own thread before it runs a task: the fibers
 * it starts are listed for pn__fiber_thread_exit.  On other threads none
 * are (their futures' owners drop them). */
void pn__fiber_thread_start(void);

/* A worker that stops calls this on its own thread: every fiber it started
 * and that has not finished is resumed, cancelled, until it returns.  Their
 * futures are dropped later by the shutdown, which then only releases the
 * stacks. */
void pn__fiber_thread_exit(void);

/* Fibers started on this worker thread and not finished (tests). */
size_t pn__fiber_thread_count(void);

#endif
