/*
 * fuzz_yaml.c - libFuzzer harness for the YAML loader: any input either fails
 * with a message or gives a tree whose every member has a position.
 */
#include <stdint.h>
#include <stdlib.h>

#include "slm/yaml.h"

static void walk(const struct slm_yaml_doc *d, const json_t *v) {
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            if (slm_yaml_pos_key(d, v, k).line <= 0) {
                abort(); /* every member has a position */
            }
            walk(d, c);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            (void)slm_yaml_pos_index(d, v, i);
            walk(d, c);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct slm_yaml_params p = slm_yaml_params_default();
    p.max_nodes = 100000;
    struct slm_yaml_doc *d = NULL;
    struct slm_err err;
    if (slm_yaml_parse("fuzz", (const char *)data, size, &p, &d, &err) != SLM_OK) {
        if (err.msg[0] == '\0') {
            abort();
        }
        return 0;
    }
    walk(d, slm_yaml_root(d));
    slm_yaml_free(d);
    return 0;
}
