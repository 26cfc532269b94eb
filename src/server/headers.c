/*
 * headers.c - request header values read before the body (server/headers.h).
 */
#include "server/headers.h"

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
