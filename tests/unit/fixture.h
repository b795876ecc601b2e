/* Recorded backend traffic for the unit tests: fixture files under
 * $PITOT_FIXTURES (default tests/fixtures), raw .sse streams and .txt
 * /metrics bodies, and llama.cpp .http captures decoded with the h1 module.
 * Failures fail the running test. */
#ifndef PITOT_TESTS_FIXTURE_H
#define PITOT_TESTS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#define FX_MAX_FILES 192

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
    bool complete;  /* .http: the message ended (not cut short inside a chunk) */
};

/* Every fixture of the vllm, tgi, openai, llama.cpp and llama.cpp/apis directories. */
struct fx_set {
    struct fx_file f[FX_MAX_FILES]; /* sorted by name */
    size_t n;
};

/* Reads the fixture file at rel (relative to the fixture directory, e.g.
 * "llama.cpp/x.events.jsonl"). Returns a malloc'd NUL-terminated copy, owned
 * by the caller, its length in *len; NULL when it cannot be read. */
char *fx_read(const char *rel, size_t *len);

/* The body a server sent, as fixture file rel holds it: a .http capture must be
 * a whole 200 response and gives its body with the framing removed; any other
 * file (.txt, .sse) gives its bytes as they are. Returns a malloc'd
 * NUL-terminated copy, owned by the caller, its length in *len; fails the test
 * when the file cannot be read or the capture is not a whole 200. */
char *fx_body_read(const char *rel, size_t *len);

/* One body of a test's table of named fixtures (see fx_bodies_load()). */
struct fx_body {
    const char *name; /* "dir/file" under the fixture directory */
    char *p;          /* owned: the body, as fx_body_read() gives it */
    size_t len;       /* body bytes, the NUL excluded */
};

/* Initialisers of struct fx_body for every fixture /metrics body: the vllm,
 * tgi and sglang texts and the llama.cpp captures. */
/* clang-format off */
#define FX_METRICS_BODIES                                       \
    { "vllm/metrics.txt", NULL, 0 },                            \
    { "tgi/metrics.txt", NULL, 0 },                             \
    { "sglang/metrics.txt", NULL, 0 },                          \
    { "llama.cpp/metrics-busy.http", NULL, 0 },                 \
    { "llama.cpp/metrics-idle-fresh.http", NULL, 0 },           \
    { "llama.cpp/metrics-after-busy-idle.http", NULL, 0 },      \
    { "llama.cpp/metrics-after-client-abort.http", NULL, 0 },   \
    { "llama.cpp/metrics-after-traffic-idle.http", NULL, 0 },   \
    { "llama.cpp/metrics-busy-other-replica-idle.http", NULL, 0 }
/* clang-format on */

/* Reads the body of each of b[0..n) by name with fx_body_read() (which fails
 * the test on a missing or broken fixture). Release with fx_bodies_release(). */
void fx_bodies_load(struct fx_body *b, size_t n);

/* Frees the bodies of b[0..n) and leaves their p NULL. */
void fx_bodies_release(struct fx_body *b, size_t n);

/* The body named "dir/file" among b[0..n); fails the test when there is none. */
const struct fx_body *fx_bodies_find(const struct fx_body *b, size_t n, const char *name);

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

/* ---- metrics text ------------------------------------------------------ */

struct met_registry;

/* The exposition of n registries as a NUL-terminated string (caller frees);
 * fails the test when met_expose does. */
char *fx_expose(struct met_registry *const *regs, size_t n);

/* Position of the whole line `line` in text, or NULL. */
const char *fx_find_line(const char *text, const char *line);

/* Runs `promtool check metrics` on text; fails the test on any complaint,
 * or when promtool (Debian prometheus, installed by make deps) is missing. */
void fx_promtool_check(const char *text);

/* Lines of text starting with prefix. */
int fx_count_prefix(const char *text, const char *prefix);

#define assert_line(text, line)                                                                    \
    do {                                                                                           \
        if (fx_find_line((text), (line)) == NULL)                                                  \
            fail_msg("missing line: %s\n---\n%s", (line), (text));                                 \
    } while (0)

#define assert_no_line(text, line) assert_null(fx_find_line((text), (line)))

#endif
