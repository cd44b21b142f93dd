/* args_fuzzer.c - echo_parse_args(), the command line every server shares.
 *
 * The input is the argument list, split at NUL bytes (argv[0] is fixed).
 * Each argument gets its own exact-size allocation, so reading past one is
 * caught. On ECHO_OK the configuration must be in range, and writing it back
 * out as a command line must parse to the same configuration; on ECHO_ERR
 * the message must be a non-empty string. */
#include "fuzz.h"

#include "echo.h"

#include <string.h>

#define MAX_INPUT 1024
#define MAX_ARGS 32

static char *dup_arg(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);

    CHECK(s != NULL);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static void check_config(const struct echo_config *cfg)
{
    CHECK(memchr(cfg->host, '\0', sizeof(cfg->host)) != NULL);
    if (cfg->help)
        return;
    CHECK(cfg->host[0] != '\0');
    CHECK_LE(cfg->port, 65535, "port");
    CHECK_LE(1, cfg->max_conns, "max_conns");
    CHECK_LE(cfg->max_conns, 1000000, "max_conns");
}

static void check_round_trip(const struct echo_config *cfg)
{
    char port[16], conns[16];
    char *argv[] = {"echo-fuzz", "--host", (char *)cfg->host, "--port", port,
                    "--max-conns", conns, NULL};
    struct echo_config again;
    char err[ECHO_ERR_LEN] = "";

    snprintf(port, sizeof(port), "%u", cfg->port);
    snprintf(conns, sizeof(conns), "%u", cfg->max_conns);
    CHECK_EQ(echo_parse_args(7, argv, &again, err), ECHO_OK, err);
    CHECK(strcmp(again.host, cfg->host) == 0);
    CHECK_EQ(again.port, cfg->port, "port after a round trip");
    CHECK_EQ(again.max_conns, cfg->max_conns, "max_conns after a round trip");
    CHECK_EQ(again.help, 0, "help after a round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 2];
    int argc = 1;
    struct echo_config cfg;
    char err[ECHO_ERR_LEN];
    size_t start = 0;

    if (size > MAX_INPUT)
        return 0;
    argv[0] = dup_arg((const uint8_t *)"echo-fuzz", 9);
    for (size_t i = 0; i <= size && argc <= MAX_ARGS; i++) {
        if (i == size || data[i] == '\0') {
            if (i > start || i < size)
                argv[argc++] = dup_arg(data + start, i - start);
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    memset(err, 0x7f, sizeof(err));

    if (echo_parse_args(argc, argv, &cfg, err) == ECHO_OK) {
        check_config(&cfg);
        if (!cfg.help)
            check_round_trip(&cfg);
    } else {
        CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        CHECK(err[0] != '\0');
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
