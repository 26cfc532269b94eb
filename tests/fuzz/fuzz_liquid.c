/*
 * fuzz_liquid.c - libFuzzer harness for the Liquid engine: parse and render
 * arbitrary bytes as a template (the first byte picks the error mode) with
 * fixed variables and in-memory partials (static and dynamic include/render,
 * recursion), under tight limits so that every input finishes quickly.
 *
 * Seed corpus: tests/fuzz/corpus/liquid/ (slm's own cases). The golden-liquid
 * suite's templates make a good extra seed at fuzz time, see
 * docs/internals/liquid.md (they are not copied into the repository).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/liquid.h"

static json_t *vars;
static json_t *partials;

static void setup(void) {
    static const char vars_json[] =
        "{\"s\":\"Hello, World\",\"e\":\"\",\"n\":42,\"f\":-2.5,\"t\":true,\"z\":null,"
        "\"a\":[1,2,3,\"x\",null,[4,[5]],{\"k\":\"v\"}],\"words\":[\"b\",\"a\",\"C\"],"
        "\"o\":{\"k\":\"v\",\"n\":{\"deep\":[1,{\"x\":\"y\"}]},\"size\":9},"
        "\"objs\":[{\"t\":\"b\",\"n\":2},{\"t\":\"a\",\"n\":1},{\"n\":3}],"
        "\"which\":\"p1\",\"date\":\"2024-02-29T12:30:00+02:00\",\"u\":\"h\\u00e9llo \\u00fc\"}";
    static const char partials_json[] =
        "{\"p1\":\"[{{ s }}{% assign q = n %}]\",\"p2\":\"{% include 'p1' %}{{ forloop.index }}\","
        "\"rec\":\"{% if n > 0 %}{% assign n = n | minus: 1 %}{% include 'rec' %}{% endif %}\","
        "\"self\":\"x{% render 'self' %}\",\"bad\":\"{{ \"}";
    struct slm_err err;
    if (slm_json_parse(vars_json, sizeof(vars_json) - 1, "vars", &vars, &err) != SLM_OK ||
        slm_json_parse(partials_json, sizeof(partials_json) - 1, "partials", &partials, &err) !=
            SLM_OK) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vars) {
        setup();
    }
    if (size == 0) {
        return 0;
    }
    struct slm_liquid_params p = slm_liquid_params_default();
    p.mode = data[0] % 3 == 0   ? SLM_LIQUID_STRICT
             : data[0] % 3 == 1 ? SLM_LIQUID_WARN
                                : SLM_LIQUID_LAX;
    p.partials = partials;
    p.max_steps = 20000;
    p.max_output_bytes = 1 << 16;
    p.max_memory_bytes = 4 << 20;
    p.max_template_bytes = 1 << 16;
    p.max_include_depth = 8;
    p.now = 1700000000;
    struct slm_liquid_template *t = NULL;
    struct slm_err err;
    if (slm_liquid_parse("fuzz", (const char *)data + 1, size - 1, &p, &t, &err) != SLM_OK) {
        return 0;
    }
    for (size_t i = 0; i < slm_liquid_warning_count(t); i++) {
        if (!slm_liquid_warning(t, i)) {
            abort();
        }
    }
    struct slm_buf out;
    slm_buf_init(&out, 1 << 17);
    for (int round = 0; round < 2; round++) {
        size_t before = out.len;
        int rc = slm_liquid_render(t, vars, &out, &err);
        if (rc != SLM_OK && out.len != before) {
            abort(); /* a failed render must leave the buffer as it was */
        }
    }
    slm_buf_free(&out);
    slm_liquid_free(t);
    return 0;
}
