/*
 * tests/tools/fake_cloud.c - an honest fake of an OpenAI-compatible cloud for router tests, on
 * libmicrohttpd, bound to 127.0.0.1. It is wrong sometimes, slow, failing, rate limiting and
 * charging per token, like the real thing.
 *
 *   fake_cloud [--port N] [--gold FILE] [--accuracy P] [--seed S] [--latency-ms N[:JITTER]]
 *              [--faults SPEC] [--fail-rate R] [--retry-after S|date:S] [--price-in X]
 *              [--price-out Y] [--log FILE] [--api-key K] [--tokens words|bytes4]
 *              [--model NAME] [--hang-s S] [--mix KIND:P,...]
 *
 *   POST /v1/chat/completions  answers the last user message: the --gold answer (JSONL lines
 *                              {"input": "...", "answer": "..."}) with probability P (default
 *                              1), else another gold answer, chosen deterministically from
 *                              hash(input, seed); "I don't know." for inputs not in the gold file
 *                              (still charged). usage counts whitespace words (default) or
 *                              ceil(bytes / 4) over every message's content and the answer.
 *                              With "response_format": {"type": "json_schema"} whose schema is an
 *                              object of one required property P with an "enum" (a label task),
 *                              the answer is {"P": answer}. A judge (a schema with "score", "pass"
 * or "winner") reads the <reference>, <answer>, <answer_a> and <answer_b> tags of the message and
 * grades by equality (trimmed, case folded): score 5 or 1, pass true or false, winner the one equal
 * to the reference (else "tie"); with probability 1 - --judge-accuracy (deterministic from the
 * message) it is wrong: 6 - score, not pass, and winner "A" whatever the order (the position bias
 * real judges have). GET  /v1/models            {"object": "list", "data": [{"id": MODEL}]} (for
 * health checks)
 *
 * --faults applies to successive chat requests, then they are ok: a comma list of KIND[xN] where
 * KIND is an HTTP status (429, 500, 401, ...), "ok", "timeout" (hold the request --hang-s seconds,
 * default 30, then 504), "reset" (close the connection without a response), "malformed" (200
 * with a body that is not JSON) or "nousage" (200 without "usage"). --fail-rate R turns a share R
 * of the remaining requests into 500s (deterministic from the seed). --mix spreads faults over
 * the whole run instead: each request after --faults is KIND with probability P (the KINDs of
 * --faults; deterministic from the seed and the request's number), e.g.
 * "500:0.08,429:0.05,timeout:0.01". 429s carry Retry-After: S,
 * or an HTTP-date S seconds ahead with "date:S". --api-key K: requests without "Authorization:
 * Bearer K" get 401, whose message hints at the key they sent ("sk-test-****cdef"), as the real
 * clouds' do. "timeoutxN --hang-s 600" is an upstream that hangs.
 *
 * Port 0 (the default) lets the system pick; the first stdout line is "port=N". --log FILE gets
 * one JSON line per chat request it answered or refused: {"time", "n", "client_port" (the
 * client's source port), "status" (0 for reset and timeout), "fault", "model", "prompt_tokens",
 * "completion_tokens", "charge", "input", "answer"}; charge = prompt_tokens * price_in / 1e6 +
 * completion_tokens * price_out / 1e6, 0 unless 200. Runs until SIGTERM or SIGINT. A test tool: it
 * prints its own errors.
 */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "slm/json.h"

enum fault_kind {
    FAULT_OK,
    FAULT_STATUS,
    FAULT_TIMEOUT,
    FAULT_RESET,
    FAULT_MALFORMED,
    FAULT_NOUSAGE
};

struct fault {
    enum fault_kind kind;
    int status;
};

struct gold {
    char *input, *answer;
};

static struct {
    unsigned port;
    struct gold *gold;
    size_t n_gold;
    double accuracy, judge_accuracy;
    uint64_t seed;
    long latency_ms, jitter_ms;
    struct fault *faults;
    size_t n_faults;
    double fail_rate;
    struct fault mix[16];
    double mix_p[16];
    size_t n_mix;
    const char *retry_after;
    double price_in, price_out;
    const char *log_path;
    const char *api_key;
    bool tokens_bytes4;
    const char *model;
    double hang_s;
} g_opt = {.accuracy = 1.0, .judge_accuracy = 1.0, .model = "fake-cloud", .hang_s = 30.0};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_count; /* chat requests seen */
static volatile sig_atomic_t g_stop;

/* ---------------------------------------------------------------- helpers */

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static double unit(uint64_t h) {
    return (double)(h >> 11) / 9007199254740992.0;
}

static int64_t count_tokens(struct slm_str s) {
    if (g_opt.tokens_bytes4) {
        return (int64_t)((s.len + 3) / 4);
    }
    int64_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.len; i++) {
        bool space = s.ptr[i] == ' ' || s.ptr[i] == '\n' || s.ptr[i] == '\t' || s.ptr[i] == '\r';
        n += !space && !in_word;
        in_word = !space;
    }
    return n;
}

/* A message's text: a string, or the "text" of an array of parts. */
static void append_content(const json_t *content, struct slm_buf *out) {
    int rc = 0;
    if (json_is_string(content)) {
        rc |= slm_buf_append_str(out, slm_json_str(content));
    } else if (json_is_array(content)) {
        size_t i;
        const json_t *part;
        json_array_foreach(content, i, part) {
            rc |= slm_buf_append_str(out, slm_json_str(json_object_get(part, "text")));
        }
    }
    (void)rc; /* a capped buffer that overflowed just counts fewer tokens */
}

static const char *lookup_answer(const char *input) {
    for (size_t i = 0; i < g_opt.n_gold; i++) {
        if (strcmp(g_opt.gold[i].input, input) == 0) {
            uint64_t h = hash_bytes(input, strlen(input), g_opt.seed);
            if (unit(h) < g_opt.accuracy || g_opt.n_gold < 2) {
                return g_opt.gold[i].answer;
            }
            /* Wrong, deterministically: another gold answer that differs from the right one. */
            size_t j = (size_t)(hash_bytes(&h, sizeof(h), g_opt.seed + 1) % g_opt.n_gold);
            for (size_t k = 0; k < g_opt.n_gold; k++) {
                const char *a = g_opt.gold[(j + k) % g_opt.n_gold].answer;
                if (strcmp(a, g_opt.gold[i].answer) != 0) {
                    return a;
                }
            }
            return g_opt.gold[i].answer;
        }
    }
    return "I don't know.";
}

static void log_line(unsigned client_port, uint64_t n, int status, const char *fault,
                     const char *model, int64_t pt, int64_t ct, double charge, const char *input,
                     const char *answer) {
    if (!g_opt.log_path) {
        return;
    }
    json_t *o =
        json_pack("{s:f, s:I, s:i, s:i, s:s, s:s, s:I, s:I, s:f, s:s, s:s}", "time",
                  (double)slm_time_unix_ms() / 1000.0, "n", (json_int_t)n, "client_port",
                  (int)client_port, "status", status, "fault", fault, "model", model ? model : "",
                  "prompt_tokens", (json_int_t)pt, "completion_tokens", (json_int_t)ct, "charge",
                  charge, "input", input ? input : "", "answer", answer ? answer : "");
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    pthread_mutex_lock(&g_lock);
    FILE *f = line ? fopen(g_opt.log_path, "a") : NULL;
    if (f) {
        fprintf(f, "%s\n", line);
        fclose(f);
    }
    pthread_mutex_unlock(&g_lock);
    free(line);
    json_decref(o);
}

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *body,
                                 const char *retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after) {
        MHD_add_response_header(r, "Retry-After", retry_after);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *retry_after) {
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "message", msg, "type", "fake_cloud");
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum MHD_Result ret = send_body(c, status, body ? body : "{}", retry_after);
    free(body);
    json_decref(o);
    return ret;
}

/* "Retry-After" for a 429: verbatim seconds, or an IMF-fixdate S seconds ahead. */
static const char *retry_after_value(char *buf, size_t cap) {
    if (!g_opt.retry_after) {
        return NULL;
    }
    if (strncmp(g_opt.retry_after, "date:", 5) != 0) {
        return g_opt.retry_after;
    }
    double s = 0;
    slm_parse_f64(slm_str_c(g_opt.retry_after + 5), &s);
    time_t t = time(NULL) + (time_t)ceil(s);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

/* ---------------------------------------------------------------- chat */

static struct fault next_fault(uint64_t n) {
    if (n <= g_opt.n_faults) {
        return g_opt.faults[n - 1];
    }
    double u = unit(hash_bytes(&n, sizeof(n), g_opt.seed + 11)), acc = 0;
    for (size_t i = 0; i < g_opt.n_mix; i++) {
        acc += g_opt.mix_p[i];
        if (u < acc) {
            return g_opt.mix[i];
        }
    }
    if (g_opt.fail_rate > 0 && unit(hash_bytes(&n, sizeof(n), g_opt.seed + 7)) < g_opt.fail_rate) {
        return (struct fault){FAULT_STATUS, 500};
    }
    return (struct fault){FAULT_OK, 200};
}

static void sleep_latency(uint64_t n) {
    long ms = g_opt.latency_ms;
    if (g_opt.jitter_ms > 0) {
        ms += (long)(unit(hash_bytes(&n, sizeof(n), g_opt.seed + 3)) * (double)g_opt.jitter_ms);
    }
    slm_sleep_ms(ms);
}

/* The client's source port: the same one on successive lines means a kept-alive connection. */
static unsigned client_port(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr || ci->client_addr->sa_family != AF_INET) {
        return 0;
    }
    return ntohs(((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_port);
}

static bool authorized(struct MHD_Connection *c) {
    if (!g_opt.api_key) {
        return true;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, g_opt.api_key) == 0;
}

/* A 401 as a real cloud words it: with a hint of the key it was given (its first
 * characters and last four), which is why the client must never pass it on. */
static enum MHD_Result send_unauthorized(struct MHD_Connection *c) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *key = auth && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : "";
    size_t n = strlen(key);
    char msg[256];
    if (n >= 8) {
        size_t head = SLM_MIN(n / 2, 8);
        snprintf(msg, sizeof(msg),
                 "Incorrect API key provided: %.*s****%s. You can find your API key at "
                 "https://platform.example/account/api-keys.",
                 (int)head, key, key + n - 4);
    } else {
        snprintf(msg, sizeof(msg), "Incorrect API key provided.");
    }
    return send_error(c, 401, msg, NULL);
}

struct parsed {
    json_t *req;
    const char *model;
    char *input; /* last user message */
    int64_t prompt_tokens;
};

static bool parse_chat(const struct slm_buf *body, struct parsed *p) {
    memset(p, 0, sizeof(*p));
    if (slm_json_parse(slm_buf_cstr(body), body->len, "request", &p->req, NULL) != SLM_OK) {
        return false;
    }
    const json_t *msgs = json_object_get(p->req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return false;
    }
    p->model = json_string_value(json_object_get(p->req, "model"));
    struct slm_buf all = {0}, last = {0};
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const json_t *content = json_object_get(m, "content");
        append_content(content, &all);
        int rc = slm_buf_putc(&all, '\n');
        (void)rc;
        if (slm_str_eq_c(slm_json_str(json_object_get(m, "role")), "user")) {
            slm_buf_clear(&last);
            append_content(content, &last);
        }
    }
    p->prompt_tokens = count_tokens(slm_buf_str(&all));
    p->input = slm_buf_take(&last);
    slm_buf_free(&all);
    return p->input != NULL;
}

/* The text between <tag> and </tag> in `s`, trimmed (malloc'ed), or NULL. */
static char *tag_text(const char *s, const char *tag) {
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(s, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (!b) {
        return NULL;
    }
    return slm_str_dup(slm_str_trim(slm_str_n(a + strlen(open), (size_t)(b - a) - strlen(open))));
}

static bool same_answer(const char *x, const char *y) {
    return x && y && strcasecmp(x, y) == 0;
}

/* A judge's verdict on the tagged message, as JSON text (malloc'ed). */
static char *judge_answer(const char *input, const char *key) {
    char *ref = tag_text(input, "reference"), *ans = tag_text(input, "answer");
    char *a = tag_text(input, "answer_a"), *b = tag_text(input, "answer_b");
    bool wrong = unit(hash_bytes(input, strlen(input), g_opt.seed + 7)) >= g_opt.judge_accuracy;
    json_t *o = NULL;
    if (strcmp(key, "score") == 0) {
        int score = same_answer(ans, ref) ? 5 : 1;
        o = json_pack("{s:i, s:s}", "score", wrong ? 6 - score : score, "reason",
                      score == 5 ? "matches the reference" : "differs from the reference");
    } else if (strcmp(key, "pass") == 0) {
        bool pass = same_answer(ans, ref) != wrong;
        o = json_pack("{s:b, s:s}", "pass", pass, "reason",
                      pass ? "agrees with the reference" : "disagrees with the reference");
    } else {
        bool ra = same_answer(a, ref), rb = same_answer(b, ref);
        const char *w = wrong ? "A" : ra && !rb ? "A" : rb && !ra ? "B" : "tie";
        o = json_pack("{s:s, s:s}", "winner", w, "reason", "compared with the reference");
    }
    char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    free(ref);
    free(ans);
    free(a);
    free(b);
    return out;
}

/* What a structured request gets: a judge's verdict, a label wrapped in its one property, or
 * NULL (plain text). */
static char *structured_answer(const struct parsed *p, const char *answer) {
    const json_t *rf = json_object_get(p->req, "response_format");
    const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    const json_t *props = json_object_get(schema, "properties");
    if (!json_is_object(props)) {
        return NULL;
    }
    static const char *const judge_keys[] = {"score", "pass", "winner"};
    for (size_t i = 0; i < 3; i++) {
        if (json_object_get(props, judge_keys[i])) {
            return judge_answer(p->input, judge_keys[i]);
        }
    }
    const json_t *req = json_object_get(schema, "required");
    const char *key = json_string_value(json_array_get(req, 0));
    if (!key || json_array_size(req) != 1 ||
        !json_is_array(json_object_get(json_object_get(props, key), "enum"))) {
        return NULL;
    }
    json_t *o = json_pack("{s:s}", key, answer);
    char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return out;
}

static enum MHD_Result answer_ok(struct MHD_Connection *c, uint64_t n, const struct parsed *p,
                                 enum fault_kind kind) {
    char *structured = structured_answer(p, lookup_answer(p->input));
    const char *answer = structured ? structured : lookup_answer(p->input);
    int64_t ct = count_tokens(slm_str_c(answer));
    double charge =
        (double)p->prompt_tokens * g_opt.price_in / 1e6 + (double)ct * g_opt.price_out / 1e6;
    const char *model = p->model ? p->model : g_opt.model;
    if (kind == FAULT_MALFORMED) {
        log_line(client_port(c), n, 200, "malformed", model, p->prompt_tokens, ct, charge, p->input,
                 answer);
        free(structured);
        return send_body(c, 200, "{\"id\": \"chatcmpl-x\", \"choices\": [", NULL);
    }
    char id[48];
    snprintf(id, sizeof(id), "chatcmpl-fake-%llu", (unsigned long long)n);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:s}]}", "id", id, "object",
                          "chat.completion", "created", (json_int_t)time(NULL), "model", model,
                          "choices", "index", 0, "message", "role", "assistant", "content", answer,
                          "finish_reason", "stop");
    if (o && kind != FAULT_NOUSAGE) {
        json_object_set_new(o, "usage",
                            json_pack("{s:I, s:I, s:I}", "prompt_tokens",
                                      (json_int_t)p->prompt_tokens, "completion_tokens",
                                      (json_int_t)ct, "total_tokens",
                                      (json_int_t)(p->prompt_tokens + ct)));
    }
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    log_line(client_port(c), n, 200, kind == FAULT_NOUSAGE ? "nousage" : "ok", model,
             p->prompt_tokens, ct, charge, p->input, answer);
    enum MHD_Result ret = send_body(c, 200, body ? body : "{}", NULL);
    free(body);
    free(structured);
    json_decref(o);
    return ret;
}

static enum MHD_Result serve_chat(struct MHD_Connection *c, const struct slm_buf *body) {
    pthread_mutex_lock(&g_lock);
    uint64_t n = ++g_count;
    pthread_mutex_unlock(&g_lock);
    struct parsed p;
    bool ok = parse_chat(body, &p);
    const char *model = p.model ? p.model : g_opt.model;
    enum MHD_Result ret;
    struct fault f = next_fault(n);
    sleep_latency(n);
    char date[64];
    if (!authorized(c)) {
        log_line(client_port(c), n, 401, "auth", model, 0, 0, 0, p.input, NULL);
        ret = send_unauthorized(c);
    } else if (!ok) {
        log_line(client_port(c), n, 400, "bad_request", model, 0, 0, 0, p.input, NULL);
        ret = send_error(c, 400, "'messages' must be a non-empty array", NULL);
    } else if (f.kind == FAULT_STATUS && f.status != 200) {
        log_line(client_port(c), n, f.status, "injected", model, 0, 0, 0, p.input, NULL);
        ret = send_error(c, (unsigned)f.status,
                         f.status == 429 ? "Rate limit reached (injected)" : "injected failure",
                         f.status == 429 ? retry_after_value(date, sizeof(date)) : NULL);
    } else if (f.kind == FAULT_RESET) {
        log_line(client_port(c), n, 0, "reset", model, 0, 0, 0, p.input, NULL);
        ret = MHD_NO; /* libmicrohttpd closes the connection without a response */
    } else if (f.kind == FAULT_TIMEOUT) {
        log_line(client_port(c), n, 0, "timeout", model, 0, 0, 0, p.input, NULL);
        double until = slm_time_mono() + g_opt.hang_s;
        while (!g_stop && slm_time_mono() < until) {
            slm_sleep_ms(10);
        }
        ret = send_error(c, 504, "timed out (injected)", NULL);
    } else {
        ret = answer_ok(c, n, &p, f.kind);
    }
    free(p.input);
    json_decref(p.req);
    return ret;
}

/* ---------------------------------------------------------------- server */

static enum MHD_Result serve_models(struct MHD_Connection *c) {
    if (!authorized(c)) {
        return send_unauthorized(c);
    }
    json_t *o = json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "object", "list", "data", "id", g_opt.model,
                          "object", "model", "owned_by", "fake_cloud");
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum MHD_Result ret = send_body(c, 200, body ? body : "{}", NULL);
    free(body);
    json_decref(o);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    (void)cls;
    (void)version;
    if (*state == NULL) {
        struct slm_buf *b = calloc(1, sizeof(*b));
        if (!b) {
            return MHD_NO;
        }
        slm_buf_init(b, (size_t)8 << 20);
        *state = b;
        return MHD_YES;
    }
    struct slm_buf *b = *state;
    if (*upload_size > 0) {
        if (slm_buf_append(b, upload, *upload_size) != SLM_OK) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/chat/completions") == 0) {
        return serve_chat(c, b);
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/v1/models") == 0) {
        return serve_models(c);
    }
    return send_error(c, 404, "no such route", NULL);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode why) {
    (void)cls;
    (void)c;
    (void)why;
    struct slm_buf *b = *state;
    if (b) {
        slm_buf_free(b);
        free(b);
        *state = NULL;
    }
}

/* ---------------------------------------------------------------- options */

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int load_gold(const char *path) {
    struct slm_buf text = {0};
    struct slm_err err;
    if (slm_file_read(path, 0, &text, &err) != SLM_OK) {
        fprintf(stderr, "fake_cloud: %s\n", err.msg);
        return -1;
    }
    struct slm_str all = slm_buf_str(&text);
    size_t pos = 0, line_no = 0;
    while (pos < all.len) {
        size_t nl = slm_str_find_char(all, '\n', pos);
        size_t end = nl == SIZE_MAX ? all.len : nl;
        struct slm_str line = slm_str_trim(slm_str_sub(all, pos, end - pos));
        pos = end + 1;
        line_no++;
        if (line.len == 0) {
            continue;
        }
        json_t *o = NULL;
        const char *in = NULL, *ans = NULL;
        if (slm_json_parse(line.ptr, line.len, path, &o, &err) != SLM_OK ||
            slm_json_get_str(o, "input", NULL, &in, &err) != SLM_OK ||
            slm_json_get_str(o, "answer", NULL, &ans, &err) != SLM_OK || !in || !ans) {
            fprintf(stderr, "fake_cloud: %s:%zu: needs string \"input\" and \"answer\"\n", path,
                    line_no);
            json_decref(o);
            slm_buf_free(&text);
            return -1;
        }
        struct gold *g = realloc(g_opt.gold, (g_opt.n_gold + 1) * sizeof(*g));
        if (!g) {
            abort();
        }
        g_opt.gold = g;
        g[g_opt.n_gold].input = slm_str_dup(slm_str_c(in));
        g[g_opt.n_gold].answer = slm_str_dup(slm_str_c(ans));
        g_opt.n_gold++;
        json_decref(o);
    }
    slm_buf_free(&text);
    return 0;
}

static int parse_fault(struct slm_str tok) {
    int64_t times = 1;
    size_t x = slm_str_find_char(tok, 'x', 0);
    if (x != SIZE_MAX) {
        if (slm_parse_i64(slm_str_sub(tok, x + 1, tok.len), &times) != SLM_OK || times < 1 ||
            times > 100000) {
            return -1;
        }
        tok = slm_str_sub(tok, 0, x);
    }
    struct fault f = {FAULT_STATUS, 0};
    int64_t status;
    if (slm_str_eq_c(tok, "ok")) {
        f = (struct fault){FAULT_OK, 200};
    } else if (slm_str_eq_c(tok, "timeout")) {
        f.kind = FAULT_TIMEOUT;
    } else if (slm_str_eq_c(tok, "reset")) {
        f.kind = FAULT_RESET;
    } else if (slm_str_eq_c(tok, "malformed")) {
        f.kind = FAULT_MALFORMED;
    } else if (slm_str_eq_c(tok, "nousage")) {
        f.kind = FAULT_NOUSAGE;
    } else if (slm_parse_i64(tok, &status) == SLM_OK && status >= 200 && status <= 599) {
        f.status = (int)status;
    } else {
        return -1;
    }
    struct fault *all = realloc(g_opt.faults, (g_opt.n_faults + (size_t)times) * sizeof(*all));
    if (!all) {
        abort();
    }
    g_opt.faults = all;
    for (int64_t i = 0; i < times; i++) {
        all[g_opt.n_faults++] = f;
    }
    return 0;
}

static int parse_faults(const char *spec) {
    struct slm_str s = slm_str_c(spec);
    size_t pos = 0;
    while (pos <= s.len) {
        size_t comma = slm_str_find_char(s, ',', pos);
        size_t end = comma == SIZE_MAX ? s.len : comma;
        struct slm_str tok = slm_str_trim(slm_str_sub(s, pos, end - pos));
        if (tok.len > 0 && parse_fault(tok) != 0) {
            fprintf(stderr, "fake_cloud: bad fault '%.*s' in --faults\n", (int)tok.len, tok.ptr);
            return -1;
        }
        pos = end + 1;
    }
    return 0;
}

/* --mix: KIND:P,... ; parse_fault appends to g_opt.faults, so each KIND is
 * parsed there and moved here. */
static int parse_mix(const char *spec) {
    struct slm_str s = slm_str_c(spec);
    size_t pos = 0;
    double total = 0;
    while (pos <= s.len) {
        size_t comma = slm_str_find_char(s, ',', pos);
        size_t end = comma == SIZE_MAX ? s.len : comma;
        struct slm_str tok = slm_str_trim(slm_str_sub(s, pos, end - pos));
        size_t colon = slm_str_find_char(tok, ':', 0);
        double p;
        size_t had = g_opt.n_faults;
        if (tok.len > 0 &&
            (colon == SIZE_MAX || g_opt.n_mix == SLM_ARRAY_LEN(g_opt.mix) ||
             slm_parse_f64(slm_str_sub(tok, colon + 1, tok.len), &p) != SLM_OK || p < 0 ||
             (total += p) > 1 || parse_fault(slm_str_sub(tok, 0, colon)) != 0 ||
             g_opt.n_faults != had + 1)) {
            fprintf(stderr,
                    "fake_cloud: bad '%.*s' in --mix (KIND:P, the P summing to 1 at most)\n",
                    (int)tok.len, tok.ptr);
            return -1;
        }
        if (tok.len > 0) {
            g_opt.mix[g_opt.n_mix] = g_opt.faults[--g_opt.n_faults];
            g_opt.mix_p[g_opt.n_mix++] = p;
        }
        pos = end + 1;
    }
    return 0;
}

static bool num(const char *flag, const char *v, double *out) {
    if (!v || slm_parse_f64(slm_str_c(v), out) != SLM_OK || *out < 0) {
        fprintf(stderr, "fake_cloud: %s expects a non-negative number\n", flag);
        return false;
    }
    return true;
}

static bool parse_latency(const char *v) {
    struct slm_str s = slm_str_c(v);
    size_t colon = slm_str_find_char(s, ':', 0);
    int64_t base, jitter = 0;
    if (slm_parse_i64(slm_str_sub(s, 0, colon == SIZE_MAX ? s.len : colon), &base) != SLM_OK ||
        base < 0 ||
        (colon != SIZE_MAX &&
         (slm_parse_i64(slm_str_sub(s, colon + 1, s.len), &jitter) != SLM_OK || jitter < 0))) {
        fprintf(stderr, "fake_cloud: --latency-ms expects N or N:JITTER\n");
        return false;
    }
    g_opt.latency_ms = (long)base;
    g_opt.jitter_ms = (long)jitter;
    return true;
}

/* One flag with its value; returns the number of argv entries used, or -1. */
static int parse_flag(const char *a, const char *v) {
    double d;
    if (!v) {
        return -1;
    }
    if (strcmp(a, "--port") == 0) {
        if (!num(a, v, &d) || d > 65535) {
            return -1;
        }
        g_opt.port = (unsigned)d;
    } else if (strcmp(a, "--gold") == 0) {
        return load_gold(v) == 0 ? 2 : -1;
    } else if (strcmp(a, "--judge-accuracy") == 0) {
        if (!num(a, v, &g_opt.judge_accuracy) || g_opt.judge_accuracy > 1) {
            return -1;
        }
    } else if (strcmp(a, "--accuracy") == 0 || strcmp(a, "--fail-rate") == 0) {
        if (!num(a, v, &d) || d > 1) {
            return -1;
        }
        *(a[2] == 'a' ? &g_opt.accuracy : &g_opt.fail_rate) = d;
    } else if (strcmp(a, "--seed") == 0) {
        if (slm_parse_u64(slm_str_c(v), &g_opt.seed) != SLM_OK) {
            return -1;
        }
    } else if (strcmp(a, "--latency-ms") == 0) {
        return parse_latency(v) ? 2 : -1;
    } else if (strcmp(a, "--faults") == 0) {
        return parse_faults(v) == 0 ? 2 : -1;
    } else if (strcmp(a, "--mix") == 0) {
        return parse_mix(v) == 0 ? 2 : -1;
    } else if (strcmp(a, "--retry-after") == 0) {
        g_opt.retry_after = v;
    } else if (strcmp(a, "--price-in") == 0) {
        return num(a, v, &g_opt.price_in) ? 2 : -1;
    } else if (strcmp(a, "--price-out") == 0) {
        return num(a, v, &g_opt.price_out) ? 2 : -1;
    } else if (strcmp(a, "--hang-s") == 0) {
        return num(a, v, &g_opt.hang_s) ? 2 : -1;
    } else if (strcmp(a, "--log") == 0) {
        g_opt.log_path = v;
    } else if (strcmp(a, "--api-key") == 0) {
        g_opt.api_key = v;
    } else if (strcmp(a, "--model") == 0) {
        g_opt.model = v;
    } else if (strcmp(a, "--tokens") == 0) {
        if (strcmp(v, "words") != 0 && strcmp(v, "bytes4") != 0) {
            return -1;
        }
        g_opt.tokens_bytes4 = strcmp(v, "bytes4") == 0;
    } else {
        return -1;
    }
    return 2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc;) {
        int used = parse_flag(argv[i], i + 1 < argc ? argv[i + 1] : NULL);
        if (used < 0) {
            fprintf(stderr, "fake_cloud: bad or unknown option '%s' (see the file's comment)\n",
                    argv[i]);
            return 2;
        }
        i += used;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)g_opt.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fake_cloud: cannot listen on 127.0.0.1:%u\n", g_opt.port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port=%u\n", info ? info->port : 0);
    fflush(stdout);
    while (!g_stop) {
        pause();
    }
    MHD_stop_daemon(d);
    for (size_t i = 0; i < g_opt.n_gold; i++) {
        free(g_opt.gold[i].input);
        free(g_opt.gold[i].answer);
    }
    free(g_opt.gold);
    free(g_opt.faults);
    return 0;
}
