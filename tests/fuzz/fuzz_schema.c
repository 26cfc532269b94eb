/*
 * fuzz_schema.c - libFuzzer harness for the structured-output parsers: JSON
 * Schema -> GBNF (with the regex translator) and schema validation.
 *
 * Input: a schema on the first line, an optional JSON value on the rest
 * (without one the schema is validated against itself). The first line is
 * also tried as a `pattern`, and the rest as generated output. Nothing may
 * crash, leak or hang: depth, repeat counts, grammar size and PCRE2 steps are
 * all capped.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "slm/base.h"
#include "slm/grammar.h"
#include "slm/json.h"

static void convert_and_validate(const json_t *schema, const json_t *value, const char *rest,
                                 size_t rest_len) {
    struct slm_buf g;
    slm_buf_init(&g, (size_t)1 << 20);
    struct slm_err err = {0};
    (void)slm_json_schema_to_gbnf(schema, &g, &err);
    slm_buf_free(&g);
    (void)slm_json_schema_validate(schema, value, &err);
    if (rest) {
        json_t *out = NULL;
        if (slm_json_output_check(schema, rest, rest_len, rest_len % 2 == 0, &out, &err) ==
            SLM_OK) {
            json_decref(out);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) {
        return 0;
    }
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t first_len = nl ? (size_t)(nl - p) : size;
    const char *rest = nl ? nl + 1 : NULL;
    size_t rest_len = nl ? size - first_len - 1 : 0;

    json_t *value = NULL;
    if (rest && slm_json_parse(rest, rest_len, "value", &value, NULL) != SLM_OK) {
        value = NULL;
    }
    json_t *schema = NULL;
    if (slm_json_parse(p, first_len, "schema", &schema, NULL) == SLM_OK) {
        convert_and_validate(schema, value ? value : schema, rest, rest_len);
        json_decref(schema);
    }
    /* The first line as a regex. */
    if (slm_utf8_valid(p, first_len)) {
        schema = json_object();
        json_object_set_new(schema, "type", json_string("string"));
        json_object_set_new(schema, "pattern", json_stringn(p, first_len));
        json_t *str =
            rest && slm_utf8_valid(rest, rest_len) ? json_stringn(rest, rest_len) : json_string("");
        if (json_object_get(schema, "pattern") && str) {
            convert_and_validate(schema, str, NULL, 0);
        }
        json_decref(str);
        json_decref(schema);
    }
    json_decref(value);
    return 0;
}
