/* Fuzz target for prom and flavor: the same samples, result and error line
 * whole, in uneven pieces and byte by byte; sample spans inside the input or
 * the parser; the load of every flavor within its ranges; the /v1/models and
 * /props readers on the same bytes. */
#include <math.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/flavor.h"
#include "pitot/format/prom_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Token storage without knowing jsmntok_t: generously sized and aligned. */
static alignas(16) unsigned char tokmem[JSON_TOKENS_DEFAULT * 32];

static struct prom_parser parser; /* 17 KiB: off the stack */

/* What a run saw: a digest of every sample's content. */
struct digest {
    const char *in; /* the fuzz input, for the span checks */
    size_t size;
    uint64_t h;
    size_t n;
};

static void mix(struct digest *d, const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < len; i++)
        d->h = (d->h ^ b[i]) * 1099511628211ull; /* FNV-1a */
    d->h = (d->h ^ 0xff) * 1099511628211ull;     /* field separator */
}

static bool within(struct span s, const char *p, size_t size)
{
    return s.p >= p && s.p + s.len <= p + size;
}

/* Every span lies in the input, the line buffer or the label storage. */
static bool span_ok(struct span s, const struct digest *d)
{
    return s.len == 0 || within(s, d->in, d->size) || within(s, parser.buf, sizeof(parser.buf)) ||
           within(s, parser.vals, sizeof(parser.vals));
}

static int on_sample(void *ud, const struct prom_sample *s)
{
    struct digest *d = ud;
    size_t i;

    if (s->name.len == 0 || !span_ok(s->name, d) || s->nlabels > PROM_LABELS_MAX || s->line == 0 ||
        (s->has_timestamp && !isfinite(s->timestamp)))
        abort();
    mix(d, s->name.p, s->name.len);
    for (i = 0; i < s->nlabels; i++) {
        if (s->labels[i].name.len == 0 || !span_ok(s->labels[i].name, d) ||
            !span_ok(s->labels[i].value, d))
            abort();
        mix(d, s->labels[i].name.p, s->labels[i].name.len);
        mix(d, s->labels[i].value.p, s->labels[i].value.len);
    }
    mix(d, &s->value, sizeof(s->value));
    mix(d, &s->has_timestamp, sizeof(s->has_timestamp));
    if (s->has_timestamp)
        mix(d, &s->timestamp, sizeof(s->timestamp));
    mix(d, &s->type, sizeof(s->type));
    mix(d, &s->line, sizeof(s->line));
    d->n++;
    return 0;
}

/* Parses in pieces: piece k has 1 + p[k % size] * 37 % mod bytes (mod 0: whole).
 * Returns the final result; the digest and error are left in d and parser. */
static int run(const char *p, size_t size, unsigned mod, struct digest *d)
{
    size_t off = 0, k = 0;
    int r = SPAN_AGAIN;

    d->in = p;
    d->size = size;
    d->h = 14695981039346656037ull;
    d->n = 0;
    prom_init(&parser, on_sample, d);
    while (off < size && r != SPAN_ERR) {
        size_t piece = mod == 0 ? size - off : 1 + (unsigned char)p[k++ % size] * 37u % mod;

        if (piece > size - off)
            piece = size - off;
        r = prom_feed(&parser, span_make(p + off, piece));
        if (r != SPAN_AGAIN && r != SPAN_OK && r != SPAN_ERR)
            abort();
        off += piece;
    }
    if (r != SPAN_ERR)
        r = prom_finish(&parser);
    if ((r == SPAN_ERR) != (parser.err != NULL) || (r == SPAN_ERR && parser.err_line == 0))
        abort();
    return r;
}

static void check_flavors(struct span in)
{
    static const enum cfg_flavor all[] = {
        CFG_FLAVOR_LLAMACPP, CFG_FLAVOR_VLLM, CFG_FLAVOR_TGI, CFG_FLAVOR_SGLANG, CFG_FLAVOR_OPENAI,
    };
    enum cfg_flavor f = flv_detect(in);
    size_t i;

    if (flv_name(f)[0] == '\0' || f == CFG_FLAVOR_AUTO)
        abort();
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct flv_load l;
        char err[96];
        int rc = flv_load_parse(all[i], in, &l, err, sizeof(err));

        if (rc != 0 && rc != -1)
            abort();
        if (rc == 0 && (!(l.running >= 0) || !(l.waiting >= 0) ||
                        !(l.cache_ratio == -1 || (l.cache_ratio >= 0 && l.cache_ratio <= 1)) ||
                        (all[i] == CFG_FLAVOR_OPENAI && l.valid)))
            abort();
        if (rc != 0 && strlen(err) >= sizeof(err))
            abort();
    }
}

static void count_name(void *ud, struct span name)
{
    size_t *n = ud;

    if (name.len == 0)
        abort();
    (*n)++;
}

static void check_json(struct span in)
{
    struct json_toks toks = { tokmem, JSON_TOKENS_DEFAULT };
    size_t seen = 0;
    int n = flv_models_parse(in, &toks, count_name, &seen);

    if (n < -1 || n > FLV_MODELS_MAX || (n >= 0 && (size_t)n != seen))
        abort();
    if (flv_props_slots(in, &toks) < -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct digest whole, other;
    const char *err;
    unsigned err_line;
    bool eof;
    int r;

    if (size == 0)
        return 0;
    r = run(p, size, 0, &whole);
    err = parser.err;
    err_line = parser.err_line;
    eof = parser.eof;
    if (run(p, size, 13, &other) != r || other.h != whole.h || other.n != whole.n ||
        parser.err != err || parser.err_line != err_line || parser.eof != eof)
        abort();
    if (run(p, size, 4099, &other) != r || other.h != whole.h || other.n != whole.n ||
        parser.err != err || parser.err_line != err_line || parser.eof != eof)
        abort();
    if (run(p, size, 1, &other) != r || other.h != whole.h || other.n != whole.n ||
        parser.err != err || parser.err_line != err_line || parser.eof != eof)
        abort();
    check_flavors(span_make(p, size));
    check_json(span_make(p, size));
    return 0;
}
