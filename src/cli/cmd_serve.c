/*
 * cli/cmd_serve.c - `slm serve`: the store's models over HTTP (OpenAI /v1 and
 * Ollama /api routes) until SIGINT or SIGTERM. The server itself is
 * src/server/ (slm/server.h); this file parses flags, builds the model pool,
 * prints the URL and waits for a signal.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/router.h"
#include "slm/server.h"
#include "slm/store.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: slm serve [flags]\n"
            "\n"
            "Serves the models of the store (slm list) over HTTP until Ctrl-C:\n"
            "  OpenAI  POST /v1/chat/completions /v1/completions /v1/embeddings, GET /v1/models\n"
            "  Ollama  POST /api/chat /api/generate /api/embed /api/show /api/pull ...,\n"
            "          GET /api/tags /api/ps\n"
            "  llama-server  POST /infill (fill in the middle), GET /lora-adapters\n"
            "  GET /metrics (Prometheus), GET /health\n"
            "\n"
            "Network:\n"
            "  --host H              address to bind (default 127.0.0.1)\n"
            "  --port P              port (default %d; 0 = any free port)\n"
            "  --api-key K           require 'Authorization: Bearer K' (default $SLM_API_KEY)\n"
            "  --insecure            allow a non-loopback --host without an API key\n"
            "Capacity:\n"
            "  --parallel N          sequences generated at once per model (default 4)\n"
            "  --ctx-size N          tokens per request, prompt + answer (default: the model's\n"
            "                        training context, at most 4096)\n"
            "  --threads N           CPU threads per model (default: idle physical cores)\n"
            "  --batch-size N        tokens per decode step (default 2048, as llama-server:\n"
            "                        prompts that arrive together start together; 512 gives\n"
            "                        the first requests their first token sooner)\n"
            "  --max-queue N         requests waiting per model before 429 (default 64)\n"
            "  --max-contexts N      distinct adapter sets served at once per model (default 4)\n"
            "  --kv-type T           KV cache type: f16 (default; flash attention) or f32 (twice\n"
            "                        the memory; results independent of batch composition to\n"
            "                        ~1e-6, for comparisons and tests)\n"
            "  --memory-budget SIZE  memory the loaded models may need (weights, KV cache,\n"
            "                        buffers: the estimate slm show prints), e.g. 8G (default:\n"
            "                        the memory available at start); least recently used idle\n"
            "                        models are unloaded to make room\n"
            "  --force               load a model even when it needs more than the whole budget\n"
            "                        (default: refuse it with 503 and the numbers)\n"
            "  --keep-alive DUR      idle time before a model is unloaded, e.g. 5m, 1h, -1 =\n"
            "                        forever (default 5m; requests may set keep_alive)\n"
            "Limits (docs/security.md):\n"
            "  --max-body SIZE       largest request body (default 8M); past it: 413\n"
            "  --max-body-total SIZE request bodies held at once, all clients (default 64M);\n"
            "                        past it: 503 with Retry-After\n"
            "  --max-tokens N        most tokens one request may generate (default %d; 0 = no\n"
            "                        cap beyond the context); asking for more: 400\n"
            "  --max-connections N   open connections, all clients (default 1024); past it: 503\n"
            "  --max-client-connections N  open connections from one address (default 256)\n"
            "  --header-timeout S    seconds a client has to send a request's headers (default\n"
            "                        30); past it: 408 and the connection is closed\n"
            "  --request-timeout S   seconds a request may run (default %.0f; 0 = no limit);\n"
            "                        past it: 504\n"
            "  --grammar-budget S    seconds of JSON/schema/tool-constrained sampling one\n"
            "                        request may use (default %.0f; 0 = no limit); past it: "
            "504\n",
            SLM_SERVER_DEFAULT_PORT, SLM_SERVER_DEFAULT_MAX_TOKENS, SLM_SERVER_DEFAULT_TIMEOUT,
            SLM_SERVER_DEFAULT_GRAMMAR_BUDGET);
    fputs("Router:\n"
          "  --router FILE         router.yaml: chat requests whose model names a route go\n"
          "                        local first and escalate per its checks (docs/router.md);\n"
          "                        other models are served as usual\n"
          "Models:\n"
          "  --model NAME          the model of requests that name none (llama-server's\n"
          "                        clients, e.g. llama.vim and llama.vscode: POST /infill)\n"
          "Adapters:\n"
          "  --lora FILE[:SCALE]   a LoRA adapter requests may apply with \"lora\": [{\"id\": N,\n"
          "                        \"scale\": S}] (N counts --lora flags from 0; repeatable;\n"
          "                        GET /lora-adapters lists them); requests may also name a\n"
          "                        store model's adapters: [{\"name\": \"MODEL\", \"scale\": S}]\n"
          "Tools:\n"
          "  --tool-template FILE  Liquid template for tool prompts (default: built in per\n"
          "                        model family, templates/tools/)\n"
          "\n"
          "Sizes take K, M, G (powers of 1024) or KB, MB, GB (powers of 1000). Request lines\n"
          "are logged to stderr (SLM_LOG=warn silences them). See docs/api.md.\n",
          f);
}

enum {
    OPT_HOST = 1000,
    OPT_PORT,
    OPT_API_KEY,
    OPT_INSECURE,
    OPT_PARALLEL,
    OPT_CTX,
    OPT_THREADS,
    OPT_BATCH,
    OPT_QUEUE,
    OPT_CONTEXTS,
    OPT_BUDGET,
    OPT_KEEP_ALIVE,
    OPT_MAX_BODY,
    OPT_MAX_TOKENS,
    OPT_MAX_CONN,
    OPT_MAX_CLIENT_CONN,
    OPT_MAX_BODY_TOTAL,
    OPT_HEADER_TIMEOUT,
    OPT_GRAMMAR_BUDGET,
    OPT_TIMEOUT,
    OPT_TOOL_TEMPLATE,
    OPT_KV_TYPE,
    OPT_ROUTER,
    OPT_LORA,
    OPT_MODEL,
    OPT_FORCE,
    OPT_HELP,
};

struct serve_args {
    struct slm_server_params sp;
    struct slm_pool_params pp;
    long long ctx_size;
    const char *router_path;         /* --router */
    struct slm_server_lora lora[16]; /* --lora */
    char lora_path[16][1024];
    size_t n_lora;
    struct slm_pull_params pull; /* POST /api/pull: settings from the environment */
};

/* --lora FILE[:SCALE]: the file must be a LoRA adapter (its fit to a model is checked when a
 * request applies it). The scale is what GET /lora-adapters reports. */
static int parse_lora(const char *arg, struct serve_args *a) {
    if (a->n_lora == SLM_ARRAY_LEN(a->lora)) {
        slm_cli_error("serve", "--lora: at most %zu adapters", SLM_ARRAY_LEN(a->lora));
        return SLM_EXIT_USAGE;
    }
    char *val = a->lora_path[a->n_lora];
    if ((size_t)snprintf(val, sizeof(a->lora_path[0]), "%s", arg) >= sizeof(a->lora_path[0])) {
        slm_cli_error("serve", "--lora: the path is too long");
        return SLM_EXIT_USAGE;
    }
    double scale = 1.0;
    char *colon = strrchr(val, ':');
    if (colon && !slm_file_exists(val)) {
        *colon = '\0';
        if (!slm_cli_float("serve", "--lora's scale", colon + 1, -100, 100, &scale)) {
            return SLM_EXIT_USAGE;
        }
    }
    struct slm_err err = {0};
    int rc = slm_adapter_probe(val, &err);
    if (rc != SLM_OK) {
        slm_cli_error("serve", "--lora: %s", err.msg);
        return rc == SLM_E_NOT_FOUND ? SLM_EXIT_NOT_FOUND : SLM_EXIT_USAGE;
    }
    a->lora[a->n_lora++] = (struct slm_server_lora){.path = val, .scale = (float)scale};
    a->sp.lora = a->lora;
    a->sp.n_lora = a->n_lora;
    return SLM_EXIT_OK;
}

/* "8M", "512K", "2GB", "1048576" -> bytes. */
static bool parse_size(const char *flag, const char *val, uint64_t *out) {
    struct slm_str s = slm_str_trim(slm_str_c(val));
    size_t n = 0;
    while (n < s.len && ((s.ptr[n] >= '0' && s.ptr[n] <= '9') || s.ptr[n] == '.')) {
        n++;
    }
    double v;
    struct slm_str unit = slm_str_sub(s, n, SIZE_MAX);
    static const struct {
        const char *u;
        double mul;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"K", 1024.0},
                 {"KiB", 1024.0},
                 {"KB", 1e3},
                 {"M", 1048576.0},
                 {"MiB", 1048576.0},
                 {"MB", 1e6},
                 {"G", 1073741824.0},
                 {"GiB", 1073741824.0},
                 {"GB", 1e9}};
    if (n == 0 || slm_parse_f64(slm_str_sub(s, 0, n), &v) != SLM_OK) {
        slm_cli_error("serve", "%s: expected a size such as 8M or 2G, got '%s'", flag, val);
        return false;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(units); i++) {
        if (slm_str_eq_nocase(unit, slm_str_c(units[i].u)) && v * units[i].mul < 1.8e19) {
            *out = (uint64_t)(v * units[i].mul);
            return true;
        }
    }
    slm_cli_error("serve", "%s: unknown size unit in '%s' (use K, M, G, KB, MB, GB)", flag, val);
    return false;
}

/* Go-style durations ("5m", "1h30m", "-1"), or seconds. */
static bool parse_duration(const char *val, int64_t *ms) {
    struct slm_str s = slm_str_trim(slm_str_c(val));
    double v;
    if (slm_parse_f64(s, &v) == SLM_OK) {
        *ms = v < 0 ? -1 : (int64_t)(v * 1000);
        return true;
    }
    if (s.len && s.ptr[0] == '-') {
        *ms = -1;
        return true;
    }
    double total = 0;
    size_t i = 0;
    while (i < s.len) {
        size_t a = i;
        while (i < s.len && ((s.ptr[i] >= '0' && s.ptr[i] <= '9') || s.ptr[i] == '.')) {
            i++;
        }
        if (a == i || slm_parse_f64(slm_str_sub(s, a, i - a), &v) != SLM_OK || i >= s.len) {
            return false;
        }
        double mul = 0;
        if (i + 1 < s.len && s.ptr[i] == 'm' && s.ptr[i + 1] == 's') {
            mul = 1, i += 2;
        } else if (s.ptr[i] == 's') {
            mul = 1e3, i++;
        } else if (s.ptr[i] == 'm') {
            mul = 60e3, i++;
        } else if (s.ptr[i] == 'h') {
            mul = 3600e3, i++;
        } else {
            return false;
        }
        total += v * mul;
    }
    *ms = (int64_t)total;
    return s.len > 0;
}

static int parse_int_flag(const char *flag, const char *val, long long lo, long long hi,
                          long long *out) {
    return slm_cli_int("serve", flag, val, lo, hi, out) ? SLM_EXIT_OK : SLM_EXIT_USAGE;
}

static int parse_one(int c, const char *val, struct serve_args *a) {
    long long v = 0;
    uint64_t sz = 0;
    int code = SLM_EXIT_OK;
    switch (c) {
    case OPT_HOST: a->sp.host = val; break;
    case OPT_PORT:
        code = parse_int_flag("--port", val, 0, 65535, &v);
        a->sp.port = (uint16_t)v;
        break;
    case OPT_API_KEY: a->sp.api_key = val; break;
    case OPT_INSECURE: a->sp.insecure = true; break;
    case OPT_FORCE: a->pp.force = true; break;
    case OPT_PARALLEL:
        code = parse_int_flag("--parallel", val, 1, 128, &v);
        a->pp.sched.n_parallel = (int32_t)v;
        break;
    case OPT_CTX: code = parse_int_flag("--ctx-size", val, 16, 1 << 20, &a->ctx_size); break;
    case OPT_THREADS:
        code = parse_int_flag("--threads", val, 0, 1024, &v);
        a->pp.sched.n_threads = (int32_t)v;
        break;
    case OPT_BATCH:
        code = parse_int_flag("--batch-size", val, 1, 1 << 20, &v);
        a->pp.sched.n_batch = (uint32_t)v;
        break;
    case OPT_QUEUE:
        code = parse_int_flag("--max-queue", val, 1, 1 << 20, &v);
        a->pp.sched.max_queue = (uint32_t)v;
        break;
    case OPT_CONTEXTS:
        code = parse_int_flag("--max-contexts", val, 1, 64, &v);
        a->pp.sched.max_contexts = (uint32_t)v;
        break;
    case OPT_BUDGET:
        code = parse_size("--memory-budget", val, &sz) ? SLM_EXIT_OK : SLM_EXIT_USAGE;
        a->pp.memory_budget = sz;
        break;
    case OPT_KEEP_ALIVE:
        if (!parse_duration(val, &a->pp.default_keep_alive_ms)) {
            slm_cli_error("serve",
                          "--keep-alive: expected a duration such as 5m, 1h or -1, got "
                          "'%s'",
                          val);
            code = SLM_EXIT_USAGE;
        }
        break;
    case OPT_MAX_BODY:
        code = parse_size("--max-body", val, &sz) ? SLM_EXIT_OK : SLM_EXIT_USAGE;
        if (code == SLM_EXIT_OK && (sz < 1024 || sz > ((uint64_t)1 << 32))) {
            slm_cli_error("serve", "--max-body must be from 1K to 4G");
            code = SLM_EXIT_USAGE;
        }
        a->sp.max_body = (size_t)sz;
        break;
    case OPT_MAX_TOKENS:
        code = parse_int_flag("--max-tokens", val, 0, 1 << 24, &v);
        a->sp.max_tokens = (int32_t)v;
        break;
    case OPT_MAX_CONN:
        code = parse_int_flag("--max-connections", val, 1, 100000, &v);
        a->sp.max_connections = (uint32_t)v;
        break;
    case OPT_MAX_CLIENT_CONN:
        code = parse_int_flag("--max-client-connections", val, 1, 100000, &v);
        a->sp.max_client_connections = (uint32_t)v;
        break;
    case OPT_MAX_BODY_TOTAL:
        code = parse_size("--max-body-total", val, &sz) ? SLM_EXIT_OK : SLM_EXIT_USAGE;
        if (code == SLM_EXIT_OK && (sz < 1024 || sz > ((uint64_t)1 << 40))) {
            slm_cli_error("serve", "--max-body-total must be from 1K to 1T");
            code = SLM_EXIT_USAGE;
        }
        a->sp.max_body_total = (size_t)sz;
        break;
    case OPT_HEADER_TIMEOUT:
        code = slm_cli_float("serve", "--header-timeout", val, 0.01, 3600, &a->sp.header_timeout)
                   ? SLM_EXIT_OK
                   : SLM_EXIT_USAGE;
        break;
    case OPT_GRAMMAR_BUDGET:
        code = slm_cli_float("serve", "--grammar-budget", val, 0, 86400, &a->sp.grammar_budget)
                   ? SLM_EXIT_OK
                   : SLM_EXIT_USAGE;
        break;
    case OPT_TIMEOUT:
        code = parse_int_flag("--request-timeout", val, 0, 86400 * 7, &v);
        a->sp.request_timeout = (double)v;
        break;
    case OPT_TOOL_TEMPLATE: a->sp.tool_template = val; break;
    case OPT_ROUTER: a->router_path = val; break;
    case OPT_LORA: code = parse_lora(val, a); break;
    case OPT_MODEL: a->sp.default_model = val; break;
    case OPT_KV_TYPE:
        if (strcmp(val, "f16") != 0 && strcmp(val, "f32") != 0) {
            slm_cli_error("serve", "--kv-type: expected f16 or f32, got '%s'", val);
            code = SLM_EXIT_USAGE;
        }
        a->pp.sched.kv_f32 = strcmp(val, "f32") == 0;
        break;
    default: code = SLM_EXIT_USAGE; break;
    }
    return code;
}

static int parse_args(int argc, char **argv, struct serve_args *a) {
    static const struct option opts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"parallel", required_argument, NULL, OPT_PARALLEL},
        {"ctx-size", required_argument, NULL, OPT_CTX},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"max-queue", required_argument, NULL, OPT_QUEUE},
        {"max-contexts", required_argument, NULL, OPT_CONTEXTS},
        {"memory-budget", required_argument, NULL, OPT_BUDGET},
        {"keep-alive", required_argument, NULL, OPT_KEEP_ALIVE},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"max-client-connections", required_argument, NULL, OPT_MAX_CLIENT_CONN},
        {"max-body-total", required_argument, NULL, OPT_MAX_BODY_TOTAL},
        {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"grammar-budget", required_argument, NULL, OPT_GRAMMAR_BUDGET},
        {"request-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"tool-template", required_argument, NULL, OPT_TOOL_TEMPLATE},
        {"kv-type", required_argument, NULL, OPT_KV_TYPE},
        {"router", required_argument, NULL, OPT_ROUTER},
        {"lora", required_argument, NULL, OPT_LORA},
        {"model", required_argument, NULL, OPT_MODEL},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            usage(stdout);
            return -1;
        }
        if (c == '?') {
            slm_cli_error("serve", "unknown flag or missing value: '%s' (see slm serve --help)",
                          argv[optind - 1]);
            return SLM_EXIT_USAGE;
        }
        int code = parse_one(c, optarg, a);
        if (code != SLM_EXIT_OK) {
            return code;
        }
    }
    if (optind < argc) {
        slm_cli_error("serve", "unexpected argument '%s' (see slm serve --help)", argv[optind]);
        return SLM_EXIT_USAGE;
    }
    return SLM_EXIT_OK;
}

static int serve(struct serve_args *a, const sigset_t *sigs) {
    struct slm_err err = {0};
    struct slm_pool *pool = NULL;
    struct slm_server *srv = NULL;
    int32_t par = a->pp.sched.n_parallel > 0 ? a->pp.sched.n_parallel : 4;
    if (a->ctx_size > 0) {
        a->pp.sched.n_ctx = (uint32_t)(a->ctx_size * par);
    }
    a->sp.n_ctx_seq = (uint32_t)a->ctx_size; /* 0: the scheduler's default, as the server knows */
    struct slm_router *router = NULL;
    int rc = slm_pool_init(&a->pp, &pool, &err);
    if (rc == SLM_OK && a->router_path) {
        struct slm_router_params rp = slm_router_params_default();
        rp.pool = pool;
        rp.n_threads = a->pp.sched.n_threads;
        rc = slm_router_load(a->router_path, &rp, &router, &err);
        if (rc != SLM_OK) {
            slm_pool_free(pool);
            return slm_cli_fail("serve", rc, &err); /* the message names file, line and key */
        }
        a->sp.router = router;
    }
    if (rc == SLM_OK) {
        a->sp.backend = slm_server_backend_pool(pool);
        rc = slm_server_open(&a->sp, &srv, &err);
    }
    if (rc != SLM_OK) {
        slm_router_free(router);
        slm_pool_free(pool);
        int code = slm_cli_fail("serve", rc, &err);
        return rc == SLM_E_INVALID ? SLM_EXIT_USAGE : code; /* a flag's value is at fault */
    }
    char url[300];
    slm_server_url(srv, url, sizeof(url));
    printf("slm serve: listening on %s (OpenAI %s/v1, Ollama %s/api)%s\n", url, url, url,
           a->sp.api_key ? "; API key required" : "");
    if (router) {
        const struct slm_router_config *cfg = slm_router_get_config(router);
        printf("slm serve: router %s: %zu route%s (", cfg->path, cfg->n_routes,
               cfg->n_routes == 1 ? "" : "s");
        for (size_t i = 0; i < cfg->n_routes; i++) {
            printf("%s%s", i ? ", " : "", cfg->routes[i].name);
        }
        printf(")\n");
    }
    fflush(stdout);
    int sig = 0;
    sigwait(sigs, &sig);
    fprintf(stderr, "slm serve: %s, shutting down\n", sig == SIGTERM ? "SIGTERM" : "interrupted");
    slm_router_shutdown(router); /* shadow calls still running are cancelled, not waited for */
    slm_server_close(srv);
    slm_router_free(router);
    slm_pool_free(pool);
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    struct serve_args a;
    memset(&a, 0, sizeof(a));
    a.sp = slm_server_params_default();
    a.pp = slm_pool_params_default();
    a.sp.api_key = getenv("SLM_API_KEY");
    a.pull = slm_pull_params_default();
    slm_cli_pull_env(&a.pull);
    a.sp.pull = &a.pull;
    int code = parse_args(argc, argv, &a);
    if (code != SLM_EXIT_OK) {
        return code < 0 ? SLM_EXIT_OK : code;
    }
    if (a.sp.api_key && !a.sp.api_key[0]) {
        a.sp.api_key = NULL;
    }
    if (!getenv("SLM_LOG")) {
        slm_log_set_level(SLM_LOG_INFO); /* a server logs its requests */
    }
    /* Every thread started from here on inherits the mask: the signals are
     * taken only by sigwait() below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    return serve(&a, &sigs);
}

const struct slm_cli_command slm_cli_cmd_serve = {"serve",
                                                  "Serve models over HTTP (OpenAI and "
                                                  "Ollama APIs)",
                                                  run, 30};
