/*
 * cli/cmd_show.c - `slm show NAME`: what a model is (from its GGUF header
 * and its manifest), as text like `ollama show`, as JSON, or as a Modelfile;
 * and whether it fits: slm/memory.h's estimate next to the memory available.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/engine.h"
#include "slm/json.h"
#include "slm/memory.h"
#include "slm/store.h"

static const char *const CMD = "show";

static void usage(void) {
    printf("Usage: slm show [OPTIONS] NAME\n"
           "\n"
           "Shows a model: architecture, parameters, quantization, context and embedding\n"
           "length, chat template, adapters, size, and what its Modelfile set (parameters,\n"
           "system message, template, messages, license). NAME may be a .gguf path.\n"
           "\n"
           "Options:\n"
           "  --modelfile   print a Modelfile that recreates the model\n"
           "  --json        everything as one JSON object\n"
           "  --license     only the license\n"
           "  --parameters  only the parameters\n"
           "  --system      only the system message\n"
           "  --template    only the template\n"
           "  --ctx-size N  context (tokens, all sequences) the memory estimate is for\n"
           "                (default: the training context, at most 4096, per sequence)\n"
           "  --parallel N  sequences served at once, each with its own share of the\n"
           "                context (default 1; slm serve uses 4)\n"
           "  -h, --help    this help\n"
           "\n"
           "The Memory section estimates what loading the model takes (process, weights,\n"
           "KV cache, compute buffers, tokenizer, adapters) and compares it with the\n"
           "memory available now (RAM, under a cgroup limit; plus free VRAM with a GPU\n"
           "backend; SLM_MEMORY_AVAILABLE=BYTES overrides it). See docs/memory.md.\n");
}

static void count_str(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ULL) {
        snprintf(out, cap, "%.1fB", (double)n / 1e9);
    } else if (n >= 1000000ULL) {
        snprintf(out, cap, "%.1fM", (double)n / 1e6);
    } else if (n >= 1000ULL) {
        snprintf(out, cap, "%.1fK", (double)n / 1e3);
    } else {
        snprintf(out, cap, "%llu", (unsigned long long)n);
    }
}

static uint64_t total_size(const struct slm_manifest *m) {
    uint64_t total = 0;
    int64_t s = slm_file_size(m->model_path);
    total += s > 0 ? (uint64_t)s : 0;
    for (size_t i = 0; i < m->n_adapters; i++) {
        s = slm_file_size(m->adapters[i].path);
        total += s > 0 ? (uint64_t)s : 0;
    }
    return total;
}

static void print_indented(const char *text) {
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        printf("    %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
}

static const char *license_of(const struct slm_manifest *m, const struct slm_model_info *info) {
    return m->license ? m->license : (info->license[0] ? info->license : NULL);
}

static void print_params(const json_t *params, const char *indent) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item) {
                printf("%s%-20s \"%s\"\n", indent, key, json_string_value(item));
            }
        } else if (json_is_integer(v)) {
            printf("%s%-20s %lld\n", indent, key, (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            printf("%s%-20s %g\n", indent, key, json_real_value(v));
        } else if (json_is_string(v)) {
            printf("%s%-20s \"%s\"\n", indent, key, json_string_value(v));
        }
    }
}

/* The estimate and what it is compared with. */
struct fit {
    struct slm_mem_estimate est;
    struct slm_mem_avail avail;
    uint64_t vram_free, vram_total;
    uint32_t max_ctx; /* largest context that fits, 0 when none */
};

static double mib(uint64_t b) {
    return (double)b / (1024.0 * 1024.0);
}

static void print_memory(const struct fit *f) {
    const struct slm_mem_estimate *e = &f->est;
    printf("  Memory (estimate for ctx %u, %d sequence%s of %u)\n", e->n_ctx, e->n_parallel,
           e->n_parallel == 1 ? "" : "s", e->n_ctx_seq);
    printf("    %-20s %.1f MiB\n", "weights", mib(e->weights));
    printf("    %-20s %.1f MiB (%.1f KiB per token)\n", "KV cache", mib(e->kv),
           (double)e->kv_per_cell / 1024.0);
    printf("    %-20s %.1f MiB\n", "compute", mib(e->compute));
    printf("    %-20s %.1f MiB\n", "output", mib(e->output));
    printf("    %-20s %.1f MiB\n", "tokenizer", mib(e->vocab));
    if (e->adapters) {
        printf("    %-20s %.1f MiB\n", "adapters", mib(e->adapters));
    }
    printf("    %-20s %.1f MiB\n", "process", mib(e->baseline));
    printf("    %-20s %.1f MiB\n", "total", mib(e->total));
    printf("    %-20s %.1f MiB (%s; RAM %.1f MiB)\n", "available", mib(f->avail.available),
           f->avail.source, mib(f->avail.total));
    if (f->vram_total) {
        printf("    %-20s %.1f MiB free of %.1f MiB (included above)\n", "VRAM", mib(f->vram_free),
               mib(f->vram_total));
    }
    if (e->total <= f->avail.available) {
        printf("    %-20s yes\n", "fits");
    } else if (f->max_ctx > 0) {
        printf("    %-20s no: try --ctx-size %u or a smaller quantization\n", "fits", f->max_ctx);
    } else {
        printf("    %-20s no: try a smaller quantization\n", "fits");
    }
    printf("\n");
}

static json_t *memory_json(const struct fit *f) {
    const struct slm_mem_estimate *e = &f->est;
    return json_pack(
        "{sI sI sI sI sI sI sI sI sI sI sI sI ss sI sI sI sb sI}", "n_ctx", (json_int_t)e->n_ctx,
        "n_parallel", (json_int_t)e->n_parallel, "baseline", (json_int_t)e->baseline, "weights",
        (json_int_t)e->weights, "kv_cache", (json_int_t)e->kv, "compute", (json_int_t)e->compute,
        "output", (json_int_t)e->output, "tokenizer", (json_int_t)e->vocab, "adapters",
        (json_int_t)e->adapters, "total", (json_int_t)e->total, "available",
        (json_int_t)f->avail.available, "ram_total", (json_int_t)f->avail.total, "available_source",
        f->avail.source, "vram_free", (json_int_t)f->vram_free, "vram_total",
        (json_int_t)f->vram_total, "max_ctx", (json_int_t)f->max_ctx, "fits",
        e->total <= f->avail.available, "kv_per_token", (json_int_t)e->kv_per_cell);
}

static int print_text(const struct slm_manifest *m, const struct slm_model_info *info,
                      const char *tmpl_text, const struct fit *fit) {
    char params[32], size[32];
    count_str(info->n_params, params, sizeof(params));
    slm_format_size(size, sizeof(size), total_size(m));
    printf("  Model\n");
    printf("    %-20s %s\n", "architecture", info->arch[0] ? info->arch : "unknown");
    printf("    %-20s %s\n", "parameters", params);
    printf("    %-20s %s\n", "quantization", info->ftype[0] ? info->ftype : "unknown");
    printf("    %-20s %d\n", "context length", info->n_ctx_train);
    printf("    %-20s %d\n", "embedding length", info->n_embd);
    printf("    %-20s %s\n", "chat template",
           info->has_chat_template ? "yes (from the GGUF)" : "none: chat requests use ChatML");
    printf("    %-20s %s\n", "size", size);
    if (m->model_digest) {
        printf("    %-20s %s\n", "digest", m->model_digest);
    }
    if (m->source) {
        printf("    %-20s %s\n", "source", m->source);
    }
    printf("\n");
    print_memory(fit);
    if (m->n_adapters > 0) {
        printf("  Adapters\n");
        for (size_t i = 0; i < m->n_adapters; i++) {
            printf("    %s (scale %g)\n", m->adapters[i].digest, (double)m->adapters[i].scale);
        }
        printf("\n");
    }
    if (json_object_size(m->params) > 0) {
        printf("  Parameters\n");
        print_params(m->params, "    ");
        printf("\n");
    }
    if (m->system) {
        printf("  System\n");
        print_indented(m->system);
        printf("\n");
    }
    if (tmpl_text) {
        printf("  Template (Liquid)\n");
        print_indented(tmpl_text);
        printf("\n");
    }
    if (json_array_size(m->messages) > 0) {
        printf("  Messages\n");
        size_t i;
        json_t *msg;
        json_array_foreach(m->messages, i, msg) {
            printf("    %-10s %s\n", json_string_value(json_object_get(msg, "role")),
                   json_string_value(json_object_get(msg, "content")));
        }
        printf("\n");
    }
    const char *lic = license_of(m, info);
    if (lic) {
        printf("  License\n");
        print_indented(lic);
        printf("\n");
    }
    return SLM_EXIT_OK;
}

static int print_json(const struct slm_manifest *m, const struct slm_model_info *info,
                      const char *tmpl_text, const struct fit *fit) {
    json_t *adapters = json_array();
    for (size_t i = 0; i < m->n_adapters; i++) {
        json_array_append_new(adapters, json_pack("{sssssf}", "digest", m->adapters[i].digest,
                                                  "path", m->adapters[i].path, "scale",
                                                  (double)m->adapters[i].scale));
    }
    const char *lic = license_of(m, info);
    json_t *doc =
        json_pack("{ss s{ss* ss* sI ss*} s{ss sI ss si si si si si sb} so so sO ss* ss* sO ss*}",
                  "name", m->name, "model", "path", m->model_path, "digest", m->model_digest,
                  "size", (json_int_t)m->model_size, "source", m->source, "details", "architecture",
                  info->arch, "parameter_count", (json_int_t)info->n_params, "quantization",
                  info->ftype, "context_length", info->n_ctx_train, "embedding_length",
                  info->n_embd, "block_count", info->n_layer, "head_count", info->n_head,
                  "vocab_size", info->n_vocab, "has_chat_template", info->has_chat_template,
                  "adapters", adapters, "memory", memory_json(fit), "params", m->params, "system",
                  m->system, "template", tmpl_text, "messages", m->messages, "license", lic);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text) {
        slm_cli_error(CMD, "cannot serialize the model's details");
        return SLM_EXIT_ERROR;
    }
    printf("%s\n", text);
    free(text);
    return SLM_EXIT_OK;
}

enum only { ALL, MODELFILE, JSON, LICENSE, PARAMS, SYSTEM, TEMPLATE };

/* The estimate for the manifest's model and adapters with `mp`'s context. */
static int estimate(const struct slm_manifest *m, struct slm_mem_params mp,
                    struct slm_model_info *info, struct fit *fit, struct slm_err *err) {
    const char *paths[SLM_MODELFILE_MAX_ADAPTERS];
    size_t n = SLM_MIN(m->n_adapters, SLM_ARRAY_LEN(paths));
    for (size_t i = 0; i < n; i++) {
        paths[i] = m->adapters[i].path;
    }
    mp.adapter_paths = paths;
    mp.n_adapters = n;
    int rc = slm_mem_estimate(m->model_path, &mp, &fit->est, info, err);
    if (rc == SLM_OK) {
        slm_mem_usable(&fit->avail, &fit->vram_free, &fit->vram_total);
        fit->max_ctx = slm_mem_max_ctx(&fit->est, fit->avail.available);
    }
    return rc;
}

static int show(const struct slm_manifest *m, enum only what, const struct slm_mem_params *mp) {
    struct slm_model_info info;
    struct slm_err err = {0};
    struct fit fit;
    int rc = estimate(m, *mp, &info, &fit, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    struct slm_buf tmpl = {0};
    if (m->template_path) {
        rc = slm_file_read(m->template_path, (size_t)1 << 20, &tmpl, &err);
        if (rc != SLM_OK) {
            return slm_cli_fail(CMD, rc, &err);
        }
    }
    const char *tmpl_text = m->template_path ? slm_buf_cstr(&tmpl) : NULL;
    int exit_code = SLM_EXIT_OK;
    const char *lic;
    switch (what) {
    case ALL: exit_code = print_text(m, &info, tmpl_text, &fit); break;
    case JSON: exit_code = print_json(m, &info, tmpl_text, &fit); break;
    case MODELFILE: {
        struct slm_buf out = {0};
        rc = slm_manifest_to_modelfile(m, &out, &err);
        if (rc == SLM_OK) {
            fputs(slm_buf_cstr(&out), stdout);
        } else {
            exit_code = slm_cli_fail(CMD, rc, &err);
        }
        slm_buf_free(&out);
        break;
    }
    case LICENSE:
        lic = license_of(m, &info);
        if (lic) {
            printf("%s\n", lic);
        }
        break;
    case PARAMS: print_params(m->params, ""); break;
    case SYSTEM:
        if (m->system) {
            printf("%s\n", m->system);
        }
        break;
    case TEMPLATE:
        if (tmpl_text) {
            printf("%s\n", tmpl_text);
        } else {
            printf("%s\n", info.has_chat_template ? "(the GGUF's chat template)"
                                                  : "none: chat requests use ChatML");
        }
        break;
    }
    slm_buf_free(&tmpl);
    return exit_code;
}

static int run(int argc, char **argv) {
    static const struct {
        const char *flag;
        enum only what;
    } flags[] = {{"--modelfile", MODELFILE}, {"--json", JSON},     {"--license", LICENSE},
                 {"--parameters", PARAMS},   {"--system", SYSTEM}, {"--template", TEMPLATE}};
    enum only what = ALL;
    const char *name = NULL;
    struct slm_mem_params mp = slm_mem_params_default();
    for (int i = 1; i < argc; i++) {
        if (slm_cli_is_help(argv[i])) {
            usage();
            return SLM_EXIT_OK;
        }
        bool ctx = strcmp(argv[i], "--ctx-size") == 0;
        if (ctx || strcmp(argv[i], "--parallel") == 0) {
            long long v;
            if (!slm_cli_int(CMD, argv[i], i + 1 < argc ? argv[i + 1] : NULL, ctx ? 16 : 1,
                             ctx ? 1 << 24 : 128, &v)) {
                return SLM_EXIT_USAGE;
            }
            i++;
            if (ctx) {
                mp.n_ctx = (uint32_t)v;
            } else {
                mp.n_parallel = (int32_t)v;
            }
            continue;
        }
        bool matched = false;
        for (size_t f = 0; f < SLM_ARRAY_LEN(flags); f++) {
            if (strcmp(argv[i], flags[f].flag) == 0) {
                what = flags[f].what;
                matched = true;
            }
        }
        if (matched) {
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            slm_cli_error(CMD, "unknown option '%s' (see slm show --help)", argv[i]);
            return SLM_EXIT_USAGE;
        }
        if (name) {
            slm_cli_error(CMD, "one model at a time");
            return SLM_EXIT_USAGE;
        }
        name = argv[i];
    }
    if (!name) {
        slm_cli_error(CMD, "no model named (see slm show --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_store *store = NULL;
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc == SLM_OK) {
        rc = slm_store_resolve(store, name, &m, &err);
    }
    int exit_code = rc == SLM_OK ? show(m, what, &mp) : slm_cli_fail(CMD, rc, &err);
    slm_manifest_free(m);
    slm_store_close(store);
    return exit_code;
}

const struct slm_cli_command slm_cli_cmd_show = {"show", "Show a model's details", run, 22};
