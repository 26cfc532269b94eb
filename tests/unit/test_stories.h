/*
 * test_stories.h - the real stories260K model for unit tests that need one:
 * its path under $SLM_SHARED (default ../shared, as the test harness sets it)
 * and a loader; both skip the test with a message when the file is absent
 * (a user's clone has no ../shared). Included by one test file each (static
 * functions).
 */
#ifndef SLM_TEST_STORIES_H
#define SLM_TEST_STORIES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "slm/engine.h"

/* Writes the model's path into `path`; skips the test when it is not there. */
static inline void test_stories_path(char *path, size_t cap) {
    const char *shared = getenv("SLM_SHARED");
    snprintf(path, cap, "%s/models/stories260K.gguf", shared ? shared : "../shared");
    if (access(path, R_OK) != 0) {
        cr_skip_test("stories260K.gguf not found under $SLM_SHARED/models: skipping");
    }
}

/* Loads it into *out (skips when absent; fails the test when it does not load). */
static inline void test_stories_load(struct slm_model **out) {
    char path[1024];
    test_stories_path(path, sizeof(path));
    struct slm_err err;
    cr_assert_eq(slm_model_load(path, NULL, out, &err), SLM_OK, "%s", err.msg);
}

#endif /* SLM_TEST_STORIES_H */
