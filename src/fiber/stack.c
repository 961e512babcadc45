/*
 * stack.c - fiber stacks: mapping with a guard region, a per-runtime cache
 * of finished stacks, and the SIGSEGV handler that turns a hit on a guard
 * into a message naming the fiber (see stack.h).
 *
 * The cache is a list under a spin lock: a stack is taken when a fiber is
 * made and given back when it finishes, one short critical section each,
 * against an mmap and an munmap (two system calls and a page fault per
 * touched page) without it.  At most CACHE_MAX stacks are kept, of any
 * size; a fiber takes one of its exact size among the first few, and
 * otherwise maps a new one.  A cached stack keeps the pages its last fiber
 * touched.
 *
 * Overflow.  A fiber that runs off its stack faults on the guard region.
 * The handler runs on a per-thread alternate stack (the faulting one is
 * full), finds that the address lies in the guard of the stack this thread
 * runs on, writes one line to stderr with write(2), puts the default
 * action back and returns: the instruction faults again and the process
 * dumps core as it would have.  A fault anywhere else goes to the handler
 * that was there before, and so does a SIGSEGV that no fault raised (kill,
 * raise), sent again under the old action since it does not recur.  Under AddressSanitizer, which reports stack
 * overflows itself and owns SIGSEGV, none of this is installed.
 */
#include "fiber/stack.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/spin.h"
#include "core/sys.h"

#define CACHE_MAX 1024
#define ALTSTACK_SIZE ((size_t)64 << 10)

struct pn__stack_pool {
    pn__spin lock;
    pn__stack *cached;
    size_t ncached;
    bool closed;
    size_t refs;                  /* 1 (the runtime, until closed) + stacks out */
};

static _Atomic size_t live_stacks;

static _Atomic size_t page_bytes;          /* 0: not looked up yet */

static size_t page_size(void)
{
    size_t ps = atomic_load_explicit(&page_bytes, memory_order_relaxed);
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&page_bytes, ps, memory_order_relaxed);
    }
    return ps;
}

void pn__stack_set_page_size(size_t bytes)
{
    atomic_store_explicit(&page_bytes, bytes, memory_order_relaxed);
}

size_t pn__stack_usable_for(size_t requested)
{
    size_t ps = page_size();
#ifdef PN__ASAN
    requested *= 4;               /* instrumented frames carry redzones */
#endif
    return (requested + ps - 1) & ~(ps - 1);
}

pn__stack_pool *pn__stack_pool_new(void)
{
    pn__stack_pool *p = pn__calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pn__spin_init(&p->lock);
    p->refs = 1;
    return p;
}

static void unmap(pn__stack *s)
{
    munmap(s->map, s->map_size);
    atomic_fetch_sub_explicit(&live_stacks, 1, memory_order_relaxed);
}

/* Drop one reference; p->lock held on entry, released here. */
static void pool_unref_unlock(pn__stack_pool *p)
{
    bool last = --p->refs == 0;
    pn__spin_unlock(&p->lock);
    if (last)
        pn__free(p);
}

void pn__stack_pool_close(pn__stack_pool *p)
{
    if (!p)
        return;
    pn__spin_lock(&p->lock);
    pn__stack *list = p->cached;
    p->cached = NULL;
    p->ncached = 0;
    p->closed = true;
    pool_unref_unlock(p);
    while (list) {
        pn__stack *next = list->next;
        unmap(list);
        list = next;
    }
}

size_t pn__stack_pool_cached(pn__stack_pool *p)
{
    pn__spin_lock(&p->lock);
    size_t n = p->ncached;
    pn__spin_unlock(&p->lock);
    return n;
}

size_t pn__stack_live(void)
{
    return atomic_load_explicit(&live_stacks, memory_order_relaxed);
}

static void install_handler(void);

/* PN__STACK_GUARD rounded up to whole pages (stack.h). */
static size_t guard_size(void)
{
    size_t ps = page_size();
    return (PN__STACK_GUARD + ps - 1) & ~(ps - 1);
}

static pn__stack *map_new(size_t usable)
{
    size_t guard = guard_size();
    size_t map_size = guard + usable;   /* the header takes the top bytes */
    char *map = pn__sys.mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, guard, PROT_NONE) != 0) {
        munmap(map, map_size);
        return NULL;
    }
    pn__stack *s = (pn__stack *)(void *)(map + map_size - sizeof(pn__stack));
    s->next = NULL;
    s->pool = NULL;
    s->map = map;
    s->map_size = map_size;
    s->guard = guard;
    s->usable = (size_t)((char *)s - (map + guard));
    s->name = NULL;
    atomic_fetch_add_explicit(&live_stacks, 1, memory_order_relaxed);
    install_handler();
    return s;
}

pn__stack *pn__stack_get(pn__stack_pool *p, size_t usable)
{
    pn__spin_lock(&p->lock);
    pn__stack **pp = &p->cached, *s = NULL;
    for (int i = 0; *pp && i < 8; i++, pp = &(*pp)->next) {
        if ((*pp)->map_size - (*pp)->guard == usable) {
            s = *pp;
            *pp = s->next;
            p->ncached--;
            break;
        }
    }
    p->refs++;
    pn__spin_unlock(&p->lock);
    if (!s) {
        s = map_new(usable);
        if (!s) {
            pn__spin_lock(&p->lock);
            pool_unref_unlock(p);
            return NULL;
        }
    }
    s->pool = p;
    s->next = NULL;
    return s;
}

void pn__stack_put(pn__stack *s)
{
    pn__stack_pool *p = s->pool;
    s->name = NULL;
    /* Frames that never returned (the fiber's entry) leave their redzones
     * poisoned: the next fiber's frames must not trip over them. */
    pn__asan_unpoison(s->map + s->guard, s->usable);
    pn__spin_lock(&p->lock);
    bool keep = !p->closed && p->ncached < CACHE_MAX;
    if (keep) {
        s->next = p->cached;
        p->cached = s;
        p->ncached++;
    }
    pool_unref_unlock(p);
    if (!keep)
        unmap(s);
}

/* ---- Overflow ------------------------------------------------------------------ */

#ifndef PN__ASAN

static _Thread_local void *tls_altstack;
static struct sigaction old_segv;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static pthread_key_t altstack_key;

static size_t fmt_u(char *p, uintptr_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static size_t put(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return n;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    /* si_addr is a faulting address only when the kernel raised the
     * signal for a fault (si_code > 0); kill and raise fill other fields. */
    bool fault = si && si->si_code > 0;
    pn__stack *s = pn__fiber_running_stack();
    char *a = fault ? (char *)si->si_addr : NULL;
    if (s && a && a >= s->map && a < s->map + s->guard) {
        char msg[256];
        size_t n = put(msg, "pollen: fiber '");
        const char *name = s->name ? s->name : "fiber";
        size_t nl = strlen(name);
        if (nl > 64)
            nl = 64;
        memcpy(msg + n, name, nl);
        n += nl;
        n += put(msg + n, "' overflowed its ");
        n += fmt_u(msg + n, s->usable, 10);
        n += put(msg + n, "-byte stack (fault at 0x");
        n += fmt_u(msg + n, (uintptr_t)a, 16);
        n += put(msg + n, ")\n");
        ssize_t w = write(2, msg, n);
        (void)w;
        signal(SIGSEGV, SIG_DFL);
        return;                   /* faults again, now with the default action */
    }
    if (old_segv.sa_flags & SA_SIGINFO) {
        if (old_segv.sa_sigaction) {
            old_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
        old_segv.sa_handler(sig);
        return;
    }
    sigaction(SIGSEGV, &old_segv, NULL);   /* faults again under the old action */
    if (!fault)
        raise(sig);               /* a sent one does not come again: send it (it is
                                     blocked until we return) */
}

static void altstack_free(void *p)
{
    stack_t ss = { .ss_flags = SS_DISABLE };
    sigaltstack(&ss, NULL);
    munmap(p, ALTSTACK_SIZE);
}

static void install_once(void)
{
    pthread_key_create(&altstack_key, altstack_free);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
}

static void install_handler(void)
{
    pthread_once(&handler_once, install_once);
}

void pn__stack_thread_init(void)
{
    if (tls_altstack)
        return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return;
        stack_t ss = { .ss_sp = p, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
        if (sigaltstack(&ss, NULL) != 0) {
            munmap(p, ALTSTACK_SIZE);
            return;
        }
        tls_altstack = p;
        pthread_setspecific(altstack_key, p);
    } else {
        tls_altstack = &tls_altstack;   /* the thread has one already */
    }
}

#else

static void install_handler(void) {}
void pn__stack_thread_init(void) {}

#endif
