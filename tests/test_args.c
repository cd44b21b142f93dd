/* test_args.c - echo_parse_args and echo_usage: the command-line contract
 * every server shares. Each case is one call of check_ok or check_err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "echo.h"

#define MAX_ARGS 8

/* argv as the C runtime gives it: writable strings, NULL at argv[argc]. */
static int make_argv(char **argv, char store[][300], const char *const *args)
{
    int argc = 0;

    strcpy(store[0], "echo-test");
    argv[argc++] = store[0];
    for (; args[argc - 1] != NULL; argc++) {
        assert_true(argc < MAX_ARGS);
        assert_true(strlen(args[argc - 1]) < sizeof(store[0]));
        strcpy(store[argc], args[argc - 1]);
        argv[argc] = store[argc];
    }
    argv[argc] = NULL;
    return argc;
}

static void check_ok(const char *const *args, const char *host, unsigned port,
                     unsigned max_conns, int help)
{
    char store[MAX_ARGS][300], *argv[MAX_ARGS + 1], err[ECHO_ERR_LEN] = "";
    struct echo_config cfg;
    int argc = make_argv(argv, store, args);

    memset(&cfg, 0x5a, sizeof(cfg)); /* parse must set every field */
    assert_int_equal(echo_parse_args(argc, argv, &cfg, err), ECHO_OK);
    assert_string_equal(cfg.host, host);
    assert_int_equal(cfg.port, port);
    assert_int_equal(cfg.max_conns, max_conns);
    assert_int_equal(cfg.help, help);
    assert_string_equal(err, "");
}

static void check_transports(const char *const *args, unsigned transports)
{
    char store[MAX_ARGS][300], *argv[MAX_ARGS + 1], err[ECHO_ERR_LEN] = "";
    struct echo_config cfg;
    int argc = make_argv(argv, store, args);

    memset(&cfg, 0x5a, sizeof(cfg));
    assert_int_equal(echo_parse_args(argc, argv, &cfg, err), ECHO_OK);
    assert_int_equal(cfg.transports, transports);
}

static void check_err(const char *const *args, const char *message)
{
    char store[MAX_ARGS][300], *argv[MAX_ARGS + 1], err[ECHO_ERR_LEN] = "";
    struct echo_config cfg;
    int argc = make_argv(argv, store, args);

    assert_int_equal(echo_parse_args(argc, argv, &cfg, err), ECHO_ERR);
    assert_string_equal(err, message);
    /* one line on stderr: the message itself has no newline */
    assert_null(strchr(err, '\n'));
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *const[]){NULL})

static void test_defaults(void **state)
{
    (void)state;
    check_ok(NO_ARGS, "::", 7, 1024, 0);
}

static void test_each_option_both_spellings(void **state)
{
    (void)state;
    check_ok(ARGS("--port", "8080"), "::", 8080, 1024, 0);
    check_ok(ARGS("--port=8080"), "::", 8080, 1024, 0);
    check_ok(ARGS("--host", "127.0.0.1"), "127.0.0.1", 7, 1024, 0);
    check_ok(ARGS("--host=::1"), "::1", 7, 1024, 0);
    check_ok(ARGS("--max-conns", "5"), "::", 7, 5, 0);
    check_ok(ARGS("--max-conns=5"), "::", 7, 5, 0);
    check_ok(ARGS("--host", "localhost", "--port=0", "--max-conns", "2"), "localhost", 0, 2,
             0);
}

static void test_bounds_accepted(void **state)
{
    (void)state;
    check_ok(ARGS("--port", "0"), "::", 0, 1024, 0);
    check_ok(ARGS("--port", "65535"), "::", 65535, 1024, 0);
    check_ok(ARGS("--port", "007"), "::", 7, 1024, 0);
    check_ok(ARGS("--max-conns", "1"), "::", 7, 1, 0);
    check_ok(ARGS("--max-conns", "1000000"), "::", 7, 1000000, 0);
}

static void test_last_value_wins(void **state)
{
    (void)state;
    check_ok(ARGS("--port", "1", "--port=2"), "::", 2, 1024, 0);
}

static void test_host_length_limit(void **state)
{
    char longest[ECHO_HOST_MAX], too_long[ECHO_HOST_MAX + 1];

    (void)state;
    memset(longest, 'a', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    check_ok(ARGS("--host", longest), longest, 7, 1024, 0);
    check_err(ARGS("--host", too_long), "--host needs an address");
}

static void test_help(void **state)
{
    (void)state;
    check_ok(ARGS("--help"), "::", 7, 1024, 1);
    check_ok(ARGS("-h"), "::", 7, 1024, 1);
    check_ok(ARGS("--port", "9", "--help"), "::", 9, 1024, 1);
    /* --help stops parsing: what follows it is not judged */
    check_ok(ARGS("--help", "--bogus"), "::", 7, 1024, 1);
}

static void test_bad_port(void **state)
{
    (void)state;
    check_err(ARGS("--port"), "--port needs a number from 0 to 65535, got ''");
    check_err(ARGS("--port="), "--port needs a number from 0 to 65535, got ''");
    check_err(ARGS("--port", ""), "--port needs a number from 0 to 65535, got ''");
    check_err(ARGS("--port", "65536"), "--port needs a number from 0 to 65535, got '65536'");
    check_err(ARGS("--port", "-1"), "--port needs a number from 0 to 65535, got '-1'");
    check_err(ARGS("--port", "+1"), "--port needs a number from 0 to 65535, got '+1'");
    check_err(ARGS("--port", " 1"), "--port needs a number from 0 to 65535, got ' 1'");
    check_err(ARGS("--port", "1 "), "--port needs a number from 0 to 65535, got '1 '");
    check_err(ARGS("--port", "12x"), "--port needs a number from 0 to 65535, got '12x'");
    check_err(ARGS("--port", "0x10"), "--port needs a number from 0 to 65535, got '0x10'");
    check_err(ARGS("--port", "echo"), "--port needs a number from 0 to 65535, got 'echo'");
    check_err(ARGS("--port", "99999999999999999999999"),
              "--port needs a number from 0 to 65535, got '99999999999999999999999'");
    check_err(ARGS("--port", "--host"), "--port needs a number from 0 to 65535, got '--host'");
}

static void test_bad_max_conns(void **state)
{
    (void)state;
    check_err(ARGS("--max-conns"), "--max-conns needs a number from 1 to 1000000, got ''");
    check_err(ARGS("--max-conns=0"),
              "--max-conns needs a number from 1 to 1000000, got '0'");
    check_err(ARGS("--max-conns", "1000001"),
              "--max-conns needs a number from 1 to 1000000, got '1000001'");
    check_err(ARGS("--max-conns", "-5"),
              "--max-conns needs a number from 1 to 1000000, got '-5'");
    check_err(ARGS("--max-conns", "many"),
              "--max-conns needs a number from 1 to 1000000, got 'many'");
}

static void test_bad_host(void **state)
{
    (void)state;
    check_err(ARGS("--host"), "--host needs an address");
    check_err(ARGS("--host="), "--host needs an address");
    check_err(ARGS("--host", ""), "--host needs an address");
}

static void test_unknown_arguments(void **state)
{
    (void)state;
    check_err(ARGS("--prot", "7"), "unknown argument '--prot' (try --help)");
    check_err(ARGS("--portx=7"), "unknown argument '--portx=7' (try --help)");
    check_err(ARGS("--hosts", "x"), "unknown argument '--hosts' (try --help)");
    check_err(ARGS("-p", "7"), "unknown argument '-p' (try --help)");
    check_err(ARGS("7"), "unknown argument '7' (try --help)");
    check_err(ARGS("--"), "unknown argument '--' (try --help)");
    check_err(ARGS(""), "unknown argument '' (try --help)");
    check_err(ARGS("--PORT", "7"), "unknown argument '--PORT' (try --help)");
    /* an error before --help is still an error */
    check_err(ARGS("--bogus", "--help"), "unknown argument '--bogus' (try --help)");
    /* a good option does not hide a bad one after it */
    check_err(ARGS("--port", "9", "extra"), "unknown argument 'extra' (try --help)");
}

static void test_no_error_buffer(void **state)
{
    char prog[] = "echo-test", bad[] = "--bogus";
    char *argv[] = {prog, bad, NULL};
    struct echo_config cfg;

    (void)state;
    /* a caller that does not want the message passes NULL */
    assert_int_equal(echo_parse_args(2, argv, &cfg, NULL), ECHO_ERR);
}

static void test_transports(void **state)
{
    (void)state;
    /* inetd's port 7: both, unless asked otherwise */
    check_transports((const char *[]){NULL}, ECHO_TCP | ECHO_UDP);
    check_transports((const char *[]){"--transport", "tcp", NULL}, ECHO_TCP);
    check_transports((const char *[]){"--transport=udp", NULL}, ECHO_UDP);
    check_transports((const char *[]){"--transport", "udp", "--transport", "both", NULL},
                     ECHO_TCP | ECHO_UDP);
    check_err((const char *[]){"--transport", NULL}, "--transport needs tcp, udp or both, got ''");
    check_err((const char *[]){"--transport=TCP", NULL},
              "--transport needs tcp, udp or both, got 'TCP'");
    check_err((const char *[]){"--transport", "tcp,udp", NULL},
              "--transport needs tcp, udp or both, got 'tcp,udp'");
}

static void test_usage(void **state)
{
    char text[2048];
    FILE *f = fmemopen(text, sizeof(text), "w");

    (void)state;
    assert_non_null(f);
    echo_usage(f, "echo-test");
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(text, "usage: echo-test [--host ADDR] [--port N] [--transport tcp|udp|both] "
                                 "[--max-conns N]\n"));
    assert_non_null(strstr(text, "(default both"));
    assert_ptr_equal(strstr(text, "usage: "), text);
    assert_non_null(strstr(text, "(default 7)"));
    assert_non_null(strstr(text, "(default 1024)"));
    assert_non_null(strstr(text, "--help"));
    assert_non_null(strstr(text, "listening ADDR PORT"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_each_option_both_spellings),
        cmocka_unit_test(test_bounds_accepted),
        cmocka_unit_test(test_last_value_wins),
        cmocka_unit_test(test_host_length_limit),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_max_conns),
        cmocka_unit_test(test_bad_host),
        cmocka_unit_test(test_unknown_arguments),
        cmocka_unit_test(test_no_error_buffer),
        cmocka_unit_test(test_transports),
        cmocka_unit_test(test_usage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
