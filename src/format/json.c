/* json: the few fields pitot reads from LLM API JSON, found on jsmn tokens by
 * walking top-level keys and a handful of documented nested paths. */
#include "pitot/format/json.h"

#include <limits.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#include <jsmn.h>

/* A parsed document: the text and its tokens (t[0] is the root object). */
struct json_doc {
    const char *js; /* borrowed */
    jsmntok_t *t;   /* borrowed: the caller's token storage */
    int n;          /* tokens in use */
};

size_t json_toks_size(size_t n)
{
    return n * sizeof(jsmntok_t);
}

const char *json_finish_label(enum json_finish f)
{
    switch (f) {
    case JSON_FINISH_NONE: return "";
    case JSON_FINISH_STOP: return "stop";
    case JSON_FINISH_LENGTH: return "length";
    case JSON_FINISH_TOOL_CALLS: return "tool_calls";
    case JSON_FINISH_CONTENT_FILTER: return "content_filter";
    case JSON_FINISH_ERROR: return "error";
    case JSON_FINISH_OTHER: break;
    }
    return "other";
}

/* Nesting the syntax check follows (deeper documents are refused). */
#define JSON_MAX_DEPTH 512

static bool json_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips a string whose opening quote is at p[*i]. */
static bool json_scan_string(const char *p, size_t len, size_t *i)
{
    size_t k;

    for ((*i)++; *i < len; (*i)++) {
        unsigned char c = (unsigned char)p[*i];

        if (c == '"') {
            (*i)++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        if (++(*i) == len)
            return false;
        if (p[*i] == 'u') {
            for (k = 0; k < 4; k++) {
                char h = ++(*i) < len ? p[*i] : 0;

                if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                    return false;
            }
        } else if (strchr("\"\\/bfnrt", p[*i]) == NULL || p[*i] == '\0') {
            return false;
        }
    }
    return false;
}

static size_t json_digits(const char *p, size_t len, size_t *i)
{
    size_t from = *i;

    while (*i < len && p[*i] >= '0' && p[*i] <= '9')
        (*i)++;
    return *i - from;
}

/* Skips a number, a literal, or Python's NaN/Infinity (which the backends'
 * JSON libraries read and write), starting at p[*i]. */
static bool json_scan_scalar(const char *p, size_t len, size_t *i)
{
    static const char *const words[] = { "true", "false", "null", "NaN", "Infinity", "-Infinity" };
    size_t k;

    for (k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
        size_t n = strlen(words[k]);

        if (len - *i >= n && memcmp(p + *i, words[k], n) == 0) {
            *i += n;
            return true;
        }
    }
    if (p[*i] == '-')
        (*i)++;
    if (*i < len && p[*i] == '0')
        (*i)++;
    else if (json_digits(p, len, i) == 0)
        return false;
    if (*i < len && p[*i] == '.') {
        (*i)++;
        if (json_digits(p, len, i) == 0)
            return false;
    }
    if (*i < len && (p[*i] == 'e' || p[*i] == 'E')) {
        (*i)++;
        if (*i < len && (p[*i] == '+' || p[*i] == '-'))
            (*i)++;
        if (json_digits(p, len, i) == 0)
            return false;
    }
    return true;
}

/* Strict syntax check: `in` holds one object, blanks around it allowed. jsmn
 * is lax ({"a" "b"}, {"a":1 2}, {a:1}, stray ':' and ',', a NUL ending the
 * text) and builds odd trees from such text; on those the walk below, the
 * include_usage rewrite and a backend could each see different members. */
static bool json_valid(const char *p, size_t len)
{
    enum { WANT_VALUE, WANT_KEY, WANT_KEY_OR_END, WANT_VALUE_OR_END, AFTER_VALUE } st;
    unsigned char in_obj[JSON_MAX_DEPTH / 8]; /* bit per level: object, else array */
    size_t i = 0, depth = 0;

    while (i < len && json_blank(p[i]))
        i++;
    if (i == len || p[i] != '{')
        return false;
    st = WANT_VALUE;
    while (i < len) {
        char c = p[i];

        if (json_blank(c)) {
            i++;
            continue;
        }
        switch (st) {
        case WANT_VALUE_OR_END:
            if (c == ']') {
                depth--;
                i++;
                st = AFTER_VALUE;
                break;
            }
            /* fall through - an array's first value */
        case WANT_VALUE:
            if (c == '{' || c == '[') {
                if (depth == JSON_MAX_DEPTH)
                    return false;
                if (c == '{')
                    in_obj[depth / 8] |= (unsigned char)(1u << (depth % 8));
                else
                    in_obj[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                depth++;
                i++;
                st = c == '{' ? WANT_KEY_OR_END : WANT_VALUE_OR_END;
            } else if (c == '"') {
                if (!json_scan_string(p, len, &i))
                    return false;
                st = AFTER_VALUE;
            } else {
                if (!json_scan_scalar(p, len, &i))
                    return false;
                st = AFTER_VALUE;
            }
            break;
        case WANT_KEY_OR_END:
            if (c == '}') {
                depth--;
                i++;
                st = AFTER_VALUE;
                break;
            }
            /* fall through - an object's first key */
        case WANT_KEY:
            if (c != '"' || !json_scan_string(p, len, &i))
                return false;
            while (i < len && json_blank(p[i]))
                i++;
            if (i == len || p[i] != ':')
                return false;
            i++;
            st = WANT_VALUE;
            break;
        case AFTER_VALUE:
        default:
            if (depth == 0)
                return false; /* something after the root */
            if (c == ',') {
                st = (in_obj[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u ? WANT_KEY : WANT_VALUE;
            } else if (c == ((in_obj[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u ? '}' : ']')) {
                depth--;
            } else {
                return false;
            }
            i++;
            break;
        }
    }
    return st == AFTER_VALUE && depth == 0;
}

/* json_doc_parse's failures: the text is no JSON object, or it is one but
 * needs more tokens than the caller's storage holds. */
#define JSON_DOC_SYNTAX (-1)
#define JSON_DOC_TOKENS (-2)

/* Tokenizes `in`, which must hold exactly one JSON object (blanks around it
 * allowed). Returns 0, JSON_DOC_SYNTAX (not an object, malformed) or
 * JSON_DOC_TOKENS (well-formed, but too many tokens). */
static int json_doc_parse(struct json_doc *d, struct span in, struct json_toks *toks)
{
    jsmn_parser p;
    unsigned cap;
    int r;

    if (in.p == NULL || in.len > (size_t)INT_MAX || !json_valid(in.p, in.len))
        return JSON_DOC_SYNTAX;
    if (toks == NULL || toks->tok == NULL || toks->cap == 0)
        return JSON_DOC_TOKENS;
    cap = toks->cap > UINT_MAX ? UINT_MAX : (unsigned)toks->cap;
    d->js = in.p;
    d->t = toks->tok;
    jsmn_init(&p);
    r = jsmn_parse(&p, in.p, in.len, d->t, cap);
    if (r == JSMN_ERROR_NOMEM)
        return JSON_DOC_TOKENS;
    if (r < 1 || d->t[0].type != JSMN_OBJECT || d->t[0].end < 0)
        return JSON_DOC_SYNTAX;
    d->n = r;
    return 0;
}

/* Index of the first token after the subtree of value token i. Descendants
 * lie inside the value's bytes, so skipping by position needs no sizes. */
static int json_skip(const struct json_doc *d, int i)
{
    int end = d->t[i].end, j = i + 1;

    while (j < d->n && d->t[j].start < end)
        j++;
    return j;
}

/* Iterates the members of object o. Start with *it = o + 1; each call gives
 * the next key token and its value token (-1 for a key without a value, which
 * lax jsmn lets through). Returns false after the last member. */
static bool json_obj_next(const struct json_doc *d, int o, int *it, int *key, int *val)
{
    int end = d->t[o].end;

    while (*it < d->n && d->t[*it].start < end) {
        int k = *it;

        if (d->t[k].parent != o) {
            (*it)++; /* stray child of a malformed member: skip it */
            continue;
        }
        *key = k;
        if (k + 1 < d->n && d->t[k + 1].parent == k) {
            *val = k + 1;
            *it = json_skip(d, k + 1);
        } else {
            *val = -1;
            *it = k + 1;
        }
        return true;
    }
    return false;
}

static struct span json_tok_span(const struct json_doc *d, int i)
{
    return span_make(d->js + d->t[i].start, (size_t)(d->t[i].end - d->t[i].start));
}

static bool json_key_is(const struct json_doc *d, int k, const char *lit)
{
    return d->t[k].type == JSMN_STRING && span_eq(json_tok_span(d, k), lit);
}

/* The value of the last member named `lit` in object o, or -1. */
static int json_obj_get(const struct json_doc *d, int o, const char *lit)
{
    int it = o + 1, k, v, found = -1;

    if (o < 0 || d->t[o].type != JSMN_OBJECT)
        return -1;
    while (json_obj_next(d, o, &it, &k, &v)) {
        if (v >= 0 && json_key_is(d, k, lit))
            found = v;
    }
    return found;
}

static bool json_is_type(const struct json_doc *d, int v, jsmntype_t type)
{
    return v >= 0 && d->t[v].type == type;
}

/* Lax jsmn takes any bare word as a primitive: compare it whole. */
static bool json_is_word(const struct json_doc *d, int v, const char *word)
{
    return json_is_type(d, v, JSMN_PRIMITIVE) && span_eq(json_tok_span(d, v), word);
}

static bool json_is_true(const struct json_doc *d, int v)
{
    return json_is_word(d, v, "true");
}

static bool json_is_null(const struct json_doc *d, int v)
{
    return json_is_word(d, v, "null");
}

/* A string token with at least one byte. */
static bool json_str_nonempty(const struct json_doc *d, int v)
{
    return json_is_type(d, v, JSMN_STRING) && d->t[v].end > d->t[v].start;
}

/* An array token with at least one element. */
static bool json_arr_nonempty(const struct json_doc *d, int v)
{
    return json_is_type(d, v, JSMN_ARRAY) && d->t[v].size > 0;
}

/* Reads a number token as an integer: "-"? digits, then an optional fraction
 * that is dropped ("16.0" is 16). Returns false for anything else. */
static bool json_i64(const struct json_doc *d, int v, int64_t *out)
{
    struct span s;
    size_t i = 0;
    bool neg = false;
    int64_t x = 0;

    if (!json_is_type(d, v, JSMN_PRIMITIVE))
        return false;
    s = json_tok_span(d, v);
    if (i < s.len && s.p[i] == '-') {
        neg = true;
        i++;
    }
    if (i == s.len || s.p[i] < '0' || s.p[i] > '9')
        return false;
    for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
        if (x > (INT64_MAX - (s.p[i] - '0')) / 10)
            return false;
        x = x * 10 + (s.p[i] - '0');
    }
    if (i < s.len && s.p[i] == '.') {
        for (i++; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++)
            ;
    }
    if (i != s.len)
        return false;
    *out = neg ? -x : x;
    return true;
}

/* A non-negative count, or -1 when absent, not a number or negative. */
static int64_t json_count(const struct json_doc *d, int v)
{
    int64_t x;

    if (!json_i64(d, v, &x) || x < 0)
        return -1;
    return x;
}

static enum json_finish json_finish_of(struct span s)
{
    static const struct {
        const char *name;
        enum json_finish f;
    } map[] = {
        { "stop", JSON_FINISH_STOP },
        { "length", JSON_FINISH_LENGTH },
        { "tool_calls", JSON_FINISH_TOOL_CALLS },
        { "function_call", JSON_FINISH_TOOL_CALLS },
        { "content_filter", JSON_FINISH_CONTENT_FILTER },
        { "error", JSON_FINISH_ERROR },
        { "eos_token", JSON_FINISH_STOP },     /* TGI */
        { "stop_sequence", JSON_FINISH_STOP }, /* TGI, Anthropic */
        /* Anthropic's stop_reason */
        { "end_turn", JSON_FINISH_STOP },
        { "max_tokens", JSON_FINISH_LENGTH },
        { "model_context_window_exceeded", JSON_FINISH_LENGTH },
        { "tool_use", JSON_FINISH_TOOL_CALLS },
        { "refusal", JSON_FINISH_CONTENT_FILTER },
    };
    size_t i;

    if (s.len == 0)
        return JSON_FINISH_NONE;
    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (span_eq(s, map[i].name))
            return map[i].f;
    }
    return JSON_FINISH_OTHER;
}

/* llama.cpp native stop_type of the final chunk. */
static enum json_finish json_stop_type_of(const struct json_doc *d, int v)
{
    struct span s;

    if (!json_is_type(d, v, JSMN_STRING))
        return JSON_FINISH_OTHER;
    s = json_tok_span(d, v);
    if (span_eq(s, "limit"))
        return JSON_FINISH_LENGTH;
    if (span_eq(s, "eos") || span_eq(s, "word"))
        return JSON_FINISH_STOP;
    return JSON_FINISH_OTHER;
}

/* Output strings of one choice, by priority for resp->text. */
struct json_choice_out {
    int refusal; /* delta/message.refusal, non-empty, or -1 */
    int content; /* delta/message.content, non-empty, or -1 */
    int text;    /* choices[].text, non-empty, or -1 */
    bool output;
};

/* Reads delta or message object m of a choice. */
static void json_msg_read(const struct json_doc *d, int m, struct json_choice_out *c)
{
    int it = m + 1, k, v;

    while (json_obj_next(d, m, &it, &k, &v)) {
        if (v < 0 || d->t[k].type != JSMN_STRING)
            continue;
        if (json_key_is(d, k, "content")) {
            c->content = json_str_nonempty(d, v) ? v : -1;
        } else if (json_key_is(d, k, "refusal")) {
            c->refusal = json_str_nonempty(d, v) ? v : -1;
        } else if (json_key_is(d, k, "reasoning_content") || json_key_is(d, k, "reasoning")) {
            if (json_str_nonempty(d, v))
                c->output = true;
        } else if (json_key_is(d, k, "tool_calls")) {
            if (json_arr_nonempty(d, v))
                c->output = true;
        }
    }
}

/* Reads the "choices" array a into out. */
static void json_choices_read(const struct json_doc *d, int a, struct json_resp *out)
{
    int e = a + 1, idx = 0;

    if (!json_is_type(d, a, JSMN_ARRAY))
        return;
    if (d->t[a].size == 0)
        out->choices_empty = true;
    for (; e < d->n && d->t[e].start < d->t[a].end; e = json_skip(d, e)) {
        struct json_choice_out c = { -1, -1, -1, false };
        int it = e + 1, k, v, pick;

        if (d->t[e].parent != a || d->t[e].type != JSMN_OBJECT)
            continue;
        while (json_obj_next(d, e, &it, &k, &v)) {
            if (v < 0)
                continue;
            if (json_key_is(d, k, "delta") || json_key_is(d, k, "message")) {
                if (json_is_type(d, v, JSMN_OBJECT))
                    json_msg_read(d, v, &c);
            } else if (json_key_is(d, k, "text")) {
                c.text = json_str_nonempty(d, v) ? v : -1;
            } else if (json_key_is(d, k, "finish_reason")) {
                if (out->finish == JSON_FINISH_NONE && json_is_type(d, v, JSMN_STRING))
                    out->finish = json_finish_of(json_tok_span(d, v));
            }
        }
        if (c.refusal >= 0)
            out->has_refusal = true;
        if (c.refusal >= 0 || c.content >= 0 || c.text >= 0 || c.output)
            out->has_output = true;
        pick = c.refusal >= 0 ? c.refusal : c.content >= 0 ? c.content : c.text;
        if (idx++ == 0 && pick >= 0)
            out->text = json_tok_span(d, pick);
    }
}

/* a + b for counts, b ignored when unknown (-1), capped rather than wrapped. */
static int64_t json_count_add(int64_t a, int64_t b)
{
    if (b <= 0)
        return a;
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* A usage object in any of the three shapes: Chat Completions
 * (prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens),
 * Responses (input_tokens counting the cached part, output_tokens,
 * input_tokens_details.cached_tokens), Messages (input_tokens not counting
 * cache_read_input_tokens nor cache_creation_input_tokens, which are prompt
 * tokens too; output_tokens). Messages is told from Responses by its cache
 * keys. */
static void json_usage_read(const struct json_doc *d, int u, struct json_resp *out)
{
    int details;

    if (!json_is_type(d, u, JSMN_OBJECT))
        return;
    out->prompt_tokens = json_count(d, json_obj_get(d, u, "prompt_tokens"));
    out->completion_tokens = json_count(d, json_obj_get(d, u, "completion_tokens"));
    if (out->prompt_tokens >= 0 || out->completion_tokens >= 0) {
        details = json_obj_get(d, u, "prompt_tokens_details");
        out->cached_tokens = json_count(d, json_obj_get(d, details, "cached_tokens"));
    } else {
        int64_t in = json_count(d, json_obj_get(d, u, "input_tokens"));
        int64_t rd = json_count(d, json_obj_get(d, u, "cache_read_input_tokens"));
        int64_t cr = json_count(d, json_obj_get(d, u, "cache_creation_input_tokens"));

        out->completion_tokens = json_count(d, json_obj_get(d, u, "output_tokens"));
        details = json_obj_get(d, u, "input_tokens_details");
        if (rd >= 0 || cr >= 0) { /* Messages */
            out->prompt_tokens = json_count_add(json_count_add(in > 0 ? in : 0, rd), cr);
            out->cached_tokens = rd;
        } else {
            out->prompt_tokens = in;
            out->cached_tokens = json_count(d, json_obj_get(d, details, "cached_tokens"));
        }
    }
    out->has_usage = out->prompt_tokens >= 0 || out->completion_tokens >= 0;
}

static void json_timings_read(const struct json_doc *d, int o, struct json_resp *out)
{
    if (!json_is_type(d, o, JSMN_OBJECT))
        return;
    out->has_timings = true;
    out->timings_prompt_n = json_count(d, json_obj_get(d, o, "prompt_n"));
    out->timings_predicted_n = json_count(d, json_obj_get(d, o, "predicted_n"));
    out->timings_cache_n = json_count(d, json_obj_get(d, o, "cache_n"));
}

/* TGI native: "token":{"text":...,"special":bool}. Returns the text token of a
 * non-special token with non-empty text, or -1. */
static int json_tgi_token(const struct json_doc *d, int o)
{
    int text = json_obj_get(d, o, "text");

    if (json_is_true(d, json_obj_get(d, o, "special")) || !json_str_nonempty(d, text))
        return -1;
    return text;
}

/* TGI native final event: "details":{"finish_reason","generated_tokens","input_length"}. */
static void json_tgi_details(const struct json_doc *d, int o, struct json_resp *out,
                             enum json_finish *finish)
{
    int64_t gen;
    int fr;

    if (!json_is_type(d, o, JSMN_OBJECT))
        return;
    fr = json_obj_get(d, o, "finish_reason");
    if (json_is_type(d, fr, JSMN_STRING))
        *finish = json_finish_of(json_tok_span(d, fr));
    gen = json_count(d, json_obj_get(d, o, "generated_tokens"));
    if (gen >= 0 && !out->has_usage) {
        out->has_usage = true;
        out->completion_tokens = gen;
        out->prompt_tokens = json_count(d, json_obj_get(d, o, "input_length"));
    }
}

static bool json_type_is(const struct json_doc *d, int o, const char *lit)
{
    int t = json_obj_get(d, o, "type");

    return json_is_type(d, t, JSMN_STRING) && span_eq(json_tok_span(d, t), lit);
}

/* Marks output: s (a string token) when non-empty; as the text to match
 * refusals on when `text` and none was found yet. */
static void json_output_str(const struct json_doc *d, int s, bool text, struct json_resp *out)
{
    if (!json_str_nonempty(d, s))
        return;
    out->has_output = true;
    if (text && out->text.len == 0)
        out->text = json_tok_span(d, s);
}

/* Elements of array a that are objects, in order: *e starts at -1. */
static bool json_arr_next_obj(const struct json_doc *d, int a, int *e)
{
    if (!json_is_type(d, a, JSMN_ARRAY))
        return false;
    for (*e = *e < 0 ? a + 1 : json_skip(d, *e); *e < d->n && d->t[*e].start < d->t[a].end;
         *e = json_skip(d, *e))
        if (d->t[*e].parent == a && d->t[*e].type == JSMN_OBJECT)
            return true;
    return false;
}

/* The Responses API's response object: a whole non-streamed body, or the
 * "response" of the response.completed, .incomplete or .failed event. Its
 * status and incomplete_details give the finish reason, a function_call
 * item makes a completion tool_calls; usage, model. With `whole`, its output
 * items are the answer's output (in a stream they came as deltas before). */
static void json_responses_obj(const struct json_doc *d, int o, bool whole, struct json_resp *out)
{
    int st, items, e = -1, m;
    bool tool = false;
    struct span s;

    if (!json_is_type(d, o, JSMN_OBJECT))
        return;
    json_usage_read(d, json_obj_get(d, o, "usage"), out);
    m = json_obj_get(d, o, "model");
    if (json_is_type(d, m, JSMN_STRING))
        out->model = json_tok_span(d, m);
    items = json_obj_get(d, o, "output");
    while (json_arr_next_obj(d, items, &e)) {
        int c = -1, content = json_obj_get(d, e, "content");

        if (json_type_is(d, e, "function_call") || json_type_is(d, e, "custom_tool_call")) {
            tool = true;
            out->has_output = out->has_output || whole;
        } else if (whole && json_type_is(d, e, "reasoning")) {
            out->has_output = true;
        }
        while (whole && json_arr_next_obj(d, content, &c)) {
            if (json_type_is(d, c, "output_text")) {
                json_output_str(d, json_obj_get(d, c, "text"), true, out);
            } else if (json_type_is(d, c, "refusal")) {
                int r = json_obj_get(d, c, "refusal");
                if (json_str_nonempty(d, r)) {
                    out->has_refusal = true;
                    out->text = span_make(NULL, 0); /* the refusal goes first */
                }
                json_output_str(d, r, true, out);
            }
        }
    }
    st = json_obj_get(d, o, "status");
    if (!json_is_type(d, st, JSMN_STRING))
        return;
    s = json_tok_span(d, st);
    if (span_eq(s, "completed")) {
        out->finish = tool ? JSON_FINISH_TOOL_CALLS : JSON_FINISH_STOP;
    } else if (span_eq(s, "incomplete")) {
        int why = json_obj_get(d, json_obj_get(d, o, "incomplete_details"), "reason");
        struct span w =
            json_is_type(d, why, JSMN_STRING) ? json_tok_span(d, why) : span_make(NULL, 0);
        out->finish = span_eq(w, "max_output_tokens") ? JSON_FINISH_LENGTH
                      : span_eq(w, "content_filter")  ? JSON_FINISH_CONTENT_FILTER
                                                      : JSON_FINISH_OTHER;
    } else if (span_eq(s, "failed")) {
        out->finish = JSON_FINISH_ERROR;
        out->is_error = true;
    } else if (span_eq(s, "cancelled")) {
        out->finish = JSON_FINISH_OTHER;
    }
}

/* The Messages API's message: a whole non-streamed body (`whole`: its
 * content blocks are output), or the "message" of message_start, whose
 * usage gives the prompt (its output_tokens is a placeholder that the
 * message_delta event replaces). */
static void json_messages_obj(const struct json_doc *d, int o, bool whole, struct json_resp *out)
{
    int sr, m, blocks, e = -1;

    if (!json_is_type(d, o, JSMN_OBJECT))
        return;
    json_usage_read(d, json_obj_get(d, o, "usage"), out);
    if (!whole) {
        out->completion_tokens = -1;
        out->has_usage = out->prompt_tokens >= 0;
    }
    m = json_obj_get(d, o, "model");
    if (json_is_type(d, m, JSMN_STRING))
        out->model = json_tok_span(d, m);
    sr = json_obj_get(d, o, "stop_reason");
    if (json_is_type(d, sr, JSMN_STRING))
        out->finish = json_finish_of(json_tok_span(d, sr));
    blocks = json_obj_get(d, o, "content");
    while (whole && json_arr_next_obj(d, blocks, &e)) {
        if (json_type_is(d, e, "text"))
            json_output_str(d, json_obj_get(d, e, "text"), true, out);
        else if (json_type_is(d, e, "thinking"))
            json_output_str(d, json_obj_get(d, e, "thinking"), false, out);
        else if (json_type_is(d, e, "tool_use") || json_type_is(d, e, "redacted_thinking") ||
                 json_type_is(d, e, "server_tool_use"))
            out->has_output = true;
    }
}

/* An event of the Responses or Messages stream, by its "type" t: output
 * deltas (each one output event: text, refusal, reasoning, tool
 * arguments), the final response, the message's start and stop reason,
 * errors; or a whole Messages body ("type":"message"). */
static void json_typed(const struct json_doc *d, int t, int delta, int resp, int msg,
                       struct json_resp *out)
{
    static const char rsp[] = "response.", dlt[] = ".delta";
    struct span ty = json_tok_span(d, t);

    if (ty.len > sizeof(rsp) - 1 && memcmp(ty.p, rsp, sizeof(rsp) - 1) == 0) {
        if (ty.len > sizeof(rsp) + sizeof(dlt) - 2 &&
            memcmp(ty.p + ty.len - (sizeof(dlt) - 1), dlt, sizeof(dlt) - 1) == 0) {
            bool refusal = span_eq(ty, "response.refusal.delta");
            json_output_str(d, delta, refusal || span_eq(ty, "response.output_text.delta"), out);
            out->has_refusal = out->has_refusal || (refusal && out->has_output);
        } else if (span_eq(ty, "response.completed") || span_eq(ty, "response.incomplete") ||
                   span_eq(ty, "response.failed")) {
            json_responses_obj(d, resp, false, out);
        }
    } else if (span_eq(ty, "content_block_delta")) {
        if (json_type_is(d, delta, "text_delta"))
            json_output_str(d, json_obj_get(d, delta, "text"), true, out);
        else if (json_type_is(d, delta, "thinking_delta"))
            json_output_str(d, json_obj_get(d, delta, "thinking"), false, out);
        else if (json_type_is(d, delta, "input_json_delta"))
            json_output_str(d, json_obj_get(d, delta, "partial_json"), false, out);
    } else if (span_eq(ty, "message_delta")) {
        int sr = json_obj_get(d, delta, "stop_reason");
        if (json_is_type(d, sr, JSMN_STRING))
            out->finish = json_finish_of(json_tok_span(d, sr));
    } else if (span_eq(ty, "message_start")) {
        json_messages_obj(d, msg, false, out);
    } else if (span_eq(ty, "message")) {
        json_messages_obj(d, 0, true, out);
    } else if (span_eq(ty, "error")) {
        out->is_error = true;
    }
}

int json_resp_parse(struct span in, struct json_toks *toks, struct json_resp *out)
{
    struct json_doc d;
    int it = 1, k, v;
    int native_content = -1, tgi_text = -1;
    int type = -1, delta = -1, resp = -1, msg = -1;
    bool native_stop = false, response_obj = false;
    int stop_type = -1;
    enum json_finish other_finish = JSON_FINISH_NONE;

    memset(out, 0, sizeof(*out));
    out->prompt_tokens = out->completion_tokens = out->cached_tokens = -1;
    out->timings_prompt_n = out->timings_predicted_n = out->timings_cache_n = -1;
    if (json_doc_parse(&d, in, toks) != 0)
        return -1;
    out->valid = true;
    while (json_obj_next(&d, 0, &it, &k, &v)) {
        if (v < 0 || d.t[k].type != JSMN_STRING)
            continue;
        switch (d.js[d.t[k].start]) { /* cheap first-byte dispatch */
        case 'c':
            if (json_key_is(&d, k, "choices"))
                json_choices_read(&d, v, out);
            else if (json_key_is(&d, k, "content") && json_str_nonempty(&d, v))
                native_content = v;
            break;
        case 'd':
            if (json_key_is(&d, k, "details"))
                json_tgi_details(&d, v, out, &other_finish);
            else if (json_key_is(&d, k, "delta"))
                delta = v;
            break;
        case 'e':
            if (json_key_is(&d, k, "error") && !json_is_null(&d, v))
                out->is_error = true;
            break;
        case 'm':
            if (json_key_is(&d, k, "model") && json_is_type(&d, v, JSMN_STRING))
                out->model = json_tok_span(&d, v);
            else if (json_key_is(&d, k, "message"))
                msg = v;
            break;
        case 'o':
            if (json_key_is(&d, k, "object") && json_is_type(&d, v, JSMN_STRING))
                response_obj = span_eq(json_tok_span(&d, v), "response");
            break;
        case 'r':
            if (json_key_is(&d, k, "response"))
                resp = v;
            break;
        case 's':
            if (json_key_is(&d, k, "stop"))
                native_stop = json_is_true(&d, v);
            else if (json_key_is(&d, k, "stop_type"))
                stop_type = v;
            break;
        case 't':
            if (json_key_is(&d, k, "timings"))
                json_timings_read(&d, v, out);
            else if (json_key_is(&d, k, "token") && json_is_type(&d, v, JSMN_OBJECT))
                tgi_text = json_tgi_token(&d, v);
            else if (json_key_is(&d, k, "type") && json_is_type(&d, v, JSMN_STRING))
                type = v;
            break;
        case 'u':
            if (json_key_is(&d, k, "usage"))
                json_usage_read(&d, v, out);
            break;
        default: break;
        }
    }
    if (type >= 0)
        json_typed(&d, type, delta, resp, msg, out);
    else if (response_obj)
        json_responses_obj(&d, 0, true, out);
    if (native_stop)
        other_finish = json_stop_type_of(&d, stop_type);
    if (out->finish == JSON_FINISH_NONE)
        out->finish = other_finish;
    if (native_content >= 0 || tgi_text >= 0)
        out->has_output = true;
    if (out->text.len == 0) {
        if (native_content >= 0)
            out->text = json_tok_span(&d, native_content);
        else if (tgi_text >= 0)
            out->text = json_tok_span(&d, tgi_text);
    }
    return 0;
}

int json_req_parse(struct span body, struct json_toks *toks, struct json_req *out)
{
    struct json_doc d;
    int it = 1, k, v, so;
    int max_tokens = -1, max_completion = -1, n_predict = -1, max_output = -1, rc;
    int64_t x;

    memset(out, 0, sizeof(*out));
    out->max_tokens = -1;
    rc = json_doc_parse(&d, body, toks);
    out->well_formed = rc != JSON_DOC_SYNTAX;
    if (rc != 0)
        return -1;
    out->valid = true;
    /* Later duplicates win, as in the backends' JSON libraries. */
    while (json_obj_next(&d, 0, &it, &k, &v)) {
        if (v < 0)
            continue;
        if (json_key_is(&d, k, "stream")) {
            out->stream = json_is_true(&d, v);
        } else if (json_key_is(&d, k, "stream_options")) {
            so = json_obj_get(&d, v, "include_usage");
            out->has_include_usage = so >= 0;
            out->include_usage = json_is_true(&d, so);
        } else if (json_key_is(&d, k, "max_tokens")) {
            max_tokens = v;
        } else if (json_key_is(&d, k, "max_completion_tokens")) {
            max_completion = v;
        } else if (json_key_is(&d, k, "n_predict")) {
            n_predict = v;
        } else if (json_key_is(&d, k, "max_output_tokens")) {
            max_output = v;
        } else if (json_key_is(&d, k, "model")) {
            out->model =
                json_is_type(&d, v, JSMN_STRING) ? json_tok_span(&d, v) : span_make(NULL, 0);
        }
    }
    /* null counts as absent: the next name in line is tried. */
    if (json_i64(&d, max_tokens, &x) || json_i64(&d, max_completion, &x) ||
        json_i64(&d, n_predict, &x) || json_i64(&d, max_output, &x))
        out->max_tokens = x < 0 ? -1 : x;
    return 0;
}

/* A bounded output buffer for json_req_add_include_usage(). */
struct json_out {
    char *p;
    size_t cap;
    size_t len;
    bool overflow;
};

static void json_out_put(struct json_out *o, const char *s, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    if (n > 0)
        memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void json_out_lit(struct json_out *o, const char *s)
{
    json_out_put(o, s, strlen(s));
}

/* Byte range [from, to) of a value token, quotes included for strings. */
static void json_value_range(const struct json_doc *d, int v, size_t *from, size_t *to)
{
    int q = d->t[v].type == JSMN_STRING ? 1 : 0;

    *from = (size_t)(d->t[v].start - q);
    *to = (size_t)(d->t[v].end + q);
}

/* Where a new member of object o goes: right after its last value, or just
 * inside the braces when it is empty, so the layout around stays as it was. */
static size_t json_member_insert_at(const struct json_doc *d, int o)
{
    int it = o + 1, k, v, last = -1;
    size_t from, to;

    while (json_obj_next(d, o, &it, &k, &v))
        last = v;
    if (last < 0)
        return (size_t)d->t[o].start + 1;
    json_value_range(d, last, &from, &to);
    return to;
}

long json_req_add_include_usage(struct span body, struct json_toks *toks, char *out, size_t cap)
{
    struct json_doc d;
    struct json_out o = { out, cap, 0, false };
    int it = 1, k, v, so = -1, iu = -1;
    size_t from = 0, to = 0;
    const char *insert = NULL;

    if (out == NULL || json_doc_parse(&d, body, toks) != 0)
        return -1;
    while (json_obj_next(&d, 0, &it, &k, &v)) {
        if (v >= 0 && json_key_is(&d, k, "stream_options"))
            so = v; /* the last one is the one the backend sees */
    }
    if (so < 0) {
        from = to = json_member_insert_at(&d, 0);
        insert = d.t[0].size > 0 ? ",\"stream_options\":{\"include_usage\":true}"
                                 : "\"stream_options\":{\"include_usage\":true}";
    } else if (d.t[so].type != JSMN_OBJECT) {
        /* "stream_options":null (or junk): replace the value. */
        json_value_range(&d, so, &from, &to);
        insert = "{\"include_usage\":true}";
    } else if ((iu = json_obj_get(&d, so, "include_usage")) < 0) {
        from = to = json_member_insert_at(&d, so);
        insert = d.t[so].size > 0 ? ",\"include_usage\":true" : "\"include_usage\":true";
    } else if (!json_is_true(&d, iu)) {
        json_value_range(&d, iu, &from, &to);
        insert = "true";
    }
    if (insert == NULL) {
        json_out_put(&o, body.p, body.len);
    } else {
        json_out_put(&o, body.p, from);
        json_out_lit(&o, insert);
        json_out_put(&o, body.p + to, body.len - to);
    }
    if (o.overflow || o.len > (size_t)LONG_MAX)
        return -1;
    return (long)o.len;
}

/* Writes code point cp as UTF-8 if it fits in out[*n..cap). */
static bool json_put_utf8(char *out, size_t cap, size_t *n, unsigned cp)
{
    unsigned char b[4];
    size_t len, i;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        len = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    if (len > cap - *n)
        return false;
    for (i = 0; i < len; i++)
        out[(*n)++] = (char)b[i];
    return true;
}

/* Parses the 4 hex digits of a \u escape at p[0..4); -1 if they are not. */
static long json_hex4(const char *p, size_t avail)
{
    long v = 0;
    size_t i;

    if (avail < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        int h;

        if (c >= '0' && c <= '9')
            h = c - '0';
        else if (c >= 'a' && c <= 'f')
            h = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            h = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of the raw UTF-8 sequence led by byte c (1 for stray bytes). */
static size_t json_utf8_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF7)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    if (c >= 0xC0)
        return 2;
    return 1;
}

size_t json_str_decode(struct span raw, char *out, size_t cap)
{
    size_t i = 0, n = 0;

    while (i < raw.len) {
        unsigned char c = (unsigned char)raw.p[i];
        size_t need;

        if (c == '\\' && i + 1 < raw.len) {
            char e = raw.p[i + 1];
            char simple = 0;
            long cp;

            switch (e) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            default: break;
            }
            if (simple != 0) {
                if (n == cap)
                    break;
                out[n++] = simple;
                i += 2;
                continue;
            }
            if (e == 'u' && (cp = json_hex4(raw.p + i + 2, raw.len - i - 2)) >= 0) {
                size_t used = 6;

                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    long lo = -1;

                    if (i + 7 < raw.len && raw.p[i + 6] == '\\' && raw.p[i + 7] == 'u')
                        lo = json_hex4(raw.p + i + 8, raw.len - i - 8);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        used = 12;
                    } else {
                        cp = 0xFFFD; /* lone high surrogate */
                    }
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    cp = 0xFFFD; /* lone low surrogate */
                }
                if (!json_put_utf8(out, cap, &n, (unsigned)cp))
                    break;
                i += used;
                continue;
            }
            /* An invalid escape: the backslash is copied as it is. */
        }
        need = json_utf8_len(c);
        if (need > raw.len - i)
            need = raw.len - i;
        if (need > cap - n)
            break;
        memcpy(out + n, raw.p + i, need);
        n += need;
        i += need;
    }
    return n;
}

/* Length of the UTF-8 sequence at p[0..n) if well-formed (1..4; RFC 3629:
 * no overlong forms, surrogates or code points past U+10FFFF), else 0 with
 * *bad set to the length of its maximal invalid subpart, which becomes one
 * U+FFFD (the Unicode "best practice" for replacement). */
static size_t json_utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t need, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (i = 1; i < need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    return need;
}

size_t json_esc_unit(const unsigned char *p, size_t n, size_t *used, char out[6])
{
    static const char hex[] = "0123456789abcdef";
    size_t bad = 0, len = json_utf8_seq(p, n, &bad);

    if (len == 0) {
        *used = bad;
        memcpy(out, "\\ufffd", 6);
        return 6;
    }
    *used = len;
    if (len > 1) {
        memcpy(out, p, len);
        return len;
    }
    if (p[0] == '"' || p[0] == '\\') {
        out[0] = '\\';
        out[1] = (char)p[0];
        return 2;
    }
    if (p[0] < 0x20 || p[0] == 0x7f) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[p[0] >> 4];
        out[5] = hex[p[0] & 15];
        return 6;
    }
    out[0] = (char)p[0];
    return 1;
}

size_t json_str_encode(struct span s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, n = 0;

    while (i < s.len) {
        char unit[6];
        size_t used, ul = json_esc_unit(p + i, s.len - i, &used, unit);

        if (ul > cap - n)
            break;
        memcpy(out + n, unit, ul);
        n += ul;
        i += used;
    }
    return n;
}

/* Follows path from value v (see json_paths_visit()); counts and reports the
 * scalars it ends on. */
static void json_path_walk(const struct json_doc *d, int v, const char *path, size_t pi,
                           json_path_cb cb, void *ud, size_t which, int *count)
{
    const char *key = path + pi;
    size_t klen = 0;
    int e;

    if (v < 0)
        return;
    if (path[pi] == '\0') {
        if (d->t[v].type == JSMN_STRING || d->t[v].type == JSMN_PRIMITIVE) {
            (*count)++;
            if (cb != NULL)
                cb(ud, which, json_tok_span(d, v), d->t[v].type == JSMN_STRING);
        }
        return;
    }
    if (path[pi] == '.')
        key++;
    while (key[klen] != '\0' && key[klen] != '.' && key[klen] != '[')
        klen++;
    if (klen > 0) {
        int it = v + 1, k, val, found = -1;

        if (d->t[v].type != JSMN_OBJECT)
            return;
        while (json_obj_next(d, v, &it, &k, &val)) { /* the last duplicate wins */
            if (val >= 0 && d->t[k].type == JSMN_STRING &&
                (size_t)(d->t[k].end - d->t[k].start) == klen &&
                memcmp(d->js + d->t[k].start, key, klen) == 0)
                found = val;
        }
        v = found;
        if (v < 0)
            return;
    }
    pi = (size_t)(key + klen - path);
    if (path[pi] != '[') {
        json_path_walk(d, v, path, pi, cb, ud, which, count);
        return;
    }
    if (path[pi + 1] != ']' || d->t[v].type != JSMN_ARRAY)
        return;
    for (e = v + 1; e < d->n && d->t[e].start < d->t[v].end; e = json_skip(d, e)) {
        if (d->t[e].parent == v)
            json_path_walk(d, e, path, pi + 2, cb, ud, which, count);
    }
}

int json_paths_visit(struct span body, struct json_toks *toks, const char *const *paths,
                     size_t npaths, json_path_cb cb, void *ud)
{
    struct json_doc d;
    int count = 0;
    size_t i;

    if (json_doc_parse(&d, body, toks) != 0)
        return -1;
    for (i = 0; i < npaths; i++)
        json_path_walk(&d, 0, paths[i], 0, cb, ud, i, &count);
    return count;
}
