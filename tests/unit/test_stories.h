/*
 * test_stories.h - a model for unit tests that need one, found by
 * tests/tools/test-model.sh (the one place the lookup lives: ../shared, else
 * the user's store, else a random-weight model made by mkmodel):
 *
 *   test_stories_path/_load   the real stories260K: for tests that check
 *                             what it says; skip the test without it
 *   test_model_path/_load     any llama-family model that loads and runs:
 *                             stories260K, else the random one; skip only
 *                             when neither can be had
 *
 * A skip's message says why. Included by one test file each (static
 * functions); needs $SLM_SRC (the harness sets it).
 */
#ifndef SLM_TEST_STORIES_H
#define SLM_TEST_STORIES_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "slm/engine.h"

/* Runs test-model.sh `want` ("stories" or "any"): returns 1 for stories260K,
 * 0 for a random-weight model (its path in `path`), -1 when there is none
 * (why in `path`); fails the test when the script fails. */
static inline int test_model_lookup(const char *want, char *path, size_t cap) {
    const char *src = getenv("SLM_SRC");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s/tests/tools/test-model.sh' %s 2>&1", src ? src : "..", want);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char line[4096] = "";
    size_t n = fread(line, 1, sizeof(line) - 1, p);
    line[n] = '\0';
    line[strcspn(line, "\n")] = '\0';
    int status = pclose(p);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 77) {
        snprintf(path, cap, "%s", line);
        return -1;
    }
    cr_assert_eq(code, 0, "test-model.sh %s: %s", want, line);
    const char *sp = strchr(line, ' ');
    cr_assert_not_null(sp, "test-model.sh said '%s'", line);
    snprintf(path, cap, "%s", sp + 1);
    return strncmp(line, "stories ", 8) == 0;
}

/* The same, skipping the test when there is no model; true for stories260K. */
static inline bool test_model_find(const char *want, char *path, size_t cap) {
    int found = test_model_lookup(want, path, cap);
    if (found < 0) {
        cr_skip_test("%s", path);
    }
    return found == 1;
}

/* Writes the real stories260K's path into `path`; skips the test without it. */
static inline void test_stories_path(char *path, size_t cap) {
    test_model_find("stories", path, cap);
}

/* Writes a model's path into `path`: stories260K, else a random-weight one.
 * Returns true for stories260K. */
static inline bool test_model_path(char *path, size_t cap) {
    return test_model_find("any", path, cap);
}

static inline void test_load_path(const char *path, struct slm_model **out) {
    struct slm_err err;
    cr_assert_eq(slm_model_load(path, NULL, out, &err), SLM_OK, "%s", err.msg);
}

/* Loads stories260K into *out (skips when absent; fails when it does not load). */
static inline void test_stories_load(struct slm_model **out) {
    char path[4096];
    test_stories_path(path, sizeof(path));
    test_load_path(path, out);
}

/* Loads any model into *out; returns true for stories260K. */
static inline bool test_model_load(struct slm_model **out) {
    char path[4096];
    bool stories = test_model_path(path, sizeof(path));
    test_load_path(path, out);
    return stories;
}

#endif /* SLM_TEST_STORIES_H */
