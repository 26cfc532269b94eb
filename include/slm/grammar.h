/*
 * slm/grammar.h - the grammar module: structured output as JSON Schema ->
 * GBNF for llama.cpp's grammar sampler (regex `pattern`s included), and
 * validation of a JSON value, or of a constrained generation's text, against
 * the same schema. Needs no model: pure C over base, jansson and PCRE2 (the
 * module links nothing else). Asking llama.cpp itself whether it accepts a
 * grammar needs a model: slm_model_check_grammar() and
 * slm_model_match_grammar() in slm/engine.h.
 *
 * Supported schema subset (what structured-output APIs accept): type (string,
 * number, integer, boolean, null, object, array, or a list of these), object
 * properties / required / additionalProperties (false, true or a schema),
 * array items / minItems / maxItems, string enum / const / pattern (a regex
 * subset) / minLength / maxLength / format (date, time, date-time, uuid),
 * number and integer minimum / maximum / exclusiveMinimum / exclusiveMaximum,
 * enum / const of any JSON value, anyOf / oneOf, allOf (of one schema in a
 * grammar, any number in validation), $ref to a local JSON pointer
 * (#/$defs/..., #/definitions/..., #; recursion allowed), and the annotations
 * description, title, examples, default, $schema, $id, $comment, deprecated,
 * readOnly, writeOnly (ignored). Anything else fails with SLM_E_UNSUPPORTED
 * naming the keyword and its JSON pointer ("#/properties/age: 'multipleOf' is
 * not supported"), never silently ignored.
 *
 * What the grammar enforces and what only validation checks is written in
 * docs/internals/grammar.md; in short, the grammar never lets the model write
 * something the schema forbids, except for the few rules a context-free
 * grammar cannot count (numeric ranges, lengths together with a pattern or
 * format, oneOf exclusivity, bounds above SLM_GRAMMAR_MAX_REPEAT), which
 * slm_json_schema_validate() catches afterwards.
 *
 * Whitespace in generated grammars is bounded: at most one newline and 20
 * spaces or tabs at each place JSON allows whitespace, so a model cannot spin
 * in whitespace forever. Objects are generated with their properties in the
 * schema's `properties` order; required properties always appear, optional
 * ones may be left out.
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef SLM_GRAMMAR_H
#define SLM_GRAMMAR_H

#include <jansson.h>

#include "slm/base.h"

/* Deepest schema nesting (and $ref chain) the converter and the validator
 * follow; deeper schemas or values fail with SLM_E_LIMIT. */
#define SLM_SCHEMA_MAX_DEPTH 64
/* The largest count a grammar repeats (minLength, maxItems, {n,m}, ...).
 * Larger upper bounds are left to validation; larger lower bounds fail with
 * SLM_E_UNSUPPORTED. */
#define SLM_GRAMMAR_MAX_REPEAT 1000

/* GBNF for any JSON value whose top level is an object (`--format json`,
 * OpenAI's response_format json_object), with bounded whitespace and a
 * `root` rule. Static string. */
extern const char slm_grammar_json_object[];

/*
 * Converts `schema` into GBNF with a `root` rule, appended to `out` (the
 * buffer's cap bounds the grammar: SLM_E_TOO_LARGE past it). `schema` is
 * borrowed. Returns SLM_OK, SLM_E_INVALID (malformed schema, e.g.
 * "#/required: must be an array of strings"), SLM_E_UNSUPPORTED (a keyword or
 * regex construct outside the subset, named with its pointer), SLM_E_LIMIT
 * (nesting deeper than SLM_SCHEMA_MAX_DEPTH), SLM_E_TOO_LARGE or SLM_E_NOMEM.
 * On failure `out` may hold part of a grammar: discard it.
 */
int slm_json_schema_to_gbnf(const json_t *schema, struct slm_buf *out, struct slm_err *err);

/*
 * Checks `value` against `schema` (both borrowed). SLM_OK when it validates;
 * SLM_E_INVALID with a message naming the JSON pointer of the failing value
 * and the rule that failed otherwise ("#/age: 200 is greater than the maximum
 * 150"). A schema outside the subset fails as slm_json_schema_to_gbnf() does
 * (SLM_E_UNSUPPORTED, or SLM_E_INVALID for a malformed schema, with the
 * schema's pointer); values nested deeper than SLM_SCHEMA_MAX_DEPTH give
 * SLM_E_LIMIT. Patterns are matched with PCRE2 (ECMAScript-style \u escapes,
 * `$` only at the very end) with a match limit: a pattern that exhausts it
 * fails with SLM_E_LIMIT.
 */
int slm_json_schema_validate(const json_t *schema, const json_t *value, struct slm_err *err);

/*
 * Checks the text a grammar-constrained generation produced: parses `len`
 * bytes of `text` as JSON and, when `schema` is not NULL, validates it.
 * `truncated` says generation stopped at max_tokens (SLM_FINISH_LENGTH): then
 * output that does not parse, or a bare number that may have been cut,
 * fails with SLM_E_INCOMPLETE ("the output was cut at max_tokens before the
 * JSON was complete") instead of SLM_E_INVALID, so callers can report
 * incomplete output rather than an invalid answer. With `schema` NULL the
 * value must be an object (the json_object format). On success, when `out`
 * is not NULL, *out receives the parsed value (a new reference the caller
 * owns).
 */
int slm_json_output_check(const json_t *schema, const char *text, size_t len, bool truncated,
                          json_t **out, struct slm_err *err);

#endif /* SLM_GRAMMAR_H */
