/* Fuzz target for json: response and request parsing, the include_usage
 * rewrite (whose output must parse and ask for usage) and string decoding. */
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Token storage without knowing jsmntok_t: generously sized and aligned. */
static alignas(16) unsigned char tokmem[JSON_TOKENS_DEFAULT * 32];

static bool inside(struct span s, const char *p, size_t size)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + size);
}

static void check_resp(struct span in, struct json_toks *toks)
{
    struct json_resp r;
    int rc = json_resp_parse(in, toks, &r);

    if ((rc == 0) != r.valid || (rc != 0 && rc != -1))
        abort();
    if (!inside(r.text, in.p, in.len) || !inside(r.model, in.p, in.len))
        abort();
    if (r.text.len > 0 && !r.has_output)
        abort();
    if (r.has_refusal && !r.has_output)
        abort();
    if ((unsigned)r.finish > JSON_FINISH_OTHER || json_finish_label(r.finish) == NULL)
        abort();
    if (r.prompt_tokens < -1 || r.completion_tokens < -1 || r.cached_tokens < -1 ||
        r.timings_prompt_n < -1 || r.timings_predicted_n < -1 || r.timings_cache_n < -1)
        abort();
}

static void check_req(struct span in, struct json_toks *toks, struct json_toks *full)
{
    struct json_req q, q2;
    char *out;
    size_t cap = in.len + 64;
    long n;
    int rc = json_req_parse(in, toks, &q);

    if ((rc == 0) != q.valid || !inside(q.model, in.p, in.len) || q.max_tokens < -1)
        abort();
    if (q.include_usage && !q.has_include_usage)
        abort();
    out = malloc(cap);
    if (out == NULL)
        abort();
    n = json_req_add_include_usage(in, toks, out, cap);
    if (n >= 0) {
        /* Whatever was accepted comes back as a request asking for usage,
         * with nothing else that pitot reads changed. */
        if (rc != 0 || (size_t)n > cap)
            abort();
        if (json_req_parse(span_make(out, (size_t)n), full, &q2) != 0)
            abort();
        if (!q2.include_usage || q2.stream != q.stream || q2.max_tokens != q.max_tokens ||
            q2.model.len != q.model.len)
            abort();
        if (q.include_usage && ((size_t)n != in.len || memcmp(out, in.p, in.len) != 0))
            abort();
        /* Exactly enough room also works. */
        if (json_req_add_include_usage(in, toks, out, (size_t)n) != n)
            abort();
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_toks full = { tokmem, sizeof(tokmem) / json_toks_size(1) };
    struct json_toks few = { tokmem, 8 };
    struct span in = span_make((const char *)data, size);
    char out[64];
    size_t n, cap;

    check_resp(in, &full);
    check_resp(in, &few);
    check_req(in, &full, &full);
    check_req(in, &few, &full);
    /* The whole input as a string's raw bytes, into a buffer cut by its size. */
    cap = size % (sizeof(out) + 1);
    n = json_str_decode(in, out, cap);
    if (n > cap)
        abort();
    return 0;
}
