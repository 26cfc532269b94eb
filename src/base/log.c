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

void slm_log_write(enum slm_log_level level, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* Whatever a caller formats, a key-shaped string never reaches the sink. */
    size_t n = slm_mask_secrets(line, NULL, 0);
    while (n > 0 && line[n - 1] == '\n') {
        line[--n] = '\0';
    }
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
