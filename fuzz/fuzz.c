/* fuzz.c - the input provider (see fuzz.h). */
#include "fuzz.h"

static const uint8_t *fz_data;
static size_t fz_left;

void fz_init(const uint8_t *data, size_t size)
{
    fz_data = data;
    fz_left = size;
}

size_t fz_remaining(void)
{
    return fz_left;
}

unsigned fz_u8(void)
{
    if (fz_left == 0)
        return 0;
    fz_left--;
    return *fz_data++;
}

unsigned fz_u16(void)
{
    unsigned hi = fz_u8();

    return (hi << 8) | fz_u8();
}
