/*
 * router/upstream_parse.c - the pure half of the upstream client: parsing what an upstream sends
 * back (chat replies, error bodies, Retry-After) and pricing tokens.
 *
 * Everything here reads untrusted bytes and must never crash or trust a length, a type or a
 * number it was given; tests/fuzz/fuzz_upstream_reply.c exercises it. No state, no allocation
 * beyond the parsed JSON handed to the caller. Thread-safe.
 */
#include "slm/upstream.h"

#include <math.h>
#include <string.h>

#include "slm/json.h"

double slm_upstream_price(const struct slm_upstream_member *m, int64_t tokens_in,
                          int64_t tokens_out) {
    if (!m) {
        return 0.0;
    }
    return (double)SLM_MAX(tokens_in, 0) * m->price_in_per_m / 1e6 +
           (double)SLM_MAX(tokens_out, 0) * m->price_out_per_m / 1e6;
}

/* A usage count: a non-negative integer that fits comfortably, else 0 (an upstream that sends
 * nonsense usage is charged nothing rather than an absurd amount). */
static int64_t usage_count(const json_t *usage, const char *key) {
    const json_t *v = json_object_get(usage, key);
    if (!json_is_integer(v)) {
        return 0;
    }
    json_int_t n = json_integer_value(v);
    return n >= 0 && n <= (json_int_t)1 << 40 ? (int64_t)n : 0;
}

int slm_upstream_parse_reply(const char *data, size_t len, struct slm_upstream_reply *out,
                             struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (len > SLM_UPSTREAM_MAX_REPLY) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "reply of %zu bytes is larger than the %zu cap",
                           len, SLM_UPSTREAM_MAX_REPLY);
    }
    json_t *body = NULL;
    struct slm_err perr;
    if (slm_json_parse(data ? data : "", data ? len : 0, "reply", &body, &perr) != SLM_OK) {
        return slm_err_set(err, SLM_E_CORRUPT, "malformed reply: %s", perr.msg);
    }
    if (!json_is_object(body)) {
        json_decref(body);
        return slm_err_set(err, SLM_E_CORRUPT, "malformed reply: not a JSON object");
    }
    const json_t *choices = json_object_get(body, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0 ||
        !json_is_object(json_array_get(choices, 0))) {
        json_decref(body);
        return slm_err_set(err, SLM_E_CORRUPT, "malformed reply: no \"choices\"");
    }
    const json_t *usage = json_object_get(body, "usage");
    if (json_is_object(usage)) {
        out->tokens_in = usage_count(usage, "prompt_tokens");
        out->tokens_out = usage_count(usage, "completion_tokens");
    }
    out->body = body;
    return SLM_OK;
}

size_t slm_upstream_error_message(const char *data, size_t len, char *out, size_t cap) {
    json_t *body = NULL;
    const char *msg = "";
    size_t n = 0;
    if (data && len <= SLM_UPSTREAM_MAX_REPLY &&
        slm_json_parse(data, len, "error body", &body, NULL) == SLM_OK && json_is_object(body)) {
        const json_t *e = json_object_get(body, "error");
        const json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        if (!json_is_string(m)) {
            m = json_object_get(body, "message");
        }
        if (json_is_string(m)) {
            msg = json_string_value(m);
            n = json_string_length(m);
        }
    }
    /* Keep only printable ASCII: the message ends up in logs and HTTP headers. */
    size_t w = 0;
    for (size_t i = 0; i < n && w + 1 < cap; i++) {
        unsigned char c = (unsigned char)msg[i];
        out[w++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    if (cap > 0) {
        out[w] = '\0';
    }
    json_decref(body);
    return n;
}

static bool digits(struct slm_str s, size_t off, size_t n, int64_t *out) {
    if (off + n > s.len) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s.ptr[off + i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" -> unix seconds; false when it is not that shape. */
static bool parse_imf_fixdate(struct slm_str s, double *out) {
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (s.len != 29 || s.ptr[3] != ',' || s.ptr[4] != ' ' || s.ptr[7] != ' ' || s.ptr[11] != ' ' ||
        s.ptr[16] != ' ' || s.ptr[19] != ':' || s.ptr[22] != ':' || s.ptr[25] != ' ' ||
        memcmp(s.ptr + 26, "GMT", 3) != 0) {
        return false;
    }
    int64_t day, year, hh, mm, ss, mon = -1;
    for (int i = 0; i < 12; i++) {
        if (memcmp(s.ptr + 8, months + 3 * i, 3) == 0) {
            mon = i + 1;
        }
    }
    if (mon < 0 || !digits(s, 5, 2, &day) || !digits(s, 12, 4, &year) || !digits(s, 17, 2, &hh) ||
        !digits(s, 20, 2, &mm) || !digits(s, 23, 2, &ss) || day < 1 || day > 31 || hh > 23 ||
        mm > 59 || ss > 60) {
        return false;
    }
    *out = (double)(slm_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss);
    return true;
}

double slm_upstream_parse_retry_after(const char *value, size_t len, double now_unix) {
    struct slm_str s = slm_str_trim(slm_str_n(value ? value : "", value ? len : 0));
    if (s.len == 0 || s.len > 64) {
        return -1.0;
    }
    double secs;
    if (s.ptr[0] >= '0' && s.ptr[0] <= '9' && slm_parse_f64(s, &secs) == SLM_OK) {
        return isfinite(secs) && secs >= 0 ? secs : -1.0;
    }
    double when;
    if (parse_imf_fixdate(s, &when)) {
        return when > now_unix ? when - now_unix : 0.0;
    }
    return -1.0;
}
