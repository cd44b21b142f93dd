/* main.c - the entry point every server shares: the command-line contract
 * (see echo_usage), the readiness line, then the server's echo_serve(). */
#include "echo.h"

#include <netdb.h>

int main(int argc, char **argv)
{
    struct echo_config cfg;
    struct echo_sockets socks;
    char err[ECHO_ERR_LEN] = "";
    char addr[NI_MAXHOST];
    unsigned port;

    if (echo_parse_args(argc, argv, &cfg, err) != ECHO_OK) {
        fprintf(stderr, "%s: %s\n", echo_server_name, err);
        return 2;
    }
    if (cfg.help) {
        echo_usage(stdout, echo_server_name);
        return 0;
    }
    if (echo_signals_init(err) != ECHO_OK) {
        fprintf(stderr, "%s: %s\n", echo_server_name, err);
        return 1;
    }
    if (echo_open(&cfg, &socks, addr, sizeof(addr), &port, err) != ECHO_OK) {
        fprintf(stderr, "%s: %s\n", echo_server_name, err);
        return 1;
    }
    /* Whoever started us waits for this line: it must arrive whole and now. */
    if (printf("listening %s %u%s%s\n", addr, port, socks.tcp >= 0 ? " tcp" : "",
               socks.udp >= 0 ? " udp" : "") < 0 ||
        fflush(stdout) == EOF) {
        fprintf(stderr, "%s: cannot write to stdout\n", echo_server_name);
        echo_close(&socks);
        return 1;
    }
    echo_serve(&socks, &cfg, err);
    fprintf(stderr, "%s: %s\n", echo_server_name, err);
    echo_close(&socks);
    return 1;
}
