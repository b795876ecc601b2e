/* sse: event boundaries in a text/event-stream, found in any byte split, and
 * the decoding of one delimited event. No copies, no allocation, no I/O. */
#include "pitot/format/sse.h"

#include <string.h>

/* Line-level scanner states (sse_scanner.state). */
enum sse_scan_state {
    SSE_ST_LINE_START = 0, /* at the start of a line: a terminator here is a blank line */
    SSE_ST_IN_LINE,        /* inside a non-empty line */
    SSE_ST_AFTER_CR,       /* a line just ended in CR: an LF now completes that CR LF */
    SSE_ST_SWALLOW_LF,     /* the last event ended in CR: an LF now completes that CR LF */
};

void sse_scan_init(struct sse_scanner *s)
{
    s->state = SSE_ST_LINE_START;
    s->event_bytes = 0;
}

/* Index of the first CR or LF in p[0..len), or len. */
static size_t sse_find_eol(const char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i] == '\n' || p[i] == '\r')
            break;
    }
    return i;
}

int sse_scan(struct sse_scanner *s, struct span in, size_t *consumed)
{
    size_t i = 0;

    while (i < in.len) {
        char c = in.p[i];

        switch (s->state) {
        case SSE_ST_IN_LINE:
            i += sse_find_eol(in.p + i, in.len - i);
            if (i == in.len)
                continue;
            s->state = in.p[i] == '\n' ? SSE_ST_LINE_START : SSE_ST_AFTER_CR;
            i++;
            break;
        case SSE_ST_AFTER_CR:
        case SSE_ST_SWALLOW_LF:
            if (c == '\n') {
                /* The LF of a CR LF pair: part of the terminator before it,
                 * never a blank line of its own. */
                s->state = SSE_ST_LINE_START;
                i++;
                break;
            }
            /* fall through - after a CR comes the start of a line */
        case SSE_ST_LINE_START:
        default:
            if (c == '\n' || c == '\r') {
                /* A blank line ends the event right here, even on a CR whose
                 * LF is in the same buffer: the boundary must not depend on
                 * how the bytes were split. */
                i++;
                s->state = c == '\r' ? SSE_ST_SWALLOW_LF : SSE_ST_LINE_START;
                s->event_bytes = 0;
                *consumed = i;
                return SPAN_OK;
            }
            s->state = SSE_ST_IN_LINE;
            i++;
            break;
        }
    }
    s->event_bytes += in.len;
    *consumed = in.len;
    return SPAN_AGAIN;
}

bool sse_scan_partial(const struct sse_scanner *s)
{
    /* One pending byte at a line start can only be the LF swallowed after a
     * CR-ended event: any other terminator there would have ended an event. */
    return s->event_bytes > 1 || (s->event_bytes == 1 && s->state != SSE_ST_LINE_START);
}

/* Appends v to the joined data in scratch (a "\n" first unless it is the
 * first line). Returns false when it did not all fit. */
static bool sse_data_append(struct sse_event *ev, char *scratch, size_t cap, struct span v,
                            bool first)
{
    size_t room, n;

    if (ev->truncated)
        return false;
    if (!first) {
        if (ev->data.len >= cap)
            return false;
        scratch[ev->data.len++] = '\n';
    }
    room = cap - ev->data.len;
    n = v.len < room ? v.len : room;
    if (n > 0)
        memcpy(scratch + ev->data.len, v.p, n);
    ev->data.len += n;
    return n == v.len;
}

/* Handles one data line's value: borrowed for the first, joined after. */
static void sse_data_line(struct sse_event *ev, char *scratch, size_t cap, struct span v,
                          unsigned nlines)
{
    if (nlines == 0) {
        ev->data = v;
        return;
    }
    if (nlines == 1) {
        struct span first = ev->data;

        ev->data = span_make(scratch, 0);
        if (scratch == NULL || !sse_data_append(ev, scratch, cap, first, true)) {
            ev->truncated = true;
            return;
        }
    }
    if (scratch == NULL || !sse_data_append(ev, scratch, cap, v, false))
        ev->truncated = true;
}

void sse_event_decode(struct span event, char *scratch, size_t cap, struct sse_event *ev)
{
    size_t i = 0;
    unsigned ndata = 0, ncomments = 0, nfields = 0;

    memset(ev, 0, sizeof(*ev));
    /* A leading LF completes the CR that ended the previous event. */
    if (event.len > 0 && event.p[0] == '\n')
        i = 1;
    while (i < event.len) {
        const char *line = event.p + i;
        size_t len = sse_find_eol(line, event.len - i);
        size_t colon;
        struct span name, value;

        i += len;
        if (i < event.len) {
            i += (event.p[i] == '\r' && i + 1 < event.len && event.p[i + 1] == '\n') ? 2 : 1;
        }
        if (len == 0)
            break; /* the blank line that ends the event */
        if (line[0] == ':') {
            ncomments++;
            continue;
        }
        nfields++;
        for (colon = 0; colon < len && line[colon] != ':'; colon++)
            ;
        name = span_make(line, colon);
        if (colon < len) {
            size_t v = colon + 1;
            if (v < len && line[v] == ' ')
                v++;
            value = span_make(line + v, len - v);
        } else {
            value = span_make(line + len, 0);
        }
        if (span_eq(name, "data")) {
            sse_data_line(ev, scratch, cap, value, ndata);
            ndata++;
        } else if (span_eq(name, "event")) {
            ev->name = value;
        }
    }
    ev->has_data = ndata > 0;
    ev->comment_only = ncomments > 0 && nfields == 0;
    ev->done = ev->has_data && !ev->truncated && span_eq(ev->data, "[DONE]");
}
