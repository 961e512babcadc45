/*
 * resolve.c - pn_resolve: getaddrinfo on the blocking pool (pollen/resolve.h).
 *
 * Owns: the lookup job and the result array.  The job (host copy, options,
 * result) is one allocation handed to pn_spawn_blocking_ex as both `arg`
 * and result; the pool thread fills it in.  Whoever ends up with it frees
 * it, exactly once:
 *  - the future, when its pn_blocking_future returns PN_READY (fn ran: it takes
 *    the result array out; fn never ran: nothing to take);
 *  - job_discard, called by the pool when the future was dropped first
 *    (possibly on a pool thread, after getaddrinfo returns).
 * Numeric hosts never reach the pool: pn_sockaddr_ip converts them inline.
 */
#include "pollen/resolve.h"

#include <netdb.h>
#include <string.h>

#include "core/sys.h"

#define HOST_MAX 1024           /* NI_MAXHOST - 1 */

enum { R_START, R_WAIT, R_DONE };

typedef struct resolve_job {
    uint16_t port;
    pn_resolve_opts opts;
    /* filled by the pool thread */
    pn_sockaddr *addrs;
    size_t count;
    int res;
    char host[];
} resolve_job;

int pn_resolve_errno(int eai, int sys_errno)
{
    switch (eai) {
    case 0:
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_FAIL:
        return -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
        return -EAFNOSUPPORT;
    case EAI_SOCKTYPE:
        return -ESOCKTNOSUPPORT;
    case EAI_SERVICE:
    case EAI_BADFLAGS:
        return -EINVAL;
    case EAI_OVERFLOW:
        return -EOVERFLOW;
#ifdef EAI_CANCELED
    case EAI_CANCELED:
        return -ECANCELED;
#endif
#ifdef EAI_INTR
    case EAI_INTR:
        return -EINTR;
#endif
#ifdef EAI_IDN_ENCODE
    case EAI_IDN_ENCODE:
        return -EILSEQ;
#endif
    case EAI_SYSTEM:
        return sys_errno > 0 ? -sys_errno : -EIO;
    default:
        return -EIO;
    }
}

/* "[v6]" -> "v6" in buf; other hosts as they are.  NULL if malformed. */
static const char *strip_brackets(const char *host, char *buf, size_t size)
{
    size_t n = strlen(host);
    if (host[0] != '[')
        return host;
    if (n < 3 || host[n - 1] != ']' || n - 2 >= size)
        return NULL;
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    return buf;
}

/* Runs on a pool thread. */
static void *job_run(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = j->opts.family;
    hints.ai_socktype = SOCK_STREAM;   /* one entry per address, not three */
    hints.ai_flags = j->opts.addrconfig ? AI_ADDRCONFIG : 0;
    errno = 0;
    int eai = getaddrinfo(j->host, NULL, &hints, &list);
    if (eai) {
        j->res = pn_resolve_errno(eai, errno);
        return j;
    }
    size_t n = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
        n++;
    j->addrs = n ? pn__calloc(n, sizeof(pn_sockaddr)) : NULL;
    if (!j->addrs) {
        freeaddrinfo(list);
        j->res = n ? -ENOMEM : -ENOENT;
        return j;
    }
    size_t k = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        pn_sockaddr a;
        if (pn_sockaddr_from(&a, ai->ai_addr, ai->ai_addrlen) < 0)
            continue;
        pn_sockaddr_set_port(&a, j->port);
        bool dup = false;
        for (size_t i = 0; i < k && !dup; i++)
            dup = pn_sockaddr_equal(&j->addrs[i], &a);
        if (!dup)
            j->addrs[k++] = a;
    }
    freeaddrinfo(list);
    if (k == 0) {
        pn__free(j->addrs);
        j->addrs = NULL;
        j->res = -ENOENT;
        return j;
    }
    j->count = k;
    j->res = (int)k;
    return j;
}

static void job_free(resolve_job *j)
{
    if (j) {
        pn__free(j->addrs);
        pn__free(j);
    }
}

/* The future was dropped before it collected the job (pollen/blocking.h). */
static void job_discard(void *arg, void *result, int status)
{
    (void)result;
    (void)status;
    job_free(arg);
}

/* The first poll: validate, try the numeric fast path, else submit.
 * PN_READY with r->res set, or R_WAIT with the job made. */
static pn_poll resolve_start(pn_resolve_future *r)
{
    int fam = r->opts.family;
    if (!r->host || !r->host[0] || (fam != AF_UNSPEC && fam != AF_INET && fam != AF_INET6)) {
        r->res = -EINVAL;
        return PN_READY;
    }
    size_t n = strlen(r->host);
    if (n > HOST_MAX) {
        r->res = -ENAMETOOLONG;
        return PN_READY;
    }
    char buf[HOST_MAX + 1];
    const char *host = strip_brackets(r->host, buf, sizeof(buf));
    if (!host) {
        r->res = -ENOENT;             /* "[" without "]": no such name */
        return PN_READY;
    }
    pn_sockaddr a;
    if (pn_sockaddr_ip(&a, host, r->port) == 0 &&
        (fam == AF_UNSPEC || fam == pn_sockaddr_family(&a))) {
        r->addrs = pn__malloc(sizeof(pn_sockaddr));
        if (!r->addrs) {
            r->res = -ENOMEM;
            return PN_READY;
        }
        r->addrs[0] = a;
        r->count = 1;
        r->res = 1;
        return PN_READY;
    }
    size_t hl = strlen(host);
    resolve_job *j = pn__malloc(sizeof(*j) + hl + 1);
    if (!j) {
        r->res = -ENOMEM;
        return PN_READY;
    }
    memset(j, 0, sizeof(*j));
    j->port = r->port;
    j->opts = r->opts;
    memcpy(j->host, host, hl + 1);
    r->host = NULL;                   /* borrowed no longer */
    r->job = pn_spawn_blocking_ex(job_run, j, job_discard);
    r->state = R_WAIT;
    return PN_PENDING;
}

static pn_poll resolve_poll(pn_future *f, pn_cx *cx)
{
    pn_resolve_future *r = (pn_resolve_future *)f;
    if (r->state == R_START && resolve_start(r) == PN_READY) {
        r->state = R_DONE;
        return PN_READY;
    }
    if (r->state != R_WAIT)
        return PN_READY;
    if (pn_future_poll(PN_FUTURE(&r->job), cx) == PN_PENDING)
        return PN_PENDING;
    r->state = R_DONE;
    resolve_job *j = r->job.arg;
    if (r->job.res != 0) {            /* fn never ran: the job is ours, empty */
        r->res = r->job.res;
        job_free(j);
        return PN_READY;
    }
    r->res = j->res;
    if (j->res > 0) {
        r->addrs = j->addrs;
        r->count = j->count;
        j->addrs = NULL;
    }
    job_free(j);
    return PN_READY;
}

static void resolve_drop(pn_future *f)
{
    pn_resolve_future *r = (pn_resolve_future *)f;
    if (r->state == R_WAIT)
        pn_future_drop(PN_FUTURE(&r->job));   /* job_discard frees the job */
    r->state = R_DONE;
}

static const pn_future_vtable resolve_vt = { resolve_poll, resolve_drop, "pn_resolve" };

pn_resolve_future pn_resolve_ex(const char *host, uint16_t port, const pn_resolve_opts *opts)
{
    pn_resolve_future r;
    memset(&r, 0, sizeof(r));
    r.base.vt = &resolve_vt;
    r.host = host;
    r.port = port;
    if (opts)
        r.opts = *opts;
    r.state = R_START;
    return r;
}

pn_resolve_future pn_resolve(const char *host, uint16_t port)
{
    return pn_resolve_ex(host, port, NULL);
}

void pn_resolve_free(pn_resolve_future *r)
{
    if (!r || r->state != R_DONE)
        return;
    pn__free(r->addrs);
    r->addrs = NULL;
    r->count = 0;
}
