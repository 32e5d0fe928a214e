/*
 * ocireg-healthcheck: the health probe of the container image, which has no shell and no curl.
 *
 *     ocireg-healthcheck [http://HOST:PORT/PATH]   (default http://127.0.0.1:5001/healthz)
 *
 * One HTTP/1.0 GET to a numeric IPv4 or IPv6 address (the admin listener of ocireg: /healthz,
 * /readyz); exit 0 on a 2xx status, 1 otherwise (connection refused, timeout after 5 s, any
 * other status). For the orchestrators that run a command inside the container (ECS
 * healthCheck, compose healthcheck, docker HEALTHCHECK). Built by deploy/image/build-image.sh.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "ocireg-healthcheck: %s%s%s\n", what, detail[0] ? ": " : "", detail);
    return 1;
}

/* Milliseconds left until the deadline (0 when past it). */
static int left_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? (int)ms : 0;
}

static int wait_fd(int fd, short ev, const struct timespec *deadline)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int ms = left_ms(deadline);
    if (ms == 0)
        return 0;
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "http://127.0.0.1:5001/healthz";
    if (argc > 2 || strncmp(url, "http://", 7) != 0)
        return fail("usage", "ocireg-healthcheck [http://HOST:PORT/PATH] (numeric HOST)");

    /* http://HOST:PORT/PATH, HOST an IPv4 address or [IPv6] */
    char host[64], path[512];
    const char *h = url + 7, *hend, *p;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (hend == NULL)
            return fail("bad URL", url);
        h++;
        p = hend + 1;
    } else {
        hend = h + strcspn(h, ":/");
        p = hend;
    }
    if ((size_t)(hend - h) >= sizeof(host))
        return fail("bad URL", url);
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    long port = 80;
    if (*p == ':') {
        char *end;
        port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return fail("bad port in URL", url);
        p = end;
    }
    snprintf(path, sizeof(path), "%s", *p == '/' ? p : "/");

    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        sl = sizeof(*s6);
    } else {
        return fail("HOST must be a numeric address", host);
    }

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 5;

    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("socket", strerror(errno));
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (errno != EINPROGRESS)
            return fail("connect", strerror(errno));
        if (wait_fd(fd, POLLOUT, &deadline) <= 0)
            return fail("connect", "timed out");
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0)
            return fail("connect", strerror(err));
    }

    char req[700];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ocireg-healthcheck\r\n\r\n",
                      path, host);
    for (int off = 0; off < rl;) {
        if (wait_fd(fd, POLLOUT, &deadline) <= 0)
            return fail("send", "timed out");
        ssize_t n = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return fail("send", strerror(errno));
        if (n > 0)
            off += (int)n;
    }

    /* The status line is all we need: "HTTP/1.x NNN ..." */
    char resp[64];
    size_t got = 0;
    while (got < 12) {
        if (wait_fd(fd, POLLIN, &deadline) <= 0)
            return fail("no response", "timed out");
        ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return fail("recv", strerror(errno));
        }
        got += (size_t)n;
    }
    close(fd);
    resp[got] = '\0';
    if (got < 12 || strncmp(resp, "HTTP/1.", 7) != 0)
        return fail("not an HTTP response", "");
    int status = atoi(resp + 9);
    if (status < 200 || status > 299) {
        char s[8];
        snprintf(s, sizeof(s), "%d", status);
        return fail("unhealthy, status", s);
    }
    return 0;
}
