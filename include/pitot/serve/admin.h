/* admin: pitot's own endpoints: /metrics (Prometheus text 0.0.4), /healthz
 * (the process is alive), /readyz (200 only while at least one backend is
 * healthy and pitot is not draining). On the client listener, unless
 * admin_listen is set; everything else there is proxied. On the admin
 * listener, nothing else is answered (404) and nothing is proxied. */
#ifndef PITOT_SERVE_ADMIN_H
#define PITOT_SERVE_ADMIN_H

#include <stdbool.h>

struct front_conn;
struct h1_msg;

/* True when the path (query string ignored) is one of pitot's own, whatever
 * the method. */
bool admin_own_path(const struct h1_msg *m);

/* True for GET or HEAD of one of pitot's own paths (query string ignored). */
bool admin_handles(const struct h1_msg *m);

/* Answers such a request on fc. close: end the connection afterwards. */
void admin_serve(struct front_conn *fc, const struct h1_msg *m, bool close);

/* Answers any request on the admin listener: admin_serve for GET or HEAD of an
 * own path, 405 (Allow: GET, HEAD) for another method there, else 404. */
void admin_serve_admin(struct front_conn *fc, const struct h1_msg *m, bool close);

#endif
