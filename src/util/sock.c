/* sock: TCP_NODELAY, and start-time address lookup. */
#include "pitot/util/sock.h"

#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

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

size_t sock_send_now(int fd, struct iovec *v, int n)
{
    struct msghdr msg;
    ssize_t k;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = v;
    msg.msg_iovlen = (size_t)n;
    k = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return k > 0 ? (size_t)k : 0;
}

void sock_rx_stamps(int fd)
{
    int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;

    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof(flags));
}

uint64_t sock_waiting_since_us(int fd)
{
    char byte, ctl[CMSG_SPACE(sizeof(struct scm_timestamping))];
    struct iovec iov = { &byte, 1 };
    struct msghdr msg;
    struct cmsghdr *cm;
    struct timespec real, mono;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof(ctl);
    if (recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT) < 1)
        return 0;
    for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        const struct scm_timestamping *st;
        uint64_t stamp, now_real, now_mono;

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPING)
            continue;
        st = (const struct scm_timestamping *)(const void *)CMSG_DATA(cm);
        if (st->ts[0].tv_sec == 0 && st->ts[0].tv_nsec == 0)
            return 0;
        /* the stamp is CLOCK_REALTIME: carried over to the monotonic clock
         * by the distance to now */
        clock_gettime(CLOCK_REALTIME, &real);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        stamp = (uint64_t)st->ts[0].tv_sec * 1000000u + (uint64_t)st->ts[0].tv_nsec / 1000u;
        now_real = (uint64_t)real.tv_sec * 1000000u + (uint64_t)real.tv_nsec / 1000u;
        now_mono = (uint64_t)mono.tv_sec * 1000000u + (uint64_t)mono.tv_nsec / 1000u;
        if (stamp > now_real || now_real - stamp > now_mono)
            return 0; /* a stamp from the future, or a clock step: not trusted */
        return now_mono - (now_real - stamp);
    }
    return 0;
}
