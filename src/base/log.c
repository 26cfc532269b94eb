/*
 * log.c - the log sink. One global level and sink, set once at start-up.
 * Every line is passed through slm_mask_secrets() before the sink sees it.
 */
#include "slm/base.h"

#include <string.h>

int slm__log_level = SLM_LOG_WARN;

static slm_log_sink_fn g_sink;
static void *g_sink_user;

static const char *level_name(enum slm_log_level level) {
    switch (level) {
    case SLM_LOG_ERROR: return "error";
    case SLM_LOG_WARN: return "warning";
    case SLM_LOG_INFO: return "info";
    default: return "debug";
    }
}

/* A log record is one line whatever it quotes: control bytes (a newline in
 * a model name sent by a client, an escape sequence for the terminal) are
 * written as \n, \r, \t or \xNN. */
static void one_line(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < cap; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
            continue;
        }
        const char *esc = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
        if (esc) {
            memcpy(out + o, esc, 2);
            o += 2;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
        }
    }
    out[o] = '\0';
}

void slm_log_write(enum slm_log_level level, const char *fmt, ...) {
    char raw[2048], line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* Whatever a caller formats, a key-shaped string never reaches the sink. */
    size_t n = slm_mask_secrets(raw, NULL, 0);
    while (n > 0 && raw[n - 1] == '\n') {
        raw[--n] = '\0';
    }
    one_line(raw, line, sizeof(line));
    if (g_sink) {
        g_sink(level, line, g_sink_user);
    } else {
        fprintf(stderr, "slm: %s: %s\n", level_name(level), line);
    }
}

void slm_log_set_level(enum slm_log_level level) {
    slm__log_level = (int)level;
}

void slm_log_set_sink(slm_log_sink_fn fn, void *user) {
    g_sink = fn;
    g_sink_user = user;
}

int slm_log_level_parse(const char *s, enum slm_log_level *out) {
    static const struct {
        const char *name;
        enum slm_log_level level;
    } names[] = {{"error", SLM_LOG_ERROR},
                 {"warn", SLM_LOG_WARN},
                 {"warning", SLM_LOG_WARN},
                 {"info", SLM_LOG_INFO},
                 {"debug", SLM_LOG_DEBUG}};
    for (size_t i = 0; i < SLM_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return SLM_OK;
        }
    }
    return SLM_E_INVALID;
}
