/*
 * mk/tsan_criterion.c - lets Criterion start under ThreadSanitizer.
 *
 * Linked into build/tsan/tests/pollen_tests only.  Criterion's sandbox
 * library (BoxFort) maps its inheritable arena at a random address
 *     0x200000000000 + (rand_r(&seed) & 0x3fffff) * 16 MiB
 * and gives up after 10 candidates that are already mapped.  TSan reserves
 * (PROT_NONE) nearly all of that range for shadow and meta memory, so ~95%
 * of runs abort with "criterion: Could not initialize inheritable arena:
 * Resource temporarily unavailable" (Snaipe/Criterion#274).
 *
 * libcriterion.so imports rand_r from libc, so this definition in the
 * executable (exported despite -fvisibility=hidden) interposes it: it stays a deterministic pseudo-random function
 * of *seed, but its values fall in [0x358000, 0x368000), which puts the
 * arena between 0x558000000000 and 0x568000000000 - application memory
 * ("pie binaries") in every TSan x86_64 layout (LLVM <= 14 and >= 15).
 * BoxFort still checks each candidate is unmapped.  Nothing in pollen calls
 * rand_r.  Other architectures keep libc's rand_r.
 */
#include <stdlib.h>

#if defined(__x86_64__)
__attribute__((visibility("default"))) int rand_r(unsigned int *seed)
{
    /* glibc's rand_r LCG step, then fold into the window. */
    *seed = *seed * 1103515245u + 12345u;
    return 0x358000 + (int)((*seed >> 16) % 0x10000u);
}
#endif
