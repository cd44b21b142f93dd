/* conn.c - one client connection: read what fits, write back what is owed.
 *
 * This is the whole echo logic, shared by every server. The event-loop
 * servers call echo_conn_service() when the descriptor is ready; the
 * blocking servers call it in a loop on a blocking socket (echo_stream). */
#include "echo.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Planted bugs prove that the fuzzers find what they must (fuzz/README.md);
 * they exist only in fuzzing builds and can never reach a server. */
#if (defined(ECHO_PLANT_SHORT_WRITE) || defined(ECHO_PLANT_DROP_ON_EOF)) && \
    !defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#error "planted bugs are for fuzzing builds only"
#endif

/* Spare buffers, shared by every connection of the process (echo-threaded's
 * threads too, hence the lock; it is uncontended in the event loops, and
 * taken once per burst of bytes, not per byte). */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *pool[ECHO_POOL_MAX];
static size_t pooled;

static unsigned char *buf_take(void)
{
    unsigned char *b = NULL;

    if (pthread_mutex_lock(&pool_lock) == 0) {
        if (pooled > 0)
            b = pool[--pooled];
        (void)pthread_mutex_unlock(&pool_lock);
    }
    return b != NULL ? b : malloc(ECHO_BUF_SIZE);
}

static void buf_give(unsigned char *b)
{
    if (b != NULL && pthread_mutex_lock(&pool_lock) == 0) {
        if (pooled < ECHO_POOL_MAX) {
            pool[pooled++] = b;
            b = NULL;
        }
        (void)pthread_mutex_unlock(&pool_lock);
    }
    free(b); /* the pool is full: a burst is over, its memory goes back */
}

struct echo_conn *echo_conn_new(int fd)
{
    struct echo_conn *c = malloc(sizeof(*c));

    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->eof = 0;
    c->watched = 0;
    c->head = 0;
    c->tail = 0;
    c->buf = NULL;
    return c;
}

void echo_conn_free(struct echo_conn *c)
{
    if (c == NULL)
        return;
    /* Linux releases the descriptor even when close() reports an error, and
     * by now all data has been handed to the kernel: nothing to retry. */
    (void)close(c->fd);
    buf_give(c->buf);
    free(c);
}

static int would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* Moves bytes for one readiness event. Returns the readiness the connection
 * waits for next (ECHO_READ and/or ECHO_WRITE), or ECHO_CONN_CLOSE when it is
 * over: the client finished and got every byte, or the connection failed. */
int echo_conn_service(struct echo_conn *c, unsigned ready)
{
    unsigned want = 0;

    if ((ready & ECHO_READ) && !c->eof && c->tail < ECHO_BUF_SIZE) {
        ssize_t n;

        /* Nothing is owed without a buffer: out of memory, the connection
         * ends having lost nothing it read. */
        if (c->buf == NULL && (c->buf = buf_take()) == NULL)
            return ECHO_CONN_CLOSE;
        n = recv(c->fd, c->buf + c->tail, ECHO_BUF_SIZE - c->tail, 0);

        if (n > 0) {
            c->tail += (size_t)n;
        } else if (n == 0) {
            c->eof = 1; /* half-close: still owe everything buffered */
#ifdef ECHO_PLANT_DROP_ON_EOF
            return ECHO_CONN_CLOSE;
#endif
        } else if (!would_block(errno)) {
            return ECHO_CONN_CLOSE; /* reset: this connection only */
        }
    }

    /* Write at once instead of waiting for a writable event: the socket
     * almost always has room, and this saves a wakeup per read. */
    while (c->head < c->tail) {
        ssize_t n = send(c->fd, c->buf + c->head, c->tail - c->head, MSG_NOSIGNAL);

        if (n > 0) {
            c->head += (size_t)n; /* a short write keeps the rest owed */
#ifdef ECHO_PLANT_SHORT_WRITE
            c->head = c->tail;
#endif
        } else if (n < 0 && would_block(errno)) {
            if (errno != EINTR)
                break;
        } else {
            return ECHO_CONN_CLOSE; /* EPIPE, ECONNRESET: the client is gone */
        }
    }

    if (c->head == c->tail) {
        c->head = c->tail = 0;
        buf_give(c->buf); /* idle until the next bytes come */
        c->buf = NULL;
    } else if (c->head >= ECHO_BUF_SIZE / 2) {
        /* Room to read again without waiting for a slow reader to drain
         * everything; at most half the buffer moves. */
        memmove(c->buf, c->buf + c->head, c->tail - c->head);
        c->tail -= c->head;
        c->head = 0;
    }

    if (c->eof && c->tail == 0)
        return ECHO_CONN_CLOSE; /* all owed bytes sent: close sends the FIN */
    if (!c->eof && c->tail < ECHO_BUF_SIZE)
        want |= ECHO_READ;
    if (c->head < c->tail)
        want |= ECHO_WRITE;
    return (int)want;
}

/* Serves one connection on a blocking socket until it is over, then closes
 * it. echo_conn_service() keeps sending until everything read is written
 * (a short send only means another round), so a client that stops reading
 * blocks the echo and, through it, further reads: backpressure. With
 * nothing owed, the wait for the client's next bytes is a peek, which needs
 * no buffer: an idle client of echo-threaded costs its thread's stack, not
 * a buffer besides. */
int echo_stream(int fd)
{
    struct echo_conn *c = echo_conn_new(fd);

    if (c == NULL) {
        (void)close(fd);
        return ECHO_ERR;
    }
    for (;;) {
        if (c->buf == NULL) {
            unsigned char b;
            ssize_t n;

            do
                n = recv(fd, &b, 1, MSG_PEEK);
            while (n < 0 && errno == EINTR);
            if (n <= 0)
                break; /* the client finished with nothing owed, or reset */
        }
        if (echo_conn_service(c, ECHO_READ | ECHO_WRITE) == ECHO_CONN_CLOSE)
            break;
    }
    echo_conn_free(c);
    return ECHO_OK;
}
