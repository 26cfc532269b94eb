/*
 * cli/common.c - helpers shared by the command files: errors, exit codes,
 * flag value parsing, signals, the environment variables that set params.
 */
#include "cli/cli.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/store.h"

volatile int slm_cli_interrupted;

void slm_cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "slm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int slm_cli_exit_code(int status) {
    switch (status) {
    case SLM_OK: return SLM_EXIT_OK;
    case SLM_E_NOT_FOUND: return SLM_EXIT_NOT_FOUND;
    case SLM_E_INCOMPLETE: return SLM_EXIT_INCOMPLETE;
    case SLM_E_OVERFLOW: return SLM_EXIT_OVERFLOW;
    case SLM_E_ABORTED: return SLM_EXIT_INTERRUPTED;
    default: return SLM_EXIT_ERROR;
    }
}

int slm_cli_fail(const char *cmd, int status, const struct slm_err *err) {
    if (err && err->code == status && err->msg[0]) {
        slm_cli_error(cmd, "%s", err->msg);
    } else {
        slm_cli_error(cmd, "%s", slm_strerror(status));
    }
    return slm_cli_exit_code(status);
}

bool slm_cli_is_help(const char *arg) {
    return arg && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0);
}

bool slm_cli_int(const char *cmd, const char *flag, const char *val, long long lo, long long hi,
                 long long *out) {
    int64_t v;
    if (!val || slm_parse_i64(slm_str_c(val), &v) != SLM_OK || v < lo || v > hi) {
        slm_cli_error(cmd, "%s expects an integer from %lld to %lld, got '%s'", flag, lo, hi,
                      val ? val : "");
        return false;
    }
    *out = v;
    return true;
}

bool slm_cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi,
                   double *out) {
    double v;
    if (!val || slm_parse_f64(slm_str_c(val), &v) != SLM_OK || v < lo || v > hi) {
        slm_cli_error(cmd, "%s expects a number from %g to %g, got '%s'", flag, lo, hi,
                      val ? val : "");
        return false;
    }
    *out = v;
    return true;
}

bool slm_cli_env_on(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

void slm_cli_pull_env(struct slm_pull_params *pp) {
    pp->endpoint = getenv("SLM_HF_ENDPOINT");
    pp->token = getenv("HF_TOKEN");
    if (!pp->mirror || !pp->mirror[0]) {
        pp->mirror = getenv("SLM_MIRROR");
    }
    const char *backoff = getenv("SLM_PULL_BACKOFF_MS");
    int64_t v;
    if (backoff && slm_parse_i64(slm_str_c(backoff), &v) == SLM_OK && v >= 0 && v <= 60000) {
        pp->backoff_ms = v == 0 ? -1 : (int)v; /* tests retry without waiting */
    }
}

bool slm_cli_stdout_tty(void) {
    static int cached = -1;
    if (cached < 0) {
        cached = isatty(STDOUT_FILENO);
    }
    return cached;
}

bool slm_cli_stderr_tty(void) {
    static int cached = -1;
    if (cached < 0) {
        cached = isatty(STDERR_FILENO);
    }
    return cached;
}

static void on_signal(int sig) {
    (void)sig;
    if (slm_cli_interrupted) {
        /* A second Ctrl-C means now. */
        _exit(SLM_EXIT_INTERRUPTED);
    }
    slm_cli_interrupted = 1;
}

void slm_cli_trap_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
