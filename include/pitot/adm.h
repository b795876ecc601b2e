/* adm: pitot's own endpoints on the client port: /metrics (Prometheus text
 * 0.0.4), /healthz (the process is alive), /readyz (200 only while at least
 * one backend is healthy). Everything else is proxied. */
#ifndef PITOT_ADM_H
#define PITOT_ADM_H

#include <stdbool.h>

struct front_conn;
struct h1_msg;

/* True for GET or HEAD of one of pitot's own paths (query string ignored). */
bool adm_handles(const struct h1_msg *m);

/* Answers such a request on fc. close: end the connection afterwards. */
void adm_serve(struct front_conn *fc, const struct h1_msg *m, bool close);

#endif
