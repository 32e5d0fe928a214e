/*
 * The API listener's accept loop. Each new connection waits here (in one epoll set, costing
 * no worker thread) until its first byte arrives; then it goes to libmicrohttpd, unless that
 * byte opens a TLS handshake on this plain-HTTP port: such a client (docker tries https
 * first) gets a 400 answer, which tells it to fall back to http. libmicrohttpd 0.9.75 would
 * close some of those connections without a word, depending on the random bytes of the
 * ClientHello, and an EOF makes the docker CLI give up. With --max-connections connections
 * handed over and open (each holds a libmicrohttpd thread), the next is answered 503 here.
 *
 * The connections held here are bounded (--max-pending-connections): past the bound, and
 * whenever accept finds no descriptor left, the oldest one is dropped, so a flood of clients
 * that never finish their headers cannot hold every descriptor while others wait. Out of
 * descriptors with none held here, the waiting clients are taken on a reserve descriptor,
 * answered 503 and closed, and the listener rests for ACCEPT_PAUSE_MS instead of waking the
 * loop again at once; what was refused is logged once per REPORT_INTERVAL, counted.
 *
 * A connection libmicrohttpd closes with a request body still coming (it answered before
 * reading it: a manifest too large, a quota) comes back here to linger: read and discarded
 * until the client closes, for LINGER_SECONDS at most. Closed with unread data, the socket
 * would send a reset, and a client still sending would lose the answer it had been sent.
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
#include <sys/resource.h>
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
/* How long the listener rests after accept ran out of descriptors. */
#define ACCEPT_PAUSE_MS 100
/* Seconds between two log lines about refused or dropped connections. */
#define REPORT_INTERVAL 10
/* How long a connection closed with a body still coming is drained before it is closed. */
#define LINGER_SECONDS 5

/* Connections per client address, counted from accept to close (--per-ip-limit). */
struct ip_slot {
    unsigned char addr[16];
    unsigned count; /* 0: free */
};

/* By descriptor: a connection the accept loop holds (not yet handed over, or answered here
 * and draining). The held ones form a list in the order they were taken, oldest first. */
struct held {
    time_t deadline; /* when it is dropped; 0: not held */
    time_t since;    /* when it was taken (or answered) */
    bool closing;    /* answered, draining until the client closes */
    bool lingering;  /* handed back by libmicrohttpd: holds no per-address count */
    int prev, next;  /* neighbours in the list; -1 at its ends */
};

/* What was refused or dropped since the last log line (one per REPORT_INTERVAL). */
struct report {
    time_t last;            /* of the last line; 0: none yet */
    int err;                /* the last accept error */
    unsigned long failures; /* accept errors nothing held here could make room for */
    unsigned long shed;     /* answered 503 on the reserve descriptor */
    unsigned long made_room; /* held connections dropped to make room for a newer one */
    unsigned long over;     /* held connections dropped past --max-pending-connections */
};

struct acceptor {
    struct server *srv;
    pthread_mutex_t ip_mu;
    struct ip_slot ips[IP_SLOTS];
    int listen_fd;
    int epfd;
    int wake_fd;
    int reserve_fd; /* given up to take one connection when out of descriptors (an eventfd:
                     * a container image may have no /dev/null) */
    int linger_fd;  /* wakes the loop: connections to linger are queued */
    pthread_mutex_t linger_mu;
    int *linger_q;  /* descriptors handed back by libmicrohttpd's threads, to drain */
    size_t linger_n, linger_cap;
    bool linger_off; /* stopped: what is handed back is closed at once */
    pthread_t thread;
    struct held *held;
    size_t nheld_cap; /* entries of held[] */
    unsigned nheld;   /* connections held */
    unsigned max_held;
    int oldest, newest;
    bool paused;             /* the listener is out of the epoll set */
    struct timespec resume;  /* when it goes back in (CLOCK_MONOTONIC) */
    struct report rep;
    atomic_int served; /* handed to libmicrohttpd and not yet closed (--max-connections) */
};

static const char tls_answer[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 48\r\n\r\nThis port speaks plain HTTP, not HTTPS (TLS).\r\n\r\n";
static const char bad_line_answer[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 27\r\n\r\nMalformed request line.\r\n\r\n";
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
    if ((size_t)fd < a->nheld_cap && a->held[fd].lingering) {
        a->held[fd].lingering = false; /* its count went back when libmicrohttpd closed it */
    } else {
        struct sockaddr_storage ss;
        fd_peer(fd, &ss);
        ip_give(a, (struct sockaddr *)&ss);
    }
    close(fd);
}

static bool is_held(const struct acceptor *a, int fd)
{
    return (size_t)fd < a->nheld_cap && a->held[fd].deadline != 0;
}

static void unlink_held(struct acceptor *a, int fd)
{
    struct held *h = &a->held[fd];
    if (h->prev != -1)
        a->held[h->prev].next = h->next;
    else
        a->oldest = h->next;
    if (h->next != -1)
        a->held[h->next].prev = h->prev;
    else
        a->newest = h->prev;
    h->deadline = 0;
    h->prev = h->next = -1;
    a->nheld--;
}

static void drop(struct acceptor *a, int fd)
{
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
    if (is_held(a, fd))
        unlink_held(a, fd);
}

/* Holds fd (again) until when, as the newest connection. */
static bool track(struct acceptor *a, int fd, time_t when)
{
    if ((size_t)fd >= a->nheld_cap) {
        size_t n = a->nheld_cap ? a->nheld_cap : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        struct held *p = realloc(a->held, n * sizeof(*p));
        if (p == NULL)
            return false;
        memset(p + a->nheld_cap, 0, (n - a->nheld_cap) * sizeof(*p));
        a->held = p;
        a->nheld_cap = n;
    }
    if (is_held(a, fd))
        unlink_held(a, fd);
    struct held *h = &a->held[fd];
    h->deadline = when;
    h->since = time(NULL);
    h->closing = false;
    h->lingering = false;
    h->prev = a->newest;
    h->next = -1;
    if (a->newest != -1)
        a->held[a->newest].next = fd;
    else
        a->oldest = fd;
    a->newest = fd;
    a->nheld++;
    return true;
}

/* Closes the connection held longest; false when none is held. */
static bool drop_oldest(struct acceptor *a)
{
    int fd = a->oldest;
    if (fd == -1)
        return false;
    drop(a, fd);
    close_pending(a, fd);
    return true;
}

/* Out of descriptors: the connection held longest gives its own to a newcomer, when it has
 * been held a second or more (one just taken has not yet been read). */
static bool make_room(struct acceptor *a)
{
    if (a->oldest == -1 || time(NULL) - a->held[a->oldest].since < 1)
        return false;
    a->rep.made_room++;
    return drop_oldest(a);
}

/* One line for what happened since the last one, at most once per REPORT_INTERVAL. */
static void report(struct acceptor *a, time_t now)
{
    struct report *r = &a->rep;
    if (r->failures == 0 && r->shed == 0 && r->made_room == 0 && r->over == 0)
        return;
    if (r->last != 0 && now - r->last < REPORT_INTERVAL)
        return;
    long span = r->last != 0 ? (long)(now - r->last) : 0;
    if ((r->failures > 0 || r->shed > 0 || r->made_room > 0) && r->last == 0)
        log_warn("accept: %s: %lu connections answered 503 and closed, %lu held while sending "
                 "their headers closed to make room; counted and reported every %d s while it "
                 "lasts",
                 strerror(r->err), r->shed, r->made_room, REPORT_INTERVAL);
    else if (r->failures > 0 || r->shed > 0 || r->made_room > 0)
        log_warn("accept: %s (%lu times in the last %ld s): %lu connections answered 503 and "
                 "closed, %lu held while sending their headers closed to make room",
                 strerror(r->err), r->failures + r->made_room, span, r->shed, r->made_room);
    if (r->over > 0)
        log_warn("%lu connections still sending their headers closed, oldest first, in %ld s: "
                 "more than --max-pending-connections %u held",
                 r->over, span, a->max_held);
    r->failures = r->shed = r->made_room = r->over = 0;
    r->last = now;
}

static void pause_listener(struct acceptor *a)
{
    if (a->paused)
        return;
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, a->listen_fd, NULL);
    clock_gettime(CLOCK_MONOTONIC, &a->resume);
    a->resume.tv_nsec += ACCEPT_PAUSE_MS * 1000000L;
    if (a->resume.tv_nsec >= 1000000000L) {
        a->resume.tv_sec++;
        a->resume.tv_nsec -= 1000000000L;
    }
    a->paused = true;
}

/* Milliseconds until the listener goes back into the epoll set (0: now), at most max. */
static int resume_in(struct acceptor *a, int max)
{
    if (!a->paused)
        return max;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(a->resume.tv_sec - now.tv_sec) * 1000 +
                   (a->resume.tv_nsec - now.tv_nsec) / 1000000;
    return ms <= 0 ? 0 : ms < max ? (int)ms : max;
}

static void busy_close(int fd);

/*
 * accept failed for want of a descriptor (or memory) and nothing held here could make room:
 * each waiting client is taken on the reserve descriptor, answered 503 and closed, so it
 * hears "retry" rather than waiting in the backlog; then the listener rests.
 */
static void out_of_descriptors(struct acceptor *a, int err)
{
    if (err == EMFILE || err == ENFILE) {
        if (a->reserve_fd == -1)
            a->reserve_fd = eventfd(0, EFD_CLOEXEC);
        for (unsigned n = 0; a->reserve_fd != -1 && n < 1024; n++) {
            close(a->reserve_fd);
            int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd != -1) {
                busy_close(fd);
                a->rep.shed++;
            }
            /* another thread may take the descriptor first: then none is kept in reserve
             * until a later round gets it back */
            a->reserve_fd = eventfd(0, EFD_CLOEXEC);
            if (fd == -1)
                break;
        }
    }
    pause_listener(a);
}

static void accept_all(struct acceptor *a)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(a->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            a->rep.err = err;
            /* a connection held here gives its descriptor to the newcomer */
            if ((err == EMFILE || err == ENFILE) && make_room(a))
                continue;
            a->rep.failures++;
            out_of_descriptors(a, err);
            report(a, time(NULL));
            return;
        }
        if (!ip_take(a, (struct sockaddr *)&ss)) {
            close(fd); /* this address holds --per-ip-limit connections already */
            continue;
        }
        if (a->nheld >= a->max_held && drop_oldest(a)) {
            a->rep.over++;
            report(a, time(NULL));
        }
        /* edge-triggered: woken again only when more bytes arrive, not while they wait */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (!track(a, fd, time(NULL) + (time_t)a->srv->cfg.conn_timeout)) {
            close_pending(a, fd);
            continue;
        }
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            drop(a, fd);
            close_pending(a, fd);
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
    if (gone || !track(a, fd, time(NULL) + 5)) {
        close_pending(a, fd);
        return;
    }
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        drop(a, fd);
        close_pending(a, fd);
        return;
    }
    a->held[fd].closing = true;
}

/* A connection taken on the reserve descriptor: 503 and closed at once (no descriptor to
 * spare for draining it). */
static void busy_close(int fd)
{
    (void)drain(fd);
    (void)send(fd, busy_answer, sizeof(busy_answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/*
 * Whether the request line (after the empty lines a client may send first) is complete and has
 * no space: one word, no method and target. libmicrohttpd 0.9.75 closes such a connection
 * without a word; RFC 9112 (section 3) asks for a 400, which says "your request" rather than
 * "the server went away". (A later request on a kept-alive connection is libmicrohttpd's.)
 */
static bool request_line_malformed(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == '\r' || p[i] == '\n'))
        i++;
    const char *eol = memchr(p + i, '\n', n - i);
    return eol != NULL && memchr(p + i, ' ', (size_t)(eol - (p + i))) == NULL;
}

static void first_byte(struct acceptor *a, int fd)
{
    if (is_held(a, fd) && a->held[fd].closing) {
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
    if (request_line_malformed(peek, (size_t)n)) {
        answer_and_close(a, fd, bad_line_answer, sizeof(bad_line_answer) - 1);
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
    for (int fd = a->oldest, next; fd != -1; fd = next) {
        next = a->held[fd].next;
        if (a->held[fd].deadline <= now) {
            drop(a, fd);
            close_pending(a, fd); /* no complete headers within --conn-timeout */
        }
    }
}

/* Takes the connections libmicrohttpd's threads handed back, to drain until they close. */
static void take_lingering(struct acceptor *a)
{
    uint64_t v;
    while (read(a->linger_fd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&a->linger_mu);
    for (size_t i = 0; i < a->linger_n; i++) {
        int fd = a->linger_q[i];
        int fl = fcntl(fd, F_GETFL);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
            !track(a, fd, time(NULL) + LINGER_SECONDS)) {
            close(fd);
            continue;
        }
        a->held[fd].closing = true;
        a->held[fd].lingering = true;
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            drop(a, fd);
            close_pending(a, fd);
        }
    }
    a->linger_n = 0;
    pthread_mutex_unlock(&a->linger_mu);
}

void acceptor_linger(struct server *srv, int fd)
{
    struct acceptor *a = srv->acceptor;
    if (a == NULL) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&a->linger_mu);
    bool queued = false;
    if (!a->linger_off) {
        if (a->linger_n == a->linger_cap) {
            size_t cap = a->linger_cap ? a->linger_cap * 2 : 16;
            int *q = realloc(a->linger_q, cap * sizeof(*q));
            if (q != NULL) {
                a->linger_q = q;
                a->linger_cap = cap;
            }
        }
        if (a->linger_n < a->linger_cap) {
            a->linger_q[a->linger_n++] = fd;
            queued = true;
        }
    }
    if (queued) {
        uint64_t one = 1;
        while (write(a->linger_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
        }
    }
    pthread_mutex_unlock(&a->linger_mu);
    if (!queued)
        close(fd);
}

static void *run(void *arg)
{
    struct acceptor *a = arg;
    struct epoll_event evs[MAX_EVENTS];
    time_t last_sweep = time(NULL);
    for (;;) {
        int n = epoll_wait(a->epfd, evs, MAX_EVENTS, resume_in(a, 1000));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == a->wake_fd)
                return NULL;
            if (fd == a->linger_fd)
                take_lingering(a);
            else if (fd == a->listen_fd)
                accept_all(a);
            else
                first_byte(a, fd);
        }
        if (a->paused && resume_in(a, 1000) == 0) {
            struct epoll_event lev = {.events = EPOLLIN, .data.fd = a->listen_fd};
            a->paused = false;
            if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->listen_fd, &lev) != 0)
                pause_listener(a); /* try again after another rest */
        }
        time_t now = time(NULL);
        if (now != last_sweep) {
            expire(a, now);
            report(a, now);
            last_sweep = now;
        }
    }
    return NULL;
}

/* --max-pending-connections, or by default --max-connections, but no more than a quarter of
 * the descriptors this process may open: the rest stay for served connections and files. */
static unsigned held_bound(const struct server_config *cfg)
{
    if (cfg->max_pending != 0)
        return cfg->max_pending;
    unsigned bound = cfg->max_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 4 < bound)
        bound = (unsigned)(rl.rlim_cur / 4);
    return bound > 0 ? bound : 1;
}

int acceptor_start(struct server *srv, int listen_fd)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -1;
    a->srv = srv;
    a->listen_fd = listen_fd;
    a->oldest = a->newest = -1;
    a->max_held = held_bound(&srv->cfg);
    pthread_mutex_init(&a->ip_mu, NULL);
    pthread_mutex_init(&a->linger_mu, NULL);
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->linger_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->reserve_fd = eventfd(0, EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.fd = a->wake_fd};
    struct epoll_event gev = {.events = EPOLLIN, .data.fd = a->linger_fd};
    int fl = fcntl(listen_fd, F_GETFL);
    /* set before the thread starts: the connections it hands over report their close here */
    srv->acceptor = a;
    if (a->epfd == -1 || a->wake_fd == -1 || a->linger_fd == -1 || a->reserve_fd == -1 ||
        fl == -1 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, listen_fd, &lev) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->wake_fd, &wev) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->linger_fd, &gev) != 0 ||
        pthread_create(&a->thread, NULL, run, a) != 0) {
        if (a->epfd != -1)
            close(a->epfd);
        if (a->wake_fd != -1)
            close(a->wake_fd);
        if (a->linger_fd != -1)
            close(a->linger_fd);
        if (a->reserve_fd != -1)
            close(a->reserve_fd);
        srv->acceptor = NULL;
        pthread_mutex_destroy(&a->ip_mu);
        pthread_mutex_destroy(&a->linger_mu);
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
    for (int fd = a->oldest; fd != -1; fd = a->held[fd].next)
        close(fd);
    /* and what libmicrohttpd hands back from now on is closed at once */
    pthread_mutex_lock(&a->linger_mu);
    a->linger_off = true;
    for (size_t i = 0; i < a->linger_n; i++)
        close(a->linger_q[i]);
    a->linger_n = 0;
    pthread_mutex_unlock(&a->linger_mu);
    report(a, time(NULL) + REPORT_INTERVAL);
    close(a->epfd);
    close(a->wake_fd);
    close(a->linger_fd);
    if (a->reserve_fd != -1)
        close(a->reserve_fd);
    a->epfd = a->wake_fd = a->linger_fd = a->reserve_fd = -1;
    free(a->held);
    a->held = NULL;
    a->nheld_cap = 0;
    a->nheld = 0;
    a->oldest = a->newest = -1;
    /* the struct stays: libmicrohttpd's threads still report closes until it stops */
}

void acceptor_free(struct server *srv)
{
    struct acceptor *a = srv->acceptor;
    if (a == NULL)
        return;
    srv->acceptor = NULL;
    pthread_mutex_destroy(&a->ip_mu);
    pthread_mutex_destroy(&a->linger_mu);
    free(a->linger_q);
    free(a);
}
