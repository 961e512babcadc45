/*
 * http_parse.h - a small, strict HTTP/1.x request-head parser, in place.
 *
 * Shared by examples/http_server.c and its libFuzzer harness
 * (fuzz/http_parse_fuzz.c).  One pass over the bytes, no allocation, no
 * copy: the method, the target and the path come back as pointers into the
 * caller's buffer.  It reads only buf[0, min(len, max_head)) and never
 * writes to it.
 *
 * What it accepts (RFC 9112, strictly; anything else is an error):
 *  - optional empty lines, then "METHOD SP TARGET SP HTTP/d.d", the method a
 *    token, the target 1+ visible ASCII bytes;
 *  - header fields "name: value", the name a token with no space before the
 *    colon, the value visible bytes (obs-text included), spaces and tabs,
 *    trimmed; obsolete line folding is refused;
 *  - lines end with CRLF or a bare LF; a CR anywhere else is an error;
 *  - an empty line ends the head.
 * What it reports: Host (exactly one is required in HTTP/1.1),
 * Connection's close / keep-alive tokens (hence keep_alive, from the version
 * and the tokens), Content-Length (1*DIGIT, at most 2^53; a repeated field
 * must repeat the value), the presence of Transfer-Encoding.
 */
#ifndef HTTP_PARSE_H
#define HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Results of http_parse_request besides a head length (> 0). */
enum {
    HTTP_INCOMPLETE = 0,      /* need more bytes (and fewer than max_head seen) */
    HTTP_BAD_REQUEST = -400,  /* malformed */
    HTTP_TOO_LARGE = -431,    /* no complete head within max_head bytes */
    HTTP_BAD_VERSION = -505,  /* a well-formed version other than HTTP/1.x */
};

typedef struct http_request {
    const char *method;          /* into the buffer; not NUL-terminated */
    size_t method_len;
    const char *target;          /* the request target as sent */
    size_t target_len;
    size_t path_len;             /* the target up to '?' (target is its start) */
    int minor;                   /* HTTP/1.minor (0 to 9) */
    bool keep_alive;             /* the connection persists after this request */
    bool has_transfer_encoding;  /* a Transfer-Encoding field was present */
    uint64_t content_length;     /* 0 when absent */
    unsigned headers;            /* header fields seen */
} http_request;

/* 1 for tchar (RFC 9110 token characters), 2 for field-value bytes (VCHAR,
 * obs-text, SP, HTAB), 4 for request-target bytes (VCHAR). */
static const uint8_t http_ctab[256] = {
    ['\t'] = 2, [' '] = 2,
    ['!'] = 7, ['"'] = 6, ['#'] = 7, ['$'] = 7, ['%'] = 7, ['&'] = 7, ['\''] = 7,
    ['('] = 6, [')'] = 6, ['*'] = 7, ['+'] = 7, [','] = 6, ['-'] = 7, ['.'] = 7,
    ['/'] = 6, ['0'] = 7, ['1'] = 7, ['2'] = 7, ['3'] = 7, ['4'] = 7, ['5'] = 7,
    ['6'] = 7, ['7'] = 7, ['8'] = 7, ['9'] = 7, [':'] = 6, [';'] = 6, ['<'] = 6,
    ['='] = 6, ['>'] = 6, ['?'] = 6, ['@'] = 6,
    ['A'] = 7, ['B'] = 7, ['C'] = 7, ['D'] = 7, ['E'] = 7, ['F'] = 7, ['G'] = 7,
    ['H'] = 7, ['I'] = 7, ['J'] = 7, ['K'] = 7, ['L'] = 7, ['M'] = 7, ['N'] = 7,
    ['O'] = 7, ['P'] = 7, ['Q'] = 7, ['R'] = 7, ['S'] = 7, ['T'] = 7, ['U'] = 7,
    ['V'] = 7, ['W'] = 7, ['X'] = 7, ['Y'] = 7, ['Z'] = 7,
    ['['] = 6, ['\\'] = 6, [']'] = 6, ['^'] = 7, ['_'] = 7, ['`'] = 7,
    ['a'] = 7, ['b'] = 7, ['c'] = 7, ['d'] = 7, ['e'] = 7, ['f'] = 7, ['g'] = 7,
    ['h'] = 7, ['i'] = 7, ['j'] = 7, ['k'] = 7, ['l'] = 7, ['m'] = 7, ['n'] = 7,
    ['o'] = 7, ['p'] = 7, ['q'] = 7, ['r'] = 7, ['s'] = 7, ['t'] = 7, ['u'] = 7,
    ['v'] = 7, ['w'] = 7, ['x'] = 7, ['y'] = 7, ['z'] = 7,
    ['{'] = 6, ['|'] = 7, ['}'] = 6, ['~'] = 7,
    [0x80] = 2, [0x81] = 2, [0x82] = 2, [0x83] = 2, [0x84] = 2, [0x85] = 2, [0x86] = 2,
    [0x87] = 2, [0x88] = 2, [0x89] = 2, [0x8a] = 2, [0x8b] = 2, [0x8c] = 2, [0x8d] = 2,
    [0x8e] = 2, [0x8f] = 2, [0x90] = 2, [0x91] = 2, [0x92] = 2, [0x93] = 2, [0x94] = 2,
    [0x95] = 2, [0x96] = 2, [0x97] = 2, [0x98] = 2, [0x99] = 2, [0x9a] = 2, [0x9b] = 2,
    [0x9c] = 2, [0x9d] = 2, [0x9e] = 2, [0x9f] = 2, [0xa0] = 2, [0xa1] = 2, [0xa2] = 2,
    [0xa3] = 2, [0xa4] = 2, [0xa5] = 2, [0xa6] = 2, [0xa7] = 2, [0xa8] = 2, [0xa9] = 2,
    [0xaa] = 2, [0xab] = 2, [0xac] = 2, [0xad] = 2, [0xae] = 2, [0xaf] = 2, [0xb0] = 2,
    [0xb1] = 2, [0xb2] = 2, [0xb3] = 2, [0xb4] = 2, [0xb5] = 2, [0xb6] = 2, [0xb7] = 2,
    [0xb8] = 2, [0xb9] = 2, [0xba] = 2, [0xbb] = 2, [0xbc] = 2, [0xbd] = 2, [0xbe] = 2,
    [0xbf] = 2, [0xc0] = 2, [0xc1] = 2, [0xc2] = 2, [0xc3] = 2, [0xc4] = 2, [0xc5] = 2,
    [0xc6] = 2, [0xc7] = 2, [0xc8] = 2, [0xc9] = 2, [0xca] = 2, [0xcb] = 2, [0xcc] = 2,
    [0xcd] = 2, [0xce] = 2, [0xcf] = 2, [0xd0] = 2, [0xd1] = 2, [0xd2] = 2, [0xd3] = 2,
    [0xd4] = 2, [0xd5] = 2, [0xd6] = 2, [0xd7] = 2, [0xd8] = 2, [0xd9] = 2, [0xda] = 2,
    [0xdb] = 2, [0xdc] = 2, [0xdd] = 2, [0xde] = 2, [0xdf] = 2, [0xe0] = 2, [0xe1] = 2,
    [0xe2] = 2, [0xe3] = 2, [0xe4] = 2, [0xe5] = 2, [0xe6] = 2, [0xe7] = 2, [0xe8] = 2,
    [0xe9] = 2, [0xea] = 2, [0xeb] = 2, [0xec] = 2, [0xed] = 2, [0xee] = 2, [0xef] = 2,
    [0xf0] = 2, [0xf1] = 2, [0xf2] = 2, [0xf3] = 2, [0xf4] = 2, [0xf5] = 2, [0xf6] = 2,
    [0xf7] = 2, [0xf8] = 2, [0xf9] = 2, [0xfa] = 2, [0xfb] = 2, [0xfc] = 2, [0xfd] = 2,
    [0xfe] = 2, [0xff] = 2,
};

#define HTTP_TCHAR(c) (http_ctab[(unsigned char)(c)] & 1)
#define HTTP_VCHAR_OR_WS(c) (http_ctab[(unsigned char)(c)] & 2)
#define HTTP_TARGET(c) (http_ctab[(unsigned char)(c)] & 4)

/* ASCII case-insensitive equality of s[0, n) with the lower-case `lit`. */
static inline bool http_ieq(const char *s, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

#define HTTP_IEQ(s, n, lit) http_ieq((s), (n), lit, sizeof(lit) - 1)

/* Walk Connection's comma-separated tokens. */
static inline void http_connection_tokens(const char *v, size_t n, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (HTTP_IEQ(v + start, end - start, "close"))
            *close = true;
        else if (HTTP_IEQ(v + start, end - start, "keep-alive"))
            *keep = true;
    }
}

/*
 * Parse the request head at the start of buf[0, len), looking at no more
 * than max_head bytes.  Returns the length of the head (request line,
 * fields and the empty line; the body, if any, follows) with *req filled,
 * or HTTP_INCOMPLETE (the head may still complete: len < max_head and
 * nothing seen so far is wrong), HTTP_TOO_LARGE (max_head bytes hold no
 * complete head), HTTP_BAD_REQUEST or HTTP_BAD_VERSION.  *req is
 * meaningful only after a positive return.
 */
static inline long http_parse_request(const char *buf, size_t len, size_t max_head,
                                      http_request *req)
{
    const size_t end = len < max_head ? len : max_head;
    size_t p = 0;
    int hosts = 0;
    bool close = false, keep = false, have_cl = false;

    /* Empty lines before the request line are ignored (RFC 9112, 2.2). */
    for (;;) {
        if (p < end && buf[p] == '\n') {
            p++;
        } else if (p + 1 < end && buf[p] == '\r' && buf[p + 1] == '\n') {
            p += 2;
        } else if (p + 1 == end && buf[p] == '\r') {
            goto incomplete;
        } else {
            break;
        }
    }
    if (p == end)
        goto incomplete;

    /* Request line: method SP target SP HTTP/d.d (CR) LF */
    req->method = buf + p;
    while (p < end && HTTP_TCHAR(buf[p]))
        p++;
    if (p == end)
        goto incomplete;
    req->method_len = (size_t)(buf + p - req->method);
    if (req->method_len == 0 || buf[p] != ' ')
        return HTTP_BAD_REQUEST;
    p++;
    req->target = buf + p;
    req->path_len = (size_t)-1;
    while (p < end && HTTP_TARGET(buf[p])) {
        if (buf[p] == '?' && req->path_len == (size_t)-1)
            req->path_len = (size_t)(buf + p - req->target);
        p++;
    }
    if (p == end)
        goto incomplete;
    req->target_len = (size_t)(buf + p - req->target);
    if (req->path_len == (size_t)-1)
        req->path_len = req->target_len;
    if (req->target_len == 0 || buf[p] != ' ')
        return HTTP_BAD_REQUEST;
    p++;
    /* "HTTP/d.d" then CRLF or LF: check what has arrived so far. */
    {
        static const char proto[] = "HTTP/";
        size_t i = 0;
        for (; i < 5 && p + i < end; i++)
            if (buf[p + i] != proto[i])
                return HTTP_BAD_REQUEST;
        if (p + 5 >= end)
            goto incomplete;
        if (buf[p + 5] < '0' || buf[p + 5] > '9')
            return HTTP_BAD_REQUEST;
        if (p + 6 >= end)
            goto incomplete;
        if (buf[p + 6] != '.')
            return HTTP_BAD_REQUEST;
        if (p + 7 >= end)
            goto incomplete;
        if (buf[p + 7] < '0' || buf[p + 7] > '9')
            return HTTP_BAD_REQUEST;
        if (p + 8 >= end)
            goto incomplete;
        char major = buf[p + 5];
        req->minor = buf[p + 7] - '0';
        p += 8;
        if (buf[p] == '\r') {
            if (++p == end)
                goto incomplete;
        }
        if (buf[p] != '\n')
            return HTTP_BAD_REQUEST;
        p++;
        if (major != '1')
            return HTTP_BAD_VERSION;
    }

    req->has_transfer_encoding = false;
    req->content_length = 0;
    req->headers = 0;

    /* Header fields, up to the empty line. */
    for (;;) {
        if (p == end)
            goto incomplete;
        if (buf[p] == '\n') {
            p++;
            break;
        }
        if (buf[p] == '\r') {
            if (p + 1 == end)
                goto incomplete;
            if (buf[p + 1] != '\n')
                return HTTP_BAD_REQUEST;
            p += 2;
            break;
        }
        const char *name = buf + p;
        while (p < end && HTTP_TCHAR(buf[p]))
            p++;
        if (p == end)
            goto incomplete;
        size_t name_len = (size_t)(buf + p - name);
        if (name_len == 0 || buf[p] != ':')
            return HTTP_BAD_REQUEST;   /* also: obs-fold, space before ':' */
        p++;
        while (p < end && (buf[p] == ' ' || buf[p] == '\t'))
            p++;
        const char *value = buf + p;
        while (p < end && HTTP_VCHAR_OR_WS(buf[p]))
            p++;
        if (p == end)
            goto incomplete;
        size_t vend = p;
        if (buf[p] == '\r') {
            if (++p == end)
                goto incomplete;
        }
        if (buf[p] != '\n')
            return HTTP_BAD_REQUEST;
        p++;
        while (buf + vend > value && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
            vend--;
        size_t value_len = (size_t)(buf + vend - value);
        req->headers++;

        switch (name_len) {
        case 4:
            if (HTTP_IEQ(name, 4, "host"))
                hosts++;
            break;
        case 10:
            if (HTTP_IEQ(name, 10, "connection"))
                http_connection_tokens(value, value_len, &close, &keep);
            break;
        case 14:
            if (HTTP_IEQ(name, 14, "content-length")) {
                if (value_len == 0)
                    return HTTP_BAD_REQUEST;
                uint64_t v = 0;
                for (size_t i = 0; i < value_len; i++) {
                    unsigned d = (unsigned)(unsigned char)value[i] - '0';
                    if (d > 9 || v > (UINT64_C(1) << 53) / 10)
                        return HTTP_BAD_REQUEST;
                    v = v * 10 + d;
                }
                if (have_cl && v != req->content_length)
                    return HTTP_BAD_REQUEST;
                have_cl = true;
                req->content_length = v;
            }
            break;
        case 17:
            if (HTTP_IEQ(name, 17, "transfer-encoding"))
                req->has_transfer_encoding = true;
            break;
        default:
            break;
        }
    }

    if (req->minor >= 1 && hosts != 1)
        return HTTP_BAD_REQUEST;
    if (hosts > 1)
        return HTTP_BAD_REQUEST;
    req->keep_alive = req->minor >= 1 ? !close : (keep && !close);
    return (long)p;

incomplete:
    return len >= max_head ? HTTP_TOO_LARGE : HTTP_INCOMPLETE;
}

#endif
