/* prom_text: Prometheus text 0.0.4 / OpenMetrics text, one line at a time; a line
 * split across feeds waits in a fixed buffer, all others are parsed in place. */
#include "pitot/format/prom_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parser states (prom_parser.state). */
enum prom_state {
    PROM_ST_LINES = 0, /* reading lines */
    PROM_ST_AFTER_EOF, /* "# EOF" seen: only blank lines may follow */
    PROM_ST_STOPPED,   /* the callback asked to stop: input is ignored */
    PROM_ST_FINISHED,  /* prom_finish() ran: no input may follow */
    PROM_ST_ERROR,     /* dead: err and err_line say why */
};

#define PROM_STR2(x) #x
#define PROM_STR(x) PROM_STR2(x)

/* Longest number token (Rust's `{}` writes f64 without exponent: up to ~330
 * characters for the extremes). */
#define PROM_NUMBER_MAX 511

void prom_init(struct prom_parser *p, prom_sample_cb cb, void *ud)
{
    p->state = PROM_ST_LINES;
    p->line = 1;
    p->eof = false;
    p->err = NULL;
    p->err_line = 0;
    p->cb = cb;
    p->ud = ud;
    p->family_type = PROM_TYPE_NONE;
    p->family_len = 0;
    p->buf_len = 0;
}

static int prom_fail(struct prom_parser *p, const char *why)
{
    p->state = PROM_ST_ERROR;
    p->err = why;
    p->err_line = p->line;
    return SPAN_ERR;
}

const char *prom_type_name(enum prom_type t)
{
    switch (t) {
    case PROM_TYPE_NONE: return "";
    case PROM_TYPE_UNTYPED: return "untyped";
    case PROM_TYPE_COUNTER: return "counter";
    case PROM_TYPE_GAUGE: return "gauge";
    case PROM_TYPE_HISTOGRAM: return "histogram";
    case PROM_TYPE_GAUGEHISTOGRAM: return "gaugehistogram";
    case PROM_TYPE_SUMMARY: return "summary";
    case PROM_TYPE_INFO: return "info";
    case PROM_TYPE_STATESET: return "stateset";
    }
    return "";
}

static bool prom_blank(char c)
{
    return c == ' ' || c == '\t';
}

static const char *prom_skip_blanks(const char *s, const char *end)
{
    while (s < end && prom_blank(*s))
        s++;
    return s;
}

static const char *prom_skip_word(const char *s, const char *end)
{
    while (s < end && !prom_blank(*s))
        s++;
    return s;
}

static bool prom_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool prom_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* End of a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) starting at s; s if none. */
static const char *prom_metric_name(const char *s, const char *end)
{
    const char *q = s;

    if (q < end && (prom_alpha_(*q) || *q == ':')) {
        for (q++; q < end && (prom_alpha_(*q) || prom_digit(*q) || *q == ':'); q++)
            ;
    }
    return q;
}

/* End of a label name ([a-zA-Z_][a-zA-Z0-9_]*) starting at s; s if none. */
static const char *prom_label_name(const char *s, const char *end)
{
    const char *q = s;

    if (q < end && prom_alpha_(*q)) {
        for (q++; q < end && (prom_alpha_(*q) || prom_digit(*q)); q++)
            ;
    }
    return q;
}

/* ASCII case-insensitive comparison of s with the lower-case lit. */
static bool prom_word_is(const char *s, size_t len, const char *lit)
{
    size_t i;

    if (len != strlen(lit))
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

/* Decimal float syntax: digits with an optional '.', at least one digit, then
 * an optional exponent with at least one digit. */
static bool prom_decimal_ok(const char *s, size_t len)
{
    size_t i = 0, digits = 0;

    while (i < len && prom_digit(s[i])) {
        i++;
        digits++;
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && prom_digit(s[i]); i++)
            digits++;
    }
    if (digits == 0)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i == len || !prom_digit(s[i]))
            return false;
        while (i < len && prom_digit(s[i]))
            i++;
    }
    return i == len;
}

bool prom_value_parse(struct span s, double *out)
{
    char tmp[PROM_NUMBER_MAX + 1];
    const char *r = s.p;
    size_t rlen = s.len;
    bool neg = false, sign = false;

    if (s.len == 0 || s.len > PROM_NUMBER_MAX)
        return false;
    if (r[0] == '+' || r[0] == '-') {
        neg = r[0] == '-';
        sign = true;
        r++;
        rlen--;
    }
    if (prom_word_is(r, rlen, "inf") || prom_word_is(r, rlen, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return true;
    }
    if (!sign && prom_word_is(r, rlen, "nan")) {
        *out = NAN;
        return true;
    }
    if (!prom_decimal_ok(r, rlen))
        return false;
    /* strtod needs a terminated string and would take hex and "nan(...)":
     * the syntax is checked above, the conversion (correctly rounded) is its. */
    memcpy(tmp, s.p, s.len);
    tmp[s.len] = '\0';
    *out = strtod(tmp, NULL);
    return true;
}

struct span prom_sample_label(const struct prom_sample *s, const char *name)
{
    size_t i;

    for (i = 0; i < s->nlabels; i++) {
        if (span_eq(s->labels[i].name, name))
            return s->labels[i].value;
    }
    return span_make(NULL, 0);
}

/* `# TYPE name type`: s is just after "TYPE". */
static int prom_type_line(struct prom_parser *p, const char *s, const char *end)
{
    static const struct {
        const char *word;
        enum prom_type type;
    } types[] = {
        { "counter", PROM_TYPE_COUNTER },
        { "gauge", PROM_TYPE_GAUGE },
        { "histogram", PROM_TYPE_HISTOGRAM },
        { "summary", PROM_TYPE_SUMMARY },
        { "untyped", PROM_TYPE_UNTYPED },
        { "unknown", PROM_TYPE_UNTYPED },
        { "gaugehistogram", PROM_TYPE_GAUGEHISTOGRAM },
        { "info", PROM_TYPE_INFO },
        { "stateset", PROM_TYPE_STATESET },
    };
    const char *name, *name_end, *word, *word_end;
    size_t i;

    if (s == end || !prom_blank(*s))
        return prom_fail(p, "TYPE line without a metric name");
    name = prom_skip_blanks(s, end);
    name_end = prom_metric_name(name, end);
    if (name_end == name || (name_end < end && !prom_blank(*name_end)))
        return prom_fail(p, "invalid metric name in TYPE line");
    word = prom_skip_blanks(name_end, end);
    word_end = prom_skip_word(word, end);
    if (word == word_end)
        return prom_fail(p, "TYPE line without a type");
    if (prom_skip_blanks(word_end, end) != end)
        return prom_fail(p, "text after the type in TYPE line");
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (word_end - word == (long)strlen(types[i].word) &&
            memcmp(word, types[i].word, strlen(types[i].word)) == 0)
            break;
    }
    if (i == sizeof(types) / sizeof(types[0]))
        return prom_fail(p, "unknown metric type in TYPE line");
    p->family_type = types[i].type;
    /* A longer family name is valid; only its type is not remembered. */
    p->family_len = (size_t)(name_end - name) <= PROM_FAMILY_MAX ? (size_t)(name_end - name) : 0;
    memcpy(p->family, name, p->family_len);
    return SPAN_AGAIN;
}

/* A line starting with '#': s is just after it. */
static int prom_comment_line(struct prom_parser *p, const char *s, const char *end)
{
    const char *word = prom_skip_blanks(s, end);
    const char *word_end = prom_skip_word(word, end);
    size_t n = (size_t)(word_end - word);

    if (n == 4 && memcmp(word, "TYPE", 4) == 0)
        return prom_type_line(p, word_end, end);
    if (n == 3 && memcmp(word, "EOF", 3) == 0 && word_end == end) {
        p->eof = true;
        p->state = PROM_ST_AFTER_EOF;
    }
    /* HELP, UNIT and free comments: nothing pitot needs. */
    return SPAN_AGAIN;
}

/* The family type the sample `name` belongs to (see prom_sample.type). */
static enum prom_type prom_type_of(const struct prom_parser *p, struct span name)
{
    static const char *const suffixes[] = {
        "", "_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info",
    };
    struct span rest;
    size_t i;

    if (p->family_len == 0 || name.len < p->family_len ||
        memcmp(name.p, p->family, p->family_len) != 0)
        return PROM_TYPE_NONE;
    rest = span_make(name.p + p->family_len, name.len - p->family_len);
    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        if (span_eq(rest, suffixes[i]))
            return p->family_type;
    }
    return PROM_TYPE_NONE;
}

/* A label value raw[0..n) holding backslashes, unescaped into p->vals at
 * *used. Never outgrows raw, so the values of one line always fit. */
static struct span prom_unescape(struct prom_parser *p, size_t *used, const char *raw, size_t n)
{
    char *o = p->vals + *used;
    size_t i = 0, k = 0;

    while (i < n) {
        if (raw[i] == '\\' && i + 1 < n &&
            (raw[i + 1] == '\\' || raw[i + 1] == '"' || raw[i + 1] == 'n')) {
            o[k++] = raw[i + 1] == 'n' ? '\n' : raw[i + 1];
            i += 2;
        } else {
            o[k++] = raw[i++];
        }
    }
    *used += k;
    return span_make(o, k);
}

/* `{name="value",...}`: s is just after '{'. Returns the position after
 * '}', or NULL after prom_fail(). */
static const char *prom_labels(struct prom_parser *p, const char *s, const char *end,
                               size_t *nlabels)
{
    size_t used = 0;

    *nlabels = 0;
    for (;;) {
        const char *name, *name_end, *q;
        bool escaped = false;

        s = prom_skip_blanks(s, end);
        if (s < end && *s == '}')
            return s + 1;
        name = s;
        s = name_end = prom_label_name(s, end);
        if (s == name) {
            prom_fail(p, s == end ? "unterminated label set" : "invalid label name");
            return NULL;
        }
        s = prom_skip_blanks(s, end);
        if (s == end || *s != '=') {
            prom_fail(p, "expected '=' after a label name");
            return NULL;
        }
        s = prom_skip_blanks(s + 1, end);
        if (s == end || *s != '"') {
            prom_fail(p, "label value not in double quotes");
            return NULL;
        }
        for (q = ++s; q < end && *q != '"'; q++) {
            if (*q == '\\') {
                escaped = true;
                if (++q == end)
                    break;
            }
        }
        if (q >= end) {
            prom_fail(p, "unterminated label value");
            return NULL;
        }
        if (*nlabels == PROM_LABELS_MAX) {
            prom_fail(p, "more than " PROM_STR(PROM_LABELS_MAX) " labels");
            return NULL;
        }
        p->labels[*nlabels].name = span_make(name, (size_t)(name_end - name));
        p->labels[*nlabels].value =
            escaped ? prom_unescape(p, &used, s, (size_t)(q - s)) : span_make(s, (size_t)(q - s));
        (*nlabels)++;
        s = prom_skip_blanks(q + 1, end);
        if (s < end && *s == ',') {
            s++;
            continue;
        }
        if (s < end && *s == '}')
            return s + 1;
        prom_fail(p,
                  s == end ? "unterminated label set" : "expected ',' or '}' after a label value");
        return NULL;
    }
}

/* `name[{labels}] value [timestamp] [# exemplar]`, blanks trimmed. */
static int prom_sample_line(struct prom_parser *p, const char *s, const char *end)
{
    struct prom_sample smp;
    const char *name = s, *v, *v_end;

    memset(&smp, 0, sizeof(smp));
    s = prom_metric_name(s, end);
    if (s == name || (s < end && !prom_blank(*s) && *s != '{'))
        return prom_fail(p, "invalid metric name");
    smp.name = span_make(name, (size_t)(s - name));
    s = prom_skip_blanks(s, end);
    if (s < end && *s == '{') {
        s = prom_labels(p, s + 1, end, &smp.nlabels);
        if (s == NULL)
            return SPAN_ERR;
        smp.labels = p->labels;
    }
    v = prom_skip_blanks(s, end);
    v_end = prom_skip_word(v, end);
    if (v == v_end)
        return prom_fail(p, "sample without a value");
    if (!prom_value_parse(span_make(v, (size_t)(v_end - v)), &smp.value))
        return prom_fail(p, "invalid sample value");
    s = prom_skip_blanks(v_end, end);
    if (s < end && *s != '#') {
        v = s;
        v_end = prom_skip_word(v, end);
        if (!prom_value_parse(span_make(v, (size_t)(v_end - v)), &smp.timestamp) ||
            !isfinite(smp.timestamp))
            return prom_fail(p, "invalid timestamp");
        smp.has_timestamp = true;
        s = prom_skip_blanks(v_end, end);
    }
    /* An OpenMetrics exemplar (" # {labels} value") is not needed: skipped. */
    if (s < end && *s != '#')
        return prom_fail(p, "text after the timestamp");
    smp.type = prom_type_of(p, smp.name);
    smp.line = p->line;
    if (p->cb(p->ud, &smp) != 0)
        p->state = PROM_ST_STOPPED;
    return SPAN_AGAIN;
}

/* One complete line without its LF. */
static int prom_line(struct prom_parser *p, const char *s, size_t len)
{
    const char *end = s + len;

    while (end > s && (prom_blank(end[-1]) || end[-1] == '\r'))
        end--;
    s = prom_skip_blanks(s, end);
    if (s == end)
        return SPAN_AGAIN;
    if (*s == '#')
        return prom_comment_line(p, s + 1, end);
    return prom_sample_line(p, s, end);
}

static int prom_result(const struct prom_parser *p)
{
    switch (p->state) {
    case PROM_ST_LINES: return SPAN_AGAIN;
    case PROM_ST_ERROR: return SPAN_ERR;
    default: return SPAN_OK;
    }
}

#define PROM_TOO_LONG "line longer than " PROM_STR(PROM_LINE_MAX) " bytes"

int prom_feed(struct prom_parser *p, struct span in)
{
    size_t i = 0;

    while (i < in.len) {
        const char *nl;
        size_t len;

        switch (p->state) {
        case PROM_ST_LINES: break;
        case PROM_ST_AFTER_EOF:
            for (; i < in.len; i++) {
                if (in.p[i] == '\n')
                    p->line++;
                else if (!prom_blank(in.p[i]) && in.p[i] != '\r')
                    return prom_fail(p, "data after # EOF");
            }
            return SPAN_OK;
        case PROM_ST_FINISHED: return prom_fail(p, "data after the end of the body");
        default: return prom_result(p);
        }
        nl = memchr(in.p + i, '\n', in.len - i);
        if (nl == NULL) {
            len = in.len - i;
            if (len > PROM_LINE_MAX - p->buf_len)
                return prom_fail(p, PROM_TOO_LONG);
            memcpy(p->buf + p->buf_len, in.p + i, len);
            p->buf_len += len;
            return SPAN_AGAIN;
        }
        len = (size_t)(nl - (in.p + i));
        if (len > PROM_LINE_MAX - p->buf_len)
            return prom_fail(p, PROM_TOO_LONG);
        if (p->buf_len > 0) {
            memcpy(p->buf + p->buf_len, in.p + i, len);
            len += p->buf_len;
            p->buf_len = 0;
            if (prom_line(p, p->buf, len) == SPAN_ERR)
                return SPAN_ERR;
        } else if (prom_line(p, in.p + i, len) == SPAN_ERR) {
            return SPAN_ERR;
        }
        i = (size_t)(nl - in.p) + 1;
        p->line++;
    }
    return prom_result(p);
}

int prom_finish(struct prom_parser *p)
{
    if (p->state == PROM_ST_LINES && p->buf_len > 0) {
        size_t len = p->buf_len;

        p->buf_len = 0;
        if (prom_line(p, p->buf, len) == SPAN_ERR)
            return SPAN_ERR;
    }
    if (p->state == PROM_ST_LINES || p->state == PROM_ST_AFTER_EOF)
        p->state = PROM_ST_FINISHED;
    return p->state == PROM_ST_ERROR ? SPAN_ERR : SPAN_OK;
}

int prom_parse(struct prom_parser *p, struct span body, prom_sample_cb cb, void *ud)
{
    prom_init(p, cb, ud);
    if (prom_feed(p, body) == SPAN_ERR)
        return SPAN_ERR;
    return prom_finish(p);
}
