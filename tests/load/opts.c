/* load opts: pitot-load's command line, checked strictly so a typo in a
 * benchmark script fails loudly (exit 2) instead of measuring something else. */
#include "load.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOAD_DEFAULT_PATH "/v1/chat/completions"

static void load_usage(FILE *f)
{
    fputs("usage: pitot-load --url http[s]://host:port[/path] [options]\n"
          "  --url URL            target (default path " LOAD_DEFAULT_PATH "); repeatable:\n"
          "                       slot i sends to the (i mod n)th, same scheme and path.\n"
          "                       The path's end picks the API (body and end of stream):\n"
          "                         .../chat/completions  messages[], max_tokens\n"
          "                         .../completions       prompt, max_tokens\n"
          "                         .../completion        llama.cpp: prompt, n_predict\n"
          "                         .../responses         OpenAI Responses: input,\n"
          "                                               max_output_tokens; ends with\n"
          "                                               response.completed or .incomplete\n"
          "                         .../messages          Anthropic Messages: messages[],\n"
          "                                               max_tokens, anthropic-version\n"
          "                                               2023-06-01; ends with message_stop\n"
          "                         anything else         as chat\n"
          "                       a chat or completions stream under /v1/ must end in [DONE]\n"
          "  --cacert FILE        https: CA certificates to verify the server with (default:\n"
          "                       the system's); the certificate must name the URL's host\n"
          "  --concurrency C      max requests in flight (default 1)\n"
          "  --requests N         total requests (default 1)\n"
          "  --duration S         run for S seconds instead of N requests\n"
          "  --rate R             open loop: R arrivals/s, exponential gaps, at most C in flight\n"
          "  --seed N             PRNG seed for arrivals and prompt filler (default 1)\n"
          "  --prompt-tokens P    prompt of 4*P bytes of ASCII filler (default 32)\n"
          "  --max-tokens M       max_tokens / n_predict / max_output_tokens (default 16)\n"
          "  --model NAME         model field (default small)\n"
          "  --no-stream          ask for a whole JSON body instead of SSE\n"
          "  --include-usage      add \"stream_options\":{\"include_usage\":true} (chat and\n"
          "                       completions; Responses and Messages streams carry usage)\n"
          "  --api-key KEY        send KEY as x-api-key (Messages, as Anthropic's SDK does)\n"
          "                       or Authorization: Bearer KEY (every other API)\n"
          "  --header 'N: v'      extra request header (repeatable; replaces a default one)\n"
          "  --timeout S          per request, connect to last byte (default 600)\n"
          "  --json FILE          one JSON line per request\n"
          "  --quiet              print only the summary's last line\n"
          "exit: 0 run completed (even with failed requests), 1 setup failure, 2 bad usage\n",
          f);
}

static int load_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "pitot-load: <message>" and a hint to stderr; returns -1. */
static int load_bad(const char *fmt, ...)
{
    va_list ap;

    fputs("pitot-load: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see pitot-load --help)\n", stderr);
    return -1;
}

/* Whole-string unsigned decimal in [lo, hi]. */
static int load_parse_u64(const char *flag, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return load_bad("%s: expected a non-negative integer, got '%s'", flag, s);
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return load_bad("%s: expected an integer, got '%s'", flag, s);
    if (v < lo || v > hi)
        return load_bad("%s: '%s' is out of range", flag, s);
    *out = v;
    return 0;
}

/* Whole-string positive finite number of at most hi. */
static int load_parse_pos(const char *flag, const char *s, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return load_bad("%s: expected a number, got '%s'", flag, s);
    if (v <= 0 || v > hi)
        return load_bad("%s: '%s' must be > 0 and not absurdly large", flag, s);
    *out = v;
    return 0;
}

/* http[s]://host[:port][/path]; IPv6 literals in brackets. Appends the server
 * to o->urls; a second --url must have the first one's scheme and path. */
static int load_parse_url(struct load_opts *o, const char *url)
{
    const char *h, *hend, *p, *colon, *path;
    struct load_url *u;
    bool https;
    size_t hlen;

    https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0)
        return load_bad("--url: expected http[s]://host:port[/path], got '%s'", url);
    if (o->nurls == LOAD_MAX_URLS)
        return load_bad("--url: more than %d given", LOAD_MAX_URLS);
    u = &o->urls[o->nurls];
    h = url + (https ? 8 : 7);
    p = strchr(h, '/');
    if (p == NULL)
        p = h + strlen(h);
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(p - h));
        if (hend == NULL)
            return load_bad("--url: unterminated IPv6 literal in '%s'", url);
        hlen = (size_t)(hend - h - 1);
        h++;
        colon = hend + 1 < p && hend[1] == ':' ? hend + 1 : NULL;
        if (hend + 1 < p && colon == NULL)
            return load_bad("--url: junk after ']' in '%s'", url);
    } else {
        colon = memchr(h, ':', (size_t)(p - h));
        hlen = (size_t)((colon ? colon : p) - h);
    }
    if (hlen == 0 || hlen >= sizeof(u->host))
        return load_bad("--url: bad host in '%s'", url);
    if (memchr(h, '@', hlen))
        return load_bad("--url: user info is not supported in '%s'", url);
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    if (colon) {
        size_t plen = (size_t)(p - colon - 1);
        char buf[8];
        uint64_t port;

        if (plen == 0 || plen >= sizeof(buf))
            return load_bad("--url: bad port in '%s'", url);
        memcpy(buf, colon + 1, plen);
        buf[plen] = '\0';
        if (load_parse_u64("--url port", buf, 1, 65535, &port) < 0)
            return -1;
        snprintf(u->port, sizeof(u->port), "%u", (unsigned)port);
    } else {
        snprintf(u->port, sizeof(u->port), https ? "443" : "80");
    }
    /* Host keeps the brackets of an IPv6 literal and the port as written. */
    h = url + (https ? 8 : 7);
    snprintf(u->host_header, sizeof(u->host_header), "%.*s", (int)(p - h), h);
    path = *p ? p : LOAD_DEFAULT_PATH;
    if (strpbrk(path, " \t\r\n"))
        return load_bad("--url: blanks in the path of '%s'", url);
    if (o->nurls > 0) {
        /* One request shape for every server; one name to verify TLS with. */
        if (https != o->https || strcmp(path, o->path) != 0)
            return load_bad("--url: '%s' differs from the first --url in scheme or path", url);
        if (https)
            return load_bad("--url: only one https:// server at a time");
    }
    o->https = https;
    o->path = path;
    o->nurls++;
    return 0;
}

/* Body dialect and [DONE] rule from the path (query string ignored). */
static void load_classify_path(struct load_opts *o)
{
    size_t n = strcspn(o->path, "?#");

#define LOAD_ENDS(lit)                                                                             \
    (n >= sizeof(lit) - 1 && memcmp(o->path + n - (sizeof(lit) - 1), lit, sizeof(lit) - 1) == 0)
    if (LOAD_ENDS("/chat/completions"))
        o->api = LOAD_API_CHAT;
    else if (LOAD_ENDS("/completions"))
        o->api = LOAD_API_COMPLETIONS;
    else if (LOAD_ENDS("/completion"))
        o->api = LOAD_API_NATIVE;
    else if (LOAD_ENDS("/responses"))
        o->api = LOAD_API_RESPONSES;
    else if (LOAD_ENDS("/messages"))
        o->api = LOAD_API_MESSAGES;
    else
        o->api = LOAD_API_CHAT;
#undef LOAD_ENDS
    /* Neither the Responses nor the Messages API sends [DONE]: their streams
     * end with a final event of their own (conn.c). */
    o->openai_route = strncmp(o->path, "/v1/", 4) == 0 && o->api != LOAD_API_RESPONSES &&
                      o->api != LOAD_API_MESSAGES;
}

bool load_header_is(const char *h, const char *name)
{
    size_t n = strlen(name);

    return strncasecmp(h, name, n) == 0 && h[n] == ':';
}

/* "Name: value": a token name, no CR/LF anywhere. */
static int load_check_header(const char *h)
{
    const char *c = strchr(h, ':');
    const char *q;

    if (c == NULL || c == h)
        return load_bad("--header: expected 'Name: value', got '%s'", h);
    for (q = h; q < c; q++)
        if (*q <= ' ' || *q >= 0x7f || strchr("()<>@,;\\\"/[]?={}", *q))
            return load_bad("--header: bad character in the name of '%s'", h);
    if (strpbrk(h, "\r\n"))
        return load_bad("--header: CR or LF in '%s'", h);
    /* Framing and the request id are ours: a duplicate would break the
     * request or the matching of client and proxy records. */
    if (load_header_is(h, "Content-Length") || load_header_is(h, "Transfer-Encoding") ||
        load_header_is(h, "X-Request-Id") || load_header_is(h, "Connection"))
        return load_bad("--header: pitot-load sets %.*s itself", (int)(c - h), h);
    return 0;
}

int load_opts_parse(struct load_opts *o, int argc, char **argv)
{
    bool have_url = false, have_requests = false;
    double d;
    uint64_t u;
    int i;

    memset(o, 0, sizeof(*o));
    o->concurrency = 1;
    o->requests = 1;
    o->prompt_tokens = 32;
    o->max_tokens = 16;
    o->stream = true;
    o->model = "small";
    o->seed = 1;
    o->timeout_us = 600u * 1000000u;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        char name[32];
        size_t nlen;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            load_usage(stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return load_bad("unexpected argument '%s'", arg);
        eq = strchr(arg, '=');
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name))
            return load_bad("unknown flag '%s'", arg);
        memcpy(name, arg, nlen);
        name[nlen] = '\0';

        /* Boolean flags take no value. */
        if (strcmp(name, "--no-stream") == 0 || strcmp(name, "--include-usage") == 0 ||
            strcmp(name, "--quiet") == 0) {
            if (eq)
                return load_bad("%s takes no value", name);
            if (strcmp(name, "--no-stream") == 0)
                o->stream = false;
            else if (strcmp(name, "--include-usage") == 0)
                o->include_usage = true;
            else
                o->quiet = true;
            continue;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return load_bad("%s needs a value", name);
        }

        if (strcmp(name, "--url") == 0) {
            if (load_parse_url(o, val) < 0)
                return -1;
            have_url = true;
        } else if (strcmp(name, "--concurrency") == 0) {
            if (load_parse_u64(name, val, 1, LOAD_MAX_CONCURRENCY, &u) < 0)
                return -1;
            o->concurrency = (unsigned)u;
        } else if (strcmp(name, "--requests") == 0) {
            if (load_parse_u64(name, val, 1, UINT64_C(1) << 40, &o->requests) < 0)
                return -1;
            have_requests = true;
        } else if (strcmp(name, "--duration") == 0) {
            if (load_parse_pos(name, val, 1e7, &d) < 0)
                return -1;
            o->use_duration = true;
            o->duration_us = (uint64_t)(d * 1e6);
        } else if (strcmp(name, "--prompt-tokens") == 0) {
            if (load_parse_u64(name, val, 0, LOAD_MAX_PROMPT_TOKENS, &u) < 0)
                return -1;
            o->prompt_tokens = (unsigned)u;
        } else if (strcmp(name, "--max-tokens") == 0) {
            if (load_parse_u64(name, val, 1, 10000000, &u) < 0)
                return -1;
            o->max_tokens = (unsigned)u;
        } else if (strcmp(name, "--cacert") == 0) {
            if (*val == '\0')
                return load_bad("--cacert needs a file name");
            o->cacert = val;
        } else if (strcmp(name, "--json") == 0) {
            if (*val == '\0')
                return load_bad("--json needs a file name");
            o->json_path = val;
        } else if (strcmp(name, "--api-key") == 0) {
            if (*val == '\0' || strpbrk(val, " \t\r\n"))
                return load_bad("--api-key needs a key without blanks");
            o->api_key = val;
        } else if (strcmp(name, "--model") == 0) {
            if (*val == '\0')
                return load_bad("--model needs a name");
            o->model = val;
        } else if (strcmp(name, "--rate") == 0) {
            if (load_parse_pos(name, val, 1e7, &o->rate_per_s) < 0)
                return -1;
            o->open_loop = true;
        } else if (strcmp(name, "--seed") == 0) {
            if (load_parse_u64(name, val, 0, UINT64_MAX, &o->seed) < 0)
                return -1;
        } else if (strcmp(name, "--header") == 0) {
            if (o->nheaders >= LOAD_MAX_HEADERS)
                return load_bad("--header: more than %d given", LOAD_MAX_HEADERS);
            if (load_check_header(val) < 0)
                return -1;
            o->headers[o->nheaders++] = val;
        } else if (strcmp(name, "--timeout") == 0) {
            if (load_parse_pos(name, val, 1e7, &d) < 0)
                return -1;
            o->timeout_us = (uint64_t)(d * 1e6);
            if (o->timeout_us == 0)
                o->timeout_us = 1;
        } else {
            return load_bad("unknown flag '%s'", name);
        }
    }
    if (!have_url)
        return load_bad("--url is required");
    if (have_requests && o->use_duration)
        return load_bad("--requests and --duration are exclusive");
    if (o->cacert && !o->https)
        return load_bad("--cacert goes with an https:// --url");
    load_classify_path(o);
    return 0;
}
