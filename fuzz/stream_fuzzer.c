/* stream_fuzzer.c - echo_stream(), the connection loop of echo-blocking and
 * echo-threaded, on one simulated blocking connection.
 *
 * Links impl/conn.c unchanged over simsock.c. The server's calls block the
 * way blocking sockets do: a recv() with nothing to read lets the client
 * act first, and EAGAIN never happens; short reads and writes, EINTR and
 * resets do. When the script ends the client half-closes, and echo_stream()
 * must then return with every byte echoed and the socket closed once.
 *
 * Input: client actions, read one at a time whenever the server waits for
 * data, interleaved with the outcome bytes of its calls (simsock.c):
 *   0x00..0x7F  send b + 1 bytes        0xE0..0xEF  half-close
 *   0x80..0xDF  send (b - 0x7F) KiB     0xF0..0xFF  reset */
#include "fuzz.h"
#include "simsock.h"

#include "echo.h"

#define MAX_INPUT 2048

static int client_acts(void)
{
    unsigned b;

    if (fz_remaining() == 0)
        return 0;
    b = fz_u8();
    if (b < 0x80)
        sim_client_send(0, b + 1);
    else if (b < 0xE0)
        sim_client_send(0, (b - 0x7F) * 1024);
    else if (b < 0xF0)
        sim_client_shutdown(0);
    else
        sim_client_reset(0);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd, rc;

    if (size > MAX_INPUT)
        return 0;
    fz_init(data, size);
    sim_reset(SIM_BLOCKING, 1);
    sim_set_block_hook(client_acts);
    fd = sim_attach();
    sim_enter();
    rc = echo_stream(fd);
    sim_leave();
    CHECK_EQ(rc, ECHO_OK, "echo_stream");
    /* The close itself checked that nothing was owed (simsock.c). */
    CHECK(sim_client_closed(0));
    sim_finish();
    return 0;
}
