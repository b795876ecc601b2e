/* Fuzz target for sse: the input scanned whole and in pieces sized by its own
 * bytes must give the same event boundaries; every event then decodes the
 * same with a roomy and a tiny scratch buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Event ends from scanning data in pieces; piece k has 1 + data[k % size] % mod
 * bytes (mod 0: the whole input at once). Returns the number of events. */
static size_t scan_cuts(const char *p, size_t size, unsigned mod, size_t *ends,
                        struct sse_scanner *s)
{
    size_t off = 0, n = 0, k = 0;

    sse_scan_init(s);
    while (off < size) {
        size_t piece = mod == 0 ? size - off : 1 + (unsigned char)p[k++ % size] % mod;
        size_t to = piece < size - off ? off + piece : size;

        while (off < to) {
            size_t c = 0;
            int r = sse_scan(s, span_make(p + off, to - off), &c);

            if (c > to - off || (r == SPAN_OK && c == 0) || (r == SPAN_AGAIN && c != to - off))
                abort();
            off += c;
            if (r == SPAN_OK) {
                ends[n++] = off;
                if (sse_scan_pending(s) != 0)
                    abort();
            } else if (r != SPAN_AGAIN) {
                abort();
            }
        }
    }
    return n;
}

static void check_event(struct span ev, char *big, size_t bigcap)
{
    struct sse_event a, b;
    char tiny[8];

    sse_event_decode(ev, big, bigcap, &a);
    sse_event_decode(ev, tiny, sizeof(tiny), &b);
    /* Joined data never outgrows the event's own bytes. */
    if (a.truncated || a.data.len > ev.len)
        abort();
    if (a.has_data != b.has_data || a.comment_only != b.comment_only || a.name.len != b.name.len ||
        (a.comment_only && a.has_data))
        abort();
    if (a.done != (a.has_data && span_eq(a.data, "[DONE]")))
        abort();
    if (!b.truncated) {
        if (b.data.len != a.data.len || (a.data.len > 0 && memcmp(a.data.p, b.data.p, a.data.len)))
            abort();
    } else if (b.data.len != sizeof(tiny) || memcmp(a.data.p, b.data.p, sizeof(tiny)) != 0) {
        abort();
    }
    /* Borrowed spans lie in the event; copies in the scratch buffer. */
    if (a.data.len > 0 && !((a.data.p >= ev.p && a.data.p + a.data.len <= ev.p + ev.len) ||
                            (a.data.p >= big && a.data.p + a.data.len <= big + bigcap)))
        abort();
    if (a.name.len > 0 && !(a.name.p >= ev.p && a.name.p + a.name.len <= ev.p + ev.len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct sse_scanner whole, split, bytes;
    size_t *ends, *ends2, n, n2, i, start;
    char *big;

    if (size == 0)
        return 0;
    ends = malloc(size * sizeof(*ends));
    ends2 = malloc(size * sizeof(*ends2));
    big = malloc(size);
    if (ends == NULL || ends2 == NULL || big == NULL)
        abort();
    n = scan_cuts(p, size, 0, ends, &whole);
    n2 = scan_cuts(p, size, 13, ends2, &split);
    if (n2 != n || memcmp(ends, ends2, n * sizeof(*ends)) != 0)
        abort();
    n2 = scan_cuts(p, size, 1, ends2, &bytes);
    if (n2 != n || memcmp(ends, ends2, n * sizeof(*ends)) != 0)
        abort();
    if (whole.state != split.state || whole.event_bytes != split.event_bytes ||
        whole.state != bytes.state || whole.event_bytes != bytes.event_bytes ||
        sse_scan_partial(&whole) != sse_scan_partial(&split))
        abort();
    for (i = 0, start = 0; i < n; start = ends[i++])
        check_event(span_make(p + start, ends[i] - start), big, size);
    /* The unfinished tail decodes too (a stream cut short). */
    if (start < size)
        check_event(span_make(p + start, size - start), big, size);
    free(ends);
    free(ends2);
    free(big);
    return 0;
}
