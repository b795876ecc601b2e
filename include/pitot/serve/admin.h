/* admin: pitot's own endpoints: /metrics (Prometheus text 0.0.4), /healthz
 * (the process is alive), /readyz (200 only while at least one backend is
 * healthy, not disabled, and pitot is not draining); on the admin listener
 * also the status page and runtime control (status.h). On the client listener, unless
 * admin_listen is set; everything else there is proxied. On the admin
 * listener, nothing else is answered (404) and nothing is proxied. */
#ifndef PITOT_SERVE_ADMIN_H
#define PITOT_SERVE_ADMIN_H

#include <stdbool.h>

struct evbuffer;
struct h1_msg;
struct loop;

/* True when the path (query string ignored) is one of pitot's own, whatever
 * the method. */
bool admin_own_path(const struct h1_msg *m);

/* True when the path (query string ignored) is one the admin listener alone
 * serves, whatever the method: /status, /status.json, /admin and under it.
 * Without admin_listen they do not exist (proxied like any other path); with
 * it, the client listener answers them 404. */
bool admin_listener_path(const struct h1_msg *m);

/* True for GET or HEAD of one of pitot's own paths (query string ignored). */
bool admin_handles(const struct h1_msg *m);

/* Answers such a request into out, the client connection's output; close:
 * the reply says Connection: close (the caller ends the connection after it). */
void admin_serve(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close);

/* Answers any request on the admin listener: admin_serve for GET or HEAD of an
 * own path, 405 (Allow: GET, HEAD) for another method there; GET or HEAD of
 * /status (the page) and /status.json (its data, see status.h), 405 for
 * another method; POST /admin/backends/{name}/disable|enable and
 * /admin/reload (405, Allow: POST, for another method; 401 with
 * WWW-Authenticate: Bearer without the admin_token when one is set; 404 for
 * an unknown name or path; 501 for a reload when the process has no reload
 * callback); else 404. Every error carries the request's X-Request-Id. */
void admin_serve_admin(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close);

#endif
