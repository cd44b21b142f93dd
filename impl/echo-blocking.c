/* echo-blocking - one client at a time, start to finish.
 *
 * The simplest correct echo server, and deliberately not concurrent: while
 * one client is served, the next ones wait in the listen queue. A client
 * that stops reading therefore stops the whole server; that is the price of
 * blocking I/O without threads, and why the conformance registry marks this
 * server as lacking the "concurrent" capability. */
#include "echo.h"

const char echo_server_name[] = "echo-blocking";

int echo_serve(const struct echo_sockets *s, const struct echo_config *cfg, char *err)
{
    struct echo_acceptor acceptor;

    (void)cfg; /* max_conns is always 1 here */
    /* Datagrams cannot wait for a TCP client to finish: they get a thread. */
    if (s->tcp < 0)
        return echo_udp_serve(s->udp, err);
    if (s->udp >= 0 && echo_udp_spawn(s->udp, err) != ECHO_OK)
        return ECHO_ERR;
    if (echo_acceptor_init(&acceptor, s->tcp, err) != ECHO_OK)
        return ECHO_ERR;
    for (;;) {
        int fd = echo_accept_wait(&acceptor, 0, err);

        if (fd < 0)
            break;
        echo_stream(fd);
    }
    echo_acceptor_close(&acceptor);
    return ECHO_ERR;
}
