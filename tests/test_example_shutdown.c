/*
 * test_example_shutdown.c - examples/echo_server.c run as a program and
 * stopped by a signal: after SIGTERM (or SIGINT) it refuses new clients,
 * keeps echoing for the live ones, and exits 0 once they are gone; with no
 * client it exits 0 straight away.  On both runtimes.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ECHO_BIN "build/examples/echo_server"

/* A port nobody listens on right now (bound, read, released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int try_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return fd;
    int e = errno;
    close(fd);
    return -e;
}

/* Start the example on a free port (*port); returns its pid once it
 * accepts.  A port taken between free_port() and the server's bind (by a
 * test running beside this one) makes it exit at start-up: try another. */
static pid_t start_server(int *port, const char *workers)
{
    cr_assert_eq(access(ECHO_BIN, X_OK), 0, ECHO_BIN " is not built (make examples)");
    for (int attempt = 0; attempt < 20; attempt++) {
        *port = free_port();
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            char p[16];
            snprintf(p, sizeof(p), "%d", *port);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execl(ECHO_BIN, "echo_server", p, workers, (char *)NULL);
            _exit(127);
        }
        for (;;) {                            /* the watchdog bounds this */
            int fd = try_connect(*port);
            if (fd >= 0) {
                close(fd);
                return pid;
            }
            int st;
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid) {
                cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "the server died: %#x", st);
                break;                        /* could not listen: another port */
            }
            usleep(2000);
        }
    }
    cr_assert_fail("the server never started");
    return -1;
}

static void echo_once(int fd, const char *msg)
{
    size_t len = strlen(msg);
    char in[64];
    cr_assert_eq(write(fd, msg, len), (ssize_t)len);
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, in + got, sizeof(in) - got);
        cr_assert_gt(n, 0, "the server stopped echoing");
        got += (size_t)n;
    }
    cr_assert(memcmp(in, msg, len) == 0);
}

static void exits_zero(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "status %#x", st);
    cr_assert_eq(WEXITSTATUS(st), 0);
}

static void live_client_finishes(const char *workers, int sig)
{
    int port;
    pid_t pid = start_server(&port, workers);
    int fd = try_connect(port);
    cr_assert_geq(fd, 0);
    echo_once(fd, "before the signal");
    cr_assert_eq(kill(pid, sig), 0);
    for (;;) {                                 /* until it stops listening */
        int r = try_connect(port);
        if (r >= 0)
            close(r);
        else if (r != -EAGAIN && r != -EADDRNOTAVAIL && r != -EINTR)
            break;                             /* refused (those three: no local port now) */
        usleep(2000);
    }
    echo_once(fd, "after the signal");          /* the live client is served */
    int st;
    cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "exited with a live client");
    close(fd);
    exits_zero(pid);
}

Test(example_shutdown, sigterm_lets_the_live_client_finish, .timeout = PN_TEST_TIMEOUT)
{
    live_client_finishes("0", SIGTERM);
    live_client_finishes("2", SIGTERM);
}

Test(example_shutdown, sigint_does_the_same, .timeout = PN_TEST_TIMEOUT)
{
    live_client_finishes("0", SIGINT);
}

Test(example_shutdown, sigterm_without_clients_exits_zero, .timeout = PN_TEST_TIMEOUT)
{
    int port;
    pid_t pid = start_server(&port, "0");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    exits_zero(pid);
    pid = start_server(&port, "2");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    exits_zero(pid);
}
