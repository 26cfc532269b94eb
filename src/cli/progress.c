/*
 * cli/progress.c - the progress display (see progress.h).
 */
#include "cli/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "slm/base.h"

void slm_cli_progress_init(struct slm_cli_progress *p, bool tty, enum slm_cli_progress_unit unit) {
    memset(p, 0, sizeof(*p));
    p->tty = tty;
    p->unit = unit;
}

void slm_cli_format_duration(char *out, size_t cap, double secs) {
    if (!isfinite(secs) || secs < 0 || secs > 360000) {
        snprintf(out, cap, "--");
    } else if (secs < 10) {
        snprintf(out, cap, "%.1fs", secs);
    } else if (secs < 60) {
        snprintf(out, cap, "%ds", (int)(secs + 0.5));
    } else if (secs < 3600) {
        snprintf(out, cap, "%dm%02ds", (int)secs / 60, (int)secs % 60);
    } else {
        snprintf(out, cap, "%dh%02dm", (int)secs / 3600, ((int)secs % 3600) / 60);
    }
}

static void sample_speed(struct slm_cli_progress *p, double now, uint64_t done) {
    if (p->t_sample == 0) {
        p->t_sample = now;
        p->done_sample = done;
    } else if (now - p->t_sample >= 0.5) {
        double rate = (double)(done - SLM_MIN(done, p->done_sample)) / (now - p->t_sample);
        p->speed = p->speed > 0 ? 0.7 * p->speed + 0.3 * rate : rate;
        p->t_sample = now;
        p->done_sample = done;
    }
}

/* "1.2 MB" or "12" */
static void amount(const struct slm_cli_progress *p, uint64_t v, char *out, size_t cap) {
    if (p->unit == SLM_CLI_PROGRESS_BYTES) {
        slm_format_size(out, cap, v);
    } else {
        snprintf(out, cap, "%llu", (unsigned long long)v);
    }
}

static void speed(const struct slm_cli_progress *p, char *out, size_t cap) {
    if (p->unit == SLM_CLI_PROGRESS_BYTES) {
        char s[24]; /* "1023.9 GB": room for "/s" in a 32-byte `out` */
        slm_format_size(s, sizeof(s), (uint64_t)p->speed);
        snprintf(out, cap, "%s/s", s);
    } else {
        snprintf(out, cap, "%.1f/s", p->speed);
    }
}

void slm_cli_progress_update(struct slm_cli_progress *p, const char *label, uint64_t done,
                             uint64_t total) {
    if (!p->tty) {
        return;
    }
    double now = slm_time_mono();
    sample_speed(p, now, done);
    bool complete = total > 0 && done >= total;
    if (p->drawn && now - p->t_last < 0.1 && !complete) {
        return;
    }
    p->t_last = now;
    char sdone[32], stotal[32], sspeed[32], eta[16];
    amount(p, done, sdone, sizeof(sdone));
    amount(p, total, stotal, sizeof(stotal));
    speed(p, sspeed, sizeof(sspeed));
    if (total > 0) {
        char bar[32];
        const int width = 25;
        int fill = (int)((double)SLM_MIN(done, total) * width / (double)total);
        for (int i = 0; i < width; i++) {
            bar[i] = i < fill ? '=' : ' ';
        }
        bar[width] = '\0';
        slm_cli_format_duration(eta, sizeof(eta),
                                p->speed > 0 ? (double)(total - SLM_MIN(done, total)) / p->speed
                                             : -1);
        fprintf(stderr, "\r%-.40s %3d%% [%s] %s/%s  %s  ETA %s\033[K", label,
                (int)((double)SLM_MIN(done, total) * 100.0 / (double)total), bar, sdone, stotal,
                sspeed, eta);
    } else {
        fprintf(stderr, "\r%-.40s %s  %s\033[K", label, sdone, sspeed);
    }
    fflush(stderr);
    p->drawn = true;
}

void slm_cli_progress_status(struct slm_cli_progress *p, const char *text, bool keep) {
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s%s", text, keep ? "\n" : "");
        p->drawn = !keep;
    } else {
        fprintf(stderr, "%s\n", text);
    }
    fflush(stderr);
}

void slm_cli_progress_finish(struct slm_cli_progress *p) {
    if (p->tty && p->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
    }
    p->drawn = false;
}
