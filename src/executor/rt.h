/*
 * rt.h - what the rest of pollen may ask of a runtime (private).
 */
#ifndef PN_EXECUTOR_RT_H
#define PN_EXECUTOR_RT_H

#include "pollen/runtime.h"

struct pn__reactor;
struct pn__timers;

/* The reactor / timer driver of a runtime (never NULL for a live runtime). */
struct pn__reactor *pn__runtime_reactor(pn_runtime *rt);
struct pn__timers *pn__runtime_timers(pn_runtime *rt);

#endif
