/*
 * server/error.h - an error as the client sees it (HTTP status, OpenAI type
 * and code, the field at fault) and the API shapes. Server-internal.
 */
#ifndef SLM_SERVER_ERROR_H
#define SLM_SERVER_ERROR_H

#include "slm/base.h"

/* ---------------------------------------------------------------- errors */

enum srv_api { SRV_API_OPENAI = 0, SRV_API_OLLAMA = 1, SRV_API_PLAIN = 2 };

/* An error as the client sees it: HTTP status, OpenAI type/code, message. */
struct srv_error {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "not_found_error", ... (static) */
    const char *code; /* "model_not_found", "context_length_exceeded", ... or NULL */
    char param[64];   /* the request field at fault, "" = none */
    char msg[512];
    int retry_after; /* seconds for Retry-After, 0 = no header */
};

/* Fills `e` with the HTTP status, type and code for an slm status (SLM_E_*)
 * and returns `rc`, so `return srv_fail(e, rc, err)` works. */
int srv_fail(struct srv_error *e, int rc, const struct slm_err *err);
/* A 400 invalid_request_error naming `param` (may be NULL). Returns SLM_E_INVALID. */
int srv_bad(struct srv_error *e, const char *param, const char *fmt, ...) SLM_PRINTF(3, 4);
/* Any status/type/code. Returns `rc`. */
int srv_error_set(struct srv_error *e, int rc, int status, const char *type, const char *code,
                  const char *fmt, ...) SLM_PRINTF(6, 7);

#endif /* SLM_SERVER_ERROR_H */
