/*
 * cli/cmd_run.c - `slm run MODEL [PROMPT]`: one-shot generation streamed to
 * stdout, piped input as context, or an interactive chat on a terminal.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "slm/json.h"

#define STDIN_MAX ((size_t)64 << 20)

static void usage(FILE *f) {
    fprintf(f, "Usage: slm run MODEL [PROMPT...] [flags]\n"
               "\n"
               "Generates from MODEL (a store name such as stories260k, or a path to a .gguf).\n"
               "  slm run MODEL \"Once upon a time\"      one-shot, streamed to stdout\n"
               "  cat notes.md | slm run MODEL \"Summarise\"  piped text is the context\n"
               "  slm run MODEL                         interactive chat on a terminal\n"
               "\n"
               "Sampling (Modelfile PARAMETER names in brackets):\n");
    for (const struct slm_option_desc *d = slm_option_table(); d->name; d++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s", d->flag,
                 strcmp(d->flag, "max-tokens") == 0 ? ", -n" : "");
        fprintf(f, "  %-24s %s [%s]\n", flag, d->help, d->name);
    }
    fprintf(f, "\nPrompt and output:\n"
               "  --system TEXT            system prompt (chat formatting)\n"
               "  --raw                    no chat template: the prompt is passed as is\n"
               "  --chat                   apply a chat template even to a model without one "
               "(ChatML)\n"
               "  --format json            constrain output to a JSON object\n"
               "  --json-schema FILE       constrain output to a JSON Schema and validate it\n"
               "  --adapter FILE[:SCALE]   apply a GGUF LoRA adapter (repeatable)\n"
               "  --template FILE          Liquid template that renders the user turn from\n"
               "                           input, system, messages and --vars\n"
               "  --vars JSON|@FILE        variables for the template\n"
               "  --interactive            chat even when stdin is not a terminal (line by line)\n"
               "  --suffix TEXT            fill in the middle: the prompt is the text before,\n"
               "                           TEXT the text after (models with FIM tokens; the\n"
               "                           prompt is built as llama-server's /infill builds it)\n"
               "  --ignore-eos             keep generating past end-of-sequence (benchmarks)\n"
               "  --token-ids              print generated token ids instead of text\n"
               "  --verbose                print load time and prompt/generation speed to stderr\n"
               "  --force                  load the model even when the memory estimate says it\n"
               "                           does not fit (slm show MODEL prints the estimate)\n"
               "\n"
               "Exit codes: 0 ok, 1 error, 2 bad usage, 3 model not found, 4 output incomplete or\n"
               "invalid (e.g. --max-tokens cut a JSON answer), 5 input does not fit the context,\n"
               "130 interrupted.\n");
}

enum {
    OPT_SYSTEM = 1000,
    OPT_RAW,
    OPT_CHAT,
    OPT_FORMAT,
    OPT_SCHEMA,
    OPT_ADAPTER,
    OPT_INTERACTIVE,
    OPT_IGNORE_EOS,
    OPT_SUFFIX,
    OPT_TOKEN_IDS,
    OPT_VERBOSE,
    OPT_TEMPLATE,
    OPT_VARS,
    OPT_FORCE,
    OPT_HELP,
    OPT_SAMPLING = 2000, /* + index in the option table */
};

struct run_args {
    const char *model;
    const char *system;
    bool raw, chat, interactive, verbose, token_ids, ignore_eos, force;
    const char *format;
    const char *schema_file;
    const char *template_file;
    const char *vars;
    const char *suffix; /* --suffix: fill in the middle */
    const char *adapter_args[SLM_TURN_MAX_ADAPTERS];
    char adapter_paths[SLM_TURN_MAX_ADAPTERS][1024]; /* FILE part of FILE:SCALE */
    size_t n_adapter_args;
    /* Sampling flags, applied after the manifest's parameters. */
    const char *opt_names[64];
    const char *opt_values[64];
    size_t n_opts;
    struct slm_buf prompt;
};

static int parse_args(int argc, char **argv, struct run_args *a) {
    static struct option base_opts[] = {
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"raw", no_argument, NULL, OPT_RAW},
        {"chat", no_argument, NULL, OPT_CHAT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"json-schema", required_argument, NULL, OPT_SCHEMA},
        {"adapter", required_argument, NULL, OPT_ADAPTER},
        {"interactive", no_argument, NULL, OPT_INTERACTIVE},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"suffix", required_argument, NULL, OPT_SUFFIX},
        {"token-ids", no_argument, NULL, OPT_TOKEN_IDS},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"template", required_argument, NULL, OPT_TEMPLATE},
        {"vars", required_argument, NULL, OPT_VARS},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, OPT_HELP},
    };
    struct option opts[64];
    size_t n = 0;
    for (size_t i = 0; i < SLM_ARRAY_LEN(base_opts); i++) {
        opts[n++] = base_opts[i];
    }
    const struct slm_option_desc *table = slm_option_table();
    for (int i = 0; table[i].name; i++) {
        opts[n++] = (struct option){table[i].flag, required_argument, NULL, OPT_SAMPLING + i};
    }
    opts[n] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
        case OPT_HELP: usage(stdout); return -1;
        case OPT_SYSTEM: a->system = optarg; break;
        case OPT_RAW: a->raw = true; break;
        case OPT_CHAT: a->chat = true; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "json") != 0) {
                slm_cli_error("run", "--format accepts only 'json' (use --json-schema FILE for "
                                     "a schema)");
                return SLM_EXIT_USAGE;
            }
            a->format = optarg;
            break;
        case OPT_SCHEMA: a->schema_file = optarg; break;
        case OPT_ADAPTER:
            if (a->n_adapter_args >= SLM_TURN_MAX_ADAPTERS) {
                slm_cli_error("run", "at most %d adapters", SLM_TURN_MAX_ADAPTERS);
                return SLM_EXIT_USAGE;
            }
            a->adapter_args[a->n_adapter_args++] = optarg;
            break;
        case OPT_INTERACTIVE: a->interactive = true; break;
        case OPT_IGNORE_EOS: a->ignore_eos = true; break;
        case OPT_SUFFIX: a->suffix = optarg; break;
        case OPT_TOKEN_IDS: a->token_ids = true; break;
        case OPT_VERBOSE: a->verbose = true; break;
        case OPT_TEMPLATE: a->template_file = optarg; break;
        case OPT_VARS: a->vars = optarg; break;
        case OPT_FORCE: a->force = true; break;
        case 'n':
        case '?':
        default:
            if (c == 'n' || c >= OPT_SAMPLING) {
                if (a->n_opts >= SLM_ARRAY_LEN(a->opt_names)) {
                    slm_cli_error("run", "too many flags");
                    return SLM_EXIT_USAGE;
                }
                a->opt_names[a->n_opts] = c == 'n' ? "num_predict" : table[c - OPT_SAMPLING].name;
                a->opt_values[a->n_opts++] = optarg;
                break;
            }
            if (optopt && optopt < 256) {
                slm_cli_error("run", "unknown or incomplete flag '-%c' (see slm run --help)",
                              optopt);
            } else {
                slm_cli_error("run", "unknown flag or missing value: '%s' (see slm run --help)",
                              argv[optind - 1]);
            }
            return SLM_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        slm_cli_error("run", "missing MODEL (see slm run --help)");
        return SLM_EXIT_USAGE;
    }
    a->model = argv[optind++];
    for (int i = optind; i < argc; i++) {
        if ((i > optind && slm_buf_putc(&a->prompt, ' ') != SLM_OK) ||
            slm_buf_puts(&a->prompt, argv[i]) != SLM_OK) {
            slm_cli_error("run", "prompt too large");
            return SLM_EXIT_USAGE;
        }
    }
    return SLM_EXIT_OK;
}

/* The model's parameters (the turn's) first, then the flags (flags win). */
static int set_options(struct slm_session *s, const struct run_args *a, struct slm_err *err) {
    int rc = slm_turn_options(s->turn, NULL, &s->opt, err);
    if (rc != SLM_OK) {
        return rc;
    }
    bool stop_from_flags = false;
    for (size_t i = 0; i < a->n_opts; i++) {
        if (strcmp(a->opt_names[i], "stop") == 0 && !stop_from_flags) {
            /* --stop replaces the model's stop list rather than adding to it. */
            for (size_t k = 0; k < s->opt.n_stop; k++) {
                free(s->opt.stop[k]);
            }
            s->opt.n_stop = 0;
            stop_from_flags = true;
        }
        rc = slm_options_set_text(&s->opt, a->opt_names[i], a->opt_values[i], err);
        if (rc != SLM_OK) {
            const struct slm_option_desc *d = slm_option_find(a->opt_names[i]);
            char msg[sizeof(err->msg)];
            memcpy(msg, err->msg, sizeof(msg));
            return slm_err_set(err, SLM_E_INVALID, "--%s: %s", d ? d->flag : a->opt_names[i], msg);
        }
    }
    return SLM_OK;
}

/* --adapter FILE[:SCALE], in order, after the model's own ADAPTERs. */
static int parse_adapters(struct run_args *a, float *scales, struct slm_err *err) {
    for (size_t i = 0; i < a->n_adapter_args; i++) {
        const char *arg = a->adapter_args[i];
        float scale = 1.0f;
        const char *colon = strrchr(arg, ':');
        size_t len = strlen(arg);
        double v;
        if (colon && slm_parse_f64(slm_str_c(colon + 1), &v) == SLM_OK) {
            if (v < -100 || v > 100) {
                return slm_err_set(err, SLM_E_INVALID,
                                   "--adapter %s: scale must be within "
                                   "[-100, 100]",
                                   arg);
            }
            scale = (float)v;
            len = (size_t)(colon - arg);
        }
        if (len >= sizeof(a->adapter_paths[0])) {
            return slm_err_set(err, SLM_E_INVALID, "--adapter: path too long");
        }
        memcpy(a->adapter_paths[i], arg, len);
        a->adapter_paths[i][len] = '\0';
        scales[i] = scale;
    }
    return SLM_OK;
}

/* The model reference resolved with --template, --system and --adapter. */
static int open_turn(struct slm_session *s, struct slm_store *store, struct run_args *a,
                     struct slm_err *err) {
    float scales[SLM_TURN_MAX_ADAPTERS];
    const char *paths[SLM_TURN_MAX_ADAPTERS];
    int rc = parse_adapters(a, scales, err);
    for (size_t i = 0; i < a->n_adapter_args; i++) {
        paths[i] = a->adapter_paths[i];
    }
    struct slm_turn_params tp = slm_turn_params_default();
    tp.template_path = a->template_file;
    tp.system = a->system;
    tp.adapter_paths = paths;
    tp.adapter_scales = scales;
    tp.n_adapters = a->n_adapter_args;
    return rc == SLM_OK ? slm_turn_open(store, a->model, &tp, &s->turn, err) : rc;
}

/* --format json / --json-schema FILE: the grammar comes from the turn, as a
 * server request's does; the schema stays for validating the answer. */
static int set_format(struct slm_session *s, const struct run_args *a, struct slm_err *err) {
    if (a->format && a->schema_file) {
        return slm_err_set(err, SLM_E_INVALID, "use --format json or --json-schema, not both");
    }
    struct slm_turn_req r = {0};
    if (a->format) {
        r.format = SLM_TURN_FORMAT_JSON;
    } else if (a->schema_file) {
        int rc = slm_json_load_file(a->schema_file, 1 << 20, &s->schema, err);
        if (rc != SLM_OK) {
            return rc;
        }
        r.format = SLM_TURN_FORMAT_SCHEMA;
        r.schema = s->schema;
    } else {
        return SLM_OK;
    }
    s->want_json = true;
    int rc = slm_turn_grammar(&r, NULL, &s->grammar, err);
    return rc == SLM_OK || !a->schema_file ? rc : slm_err_prefix(err, "%s", a->schema_file);
}

/* --vars as JSON text or @file, for the template in force. */
static int set_vars(struct slm_session *s, const struct run_args *a, struct slm_err *err) {
    if (!a->vars) {
        return SLM_OK;
    }
    int rc = a->vars[0] == '@' ? slm_json_load_file(a->vars + 1, 16 << 20, &s->vars, err)
                               : slm_json_parse(a->vars, strlen(a->vars), "--vars", &s->vars, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!json_is_object(s->vars)) {
        return slm_err_set(err, SLM_E_INVALID, "--vars must be a JSON object");
    }
    if (!s->turn->tmpl) {
        return slm_err_set(err, SLM_E_INVALID, "--vars needs a template (--template FILE)");
    }
    return SLM_OK;
}

/* Piped stdin is the context: "<stdin>\n\n<prompt>". */
static int read_input(struct run_args *a, struct slm_buf *input, bool *interactive,
                      struct slm_err *err) {
    bool stdin_tty = isatty(STDIN_FILENO);
    *interactive = a->interactive || (stdin_tty && a->prompt.len == 0);
    if (*interactive) {
        return SLM_OK;
    }
    if (!stdin_tty) {
        int rc = slm_file_read("-", STDIN_MAX, input, err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    if (a->prompt.len) {
        if (input->len) {
            while (input->len && input->ptr[input->len - 1] == '\n') {
                input->len--;
            }
            if (slm_buf_puts(input, "\n\n") != SLM_OK) {
                return slm_err_set(err, SLM_E_TOO_LARGE, "input too large");
            }
        }
        if (slm_buf_append_str(input, slm_buf_str(&a->prompt)) != SLM_OK) {
            return slm_err_set(err, SLM_E_TOO_LARGE, "input too large");
        }
    }
    if (input->len == 0) {
        return slm_err_set(err, SLM_E_INVALID, "no prompt: give one after MODEL or pipe text in");
    }
    return SLM_OK;
}

static int run_once(struct slm_session *s, const char *input) {
    struct slm_err err = {0};
    struct slm_buf answer = {0};
    slm_cli_trap_signals();
    int rc = slm_session_turn(s, input, stdout, &answer, &err);
    bool ended_nl = answer.len && answer.ptr[answer.len - 1] == '\n';
    if (s->token_ids || !ended_nl) {
        fputc('\n', stdout);
    }
    fflush(stdout);
    if (s->verbose) {
        slm_session_print_stats(s);
    }
    slm_buf_free(&answer);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail("run", rc, &err);
}

static int run(int argc, char **argv) {
    struct run_args a = {0};
    int code = parse_args(argc, argv, &a);
    if (code != SLM_EXIT_OK) {
        slm_buf_free(&a.prompt);
        return code < 0 ? SLM_EXIT_OK : code;
    }
    struct slm_err err = {0};
    struct slm_session s = {0};
    struct slm_store *store = NULL;
    struct slm_buf input = {0};
    bool interactive = false;
    int rc = read_input(&a, &input, &interactive, &err);
    if (rc == SLM_OK) {
        rc = slm_store_open(NULL, &store, &err);
    }
    if (rc == SLM_OK) {
        rc = open_turn(&s, store, &a, &err);
    }
    if (rc == SLM_OK && (rc = set_options(&s, &a, &err)) != SLM_OK) {
        slm_cli_fail("run", rc, &err);
        code = SLM_EXIT_USAGE;
        goto done;
    }
    if (rc == SLM_OK) {
        rc = set_format(&s, &a, &err);
    }
    if (rc == SLM_OK) {
        rc = set_vars(&s, &a, &err);
    }
    if (rc == SLM_OK) {
        s.name = a.model;
        s.force = a.force;
        rc = slm_session_check_fit(&s, s.opt.num_ctx, s.opt.num_batch, NULL, &err);
    }
    if (rc == SLM_OK) {
        rc = slm_session_open(&s, &err);
    }
    if (rc != SLM_OK) {
        code = slm_cli_fail("run", rc, &err);
        goto done;
    }
    s.messages = json_array();
    s.system = s.turn->system ? strdup(s.turn->system) : NULL;
    bool has_template = slm_model_chat_template(s.model) != NULL;
    s.chat_format = !a.raw && (a.chat || has_template || interactive);
    if (!s.chat_format && (a.system || json_array_size(s.turn->manifest->messages))) {
        slm_cli_error("run", "warning: --system and MESSAGE need chat formatting; this model has "
                             "no chat template (add --chat to use ChatML)");
    }
    if (a.suffix && (interactive || a.template_file || a.format || a.schema_file)) {
        slm_cli_error("run", "--suffix fills in the middle of one prompt: not with %s",
                      interactive       ? "a chat"
                      : a.template_file ? "--template"
                                        : "--format/--json-schema");
        code = SLM_EXIT_USAGE;
        goto done;
    }
    s.suffix = a.suffix;
    s.chat_format = s.chat_format && !a.suffix;
    s.token_ids = a.token_ids;
    s.ignore_eos = a.ignore_eos;
    s.verbose = a.verbose;
    code = interactive ? slm_chat_repl(&s) : run_once(&s, slm_buf_cstr(&input));
done:
    slm_session_close(&s);
    slm_store_close(store);
    slm_buf_free(&input);
    slm_buf_free(&a.prompt);
    return code;
}

const struct slm_cli_command slm_cli_cmd_run = {"run", "Run a model: one-shot, piped or chat", run,
                                                10};
