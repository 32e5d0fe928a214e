/*
 * The API listener's accept loop. Each new connection waits here (in one epoll set, costing
 * no worker thread) until its first byte arrives; then it goes to libmicrohttpd, unless that
 * byte opens a TLS handshake on this plain-HTTP port: such a client (docker tries https
 * first) gets a 400 answer, which tells it to fall back to http. libmicrohttpd 0.9.75 would
 * close some of those connections without a word, depending on the random bytes of the
 * ClientHello, and an EOF makes the docker CLI give up. With --max-connections connections
 * handed over and open (each holds a libmicrohttpd thread), the next is answered 503 here.
 */
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"
#include "server/log.h"

#define TLS_HANDSHAKE 0x16
#define MAX_EVENTS 64
/* Headers are handed over once complete; a header block larger than this goes over as is
 * (libmicrohttpd answers it 431). */
#define HEADER_PEEK 16384
#define IP_SLOTS 4096

/* Connections per client address, counted from accept to close (--per-ip-limit). */
struct ip_slot {
    unsigned char addr[16];
    unsigned count; /* 0: free */
};

struct acceptor {
    struct server *srv;
    pthread_mutex_t ip_mu;
    struct ip_slot ips[IP_SLOTS];
    int listen_fd;
    int epfd;
    int wake_fd;
    pthread_t thread;
    time_t *deadline; /* by fd: when a connection that sent nothing is dropped; 0 = none */
    bool *closing;    /* by fd: answered, draining until the client closes */
    size_t ndeadline;
    atomic_int served; /* handed to libmicrohttpd and not yet closed (--max-connections) */
};

static const char tls_answer[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 48\r\n\r\nThis port speaks plain HTTP, not HTTPS (TLS).\r\n\r\n";
static const char busy_answer[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    "Connection: close\r\nContent-Length: 82\r\n\r\n"
    "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections, retry later\"}]}\n";

static void addr_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff; /* as an IPv4-mapped IPv6 address */
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* Counts a connection of addr; false (not counted) when the address is at its limit. */
static bool ip_take(struct acceptor *a, const struct sockaddr *sa)
{
    unsigned limit = a->srv->cfg.per_ip_limit;
    if (limit == 0)
        return true;
    unsigned char key[16];
    addr_key(sa, key);
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    bool ok = true;
    pthread_mutex_lock(&a->ip_mu);
    struct ip_slot *free_slot = NULL, *slot = NULL;
    for (size_t probe = 0; probe < IP_SLOTS; probe++) {
        struct ip_slot *s = &a->ips[(h + probe) % IP_SLOTS];
        if (s->count > 0 && memcmp(s->addr, key, 16) == 0) {
            slot = s;
            break;
        }
        if (s->count == 0 && free_slot == NULL)
            free_slot = s;
    }
    if (slot == NULL && free_slot != NULL) {
        slot = free_slot;
        memcpy(slot->addr, key, 16);
    }
    if (slot != NULL) {
        ok = slot->count < limit;
        if (ok)
            slot->count++;
    }
    pthread_mutex_unlock(&a->ip_mu);
    return ok;
}

static void ip_give(struct acceptor *a, const struct sockaddr *sa)
{
    if (a->srv->cfg.per_ip_limit == 0)
        return;
    unsigned char key[16];
    addr_key(sa, key);
    pthread_mutex_lock(&a->ip_mu);
    for (size_t i = 0; i < IP_SLOTS; i++)
        if (a->ips[i].count > 0 && memcmp(a->ips[i].addr, key, 16) == 0) {
            a->ips[i].count--;
            break;
        }
    pthread_mutex_unlock(&a->ip_mu);
}

/* Called by libmicrohttpd when a connection it took over ends. */
void acceptor_connection_closed(struct server *srv, struct MHD_Connection *c)
{
    if (srv->acceptor == NULL)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci != NULL && ci->client_addr != NULL)
        ip_give(srv->acceptor, ci->client_addr);
    atomic_fetch_sub(&srv->acceptor->served, 1);
}

static void fd_peer(int fd, struct sockaddr_storage *ss)
{
    socklen_t sl = sizeof(*ss);
    memset(ss, 0, sizeof(*ss));
    if (getpeername(fd, (struct sockaddr *)ss, &sl) != 0)
        ss->ss_family = AF_UNSPEC;
}

/* Closes a connection still in the accept loop's hands. */
static void close_pending(struct acceptor *a, int fd)
{
    struct sockaddr_storage ss;
    fd_peer(fd, &ss);
    ip_give(a, (struct sockaddr *)&ss);
    close(fd);
}

static void drop(struct acceptor *a, int fd)
{
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
    if ((size_t)fd < a->ndeadline)
        a->deadline[fd] = 0;
}

static bool track(struct acceptor *a, int fd, time_t when)
{
    if ((size_t)fd >= a->ndeadline) {
        size_t n = a->ndeadline ? a->ndeadline : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        time_t *p = realloc(a->deadline, n * sizeof(*p));
        if (p == NULL)
            return false;
        memset(p + a->ndeadline, 0, (n - a->ndeadline) * sizeof(*p));
        a->deadline = p;
        bool *c = realloc(a->closing, n * sizeof(*c));
        if (c == NULL)
            return false;
        memset(c + a->ndeadline, 0, (n - a->ndeadline) * sizeof(*c));
        a->closing = c;
        a->ndeadline = n;
    }
    a->deadline[fd] = when;
    a->closing[fd] = false;
    return true;
}

static void accept_all(struct acceptor *a)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(a->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (!ip_take(a, (struct sockaddr *)&ss)) {
            close(fd); /* this address holds --per-ip-limit connections already */
            continue;
        }
        /* edge-triggered: woken again only when more bytes arrive, not while they wait */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (!track(a, fd, time(NULL) + (time_t)a->srv->cfg.conn_timeout) ||
            epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close_pending(a, fd);
            continue;
        }
    }
}

/* Reads and discards what the client sent; true once it has closed its side. */
static bool drain(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

/* Answers a connection that goes no further than this loop and closes it once the client has. */
static void answer_and_close(struct acceptor *a, int fd, const char *answer, size_t len)
{
    /* read what it sent first: closing with unread data would reset the connection and
     * could destroy the answer before the client reads it */
    bool gone = drain(fd);
    (void)send(fd, answer, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    if (gone || !track(a, fd, time(NULL) + 5) ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close_pending(a, fd);
        return;
    }
    a->closing[fd] = true;
}

static void first_byte(struct acceptor *a, int fd)
{
    if ((size_t)fd < a->ndeadline && a->closing[fd]) {
        if (drain(fd)) {
            drop(a, fd);
            close_pending(a, fd);
        }
        return;
    }
    static __thread char peek[HEADER_PEEK];
    ssize_t n = recv(fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0 && (unsigned char)peek[0] != TLS_HANDSHAKE && (size_t)n < sizeof(peek) &&
        memmem(peek, (size_t)n, "\r\n\r\n", 4) == NULL &&
        memmem(peek, (size_t)n, "\n\n", 2) == NULL)
        return; /* headers still coming: wait, within the deadline set at accept */
    unsigned char b = n > 0 ? (unsigned char)peek[0] : 0;
    drop(a, fd);
    if (n <= 0) {
        close_pending(a, fd);
        return;
    }
    if (b == TLS_HANDSHAKE) {
        answer_and_close(a, fd, tls_answer, sizeof(tls_answer) - 1);
        return;
    }
    if (atomic_load(&a->served) >= (int)a->srv->cfg.max_connections) {
        answer_and_close(a, fd, busy_answer, sizeof(busy_answer) - 1);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close_pending(a, fd);
        return;
    }
    /* libmicrohttpd takes the socket, and closes it itself if it cannot serve it; once
     * taken, its close notification gives the per-address count back */
    atomic_fetch_add(&a->served, 1); /* before: its close may be reported at once */
    if (MHD_add_connection(a->srv->daemon, fd, (struct sockaddr *)&ss, sl) != MHD_YES) {
        atomic_fetch_sub(&a->served, 1);
        ip_give(a, (struct sockaddr *)&ss);
    }
}

static void expire(struct acceptor *a, time_t now)
{
    for (size_t fd = 0; fd < a->ndeadline; fd++)
        if (a->deadline[fd] != 0 && a->deadline[fd] <= now) {
            drop(a, (int)fd);
            close_pending(a, (int)fd); /* no complete headers within --conn-timeout */
        }
}

static void *run(void *arg)
{
    struct acceptor *a = arg;
    struct epoll_event evs[MAX_EVENTS];
    time_t last_sweep = time(NULL);
    for (;;) {
        int n = epoll_wait(a->epfd, evs, MAX_EVENTS, 1000);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == a->wake_fd)
                return NULL;
            if (fd == a->listen_fd)
                accept_all(a);
            else
                first_byte(a, fd);
        }
        time_t now = time(NULL);
        if (now != last_sweep) {
            expire(a, now);
            last_sweep = now;
        }
    }
    return NULL;
}

int acceptor_start(struct server *srv, int listen_fd)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -1;
    a->srv = srv;
    a->listen_fd = listen_fd;
    pthread_mutex_init(&a->ip_mu, NULL);
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.fd = a->wake_fd};
    int fl = fcntl(listen_fd, F_GETFL);
    /* set before the thread starts: the connections it hands over report their close here */
    srv->acceptor = a;
    if (a->epfd == -1 || a->wake_fd == -1 || fl == -1 ||
        fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, listen_fd, &lev) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->wake_fd, &wev) != 0 ||
        pthread_create(&a->thread, NULL, run, a) != 0) {
        if (a->epfd != -1)
            close(a->epfd);
        if (a->wake_fd != -1)
            close(a->wake_fd);
        srv->acceptor = NULL;
        pthread_mutex_destroy(&a->ip_mu);
        free(a);
        return -1;
    }
    return 0;
}

void acceptor_stop(struct server *srv)
{
    struct acceptor *a = srv->acceptor;
    if (a == NULL || a->epfd == -1)
        return;
    uint64_t one = 1;
    while (write(a->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    pthread_join(a->thread, NULL);
    /* connections that never said anything are closed; the listener stops accepting */
    for (size_t fd = 0; fd < a->ndeadline; fd++)
        if (a->deadline[fd] != 0)
            close((int)fd);
    close(a->epfd);
    close(a->wake_fd);
    a->epfd = a->wake_fd = -1;
    free(a->deadline);
    free(a->closing);
    a->deadline = NULL;
    a->closing = NULL;
    a->ndeadline = 0;
    /* the struct stays: libmicrohttpd's threads still report closes until it stops */
}

void acceptor_free(struct server *srv)
{
    struct acceptor *a = srv->acceptor;
    if (a == NULL)
        return;
    srv->acceptor = NULL;
    pthread_mutex_destroy(&a->ip_mu);
    free(a);
}
