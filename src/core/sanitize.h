/*
 * sanitize.h - which sanitizer this file is built under (PN__ASAN,
 * PN__TSAN), and the fiber annotations of AddressSanitizer and
 * ThreadSanitizer, empty without them (private).
 */
#ifndef PN_CORE_SANITIZE_H
#define PN_CORE_SANITIZE_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define PN__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PN__ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define PN__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PN__TSAN 1
#endif
#endif

#ifdef PN__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
void __asan_unpoison_memory_region(const volatile void *addr, size_t size);
#define pn__asan_start(save, lo, size) __sanitizer_start_switch_fiber((save), (lo), (size))
#define pn__asan_finish(save, lo, size) __sanitizer_finish_switch_fiber((save), (lo), (size))
#define pn__asan_unpoison(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define pn__asan_start(save, lo, size) ((void)(save), (void)(lo), (void)(size))
#define pn__asan_finish(save, lo, size) ((void)(save), (void)(lo), (void)(size))
#define pn__asan_unpoison(p, n) ((void)(p), (void)(n))
#endif

#ifdef PN__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#endif
