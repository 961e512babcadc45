/*
 * clock.c - pn_now: the monotonic clock in nanoseconds.
 *
 * Owns nothing.  CLOCK_MONOTONIC never goes backwards and never fails on
 * Linux (vDSO, no syscall); the result is the basis of every deadline.
 */
#include <time.h>
#include "pollen/time.h"

pn_instant pn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
