/*
 * server/headers.h - the request header values the server reads before the
 * body (Content-Length, Authorization / X-Api-Key), as pure functions over
 * the strings libmicrohttpd hands over, so they can be fuzzed without a
 * socket (tests/fuzz/fuzz_http_header.c). Server-internal; reentrant.
 */
#ifndef SLM_SERVER_HEADERS_H
#define SLM_SERVER_HEADERS_H

#include <stdbool.h>
#include <stdint.h>

/* Parses a Content-Length value as RFC 9110 writes it: one or more ASCII
 * digits, nothing else (leading zeros allowed). A number past UINT64_MAX
 * saturates to UINT64_MAX (it is too large for any body). `value` may be
 * NULL. SLM_OK with *out set, or SLM_E_INVALID (libmicrohttpd answers a
 * malformed value itself). */
int srv_content_length(const char *value, uint64_t *out);

/* Whether a request's credentials carry the API key `want` (not NULL).
 * An `authorization` value with the Bearer scheme ("Bearer <key>", scheme
 * case-insensitive, spaces before the key skipped) decides alone; otherwise
 * `x_api_key` must be the key. Either header may be NULL (absent). The time
 * taken depends on the length of `want`, not on where a wrong key differs. */
bool srv_api_key_ok(const char *authorization, const char *x_api_key, const char *want);

/* Whether a Host header value ("localhost:11435", "127.0.0.1", "[::1]:80")
 * names this machine's loopback: "localhost" or a name under ".localhost",
 * `also` (the machine's own name; may be NULL), an IPv4 address in
 * 127.0.0.0/8 in dotted-quad form, or [::1]. NULL or anything else (a DNS
 * name that was made to point at 127.0.0.1: DNS rebinding) is not. */
bool srv_host_is_local(const char *host, const char *also);

/* Whether an Origin header value is a page served from this machine's
 * loopback ("http://localhost:3000", "https://127.0.0.1"): an http or https
 * scheme and a host for which srv_host_is_local holds. "null" is not. */
bool srv_origin_is_local(const char *origin, const char *also);

#endif /* SLM_SERVER_HEADERS_H */
