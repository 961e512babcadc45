/*
 * pollen/version.h - the library's version.
 *
 * The soname carries PN_VERSION_MAJOR and, while it is 0, PN_VERSION_MINOR
 * too (libpollen.so.0.2): every 0.x release may break the ABI.  From 1.0 a
 * change of any public struct layout bumps the major.
 */
#ifndef POLLEN_VERSION_H
#define POLLEN_VERSION_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PN_VERSION_MAJOR 0
#define PN_VERSION_MINOR 2
#define PN_VERSION_PATCH 0
#define PN_VERSION_HEX ((PN_VERSION_MAJOR << 16) | (PN_VERSION_MINOR << 8) | PN_VERSION_PATCH)

/* PN_VERSION_HEX of the library actually linked, and "0.2.0". */
PN_EXTERN unsigned pn_version(void);
PN_EXTERN const char *pn_version_string(void);

#ifdef __cplusplus
}
#endif

#endif
