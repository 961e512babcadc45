/*
 * slab.h - registration records: the slab that stores them and the small
 * per-record helpers shared by the reactor (epoll.c) and the I/O poll
 * helpers (io.c, io_futures.c).  Private.
 *
 * The slab owns pn__registration records in fixed chunks of
 * PN__SLAB_CHUNK records.  Invariants:
 *  - a chunk never moves and is never freed before pn__slab_destroy, so a
 *    pointer to a record (and a lookup by index from the driver thread)
 *    stays valid for the life of the reactor;
 *  - the array of chunk pointers grows by doubling; an outgrown array is
 *    kept (retired) until destroy, so a lookup that loaded the old array
 *    pointer concurrently with a grow still reads valid memory;
 *  - index = chunk * PN__SLAB_CHUNK + slot, always < PN__SLAB_MAX_INDEX
 *    (UINT32_MAX is the reactor's wake token, never a record);
 *  - a record is live iff its fd >= 0; free records are on the free list
 *    (LIFO) with fd == -1; the generation is bumped each time a record is
 *    released, so index + generation names one registration forever (until
 *    2^32 reuses of one slot).
 * The slab itself is not thread-safe: the reactor serialises alloc and
 * release with its own lock; pn__slab_get is safe against a concurrent
 * alloc.
 */
#ifndef PN_REACTOR_SLAB_H
#define PN_REACTOR_SLAB_H

#include <stdatomic.h>
#include <sys/socket.h>
#include "reactor/reactor.h"

#define PN__SLAB_CHUNK 256u
#define PN__SLAB_MAX_CHUNKS ((uint32_t)(UINT32_MAX / PN__SLAB_CHUNK) - 1u)
#define PN__SLAB_MAX_RETIRED 32

typedef struct pn__slab {
    _Atomic(pn__registration **) chunks;  /* array of chunk pointers */
    _Atomic uint32_t nchunks;             /* chunks allocated */
    uint32_t cap;                         /* capacity of the chunks array */
    pn__registration **retired[PN__SLAB_MAX_RETIRED];
    unsigned nretired;
    pn__registration *free_list;
    size_t live;
} pn__slab;

void pn__slab_init(pn__slab *s);
/* Take a free record (fd still -1, readiness 0, no wakers).  0 or -ENOMEM
 * (the slab is unchanged on failure). */
int pn__slab_alloc(pn__slab *s, pn__registration **out);
/* Give a record back: bumps its generation, sets fd = -1, owner = NULL.
 * Its wakers must already be taken. */
void pn__slab_release(pn__slab *s, pn__registration *reg);
/* The record at `index`, or NULL if no chunk holds it. */
pn__registration *pn__slab_get(pn__slab *s, uint32_t index);
/* Call fn on every live record (fd >= 0). */
void pn__slab_each_live(pn__slab *s, void (*fn)(pn__registration *, void *), void *arg);
/* Free every chunk and array.  Live records are not visited. */
void pn__slab_destroy(pn__slab *s);

/* ---- per-record helpers ------------------------------------------------ */

#define PN__READY_MASK   0xffffu
#define PN__TICK_SHIFT   16
#define PN__TICK(word)   ((uint32_t)((word) >> PN__TICK_SHIFT) & 0xffffu)
#define PN__GEN_SHIFT    32
#define PN__GEN(word)    ((uint32_t)((word) >> PN__GEN_SHIFT))

/* What makes a direction "ready": the syscall will not say EAGAIN, it
 * will return data, EOF, or the error. */
#define PN__READ_SIDE  (PN__READY_READ | PN__READY_READ_CLOSED | PN__READY_ERROR)
#define PN__WRITE_SIDE (PN__READY_WRITE | PN__READY_WRITE_CLOSED | PN__READY_ERROR)

static inline void pn__reg_lock(pn__registration *reg)
{
    while (atomic_flag_test_and_set_explicit(&reg->lock, memory_order_acquire))
        ;
}

static inline void pn__reg_unlock(pn__registration *reg)
{
    atomic_flag_clear_explicit(&reg->lock, memory_order_release);
}

/* The record's generation (bumped by each release). */
static inline uint32_t pn__reg_gen(pn__registration *reg)
{
    return PN__GEN(atomic_load(&reg->readiness));
}

/* OR `bits` into the readiness and bump the tick, in one CAS loop, if the
 * generation's low bits (PN__TOKEN_GEN_MASK) are still `gen`: an event for
 * a record that was freed, and maybe taken again, is refused in the same
 * atomic step that would set it.  Returns the new word, or 0 if refused. */
static inline uint64_t pn__reg_set_ready_gen(pn__registration *reg, uint32_t gen,
                                             uint32_t gen_mask, uint32_t bits)
{
    uint64_t cur = atomic_load(&reg->readiness), next;
    do {
        if ((PN__GEN(cur) & gen_mask) != (gen & gen_mask))
            return 0;
        uint64_t tick = (PN__TICK(cur) + 1u) & 0xffffu;
        next = (cur & ~(uint64_t)0xffffffffu) | tick << PN__TICK_SHIFT |
               (cur & PN__READY_MASK) | (bits & PN__READY_MASK);
    } while (!atomic_compare_exchange_weak(&reg->readiness, &cur, next));
    return next;
}

/* The same for the record's owner, whatever its generation. */
static inline uint64_t pn__reg_set_ready(pn__registration *reg, uint32_t bits)
{
    return pn__reg_set_ready_gen(reg, 0, 0, bits);
}

/* Clear `bits` only if the generation and tick still equal those of
 * `observed`: an event that arrived after `observed` was read must not be
 * erased, nor may a clear reach a later registration of the record. */
static inline void pn__reg_clear_ready(pn__registration *reg, uint32_t bits, uint64_t observed)
{
    uint64_t cur = atomic_load(&reg->readiness);
    for (;;) {
        if ((cur >> PN__TICK_SHIFT) != (observed >> PN__TICK_SHIFT))
            return;
        uint64_t next = cur & ~(uint64_t)(bits & PN__READY_MASK);
        if (next == cur)
            return;
        if (atomic_compare_exchange_weak(&reg->readiness, &cur, next))
            return;
    }
}

/* Defined in io.c: shut afd for pollen as pn_async_fd_close does (closed,
 * completion-mode requests cancelled, deregistered, fd = -1) without
 * closing the descriptor: returns it (-1 if there is none, or afd was
 * closed already).  pn__async_fd_close_fd closes one as pn_async_fd_close does. */
int pn__async_fd_shut(pn_async_fd *afd);
int pn__async_fd_close_fd(int fd);
/* pn_async_fd_close of a listening socket, which also stops listening
 * before close(2) (shutdown SHUT_RD): requests of pollen's still in the
 * kernel cannot keep it accepting. */
int pn__async_fd_close_listener(pn_async_fd *afd);
/* Defined in io.c: drop the waker the fd's registration holds for
 * `interest` (PN_READABLE/PN_WRITABLE); used by the futures' drop. */
void pn__async_fd_forget(pn_async_fd *afd, unsigned interest, const pn_waker *mine);
/* Connect a nonblocking stream socket that is not connected yet, as a
 * poll: sa != NULL starts the connect, sa == NULL polls it.  Handled (true)
 * only when the socket does its I/O in io_uring completion mode: then *out
 * is PN_READY with *res = 0 or -errno, or PN_PENDING with the waker kept
 * (drop it with pn__async_fd_forget(PN_WRITABLE), which cancels the
 * connect).  false: nothing was done; use connect(2) and wait for
 * writability. */
bool pn__async_fd_poll_connect(pn_async_fd *afd, pn_cx *cx, const struct sockaddr *sa,
                               socklen_t len, int *res, pn_poll *out);
/* accept4 as a poll, with the peer's address (sa and salen may be NULL):
 * through io_uring (pn__uio_accept) when the listener does its I/O in
 * completion mode, else waiting for readability. */
pn_poll pn__async_fd_poll_accept_addr(pn_async_fd *afd, pn_cx *cx, struct sockaddr *sa,
                                      socklen_t *salen, ssize_t *res);
/* recv(MSG_PEEK) as a poll (served from received buffers in io_uring
 * completion mode). */
pn_poll pn__async_fd_poll_peek(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                               ssize_t *res);

#endif
