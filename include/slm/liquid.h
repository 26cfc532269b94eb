/*
 * slm/liquid.h - Liquid templates: a Liquid 5 engine for every prompt in slm.
 *
 * A template is parsed once into a compact tree (variable paths and filters
 * resolved at parse time) and rendered many times with a jansson value of
 * variables into a capped slm_buf. The language, its extensions and its
 * limits are documented in docs/templates.md; the design in
 * docs/internals/liquid.md.
 *
 *     struct slm_liquid_params p = slm_liquid_params_default();
 *     p.root = "prompts";                       // where include/render look
 *     struct slm_liquid_template *t;
 *     if (slm_liquid_parse_file("prompts/answer.liquid", &p, &t, &err) != SLM_OK) ...
 *     slm_liquid_render(t, vars, &out, &err);   // as often as needed
 *     slm_liquid_free(t);
 *
 * Partials named by `include` and `render` are found, in this order, through
 * the `load` callback, the in-memory `partials` object, then the `root`
 * directory (a jail: no absolute paths, no "..", symlinks resolved and checked
 * to stay inside). Partials with a literal name are loaded and parsed with the
 * template, so a broken partial is an error at parse time, and so is a missing
 * one in strict mode (lax/warn report it only if it is reached);
 * `{% include some_variable %}` is resolved at render time.
 *
 * Safety: templates cannot run code or read files outside the jail, and every
 * render is bounded: output size, steps (nodes, loop iterations, filter work),
 * scratch memory, nesting and include depth. Past a limit the call fails with
 * SLM_E_LIMIT or SLM_E_TOO_LARGE and a message naming the limit; it never
 * hangs or crashes.
 *
 * Depends on base (and jansson) only. Never prints, never exits.
 *
 * Thread safety: a parsed template is immutable. Any number of threads may
 * render the same template at once; parse and free are not synchronised with
 * renders of the same template.
 */
#ifndef SLM_LIQUID_H
#define SLM_LIQUID_H

#include <jansson.h>

#include "slm/base.h"

/* How syntax problems are treated (see docs/templates.md, "Error modes"). */
enum slm_liquid_mode {
    /* Every syntax problem is an error: unknown filters, wrong filter arity,
     * trailing junk in a tag. Runtime errors (divided_by: 0, ...) fail the
     * render. The default. */
    SLM_LIQUID_STRICT = 0,
    /* As lax, but every problem lax tolerates is also recorded as a warning
     * (slm_liquid_warning()). */
    SLM_LIQUID_WARN = 1,
    /* Tolerant, like Shopify's lax parser: trailing junk in tags and outputs
     * and unknown filters are ignored; runtime errors are rendered inline as
     * "Liquid error (NAME line N): message" and rendering goes on. Resource
     * limits still fail the render. */
    SLM_LIQUID_LAX = 2,
};

/*
 * Loads the source of a partial named `name` (as written in the template,
 * e.g. "header" or "shots/qa") into `src` (appended; the buffer arrives
 * empty). Returns SLM_OK, SLM_E_NOT_FOUND when there is no such partial (the
 * next source is tried), or another status with `err` set.
 */
typedef int (*slm_liquid_load_fn)(void *user, const char *name, struct slm_buf *src,
                                  struct slm_err *err);

/* Limits and options. Zero in any field means "the default" listed here. */
struct slm_liquid_params {
    enum slm_liquid_mode mode;
    size_t max_template_bytes; /* one template or partial source; default 1 MiB */
    size_t max_output_bytes;   /* rendered output (also capped by the slm_buf); default 16 MiB */
    uint64_t max_steps;        /* nodes + loop iterations + filter work; default 10,000,000 */
    size_t max_memory_bytes;   /* per-render scratch (strings, arrays); default 64 MiB */
    int max_depth;             /* block and expression nesting; default 64 */
    int max_include_depth;     /* include/render nesting at render time; default 32 */
    /* Directory that include/render read partials from ("NAME" or
     * "NAME.liquid" below it). NULL: for slm_liquid_parse_file() the folder of
     * the file, otherwise no directory. Copied. */
    const char *root;
    /* In-memory partials: a JSON object of name -> source string. Borrowed;
     * a reference is kept by templates parsed with it. NULL: none. */
    const json_t *partials;
    /* Custom loader tried before `partials` and `root`; NULL: none. `load_user`
     * must stay valid while templates parsed with it are rendered. */
    slm_liquid_load_fn load;
    void *load_user;
    /* Unix time (seconds) that the date filter uses for "now"/"today";
     * 0 = the clock. Tests and reproducible datasets set it. */
    int64_t now;
};

/* The defaults above (mode strict, no root, no partials). */
struct slm_liquid_params slm_liquid_params_default(void);

struct slm_liquid_template;

/*
 * Parses `len` bytes of Liquid source. `name` names the template in error
 * messages ("prompt.liquid:3:14: ..."); NULL means "template". `params` may
 * be NULL (defaults). On success *out owns everything it needs (the source,
 * the partials it names) and one slm_liquid_free() is owed; on failure nothing
 * is owed and `err` says where and what was expected. Returns SLM_OK,
 * SLM_E_INVALID (syntax), SLM_E_TOO_LARGE (template size), SLM_E_LIMIT
 * (nesting), SLM_E_NOT_FOUND (a partial), SLM_E_NOMEM.
 */
int slm_liquid_parse(const char *name, const char *src, size_t len,
                     const struct slm_liquid_params *params, struct slm_liquid_template **out,
                     struct slm_err *err);

/* Reads and parses a file; the template is named by `path`, and partials come
 * from params->root or, when that is NULL, from the file's folder. Also
 * SLM_E_IO / SLM_E_NOT_FOUND when the file cannot be read. */
int slm_liquid_parse_file(const char *path, const struct slm_liquid_params *params,
                          struct slm_liquid_template **out, struct slm_err *err);

/* Frees a template; NULL is a no-op. */
void slm_liquid_free(struct slm_liquid_template *t);

/*
 * Renders `t` with `vars` (a JSON object, borrowed, or NULL for none) and
 * appends the output to `out`. The output cap is the smaller of out->max and
 * max_output_bytes. On failure out->len is restored to what it was and `err`
 * names the template, line and column. Returns SLM_OK, SLM_E_INVALID (a
 * runtime error such as divided_by: 0 in strict mode, or vars not an object),
 * SLM_E_TOO_LARGE (output), SLM_E_LIMIT (steps, memory, include depth),
 * SLM_E_NOT_FOUND (a partial named at render time), SLM_E_NOMEM.
 */
int slm_liquid_render(const struct slm_liquid_template *t, const json_t *vars, struct slm_buf *out,
                      struct slm_err *err);

/* Parses and renders once (for one-off strings). */
int slm_liquid_render_string(const char *src, size_t len, const json_t *vars,
                             const struct slm_liquid_params *params, struct slm_buf *out,
                             struct slm_err *err);

/* The template's name as given at parse time. Valid until slm_liquid_free(). */
const char *slm_liquid_name(const struct slm_liquid_template *t);

/* Warnings recorded at parse time in SLM_LIQUID_WARN mode ("name:line:col:
 * message"); index from 0. Strings are valid until slm_liquid_free(). */
size_t slm_liquid_warning_count(const struct slm_liquid_template *t);
const char *slm_liquid_warning(const struct slm_liquid_template *t, size_t i);

/*
 * The jailed file loader used for params->root: reads `name` or, when that is
 * not a regular file, `name` + ".liquid" below `root`, at most `max` bytes
 * (0 = 1 MiB), into `src`. Names are relative paths of [A-Za-z0-9._-/]
 * components; absolute paths, "." / ".." components, empty components and
 * other bytes are SLM_E_INVALID; a file whose real path (symlinks resolved)
 * is not inside the real path of `root` is SLM_E_INVALID too. SLM_E_NOT_FOUND
 * when neither file exists.
 */
int slm_liquid_load_jailed(const char *root, const char *name, size_t max, struct slm_buf *src,
                           struct slm_err *err);

#endif /* SLM_LIQUID_H */
