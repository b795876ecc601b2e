/* Fuzz target for h1: the input parsed as a request and as a response, head
 * by h1_head_len() then the body in pieces, and pipelined messages after it. */
#include <stdint.h>
#include <stdlib.h>

#include "pitot/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int body_count(void *ud, struct span b)
{
    size_t *total = ud;

    *total += b.len;
    return 0;
}

/* Parses up to 4 messages from p[0..size). */
static void parse_as(enum h1_kind kind, const char *p, size_t size, bool no_body)
{
    struct h1_parser h;
    size_t off = 0, total = 0;
    unsigned msgs;

    h1_init(&h, kind, NULL, body_count, &total);
    for (msgs = 0; msgs < 4 && off < size; msgs++) {
        struct span in = span_make(p + off, size - off);
        size_t hl = h1_head_len(in), c = 0, piece = 1;
        enum h1_result r;
        unsigned i;

        if (hl == 0 || hl > in.len)
            return;
        if (no_body)
            h1_expect_no_body(&h);
        r = h1_execute(&h, in, &c);
        if (r == H1_ERROR)
            return;
        if (r != H1_HEAD || c != hl)
            abort();
        for (i = 0; i < h.msg.nheaders; i++) {
            const struct h1_header *f = h1_header_find(&h.msg, "content-length");

            h1_is_hop_by_hop(&h.msg, h.msg.headers[i].name);
            if (f != NULL && !span_ieq(f->name, "content-length"))
                abort();
        }
        h1_status_has_body(h.msg.status);
        off += c;
        /* The body in pieces of 1, 2, 3, ... bytes. */
        for (;;) {
            size_t len = size - off < piece ? size - off : piece++;

            r = h1_execute(&h, span_make(p + off, len), &c);
            if (c > len)
                abort();
            off += c;
            if (r != H1_AGAIN || off == size)
                break;
        }
        if (r == H1_AGAIN && kind == H1_RESPONSE)
            r = h1_finish(&h);
        if (r != H1_DONE)
            return;
        h1_reset(&h);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;

    parse_as(H1_REQUEST, p, size, false);
    parse_as(H1_RESPONSE, p, size, false);
    parse_as(H1_RESPONSE, p, size, true);
    return 0;
}
