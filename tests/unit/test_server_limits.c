/*
 * test_server_limits.c - what the server survives (issue 14, holes 3 and 4),
 * with the fake backend: slow clients that hold sockets open, too many
 * connections in all and from one address, request headers that never end,
 * bodies past the server's budget, an embedding batch larger than the queue,
 * and the limits that are on by default.
 *
 * Clients come from several loopback addresses (127.0.0.2, ...): Linux
 * routes all of 127.0.0.0/8 to lo, so "other clients" are real other
 * addresses to the server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/headers.h"
#include "test_server_common.h"

static struct fake g_fake;

static void start_with(struct slm_server_params *p) {
    make_home();
    fake_init(&g_fake, "Once upon a time.");
    char mf[PATH_MAX + 64];
    snprintf(mf, sizeof(mf), "FROM %s\n", need_model());
    create_model("stories", mf);
    p->backend = fake_backend(&g_fake);
    p->n_ctx_seq = 1024;
    start_server(p);
}

static void teardown(void) {
    if (g_srv) {
        stop_server();
    }
    slm_model_free(g_fake.model);
    remove_home();
}

TestSuite(server_limits, .fini = teardown);

/* A TCP connection to the server from 127.0.0.`from`. */
static int connect_from(int from) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)from);
    cr_assert_eq(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0, "bind 127.0.0.%d: %s", from,
                 strerror(errno));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(slm_server_port(g_srv))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static void send_str(int fd, const char *s) {
    cr_assert_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* What the server sends on `fd` until it closes or `secs` pass. */
static void read_until_closed(int fd, double secs, char *out, size_t cap) {
    size_t n = 0;
    double end = slm_time_mono() + secs;
    out[0] = '\0';
    while (n + 1 < cap) {
        int left = (int)((end - slm_time_mono()) * 1e3);
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, left) <= 0) {
            break;
        }
        ssize_t r = recv(fd, out + n, cap - 1 - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        out[n] = '\0';
    }
}

/* One request from 127.0.0.`from` on a socket of our own: the status line's
 * code (0 when there is none), and the seconds it took (may be NULL). */
static int status_from(int from, const char *req, double *secs) {
    double t0 = slm_time_mono();
    int fd = connect_from(from);
    send_str(fd, req);
    char buf[4096];
    read_until_closed(fd, 10, buf, sizeof(buf));
    close(fd);
    if (secs) {
        *secs = slm_time_mono() - t0;
    }
    int64_t code = 0;
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0 ||
        slm_parse_i64(slm_str_n(buf + 9, 3), &code) != SLM_OK) {
        return 0;
    }
    return (int)code;
}

static int health_from(int from, double *secs) {
    return status_from(from, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                       secs);
}

Test(server_limits, slow_clients_do_not_starve_others) {
    struct slm_server_params p = slm_server_params_default();
    p.max_client_connections = 64;
    start_with(&p);
    /* 256 clients (64 from each of 4 addresses) that send a header byte and
     * then wait: each holds a connection and its thread. */
    enum { SLOW = 256 };
    int fds[SLOW];
    for (int i = 0; i < SLOW; i++) {
        fds[i] = connect_from(2 + i / 64);
        send_str(fds[i], "G");
    }
    /* Everyone else is still served, promptly. */
    for (int k = 0; k < 3; k++) {
        double secs = 0;
        cr_assert_eq(health_from(1, &secs), 200);
        cr_assert(secs < 1.0, "/health took %.2f s with %d slow sockets open", secs, SLOW);
    }
    /* One client past its share gets an answer that says so, not a reset. */
    int extra = connect_from(2);
    char buf[2048];
    read_until_closed(extra, 5, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503", 12) == 0, "%s", buf);
    cr_assert(strstr(buf, "Retry-After: 1") != NULL, "%s", buf);
    cr_assert(strstr(buf, "max-client-connections") != NULL, "%s", buf);
    close(extra);
    for (int i = 0; i < SLOW; i++) {
        close(fds[i]);
    }
}

Test(server_limits, past_max_connections_is_a_503_not_a_reset) {
    struct slm_server_params p = slm_server_params_default();
    p.max_connections = 8;
    start_with(&p);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = connect_from(2 + i);
        send_str(fds[i], "GET /health HTTP/1.1\r\n");
    }
    slm_sleep_ms(200); /* accepted, each on its thread */
    int fd = connect_from(20);
    send_str(fd, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    char buf[2048];
    read_until_closed(fd, 5, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503", 12) == 0, "%s", buf);
    cr_assert(strstr(buf, "\"code\":\"too_many_connections\"") != NULL, "%s", buf);
    close(fd);
    for (int i = 0; i < 8; i++) {
        close(fds[i]);
    }
    /* The places are free again once those clients are gone. */
    slm_sleep_ms(300);
    double secs;
    cr_assert_eq(health_from(21, &secs), 200);
}

Test(server_limits, headers_that_never_end_get_a_408) {
    struct slm_server_params p = slm_server_params_default();
    p.header_timeout = 0.4;
    start_with(&p);
    int fd = connect_from(2);
    double t0 = slm_time_mono();
    /* A byte every 100 ms: never idle long enough for an idle timeout. */
    const char *req = "GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    bool closed = false;
    for (size_t i = 0; i < strlen(req) && !closed; i++) {
        closed = send(fd, req + i, 1, MSG_NOSIGNAL) != 1;
        slm_sleep_ms(100);
    }
    char buf[2048];
    read_until_closed(fd, 5, buf, sizeof(buf));
    double secs = slm_time_mono() - t0;
    cr_assert(strncmp(buf, "HTTP/1.1 408", 12) == 0, "after %.1f s: '%s'", secs, buf);
    cr_assert(secs < 4.0, "the slow client held on for %.1f s", secs);
    close(fd);
    /* A client that is quick enough is served on the same server. */
    cr_assert_eq(health_from(1, &secs), 200);
}

Test(server_limits, bodies_past_the_budget_are_503) {
    struct slm_server_params p = slm_server_params_default();
    p.max_body = 64 << 10;
    p.max_body_total = 100 << 10;
    start_with(&p);
    /* One client announces 60 KB and sends it slowly: the server holds it. */
    int fd = connect_from(2);
    send_str(fd, "POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 "Content-Length: 60000\r\n\r\n{\"model\":");
    slm_sleep_ms(200);
    /* A second 60 KB body does not fit beside it. */
    size_t n = 60000;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"model\":\"stories\"}", 19);
    big[n] = '\0';
    struct resp r = http("POST", "/api/show", big, NULL);
    cr_assert_eq(r.status, 503, "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(slm_buf_cstr(&r.headers), "Retry-After: 1") != NULL);
    cr_assert(strstr(slm_buf_cstr(&r.body), "max-body-total") != NULL);
    resp_free(&r);
    /* Once the first is gone, it fits. */
    close(fd);
    slm_sleep_ms(300);
    r = http("POST", "/api/show", big, NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    free(big);
}

Test(server_limits, an_embedding_batch_is_one_job) {
    struct slm_server_params p = slm_server_params_default();
    start_with(&p);
    g_fake.max_queue = 16; /* an idle server with a small queue */
    struct slm_buf body = {0};
    slm_buf_init(&body, 1 << 20);
    cr_assert_eq(slm_buf_puts(&body, "{\"model\":\"stories\",\"input\":["), SLM_OK);
    for (int i = 0; i < 300; i++) {
        char item[64];
        snprintf(item, sizeof(item), "%s\"input number %d\"", i ? "," : "", i);
        cr_assert_eq(slm_buf_puts(&body, item), SLM_OK);
    }
    cr_assert_eq(slm_buf_puts(&body, "]}"), SLM_OK);
    struct resp r = http("POST", "/v1/embeddings", slm_buf_cstr(&body), NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *data = json_object_get(r.json, "data");
    cr_assert_eq(json_array_size(data), 300);
    for (size_t i = 0; i < 300; i++) {
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(data, i), "index")),
                     (json_int_t)i);
    }
    resp_free(&r);
    cr_assert_eq(atomic_load(&g_fake.submitted), 300);
    slm_buf_free(&body);
}

Test(server_limits, limits_are_on_by_default) {
    struct slm_server_params p = slm_server_params_default();
    cr_assert_eq(p.max_tokens, SLM_SERVER_DEFAULT_MAX_TOKENS);
    cr_assert(p.max_tokens > 0);
    cr_assert(p.request_timeout > 0);
    cr_assert(p.grammar_budget > 0);
    start_with(&p);
    /* Asking for more than the cap is refused, naming it. */
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"max_tokens\":%d,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}]}",
             SLM_SERVER_DEFAULT_MAX_TOKENS + 1);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 400, "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(err_msg(&r), "at most 4096 tokens") != NULL, "%s", err_msg(&r));
    resp_free(&r);
}

static struct slm_buf g_log;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void capture(enum slm_log_level level, const char *line, void *user) {
    (void)level;
    (void)user;
    pthread_mutex_lock(&g_log_mu);
    cr_assert_eq(slm_buf_puts(&g_log, line), SLM_OK);
    cr_assert_eq(slm_buf_puts(&g_log, "\n"), SLM_OK);
    pthread_mutex_unlock(&g_log_mu);
}

/* Issue 14, hole 7: a name from a request is one field of one access-log
 * line; it cannot add fields or lines. */
Test(server_limits, request_names_cannot_forge_log_lines) {
    struct slm_server_params p = slm_server_params_default();
    start_with(&p);
    slm_buf_init(&g_log, 1 << 20);
    enum slm_log_level old = (enum slm_log_level)slm__log_level;
    slm_log_set_level(SLM_LOG_INFO);
    slm_log_set_sink(capture, NULL);
    struct resp r = http("POST", "/api/pull",
                         "{\"model\":\"https://127.0.0.1:9/m.gguf\\nreq=1 status=200 "
                         "model=forged\",\"stream\":false}",
                         NULL);
    resp_free(&r);
    slm_sleep_ms(200); /* the access line is written when the request completes */
    slm_log_set_sink(NULL, NULL);
    slm_log_set_level(old);
    pthread_mutex_lock(&g_log_mu);
    const char *log = slm_buf_cstr(&g_log);
    const char *line = strstr(log, "route=/api/pull");
    cr_assert_not_null(line, "%s", log);
    cr_assert(strstr(log, "\nreq=1 status=200") == NULL, "%s", log);
    cr_assert(
        strstr(line, "model=\"https://127.0.0.1:9/m.gguf\\nreq=1 status=200 model=forged\"") !=
            NULL,
        "%s", log);
    pthread_mutex_unlock(&g_log_mu);
    slm_buf_free(&g_log);
}

/* A GET /v1/models with these extra header lines: the status code. */
static int health_with(const char *headers) {
    char req[512];
    snprintf(req, sizeof(req), "GET /v1/models HTTP/1.1\r\n%sConnection: close\r\n\r\n", headers);
    return status_from(1, req, NULL);
}

/* Without an API key the server is for this machine only: a web page of
 * another site (Origin) or a DNS name pointed at 127.0.0.1 (DNS rebinding:
 * the Host names the attacker's domain) cannot use it from the user's
 * browser. */
Test(server_limits, foreign_hosts_and_origins_are_refused_without_a_key) {
    struct slm_server_params p = slm_server_params_default();
    start_with(&p);
    cr_assert_eq(health_with("Host: 127.0.0.1\r\n"), 200);
    cr_assert_eq(health_with("Host: localhost:11435\r\n"), 200);
    cr_assert_eq(health_with("Host: [::1]:11435\r\n"), 200);
    cr_assert_eq(health_with("Host: localhost\r\nOrigin: http://localhost:3000\r\n"), 200);
    cr_assert_eq(health_with("Host: rebind.evil.test:11435\r\n"), 403);
    cr_assert_eq(health_with("Host: 127.0.0.1.evil.test\r\n"), 403);
    cr_assert_eq(health_with("Host: 127.0.0.1\r\nOrigin: https://evil.test\r\n"), 403);
    cr_assert_eq(health_with("Host: 127.0.0.1\r\nOrigin: null\r\n"), 403);
}

Test(server_limits, host_and_origin_values) {
    cr_assert(srv_host_is_local("localhost", NULL));
    cr_assert(srv_host_is_local("LOCALHOST:80", NULL));
    cr_assert(srv_host_is_local("app.localhost:80", NULL));
    cr_assert(srv_host_is_local("127.1.2.3:8080", NULL));
    cr_assert(srv_host_is_local("[::1]", NULL));
    cr_assert(srv_host_is_local("laptop:11435", "laptop"));
    cr_assert_not(srv_host_is_local("laptop:11435", NULL));
    cr_assert_not(srv_host_is_local(NULL, NULL));
    cr_assert_not(srv_host_is_local("", NULL));
    cr_assert_not(srv_host_is_local("127.0.0.1.nip.io", NULL));
    cr_assert_not(srv_host_is_local("evillocalhost", NULL));
    cr_assert_not(srv_host_is_local("10.0.0.1", NULL));
    cr_assert_not(srv_host_is_local("::1", NULL)); /* IPv6 needs brackets in a Host */
    cr_assert_not(srv_host_is_local("[::2]:80", NULL));
    cr_assert_not(srv_host_is_local("localhost:80x", NULL));
    cr_assert_not(srv_host_is_local("localhost@evil.test", NULL));
    cr_assert_not(
        srv_host_is_local("\xff\x30\x0c\x81.localhost", NULL)); /* found by fuzz_http_header */
    cr_assert_not(srv_host_is_local("a b.localhost", NULL));
    cr_assert(srv_origin_is_local("http://127.0.0.1:3000", NULL));
    cr_assert(srv_origin_is_local("https://localhost", NULL));
    cr_assert_not(srv_origin_is_local("null", NULL));
    cr_assert_not(srv_origin_is_local("https://evil.test", NULL));
    cr_assert_not(srv_origin_is_local("http://localhost/x", NULL));
    cr_assert_not(srv_origin_is_local("file://localhost", NULL));
}
