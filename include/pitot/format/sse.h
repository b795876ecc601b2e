/* sse: a resumable text/event-stream scanner that finds event boundaries in
 * arbitrary byte splits, and a decoder for one complete event. Separate from
 * I/O: it never copies, allocates or reads a socket. */
#ifndef PITOT_FORMAT_SSE_H
#define PITOT_FORMAT_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/util/span.h"

/* Scanner state; embed it, sse_scan_init() it, feed it with sse_scan(). */
struct sse_scanner {
    int state;          /* private: line-level state */
    size_t event_bytes; /* bytes of the current (incomplete) event seen so far */
};

void sse_scan_init(struct sse_scanner *s);

/* Scans in.p[0..in.len). Stops right after the blank line that ends an event.
 * Lines may end in LF, CRLF or a lone CR (CR LF split across calls counts once).
 * An event whose blank line ends in CR is delimited at that CR, whatever
 * follows in the buffer, so boundaries never depend on how bytes were split;
 * the LF completing that CR LF becomes the first byte of the next event, which
 * sse_event_decode() skips.
 * Returns SPAN_OK when an event ended: *consumed bytes (> 0) of `in` were used,
 * the last of them being the event's terminator; the scanner is then ready for
 * the next event. Returns SPAN_AGAIN when all of `in` was consumed (*consumed ==
 * in.len) without ending an event. Never returns SPAN_ERR: any byte sequence is
 * a valid prefix of some stream. Blank lines before any field (e.g. a stray
 * leading "\n") end an empty event of their own, as in the SSE spec; the caller
 * relays it and sse_event_decode() reports it as empty. */
int sse_scan(struct sse_scanner *s, struct span in, size_t *consumed);

/* Bytes of the current event consumed so far (0 right after SPAN_OK). */
static inline size_t sse_scan_pending(const struct sse_scanner *s)
{
    return s->event_bytes;
}

/* True when an unfinished event is pending: at the end of the stream this
 * means the last event was cut short. A lone LF completing the previous
 * event's CR LF is pending but not an unfinished event. */
bool sse_scan_partial(const struct sse_scanner *s);

/* What one complete event holds. */
struct sse_event {
    struct span data;  /* the data field: borrowed from the event bytes when it
                           came in one `data:` line, else from the caller's
                           scratch buffer (lines joined by "\n") */
    struct span name;  /* the `event:` field, len 0 when absent (borrowed) */
    bool has_data;     /* at least one data line */
    bool comment_only; /* only `:` comment lines (a keep-alive ping) */
    bool done;         /* data is exactly "[DONE]" */
    bool truncated;    /* multi-line data did not fit the scratch buffer */
};

/* Decodes a complete event (the exact bytes sse_scan() delimited, terminator
 * included). A data line is `data:` followed by one optional space; comment
 * lines start with ':'; `id:`, `retry:` and unknown fields are ignored. When
 * the event has several data lines they are joined into scratch[0..cap); if
 * they do not fit, ev->truncated is set and data holds what fit. */
void sse_event_decode(struct span event, char *scratch, size_t cap, struct sse_event *ev);

#endif
