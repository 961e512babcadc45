/*
 * pollen/version.h - the library's version.
 *
 * The soname carries PN_VERSION_MAJOR; a change of any public struct layout
 * bumps it.
 */
#ifndef POLLEN_VERSION_H
#define POLLEN_VERSION_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PN_VERSION_MAJOR 0
#define PN_VERSION_MINOR 1
#define PN_VERSION_PATCH 0
#define PN_VERSION_HEX ((PN_VERSION_MAJOR << 16) | (PN_VERSION_MINOR << 8) | PN_VERSION_PATCH)

/* PN_VERSION_HEX of the library actually linked, and "0.1.0". */
PN_EXTERN unsigned pn_version(void);
PN_EXTERN const char *pn_version_string(void);

#ifdef __cplusplus
}
#endif

#endif
