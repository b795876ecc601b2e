/* sock: socket options and address lookup every layer that opens a socket
 * needs. */
#ifndef PITOT_UTIL_SOCK_H
#define PITOT_UTIL_SOCK_H

#include <stdint.h>
#include <sys/socket.h>

/* Sets TCP_NODELAY (and nothing else) on a socket; errors are ignored. */
void sock_nodelay(int fd);

/* The first address of host:port for a stream socket (blocking getaddrinfo:
 * at start only, never on a loop). host "" with passive: every interface.
 * Returns 0, or getaddrinfo's error code (gai_strerror tells it). */
int sock_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
                 int passive);

#endif
