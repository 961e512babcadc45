/*
 * pollen.h - the only header a pollen user includes.
 *
 * pollen is an asynchronous runtime for C on Linux: lazy poll-based futures,
 * wakers, tasks, an epoll reactor and a timer wheel.  See docs/GUIDE.md.
 */
#ifndef POLLEN_H
#define POLLEN_H

#include "pollen/common.h"
#include "pollen/version.h"
#include "pollen/future.h"
#include "pollen/runtime.h"
#include "pollen/task.h"
#include "pollen/time.h"
#include "pollen/io.h"
#include "pollen/combinator.h"
#include "pollen/metrics.h"
#include "pollen/blocking.h"
#include "pollen/sync.h"
#include "pollen/net.h"
#include "pollen/udp.h"
#include "pollen/unix.h"
#include "pollen/resolve.h"
#include "pollen/signal.h"
#include "pollen/fiber.h"

#endif
