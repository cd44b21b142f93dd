/* echo-threaded - blocking I/O, one thread per client.
 *
 * At most --max-conns threads serve at once; past that a connection is
 * closed as soon as it is accepted, so a flood of clients costs a bounded
 * number of threads and a refused client learns it at once. */
#include "echo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

const char echo_server_name[] = "echo-threaded";

/* The echo buffer lives on the heap, so threads need little stack; room is
 * kept for sanitizer builds, whose frames are larger. */
#define THREAD_STACK_SIZE (256 * 1024)

static atomic_uint active;

static void *serve_client(void *arg)
{
    echo_stream((int)(intptr_t)arg);
    atomic_fetch_sub(&active, 1);
    return NULL;
}

int echo_serve(const struct echo_sockets *s, const struct echo_config *cfg, char *err)
{
    struct echo_acceptor acceptor;
    pthread_attr_t attr;
    int rc;

    /* One thread answers every datagram: a reply is one send, no session. */
    if (s->tcp < 0)
        return echo_udp_serve(s->udp, err);
    if (s->udp >= 0 && echo_udp_spawn(s->udp, err) != ECHO_OK)
        return ECHO_ERR;
    rc = pthread_attr_init(&attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
    if (rc != 0) {
        echo_set_error(err, "pthread_attr: %s", strerror(rc));
        return ECHO_ERR;
    }
    if (echo_acceptor_init(&acceptor, s->tcp, err) != ECHO_OK)
        goto out;
    for (;;) {
        pthread_t tid;
        int fd = echo_accept_wait(&acceptor, 0, err);

        if (fd < 0)
            break;
        if (atomic_load(&active) >= cfg->max_conns) {
            (void)close(fd);
            continue;
        }
        atomic_fetch_add(&active, 1);
        rc = pthread_create(&tid, &attr, serve_client, (void *)(intptr_t)fd);
        if (rc != 0) {
            /* Out of threads is out of capacity: refuse, keep serving. */
            atomic_fetch_sub(&active, 1);
            (void)close(fd);
        }
    }
    echo_acceptor_close(&acceptor);
out:
    pthread_attr_destroy(&attr);
    return ECHO_ERR;
}
