/*
 * tests/cxx/layout.c - the layout of pollen's public types as C sees it,
 * for all_headers.cpp to compare with C++'s view (see layout.h).
 */
#include <stdalign.h>
#include "layout.h"

#define TYPE(t) { #t, sizeof(t), alignof(t) },
#define FIELD(t, f) { #t "." #f, offsetof(t, f), 0 },

const pn_cxx_layout pn_cxx_c_layout[] = { PN_CXX_TYPES(TYPE) PN_CXX_FIELDS(FIELD) };
const size_t pn_cxx_c_layout_len = sizeof pn_cxx_c_layout / sizeof pn_cxx_c_layout[0];
