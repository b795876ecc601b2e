/* prom_text: a resumable parser for the Prometheus text exposition format 0.0.4
 * and OpenMetrics text, as the inference servers write their /metrics. Input
 * is fed in any split; each sample is reported through a callback. No
 * allocation, no I/O. */
#ifndef PITOT_FORMAT_PROM_TEXT_H
#define PITOT_FORMAT_PROM_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/util/span.h"

#define PROM_LINE_MAX 8192  /* longest line, bytes before its LF (a CR counts) */
#define PROM_LABELS_MAX 32  /* labels on one sample */
#define PROM_FAMILY_MAX 256 /* longest family name whose TYPE is remembered */

/* Family types from `# TYPE name type`. */
enum prom_type {
    PROM_TYPE_NONE = 0, /* the sample is not in the family of the last TYPE line */
    PROM_TYPE_UNTYPED,  /* "untyped" (0.0.4) or "unknown" (OpenMetrics) */
    PROM_TYPE_COUNTER,
    PROM_TYPE_GAUGE,
    PROM_TYPE_HISTOGRAM,
    PROM_TYPE_GAUGEHISTOGRAM,
    PROM_TYPE_SUMMARY,
    PROM_TYPE_INFO,
    PROM_TYPE_STATESET,
};

/* One label. The name is borrowed from the line. The value is unescaped
 * (\\ \" \n become \ " LF; any other backslash pair is kept as written, as
 * Prometheus itself does): borrowed from the line when it held no backslash,
 * else decoded into the parser's own storage. */
struct prom_label {
    struct span name;
    struct span value;
};

/* One sample, valid only during the callback: every span points into the
 * current line (the caller's input or the parser's line buffer) or the
 * parser's label storage. Copy what must outlive the call. */
struct prom_sample {
    struct span name;                /* metric name, e.g. "vllm:num_requests_running" */
    const struct prom_label *labels; /* nlabels entries, in the order written */
    size_t nlabels;
    double value; /* NaN, +Inf and -Inf included */
    bool has_timestamp;
    double timestamp;    /* as written: milliseconds in 0.0.4, seconds in OpenMetrics */
    enum prom_type type; /* TYPE of the last `# TYPE` family when this
                                        sample belongs to it (the family name itself or
                                        it plus _bucket, _sum, _count, _total, _created,
                                        _gsum, _gcount or _info), else PROM_TYPE_NONE */
    unsigned line;       /* 1-based line number */
};

/* Called once per sample. Return 0 to go on, non-zero to stop parsing: the
 * parser then ignores the rest of its input and reports SPAN_OK. */
typedef int (*prom_sample_cb)(void *ud, const struct prom_sample *s);

/* Parser state: embed it, prom_init() it, feed it with prom_feed(), end the
 * body with prom_finish(). It holds no pointer into itself between calls. */
struct prom_parser {
    int state;         /* private: enum prom_state in prom.c */
    unsigned line;     /* 1-based number of the line being read */
    bool eof;          /* OpenMetrics "# EOF" seen */
    const char *err;   /* after SPAN_ERR: static reason, else NULL */
    unsigned err_line; /* after SPAN_ERR: 1-based line of the error */
    prom_sample_cb cb;
    void *ud;                                  /* borrowed: passed to cb */
    enum prom_type family_type;                /* private: TYPE of the last family */
    size_t family_len;                         /* private: 0 when none is remembered */
    char family[PROM_FAMILY_MAX];              /* private */
    size_t buf_len;                            /* private: bytes of an unfinished line */
    char buf[PROM_LINE_MAX];                   /* private: a line split across feeds */
    char vals[PROM_LINE_MAX];                  /* private: unescaped label values of one line */
    struct prom_label labels[PROM_LABELS_MAX]; /* private */
};

/* Prepares p for a new body; cb must not be NULL. */
void prom_init(struct prom_parser *p, prom_sample_cb cb, void *ud);

/* Parses in.p[0..in.len), which continues what earlier calls were given; a
 * line may be split anywhere, and every split gives the same samples and the
 * same result. Lines end in LF or CR LF. Accepted: blank lines; blanks before a
 * line and after it; `# HELP` and `# UNIT` lines (skipped) and other comments;
 * `# TYPE name type` (recorded for the samples of that family; an unknown type
 * is an error); samples `name{l="v",...} value [timestamp]` where names may
 * contain ':', labels come in any order with an optional trailing comma and
 * blanks around their tokens, values are decimal floats of at most 511
 * characters ("3", "0.87", "5.2361908224e+010", ".5"; no hex) or NaN / +Inf /
 * -Inf / Inf (any case, also "Infinity"), the timestamp is any finite such
 * number, and an OpenMetrics exemplar after " # " is ignored; `# EOF`, after
 * which only blank lines may follow. Duplicate label names are not checked.
 * Returns SPAN_AGAIN when all of in was taken and more may follow (an
 * unfinished line is kept in the line buffer), SPAN_OK once `# EOF` was seen or
 * the callback asked to stop, SPAN_ERR on malformed input: p->err and
 * p->err_line say why and where (a line longer than PROM_LINE_MAX is an error,
 * never cut). After SPAN_ERR the parser is dead and keeps returning SPAN_ERR. */
int prom_feed(struct prom_parser *p, struct span in);

/* Ends the body: parses a last line that had no LF. Returns SPAN_OK or
 * SPAN_ERR (as for prom_feed()); further feeds are errors (or ignored, with
 * SPAN_OK, after the callback asked to stop). */
int prom_finish(struct prom_parser *p);

/* prom_init() + prom_feed(body) + prom_finish(): a whole body at once.
 * Returns SPAN_OK or SPAN_ERR. */
int prom_parse(struct prom_parser *p, struct span body, prom_sample_cb cb, void *ud);

/* "counter", "gauge", ...; "" for PROM_TYPE_NONE. */
const char *prom_type_name(enum prom_type t);

/* Parses a whole span as a sample value with the grammar above. Returns true
 * and the value in *out, or false. */
bool prom_value_parse(struct span s, double *out);

/* The value of the label named `name` in s, or a span with p == NULL. */
struct span prom_sample_label(const struct prom_sample *s, const char *name);

#endif
