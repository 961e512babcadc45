/*
 * chat_server.c - a line-based chat room: tasks talking through a
 * broadcast channel.
 *
 * Usage: chat_server PORT [--workers N]   (127.0.0.1:PORT; try two `nc`s)
 *
 * Every line a client sends (at most 1 KiB: a longer one is cut into 1 KiB
 * lines) goes to every other client as "[ADDR] line\n", ADDR being the
 * sender's address; arrivals and departures are announced as
 * "* ADDR joined\n" and "* ADDR left\n".
 *
 * The room is one pn_broadcast channel of chat_msg (who spoke, and the text
 * to print).  Each client is one task doing two things at once:
 *   - it reads its socket and pn_broadcast_send()s each complete line;
 *   - it receives from its own receiver and writes what the others said to
 *     its socket, one message at a time (the write ends before the next
 *     receive).
 * A send never waits: the channel keeps the last CHAT_HISTORY messages and
 * overwrites the oldest.  A client that reads slower than the room talks
 * falls more than that behind; its next receive reports -EOVERFLOW and it
 * is dropped (disconnected, "* ADDR left (too slow)" to the others).  So a
 * slow reader never stalls the room, and nobody keeps a queue per client.
 * (A client that stops reading altogether just waits in its write, costing
 * the room nothing, until it reads again and is dropped.)  A client's own
 * lines come back to its receiver too (skipped): it reads no more from its
 * socket while half the history is unread, so it never outruns itself.
 *
 * There is no lock: the channel is thread-safe, so the same program runs on
 * the multi-thread runtime (--workers N) as on the current-thread one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pollen.h>

#define CHAT_LINE 1024          /* longest line relayed as one */
#define CHAT_HISTORY 256        /* messages the room keeps for slow readers */
#define CHAT_BURST 16           /* lines one client says per turn */

typedef struct chat_msg {
    unsigned long from;         /* the speaker's id (its task skips it) */
    size_t len;
    char text[PN_SOCKADDR_STRLEN + CHAT_LINE + 8];  /* "[ADDR] line\n" */
} chat_msg;

typedef struct chat_client {
    pn_future base;
    unsigned long id;
    char name[PN_SOCKADDR_STRLEN];
    pn_tcp_stream s;
    pn_broadcast_tx *room;          /* our handle to send to the room */
    pn_broadcast_rx *rx;            /* what the room says, for us */
    pn_broadcast_recv_future recv;  /* into `out`, while not writing */
    bool writing, eof;
    chat_msg out;                   /* being written: text[sent..len) */
    size_t sent;
    size_t inlen;                   /* bytes of a partial line in inbuf */
    char inbuf[CHAT_LINE];
} chat_client;

/* Tell the room "HEAD" text "\n", where HEAD is head_fmt with our name. */
static void chat_say(chat_client *c, const char *head_fmt, const char *text, size_t len)
{
    chat_msg m = { .from = c->id };
    size_t n = (size_t)snprintf(m.text, sizeof(m.text), head_fmt, c->name);
    memcpy(m.text + n, text, len);
    m.text[n + len] = '\n';
    m.len = n + len + 1;
    pn_broadcast_send(c->room, &m);  /* never waits; cannot fail: rx listens */
}

/* Say the first line of inbuf, if it has one (a full buffer counts as a
 * line, and so do the last words at end of stream). */
static bool chat_say_line(chat_client *c)
{
    char *nl = memchr(c->inbuf, '\n', c->inlen);
    if (!nl && c->inlen < sizeof(c->inbuf) && !(c->eof && c->inlen > 0))
        return false;
    size_t len = nl ? (size_t)(nl - c->inbuf) + 1 : c->inlen;
    size_t text = nl ? len - 1 : len;
    if (text > 0 && c->inbuf[text - 1] == '\r')
        text--;                                  /* telnet-style CRLF */
    chat_say(c, "[%s] ", c->inbuf, text);
    memmove(c->inbuf, c->inbuf + len, c->inlen - len);
    c->inlen -= len;
    return true;
}

/* Leave quietly (also the drop, when the runtime shuts down first). */
static void chat_client_drop(pn_future *f)
{
    chat_client *c = (chat_client *)f;
    pn_future_drop(PN_FUTURE(&c->recv));         /* before freeing its rx */
    pn_broadcast_rx_free(c->rx);
    pn_broadcast_tx_free(c->room);
    c->rx = NULL;
    c->room = NULL;
    pn_tcp_close(&c->s);
}

/*
 * Not written with PN_ASYNC_*: the task waits for two things at once (a
 * line from its socket, a message from the room), so each poll does
 * whatever can be done on either side and returns PN_PENDING when neither
 * can go on: each side left its waker with what it waits for.
 */
static pn_poll chat_client_poll(pn_future *f, pn_cx *cx)
{
    chat_client *c = (chat_client *)f;
    const char *bye = "* %s left";
    for (int said = 0;;) {
        bool busy = false;
        ssize_t n;
        /* the room -> our socket: write a message, then receive the next */
        if (c->writing && c->sent == c->out.len) {
            c->writing = false;
            c->recv = pn_broadcast_recv(c->rx, &c->out);
        }
        if (c->writing) {
            if (pn_tcp_poll_write(&c->s, cx, c->out.text + c->sent, c->out.len - c->sent,
                                  &n) == PN_READY) {
                if (n < 0)
                    break;
                c->sent += (size_t)n;
                busy = true;
            }
        } else if (pn_future_poll(PN_FUTURE(&c->recv), cx) == PN_READY) {
            if (c->recv.res == -EOVERFLOW) {     /* missed .lagged messages */
                bye = "* %s left (too slow)";
                break;
            }
            if (c->recv.res < 0)
                break;                           /* -EPIPE: the room closed */
            c->writing = true;
            c->sent = c->out.from == c->id ? c->out.len : 0;  /* ours: skip it */
            busy = true;
        } else if (c->eof && pn_broadcast_len(c->rx) == 0) {
            break;                               /* said goodbye, heard all */
        }
        /* our socket -> the room, a line at a time, while we keep up with
         * the room (our own lines count: we do not outrun ourselves) */
        if (!c->eof && said < CHAT_BURST && pn_broadcast_len(c->rx) < CHAT_HISTORY / 2) {
            if (chat_say_line(c)) {
                said++;
                busy = true;
            } else if (pn_tcp_poll_read(&c->s, cx, c->inbuf + c->inlen,
                                        sizeof(c->inbuf) - c->inlen, &n) == PN_READY) {
                if (n < 0)
                    break;
                c->eof = n == 0;
                c->inlen += (size_t)n;
                if (c->eof)
                    chat_say_line(c);            /* the last words, if any */
                busy = true;
            }
        }
        if (!busy) {
            if (said == CHAT_BURST)              /* let the others' tasks */
                pn_waker_wake_by_ref(cx->waker); /* catch up, then go on */
            return PN_PENDING;
        }
    }
    chat_say(c, bye, "", 0);
    chat_client_drop(f);
    return PN_READY;
}

static const pn_future_vtable chat_client_vt = { chat_client_poll, chat_client_drop,
                                                 "chat_client" };

/* ---- the acceptor -------------------------------------------------------- */

typedef struct chat_server {
    pn_future base;
    int pc;
    int status;                 /* output: why it stopped (a negative errno) */
    unsigned long clients;      /* ids given so far */
    pn_broadcast_tx *room;
    pn_tcp_listener l;
    pn_tcp_accept_future acc;
    chat_client c;              /* the next client, copied by pn_spawn */
} chat_server;

static void chat_server_drop(pn_future *f)
{
    chat_server *s = (chat_server *)f;
    pn_future_drop(PN_FUTURE(&s->acc));
    pn_tcp_listener_close(&s->l);
    pn_broadcast_tx_free(s->room);       /* each client holds its own handle */
    s->room = NULL;
}

static pn_poll chat_server_poll(pn_future *f, pn_cx *cx)
{
    chat_server *s = (chat_server *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->status = pn_broadcast_new(CHAT_HISTORY, sizeof(chat_msg), &s->room, NULL);
    s->acc = pn_tcp_accept(&s->l);
    while (s->status == 0) {
        PN_AWAIT(s->pc, &s->acc, cx);     /* backs off by itself on EMFILE */
        if ((s->status = s->acc.res) < 0)
            break;                        /* the listener was closed */
        s->c = (chat_client){ .base = { &chat_client_vt }, .id = ++s->clients,
                              .s = s->acc.stream, .room = pn_broadcast_tx_clone(s->room),
                              .writing = true };  /* an empty message: done */
        if (pn_sockaddr_format(&s->acc.peer, s->c.name, sizeof(s->c.name)) < 0)
            strcpy(s->c.name, "?");
        pn_tcp_set_nodelay(&s->c.s, true);   /* a message a write, sent now */
        if (pn_broadcast_subscribe(s->room, &s->c.rx) < 0) {
            chat_client_drop(PN_FUTURE(&s->c));
            continue;
        }
        /* in the room from here on: it hears all that is said after this */
        chat_say(&s->c, "* %s joined", "", 0);
        if (pn_spawn_cx(cx, PN_FUTURE(&s->c), sizeof(s->c), NULL) < 0)
            chat_client_drop(PN_FUTURE(&s->c));     /* left without a word */
    }
    chat_server_drop(f);                  /* clients keep the room open */
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable chat_server_vt = { chat_server_poll, chat_server_drop,
                                                 "chat_server" };

/* A chat server on an open listener (it owns it from now on). */
static chat_server chat_server_new(pn_tcp_listener l)
{
    return (chat_server){ .base = { &chat_server_vt }, .l = l };
}

#ifndef CHAT_SERVER_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int workers = argc == 4 && strcmp(argv[2], "--workers") == 0 ? atoi(argv[3]) : 0;
    if (port <= 0 || port > 65535 || (argc != 2 && workers <= 0)) {
        fprintf(stderr, "usage: %s PORT [--workers N]\n", argv[0]);
        return 2;
    }
    pn_sockaddr addr = pn_sockaddr_loopback4((uint16_t)port);
    pn_tcp_listener l;
    int err = pn_tcp_listen(&l, &addr, NULL);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        return 1;
    }
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
    }
    pn_runtime *rt;
    err = pn_runtime_new(&cfg, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        pn_tcp_listener_close(&l);
        return 1;
    }
    static chat_server srv;                      /* must not move while polled */
    srv = chat_server_new(l);
    printf("chat server listening on 127.0.0.1:%d (%s)\n", port,
           workers > 0 ? "multi-thread" : "current-thread");
    fflush(stdout);
    err = pn_block_on(rt, PN_FUTURE(&srv));      /* serves until killed */
    fprintf(stderr, "chat server: %s\n", pn_strerror(err < 0 ? err : srv.status));
    pn_future_drop(PN_FUTURE(&srv));
    pn_runtime_free(rt);
    return 1;
}
#endif
