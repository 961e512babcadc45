/*
 * fail_unused_future.c - must NOT compile (-Werror): a future returned by
 * value and discarded does nothing (PN_MUST_USE reports it).
 * expect: (warn_unused_result|unused-result)
 */
#include <pollen.h>

void close_it(pn_tcp_stream *s);

void close_it(pn_tcp_stream *s)
{
    pn_tcp_close_async(s);  /* builds a close future and drops it unpolled */
}
