/* The monotonic clock used for timeouts and latency figures. */
#include "common/common.h"

#include <time.h>

uint64_t rkv_monotonic_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}
