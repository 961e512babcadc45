/*
 * pollen/resolve.h - name resolution as a future.
 *
 * getaddrinfo() blocks (files, DNS, NSS modules), so pn_resolve runs it on
 * the runtime's blocking pool (pollen/blocking.h) and gives a future of the
 * addresses:
 *
 *     self->lookup = pn_resolve("localhost", 8080);
 *     PN_AWAIT(self->pc, &self->lookup, cx);
 *     if (self->lookup.res > 0)
 *         self->addr = self->lookup.addrs[0];          // a pn_sockaddr
 *     pn_resolve_free(&self->lookup);
 *
 * Numeric hosts ("127.0.0.1", "::1", "[::1]", "fe80::1%2") are converted on
 * the first poll without the pool (nothing can block).  Names go to
 * getaddrinfo with AI_ADDRCONFIG off (so "localhost" resolves on hosts with
 * only a loopback interface) unless opts asks for it.
 *
 * Cancellation: dropping the future cancels the lookup.  A lookup still
 * queued never runs; one already running in getaddrinfo cannot be
 * interrupted, so it finishes on its pool thread and its result is freed
 * there (nothing leaks, nothing is delivered).  Bound a lookup's time with
 * pn_timeout; getaddrinfo's own DNS timeouts (resolv.conf) still keep
 * a pool thread busy, and pn_runtime_free waits for it.
 *
 * Threads: the future is polled like any other (either runtime flavour);
 * getaddrinfo is thread-safe.  The output belongs to the future.
 */
#ifndef POLLEN_RESOLVE_H
#define POLLEN_RESOLVE_H

#include "net.h"
#include "blocking.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options; a zeroed struct (or NULL) gives the defaults. */
typedef struct pn_resolve_opts {
    int family;          /* AF_UNSPEC (0: both), AF_INET or AF_INET6 */
    bool addrconfig;     /* AI_ADDRCONFIG: only families the host has a
                            non-loopback address of */
} pn_resolve_opts;

/*
 * The future.  Outputs once ready:
 *   .res    the number of addresses (> 0), or -errno:
 *           -EINVAL        host NULL or "", family not AF_UNSPEC/INET/INET6
 *           -ENAMETOOLONG  host longer than 1024 bytes (NI_MAXHOST - 1)
 *           -ENOENT        no such name, or no address of the family asked
 *                          for (EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY)
 *           -EAGAIN        temporary failure, try later (EAI_AGAIN)
 *           -EIO           permanent failure of the name server (EAI_FAIL)
 *           -ENOMEM        (EAI_MEMORY, or no memory for the job / result)
 *           the pool's statuses: -ESHUTDOWN (the runtime shut down before
 *           the lookup ran), -EAGAIN (no pool thread could be started)
 *           and the rest of pn_resolve_errno's table below.
 *   .addrs  .count addresses (pn_sockaddr, AF_INET or AF_INET6, with the
 *           port set), in getaddrinfo's order (RFC 6724: the preferred
 *           first), each address once; NULL when .res < 0.  Owned by the
 *           future: pn_resolve_free releases it (copy what you keep).
 *   .count  the number of addresses (0 on error).
 */
typedef struct pn_resolve_future {
    pn_future base;
    /* private */
    const char *host;
    uint16_t port;
    pn_resolve_opts opts;
    uint8_t state;
    pn_blocking_future job;
    /* outputs */
    pn_sockaddr *addrs;
    size_t count;
    int res;
} pn_resolve_future;

/*
 * Resolve `host` for `port`.  Lazy: nothing happens until the first poll.
 * `host` is borrowed until that first poll, which copies it (it may be
 * freed after).  Never NULL-dereferences: bad arguments give .res -EINVAL.
 */
PN_EXTERN PN_MUST_USE pn_resolve_future pn_resolve(const char *host, uint16_t port);

/* The same with options (opts NULL: defaults; copied now). */
PN_EXTERN PN_MUST_USE pn_resolve_future pn_resolve_ex(const char *host, uint16_t port,
                                                      const pn_resolve_opts *opts);

/* Free the output array of a completed future (.addrs = NULL, .count = 0).
 * Idempotent; harmless on NULL and on a future that failed.  Not a drop:
 * a pending future is cancelled with pn_future_drop. */
PN_EXTERN void pn_resolve_free(pn_resolve_future *r);

/*
 * The errno pollen gives for a getaddrinfo() result (what .res carries):
 * 0 -> 0; EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY -> -ENOENT; EAI_AGAIN ->
 * -EAGAIN; EAI_FAIL -> -EIO; EAI_MEMORY -> -ENOMEM; EAI_FAMILY ->
 * -EAFNOSUPPORT; EAI_SOCKTYPE -> -ESOCKTNOSUPPORT; EAI_SERVICE,
 * EAI_BADFLAGS -> -EINVAL; EAI_OVERFLOW -> -EOVERFLOW; EAI_CANCELED ->
 * -ECANCELED; EAI_INTR -> -EINTR; EAI_IDN_ENCODE -> -EILSEQ; EAI_SYSTEM ->
 * -sys_errno (-EIO if sys_errno is 0); anything else -> -EIO.
 * Pure; thread-safe.
 */
PN_EXTERN int pn_resolve_errno(int eai, int sys_errno);

#ifdef __cplusplus
}
#endif
#endif
