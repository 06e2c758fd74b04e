/* test_net.h — loopback helpers for tests that open real sockets. */
#ifndef FLAMEDB_TESTS_NET_H
#define FLAMEDB_TESTS_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A free TCP port on 127.0.0.1, or -1 (nanomsg cannot bind port 0, so tests
 * pick one this way; another process could take it first, which only makes
 * a bind fail with a clear error). */
static inline int test_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

#endif
