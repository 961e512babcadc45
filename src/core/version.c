/*
 * version.c - the version of the library actually linked (version.h).
 *
 * The macros in version.h say what a program was compiled against; these
 * functions say what it runs with, so a program can check at start-up that
 * the shared library it loaded is recent enough.
 */
#include "pollen/version.h"

#define STR_(x) #x
#define STR(x) STR_(x)

unsigned pn_version(void)
{
    return PN_VERSION_HEX;
}

const char *pn_version_string(void)
{
    return STR(PN_VERSION_MAJOR) "." STR(PN_VERSION_MINOR) "." STR(PN_VERSION_PATCH);
}
