/*
 * cli/chat.c - the interactive chat of `slm run`: libedit line editing and
 * history on a terminal, plain lines otherwise; slash commands as Ollama's.
 */
#include <editline/readline.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"

static const char help_text[] =
    "Available commands:\n"
    "  /set parameter NAME VALUE   set a parameter (Ollama names: temperature, num_ctx, ...)\n"
    "  /set system TEXT            set the system prompt\n"
    "  /show info|parameters|system|template\n"
    "  /clear                      forget the conversation\n"
    "  /bye                        exit (or Ctrl-D)\n"
    "  /?, /help                   this help\n"
    "Use \"\"\" to begin and end a multi-line message. Ctrl-C stops an answer.\n";

struct line_source {
    bool tty;
    struct slm_buf buf;
};

/* Reads one line (without the newline); NULL at end of input. Caller frees. */
static char *read_line(struct line_source *src, const char *prompt) {
    if (src->tty) {
        char *l = readline(prompt);
        if (l && *l) {
            add_history(l);
        }
        return l;
    }
    slm_buf_clear(&src->buf);
    int c;
    while ((c = getchar()) != EOF && c != '\n') {
        if (slm_buf_putc(&src->buf, (char)c) != SLM_OK) {
            return NULL;
        }
    }
    if (c == EOF && src->buf.len == 0) {
        return NULL;
    }
    return slm_str_dup(slm_buf_str(&src->buf));
}

/* Multi-line input between """ markers. */
static char *read_message(struct line_source *src, char *first) {
    struct slm_str f = slm_str_trim(slm_str_c(first));
    if (!slm_str_starts_with(f, SLM_STR("\"\"\""))) {
        return first;
    }
    struct slm_buf msg = {0};
    int rc = slm_buf_append_str(&msg, slm_str_sub(f, 3, f.len));
    free(first);
    bool done = msg.len >= 3 && slm_str_ends_with(slm_buf_str(&msg), SLM_STR("\"\"\""));
    while (rc == SLM_OK && !done) {
        char *l = read_line(src, "... ");
        if (!l) {
            break;
        }
        if (msg.len) {
            rc = slm_buf_putc(&msg, '\n');
        }
        if (rc == SLM_OK) {
            rc = slm_buf_puts(&msg, l);
        }
        free(l);
        done = slm_str_ends_with(slm_buf_str(&msg), SLM_STR("\"\"\""));
    }
    if (done) {
        msg.len -= 3;
        msg.ptr[msg.len] = '\0';
    }
    return slm_buf_take(&msg);
}

static void show(struct slm_session *s, const char *what) {
    if (strcmp(what, "info") == 0) {
        struct slm_model_info info;
        slm_model_get_info(s->model, &info);
        printf("  architecture    %s\n  parameters      %llu\n  quantization    %s\n"
               "  context length  %d (using %u)\n  chat template   %s\n",
               info.arch, (unsigned long long)info.n_params, info.ftype, info.n_ctx_train,
               slm_ctx_n_ctx(s->ctx),
               info.has_chat_template ? "from the model" : "none: ChatML is used");
    } else if (strcmp(what, "parameters") == 0) {
        json_t *p = slm_options_to_json(&s->opt);
        char *txt = json_dumps(p, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", txt ? txt : "{}");
        free(txt);
        json_decref(p);
    } else if (strcmp(what, "system") == 0) {
        printf("%s\n", s->system ? s->system : "(no system prompt)");
    } else if (strcmp(what, "template") == 0) {
        const char *t = slm_model_chat_template(s->model);
        printf("%s\n", t ? t : "(none: ChatML is used)");
    } else {
        printf("Unknown /show target '%s': info, parameters, system or template.\n", what);
    }
}

/* Whether the context that `name` = `value` asks for fits, the current one's memory counted
 * as available (it is freed first). A bad value passes: setting it reports the error. */
static bool fits_with(const struct slm_session *s, const char *name, const char *value,
                      struct slm_err *err) {
    struct slm_options trial = s->opt; /* shallow: only the context's numbers are set on it */
    struct slm_mem_estimate now;
    if (slm_options_set_text(&trial, name, value, NULL) != SLM_OK ||
        slm_session_estimate(s, s->opt.num_ctx, s->opt.num_batch, &now, NULL) != SLM_OK) {
        return true;
    }
    return slm_session_check_fit(s, trial.num_ctx, trial.num_batch, &now, err) == SLM_OK;
}

static void set_parameter(struct slm_session *s, char *args) {
    char *sp = strchr(args, ' ');
    if (!sp) {
        printf("Usage: /set parameter NAME VALUE\n");
        return;
    }
    *sp = '\0';
    const char *name = args;
    const char *value = sp + 1;
    struct slm_err err = {0};
    const struct slm_option_desc *d = slm_option_find(name);
    bool ctx_change = d && (strcmp(d->name, "num_ctx") == 0 || strcmp(d->name, "num_thread") == 0 ||
                            strcmp(d->name, "num_batch") == 0);
    if (ctx_change && !fits_with(s, name, value, &err)) {
        printf("Error: %s\n", err.msg);
        return;
    }
    int rc = slm_options_set_text(&s->opt, name, value, &err);
    if (rc != SLM_OK) {
        printf("Error: %s\n", err.msg);
        return;
    }
    if (ctx_change && slm_session_reload_ctx(s, &err) != SLM_OK) {
        printf("Error: %s\n", err.msg);
        return;
    }
    printf("Set parameter '%s' to '%s'\n", d ? d->name : name, value);
}

/* Returns true when the REPL should end. */
static bool command(struct slm_session *s, char *line) {
    if (strcmp(line, "/bye") == 0 || strcmp(line, "/exit") == 0) {
        return true;
    }
    if (strcmp(line, "/?") == 0 || strcmp(line, "/help") == 0) {
        fputs(help_text, stdout);
    } else if (strcmp(line, "/clear") == 0) {
        json_array_clear(s->messages);
        slm_ctx_reset(s->ctx);
        printf("Cleared session context\n");
    } else if (strncmp(line, "/set parameter ", 15) == 0) {
        set_parameter(s, line + 15);
    } else if (strncmp(line, "/set system ", 12) == 0) {
        free(s->system);
        s->system = strdup(line + 12);
        printf("Set system message.\n");
    } else if (strncmp(line, "/show ", 6) == 0) {
        show(s, line + 6);
    } else {
        printf("Unknown command '%s'. Type /? for help\n", line);
    }
    return false;
}

int slm_chat_repl(struct slm_session *s) {
    struct line_source src = {isatty(STDIN_FILENO), {0}};
    if (src.tty) {
        printf(">>> Send a message (/? for help)\n");
    }
    struct slm_buf answer = {0};
    int code = SLM_EXIT_OK;
    for (;;) {
        slm_cli_interrupted = 0;
        signal(SIGINT, SIG_DFL);
        char *line = read_line(&src, ">>> ");
        if (!line) {
            break;
        }
        line = read_message(&src, line);
        struct slm_str t = slm_str_trim(slm_str_c(line));
        if (t.len == 0) {
            free(line);
            continue;
        }
        if (line[0] == '/' && strncmp(line, "///", 3) != 0) {
            bool quit = command(s, line);
            free(line);
            if (quit) {
                break;
            }
            continue;
        }
        slm_cli_trap_signals();
        struct slm_err err = {0};
        int rc = slm_session_turn(s, line, stdout, &answer, &err);
        free(line);
        printf("\n\n");
        fflush(stdout);
        if (rc == SLM_E_ABORTED) {
            continue;
        }
        if (rc != SLM_OK) {
            fprintf(stderr, "Error: %s%s\n", err.msg,
                    rc == SLM_E_OVERFLOW ? " (type /clear to start over)" : "");
            code = slm_cli_exit_code(rc);
            if (!src.tty) {
                break;
            }
            continue;
        }
        if (s->verbose) {
            slm_session_print_stats(s);
        }
    }
    slm_buf_free(&answer);
    slm_buf_free(&src.buf);
    return code;
}
