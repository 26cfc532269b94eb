/*
 * cli/progress.h - the one progress display every command uses: a one-line
 * bar with percent, amount, speed and ETA for transfers (bytes: pull) and
 * batches (items: route, route calibrate), and a status line that long runs
 * (tune) rewrite in place. Redrawn at most ten times a second; the bar is
 * quiet when stderr is not a terminal, status lines then print one a line.
 *
 * Library code never prints: modules report progress through their
 * callbacks (slm_pull_params.progress, slm_tune_progress_cb,
 * slm_router_calib_params.progress) and the command feeds this.
 */
#ifndef SLM_CLI_PROGRESS_H
#define SLM_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum slm_cli_progress_unit {
    SLM_CLI_PROGRESS_BYTES, /* "1.2 MB/2.9 MB  3.1 MB/s" */
    SLM_CLI_PROGRESS_ITEMS, /* "12/40  3.1/s" */
};

struct slm_cli_progress {
    bool tty;   /* stderr is a terminal and the command is not quiet */
    bool drawn; /* a line is on screen (finish ends it) */
    enum slm_cli_progress_unit unit;
    double t_last;   /* last redraw */
    double t_sample; /* last speed sample */
    uint64_t done_sample;
    double speed; /* units per second, smoothed */
};

/* `tty` false makes the bar a no-op (pass !quiet && slm_cli_stderr_tty()). */
void slm_cli_progress_init(struct slm_cli_progress *p, bool tty, enum slm_cli_progress_unit unit);
/* Redraws "LABEL  42% [=====     ] AMOUNT  SPEED  ETA 1m05s" on stderr;
 * `total` 0 means unknown (no percent, no ETA). */
void slm_cli_progress_update(struct slm_cli_progress *p, const char *label, uint64_t done,
                             uint64_t total);
/* A status line: on a terminal it replaces the line on screen and stays
 * there when `keep`; elsewhere every status prints as a line of its own. */
void slm_cli_progress_status(struct slm_cli_progress *p, const char *text, bool keep);
/* Ends the line on screen (if one was drawn), before other output. */
void slm_cli_progress_finish(struct slm_cli_progress *p);

/* "4.2s", "42s", "3m05s", "2h10m"; "--" when negative, not finite or over
 * 100 hours. */
void slm_cli_format_duration(char *out, size_t cap, double secs);

#endif /* SLM_CLI_PROGRESS_H */
