/*
 * cli/cli.h - the command-line layer: one file per command (cmd_<name>.c),
 * thin: parse flags, call the modules, print. Only cli/ prints or exits.
 *
 * A command file defines
 *     const struct slm_cli_command slm_cli_cmd_<name> = {...};
 * and the build collects every cmd_*.c into the registry main.c dispatches on,
 * so adding a command needs no edit anywhere else.
 */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "slm/base.h"

/* Exit codes, documented in docs/commands.md. */
enum slm_exit {
    SLM_EXIT_OK = 0,
    SLM_EXIT_ERROR = 1,      /* the command failed; a message says why */
    SLM_EXIT_USAGE = 2,      /* bad flags or arguments */
    SLM_EXIT_NOT_FOUND = 3,  /* unknown model or file */
    SLM_EXIT_INCOMPLETE = 4, /* output cut short (--max-tokens) or invalid */
    SLM_EXIT_OVERFLOW = 5,   /* input does not fit the context */
    SLM_EXIT_INTERRUPTED = 130,
};

struct slm_cli_command {
    const char *name;
    const char *summary;               /* one line for `slm --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    int order;                         /* position in `slm --help` */
};

/* Prints "slm CMD: message" to stderr. */
void slm_cli_error(const char *cmd, const char *fmt, ...) SLM_PRINTF(2, 3);
/* Maps a status to an exit code (NOT_FOUND -> 3, OVERFLOW -> 5, ...). */
int slm_cli_exit_code(int status);
/* Reports `err` (or the status name) and returns the exit code for it. */
int slm_cli_fail(const char *cmd, int status, const struct slm_err *err);
/* True when `arg` is -h or --help. */
bool slm_cli_is_help(const char *arg);

/* Flag value parsers that print a clear error naming the flag; they return
 * false on a bad value. */
bool slm_cli_int(const char *cmd, const char *flag, const char *val, long long lo, long long hi,
                 long long *out);
bool slm_cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi,
                   double *out);

/* An environment switch (docs/commands.md, "Environment"): set, non-empty and
 * not "0". Only cli/ reads the environment; it hands values on in params. */
bool slm_cli_env_on(const char *name);

struct slm_pull_params;
/* The pull settings the environment gives (docs/commands.md): endpoint from
 * SLM_HF_ENDPOINT, token from HF_TOKEN, backoff_ms from SLM_PULL_BACKOFF_MS
 * (0 to 60000; 0 = retry at once), and mirror from SLM_MIRROR unless one is
 * set already. For `slm pull` and `slm serve` (POST /api/pull). */
void slm_cli_pull_env(struct slm_pull_params *pp);

/* True when stdout/stderr is a terminal (cached). */
bool slm_cli_stdout_tty(void);
bool slm_cli_stderr_tty(void);

/* Set by SIGINT/SIGTERM once slm_cli_trap_signals() is called. */
extern volatile int slm_cli_interrupted;
void slm_cli_trap_signals(void);

/* For commands that run a model: re-executes slm with glibc's large
 * allocations on transparent huge pages (cli/hugepages.c); returns when that
 * does not apply or fails. Call first thing, before any thread starts. */
void slm_cli_use_hugepages(char **argv);

/* main()'s argv, for commands that decide on huge pages after parsing. */
extern char **slm_cli_argv;

#endif /* SLM_CLI_H */
