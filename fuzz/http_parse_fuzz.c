/*
 * http_parse_fuzz.c - libFuzzer harness for examples/http_parse.h, the
 * hand-written request-head parser of examples/http_server.c.
 *
 *   make fuzz                       # builds build/fuzz/http_parse_fuzz
 *   build/fuzz/http_parse_fuzz -max_total_time=120 build/fuzz/corpus
 *
 * Built with clang -fsanitize=fuzzer,address,undefined.  The input is copied
 * into a buffer of exactly its size (ASan catches a read one byte past it)
 * and parsed with several head limits; besides memory errors the harness
 * checks the parser's contract: a positive result is a head length within
 * the buffer and the limit whose pointers lie inside it; parsing any
 * prefix of a complete head gives INCOMPLETE or the same error class, never
 * a different head; TOO_LARGE only when at least max_head bytes were given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../examples/http_parse.h"

static void check(const char *buf, size_t len, size_t max_head)
{
    http_request req;
    long r = http_parse_request(buf, len, max_head, &req);
    if (r > 0) {
        if ((size_t)r > len || (size_t)r > max_head)
            abort();
        if (req.method < buf || req.method + req.method_len > buf + r)
            abort();
        if (req.target < buf || req.target + req.target_len > buf + r)
            abort();
        if (req.path_len > req.target_len || req.method_len == 0 || req.target_len == 0)
            abort();
        if (req.minor < 0 || req.minor > 9)
            abort();
        if (req.content_length > (UINT64_C(1) << 53))
            abort();
        /* The same head alone parses to the same length. */
        http_request again;
        if (http_parse_request(buf, (size_t)r, max_head, &again) != r)
            abort();
        /* Every strict prefix of it is incomplete. */
        for (size_t cut = (size_t)r > 64 ? (size_t)r - 64 : 0; cut < (size_t)r; cut++) {
            long p = http_parse_request(buf, cut, max_head, &again);
            if (p != HTTP_INCOMPLETE)
                abort();
        }
    } else if (r == HTTP_TOO_LARGE) {
        if (len < max_head)
            abort();
    } else if (r == HTTP_INCOMPLETE) {
        if (len >= max_head)
            abort();
    } else if (r != HTTP_BAD_REQUEST && r != HTTP_BAD_VERSION) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    check(buf, size, 8192);
    check(buf, size, size / 2 + 1);
    check(buf, size, 64);
    free(buf);
    return 0;
}
