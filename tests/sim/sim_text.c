/* sim_text: deterministic word-like output tokens, seeded PRNG, and the JSON
 * output helpers (string escaping, number printing) every flavor uses. */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Mostly short words with a leading space, as a real tokenizer's pieces; a few
 * exercise JSON escaping (newline, quotes, backslash) and raw UTF-8. */
static const char *const sim_words[] = {
    " the",
    " keeper",
    " light",
    " sea",
    " night",
    " storm",
    " old",
    " house",
    " lamp",
    " waves",
    " ship",
    " rock",
    " wind",
    " salt",
    " tower",
    " glass",
    " stair",
    " harbor",
    " gull",
    " fog",
    " bell",
    " signal",
    " coast",
    " tide",
    " dark",
    " bright",
    " slow",
    " cold",
    " quiet",
    " long",
    " far",
    " near",
    " and",
    " of",
    " to",
    " in",
    " a",
    " was",
    " he",
    " she",
    " it",
    " they",
    " watched",
    " turned",
    " kept",
    " heard",
    " saw",
    " said",
    " came",
    " went",
    " every",
    " never",
    " always",
    " again",
    ",",
    ".",
    "ing",
    "ed",
    "\n",
    " \"lamp\"",
    " back\\slash",
    " caf\xc3\xa9",
    " na\xc3\xafve",
    " \xe2\x80\x94",
};
#define SIM_NWORDS (sizeof(sim_words) / sizeof(sim_words[0]))

/* "I'm sorry, but I can't help with that." in tokenizer-like pieces. */
static const char *const sim_refusal[] = {
    "I", "'m", " sorry", ",", " but", " I", " can", "'t", " help", " with", " that", ".",
};
#define SIM_NREFUSAL ((int64_t)(sizeof(sim_refusal) / sizeof(sim_refusal[0])))

uint64_t sim_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double sim_rng_unit(uint64_t *state)
{
    return (double)(sim_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

void sim_rng_alnum(uint64_t seed, char *out, size_t n)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t st = seed ^ 0x5851f42d4c957f2dULL;
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = set[sim_rng_next(&st) % (sizeof(set) - 1)];
}

void sim_rng_hex(uint64_t seed, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t st = seed ^ 0x2d358dccaa6c78a5ULL;
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = hex[sim_rng_next(&st) & 15];
}

void sim_http_date(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

struct span sim_text_token(const struct sim_conf *cf, uint64_t seed, int64_t i, int *tok_id)
{
    /* --seq: one static buffer is enough, the simulator has one thread and
     * every caller copies the token out before asking for another one (asking
     * again for the same i, as the llama.cpp native stream does, rewrites the
     * same bytes). */
    static char seq[24];
    uint64_t st;
    size_t w;

    if (cf->seq) {
        int n = snprintf(seq, sizeof(seq), " t%04lld", (long long)i);

        *tok_id = 100000 + (int)(i % 100000);
        return (struct span){ seq, n > 0 ? (size_t)n : 0 };
    }
    if (cf->refuse && i < SIM_NREFUSAL) {
        *tok_id = 306 + (int)i;
        return span_cstr(sim_refusal[i]);
    }
    /* a word tests search logs for: it must never show up there */
    if (cf->canary[0] != '\0' && i == (cf->refuse ? SIM_NREFUSAL : 0)) {
        *tok_id = 999;
        return span_cstr(cf->canary);
    }
    /* A pure function of (seed, i): a non-streamed answer is rebuilt at the
     * end instead of being kept in memory. */
    st = seed * 0x2545f4914f6cdd1dULL + (uint64_t)i;
    w = (size_t)(sim_rng_next(&st) % SIM_NWORDS);
    *tok_id = 1000 + (int)w * 37;
    return span_cstr(sim_words[w]);
}

void sim_text_full(struct evbuffer *out, const struct sim_req *r, bool *has_nl)
{
    int64_t i;
    int id;

    *has_nl = false;
    for (i = 0; i < r->n_sent; i++) {
        struct span s = sim_text_token(&r->srv->conf, r->seed, i, &id);
        evbuffer_add(out, s.p, s.len);
        if (memchr(s.p, '\n', s.len))
            *has_nl = true;
    }
}

void sim_json_str(struct evbuffer *out, const char *s, size_t len)
{
    size_t i, run = 0;

    evbuffer_add(out, "\"", 1);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char hex[8];

        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (ch < 0x20) {
                snprintf(hex, sizeof(hex), "\\u%04x", ch);
                esc = hex;
            }
        }
        if (esc == NULL) {
            run++;
            continue;
        }
        evbuffer_add(out, s + i - run, run);
        run = 0;
        evbuffer_add(out, esc, strlen(esc));
    }
    evbuffer_add(out, s + len - run, run);
    evbuffer_add(out, "\"", 1);
}

void sim_json_num(struct evbuffer *out, double v)
{
    char buf[40], digits[20];
    int prec, exp10, n = 0, point, i;
    const char *p;

    if (v != v || v - v != 0) { /* NaN, infinities: nlohmann writes null */
        evbuffer_add(out, "null", 4);
        return;
    }
    if (v == 0) {
        evbuffer_add_printf(out, "%s0.0", signbit(v) ? "-" : "");
        return;
    }
    /* The shortest digits that read back as the same double (Grisu2, as
     * nlohmann::json and so llama-server), then nlohmann's layout: plain
     * decimals for a point position in (-4, 15], ".0" on integral values,
     * else d.ddde+XX. */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    p = buf;
    if (*p == '-') {
        evbuffer_add(out, "-", 1);
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && n < (int)sizeof(digits))
            digits[n++] = *p;
    exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    point = exp10 + 1; /* digits before the decimal point */
    if (n <= point && point <= 15) {
        evbuffer_add(out, digits, (size_t)n);
        for (i = n; i < point; i++)
            evbuffer_add(out, "0", 1);
        evbuffer_add(out, ".0", 2);
    } else if (point > 0 && point <= 15) {
        evbuffer_add(out, digits, (size_t)point);
        evbuffer_add(out, ".", 1);
        evbuffer_add(out, digits + point, (size_t)(n - point));
    } else if (point > -4 && point <= 0) {
        evbuffer_add(out, "0.", 2);
        for (i = point; i < 0; i++)
            evbuffer_add(out, "0", 1);
        evbuffer_add(out, digits, (size_t)n);
    } else {
        evbuffer_add(out, digits, 1);
        if (n > 1) {
            evbuffer_add(out, ".", 1);
            evbuffer_add(out, digits + 1, (size_t)(n - 1));
        }
        evbuffer_add_printf(out, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static int sim_hex4(const char *p, size_t left, unsigned *cp)
{
    unsigned v = 0;
    size_t k;

    if (left < 4)
        return -1;
    for (k = 0; k < 4; k++) {
        char ch = p[k];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return -1;
    }
    *cp = v;
    return 0;
}

size_t sim_json_decoded_len(const char *raw, size_t len)
{
    size_t i = 0, n = 0;

    while (i < len) {
        unsigned cp, lo;

        if (raw[i] != '\\') {
            i++;
            n++;
            continue;
        }
        if (i + 1 >= len)
            break;
        if (raw[i + 1] != 'u') {
            i += 2;
            n++;
            continue;
        }
        if (sim_hex4(raw + i + 2, len - i - 2, &cp) != 0) {
            i += 2;
            n++;
            continue;
        }
        i += 6;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= len && raw[i] == '\\' && raw[i + 1] == 'u' &&
            sim_hex4(raw + i + 2, 4, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            i += 6;
            n += 4; /* a surrogate pair: one 4-byte UTF-8 sequence */
        } else if (cp < 0x80) {
            n += 1;
        } else if (cp < 0x800) {
            n += 2;
        } else {
            n += 3;
        }
    }
    return n;
}
