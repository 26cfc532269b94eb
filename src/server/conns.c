/*
 * server/conns.c - who gets a connection. The server accepts on its own
 * thread and hands each socket to libmicrohttpd (MHD_add_connection) only
 * within the limits:
 *
 *   - connections in all (--max-connections) and from one client address
 *     (--max-client-connections): past either, the client gets a 503 with
 *     Retry-After and the socket is closed after a lingering read, so that
 *     it reads the answer instead of a reset;
 *   - a deadline for a request's headers (--header-timeout): a client that
 *     sends a header byte every few seconds holds its thread no longer; it
 *     gets a 408 on its first request, a plain close when it idles between
 *     requests.
 *
 * Each connection has a record here, keyed by its socket. libmicrohttpd
 * tells us when a connection closes (NOTIFY_CONNECTION CLOSED), before it
 * closes the socket, so under `mu` a record's fd is always the connection's
 * own: the deadline check can shut it down without hitting a reused fd.
 *
 * The same thread, waking every CONNS_TICK_MS, enforces the deadlines and
 * drains the sockets it refused (at most CONNS_LINGER of them, for at most
 * CONNS_LINGER_S each).
 */
#include "server/internal.h"
#include "slm/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNS_TICK_MS 200
#define CONNS_LINGER 256
#define CONNS_LINGER_S 2.0

struct conn_rec {
    int fd;
    uint8_t addr[16]; /* the client's address, IPv4 as ::ffff:a.b.c.d */
    bool reading;     /* waiting for (the rest of) a request's headers */
    bool served;      /* answered a request before: idle, not slow */
    double deadline;  /* slm_time_mono() by which the headers must be in */
};

struct lingering {
    int fd;
    double until;
};

struct srv_conns {
    struct slm_server *s;
    int lfd;
    int wake[2];
    pthread_t th;
    bool started;
    pthread_mutex_t mu; /* guards recs */
    struct conn_rec *recs;
    size_t n_recs, cap_recs;
    struct lingering lingering[CONNS_LINGER];
    size_t n_lingering;
};

static void addr_key(const struct sockaddr_storage *ss, uint8_t key[16]) {
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
    } else if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
    }
}

static struct conn_rec *find_rec(struct srv_conns *c, int fd) {
    for (size_t i = 0; i < c->n_recs; i++) {
        if (c->recs[i].fd == fd) {
            return &c->recs[i];
        }
    }
    return NULL;
}

static void drop_rec(struct srv_conns *c, struct conn_rec *r) {
    *r = c->recs[--c->n_recs];
}

static int conn_fd(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* ---------------------------------------------------------------- refusals */

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, SLM_MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0) {
            return; /* a refusal is best effort: the socket buffer is empty here */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void send_status(int fd, int status, const char *code, const char *msg) {
    char body[320], head[320];
    int nb = snprintf(body, sizeof(body),
                      "{\"error\":{\"message\":\"%s\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":\"%s\"}}\n",
                      msg, code);
    int nh = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sConnection: close\r\n"
                      "Content-Length: %d\r\n\r\n",
                      status, status == 503 ? "Service Unavailable" : "Request Timeout",
                      status == 503 ? "Retry-After: 1\r\n" : "", nb);
    send_all(fd, head, (size_t)nh);
    send_all(fd, body, (size_t)nb);
}

/* Closes after reading what the client sent, so that the answer is not lost
 * to a reset (closing with unread input sends RST). */
static void linger_close(struct srv_conns *c, int fd) {
    shutdown(fd, SHUT_WR);
    if (c->n_lingering == CONNS_LINGER) {
        close(fd);
        return;
    }
    c->lingering[c->n_lingering++] = (struct lingering){fd, slm_time_mono() + CONNS_LINGER_S};
}

static void drain_lingering(struct srv_conns *c, double now) {
    for (size_t i = 0; i < c->n_lingering;) {
        char buf[4096];
        ssize_t n;
        do {
            n = recv(c->lingering[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
        } while (n > 0);
        bool done = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        if (done || now > c->lingering[i].until) {
            close(c->lingering[i].fd);
            c->lingering[i] = c->lingering[--c->n_lingering];
        } else {
            i++;
        }
    }
}

/* ---------------------------------------------------------------- accepting */

static void refuse(struct srv_conns *c, int fd, const char *why, const char *msg) {
    srv_metrics_reject(c->s->metrics, why);
    SLM_LOG(SLM_LOG_WARN, "refused a connection: %s", msg);
    send_status(fd, 503, why, msg);
    linger_close(c, fd);
}

static void accept_one(struct srv_conns *c) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = slm_accept_cloexec(c->lfd, (struct sockaddr *)&ss, &sl);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            SLM_LOG(SLM_LOG_WARN, "accept: %s (raise ulimit -n or lower --max-connections)",
                    strerror(errno));
            slm_sleep_ms(50); /* the backlog keeps them; do not spin */
        }
        return;
    }
    const struct slm_server_params *p = &c->s->p;
    uint8_t key[16];
    addr_key(&ss, key);
    pthread_mutex_lock(&c->mu);
    uint32_t same = 0;
    for (size_t i = 0; i < c->n_recs; i++) {
        same += memcmp(c->recs[i].addr, key, 16) == 0;
    }
    const char *why = NULL, *msg = NULL;
    if (c->n_recs >= p->max_connections || c->n_recs == c->cap_recs) {
        why = "too_many_connections";
        msg = "the server has as many connections as it takes (slm serve --max-connections); "
              "retry later";
    } else if (same >= p->max_client_connections) {
        why = "too_many_client_connections";
        msg = "this client has as many connections as one client may open (slm serve "
              "--max-client-connections); retry later";
    } else {
        struct conn_rec *r = &c->recs[c->n_recs++];
        r->fd = fd;
        memcpy(r->addr, key, 16);
        r->reading = true;
        r->served = false;
        r->deadline = slm_time_mono() + p->header_timeout;
    }
    pthread_mutex_unlock(&c->mu);
    if (why) {
        refuse(c, fd, why, msg);
        return;
    }
    if (MHD_add_connection(c->s->daemon, fd, (const struct sockaddr *)&ss, sl) != MHD_YES) {
        /* libmicrohttpd closed the socket; its record may be left if it did
         * not get as far as telling us. No accept ran since: fd is ours. */
        pthread_mutex_lock(&c->mu);
        struct conn_rec *r = find_rec(c, fd);
        if (r) {
            drop_rec(c, r);
        }
        pthread_mutex_unlock(&c->mu);
        SLM_LOG(SLM_LOG_WARN, "could not hand a connection to the HTTP library");
    }
}

/* Shuts down the connections whose headers are late. */
static void enforce_deadlines(struct srv_conns *c, double now) {
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_recs; i++) {
        struct conn_rec *r = &c->recs[i];
        if (!r->reading || now <= r->deadline) {
            continue;
        }
        r->reading = false; /* once */
        if (!r->served) {
            srv_metrics_reject(c->s->metrics, "header_timeout");
            send_status(r->fd, 408, "header_timeout",
                        "the request headers did not arrive in time (slm serve --header-timeout)");
        }
        shutdown(r->fd, SHUT_RDWR); /* its thread sees the end and closes */
    }
    pthread_mutex_unlock(&c->mu);
}

static void *conns_main(void *arg) {
    struct srv_conns *c = arg;
    for (;;) {
        struct pollfd pf[2] = {{.fd = c->lfd, .events = POLLIN},
                               {.fd = c->wake[0], .events = POLLIN}};
        int n = poll(pf, 2, CONNS_TICK_MS);
        if (pf[1].revents) {
            break;
        }
        if (n > 0 && (pf[0].revents & POLLIN)) {
            for (int k = 0; k < 64; k++) { /* a burst, then look at the clock */
                accept_one(c);
                struct pollfd more = {.fd = c->lfd, .events = POLLIN};
                if (poll(&more, 1, 0) <= 0) {
                    break;
                }
            }
        }
        double now = slm_time_mono();
        enforce_deadlines(c, now);
        drain_lingering(c, now);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the server's side */

/* File descriptors: one per connection and a margin for models, the store,
 * logs. Raises the soft limit up to the hard one when that is needed. */
static uint32_t fit_fd_limit(uint32_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return want;
    }
    rlim_t need = (rlim_t)want + 128;
    if (rl.rlim_cur < need && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = old;
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        uint32_t fit = rl.rlim_cur > 256 ? (uint32_t)(rl.rlim_cur - 128) : 128;
        SLM_LOG(SLM_LOG_WARN,
                "open files are limited to %llu (ulimit -n): serving at most %u connections, "
                "not %u",
                (unsigned long long)rl.rlim_cur, fit, want);
        return fit;
    }
    return want;
}

int srv_conns_start(struct slm_server *s, int lfd, struct srv_conns **out, struct slm_err *err) {
    *out = NULL;
    s->p.max_connections = fit_fd_limit(s->p.max_connections);
    struct srv_conns *c = calloc(1, sizeof(*c));
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    c->s = s;
    c->lfd = lfd;
    c->wake[0] = c->wake[1] = -1;
    c->cap_recs = s->p.max_connections;
    c->recs = calloc(c->cap_recs, sizeof(*c->recs));
    pthread_mutex_init(&c->mu, NULL);
    int rc = c->recs ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    if (rc == SLM_OK && slm_pipe_cloexec(c->wake) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "cannot make a pipe: %s", strerror(errno));
    }
    if (rc == SLM_OK && fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "cannot set the listening socket non-blocking: %s",
                         strerror(errno));
    }
    if (rc == SLM_OK && pthread_create(&c->th, NULL, conns_main, c) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "cannot start the accepting thread");
    }
    if (rc != SLM_OK) {
        c->lfd = -1; /* the caller still owns it */
        srv_conns_free(c);
        return rc;
    }
    c->started = true;
    *out = c;
    return SLM_OK;
}

void srv_conns_stop(struct srv_conns *c) {
    if (!c) {
        return;
    }
    if (c->started) {
        ssize_t w = write(c->wake[1], "x", 1);
        (void)w;
        pthread_join(c->th, NULL);
        c->started = false;
    }
    for (size_t i = 0; i < c->n_lingering; i++) {
        close(c->lingering[i].fd);
    }
    c->n_lingering = 0;
    if (c->lfd >= 0) {
        close(c->lfd);
        c->lfd = -1;
    }
}

void srv_conns_free(struct srv_conns *c) {
    if (!c) {
        return;
    }
    srv_conns_stop(c);
    for (int i = 0; i < 2; i++) {
        if (c->wake[i] >= 0) {
            close(c->wake[i]);
        }
    }
    pthread_mutex_destroy(&c->mu);
    free(c->recs);
    free(c);
}

void srv_conns_closed(struct srv_conns *c, struct MHD_Connection *conn) {
    int fd = conn_fd(conn);
    pthread_mutex_lock(&c->mu);
    struct conn_rec *r = fd >= 0 ? find_rec(c, fd) : NULL;
    if (r) {
        drop_rec(c, r);
    }
    pthread_mutex_unlock(&c->mu);
}

void srv_conns_request(struct srv_conns *c, struct MHD_Connection *conn, bool begins) {
    int fd = conn_fd(conn);
    pthread_mutex_lock(&c->mu);
    struct conn_rec *r = fd >= 0 ? find_rec(c, fd) : NULL;
    if (r && begins) {
        r->reading = false;
    } else if (r) {
        r->reading = true; /* idle until the next request's headers */
        r->served = true;
        r->deadline = slm_time_mono() + c->s->p.header_timeout;
    }
    pthread_mutex_unlock(&c->mu);
}

size_t srv_conns_open(struct srv_conns *c) {
    pthread_mutex_lock(&c->mu);
    size_t n = c->n_recs;
    pthread_mutex_unlock(&c->mu);
    return n;
}
