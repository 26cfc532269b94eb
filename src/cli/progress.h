/*
 * cli/progress.h - a one-line progress bar for long transfers on a terminal
 * (bytes, percent, speed, ETA), redrawn at most ten times a second. Quiet
 * when stderr is not a terminal.
 */
#ifndef SLM_CLI_PROGRESS_H
#define SLM_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct slm_cli_progress {
    bool enabled;
    bool drawn;      /* a line is on screen (finish ends it) */
    double t_last;   /* last redraw */
    double t_sample; /* last speed sample */
    uint64_t done_sample;
    double speed; /* bytes per second, smoothed */
};

/* `enabled` false makes every call a no-op (use slm_cli_stderr_tty()). */
void slm_cli_progress_init(struct slm_cli_progress *p, bool enabled);
/* Redraws "LABEL  42% [=====     ] 1.2 MB/2.9 MB  3.1 MB/s  ETA 1s" on
 * stderr; `total` 0 means unknown (no percent, no ETA). */
void slm_cli_progress_update(struct slm_cli_progress *p, const char *label, uint64_t done,
                             uint64_t total);
/* Ends the line (if one was drawn). */
void slm_cli_progress_finish(struct slm_cli_progress *p);

#endif /* SLM_CLI_PROGRESS_H */
