/* load req: the seeded PRNG and the request bytes: an OpenAI chat/completions,
 * Responses, Anthropic Messages or llama.cpp /completion body whose prompt is
 * exactly 4*P bytes of filler. */
#include "load.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t load_rand_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

double load_rand_unit(uint64_t *state)
{
    return (double)(load_rand_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* A growable byte string; every append reports allocation failure. */
struct load_str {
    char *p; /* owned */
    size_t len, cap;
};

static int load_str_reserve(struct load_str *s, size_t more)
{
    size_t cap;
    char *np;

    if (s->len + more + 1 <= s->cap)
        return 0;
    cap = s->cap ? s->cap : 1024;
    while (cap < s->len + more + 1)
        cap *= 2;
    np = realloc(s->p, cap);
    if (np == NULL)
        return -1;
    s->p = np;
    s->cap = cap;
    return 0;
}

static int load_str_add(struct load_str *s, const char *p, size_t n)
{
    if (load_str_reserve(s, n) < 0)
        return -1;
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
    return 0;
}

static int load_str_printf(struct load_str *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int load_str_printf(struct load_str *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || load_str_reserve(s, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
    return 0;
}

/* A JSON string literal (quotes included) for user text such as --model. */
static int load_str_json(struct load_str *s, const char *v)
{
    static const char hex[] = "0123456789abcdef";

    if (load_str_add(s, "\"", 1) < 0)
        return -1;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
        int r;

        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            r = load_str_add(s, esc, 2);
        } else if (c < 0x20) {
            r = load_str_add(s, esc, 6);
        } else {
            r = load_str_add(s, (const char *)&c, 1);
        }
        if (r < 0)
            return -1;
    }
    return load_str_add(s, "\"", 1);
}

/* Exactly `bytes` of lowercase words and single spaces: JSON-safe without
 * escaping, so the content length the server sees is the filler length. Each
 * request gets its own words (seeded by seed and n), so a server's prefix cache
 * does not turn every request after the first into a cache hit. */
static int load_str_filler(struct load_str *s, uint64_t seed, uint64_t n, size_t bytes)
{
    static const char *const words[] = {
        "the",    "quick",  "brown",  "fox",     "jumps",  "over",   "lazy",   "dog",
        "river",  "stone",  "light",  "paper",   "window", "garden", "silver", "engine",
        "market", "orange", "planet", "signal",  "bridge", "forest", "number", "cloud",
        "metric", "stream", "token",  "latency", "server", "proxy",
    };
    uint64_t st = seed ^ (n * UINT64_C(0xd1b54a32d192ed03));
    size_t end = s->len + bytes;

    if (load_str_reserve(s, bytes) < 0)
        return -1;
    while (s->len < end) {
        const char *w = words[load_rand_next(&st) % (sizeof(words) / sizeof(words[0]))];
        size_t wl = strlen(w), room = end - s->len;

        if (wl > room)
            wl = room;
        memcpy(s->p + s->len, w, wl);
        s->len += wl;
        if (s->len < end)
            s->p[s->len++] = ' ';
    }
    s->p[s->len] = '\0';
    return 0;
}

/* The Responses and Messages bodies, in the field order of those APIs' docs:
 * a plain-string input / one user message, no stream_options (these streams
 * carry usage unasked). */
static int load_body_build_typed(const struct load_opts *o, uint64_t n, struct load_str *b)
{
    const char *stream = o->stream ? "true" : "false";
    size_t bytes = (size_t)o->prompt_tokens * 4;
    int r = 0;

    if (o->api == LOAD_API_RESPONSES) {
        r |= load_str_printf(b, ",\"input\":\"");
        r |= load_str_filler(b, o->seed, n, bytes);
        r |=
            load_str_printf(b, "\",\"stream\":%s,\"max_output_tokens\":%u}", stream, o->max_tokens);
    } else {
        r |= load_str_printf(b,
                             ",\"max_tokens\":%u,\"stream\":%s,"
                             "\"messages\":[{\"role\":\"user\",\"content\":\"",
                             o->max_tokens, stream);
        r |= load_str_filler(b, o->seed, n, bytes);
        r |= load_str_add(b, "\"}]}", 4);
    }
    return r ? -1 : 0;
}

static int load_body_build(const struct load_opts *o, uint64_t n, struct load_str *b)
{
    int r = 0;

    r |= load_str_add(b, "{\"model\":", 9);
    r |= load_str_json(b, o->model);
    if (o->api == LOAD_API_RESPONSES || o->api == LOAD_API_MESSAGES)
        return r || load_body_build_typed(o, n, b) < 0 ? -1 : 0;
    if (o->api == LOAD_API_CHAT)
        r |= load_str_printf(b, ",\"messages\":[{\"role\":\"user\",\"content\":\"");
    else
        r |= load_str_printf(b, ",\"prompt\":\"");
    r |= load_str_filler(b, o->seed, n, (size_t)o->prompt_tokens * 4);
    if (o->api == LOAD_API_CHAT)
        r |= load_str_add(b, "\"}]", 3);
    else
        r |= load_str_add(b, "\"", 1);
    r |= load_str_printf(b, ",\"stream\":%s", o->stream ? "true" : "false");
    /* OpenAI rejects stream_options without stream, so --no-stream omits it. */
    if (o->include_usage && o->stream)
        r |= load_str_printf(b, ",\"stream_options\":{\"include_usage\":true}");
    r |= load_str_printf(b, ",\"%s\":%u}", o->api == LOAD_API_NATIVE ? "n_predict" : "max_tokens",
                         o->max_tokens);
    return r ? -1 : 0;
}

/* The user's --header replaces our default of the same name. */
static bool load_user_header(const struct load_opts *o, const char *name)
{
    unsigned i;

    for (i = 0; i < o->nheaders; i++)
        if (load_header_is(o->headers[i], name))
            return true;
    return false;
}

int load_req_build(const struct load_opts *o, const struct load_url *u, uint64_t n, char **out,
                   size_t *out_len)
{
    struct load_str body = { NULL, 0, 0 }, req = { NULL, 0, 0 };
    unsigned i;
    int r = 0;

    if (load_body_build(o, n, &body) < 0) {
        free(body.p);
        return -1;
    }
    r |= load_str_printf(&req, "POST %s HTTP/1.1\r\n", o->path);
    if (!load_user_header(o, "Host"))
        r |= load_str_printf(&req, "Host: %s\r\n", u->host_header);
    if (!load_user_header(o, "User-Agent"))
        r |= load_str_printf(&req, "User-Agent: pitot-load\r\n");
    if (!load_user_header(o, "Content-Type"))
        r |= load_str_printf(&req, "Content-Type: application/json\r\n");
    if (!load_user_header(o, "Accept"))
        r |= load_str_printf(&req, "Accept: %s\r\n",
                             o->stream ? "text/event-stream" : "application/json");
    /* Anthropic's SDK sends the version and the key as x-api-key; OpenAI's
     * SDKs the key as a Bearer token. */
    if (o->api == LOAD_API_MESSAGES && !load_user_header(o, "anthropic-version"))
        r |= load_str_printf(&req, "anthropic-version: 2023-06-01\r\n");
    if (o->api_key && o->api == LOAD_API_MESSAGES && !load_user_header(o, "x-api-key"))
        r |= load_str_printf(&req, "x-api-key: %s\r\n", o->api_key);
    else if (o->api_key && o->api != LOAD_API_MESSAGES && !load_user_header(o, "Authorization"))
        r |= load_str_printf(&req, "Authorization: Bearer %s\r\n", o->api_key);
    r |= load_str_printf(&req, "X-Request-Id: load-%ld-%llu\r\nContent-Length: %zu\r\n",
                         (long)getpid(), (unsigned long long)n, body.len);
    for (i = 0; i < o->nheaders; i++)
        r |= load_str_printf(&req, "%s\r\n", o->headers[i]);
    r |= load_str_add(&req, "\r\n", 2);
    r |= load_str_add(&req, body.p, body.len);
    free(body.p);
    if (r) {
        free(req.p);
        return -1;
    }
    *out = req.p;
    *out_len = req.len;
    return 0;
}
