/* sim_json: request bodies for every flavor: jsmn in strict mode plus the
 * literal and number checks jsmn skips, field lookup, prompt sizes. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#define JSMN_STRICT
#include <jsmn.h>

#define SIM_JSON_TOKENS_MAX (1 << 20) /* jsmn tokens per request body */

struct sim_json {
    const char *js; /* borrowed: the body */
    size_t len;
    jsmntok_t *tok; /* owned */
    int n;
};

void sim_json_free(struct sim_json *j)
{
    if (j == NULL)
        return;
    free(j->tok);
    free(j);
}

/* Index of the first token after token i's subtree. */
static int json_skip(const struct sim_json *j, int i)
{
    int k = i + 1;

    while (k < j->n && j->tok[k].start < j->tok[i].end)
        k++;
    return k;
}

int sim_json_find(const struct sim_json *j, int obj, const char *key)
{
    int k, c;
    size_t kl = strlen(key);

    if (obj < 0 || obj >= j->n || j->tok[obj].type != JSMN_OBJECT)
        return -1;
    for (k = obj + 1, c = 0; c < j->tok[obj].size && k + 1 < j->n; c++) {
        const jsmntok_t *t = &j->tok[k];
        if (t->type == JSMN_STRING && (size_t)(t->end - t->start) == kl &&
            memcmp(j->js + t->start, key, kl) == 0)
            return k + 1;
        k = json_skip(j, k + 1);
    }
    return -1;
}

enum sim_json_type sim_json_type(const struct sim_json *j, int i)
{
    if (i < 0 || i >= j->n)
        return SIM_JSON_NONE;
    switch (j->tok[i].type) {
    case JSMN_OBJECT: return SIM_JSON_OBJECT;
    case JSMN_ARRAY: return SIM_JSON_ARRAY;
    case JSMN_STRING: return SIM_JSON_STRING;
    case JSMN_PRIMITIVE: return SIM_JSON_PRIMITIVE;
    default: return SIM_JSON_NONE;
    }
}

struct span sim_json_text(const struct sim_json *j, int i)
{
    if (i < 0 || i >= j->n)
        return span_make("", 0);
    return span_make(j->js + j->tok[i].start, (size_t)(j->tok[i].end - j->tok[i].start));
}

bool sim_json_true(const struct sim_json *j, int i)
{
    return sim_json_type(j, i) == SIM_JSON_PRIMITIVE && j->js[j->tok[i].start] == 't';
}

bool sim_json_int(const struct sim_json *j, int i, int64_t *out)
{
    char buf[32];
    struct span t;
    double v;

    if (sim_json_type(j, i) != SIM_JSON_PRIMITIVE)
        return false;
    t = sim_json_text(j, i);
    if (t.len == 0 || t.len >= sizeof(buf) || !(t.p[0] == '-' || (t.p[0] >= '0' && t.p[0] <= '9')))
        return false;
    memcpy(buf, t.p, t.len);
    buf[t.len] = '\0';
    v = strtod(buf, NULL);
    if (v > 1e15)
        v = 1e15;
    *out = (int64_t)v;
    return true;
}

/* Position of the first bad byte in a primitive, or -1 when it is a valid
 * JSON literal or number. */
static long json_bad_primitive(struct span t)
{
    static const char *const lits[] = { "true", "false", "null" };
    size_t i = 0, k;

    if (t.len && (t.p[0] == 't' || t.p[0] == 'f' || t.p[0] == 'n')) {
        for (k = 0; k < 3; k++) {
            const char *l = lits[k];
            if (l[0] != t.p[0])
                continue;
            for (i = 0; i < t.len && l[i] && l[i] == t.p[i]; i++)
                ;
            return (i == t.len && l[i] == '\0') ? -1 : (long)i;
        }
    }
    if (i < t.len && t.p[i] == '-')
        i++;
    if (i < t.len && t.p[i] == '0') {
        i++;
    } else if (i < t.len && t.p[i] >= '1' && t.p[i] <= '9') {
        while (i < t.len && t.p[i] >= '0' && t.p[i] <= '9')
            i++;
    } else {
        return (long)i;
    }
    if (i < t.len && t.p[i] == '.') {
        i++;
        if (i >= t.len || t.p[i] < '0' || t.p[i] > '9')
            return (long)i;
        while (i < t.len && t.p[i] >= '0' && t.p[i] <= '9')
            i++;
    }
    if (i < t.len && (t.p[i] == 'e' || t.p[i] == 'E')) {
        i++;
        if (i < t.len && (t.p[i] == '+' || t.p[i] == '-'))
            i++;
        if (i >= t.len || t.p[i] < '0' || t.p[i] > '9')
            return (long)i;
        while (i < t.len && t.p[i] >= '0' && t.p[i] <= '9')
            i++;
    }
    return i == t.len ? -1 : (long)i;
}

/* nlohmann::json's wording, close enough for a client to recognise. */
static void json_parse_error(char *msg, size_t cap, const char *js, size_t len, size_t pos,
                             size_t tok_start, bool eof)
{
    size_t line = 1, col = 0, i, from, n;
    char last[40];

    if (pos > len)
        pos = len;
    for (i = 0; i < pos; i++) {
        col++;
        if (js[i] == '\n') {
            line++;
            col = 0;
        }
    }
    from = tok_start <= pos ? tok_start : pos;
    n = pos - from + (eof ? 0 : 1);
    if (n > sizeof(last) - 1) {
        from += n - (sizeof(last) - 1);
        n = sizeof(last) - 1;
    }
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)js[from + i];
        last[i] = (ch < 0x20 || ch == '\'' || ch >= 0x7f) ? '?' : (char)ch;
    }
    last[n] = '\0';
    snprintf(msg, cap,
             "[json.exception.parse_error.101] parse error at line %zu, column %zu: syntax error "
             "while parsing value - %s; last read: '%s'",
             line, col + (eof ? 0 : 1), eof ? "unexpected end of input" : "invalid literal", last);
}

/* jsmn stops after a bad literal ("not json" fails at 'j'); nlohmann at the
 * literal's first wrong byte. Look back for such a literal to report it. */
static void json_inval_error(char *msg, size_t cap, struct span body, size_t pos)
{
    size_t end = pos < body.len ? pos : body.len, start;
    long bad;

    while (end > 0 && strchr(" \t\r\n", body.p[end - 1]))
        end--;
    start = end;
    while (start > 0 && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.",
                               body.p[start - 1]))
        start--;
    if (start < end && (start == 0 || strchr(" \t\r\n,:[", body.p[start - 1]))) {
        bad = json_bad_primitive(span_make(body.p + start, end - start));
        if (bad >= 0) {
            json_parse_error(msg, cap, body.p, body.len, start + (size_t)bad, start, false);
            return;
        }
    }
    json_parse_error(msg, cap, body.p, body.len, pos, pos, false);
}

struct sim_json *sim_json_parse(struct span body, char *msg, size_t cap)
{
    struct sim_json *j;
    jsmn_parser p;
    int n, i;
    size_t end;

    if (body.len == 0) {
        /* nlohmann's own case for no input at all (capture
         * error-messages-invalid-json: an empty body to /v1/messages) */
        snprintf(msg, cap,
                 "[json.exception.parse_error.101] parse error at line 1, column 1: attempting to "
                 "parse an empty input; check that your input string or stream contains the "
                 "expected JSON");
        return NULL;
    }
    jsmn_init(&p);
    n = jsmn_parse(&p, body.p, body.len, NULL, 0);
    if (n == JSMN_ERROR_INVAL) {
        json_inval_error(msg, cap, body, p.pos);
        return NULL;
    }
    if (n <= 0 || n > SIM_JSON_TOKENS_MAX) {
        json_parse_error(msg, cap, body.p, body.len, body.len, body.len, true);
        return NULL;
    }
    j = calloc(1, sizeof(*j));
    if (j)
        j->tok = calloc((size_t)n, sizeof(*j->tok));
    if (j == NULL || j->tok == NULL) {
        sim_json_free(j);
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    j->js = body.p;
    j->len = body.len;
    jsmn_init(&p);
    j->n = jsmn_parse(&p, body.p, body.len, j->tok, (unsigned)n);
    if (j->n < 0) {
        bool eof = j->n == JSMN_ERROR_PART;
        json_parse_error(msg, cap, body.p, body.len, eof ? body.len : p.pos, p.pos, eof);
        sim_json_free(j);
        return NULL;
    }
    for (i = 0; i < j->n; i++) {
        long bad;
        if (j->tok[i].type != JSMN_PRIMITIVE)
            continue;
        bad = json_bad_primitive(sim_json_text(j, i));
        if (bad >= 0) {
            json_parse_error(msg, cap, body.p, body.len, (size_t)(j->tok[i].start + bad),
                             (size_t)j->tok[i].start, false);
            sim_json_free(j);
            return NULL;
        }
    }
    /* One document: nothing but blanks after the first value. */
    end = (size_t)j->tok[0].end;
    while (end < body.len && strchr(" \t\r\n", body.p[end]) && body.p[end])
        end++;
    if (end < body.len) {
        json_parse_error(msg, cap, body.p, body.len, end, end, false);
        sim_json_free(j);
        return NULL;
    }
    return j;
}

size_t sim_json_prompt_bytes(const struct sim_json *j, int v)
{
    size_t n = 0;
    int k, c;

    if (sim_json_type(j, v) == SIM_JSON_STRING) {
        struct span t = sim_json_text(j, v);
        return sim_json_decoded_len(t.p, t.len);
    }
    if (sim_json_type(j, v) != SIM_JSON_ARRAY)
        return 0;
    for (k = v + 1, c = 0; c < j->tok[v].size; c++, k = json_skip(j, k)) {
        if (sim_json_type(j, k) == SIM_JSON_STRING) {
            struct span t = sim_json_text(j, k);
            n += sim_json_decoded_len(t.p, t.len);
        } else if (sim_json_type(j, k) == SIM_JSON_PRIMITIVE) {
            n += 4;
        }
    }
    return n;
}

size_t sim_json_content_bytes(const struct sim_json *j, int v)
{
    size_t n = 0;
    int p, pc;

    if (sim_json_type(j, v) == SIM_JSON_STRING) {
        struct span t = sim_json_text(j, v);
        return sim_json_decoded_len(t.p, t.len);
    }
    if (sim_json_type(j, v) != SIM_JSON_ARRAY)
        return 0;
    for (p = v + 1, pc = 0; pc < j->tok[v].size; pc++, p = json_skip(j, p)) {
        int text = sim_json_find(j, p, "text");
        if (sim_json_type(j, text) == SIM_JSON_STRING) {
            struct span t = sim_json_text(j, text);
            n += sim_json_decoded_len(t.p, t.len);
        }
    }
    return n;
}

size_t sim_json_messages_bytes(const struct sim_json *j, int msgs)
{
    size_t n = 0;
    int k, c;

    if (sim_json_type(j, msgs) != SIM_JSON_ARRAY)
        return 0;
    for (k = msgs + 1, c = 0; c < j->tok[msgs].size; c++, k = json_skip(j, k))
        n += sim_json_content_bytes(j, sim_json_find(j, k, "content"));
    return n;
}
