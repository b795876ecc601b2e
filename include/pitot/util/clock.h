/* clock: the one monotonic clock every measurement uses. */
#ifndef PITOT_UTIL_CLOCK_H
#define PITOT_UTIL_CLOCK_H

#include <stdint.h>

/* Microseconds on CLOCK_MONOTONIC; never goes back, unrelated to wall time. */
uint64_t clk_now_us(void);

/* Wall-clock time for log lines: microseconds since the Unix epoch. */
uint64_t clk_wall_us(void);

#endif
