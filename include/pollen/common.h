/*
 * pollen/common.h - what every other pollen header builds on.
 *
 * The poll result (PN_READY / PN_PENDING), the export macro, container_of,
 * and the error naming functions.  Errors in pollen are negative errno values
 * (-EAGAIN, -ECANCELED, -ETIMEDOUT ...) end to end, as in libuv and the
 * kernel: a call returns 0 or a count on success and -errno on failure, and a
 * future's output follows the same rule.
 */
#ifndef POLLEN_COMMON_H
#define POLLEN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PN_EXTERN __attribute__((visibility("default")))
#else
#define PN_EXTERN
#endif

/* PN_MUST_USE - on every call that returns a future by value: the future
 * does nothing until polled, so discarding it (`pn_tcp_close_async(&s);` as a
 * statement) is a bug the compiler reports (-Wunused-result, on by default
 * in gcc and clang).  Empty where the attribute is unknown. */
#if defined(__GNUC__) || defined(__clang__)
#define PN_MUST_USE __attribute__((warn_unused_result))
#else
#define PN_MUST_USE
#endif

/* The result of one poll. */
typedef enum pn_poll {
    PN_PENDING = 0, /* not done; the waker in the context will be woken */
    PN_READY = 1    /* done; the output is in the future's own fields */
} pn_poll;

/*
 * PN__ATOMIC(T) - a private field that the library accesses atomically.
 * C sees `_Atomic T`.  C++ has no `_Atomic` before C++23 (and std::atomic
 * is neither copyable nor the same type for calls), so it sees a plain T
 * of the same size and alignment: for the bool, unsigned and size_t fields
 * of pollen's structs the layout is the same in both languages.  C++ code
 * must not touch such fields (they are private anyway).  The headers need
 * C++11 or later.
 */
#ifdef __cplusplus
#define PN__ATOMIC(T) alignas(sizeof(T)) T
#else
#define PN__ATOMIC(T) _Atomic T
#endif

/* pn_container_of - the struct that embeds member `m` at address `p`. */
#define pn_container_of(p, type, m) \
    ((type *)(void *)((char *)(p) - offsetof(type, m)))

/*
 * pn_strerror - a human sentence for a pollen error (a negative errno).
 * pn_err_name - its symbolic name ("ECONNRESET").  Both accept positive
 * values too and never return NULL; unknown codes give "unknown error".
 * The strings are static; thread-safe.
 */
PN_EXTERN const char *pn_strerror(int err);
PN_EXTERN const char *pn_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
