/* log: pitot's own lines on stderr (not the access log): what an operator
 * needs when something changes. Levels (log.level), text or JSON lines
 * (log.format), one write(2) per line from any thread, repeats of one message
 * at most once a second. Never a prompt, an output or a key: callers log
 * names, addresses, counts and reasons only. */
#ifndef PITOT_UTIL_LOG_H
#define PITOT_UTIL_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* The values of log.level (config.h's log_level), plus NOTICE for the lines
 * of pitot's start and stop, which every level writes (they say it runs). */
enum log_level {
    LOG_LVL_NOTICE = -1, /* start and stop: whatever the level */
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2, /* the default */
    LOG_LVL_DEBUG = 3,
};

/* The values of log.format (config.h's log_format). */
enum log_format {
    LOG_FMT_TEXT = 0, /* 2026-12-05T19:30:00.123Z pitot: warn: MESSAGE (notice: no "notice: ") */
    LOG_FMT_JSON = 1, /* {"ts":"2026-12-05T19:30:00.123Z","level":"warn","msg":"MESSAGE"} */
};

#define LOG_LINE_MAX 2048      /* bytes of one line, its end included; longer ones are cut */
#define LOG_REPEAT_US 1000000u /* one message at most once in this long */
#define LOG_REPEAT_SLOTS 64    /* messages remembered for that (a table, no allocation) */

/* Sets the level (lines above it are not formatted) and the format. Until
 * called: info and text. May be called again (a reload); other threads see
 * the change at their next line. Levels outside error..debug are clamped. */
void log_setup(int level, int format);

/* Would a line at lv be written now? For a caller that must do work to
 * build one. */
bool log_on(enum log_level lv);

/* Writes one line at lv: fmt as printf, the message without an ending
 * newline. Control bytes in the message are escaped (text: \xNN; JSON: as
 * JSON strings are). A message identical to one written less than
 * LOG_REPEAT_US ago (same level, same bytes) is counted, not written; the
 * next time it is written it ends with " (N more suppressed)". NOTICE lines
 * are never held back. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void plog(enum log_level lv, const char *fmt, ...);

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void log_error(const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void log_warn(const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void log_info(const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void log_debug(const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void log_notice(const char *fmt, ...);

/* For tests: lines go to fd instead of 2 (-1: back to 2); mono_us replaces
 * the monotonic clock of the repeat limit and wall_us the clock of the
 * timestamps (NULL: the real ones). The repeat table is emptied. */
void log_hooks_set(int fd, uint64_t (*mono_us)(void), uint64_t (*wall_us)(void));

#endif
