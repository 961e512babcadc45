/*
 * tests/cxx/layout.h - the public types whose layout C and C++ must agree on.
 *
 * PN_CXX_TYPES(X) names every public struct, union and enum type (X(type));
 * PN_CXX_FIELDS(X) names fields that sit after a PN__ATOMIC field or carry
 * one (X(type, field)).  layout.c records sizeof, alignof and offsetof as C
 * sees them; all_headers.cpp compares them with what C++ sees.
 */
#ifndef PN_CXX_LAYOUT_H
#define PN_CXX_LAYOUT_H

#include <pollen.h>

#define PN_CXX_TYPES(X)                                                      \
    X(pn_waker) X(pn_waker_vtable) X(pn_cx) X(pn_future) X(pn_future_vtable) \
    X(pn_yield_now_future) X(pn_poll) X(pn_runtime_config) X(pn_runtime_flavor)     \
    X(pn_driver_mode) X(pn_backend) X(pn_uring_rings) X(pn_join_future)      \
    X(pn_task_group_join_future) X(pn_task_group_shutdown_future)            \
    X(pn_timer_entry) X(pn_sleep_future) X(pn_timeout_future) X(pn_interval_future)               \
    X(pn_missed_tick) X(pn_async_fd) X(pn_read_future) X(pn_write_future) X(pn_write_all_future)  \
    X(pn_ready_future) X(pn_accept_future) X(pn_close_future) X(pn_join_all_future) X(pn_join2_future)          \
    X(pn_select_future) X(pn_select2_future) X(pn_worker_metrics) X(pn_runtime_metrics)    \
    X(pn_blocking_future) X(pn_waker_slot) X(pn_sync_waiter) X(pn_sync_queue)       \
    X(pn_semaphore) X(pn_semaphore_permit) X(pn_mutex) X(pn_rwlock)          \
    X(pn_notify) X(pn_notified_future) X(pn_wait_group)                      \
    X(pn_wait_group_wait_future) X(pn_oneshot_recv_future)                   \
    X(pn_oneshot_closed_future) X(pn_mpsc_send_future)                       \
    X(pn_mpsc_recv_future) X(pn_mpsc_closed_future)                          \
    X(pn_broadcast_recv_future) X(pn_watch_changed_future)                   \
    X(pn_watch_closed_future) X(pn_cancel_wait_future) X(pn_sockaddr)        \
    X(pn_tcp_listener) X(pn_tcp_stream) X(pn_tcp_listen_opts)                \
    X(pn_accept_state) X(pn_tcp_accept_future) X(pn_tcp_connect_future)      \
    X(pn_tcp_read_exact_future) X(pn_tcp_writev_future) X(pn_tcp_peek_future) X(pn_udp_socket)    \
    X(pn_udp_opts) X(pn_dgram_send_future) X(pn_dgram_recv_future) X(pn_unix_opts)         \
    X(pn_unix_listener) X(pn_unix_stream) X(pn_unix_accept_future)           \
    X(pn_unix_connect_future) X(pn_unix_dgram) X(pn_resolve_opts)            \
    X(pn_resolve_future) X(pn_signal) X(pn_signal_recv_future)               \
    X(pn_ctrl_c_future)

#define PN_CXX_FIELDS(X)                                                     \
    X(pn_waker_slot, state) X(pn_waker_slot, waker)                          \
    X(pn_semaphore, state) X(pn_semaphore, lock) X(pn_semaphore, waiters)    \
    X(pn_semaphore_permit, granted) X(pn_semaphore_permit, st)               \
    X(pn_semaphore_permit, w)                                                \
    X(pn_notify, state) X(pn_notify, lock) X(pn_notified_future, w)          \
    X(pn_signal_recv_future, wait) X(pn_ctrl_c_future, recv)                 \
    X(pn_mpsc_recv_future, delivered) X(pn_mpsc_recv_future, count)          \
    X(pn_mpsc_recv_future, res)

/* One record per type or field, in list order. */
typedef struct pn_cxx_layout {
    const char *name;
    size_t size;    /* sizeof (types), offsetof (fields) */
    size_t align;   /* alignof (types), 0 (fields) */
} pn_cxx_layout;

#ifdef __cplusplus
extern "C" {
#endif
extern const pn_cxx_layout pn_cxx_c_layout[];
extern const size_t pn_cxx_c_layout_len;
#ifdef __cplusplus
}
#endif

#endif
