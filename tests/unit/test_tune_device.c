/*
 * test_tune_device.c - where training runs: a device named through ggml's
 * registry; the scheduler path (the one every GPU takes) run on the CPU
 * device gives the losses and weights of the direct CPU path; every other
 * device present (a GPU, or lavapipe's Vulkan device in the verification
 * build) trains to the same losses within float tolerance; unknown names
 * fail with the list of devices; auto picks the CPU when there is no GPU.
 */
#include "test_tune_common.h"

#include <ggml-backend.h>
#include <strings.h>

#include "tune/train_internal.h"

struct run {
    float *loss, *valid;
    size_t n_loss, n_valid;
    float *w; /* every trainable tensor, back to back */
    size_t n_w;
    char device[64];
    bool sched;
};

static void run_free(struct run *r) {
    free(r->loss);
    free(r->valid);
    free(r->w);
}

/* Trains `steps` steps on the colors task with the model on `device`. */
static void train_on(const char *path, const char *device, bool cpu_sched,
                     enum slm_tune_method method, uint32_t steps, float dropout, float lr,
                     struct run *out) {
    memset(out, 0, sizeof(*out));
    struct slm_err err = {0};
    struct slm_tune_model_params mp = slm_tune_model_params_default();
    mp.trainable = method == SLM_TUNE_FULL;
    mp.device = device;
    mp.cpu_sched = cpu_sched;
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(path, &mp, &m, &err), SLM_OK, "%s", err.msg);
    struct slm_tune_model_info info;
    slm_tune_model_get_info(m, &info);
    snprintf(out->device, sizeof(out->device), "%s", info.device);
    out->sched = m->use_sched;
    char *tj = tt_colors_jsonl(24, 0), *vj = tt_colors_jsonl(8, 3);
    struct slm_dataset *train = tt_dataset(m, tj, 64), *valid = tt_dataset(m, vj, 64);
    free(tj);
    free(vj);
    struct slm_tune_params p = slm_tune_params_default();
    p.method = method;
    p.rank = 4;
    p.n_ctx = 64;
    p.batch = 2;
    p.grad_accum = 2;
    p.steps = steps;
    p.eval_every = 2;
    p.dropout = dropout;
    p.lr = lr;
    p.n_threads = 1;
    struct slm_trainer *tr = NULL;
    cr_assert_eq(slm_trainer_init(m, train, valid, &p, &tr, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_trainer_run(tr, NULL, NULL, &err), SLM_OK, "%s", err.msg);
    const float *tl, *vl;
    const uint32_t *vs;
    slm_trainer_history(tr, &tl, &out->n_loss, &vl, &vs, &out->n_valid);
    out->loss = malloc(out->n_loss * sizeof(float));
    out->valid = malloc(out->n_valid * sizeof(float));
    memcpy(out->loss, tl, out->n_loss * sizeof(float));
    memcpy(out->valid, vl, out->n_valid * sizeof(float));
    for (size_t i = 0; i < tr->n_params; i++) {
        out->n_w += (size_t)ggml_nelements(tr->params[i]);
    }
    out->w = malloc(out->n_w * sizeof(float));
    size_t off = 0;
    for (size_t i = 0; i < tr->n_params; i++) {
        ggml_backend_tensor_get(tr->params[i], out->w + off, 0, ggml_nbytes(tr->params[i]));
        off += (size_t)ggml_nelements(tr->params[i]);
    }
    slm_trainer_free(tr);
    slm_dataset_free(train);
    slm_dataset_free(valid);
    slm_tune_model_free(m);
}

/* Same losses (relative `tol`) and weights (absolute `wtol`). */
static void expect_same(const struct run *a, const struct run *b, double tol, double wtol) {
    cr_assert_eq(a->n_loss, b->n_loss);
    cr_assert_eq(a->n_valid, b->n_valid);
    cr_assert_eq(a->n_w, b->n_w);
    for (size_t i = 0; i < a->n_loss; i++) {
        cr_log_info("step %zu: loss %.7f on %s, %.7f on %s", i + 1, (double)a->loss[i], a->device,
                    (double)b->loss[i], b->device);
        cr_assert(isfinite(a->loss[i]) && isfinite(b->loss[i]));
        cr_assert(fabs((double)a->loss[i] - (double)b->loss[i]) <= tol * fabs((double)a->loss[i]),
                  "step %zu: loss %.7f vs %.7f", i + 1, (double)a->loss[i], (double)b->loss[i]);
    }
    for (size_t i = 0; i < a->n_valid; i++) {
        cr_log_info("valid %zu: %.7f on %s, %.7f on %s", i, (double)a->valid[i], a->device,
                    (double)b->valid[i], b->device);
        cr_assert(fabs((double)a->valid[i] - (double)b->valid[i]) <=
                      tol * fabs((double)a->valid[i]),
                  "valid %zu: %.7f vs %.7f", i, (double)a->valid[i], (double)b->valid[i]);
    }
    double rms;
    double mx = tt_max_diff(a->w, b->w, a->n_w, &rms);
    cr_log_info("weights: max diff %.3g, rms %.3g over %zu", mx, rms, a->n_w);
    cr_assert(mx <= wtol, "weights differ by %g (rms %g)", mx, rms);
    /* Training moved the weights: the comparison is not of two untouched copies. */
    cr_assert(a->loss[0] != a->loss[a->n_loss - 1]);
}

Test(tune_device, cpu_by_name_through_the_scheduler_matches_the_direct_path) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct run direct, sched;
    train_on(path, "cpu", false, SLM_TUNE_LORA, 6, 0.1f, 1e-2f, &direct);
    train_on(path, "CPU", true, SLM_TUNE_LORA, 6, 0.1f, 1e-2f, &sched);
    cr_assert_str_eq(sched.device, "CPU");
    cr_assert(!direct.sched && sched.sched);
    /* the same kernels in the same order: equal to float rounding */
    expect_same(&direct, &sched, 1e-5, 1e-5);
    run_free(&direct);
    run_free(&sched);
}

Test(tune_device, full_finetune_through_the_scheduler_matches_the_direct_path) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct run direct, sched;
    train_on(path, "cpu", false, SLM_TUNE_FULL, 4, 0, 1e-3f, &direct);
    train_on(path, "CPU", true, SLM_TUNE_FULL, 4, 0, 1e-3f, &sched);
    expect_same(&direct, &sched, 1e-5, 1e-5);
    run_free(&direct);
    run_free(&sched);
}

/* Every non-CPU device ggml offers here (none on a CPU-only build: skipped). */
Test(tune_device, every_other_device_trains_like_the_cpu) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct slm_tune_model *m = NULL;
    struct slm_err err = {0};
    /* loads the registry, dynamically loaded backends included */
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    slm_tune_model_free(m);
    int tried = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(d) == GGML_BACKEND_DEVICE_TYPE_CPU) {
            continue;
        }
        struct run cpu, dev;
        train_on(path, "cpu", false, SLM_TUNE_LORA, 6, 0.1f, 2e-3f, &cpu);
        train_on(path, ggml_backend_dev_name(d), false, SLM_TUNE_LORA, 6, 0.1f, 2e-3f, &dev);
        cr_assert_str_eq(dev.device, ggml_backend_dev_name(d));
        cr_assert(dev.sched);
        /* Other kernels: GPU matmuls round through F16 (lavapipe's Vulkan
         * device: the first loss 2e-4 off; with GGML_VK_DISABLE_F16=1, 2e-7
         * and gradients within 1e-5), and the runs drift apart a little. */
        expect_same(&cpu, &dev, 1e-2, 1e-2);
        run_free(&cpu);
        run_free(&dev);
        /* full fine-tuning: every weight trainable and on the device */
        train_on(path, "cpu", false, SLM_TUNE_FULL, 2, 0, 1e-3f, &cpu);
        train_on(path, ggml_backend_dev_name(d), false, SLM_TUNE_FULL, 2, 0, 1e-3f, &dev);
        expect_same(&cpu, &dev, 1e-2, 1e-2);
        run_free(&cpu);
        run_free(&dev);
        tried++;
    }
    if (!tried) {
        cr_skip_test("no device other than the CPU in this llama.cpp build");
    }
}

Test(tune_device, unknown_device_name_fails_listing_the_devices) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct slm_tune_model_params mp = slm_tune_model_params_default();
    mp.device = "NoSuchGPU7";
    struct slm_tune_model *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_tune_model_load(path, &mp, &m, &err), SLM_E_INVALID);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, "NoSuchGPU7") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "CPU (cpu:") != NULL, "lists the devices: %s", err.msg);
}

Test(tune_device, auto_picks_a_gpu_if_there_is_one_else_the_cpu) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct slm_tune_model *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    const char *gpu = NULL;
    for (size_t i = 0; i < ggml_backend_dev_count() && !gpu; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        gpu = t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU
                  ? ggml_backend_dev_name(d)
                  : NULL;
    }
    struct slm_tune_model_info info;
    slm_tune_model_get_info(m, &info);
    cr_log_info("auto: %s (%s)", info.device, info.device_desc);
    if (gpu) {
        cr_assert_str_eq(info.device, gpu);
        cr_assert(!info.device_is_cpu && m->use_sched);
    } else {
        /* this machine: no GPU, so the CPU and its direct path */
        cr_assert_str_eq(info.device, "CPU");
        cr_assert(info.device_is_cpu && !m->use_sched);
        cr_assert_eq(info.n_weights_on_device, 0);
    }
    cr_assert_gt(info.n_weights, 0);
    slm_tune_model_free(m);
}
