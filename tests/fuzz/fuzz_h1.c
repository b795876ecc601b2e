/* Fuzz target for h1: the input parsed as a request and as a response (with
 * and without a body), up to 4 pipelined messages, fed the way a connection
 * reads: the head as the bytes so far, growing by pieces of random sizes,
 * then the body in random pieces. Every call gets its own allocation, freed
 * right after it, so a parser that kept a pointer into earlier input is a
 * heap-use-after-free under ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/http1.h"
#include "pieces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int body_count(void *ud, struct span b)
{
    size_t *total = ud;
    size_t i;
    unsigned sum = 0;

    /* touch every byte: ASan checks that the span is live */
    for (i = 0; i < b.len; i++)
        sum += (unsigned char)b.p[i];
    *total += b.len + (sum & 0);
    return 0;
}

/* Looks at what a caller looks at after H1_HEAD, while the head is live. */
static void fz_use_head(const struct h1_parser *h)
{
    unsigned i;
    size_t sum = h->msg.method.len + h->msg.url.len + h->msg.host.len;

    for (i = 0; i < h->msg.nheaders; i++) {
        const struct h1_header *f = &h->msg.headers[i];
        if (f->name.len == 0)
            abort(); /* never an empty field name */
        sum += (unsigned char)f->name.p[0] + f->value.len;
        if (f->value.len)
            sum += (unsigned char)f->value.p[f->value.len - 1];
        h1_is_hop_by_hop(&h->msg, f->name);
    }
    if (h->msg.url.len)
        sum += (unsigned char)h->msg.url.p[0];
    if (h->kind == H1_REQUEST && h->msg.url.len && h->msg.url.p[0] != '/')
        abort(); /* origin-form only reaches the caller */
    if (h->msg.chunked && h->msg.content_length >= 0)
        abort(); /* both framings never pass */
    (void)sum;
}

/* Parses up to 4 messages from p[0..size). */
static void parse_as(enum h1_kind kind, const char *p, size_t size, bool no_body, uint32_t seed)
{
    struct h1_parser h;
    struct fz_rng rng = { seed | 1 };
    size_t off = 0, total = 0;
    unsigned msgs;

    h1_init(&h, kind, NULL, body_count, &total);
    for (msgs = 0; msgs < 4 && off < size; msgs++) {
        size_t have = 0, c = 0;
        enum h1_result r = H1_AGAIN;

        if (no_body)
            h1_expect_no_body(&h);
        /* the head: the bytes so far, from the message's first byte */
        while (r == H1_AGAIN && have < size - off) {
            char *buf;

            have += fz_piece(&rng, 4, 32);
            if (have > size - off)
                have = size - off;
            buf = fz_copy(p + off, have);
            r = h1_execute(&h, span_make(buf, have), &c);
            if (r == H1_HEAD) {
                if (c == 0 || c > have)
                    abort();
                fz_use_head(&h);
            } else if (c != 0) {
                abort();
            }
            free(buf);
        }
        if (r != H1_HEAD)
            return;
        off += c;
        /* the body in pieces */
        for (;;) {
            size_t len = fz_piece(&rng, 4, 32);
            char *buf;

            if (len > size - off)
                len = size - off;
            buf = fz_copy(p + off, len);
            r = h1_execute(&h, span_make(buf, len), &c);
            free(buf);
            if (c > len)
                abort();
            off += c;
            if (r != H1_AGAIN || (off == size && !h.done_pending))
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
    uint32_t seed = fz_seed(data, size);

    parse_as(H1_REQUEST, p, size, false, seed);
    parse_as(H1_REQUEST, p, size, false, seed ^ 0x9e3779b9u);
    parse_as(H1_RESPONSE, p, size, false, seed);
    parse_as(H1_RESPONSE, p, size, true, seed ^ 0x7f4a7c15u);
    return 0;
}
