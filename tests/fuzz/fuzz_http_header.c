/*
 * fuzz_http_header.c - libFuzzer harness for the HTTP header values slm
 * reads from the other side: Content-Length and Authorization / X-Api-Key as
 * the server reads them (server/headers.h), Retry-After as the router reads
 * an upstream's (slm_upstream_parse_retry_after).
 *
 * Input: the bytes up to the first '\n' are the server's API key, the rest
 * the header value (cut at a NUL, as libmicrohttpd hands over C strings).
 * Each parser is checked against what RFC 9110 / RFC 6750 say it accepts:
 *  - Content-Length parses exactly when the value is 1*DIGIT, to its value
 *    (UINT64_MAX past it);
 *  - a key is accepted only when it is the Bearer credential or, without a
 *    Bearer Authorization, the X-Api-Key value; "Bearer <key>" always is;
 *  - Retry-After is -1 or a finite wait >= 0, delta-seconds give their value,
 *    and an IMF-fixdate written from the input's first bytes reads back;
 *  - a Host accepted as loopback has no userinfo, path, space or control
 *    byte, and stays accepted with a port added; an Origin accepted is
 *    "http(s)://" and such a Host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "server/headers.h"
#include "slm/upstream.h"

static bool all_digits(const char *s) {
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

static void check_content_length(const char *v) {
    uint64_t n = 0;
    int rc = srv_content_length(v, &n);
    if ((rc == SLM_OK) != all_digits(v)) {
        abort();
    }
    if (rc == SLM_OK) {
        errno = 0;
        unsigned long long ref = strtoull(v, NULL, 10);
        if (n != (errno == ERANGE ? UINT64_MAX : (uint64_t)ref)) {
            abort();
        }
    }
}

/* RFC 6750: "Bearer" 1*SP token; the scheme is case-insensitive. */
static bool bearer_is(const char *auth, const char *want) {
    if (strncasecmp(auth, "Bearer ", 7) != 0) {
        return false;
    }
    auth += 7;
    while (*auth == ' ') {
        auth++;
    }
    return strcmp(auth, want) == 0;
}

static void check_auth(const char *want, const char *v) {
    bool is_bearer = strncasecmp(v, "Bearer ", 7) == 0;
    if (srv_api_key_ok(v, NULL, want) != bearer_is(v, want)) {
        abort();
    }
    if (srv_api_key_ok(NULL, v, want) != (strcmp(v, want) == 0)) {
        abort();
    }
    /* A Bearer Authorization decides alone, even next to the right X-Api-Key. */
    if (srv_api_key_ok(v, want, want) != (is_bearer ? bearer_is(v, want) : true)) {
        abort();
    }
    if (srv_api_key_ok(NULL, NULL, want)) {
        abort();
    }
    if (want[0] != ' ' && strlen(want) < 512) {
        char good[600];
        snprintf(good, sizeof(good), "bEaReR   %s", want);
        if (!srv_api_key_ok(good, NULL, want)) {
            abort();
        }
    }
}

static void check_retry_after(const char *v, size_t len, const uint8_t *data, size_t size) {
    double now = 1.7e9;
    double w = slm_upstream_parse_retry_after(v, len, now);
    if (!(w == -1.0 || (w >= 0 && isfinite(w)))) {
        abort();
    }
    if (len > 0 && len <= 15 && all_digits(v) && w != (double)strtoull(v, NULL, 10)) {
        abort(); /* delta-seconds */
    }
    if (size >= 4) {
        /* An HTTP-date 0..2^32 s after 1970 reads back as its distance from now. */
        time_t t = (time_t)((uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                            (uint32_t)data[3] << 24);
        struct tm tm;
        char date[64];
        if (gmtime_r(&t, &tm) &&
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0) {
            double d = slm_upstream_parse_retry_after(date, strlen(date), (double)t - 10.0);
            double past = slm_upstream_parse_retry_after(date, strlen(date), (double)t + 10.0);
            if (d != 10.0 || past != 0.0) {
                abort();
            }
        }
    }
}

static void check_host(const char *v) {
    if (srv_host_is_local(v, "myhost")) {
        for (const char *p = v; *p; p++) {
            if (*p == '/' || *p == '@' || (unsigned char)*p <= ' ' || *p == 0x7f) {
                abort();
            }
        }
        if (!strchr(v, ':') || v[0] == '[') {
            char with_port[4200];
            snprintf(with_port, sizeof(with_port), "%s:8080", v);
            if (strchr(v, ']') && !strstr(v, "]:") && !srv_host_is_local(with_port, "myhost")) {
                abort();
            }
            if (!strchr(v, '[') && !srv_host_is_local(with_port, "myhost")) {
                abort();
            }
        }
    }
    if (srv_origin_is_local(v, "myhost") && strncasecmp(v, "http://", 7) != 0 &&
        strncasecmp(v, "https://", 8) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) {
        return 0;
    }
    char *text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    char *nl = strchr(text, '\n');
    const char *want = "";
    const char *value = text;
    if (nl) {
        *nl = '\0';
        want = text;
        value = nl + 1;
    }
    check_content_length(value);
    check_auth(want, value);
    check_retry_after(value, strlen(value), data, size);
    check_host(value);
    free(text);
    return 0;
}
