/* refusal: refusal detection over the first characters of a streamed answer,
 * matched case-insensitively across chunk boundaries. */
#ifndef PITOT_MEASURE_REFUSAL_H
#define PITOT_MEASURE_REFUSAL_H

#include <stdbool.h>
#include <stddef.h>

/* Characters (UTF-8 code points) of output examined, from the issue. */
#define REFUSAL_WINDOW_CHARS 400
#define REFUSAL_WINDOW_BYTES (REFUSAL_WINDOW_CHARS * 4)

/* An immutable, shared list of lower-cased phrases (built once from config). */
struct refusal_phrases;

/* Builds a phrase list; phrases are copied and lower-cased (ASCII), with
 * U+2019 turned into "'" as in the window; NULL entries and empty phrases are
 * skipped. NULL list or n == 0 gives the default list. Returns NULL on
 * allocation failure. */
struct refusal_phrases *refusal_phrases_new(const char *const *list, size_t n);
void refusal_phrases_free(struct refusal_phrases *ph);

/* The built-in defaults ("i'm sorry, but", "i cannot", "as an ai", ...). */
const char *const *refusal_default_list(size_t *n);

/* Per-request matcher state: embedded in the request, no allocation. */
struct refusal_match {
    const struct refusal_phrases *ph; /* borrowed */
    size_t len;                       /* bytes in win */
    size_t chars;                     /* code points in win */
    bool matched;
    char win[REFUSAL_WINDOW_BYTES]; /* lower-cased decoded output so far */
};

/* ph may be NULL: nothing ever matches. */
void refusal_match_init(struct refusal_match *m, const struct refusal_phrases *ph);

/* Appends decoded UTF-8 output, ASCII-lower-cased, with U+2019 (even split
 * across calls) stored as "'"; once REFUSAL_WINDOW_CHARS are in, further text is
 * ignored. Returns true once any phrase occurs within the window (sticky).
 * Never allocates. */
bool refusal_match_feed(struct refusal_match *m, const char *text, size_t len);

#endif
