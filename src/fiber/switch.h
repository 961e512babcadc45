/*
 * switch.h - the machine context of a fiber and the switch between two
 * (private).
 *
 * A context is the stack pointer of a suspended thread of control; the
 * callee-saved registers and the floating-point control words live on the
 * stack it points into.  pn__ctx_switch saves the caller's into `from` and
 * resumes `to`; it returns when something switches back to `from`.
 *
 * x86-64 and aarch64 have a hand-written switch (switch.c) that saves only
 * what the ABI says a callee must preserve: rbx, rbp, r12-r15, MXCSR and the
 * x87 control word on x86-64; x19-x30, d8-d15 and FPCR on aarch64.  Other
 * machines use ucontext (getcontext/makecontext/swapcontext), which also
 * saves the signal mask with a system call per switch; -DPN_FIBER_UCONTEXT
 * forces it anywhere (tests of the fallback).
 */
#ifndef PN_FIBER_SWITCH_H
#define PN_FIBER_SWITCH_H

#include <stddef.h>

/* Intel CET shadow stacks (-fcf-protection=return or full, __CET__ bit 2):
 * a hand-written switch returns onto another stack than the one it was
 * called from, which the shadow stack refuses, while glibc's swapcontext
 * knows how to switch it.  Such builds take the ucontext path. */
#if defined(__CET__) && (__CET__ & 2) && !defined(PN_FIBER_UCONTEXT)
#define PN_FIBER_UCONTEXT 1
#endif

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(PN_FIBER_UCONTEXT)
#define PN__CTX_ASM 1
typedef struct pn__ctx {
    void *sp;
} pn__ctx;
#else
#include <ucontext.h>
#define PN__CTX_ASM 0
typedef struct pn__ctx {
    ucontext_t uc;
} pn__ctx;
#endif

/* Prepare *c so that the first switch to it calls entry(arg) on the stack
 * [lo, lo + size).  entry must never return: it switches away for good. */
void pn__ctx_make(pn__ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg);

/* Save the running context into *from and resume *to. */
void pn__ctx_switch(pn__ctx *from, pn__ctx *to);

#endif
