/*
 * fuzz_name.c - libFuzzer harness for model names: slm_name_parse (a name
 * must never reach outside the store), slm_alias_find, slm_source_parse
 * (pull names and URLs). Checks the invariants, not just "no crash".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/store.h"

static void check_name(const struct slm_name *n) {
    /* No absolute path, no empty / "." / ".." component, tag has no '/'. */
    if (n->name[0] == '/' || n->name[0] == '\0' || strchr(n->tag, '/') || n->tag[0] == '\0') {
        abort();
    }
    const char *p = n->name;
    while (*p) {
        if (*p == '.') {
            abort(); /* a component starting with '.' */
        }
        const char *slash = strchr(p, '/');
        if (slash == p) {
            abort();
        }
        if (!slash) {
            break;
        }
        p = slash + 1;
        if (*p == '\0') {
            abort();
        }
    }
    for (p = n->name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-' || *p == '/')) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    struct slm_name n;
    struct slm_err err;
    if (slm_name_parse(text, &n, &err) == SLM_OK) {
        check_name(&n);
        char buf[SLM_NAME_MAX + 80];
        slm_name_format(&n, buf, sizeof(buf));
        struct slm_name again;
        if (slm_name_parse(buf, &again, NULL) != SLM_OK || strcmp(again.name, n.name) != 0 ||
            strcmp(again.tag, n.tag) != 0) {
            abort(); /* format and parse must round-trip */
        }
    }
    (void)slm_alias_find(text);
    struct slm_source src;
    if (slm_source_parse(text, &src, &err) == SLM_OK) {
        check_name(&src.name);
    }
    free(text);
    return 0;
}
