/*
 * fiber_io.c - the blocking-style calls of pollen/fiber.h: each builds the
 * future it names, awaits it on the fiber's stack and returns its output.
 */
#include "pollen/fiber.h"

#include <errno.h>

#include "pollen/time.h"

int pn_fiber_yield(void)
{
    pn_yield_now_future y = pn_yield();
    return pn_await(&y);
}

int pn_fiber_sleep(uint64_t ns)
{
    pn_sleep_future s = pn_sleep(ns);
    return pn_await(&s);
}

ssize_t pn_fiber_read(pn_tcp_stream *s, void *buf, size_t len)
{
    pn_read_future r = pn_tcp_read(s, buf, len);
    int err = pn_await(&r);
    return err ? err : r.res;
}

ssize_t pn_fiber_write_all(pn_tcp_stream *s, const void *buf, size_t len)
{
    pn_write_all_future w = pn_tcp_write_all(s, buf, len);
    int err = pn_await(&w);
    return err ? err : w.res;
}

int pn_fiber_accept(pn_tcp_listener *l, pn_tcp_stream *out, pn_sockaddr *peer)
{
    if (!out)
        return -EINVAL;
    pn_tcp_accept_future a = pn_tcp_accept(l);
    int err = pn_await(&a);
    if (err)
        return err;
    if (a.res == 0) {
        *out = a.stream;
        if (peer)
            *peer = a.peer;
    }
    return a.res;
}

int pn_fiber_connect(pn_tcp_stream *out, const pn_sockaddr *addr, uint64_t timeout_ns)
{
    pn_tcp_connect_future c = pn_tcp_connect(out, addr, timeout_ns);
    int err = pn_await(&c);
    return err ? err : c.res;
}

int pn_fiber_recv(pn_mpsc_rx *rx, void *out)
{
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, out);
    int err = pn_await(&r);
    return err ? err : r.res;
}

int pn_fiber_send(pn_mpsc_tx *tx, const void *value)
{
    pn_mpsc_send_future s = pn_mpsc_send(tx, value);
    int err = pn_await(&s);
    return err ? err : s.res;
}

int pn_fiber_join(pn_join_handle *h, void **output)
{
    pn_join_future j = pn_join(h);
    int err = pn_await(&j);
    if (err)
        return err;
    if (output)
        *output = j.output;
    return j.res;
}

int pn_fiber_signal_recv(pn_signal *s)
{
    pn_signal_recv_future r = pn_signal_recv(s);
    int err = pn_await(&r);
    return err ? err : r.res;
}

int pn_fiber_ctrl_c(void)
{
    pn_ctrl_c_future c = pn_ctrl_c();
    int err = pn_await(&c);
    return err ? err : c.res;
}
