/* json: field extraction from LLM API JSON (one SSE event's data, a whole
 * non-streaming body, or a request body) on top of jsmn. Pure functions over a
 * span; token storage comes from the caller so nothing is allocated. */
#ifndef PITOT_FORMAT_JSON_H
#define PITOT_FORMAT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/util/span.h"

/* Tokens a caller should provide: enough for llama.cpp's final native chunk. */
#define JSON_TOKENS_DEFAULT 1024

struct json_tok; /* = jsmntok_t; opaque so that callers need not include jsmn */

/* Caller-provided token storage. */
struct json_toks {
    void *tok; /* borrowed: array of `cap` jsmntok_t; see json_toks_size() */
    size_t cap;
};

/* Bytes needed for `n` tokens (to size a static or once-allocated array). */
size_t json_toks_size(size_t n);

enum json_finish {
    JSON_FINISH_NONE = 0,
    JSON_FINISH_STOP,       /* "stop", TGI "eos_token"/"stop_sequence", native stop_type eos/word */
    JSON_FINISH_LENGTH,     /* "length", native stop_type "limit" */
    JSON_FINISH_TOOL_CALLS, /* "tool_calls" / "function_call" */
    JSON_FINISH_CONTENT_FILTER, /* "content_filter" */
    JSON_FINISH_ERROR,          /* "error" */
    JSON_FINISH_OTHER,          /* any other string */
};

/* Label for a finish reason ("stop", "length", ..., "other"); "" for NONE. */
const char *json_finish_label(enum json_finish f);

/* What pitot needs from one response object (stream chunk or whole body).
 * Formats: OpenAI chat/completions chunks and bodies (llama.cpp, vLLM, TGI,
 * SGLang, OpenAI), llama.cpp native /completion, TGI native /generate_stream,
 * the OpenAI Responses API's events and bodies and the Anthropic Messages
 * API's (told apart by their "type" or "object"):
 *   output: a non-empty "delta" of a response.*.delta event (output text,
 *     refusal, reasoning, function call arguments); a content_block_delta's
 *     text_delta.text, thinking_delta.thinking or input_json_delta.partial_json;
 *     a whole body's output_text, refusal, reasoning, function_call items or
 *     text, thinking and tool_use blocks. The completed response of a stream
 *     is not output: its deltas were.
 *   usage: response.usage (input_tokens with the cached part, output_tokens,
 *     input_tokens_details.cached_tokens); message_start's message.usage
 *     (input_tokens + cache_read_input_tokens + cache_creation_input_tokens
 *     are the prompt, cache_read_input_tokens the cached part), message_delta's
 *     usage.output_tokens.
 *   finish: response status completed (stop, or tool_calls with a
 *     function_call item), incomplete (length for max_output_tokens,
 *     content_filter), failed (error, and is_error); stop_reason end_turn and
 *     stop_sequence (stop), max_tokens (length), tool_use (tool_calls),
 *     refusal (content_filter). An "error" event is is_error. */
struct json_resp {
    bool valid;                  /* parsed as a JSON object */
    bool has_output;             /* carries generated output: non-empty delta.content,
                                delta.reasoning_content (or vLLM's "reasoning"),
                                delta.tool_calls, delta.refusal, choices[].text,
                                message.* likewise (non-streaming), native
                                "content", TGI token.text of a non-special token;
                                null and "" are not output */
    bool has_refusal;            /* non-empty delta.refusal / message.refusal */
    bool choices_empty;          /* "choices":[] (the usage-only chunk) */
    bool is_error;               /* top-level "error" key, not null */
    bool has_usage;              /* usage object with numbers (not null), or TGI
                                native details.generated_tokens */
    int64_t prompt_tokens;       /* usage.prompt_tokens (TGI details.input_length), or -1 */
    int64_t completion_tokens;   /* usage.completion_tokens (TGI details.generated_tokens), or -1 */
    int64_t cached_tokens;       /* usage.prompt_tokens_details.cached_tokens, or -1 */
    bool has_timings;            /* llama.cpp timings object */
    int64_t timings_prompt_n;    /* or -1 */
    int64_t timings_predicted_n; /* or -1 */
    int64_t timings_cache_n;     /* or -1 */
    enum json_finish finish;     /* first non-null finish_reason in choices, or
                                native stop_type when "stop":true, or TGI
                                details.finish_reason; "" counts as none */
    struct span model;           /* "model" string, raw (escapes undecoded), borrowed */
    struct span text;            /* the output string token's raw bytes (still
                                JSON-escaped), borrowed, for refusal matching:
                                the first choice's delta.refusal, else
                                delta.content, else text, else message.refusal,
                                else message.content; without choices the native
                                "content" or TGI token.text (non-special). Never
                                reasoning; len 0 if none */
};

/* Parses one response object. Returns 0, or -1 if `in` is not one JSON object
 * (strict RFC 8259 syntax plus Python's NaN/Infinity, blanks around it allowed,
 * at most 512 levels deep) or needs more than toks->cap tokens (then
 * out->valid is false). */
int json_resp_parse(struct span in, struct json_toks *toks, struct json_resp *out);

/* What pitot needs from a request body. */
struct json_req {
    bool well_formed;       /* one JSON object by the strict syntax check, even when
                               it needed more than toks->cap tokens (then nothing
                               below was read and valid is false) */
    bool valid;             /* parsed as a JSON object */
    bool stream;            /* "stream": true */
    bool has_include_usage; /* stream_options.include_usage present */
    bool include_usage;     /* ... and true */
    int64_t max_tokens;     /* max_tokens, max_completion_tokens, n_predict or max_output_tokens;
                               -1 if absent */
    struct span model;      /* raw "model" string, borrowed; len 0 if absent */
};

/* Parses a request body. Returns 0, or -1 when it is not a JSON object (as for
 * json_resp_parse()) or needs more than toks->cap tokens (size toks by the body
 * cap: a JSON text of n bytes has at most n tokens); out->well_formed tells the
 * two apart. Later duplicate keys win. */
int json_req_parse(struct span body, struct json_toks *toks, struct json_req *out);

/* Writes into out[0..cap) a copy of `body` that asks for usage in the stream:
 * adds "stream_options":{"include_usage":true} when stream_options is absent,
 * adds "include_usage":true inside an existing stream_options object that lacks
 * it, turns an existing false (or any non-true value) into true, and replaces
 * a non-object stream_options (null) by {"include_usage":true}. A new member
 * goes right after the object's last value. Everything else is byte-identical.
 * The body must be strict JSON (RFC 8259, plus NaN/Infinity). out must
 * not overlap body. Returns the new length, or -1 if body is not an object (or
 * needs more than toks->cap tokens) or out is too small. */
long json_req_add_include_usage(struct span body, struct json_toks *toks, char *out, size_t cap);

/* Decodes a JSON string token's raw bytes (between the quotes) into UTF-8 at
 * out[0..cap): handles \" \\ \/ \b \f \n \r \t \uXXXX and surrogate pairs;
 * a lone surrogate becomes U+FFFD, an invalid escape is copied literally.
 * Stops at cap without splitting a UTF-8 sequence. Returns bytes written. */
size_t json_str_decode(struct span raw, char *out, size_t cap);

/* The JSON-escaped form of the first unit of p[0..n) (n >= 1) into out[0..6):
 * " and \ get a backslash, control bytes and DEL become \u00XX, a
 * well-formed UTF-8 sequence is copied, and each maximal invalid subpart
 * becomes one \ufffd. Returns the bytes written; *used gets the input bytes
 * the unit stands for. */
size_t json_esc_unit(const unsigned char *p, size_t n, size_t *used, char out[6]);

/* Writes s JSON-escaped (without the quotes) into out[0..cap), unit by unit
 * as json_esc_unit does: at most 6 bytes per input byte. Stops before a unit
 * that does not fit. Returns bytes written. */
size_t json_str_encode(struct span s, char *out, size_t cap);

/* Reports a scalar found by json_paths_visit(): the index of the path it was
 * found by, its raw bytes (a string's without the quotes, escapes undecoded;
 * a number or literal as written), borrowed from the body, and whether it is
 * a string. */
typedef void (*json_path_cb)(void *ud, size_t path, struct span raw, bool is_string);

/* Calls cb (may be NULL) for every string, number or literal found at each of
 * paths[0..npaths), path by path, in document order within a path. A path is
 * keys joined by '.', each optionally followed by "[]" to descend into every
 * element of an array: "total_slots", "data[].id", "data[].aliases[]". A key
 * matches the raw (undecoded) member name; of duplicate members the last one
 * is followed. A path that leads to a missing member, an object or array, or
 * a value of the wrong kind visits nothing. body must be one JSON object as
 * for json_resp_parse(). Returns the number of scalars visited, or -1 if body
 * is not an object or needs more than toks->cap tokens. */
int json_paths_visit(struct span body, struct json_toks *toks, const char *const *paths,
                     size_t npaths, json_path_cb cb, void *ud);

#endif
