/* api: which LLM API a request speaks, by its path, and how that API says
 * that something failed: the error body pitot answers with itself and the
 * event that ends a stream it has to cut. Chat Completions, Completions,
 * Embeddings and the Responses API share OpenAI's error shape; the Anthropic
 * Messages API has its own, and its own status for overload (529). */
#ifndef PITOT_FORMAT_API_H
#define PITOT_FORMAT_API_H

#include <stddef.h>

#include "pitot/util/err.h"

/* X(NAME, "label") in the order of the metric label values. */
#define PITOT_API_LIST(X)                                                                          \
    X(CHAT, "chat")                                                                                \
    X(COMPLETIONS, "completions")                                                                  \
    X(RESPONSES, "responses")                                                                      \
    X(MESSAGES, "messages")                                                                        \
    X(EMBEDDINGS, "embeddings")                                                                    \
    X(OTHER, "other")

enum api_kind {
#define PITOT_API_ENUM(name, label) API_##name,
    PITOT_API_LIST(PITOT_API_ENUM)
#undef PITOT_API_ENUM
        API__COUNT
};

/* The API of a request target (its query ignored): chat for
 * /v1/chat/completions (and llama-server's /chat/completions, /api/chat),
 * completions for /v1/completions and the servers' own generate routes
 * (/completions, /completion, /infill, /generate, /generate_stream),
 * responses for /v1/responses, messages for /v1/messages and
 * /v1/messages/count_tokens, embeddings for /v1/embeddings (/embeddings,
 * /embedding), other for anything else. */
enum api_kind api_of_path(const char *target);

/* "chat", "completions", ..., "other". */
const char *api_label(enum api_kind a);

/* The status pitot answers a request of API a that fails with e: the
 * error table's, except overload on the Messages API: 529, as Anthropic's
 * API says it and its SDKs expect. */
int api_err_status(enum api_kind a, enum pitot_err e);

/* The JSON error body for e in API a's shape into buf[0..cap) (NUL-terminated,
 * truncated to fit); returns its length. Messages:
 * {"type":"error","error":{"type":"overloaded_error","message":"..."}} with
 * Anthropic's type for the status; every other API: err_json()'s OpenAI shape. */
int api_err_json(enum api_kind a, enum pitot_err e, char *buf, size_t cap);

/* The SSE event that ends a stream of API a which pitot cuts because of e,
 * "\n\n" included, into buf[0..cap); returns its length. Chat and
 * completions: a data-only event with the OpenAI error body (what OpenAI and
 * vLLM send); Messages: "event: error" with Anthropic's error body; Responses:
 * "event: error" with {"type":"error","code":...,"message":...,"param":null}. */
int api_err_event(enum api_kind a, enum pitot_err e, char *buf, size_t cap);

#endif
