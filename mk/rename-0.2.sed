# rename-0.2.sed - rewrites code written for pollen 0.1 to the names of 0.2.
#
#   sed -i -f mk/rename-0.2.sed *.c *.h
#
# GNU sed (\b is a GNU extension).  Whole words only: pn_read_half,
# pn_ready_mask and the like are left alone.  Run it ONCE over a file: the
# commands are ordered so that no rename feeds another within one run (the
# future types move to their _future names before the constructors take
# the freed names), but a second run would rename the new constructors
# again.  What it cannot do (see docs/CHANGES.md): the output fields
# (.status -> .res, pn_blocking_future's .result -> .value: build, and fix
# where the compiler says "no member named") and the wait group's struct
# tag (struct pn_wait_group_wait -> struct pn_wait_group_wait_future).

# 1. Future types end in _future.
s/\bpn_accept\b/pn_accept_future/g
s/\bpn_blocking\b/pn_blocking_future/g
s/\bpn_cancel_wait\b/pn_cancel_wait_future/g
s/\bpn_close\b/pn_close_future/g
s/\bpn_dgram_recv\b/pn_dgram_recv_future/g
s/\bpn_dgram_send\b/pn_dgram_send_future/g
s/\bpn_interval\b/pn_interval_future/g
s/\bpn_join2\b/pn_join2_future/g
s/\bpn_join_all\b/pn_join_all_future/g
s/\bpn_notified\b/pn_notified_future/g
s/\bpn_read\b/pn_read_future/g
s/\bpn_ready\b/pn_ready_future/g
s/\bpn_select\b/pn_select_future/g
s/\bpn_select2\b/pn_select2_future/g
s/\bpn_sleep\b/pn_sleep_future/g
s/\bpn_task_group_join\b/pn_task_group_join_future/g
s/\bpn_tcp_accept\b/pn_tcp_accept_future/g
s/\bpn_tcp_connect\b/pn_tcp_connect_future/g
s/\bpn_tcp_peek\b/pn_tcp_peek_future/g
s/\bpn_tcp_read_exact\b/pn_tcp_read_exact_future/g
s/\bpn_tcp_writev\b/pn_tcp_writev_future/g
s/\bpn_timeout\b/pn_timeout_future/g
s/\bpn_udp_recv\b/pn_udp_recv_future/g
s/\bpn_udp_send\b/pn_udp_send_future/g
s/\bpn_unix_accept\b/pn_unix_accept_future/g
s/\bpn_unix_connect\b/pn_unix_connect_future/g
s/\bpn_unix_recv\b/pn_unix_recv_future/g
s/\bpn_unix_send\b/pn_unix_send_future/g
s/\bpn_write\b/pn_write_future/g
s/\bpn_write_all\b/pn_write_all_future/g
s/\bpn_yield_now\b/pn_yield_now_future/g

# 2. Close: *_close closes now (int); the future is *_close_async.  The
#    old futures move first, then the sync calls take their names.
s/\bpn_tcp_close\b/pn_tcp_close_async/g
s/\bpn_unix_close\b/pn_unix_close_async/g
s/\bpn_tcp_stream_close\b/pn_tcp_close/g
s/\bpn_unix_stream_close\b/pn_unix_close/g
s/\bpn_close_of\b/pn_close_async/g

# 3. Constructors are named by their operation, no preposition.
s/\bpn_accept_on\b/pn_accept/g
s/\bpn_interval_every\b/pn_interval/g
s/\bpn_join_all_of\b/pn_join_all/g
s/\bpn_join_both\b/pn_join2/g
s/\bpn_join_handle_await\b/pn_join/g
s/\bpn_read_some\b/pn_read/g
s/\bpn_select_either\b/pn_select2/g
s/\bpn_select_of\b/pn_select/g
s/\bpn_sleep_for\b/pn_sleep/g
s/\bpn_tcp_accept_on\b/pn_tcp_accept/g
s/\bpn_tcp_connect_to\b/pn_tcp_connect/g
s/\bpn_tcp_peek_of\b/pn_tcp_peek/g
s/\bpn_tcp_read_exact_of\b/pn_tcp_read_exact/g
s/\bpn_tcp_wr_writev_all\b/pn_tcp_wr_writev/g
s/\bpn_tcp_writev_all\b/pn_tcp_writev/g
s/\bpn_timeout_for\b/pn_timeout/g
s/\bpn_udp_recv_of\b/pn_udp_recv/g
s/\bpn_udp_send_of\b/pn_udp_send/g
s/\bpn_unix_accept_on\b/pn_unix_accept/g
s/\bpn_unix_connect_to\b/pn_unix_connect/g
s/\bpn_unix_recv_of\b/pn_unix_recv/g
s/\bpn_unix_send_of\b/pn_unix_send/g
s/\bpn_write_all_of\b/pn_write_all/g
s/\bpn_write_some\b/pn_write/g
