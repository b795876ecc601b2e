/* Recorded backend traffic for the unit tests: fixture files under
 * $PITOT_FIXTURES (default ../shared/fixtures), raw .sse streams and llama.cpp
 * .http captures decoded with the h1 module. Failures fail the running test. */
#ifndef PITOT_TESTS_FIXTURE_H
#define PITOT_TESTS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#define FX_MAX_FILES 128

/* One fixture: a raw .sse stream or the body of a decoded .http capture. */
struct fx_file {
    char name[320]; /* "dir/file", e.g. "llama.cpp/chat-stream-basic.http" */
    char *body;     /* owned: NUL-terminated; the .sse bytes or the de-chunked body */
    size_t len;     /* body bytes, the NUL excluded */
    bool http;      /* a .http capture (else a raw .sse stream) */
    bool request;   /* a .req.http capture (the client's request) */
    bool sse;       /* an SSE stream: a .sse file or a text/event-stream response */
    bool chunked;   /* .http: Transfer-Encoding: chunked */
    int status;     /* .http response: HTTP status; else 0 */
};

/* Every fixture of the vllm, tgi, openai and llama.cpp directories. */
struct fx_set {
    struct fx_file f[FX_MAX_FILES]; /* sorted by name */
    size_t n;
};

/* Reads the fixture file at rel (relative to the fixture directory, e.g.
 * "llama.cpp/x.events.jsonl"). Returns a malloc'd NUL-terminated copy, owned
 * by the caller, its length in *len; NULL when it cannot be read. */
char *fx_read(const char *rel, size_t *len);

/* Decodes the recorded HTTP message raw[0..n) (a request when request, else
 * a response) into f: head info (sse, chunked, status) and the body with any
 * chunk framing removed, owned by f. A body cut short inside a chunk (the
 * client-abort capture) is kept as far as it goes. Fails the test on a head
 * that does not parse. f->name is left alone. */
void fx_http_decode(const char *raw, size_t n, bool request, struct fx_file *f);

/* Loads every .sse and .http file of the fixture directories into set, sorted
 * by name. Fails the test when a directory is missing or a file does not
 * load. Release with fx_set_release(). */
void fx_set_load(struct fx_set *set);

/* Frees the bodies of set and empties it. */
void fx_set_release(struct fx_set *set);

/* The fixture named "dir/file"; fails the test when there is none. */
const struct fx_file *fx_set_find(const struct fx_set *set, const char *name);

#endif
