/*
 * headers.c - request header values read before the body (server/headers.h).
 */
#include "server/headers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "slm/base.h"

int srv_content_length(const char *value, uint64_t *out) {
    if (!value || !value[0]) {
        return SLM_E_INVALID;
    }
    uint64_t v = 0;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9') {
            return SLM_E_INVALID;
        }
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return SLM_OK;
}

/* Compares in time that depends on strlen(want) only. */
static bool key_matches(const char *given, const char *want) {
    size_t gl = strlen(given), wl = strlen(want);
    unsigned diff = gl != wl;
    for (size_t i = 0; i < wl; i++) {
        diff |= (unsigned)(uint8_t)want[i] ^ (unsigned)(uint8_t)(i < gl ? given[i] : 0);
    }
    return diff == 0;
}

bool srv_api_key_ok(const char *authorization, const char *x_api_key, const char *want) {
    const char *h = authorization;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ') {
            h++;
        }
        return key_matches(h, want);
    }
    return x_api_key && key_matches(x_api_key, want);
}

bool srv_host_is_local(const char *host, const char *also) {
    if (!host) {
        return false;
    }
    const char *name = host, *after;
    size_t n;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end) {
            return false;
        }
        name = host + 1;
        n = (size_t)(end - name);
        after = end + 1;
    } else {
        n = strcspn(host, ":");
        after = host + n;
    }
    if (*after == ':') {
        after += strspn(after + 1, "0123456789") + 1; /* the port */
    }
    char buf[64];
    if (*after != '\0' || n == 0 || n >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, name, n);
    buf[n] = '\0';
    if (host[0] == '[') { /* an IP literal, nothing else */
        struct in6_addr a6;
        return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    if (strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != n) {
        return false; /* not a host name (RFC 1123 letters, digits, '.', '-') */
    }
    size_t dot = n > 10 ? n - 10 : 0;
    if (strcasecmp(buf, "localhost") == 0 || (dot && strcasecmp(buf + dot, ".localhost") == 0) ||
        (also && also[0] && strcasecmp(buf, also) == 0)) {
        return true;
    }
    struct in_addr a4;
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool srv_origin_is_local(const char *origin, const char *also) {
    if (!origin) {
        return false;
    }
    const char *rest = strncasecmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncasecmp(origin, "https://", 8) == 0 ? origin + 8
                                                                 : NULL;
    return rest && !strchr(rest, '/') && srv_host_is_local(rest, also);
}
