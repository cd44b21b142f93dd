/* args.c - the command line every echoconf server shares:
 *   echo-NAME [--host ADDR] [--port N] [--transport tcp|udp|both] [--max-conns N] [--help]
 * Strict on purpose: a typo must fail loudly (status 2), never start a server
 * on some other port than the one the caller thinks it asked for. */
#include "echo.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int parse_uint(const char *s, unsigned long min, unsigned long max,
                      unsigned *out)
{
    char *end;
    unsigned long v;

    /* strtoul accepts a sign and leading blanks; a port or a count has neither */
    if (s[0] < '0' || s[0] > '9')
        return ECHO_ERR;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return ECHO_ERR;
    *out = (unsigned)v;
    return ECHO_OK;
}

/* Splits "--name=value" or "--name value"; returns the value or NULL. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    const char *arg = argv[*i];
    size_t len = strlen(name);

    if (arg[len] == '=')
        return arg + len + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static int option_is(const char *arg, const char *name)
{
    size_t len = strlen(name);
    return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

int echo_parse_args(int argc, char **argv, struct echo_config *cfg, char *err)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->host, "::");
    cfg->port = ECHO_DEFAULT_PORT;
    cfg->max_conns = ECHO_DEFAULT_MAX_CONNS;
    cfg->transports = ECHO_TCP | ECHO_UDP;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->help = 1;
            return ECHO_OK;
        }
        if (option_is(arg, "--host")) {
            val = option_value(argc, argv, &i, "--host");
            /* "--host --port 7" is a forgotten address, not a host named "--port" */
            if (val == NULL || val[0] == '\0' || val[0] == '-' ||
                strlen(val) >= sizeof(cfg->host)) {
                echo_set_error(err, "--host needs an address");
                return ECHO_ERR;
            }
            strcpy(cfg->host, val);
        } else if (option_is(arg, "--port")) {
            val = option_value(argc, argv, &i, "--port");
            if (val == NULL || parse_uint(val, 0, 65535, &cfg->port) != ECHO_OK) {
                echo_set_error(err, "--port needs a number from 0 to 65535, got '%s'",
                               val ? val : "");
                return ECHO_ERR;
            }
        } else if (option_is(arg, "--transport")) {
            val = option_value(argc, argv, &i, "--transport");
            if (val != NULL && strcmp(val, "tcp") == 0) {
                cfg->transports = ECHO_TCP;
            } else if (val != NULL && strcmp(val, "udp") == 0) {
                cfg->transports = ECHO_UDP;
            } else if (val != NULL && strcmp(val, "both") == 0) {
                cfg->transports = ECHO_TCP | ECHO_UDP;
            } else {
                echo_set_error(err, "--transport needs tcp, udp or both, got '%s'",
                               val ? val : "");
                return ECHO_ERR;
            }
        } else if (option_is(arg, "--max-conns")) {
            val = option_value(argc, argv, &i, "--max-conns");
            if (val == NULL ||
                parse_uint(val, 1, 1000000, &cfg->max_conns) != ECHO_OK) {
                echo_set_error(err,
                               "--max-conns needs a number from 1 to 1000000, got '%s'",
                               val ? val : "");
                return ECHO_ERR;
            }
        } else {
            echo_set_error(err, "unknown argument '%s' (try --help)", arg);
            return ECHO_ERR;
        }
    }
    return ECHO_OK;
}

void echo_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--host ADDR] [--port N] [--transport tcp|udp|both] [--max-conns N]\n"
            "\n"
            "An echo server (RFC 862): every byte a TCP client sends comes back, and\n"
            "every UDP datagram is answered by one with the same bytes.\n"
            "\n"
            "  --host ADDR      address to listen on (default ::, IPv4 and IPv6)\n"
            "  --port N         port for both transports, 0 for any free port (default %d)\n"
            "  --transport T    tcp, udp or both (default both, as inetd serves port 7)\n"
            "  --max-conns N    TCP clients served at once; more are refused (default %d)\n"
            "  --help           show this help\n"
            "\n"
            "When ready it prints 'listening ADDR PORT' and the transports it serves\n"
            "('listening :: 7 tcp udp'). SIGTERM or SIGINT ends it.\n",
            prog, ECHO_DEFAULT_PORT, ECHO_DEFAULT_MAX_CONNS);
}
