/* sock: TCP_NODELAY, and start-time address lookup. */
#include "pitot/util/sock.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

void sock_nodelay(int fd)
{
    int one = 1;

    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int sock_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
                 int passive)
{
    struct addrinfo hints, *res = NULL;
    char ports[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(ports, sizeof(ports), "%u", port);
    rc = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (rc != 0)
        return rc;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}
