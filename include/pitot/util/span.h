/* span: a borrowed byte range, and the result codes every resumable parser uses. */
#ifndef PITOT_UTIL_SPAN_H
#define PITOT_UTIL_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* A view into bytes owned by someone else. A span into an evbuffer dies at the
 * next drain of that buffer: copy what must outlive it. */
struct span {
    const char *p; /* borrowed */
    size_t len;
};

/* Results of resumable parsers (nginx NGX_AGAIN style). */
enum span_result {
    SPAN_OK = 0,    /* a unit (event, head, document) is complete */
    SPAN_AGAIN = 1, /* all input consumed, need more bytes */
    SPAN_ERR = -1,  /* malformed input; the parser state is dead */
};

static inline struct span span_make(const char *p, size_t len)
{
    struct span s = { p, len };
    return s;
}

static inline struct span span_cstr(const char *s)
{
    return span_make(s, strlen(s));
}

/* True when the span holds exactly the bytes of the NUL-terminated lit. */
static inline bool span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* ASCII case-insensitive equality (header names, tokens). */
bool span_ieq(struct span s, const char *lit);

/* Does s begin with lit, ASCII case-insensitive? */
bool span_iprefix(struct span s, const char *lit);

/* Parses a non-negative decimal integer filling the whole span; rejects signs,
 * blanks, empty input and overflow past INT64_MAX. Returns 0 or -1. */
int span_to_i64(struct span s, long long *out);

#endif
