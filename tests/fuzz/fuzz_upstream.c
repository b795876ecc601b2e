/* Fuzz target for a backend's response as the relay takes it apart: the h1
 * response head fed as the bytes so far in growing pieces, the body in random
 * pieces, and an event stream's bytes through the SSE scanner, each complete
 * event decoded, parsed as JSON and measured. Every piece is its own
 * allocation, freed after the call that got it: nothing may keep a pointer
 * into a backend's bytes across reads. */
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/http1.h"
#include "pitot/format/json.h"
#include "pitot/measure/meter.h"
#include "pitot/measure/refusal.h"
#include "pitot/format/sse.h"

#include "pieces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_EVENT_MAX 4096 /* a small max_event_bytes: oversize events pass raw */

static alignas(16) unsigned char tokmem[JSON_TOKENS_DEFAULT * 32];

struct fz_up {
    struct sse_scanner scan;
    struct json_toks toks;
    struct meter meter;
    char stage[FZ_EVENT_MAX]; /* a partial event, copied as the relay does */
    size_t stage_len;
    bool passthrough;
    bool sse;
    uint64_t now_us;
    char scratch[FZ_EVENT_MAX];
};

static void fz_event(struct fz_up *u, struct span ev)
{
    struct sse_event se;
    struct json_resp jr;
    uint64_t gap;

    sse_event_decode(ev, u->scratch, sizeof(u->scratch), &se);
    memset(&jr, 0, sizeof(jr));
    if (se.has_data && !se.done && !se.truncated)
        json_resp_parse(se.data, &u->toks, &jr);
    u->now_us += 1000;
    meter_event(&u->meter, &jr, u->now_us, &gap);
}

/* The relay's event loop over one body piece: in place when an event lies
 * wholly in it, staged when split, raw past the largest analysed size. */
static int fz_body(void *ud, struct span b)
{
    struct fz_up *u = ud;

    if (!u->sse)
        return 0;
    while (b.len) {
        size_t n;
        int res = sse_scan(&u->scan, b, &n);
        struct span piece = span_make(b.p, n);

        if (n == 0 || n > b.len)
            abort();
        b.p += n;
        b.len -= n;
        if (u->passthrough) {
            if (res == SPAN_OK)
                u->passthrough = false;
            continue;
        }
        if (res == SPAN_OK && u->stage_len == 0) {
            fz_event(u, piece);
            continue;
        }
        if (u->stage_len + piece.len > sizeof(u->stage)) {
            u->stage_len = 0;
            u->passthrough = res != SPAN_OK;
            continue;
        }
        memcpy(u->stage + u->stage_len, piece.p, piece.len);
        u->stage_len += piece.len;
        if (res == SPAN_OK) {
            fz_event(u, span_make(u->stage, u->stage_len));
            u->stage_len = 0;
        }
    }
    return 0;
}

static void fz_response(const char *p, size_t size, bool no_body, uint32_t seed,
                        const struct refusal_phrases *ph)
{
    static struct fz_up u;
    struct h1_parser h;
    struct fz_rng rng = { seed | 1 };
    struct meter_result res;
    size_t have = 0, off, c = 0;
    enum h1_result r = H1_AGAIN;
    const struct h1_header *ct;

    memset(&u.scan, 0, sizeof(u.scan));
    u.toks.tok = tokmem;
    u.toks.cap = JSON_TOKENS_DEFAULT;
    u.stage_len = 0;
    u.passthrough = false;
    u.sse = false;
    u.now_us = 1000;
    meter_init(&u.meter, 0, 10000, 16, ph);
    h1_init(&h, H1_RESPONSE, NULL, fz_body, &u);
    if (no_body)
        h1_expect_no_body(&h);
    /* interim responses are skipped as the relay does, at most 8 */
    for (unsigned interim = 0; interim < 8; interim++) {
        have = 0;
        r = H1_AGAIN;
        while (r == H1_AGAIN && have < size) {
            char *buf;

            have += fz_piece(&rng, 5, 64);
            if (have > size)
                have = size;
            buf = fz_copy(p, have);
            r = h1_execute(&h, span_make(buf, have), &c);
            if (r == H1_HEAD) {
                ct = h1_header_find(&h.msg, "content-type");
                u.sse = ct && ct->value.len >= 17 &&
                        span_ieq(span_make(ct->value.p, 17), "text/event-stream");
            }
            free(buf);
        }
        if (r != H1_HEAD)
            return;
        if (h.msg.status >= 200)
            break;
        p += c;
        size -= c;
        h1_reset(&h);
        if (no_body)
            h1_expect_no_body(&h);
    }
    if (h.msg.status < 200)
        return;
    sse_scan_init(&u.scan);
    off = c;
    for (;;) {
        size_t len = fz_piece(&rng, 5, 64);
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
    if (r == H1_AGAIN)
        r = h1_finish(&h);
    meter_finish(&u.meter, u.now_us + 1000, &res);
    if (res.completion_tokens < -1 || res.prompt_tokens < -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct refusal_phrases *ph;
    uint32_t seed = fz_seed(data, size);

    if (ph == NULL && (ph = refusal_phrases_new(NULL, 0)) == NULL)
        abort();
    fz_response((const char *)data, size, false, seed, ph);
    fz_response((const char *)data, size, true, seed ^ 0x85ebca6bu, ph);
    return 0;
}
