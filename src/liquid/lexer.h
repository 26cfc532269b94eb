/*
 * liquid/lexer.h - the two lexers of the Liquid engine (private).
 *
 * The template scanner splits a source into text, {{ output }} and {% tag %}
 * tokens, applying whitespace control ({{- -}} {%- -%}); in "lines" mode it
 * reads the body of a {% liquid %} tag, one tag per line. The markup lexer
 * splits the inside of a tag or output into expression tokens.
 */
#ifndef SLM_LIQUID_LEXER_H
#define SLM_LIQUID_LEXER_H

#include "liquid/value.h"

enum lq_tk { TK_EOF, TK_TEXT, TK_OUTPUT, TK_TAG };

struct lq_scan {
    const char *src; /* start of the unit's source (positions are offsets from it) */
    const char *p, *end;
    bool trim_next; /* the previous tag or output ended with '-' */
    bool lines;     /* {% liquid %} body: one tag per line */
};

struct lq_tok {
    int type;
    const char *start;   /* where the token starts (errors) */
    struct slm_str text; /* TK_TEXT: the text; TK_OUTPUT / TK_TAG: the markup */
    struct slm_str name; /* TK_TAG: the tag name ("#" for inline comments) */
    bool trim_right;     /* ended with -}} or -%} */
};

void slm__lq_scan_init(struct lq_scan *sc, const char *src, const char *p, const char *end,
                       bool lines);
/* Next token; on a malformed token returns SLM_E_INVALID with *bad_pos set
 * and *what describing what was expected. */
int slm__lq_scan_next(struct lq_scan *sc, struct lq_tok *tok, const char **bad_pos,
                      const char **what);
/* For raw and doc: the text up to the closing {% end<name> %}; the scanner is
 * left after it. False when there is none. */
bool slm__lq_scan_until_end(struct lq_scan *sc, const char *endname, struct slm_str *body);

/* ---------------------------------------------------------------- markup tokens */

enum lq_t {
    T_EOS,
    T_ID,
    T_STR,
    T_INT,
    T_FLOAT,
    T_CMP,
    T_DOT,
    T_DOTDOT,
    T_PIPE,
    T_COLON,
    T_COMMA,
    T_LBRACK,
    T_RBRACK,
    T_LPAREN,
    T_RPAREN,
    T_BAD,    /* an unexpected character */
    T_BADSTR, /* an unterminated string */
};

struct lq_lex {
    const char *p, *end;
    /* the current token */
    int t;
    int op;         /* T_CMP: enum lq_op */
    const char *tp; /* token text */
    size_t tn;
    int64_t ival;
    double fval;
};

void slm__lq_lex_init(struct lq_lex *lx, const char *p, size_t n);
void slm__lq_lex_next(struct lq_lex *lx);
/* True when the current token is the identifier `word`. */
bool slm__lq_lex_is(const struct lq_lex *lx, const char *word);
/* A human name for the current token ("'|'", "end of tag", "'foo'"). */
void slm__lq_lex_describe(const struct lq_lex *lx, char *buf, size_t cap);

#endif /* SLM_LIQUID_LEXER_H */
