/*
 * tune/device.c - where the training step runs: choosing a device from
 * ggml's registry, placing tensors in its buffers (falling back to plain CPU
 * buffers for what it cannot run), and computing graphs on it.
 *
 * On the CPU the graphs keep the direct path (one graph allocator, one
 * ggml_backend_graph_compute): through ggml_backend_sched the same step was
 * slower on stories260K (see docs/tuning.md). On any other device a
 * ggml_backend_sched over [device, CPU] runs each node where its inputs live
 * and moves ops the device lacks to the CPU.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ggml-alloc.h>
#include <ggml-cpu.h>

#include "tune/internal.h"

/* ---------------------------------------------------------------- registry */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

/* Backends built as shared objects (GGML_BACKEND_DL) register only when
 * loaded; statically linked ones are registered already and this finds
 * nothing more. Once per process: loading twice would register twice. */
static void load_backends(void) {
    ggml_backend_load_all();
}

static const char *dev_type_name(enum ggml_backend_dev_type t) {
    switch (t) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
    default: return "other";
    }
}

/* "CPU (cpu: Intel ...), Vulkan0 (gpu: ...)" */
static void list_devices(char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ggml_backend_dev_count() && len < cap; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        int n =
            snprintf(out + len, cap - len, "%s%s (%s: %s)", i ? ", " : "", ggml_backend_dev_name(d),
                     dev_type_name(ggml_backend_dev_type(d)), ggml_backend_dev_description(d));
        len += n > 0 ? (size_t)n : 0;
    }
}

int slm__device_pick(const char *want, ggml_backend_dev_t *out, struct slm_err *err) {
    pthread_once(&load_once, load_backends);
    *out = NULL;
    bool is_auto = !want || !want[0] || strcasecmp(want, "auto") == 0;
    for (size_t i = 0; i < ggml_backend_dev_count() && !*out; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        if (is_auto) {
            *out =
                t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU ? d : NULL;
        } else if (strcasecmp(want, "cpu") == 0) {
            *out = t == GGML_BACKEND_DEVICE_TYPE_CPU ? d : NULL;
        } else {
            *out = strcasecmp(want, ggml_backend_dev_name(d)) == 0 ? d : NULL;
        }
    }
    if (!*out && is_auto) {
        *out = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    }
    if (!*out) {
        char list[1024];
        list_devices(list, sizeof(list));
        return slm_err_set(err, SLM_E_INVALID, "unknown device '%s'; devices here: %s (or auto)",
                           want, list[0] ? list : "none");
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- buffers */

void slm__bufs_free(struct slm__bufs *b) {
    for (int i = 0; i < b->n; i++) {
        ggml_backend_buffer_free(b->b[i]);
    }
    b->n = 0;
}

void slm__bufs_clear(struct slm__bufs *b, uint8_t value) {
    for (int i = 0; i < b->n; i++) {
        ggml_backend_buffer_clear(b->b[i], value);
    }
}

bool slm__bufs_has(const struct slm__bufs *b, const ggml_backend_buffer_t buf) {
    for (int i = 0; buf && i < b->n; i++) {
        if (b->b[i] == buf) {
            return true;
        }
    }
    return false;
}

/* One kind of buffer: tensors packed in order, a new buffer whenever the
 * next tensor would pass the buffer type's size cap. */
static int alloc_kind(struct slm__bufs *out, struct ggml_context *ctx,
                      ggml_backend_buffer_type_t bt, bool want_dev,
                      bool (*on_dev)(const struct ggml_tensor *t, void *user), void *user,
                      enum ggml_backend_buffer_usage usage) {
    const size_t align = ggml_backend_buft_get_alignment(bt);
    const size_t max = ggml_backend_buft_get_max_size(bt);
    size_t sizes[SLM_TUNE_MAX_BUFS] = {0};
    int first = out->n, n = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct ggml_tallocr ta = {0};
        size_t cur = 0;
        int k = -1;
        for (struct ggml_tensor *t = ggml_get_first_tensor(ctx); t;
             t = ggml_get_next_tensor(ctx, t)) {
            if (t->data || t->view_src || (on_dev && on_dev(t, user)) != want_dev) {
                continue;
            }
            size_t sz = GGML_PAD(ggml_backend_buft_get_alloc_size(bt, t), align);
            if (k < 0 || (cur > 0 && cur + sz > max)) {
                if (++k >= SLM_TUNE_MAX_BUFS) {
                    return SLM_E_TOO_LARGE;
                }
                cur = 0;
                if (pass == 1) {
                    ta = ggml_tallocr_new(out->b[first + k]);
                }
            }
            cur += sz;
            if (pass == 0) {
                sizes[k] = cur;
                n = k + 1;
            } else if (ggml_tallocr_alloc(&ta, t) != GGML_STATUS_SUCCESS) {
                return SLM_E_NOMEM;
            }
        }
        if (pass == 0) {
            if (out->n + n > SLM_TUNE_MAX_BUFS) {
                return SLM_E_TOO_LARGE;
            }
            for (int i = 0; i < n; i++) {
                ggml_backend_buffer_t b = ggml_backend_buft_alloc_buffer(bt, sizes[i]);
                if (!b) {
                    return SLM_E_NOMEM;
                }
                ggml_backend_buffer_set_usage(b, usage);
                out->b[out->n++] = b;
            }
        }
    }
    return SLM_OK;
}

int slm__bufs_alloc(struct slm__bufs *out, struct ggml_context *ctx,
                    ggml_backend_buffer_type_t dev_bt,
                    bool (*on_dev)(const struct ggml_tensor *t, void *user), void *user,
                    enum ggml_backend_buffer_usage usage) {
    int rc = SLM_OK;
    if (dev_bt) {
        rc = alloc_kind(out, ctx, dev_bt, true, on_dev, user, usage);
    }
    if (rc == SLM_OK) {
        rc = alloc_kind(out, ctx, ggml_backend_cpu_buffer_type(), false, dev_bt ? on_dev : NULL,
                        user, usage);
    }
    if (rc != SLM_OK) {
        slm__bufs_free(out);
    }
    return rc;
}

ggml_backend_buffer_type_t slm__dev_buft(const struct slm_tune_model *m) {
    return m->backend != m->backend_cpu ? ggml_backend_dev_buffer_type(m->dev) : NULL;
}

/* ---------------------------------------------------------------- runner */

struct slm__runner {
    struct slm_tune_model *m;
    ggml_gallocr_t ga;
    ggml_backend_sched_t sched;
    /* The graph's nodes and their sources as built. The scheduler points a
     * node's source at its copy on another backend (node->src[j] = the copy,
     * made in a context it resets every time), and a backend may reorder the
     * graph's nodes (Vulkan does): run again as is, the graph would read
     * copies that no longer exist. So every run starts from these, matched
     * by tensor, not by position. */
    const struct ggml_cgraph *g;
    struct ggml_tensor **nodes; /* n_nodes */
    struct ggml_tensor **srcs;  /* n_nodes * GGML_MAX_SRC */
    int n_nodes;
};

/* Puts the graph's sources back as built (recording them on first sight). */
static bool restore_srcs(struct slm__runner *r, struct ggml_cgraph *g) {
    int n = ggml_graph_n_nodes(g);
    if (r->g != g || r->n_nodes != n) {
        free(r->srcs);
        free(r->nodes);
        r->srcs = malloc((size_t)(n ? n : 1) * GGML_MAX_SRC * sizeof(*r->srcs));
        r->nodes = malloc((size_t)(n ? n : 1) * sizeof(*r->nodes));
        if (!r->srcs || !r->nodes) {
            r->g = NULL;
            return false;
        }
        for (int i = 0; i < n; i++) {
            r->nodes[i] = ggml_graph_node(g, i);
            memcpy(&r->srcs[(size_t)i * GGML_MAX_SRC], r->nodes[i]->src,
                   GGML_MAX_SRC * sizeof(*r->srcs));
        }
        r->g = g;
        r->n_nodes = n;
        return true;
    }
    for (int i = 0; i < n; i++) {
        memcpy(r->nodes[i]->src, &r->srcs[(size_t)i * GGML_MAX_SRC],
               GGML_MAX_SRC * sizeof(*r->srcs));
    }
    return true;
}

struct slm__runner *slm__runner_new(struct slm_tune_model *m) {
    struct slm__runner *r = calloc(1, sizeof(*r));
    if (!r) {
        return NULL;
    }
    r->m = m;
    if (m->use_sched) {
        /* The CPU last: the scheduler prefers earlier backends. No op
         * offload: a weight left on the CPU is there because the device
         * cannot run its op, and offloading would copy it every step. */
        ggml_backend_t be[2] = {m->backend, m->backend_cpu};
        int n = m->backend == m->backend_cpu ? 1 : 2;
        r->sched = ggml_backend_sched_new(be + 2 - n, NULL, n, SLM_TUNE_GRAPH_SIZE, false, false);
    } else {
        r->ga = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
    }
    if (!r->sched && !r->ga) {
        free(r);
        return NULL;
    }
    return r;
}

bool slm__runner_reserve(struct slm__runner *r, struct ggml_cgraph *g) {
    if (!r->sched) {
        return ggml_gallocr_reserve(r->ga, g);
    }
    bool ok = restore_srcs(r, g) && ggml_backend_sched_reserve(r->sched, g);
    return restore_srcs(r, g) && ok;
}

int slm__runner_alloc(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err) {
    bool ok;
    if (r->sched) {
        /* The same graph every call: the allocator keeps its plan and
         * buffers; the reset only drops the previous assignment. */
        ggml_backend_sched_reset(r->sched);
        ok = restore_srcs(r, g) && ggml_backend_sched_alloc_graph(r->sched, g);
    } else {
        ok = ggml_gallocr_alloc_graph(r->ga, g);
    }
    return ok ? SLM_OK
              : slm_err_set(err, SLM_E_NOMEM, "cannot allocate the compute graph on %s",
                            ggml_backend_dev_name(r->m->dev));
}

int slm__runner_run(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err) {
    enum ggml_status st = r->sched ? ggml_backend_sched_graph_compute(r->sched, g)
                                   : ggml_backend_graph_compute(r->m->backend, g);
    if (r->sched) {
        /* the copies stay valid until the next reset; the graph goes back
         * to its own sources for the other runners and the next run */
        ggml_backend_sched_synchronize(r->sched);
        restore_srcs(r, g);
    }
    if (st != GGML_STATUS_SUCCESS) {
        return slm_err_set(err, SLM_E_BACKEND, "ggml graph compute failed on %s (status %d)",
                           ggml_backend_dev_name(r->m->dev), (int)st);
    }
    return SLM_OK;
}

int slm__runner_compute(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err) {
    int rc = slm__runner_alloc(r, g, err);
    return rc == SLM_OK ? slm__runner_run(r, g, err) : rc;
}

void slm__runner_free(struct slm__runner *r) {
    if (!r) {
        return;
    }
    if (r->sched) {
        ggml_backend_sched_free(r->sched);
    }
    if (r->ga) {
        ggml_gallocr_free(r->ga);
    }
    free(r->srcs);
    free(r->nodes);
    free(r);
}
