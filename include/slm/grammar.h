/*
 * slm/grammar.h - structured output: JSON Schema -> GBNF for llama.cpp's
 * grammar sampler, and validation of a JSON value against the same schema
 * (part of the engine module, but needs no model: pure C over jansson).
 *
 * Supported schema subset (what structured-output APIs accept): type (string,
 * number, integer, boolean, null, object, array, or a list of these), object
 * properties / required / additionalProperties (false, true or a schema),
 * array items / minItems / maxItems, string enum / const / pattern (a regex
 * subset) / minLength / maxLength / format (date, time, date-time, uuid),
 * number and integer minimum/maximum (validation only), anyOf / oneOf,
 * $ref to #/$defs/... or #/definitions/..., description and title (ignored).
 * Anything else fails with SLM_E_UNSUPPORTED naming the keyword and its JSON
 * pointer, never silently ignored.
 */
#ifndef SLM_GRAMMAR_H
#define SLM_GRAMMAR_H

#include <jansson.h>

#include "slm/base.h"

/* GBNF for any JSON value whose top level is an object (`--format json`,
 * OpenAI's response_format json_object). Static string. */
extern const char slm_grammar_json_object[];

/* Converts `schema` into GBNF with a `root` rule, appended to `out`. */
int slm_json_schema_to_gbnf(const json_t *schema, struct slm_buf *out, struct slm_err *err);

/* Checks `value` against `schema`. SLM_OK when it validates; SLM_E_INVALID
 * with a message naming the JSON pointer and the rule that failed otherwise. */
int slm_json_schema_validate(const json_t *schema, const json_t *value, struct slm_err *err);

#endif /* SLM_GRAMMAR_H */
