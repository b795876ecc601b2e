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

/* Asks the kernel to timestamp the data fd receives (SO_TIMESTAMPING,
 * software receive stamps); a listening socket passes it on to the
 * connections it accepts. Errors are ignored: stamps are then absent. */
void sock_rx_stamps(int fd);

/* When the oldest byte waiting on fd reached this host, from the kernel's
 * receive stamp, in CLOCK_MONOTONIC microseconds; 0 when nothing waits or
 * there is no stamp. Reads nothing (MSG_PEEK). */
uint64_t sock_waiting_since_us(int fd);

struct iovec;

/* Writes v[0..n) to fd without waiting and without SIGPIPE: the bytes the
 * socket took now, 0 when it took none or failed (the caller's buffered
 * write then meets the error). */
size_t sock_send_now(int fd, struct iovec *v, int n);

#endif
