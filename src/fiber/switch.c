/*
 * switch.c - the context switch of fibers: hand-written for x86-64 and
 * aarch64, ucontext elsewhere (see switch.h).
 *
 * The hand-written switch pushes the callee-saved registers on the running
 * stack, stores the stack pointer in `from`, loads `to`'s and pops the same
 * registers in reverse.  A new context is a stack prepared to look like a
 * suspended switch whose return address is pn__ctx_start, a three-
 * instruction trampoline that passes the saved argument to the entry
 * function.  Everything the C compiler expects a call to preserve is
 * preserved; everything else it assumes clobbered, as for any call.
 */
#include "fiber/switch.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && PN__CTX_ASM

/* Frame, from the saved sp upwards: MXCSR (4 bytes) and x87 control word
 * (2 bytes) in one 8-byte slot, r15, r14, r13, r12, rbx, rbp, return rip. */
__asm__(
    ".text\n"
    ".globl pn__ctx_switch\n"
    ".hidden pn__ctx_switch\n"
    ".type pn__ctx_switch,@function\n"
    "pn__ctx_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq (%rsi), %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size pn__ctx_switch,.-pn__ctx_switch\n"
    /* Entered by the first switch's ret with r12 = arg, r13 = entry and the
     * stack 16-byte aligned, as at a call site. */
    ".globl pn__ctx_start\n"
    ".hidden pn__ctx_start\n"
    ".type pn__ctx_start,@function\n"
    "pn__ctx_start:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size pn__ctx_start,.-pn__ctx_start\n");

void pn__ctx_start(void);

void pn__ctx_make(pn__ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    /* The final ret pops the trampoline's address from top - 24 and leaves
     * rsp = top - 16: 16-byte aligned, as at a call site. */
    uint64_t *sp = (uint64_t *)(top - 16);
    *--sp = (uint64_t)(uintptr_t)pn__ctx_start;  /* return rip */
    *--sp = 0;                                   /* rbp */
    *--sp = 0;                                   /* rbx */
    *--sp = (uint64_t)(uintptr_t)arg;            /* r12 */
    *--sp = (uint64_t)(uintptr_t)entry;          /* r13 */
    *--sp = 0;                                   /* r14 */
    *--sp = 0;                                   /* r15 */
    uint32_t mxcsr = 0x1f80;                     /* all exceptions masked, round to nearest */
    uint16_t fpucw = 0x037f;                     /* the same for x87, 64-bit precision */
    *--sp = 0;
    memcpy(sp, &mxcsr, sizeof(mxcsr));
    memcpy((char *)sp + 4, &fpucw, sizeof(fpucw));
    c->sp = sp;
}

#elif defined(__aarch64__) && PN__CTX_ASM

/* Frame (176 bytes): x19-x30 at 0..95, d8-d15 at 96..159, FPCR at 160. */
__asm__(
    ".text\n"
    ".globl pn__ctx_switch\n"
    ".hidden pn__ctx_switch\n"
    ".type pn__ctx_switch,%function\n"
    "pn__ctx_switch:\n"
    "    sub sp, sp, #176\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mrs x9, fpcr\n"
    "    str x9, [sp, #160]\n"
    "    mov x9, sp\n"
    "    str x9, [x0]\n"
    "    ldr x9, [x1]\n"
    "    mov sp, x9\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    ldr x9, [sp, #160]\n"
    "    msr fpcr, x9\n"
    "    add sp, sp, #176\n"
    "    ret\n"
    ".size pn__ctx_switch,.-pn__ctx_switch\n"
    /* Entered by the first switch's ret with x19 = arg, x20 = entry. */
    ".globl pn__ctx_start\n"
    ".hidden pn__ctx_start\n"
    ".type pn__ctx_start,%function\n"
    "pn__ctx_start:\n"
    "    mov x0, x19\n"
    "    blr x20\n"
    "    brk #0\n"
    ".size pn__ctx_start,.-pn__ctx_start\n");

void pn__ctx_start(void);

void pn__ctx_make(pn__ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)arg;             /* x19 */
    f[1] = (uint64_t)(uintptr_t)entry;           /* x20 */
    f[11] = (uint64_t)(uintptr_t)pn__ctx_start;  /* x30: where ret goes */
    f[20] = 0;                                   /* FPCR: round to nearest, no traps */
    c->sp = f;
}

#else

#include <stdlib.h>

/* makecontext passes int arguments only: split the pointers in halves. */
static void uc_entry(unsigned eh, unsigned el, unsigned ah, unsigned al)
{
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)eh << 16 << 16) | el);
    void *arg = (void *)(((uintptr_t)ah << 16 << 16) | al);
    entry(arg);
    abort();                                     /* entry never returns */
}

void pn__ctx_make(pn__ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t e = (uintptr_t)entry, a = (uintptr_t)arg;
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, (void (*)(void))uc_entry, 4,
                (unsigned)(e >> 16 >> 16), (unsigned)e, (unsigned)(a >> 16 >> 16), (unsigned)a);
}

void pn__ctx_switch(pn__ctx *from, pn__ctx *to)
{
    swapcontext(&from->uc, &to->uc);
}

#endif
