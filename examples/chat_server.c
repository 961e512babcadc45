/*
 * chat_server.c - a line-based chat room on pollen's current-thread runtime.
 *
 * Usage: chat_server PORT   (listens on 127.0.0.1:PORT; try two `nc`s)
 *
 * Every line a client sends ("...\n", at most 1 KiB: a longer one is cut
 * into 1 KiB lines) is broadcast to every other connected client as
 * "[ADDR] line\n", where ADDR is the sender's address; arrivals and
 * departures are announced as "* ADDR joined\n" and "* ADDR left\n".  Each
 * client is one task that both reads its socket and writes its outgoing
 * queue, a 64 KiB ring the task allocates when it first runs (pn_spawn
 * copies the future: a ring inside it would be copied, and made resident,
 * for every client).  A broadcast never waits: it copies
 * the line into each receiver's ring and wakes that receiver's task, which
 * writes when its socket lets it.  So a slow client (one that does not
 * read) cannot stall the room: when a line does not fit in its ring, that
 * client is dropped (disconnected, "* ADDR left (too slow)" to the others)
 * rather than making anyone wait or letting its queue grow without bound.
 * Everything runs on one thread, so the room's client list needs no lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pollen.h>

#define CHAT_QUEUE 65536        /* outgoing ring per client (a power of two) */
#define CHAT_LINE 1024          /* longest line relayed as one */
#define CHAT_TURN 8192          /* bytes read from one client per poll */

typedef struct chat_client chat_client;

typedef struct chat_room {
    chat_client *head;          /* every registered client */
    unsigned long clients, dropped;
} chat_room;

struct chat_client {
    pn_future base;
    chat_room *room;
    chat_client *prev, *next;   /* in room->head's list while registered */
    bool registered;
    bool too_slow;              /* its ring overflowed: disconnect it */
    bool eof;                   /* the client closed its side */
    pn_waker waker;             /* our task, for broadcasters to wake */
    pn_tcp_stream s;
    char name[PN_SOCKADDR_STRLEN];
    size_t name_len;
    uint64_t qhead, qtail;      /* ring positions (bytes ever queued/sent) */
    char *queue;                /* the ring, CHAT_QUEUE bytes from the first poll */
    size_t inlen;               /* bytes of a partial line in inbuf */
    char inbuf[CHAT_LINE];
};

/* ---- the room ------------------------------------------------------------ */

/* Queue bytes for c; false (and c marked too slow, its task woken) if they
 * do not fit. */
static bool chat_enqueue(chat_client *c, const char *const *parts, const size_t *lens, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += lens[i];
    if (c->too_slow)
        return false;
    if (CHAT_QUEUE - (size_t)(c->qtail - c->qhead) < total) {
        c->too_slow = true;
        pn_waker_wake_by_ref(&c->waker);
        return false;
    }
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < lens[i];) {
            size_t at = (size_t)(c->qtail & (CHAT_QUEUE - 1));
            size_t run = CHAT_QUEUE - at < lens[i] - k ? CHAT_QUEUE - at : lens[i] - k;
            memcpy(c->queue + at, parts[i] + k, run);
            c->qtail += run;
            k += run;
        }
    }
    pn_waker_wake_by_ref(&c->waker);
    return true;
}

/* Send parts to everyone but `from`; the clients that overflow are marked
 * and announced by their own tasks as they leave. */
static void chat_broadcast(chat_room *room, chat_client *from, const char *const *parts,
                           const size_t *lens, int n)
{
    for (chat_client *c = room->head; c; c = c->next)
        if (c != from)
            chat_enqueue(c, parts, lens, n);
}

static void chat_announce(chat_room *room, chat_client *who, const char *what)
{
    const char *parts[] = { "* ", who->name, what };
    size_t lens[] = { 2, who->name_len, strlen(what) };
    chat_broadcast(room, who, parts, lens, 3);
}

static void chat_leave(chat_client *c)
{
    if (!c->registered)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->room->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->registered = false;
    c->room->clients--;
    pn_waker_drop(&c->waker);
}

/* ---- one client ------------------------------------------------------------ */

/* Relay the complete lines of inbuf (a full buffer counts as one line, and
 * so does what is left at end of stream when `eof`). */
static void chat_relay_lines(chat_client *c, bool eof)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->inbuf + start, '\n', c->inlen - start);
        size_t len;
        if (nl)
            len = (size_t)(nl - (c->inbuf + start)) + 1;
        else if ((start == 0 && c->inlen == sizeof(c->inbuf)) || (eof && start < c->inlen))
            len = c->inlen - start;          /* too long (cut here), or the last words */
        else
            break;
        size_t text = len - (nl ? 1 : 0);
        if (text && c->inbuf[start + text - 1] == '\r')
            text--;                          /* telnet-style CRLF */
        const char *parts[] = { "[", c->name, "] ", c->inbuf + start, "\n" };
        size_t lens[] = { 1, c->name_len, 2, text, 1 };
        chat_broadcast(c->room, c, parts, lens, 5);
        start += len;
    }
    memmove(c->inbuf, c->inbuf + start, c->inlen - start);
    c->inlen -= start;
}

/* Write what the ring holds: PN_READY when it is empty or on error (*err). */
static pn_poll chat_flush(chat_client *c, pn_cx *cx, int *err)
{
    while (c->qhead != c->qtail) {
        size_t at = (size_t)(c->qhead & (CHAT_QUEUE - 1));
        size_t used = (size_t)(c->qtail - c->qhead);
        struct iovec iov[2];
        int n = 1;
        iov[0] = (struct iovec){ c->queue + at, used };
        if (at + used > CHAT_QUEUE) {
            iov[0].iov_len = CHAT_QUEUE - at;
            iov[1] = (struct iovec){ c->queue, used - iov[0].iov_len };
            n = 2;
        }
        ssize_t res;
        if (pn_tcp_poll_writev(&c->s, cx, iov, n, &res) == PN_PENDING)
            return PN_PENDING;
        if (res < 0) {
            *err = (int)res;
            return PN_READY;
        }
        c->qhead += (uint64_t)res;
    }
    return PN_READY;
}

/*
 * Not written with PN_ASYNC_*: the task waits for two things at once (bytes
 * from its socket, room in its socket for its queue) plus a wake from a
 * broadcaster, so each poll simply does whatever can be done.
 */
static pn_poll chat_client_poll(pn_future *f, pn_cx *cx)
{
    chat_client *c = (chat_client *)f;
    int err = 0;
    if (!c->registered) {                       /* first poll: join the room */
        c->queue = malloc(CHAT_QUEUE);
        if (!c->queue) {
            pn_tcp_stream_close(&c->s);
            return PN_READY;
        }
        pn_sockaddr peer;
        if (pn_tcp_peer_addr(&c->s, &peer) < 0 ||
            pn_sockaddr_format(&peer, c->name, sizeof(c->name)) < 0)
            strcpy(c->name, "?");
        c->name_len = strlen(c->name);
        c->waker = pn_waker_clone(cx->waker);
        c->next = c->room->head;
        c->prev = NULL;
        if (c->next)
            c->next->prev = c;
        c->room->head = c;
        c->registered = true;
        c->room->clients++;
        chat_announce(c->room, c, " joined\n");
    }
    for (size_t taken = 0;;) {
        if (c->too_slow)
            break;
        /* send what is queued (until the socket is full) */
        if (chat_flush(c, cx, &err) == PN_READY && err)
            break;
        if (c->eof) {
            if (c->qhead == c->qtail)
                break;                          /* said goodbye, queue sent */
            return PN_PENDING;                  /* writable or a wake brings us back */
        }
        if (taken >= CHAT_TURN) {
            /* let the receivers' tasks drain their queues before we relay
             * more: a fast sender alone must not overflow everyone */
            pn_waker_wake_by_ref(cx->waker);
            return PN_PENDING;
        }
        ssize_t n;
        if (pn_tcp_poll_read(&c->s, cx, c->inbuf + c->inlen, sizeof(c->inbuf) - c->inlen,
                             &n) == PN_PENDING)
            return PN_PENDING;
        if (n < 0)
            break;
        if (n == 0) {
            c->eof = true;
            chat_relay_lines(c, true);
            continue;
        }
        c->inlen += (size_t)n;
        taken += (size_t)n;
        chat_relay_lines(c, false);
    }
    /* leaving */
    if (c->too_slow)
        c->room->dropped++;
    chat_leave(c);
    chat_announce(c->room, c, c->too_slow ? " left (too slow)\n" : " left\n");
    pn_tcp_stream_close(&c->s);
    free(c->queue);
    c->queue = NULL;
    return PN_READY;
}

/* Dropped before completion (runtime shutdown): leave quietly. */
static void chat_client_drop(pn_future *f)
{
    chat_client *c = (chat_client *)f;
    chat_leave(c);
    pn_tcp_stream_close(&c->s);
    free(c->queue);
}

static const pn_future_vtable chat_client_vt = { chat_client_poll, chat_client_drop,
                                                 "chat_client" };

/* ---- the acceptor ------------------------------------------------------- */

typedef struct chat_server {
    pn_future base;
    int pc;
    chat_room *room;
    pn_tcp_listener l;
    pn_tcp_accept acc;
} chat_server;

static pn_poll chat_server_poll(pn_future *f, pn_cx *cx)
{
    chat_server *s = (chat_server *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->acc = pn_tcp_accept_on(&s->l);
    for (;;) {
        PN_AWAIT(s->pc, &s->acc, cx);     /* backs off by itself on EMFILE */
        if (s->acc.res < 0)
            break;                        /* the listener was closed */
        {
            chat_client *c = malloc(sizeof(*c));  /* staging copy: spawn copies it */
            if (!c) {
                pn_tcp_stream_close(&s->acc.stream);
                continue;
            }
            memset(c, 0, offsetof(chat_client, inbuf));
            c->base.vt = &chat_client_vt;
            c->room = s->room;
            c->s = s->acc.stream;
            if (pn_spawn_cx(cx, PN_FUTURE(c), sizeof(*c), NULL) < 0)
                pn_tcp_stream_close(&c->s);
            free(c);
        }
    }
    PN_ASYNC_END(s->pc);
}

static void chat_server_drop(pn_future *f)
{
    chat_server *s = (chat_server *)f;
    if (s->pc != 0)
        pn_future_drop(PN_FUTURE(&s->acc));
    pn_tcp_listener_close(&s->l);
}

static const pn_future_vtable chat_server_vt = { chat_server_poll, chat_server_drop,
                                                 "chat_server" };

/* A chat server on an open listener (it owns it from now on) and a room
 * that outlives it and its clients.  Run it on a current-thread runtime. */
static chat_server chat_server_new(pn_tcp_listener l, chat_room *room)
{
    return (chat_server){ .base = { &chat_server_vt }, .l = l, .room = room };
}

#ifndef CHAT_SERVER_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    pn_sockaddr addr = pn_sockaddr_loopback4((uint16_t)port);
    pn_tcp_listener l;
    int err = pn_tcp_listen(&l, &addr, NULL);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        return 1;
    }
    pn_runtime *rt;
    err = pn_runtime_new(NULL, &rt);              /* current-thread */
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        pn_tcp_listener_close(&l);
        return 1;
    }
    static chat_room room;
    static chat_server srv;
    srv = chat_server_new(l, &room);
    printf("chat server listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    err = pn_block_on(rt, PN_FUTURE(&srv));       /* serves until killed */
    fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
    pn_tcp_listener_close(&srv.l);
    pn_runtime_free(rt);
    return 1;
}
#endif
