/*
 * backend_probe.c - can this machine run pollen on io_uring?
 *
 * `make test` runs the whole suite once per backend.  Before the io_uring
 * pass it runs this: a runtime that asks for PN_BACKEND_URING explicitly.
 * Exit 0 when it can be made; otherwise print why and exit 77, and the pass
 * is reported as skipped (io_uring disabled by sysctl or seccomp, an old
 * kernel, or pollen built without liburing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <pollen.h>

int main(void)
{
    unsetenv("POLLEN_BACKEND");
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = PN_BACKEND_URING;
    pn_runtime *rt;
    int err = pn_runtime_new(&cfg, &rt);
    if (err) {
        printf("%s\n", pn_strerror(err));
        return 77;
    }
    pn_runtime_free(rt);
    return 0;
}
