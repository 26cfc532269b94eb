/*
 * cli/cmd_tune.c - `slm tune MODEL DATA`: trains a LoRA adapter (or, with
 * --method full, every weight) on a dataset, with a progress line,
 * validation, checkpoints (every 5% of the run, on Ctrl-C and SIGTERM) and
 * --resume; ends with a report and an SVG of the loss curves.
 *
 * `slm tune eval MODEL DATA` measures a model (with --adapter) on a dataset:
 * mean loss over completion tokens and, for label-like completions, accuracy
 * by scoring every label.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "slm/engine.h"
#include "slm/store.h"
#include "slm/tune.h"

/* Models at least this large train with huge pages. */
#define TUNE_HUGEPAGES_MIN ((off_t)64 << 20)

static const char *const CMD = "tune";

static void usage(void) {
    printf("Usage: slm tune [OPTIONS] MODEL DATA\n"
           "       slm tune eval [OPTIONS] MODEL DATA\n"
           "\n"
           "Teaches MODEL (a store name or a .gguf file) the job shown in DATA. By default it\n"
           "trains a LoRA adapter on the frozen base (quantized bases included) and writes it\n"
           "as a GGUF adapter that `slm run --adapter` and Modelfile ADAPTER use.\n"
           "\n"
           "DATA: JSONL with {\"prompt\",\"completion\"}, {\"messages\":[...]} (loss on assistant\n"
           "turns) or {\"text\"} (loss on every token); or CSV/JSONL rows with --template (a\n"
           "Liquid file rendering the prompt from the row) and --completion-field. The loss\n"
           "covers completion tokens only. docs/tuning.md walks through a whole run.\n"
           "\n"
           "Output:\n"
           "  -o, --output FILE      adapter (or model, with --method full); default\n"
           "                         DATA-lora.gguf / DATA-full.gguf\n"
           "  --method lora|full     LoRA adapter (default) or full fine-tune (small models)\n"
           "LoRA:\n"
           "  --rank N               default 16\n"
           "  --alpha A              default 2 x rank (scale alpha/rank)\n"
           "  --dropout P            on the LoRA input, default 0\n"
           "  --targets LIST         q,k,v,o,gate,up,down (default all seven)\n"
           "  --base-type T          auto|f32|q8_0|keep: how frozen weights are held (default\n"
           "                         auto: F32 and Q8_0 as stored, others dequantized to F32)\n"
           "Batches and schedule:\n"
           "  --ctx-size N           tokens per row (default 512, at most the model's)\n"
           "  --batch-size N         rows per micro-batch (default 1)\n"
           "  --grad-accum N         micro-batches per optimizer step (default 1)\n"
           "  --no-packing           one example per row instead of packing several\n"
           "  --epochs N             passes over the data (default 1)\n"
           "  --steps N              optimizer steps (overrides --epochs)\n"
           "  --lr X                 peak learning rate (default 2e-4 LoRA, 1e-4 full)\n"
           "  --lr-min F             cosine floor as a fraction of --lr (default 0.1)\n"
           "  --warmup N             warm-up steps (default 5%% of the steps)\n"
           "  --weight-decay X       AdamW weight decay (default 0)\n"
           "  --grad-clip X          global gradient-norm clip (default 1; 0 = off)\n"
           "  --seed N               same seed, same data, same flags: same weights\n"
           "Data:\n"
           "  --valid FILE           validation set (else --valid-split or --valid-hash)\n"
           "  --valid-split N        hold out about 1 example in N (seeded)\n"
           "  --valid-hash FIELD[:M] hold out rows whose sha256(FIELD) first byte %% M == 0\n"
           "                         (M default 10: the banking77 dev split in DESIGN.md)\n"
           "  --eval-every N         steps between validation passes (default 10%% of the run)\n"
           "  --eval-batches N       cap on validation batches per pass (default all)\n"
           "  --template FILE        Liquid prompt template for CSV/JSONL rows\n"
           "  --completion-field F   rows: field holding the completion (default completion)\n"
           "  --chat-template T      messages: template name or Jinja text (default the model's)\n"
           "  --no-eos               do not end completions with the end-of-sequence token\n"
           "Run:\n"
           "  --checkpoint FILE      default OUTPUT.ckpt; also written on Ctrl-C and SIGTERM\n"
           "  --checkpoint-every N   default 5%% of the run, at most once a minute\n"
           "  --resume               continue from the checkpoint (after a crash or kill -9)\n"
           "  --time-limit SECONDS   stop after this long (checkpoint and output written)\n"
           "  --threads N            default: 1 for models under 20M parameters (faster),\n"
           "                         else idle physical cores\n"
           "  --device D             auto|cpu|NAME: where training runs (default auto: the\n"
           "                         first GPU llama.cpp was built with, else the CPU); NAME\n"
           "                         as ggml reports it, e.g. Vulkan0, CUDA0; ops the device\n"
           "                         lacks run on the CPU\n"
           "  --report FILE          loss curves as SVG (default OUTPUT.loss.svg)\n"
           "  -q, --quiet            no progress line\n"
           "\n"
           "eval: --adapter FILE, the same data flags, --valid-hash to measure the held-out\n"
           "rows only and --eval-batches N to stop after N examples; prints the loss over\n"
           "the completion tokens and, when completions form a label set (at most 256),\n"
           "the accuracy of picking the most likely label (every label is scored). eval\n"
           "runs llama.cpp's inference, which picks its devices itself (no --device).\n");
}

enum kind { K_U32, K_U64, K_F32, K_STR, K_BOOL };

struct opt {
    const char *name;
    enum kind kind;
    void *ptr;
    double lo, hi;
};

struct tune_cli {
    struct slm_tune_params p;
    const char *out, *valid, *valid_hash, *template_path, *completion_field, *chat_template;
    const char *checkpoint, *report, *method, *targets, *base_type, *adapter, *device;
    uint32_t valid_split, time_limit;
    bool resume, quiet, no_eos, eval;
    char out_buf[PATH_MAX], ckpt_buf[PATH_MAX], report_buf[PATH_MAX];
};

static int parse_opts(struct tune_cli *c, int argc, char **argv, const char **pos, int *n_pos) {
    struct slm_tune_params *p = &c->p;
    const struct opt opts[] = {
        {"--output", K_STR, &c->out, 0, 0},
        {"-o", K_STR, &c->out, 0, 0},
        {"--method", K_STR, &c->method, 0, 0},
        {"--rank", K_U32, &p->rank, 1, 1024},
        {"--alpha", K_F32, &p->alpha, 0.001, 1e6},
        {"--dropout", K_F32, &p->dropout, 0, 0.9},
        {"--targets", K_STR, &c->targets, 0, 0},
        {"--base-type", K_STR, &c->base_type, 0, 0},
        {"--ctx-size", K_U32, &p->n_ctx, 8, 131072},
        {"--batch-size", K_U32, &p->batch, 1, 4096},
        {"--grad-accum", K_U32, &p->grad_accum, 1, 65536},
        {"--no-packing", K_BOOL, &p->no_packing, 0, 0},
        {"--epochs", K_U32, &p->epochs, 1, 100000},
        {"--steps", K_U32, &p->steps, 1, 100000000},
        {"--lr", K_F32, &p->lr, 1e-9, 10},
        {"--lr-min", K_F32, &p->lr_min, 0, 1},
        {"--warmup", K_U32, &p->warmup, 0, 100000000},
        {"--weight-decay", K_F32, &p->weight_decay, 0, 1},
        {"--grad-clip", K_F32, &p->grad_clip, 0, 1e9},
        {"--seed", K_U64, &p->seed, 0, 1e18},
        {"--valid", K_STR, &c->valid, 0, 0},
        {"--valid-split", K_U32, &c->valid_split, 2, 1000000},
        {"--valid-hash", K_STR, &c->valid_hash, 0, 0},
        {"--eval-every", K_U32, &p->eval_every, 1, 100000000},
        {"--eval-batches", K_U32, &p->eval_max_batches, 1, 100000000},
        {"--template", K_STR, &c->template_path, 0, 0},
        {"--completion-field", K_STR, &c->completion_field, 0, 0},
        {"--chat-template", K_STR, &c->chat_template, 0, 0},
        {"--no-eos", K_BOOL, &c->no_eos, 0, 0},
        {"--checkpoint", K_STR, &c->checkpoint, 0, 0},
        {"--checkpoint-every", K_U32, &p->checkpoint_every, 1, 100000000},
        {"--resume", K_BOOL, &c->resume, 0, 0},
        {"--time-limit", K_U32, &c->time_limit, 1, 100000000},
        {"--threads", K_U32, &p->n_threads, 1, 1024},
        {"--device", K_STR, &c->device, 0, 0},
        {"--report", K_STR, &c->report, 0, 0},
        {"--quiet", K_BOOL, &c->quiet, 0, 0},
        {"-q", K_BOOL, &c->quiet, 0, 0},
        {"--adapter", K_STR, &c->adapter, 0, 0},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (slm_cli_is_help(a)) {
            usage();
            return 1;
        }
        const struct opt *o = NULL;
        for (size_t k = 0; k < SLM_ARRAY_LEN(opts) && !o; k++) {
            o = strcmp(a, opts[k].name) == 0 ? &opts[k] : NULL;
        }
        if (!o) {
            if (a[0] == '-' && a[1]) {
                slm_cli_error(CMD, "unknown option '%s' (see slm tune --help)", a);
                return -1;
            }
            if (*n_pos >= 2) {
                slm_cli_error(CMD, "too many arguments (see slm tune --help)");
                return -1;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        if (o->kind == K_BOOL) {
            *(bool *)o->ptr = true;
            continue;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value", a);
            return -1;
        }
        const char *v = argv[++i];
        long long ll;
        double d;
        switch (o->kind) {
        case K_STR: *(const char **)o->ptr = v; break;
        case K_U32:
            if (!slm_cli_int(CMD, a, v, (long long)o->lo, (long long)o->hi, &ll)) {
                return -1;
            }
            *(uint32_t *)o->ptr = (uint32_t)ll;
            break;
        case K_U64:
            if (!slm_cli_int(CMD, a, v, (long long)o->lo, (long long)o->hi, &ll)) {
                return -1;
            }
            *(uint64_t *)o->ptr = (uint64_t)ll;
            break;
        case K_F32:
            if (!slm_cli_float(CMD, a, v, o->lo, o->hi, &d)) {
                return -1;
            }
            *(float *)o->ptr = (float)d;
            break;
        case K_BOOL: break;
        }
    }
    return 0;
}

/* Formats a default file name derived from another path into `buf`; a name
 * that does not fit is an error naming the flag that sets it, never a
 * silently cut path (a cut checkpoint name would write to another file). */
static int SLM_PRINTF(4, 5)
    derive_path(char *buf, size_t cap, const char *flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        slm_cli_error(CMD, "the default %s name would be longer than %zu bytes: give %s", flag + 2,
                      cap - 1, flag);
        return -1;
    }
    return 0;
}

/* Fills in the enum-valued flags and the default file names. */
static int finish_opts(struct tune_cli *c, const char *data, struct slm_tune_model_params *mp) {
    if (c->method && strcmp(c->method, "full") == 0) {
        c->p.method = SLM_TUNE_FULL;
    } else if (c->method && strcmp(c->method, "lora") != 0) {
        slm_cli_error(CMD, "--method must be lora or full, got '%s'", c->method);
        return -1;
    }
    struct slm_err err = {0};
    if (c->targets && slm_tune_targets_parse(c->targets, &c->p.targets, &err) != SLM_OK) {
        slm_cli_error(CMD, "--targets: %s", err.msg);
        return -1;
    }
    *mp = slm_tune_model_params_default();
    mp->trainable = c->p.method == SLM_TUNE_FULL;
    mp->device = c->device;
    /* Measurement and test switches (docs/commands.md, "Environment"). */
    mp->cpu_sched = slm_cli_env_on("SLM_TUNE_CPU_SCHED");
    c->p.no_weight_transpose = slm_cli_env_on("SLM_TUNE_NO_TRANSPOSE");
    c->p.no_graph_rewrite = slm_cli_env_on("SLM_TUNE_NO_REWRITE");
    const char *bts[] = {"auto", "f32", "keep", "q8_0"};
    bool ok = !c->base_type;
    for (int k = 0; k < 4 && !ok; k++) {
        if (strcmp(c->base_type, bts[k]) == 0) {
            mp->base_type = (enum slm_tune_base_type)k;
            ok = true;
        }
    }
    if (!ok) {
        slm_cli_error(CMD, "--base-type must be auto, f32, q8_0 or keep, got '%s'", c->base_type);
        return -1;
    }
    if (!c->out) {
        struct slm_str d = slm_str_c(data);
        size_t slash = 0, dot = d.len;
        for (size_t i = 0; i < d.len; i++) {
            slash = d.ptr[i] == '/' ? i + 1 : slash;
            dot = d.ptr[i] == '.' ? i : dot;
        }
        dot = dot > slash ? dot : d.len;
        if (derive_path(c->out_buf, sizeof(c->out_buf), "--output", "%.*s-%s.gguf",
                        (int)(dot - slash), d.ptr + slash,
                        c->p.method == SLM_TUNE_FULL ? "full" : "lora") != 0) {
            return -1;
        }
        c->out = c->out_buf;
    }
    if (!c->checkpoint) {
        if (derive_path(c->ckpt_buf, sizeof(c->ckpt_buf), "--checkpoint", "%s.ckpt", c->out) != 0) {
            return -1;
        }
        c->checkpoint = c->ckpt_buf;
    }
    if (!c->report) {
        struct slm_str o = slm_str_c(c->out);
        size_t n = slm_str_ends_with(o, SLM_STR(".gguf")) ? o.len - 5 : o.len;
        if (derive_path(c->report_buf, sizeof(c->report_buf), "--report", "%.*s.loss.svg", (int)n,
                        o.ptr) != 0) {
            return -1;
        }
        c->report = c->report_buf;
    }
    return 0;
}

/* A file, or a store name: its model file, and in `adapter` the adapter its
 * Modelfile attached (empty when none). Several adapters, or one at a scale
 * other than 1, are refused: neither training nor evaluation applies them. */
static int resolve_model(const char *name, char *path, size_t cap, char *adapter,
                         size_t adapter_cap, struct slm_err *err) {
    adapter[0] = '\0';
    if (slm_file_exists(name)) {
        snprintf(path, cap, "%s", name);
        return SLM_OK;
    }
    struct slm_store *store = NULL;
    struct slm_manifest *m = NULL;
    int rc = slm_store_open(NULL, &store, err);
    if (rc == SLM_OK) {
        rc = slm_store_resolve(store, name, &m, err);
    }
    if (rc == SLM_OK) {
        snprintf(path, cap, "%s", m->model_path);
        if (m->n_adapters > 1 || (m->n_adapters == 1 && m->adapters[0].scale != 1.0f)) {
            rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                             "%s has %zu adapter(s) at scale %g: tune and tune eval apply one "
                             "adapter at scale 1; give its model file (%s) and --adapter instead",
                             name, m->n_adapters, (double)m->adapters[0].scale, m->model_path);
        } else if (m->n_adapters == 1) {
            snprintf(adapter, adapter_cap, "%s", m->adapters[0].path);
        }
    }
    slm_manifest_free(m);
    slm_store_close(store);
    return rc;
}

/* Reads DATA (and the validation set) and tokenizes both. */
static int load_data(struct tune_cli *c, const char *data, struct slm_tune_model *tm,
                     struct slm_dataset **train, struct slm_dataset **valid, struct slm_err *err) {
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.prompt_template = c->template_path;
    rp.completion_field = c->completion_field;
    struct slm_data_records recs = {0}, vrecs = {0};
    int rc = slm_data_read(data, &rp, &recs, err);
    if (rc == SLM_OK && c->valid) {
        rc = slm_data_read(c->valid, &rp, &vrecs, err);
    } else if (rc == SLM_OK && c->valid_hash) {
        char field[128];
        uint32_t mod = 10;
        const char *colon = strchr(c->valid_hash, ':');
        snprintf(field, sizeof(field), "%.*s",
                 (int)(colon ? (size_t)(colon - c->valid_hash) : strlen(c->valid_hash)),
                 c->valid_hash);
        uint64_t m64 = 10;
        if (colon &&
            (slm_parse_u64(slm_str_c(colon + 1), &m64) != SLM_OK || m64 < 2 || m64 > 1000000)) {
            rc = slm_err_set(err, SLM_E_INVALID, "--valid-hash: bad modulus '%s'", colon + 1);
        }
        mod = (uint32_t)m64;
        if (rc == SLM_OK) {
            rc = slm_data_split_hash(&recs, field, mod, &vrecs, err);
        }
    }
    struct slm_tune_model_info info;
    slm_tune_model_get_info(tm, &info);
    struct slm_dataset_params dp = slm_dataset_params_default();
    dp.n_ctx = c->p.n_ctx;
    dp.eos = c->no_eos ? -1 : slm_tune_model_eos(tm);
    dp.chat_template = c->chat_template;
    if (rc == SLM_OK) {
        rc = slm_dataset_init(&recs, slm_tune_model_vocab(tm), &dp, train, err);
    }
    if (rc == SLM_OK && vrecs.n > 0) {
        rc = slm_dataset_init(&vrecs, slm_tune_model_vocab(tm), &dp, valid, err);
    }
    if (rc == SLM_OK && c->valid_split && !*valid) {
        rc = slm_dataset_split(*train, c->valid_split, c->p.seed ? c->p.seed : 42, valid, err);
    }
    slm_data_records_free(&recs);
    slm_data_records_free(&vrecs);
    return rc;
}

struct progress_state {
    struct slm_cli_progress line;
    bool quiet, out_of_time;
    uint32_t every;
    double t0, limit;
};

static int on_progress(const struct slm_tune_progress *pr, void *user) {
    struct progress_state *ps = user;
    if (!ps->quiet &&
        (ps->line.tty || pr->did_eval || pr->step % ps->every == 0 || pr->step == pr->n_steps)) {
        char eta[16], valid[32] = "", text[256];
        slm_cli_format_duration(eta, sizeof(eta), pr->eta_s);
        if (isfinite(pr->valid_loss)) {
            snprintf(valid, sizeof(valid), " valid %.4f", (double)pr->valid_loss);
        }
        snprintf(text, sizeof(text),
                 "step %u/%u  epoch %.2f  loss %.4f%s  lr %.2e  %.0f tok/s  ETA %s", pr->step,
                 pr->n_steps, pr->epoch, (double)pr->loss, valid, (double)pr->lr, pr->tokens_per_s,
                 eta);
        /* A validation pass and the last step stay on screen. */
        slm_cli_progress_status(&ps->line, text, pr->did_eval || pr->step == pr->n_steps);
    }
    if (ps->limit > 0 && slm_time_mono() - ps->t0 >= ps->limit && pr->step < pr->n_steps) {
        ps->out_of_time = true;
        return 1;
    }
    return slm_cli_interrupted ? 1 : 0;
}

static void print_summary(const struct slm_tune_model *tm, const struct slm_dataset *train,
                          const struct slm_dataset *valid, const struct slm_trainer *tr,
                          const struct tune_cli *c) {
    struct slm_tune_model_info info;
    slm_tune_model_get_info(tm, &info);
    uint64_t ntok, ntgt;
    size_t ntrunc;
    slm_dataset_stats(train, &ntok, &ntgt, &ntrunc);
    if (info.device_is_cpu) {
        fprintf(stderr, "device: %s (%s)\n", info.device, info.device_desc);
    } else {
        fprintf(stderr, "device: %s (%s), %u of %u weight tensors on it, the rest on the CPU\n",
                info.device, info.device_desc, info.n_weights_on_device, info.n_weights);
    }
    fprintf(stderr, "model: %s, %d layers, %.1fM parameters, base held as %s\n", info.arch,
            info.n_layer, (double)info.n_params / 1e6, info.base_type);
    fprintf(stderr, "data: %zu training examples (%llu tokens, %llu to learn)",
            slm_dataset_size(train), (unsigned long long)ntok, (unsigned long long)ntgt);
    if (valid) {
        fprintf(stderr, ", %zu validation", slm_dataset_size(valid));
    }
    fprintf(stderr, "\n");
    if (ntrunc) {
        fprintf(stderr, "note: %zu examples were longer than --ctx-size %u and were cut\n", ntrunc,
                c->p.n_ctx ? c->p.n_ctx : 512);
    }
    char tg[64];
    slm_tune_targets_format(c->p.targets ? c->p.targets : SLM_TUNE_ALL, tg, sizeof(tg));
    if (c->p.method == SLM_TUNE_FULL) {
        fprintf(stderr, "method: full fine-tune, %.2fM trainable parameters, %u steps\n",
                (double)slm_trainer_n_trainable(tr) / 1e6, slm_trainer_n_steps(tr));
    } else {
        fprintf(stderr, "method: LoRA r=%u on %s, %.2fM trainable parameters, %u steps\n",
                c->p.rank ? c->p.rank : 16, tg, (double)slm_trainer_n_trainable(tr) / 1e6,
                slm_trainer_n_steps(tr));
    }
}

static void final_report(struct slm_trainer *tr, const struct tune_cli *c, double secs) {
    const float *tl, *vl;
    const uint32_t *vs;
    size_t ntl, nvl;
    slm_trainer_history(tr, &tl, &ntl, &vl, &vs, &nvl);
    struct slm_err err = {0};
    bool svg = slm_tune_write_svg(c->report, tl, ntl, vl, vs, nvl, &err) == SLM_OK;
    char t[32], size[32];
    slm_cli_format_duration(t, sizeof(t), secs);
    slm_format_size(size, sizeof(size), (uint64_t)slm_file_size(c->out));
    /* The last few steps' mean is steadier than the last step alone. */
    double tail = 0;
    size_t k = ntl < 10 ? ntl : 10;
    for (size_t i = ntl - k; i < ntl; i++) {
        tail += tl[i];
    }
    printf("wrote %s (%s) in %s\n", c->out, size, t);
    printf("training loss %.4f (mean of the last %zu steps)", k ? tail / (double)k : NAN, k);
    if (nvl > 0) {
        printf(", validation loss %.4f -> %.4f", (double)vl[0], (double)vl[nvl - 1]);
    }
    printf("\n");
    if (svg) {
        printf("loss curves: %s\n", c->report);
    } else {
        fprintf(stderr, "slm tune: could not write the report: %s\n", err.msg);
    }
}

static int run_eval(struct tune_cli *c, const char *model_path, const char *data);

static int run(int argc, char **argv) {
    struct tune_cli c;
    memset(&c, 0, sizeof(c));
    c.p = slm_tune_params_default();
    const char *pos[2];
    int n_pos = 0;
    bool eval = argc > 1 && strcmp(argv[1], "eval") == 0;
    int prc = parse_opts(&c, argc - eval, argv + eval, pos, &n_pos);
    if (prc != 0) {
        return prc > 0 ? SLM_EXIT_OK : SLM_EXIT_USAGE;
    }
    if (n_pos != 2) {
        slm_cli_error(CMD, "expects MODEL DATA (see slm tune --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_tune_model_params mp;
    if (finish_opts(&c, pos[1], &mp) != 0) {
        return SLM_EXIT_USAGE;
    }
    struct slm_err err = {0};
    char model_path[PATH_MAX], model_adapter[PATH_MAX];
    int rc = resolve_model(pos[0], model_path, sizeof(model_path), model_adapter,
                           sizeof(model_adapter), &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    /* A store model made with ADAPTER: eval measures it as `slm run` would
     * answer; training a second adapter on top of one is not supported. */
    if (model_adapter[0]) {
        if (!eval) {
            slm_err_set(&err, SLM_E_UNSUPPORTED,
                        "%s carries an adapter (%s): tune trains a new adapter on a plain base; "
                        "tune its model file (%s), or `slm fuse` the adapter into it first",
                        pos[0], model_adapter, model_path);
            return slm_cli_fail(CMD, SLM_E_UNSUPPORTED, &err);
        }
        if (c.adapter) {
            slm_err_set(&err, SLM_E_UNSUPPORTED,
                        "%s already carries an adapter (%s): --adapter would stack a second",
                        pos[0], model_adapter);
            return slm_cli_fail(CMD, SLM_E_UNSUPPORTED, &err);
        }
        c.adapter = model_adapter;
    }
    /* Huge pages (cli/hugepages.c) pay on a big model, whose activations
     * and gradients are what the page tables map (~8% more tokens/s on a
     * 135M model), and cost a small one its peak memory (2 MiB pages:
     * stories260K 50 -> 63 MB RSS). The file size tells which. */
    struct stat sb;
    if (!eval && stat(model_path, &sb) == 0 && sb.st_size >= TUNE_HUGEPAGES_MIN) {
        slm_cli_use_hugepages(slm_cli_argv);
    }
    if (eval) {
        if (c.device) {
            slm_cli_error(CMD, "eval runs llama.cpp's inference, which picks its own devices: "
                               "--device is for training");
            return SLM_EXIT_USAGE;
        }
        return run_eval(&c, model_path, pos[1]);
    }
    struct slm_tune_model *tm = NULL;
    struct slm_dataset *train = NULL, *valid = NULL;
    struct slm_trainer *tr = NULL;
    rc = slm_tune_model_load(model_path, &mp, &tm, &err);
    if (rc == SLM_OK) {
        struct slm_tune_model_info info;
        slm_tune_model_get_info(tm, &info);
        if (!c.p.n_ctx) {
            c.p.n_ctx = (uint32_t)SLM_MIN(512, info.n_ctx_train);
        }
        rc = load_data(&c, pos[1], tm, &train, &valid, &err);
    }
    if (rc == SLM_OK) {
        c.p.checkpoint = c.checkpoint;
        rc = slm_trainer_init(tm, train, valid, &c.p, &tr, &err);
    }
    if (rc == SLM_OK) {
        print_summary(tm, train, valid, tr, &c);
        if (c.resume && slm_file_exists(c.checkpoint)) {
            rc = slm_trainer_resume(tr, c.checkpoint, &err);
            if (rc == SLM_OK) {
                fprintf(stderr, "resuming from %s\n", c.checkpoint);
            }
        } else if (c.resume) {
            fprintf(stderr, "no checkpoint at %s: starting from the beginning\n", c.checkpoint);
        }
    }
    double t0 = slm_time_mono();
    bool stopped = false, out_of_time = false;
    if (rc == SLM_OK) {
        struct progress_state ps = {.quiet = c.quiet, .every = 1, .t0 = t0, .limit = c.time_limit};
        slm_cli_progress_init(&ps.line, slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
        ps.every = slm_trainer_n_steps(tr) >= 20 ? slm_trainer_n_steps(tr) / 20 : 1;
        slm_cli_trap_signals();
        rc = slm_trainer_run(tr, on_progress, &ps, &err);
        slm_cli_progress_finish(&ps.line);
        if (rc == SLM_E_ABORTED) {
            /* Stopped by a signal or the time limit: the weights so far are
             * useful, so the output is written too. */
            fprintf(stderr, "slm tune: %s%s; continue with the same command and --resume\n",
                    err.msg, ps.out_of_time ? " (time limit)" : "");
            stopped = true;
            out_of_time = ps.out_of_time;
            rc = SLM_OK;
        }
    }
    if (rc == SLM_OK) {
        rc = slm_trainer_save(tr, c.out, &err);
    }
    if (rc == SLM_OK) {
        final_report(tr, &c, slm_time_mono() - t0);
    }
    if (rc == SLM_OK && stopped && !out_of_time) {
        rc = SLM_E_ABORTED;
    }
    slm_trainer_free(tr);
    slm_dataset_free(train);
    slm_dataset_free(valid);
    slm_tune_model_free(tm);
    if (rc == SLM_E_ABORTED) {
        return SLM_EXIT_INTERRUPTED;
    }
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

static int run_eval(struct tune_cli *c, const char *model_path, const char *data) {
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.prompt_template = c->template_path;
    rp.completion_field = c->completion_field;
    struct slm_data_records recs = {0}, held = {0};
    struct slm_err err = {0};
    int rc = slm_data_read(data, &rp, &recs, &err);
    const struct slm_data_records *use = &recs;
    if (rc == SLM_OK && c->valid_hash) {
        char field[128];
        const char *colon = strchr(c->valid_hash, ':');
        uint64_t mod = 10;
        snprintf(field, sizeof(field), "%.*s",
                 (int)(colon ? (size_t)(colon - c->valid_hash) : strlen(c->valid_hash)),
                 c->valid_hash);
        if (colon && slm_parse_u64(slm_str_c(colon + 1), &mod) != SLM_OK) {
            mod = 0;
        }
        rc = slm_data_split_hash(&recs, field, (uint32_t)mod, &held, &err);
        use = &held;
    }
    struct slm_tune_eval_params ep = slm_tune_eval_params_default();
    ep.n_threads = (int32_t)c->p.n_threads;
    ep.add_eos = !c->no_eos;
    ep.chat_template = c->chat_template;
    ep.max_examples = c->p.eval_max_batches;
    struct slm_tune_eval_result res;
    double t0 = slm_time_mono();
    if (rc == SLM_OK) {
        rc = slm_tune_evaluate(model_path, c->adapter, use, &ep, &res, &err);
    }
    if (rc == SLM_OK) {
        printf("examples %zu  loss %.4f", res.n, res.loss);
        if (res.n_labels) {
            printf("  accuracy %.2f%% (best of %zu labels)", 100.0 * res.accuracy, res.n_labels);
        }
        printf("  (%.1fs)\n", slm_time_mono() - t0);
    }
    slm_data_records_free(&recs);
    slm_data_records_free(&held);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

const struct slm_cli_command slm_cli_cmd_tune = {
    "tune", "Fine-tune a model (LoRA or full) on a dataset", run, 40};
