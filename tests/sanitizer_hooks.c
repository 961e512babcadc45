/*
 * sanitizer_hooks.c - LeakSanitizer checks the test workers, not the runner.
 *
 * Criterion runs every test in a worker process (BoxFort sets BXFI_MAP in
 * its environment).  Leaks in a worker are pollen's or the test's and must
 * fail the run; the parent runner is Criterion's own code, which leaks a
 * small allocation now and then under parallel jobs.  LSan asks this hook
 * at exit whether to check; in builds without LSan it is never called.
 */
#include <stdlib.h>

__attribute__((visibility("default"))) int __lsan_is_turned_off(void);

int __lsan_is_turned_off(void)
{
    return getenv("BXFI_MAP") == NULL;
}
