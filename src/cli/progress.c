/*
 * cli/progress.c - the terminal progress bar (see progress.h).
 */
#include "cli/progress.h"

#include <stdio.h>
#include <string.h>

#include "slm/base.h"

void slm_cli_progress_init(struct slm_cli_progress *p, bool enabled) {
    memset(p, 0, sizeof(*p));
    p->enabled = enabled;
}

static void format_eta(char *out, size_t cap, double secs) {
    if (secs < 0 || secs > 360000) {
        snprintf(out, cap, "--");
    } else if (secs < 60) {
        snprintf(out, cap, "%ds", (int)(secs + 0.5));
    } else if (secs < 3600) {
        snprintf(out, cap, "%dm%02ds", (int)secs / 60, (int)secs % 60);
    } else {
        snprintf(out, cap, "%dh%02dm", (int)secs / 3600, ((int)secs % 3600) / 60);
    }
}

void slm_cli_progress_update(struct slm_cli_progress *p, const char *label, uint64_t done,
                             uint64_t total) {
    if (!p->enabled) {
        return;
    }
    double now = slm_time_mono();
    if (p->t_sample == 0) {
        p->t_sample = now;
        p->done_sample = done;
    } else if (now - p->t_sample >= 0.5) {
        double rate = (double)(done - SLM_MIN(done, p->done_sample)) / (now - p->t_sample);
        p->speed = p->speed > 0 ? 0.7 * p->speed + 0.3 * rate : rate;
        p->t_sample = now;
        p->done_sample = done;
    }
    bool complete = total > 0 && done >= total;
    if (p->drawn && now - p->t_last < 0.1 && !complete) {
        return;
    }
    p->t_last = now;
    char sdone[32], stotal[32], sspeed[32], eta[16];
    slm_format_size(sdone, sizeof(sdone), done);
    slm_format_size(stotal, sizeof(stotal), total);
    slm_format_size(sspeed, sizeof(sspeed), (uint64_t)p->speed);
    char bar[32];
    const int width = 25;
    if (total > 0) {
        int fill = (int)((double)SLM_MIN(done, total) * width / (double)total);
        for (int i = 0; i < width; i++) {
            bar[i] = i < fill ? '=' : ' ';
        }
        bar[width] = '\0';
        format_eta(eta, sizeof(eta),
                   p->speed > 0 ? (double)(total - SLM_MIN(done, total)) / p->speed : -1);
        fprintf(stderr, "\r%-.40s %3d%% [%s] %s/%s  %s/s  ETA %s\033[K", label,
                (int)((double)SLM_MIN(done, total) * 100.0 / (double)total), bar, sdone, stotal,
                sspeed, eta);
    } else {
        fprintf(stderr, "\r%-.40s %s  %s/s\033[K", label, sdone, sspeed);
    }
    fflush(stderr);
    p->drawn = true;
}

void slm_cli_progress_finish(struct slm_cli_progress *p) {
    if (p->enabled && p->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
    }
    p->drawn = false;
}
