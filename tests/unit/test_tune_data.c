/*
 * test_tune_data.c - dataset reading (JSONL formats, CSV, rows + Liquid
 * template), errors that name the line and field, the banking77-style hash
 * split, and `slm data check` findings. No model needed, except for the
 * tokenizing tests at the end (skipped without stories260K).
 */
#include "test_tune_common.h"

#include "tune/train_internal.h"

static int parse(const char *text, const char *name, struct slm_data_records *out,
                 struct slm_err *err) {
    return slm_data_parse(text, strlen(text), name, NULL, out, err);
}

Test(tune_data, prompt_completion_jsonl) {
    struct slm_data_records r;
    struct slm_err err = {0};
    cr_assert_eq(
        parse("{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"c\",\"completion\":\"d\"}",
              "x.jsonl", &r, &err),
        SLM_OK, "%s", err.msg);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.format, SLM_DATA_PROMPT_COMPLETION);
    cr_assert_str_eq(r.items[1].prompt, "c");
    cr_assert_eq(r.items[1].line, 3);
    slm_data_records_free(&r);
}

Test(tune_data, errors_name_file_line_and_field) {
    struct slm_data_records r;
    struct slm_err err = {0};
    cr_assert_eq(
        parse("{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"a\",\"completion\":3}\n",
              "t.jsonl", &r, &err),
        SLM_E_INVALID);
    cr_assert_str_eq(err.msg, "t.jsonl:2: field 'completion' must be a string");
    cr_assert_eq(parse("{\"prompt\":\"a\",\"completion\":\"b\"}\n{oops\n", "t.jsonl", &r, &err),
                 SLM_E_INVALID);
    cr_assert(strncmp(err.msg, "t.jsonl:2:", 10) == 0, "%s", err.msg);
    cr_assert_eq(parse("[1,2]\n", "t.jsonl", &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "JSON object"), "%s", err.msg);
    cr_assert_eq(
        parse("{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"x\"}\n", "t.jsonl", &r, &err),
        SLM_E_INVALID);
    cr_assert(strstr(err.msg, "t.jsonl:2: a text record"), "%s", err.msg);
    cr_assert_eq(parse("", "t.jsonl", &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "no records"), "%s", err.msg);
}

Test(tune_data, messages_and_text) {
    struct slm_data_records r;
    struct slm_err err = {0};
    const char *m =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
        "\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";
    cr_assert_eq(parse(m, "m.jsonl", &r, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(r.format, SLM_DATA_MESSAGES);
    cr_assert_str_eq(r.items[0].completion, "hello");
    cr_assert_not_null(r.items[0].messages);
    slm_data_records_free(&r);
    cr_assert_eq(
        parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "m.jsonl", &r, &err),
        SLM_E_INVALID);
    cr_assert(strstr(err.msg, "no assistant turn"), "%s", err.msg);
    cr_assert_eq(
        parse("{\"messages\":[{\"role\":\"bot\",\"content\":\"hi\"}]}", "m.jsonl", &r, &err),
        SLM_E_INVALID);
    cr_assert(strstr(err.msg, "messages[0].role 'bot'"), "%s", err.msg);
    cr_assert_eq(parse("{\"text\":\"once upon a time\"}", "t.jsonl", &r, &err), SLM_OK);
    cr_assert_eq(r.format, SLM_DATA_TEXT);
    cr_assert_str_eq(r.items[0].completion, "once upon a time");
    slm_data_records_free(&r);
}

Test(tune_data, csv_quotes_newlines_and_field_counts) {
    struct slm_data_records r;
    struct slm_err err = {0};
    const char *csv = "prompt,completion\r\n\"a, \"\"quoted\"\"\",b\r\n\"multi\nline\",c\n";
    cr_assert_eq(parse(csv, "d.csv", &r, &err), SLM_OK, "%s", err.msg);
    cr_assert(r.csv);
    cr_assert_eq(r.n, 2);
    cr_assert_str_eq(r.items[0].prompt, "a, \"quoted\"");
    cr_assert_str_eq(r.items[1].prompt, "multi\nline");
    cr_assert_eq(r.items[1].line, 3);
    cr_assert_str_eq(r.csv_header, "prompt,completion");
    slm_data_records_free(&r);
    cr_assert_eq(parse("prompt,completion\na,b,c\n", "d.csv", &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "d.csv:2: more fields"), "%s", err.msg);
    cr_assert_eq(parse("prompt,completion\n\"open,b\n", "d.csv", &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "d.csv:2: unterminated"), "%s", err.msg);
}

Test(tune_data, rows_with_a_liquid_template) {
    char *dir = tt_tmpdir();
    char tpl[4200];
    snprintf(tpl, sizeof(tpl), "%s/p.liquid", dir);
    FILE *f = fopen(tpl, "w");
    fputs("Customer: {{ text | strip }}\nIntent:", f);
    fclose(f);
    struct slm_data_read_params p = slm_data_read_params_default();
    p.prompt_template = tpl;
    p.completion_field = "category";
    struct slm_data_records r;
    struct slm_err err = {0};
    const char *csv = "text,category\n  where is my card? ,card_arrival\n";
    cr_assert_eq(slm_data_parse(csv, strlen(csv), "b.csv", &p, &r, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(r.format, SLM_DATA_ROWS);
    cr_assert_str_eq(r.items[0].prompt, "Customer: where is my card?\nIntent:");
    cr_assert_str_eq(r.items[0].completion, "card_arrival");
    slm_data_records_free(&r);
    p.completion_field = "label";
    cr_assert_eq(slm_data_parse(csv, strlen(csv), "b.csv", &p, &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "b.csv:2: completion field 'label'"), "%s", err.msg);
    p.prompt_template = NULL;
    cr_assert_eq(slm_data_parse(csv, strlen(csv), "b.csv", &p, &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "--template"), "%s", err.msg);
    tt_rmdir(dir);
}

Test(tune_data, hash_split_is_the_design_split) {
    struct slm_data_records r, held;
    struct slm_err err = {0};
    struct slm_data_read_params p = slm_data_read_params_default();
    p.format = SLM_DATA_PROMPT_COMPLETION;
    struct slm_buf j = {0};
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(
            slm_buf_printf(&j, "{\"text\":\"message %d\",\"prompt\":\"p\",\"completion\":\"c\"}\n",
                           i),
            SLM_OK);
    }
    cr_assert_eq(slm_data_parse(j.ptr, j.len, "s.jsonl", &p, &r, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_data_split_hash(&r, "text", 10, &held, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(r.n + held.n, 200);
    for (size_t i = 0; i < held.n; i++) {
        const char *t = json_string_value(json_object_get(held.items[i].row, "text"));
        char hex[65];
        slm_sha256_hex(t, strlen(t), hex);
        int first = (hex[0] >= 'a' ? hex[0] - 'a' + 10 : hex[0] - '0') * 16 +
                    (hex[1] >= 'a' ? hex[1] - 'a' + 10 : hex[1] - '0');
        cr_assert_eq(first % 10, 0);
    }
    cr_assert(held.n > 5 && held.n < 50, "held %zu", held.n);
    cr_assert_eq(slm_data_split_hash(&r, "nope", 10, &held, &err), SLM_E_INVALID);
    slm_data_records_free(&r);
    slm_data_records_free(&held);
    slm_buf_free(&j);
}

Test(tune_data, check_finds_duplicates_contradictions_labels_json_overlap) {
    const char *d = "{\"prompt\":\"a b\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"a b\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"Q\",\"completion\":\"y\"}\n"
                    "{\"prompt\":\"q!\",\"completion\":\"z\"}\n"
                    "{\"prompt\":\"e\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"E.\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"v\",\"completion\":\"y\"}\n";
    struct slm_data_records r, v;
    struct slm_err err = {0};
    cr_assert_eq(parse(d, "c.jsonl", &r, &err), SLM_OK);
    cr_assert_eq(parse("{\"prompt\":\"V\",\"completion\":\"y\"}\n", "v.jsonl", &v, &err), SLM_OK);
    const char *labels[] = {"x", "y"};
    struct slm_data_check_params cp = {0};
    cp.labels = labels;
    cp.n_labels = 2;
    cp.valid = &v;
    struct slm_data_check_report rep;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.count[SLM_ISSUE_DUPLICATE], 1);
    cr_assert_eq(rep.count[SLM_ISSUE_NEAR_DUPLICATE], 1); /* e / E. */
    cr_assert_eq(rep.count[SLM_ISSUE_CONTRADICTION], 2);  /* Q -> y, q! -> z */
    cr_assert_eq(rep.count[SLM_ISSUE_NOT_A_LABEL], 1);    /* z */
    cr_assert_eq(rep.count[SLM_ISSUE_IN_VALID], 1);       /* v */
    cr_assert(rep.n_errors > 0);
    cr_assert(rep.drop[1] && !rep.drop[0] && rep.drop[2] && rep.drop[3] && rep.drop[6]);
    char *dir = tt_tmpdir();
    char out[4200];
    snprintf(out, sizeof(out), "%s/fixed.jsonl", dir);
    cr_assert_eq(slm_data_write_kept(out, &r, rep.drop, &err), SLM_OK);
    struct slm_data_records fixed;
    cr_assert_eq(slm_data_read(out, NULL, &fixed, &err), SLM_OK);
    cr_assert_eq(fixed.n, r.n - rep.n_dropped);
    slm_data_records_free(&fixed);
    slm_data_check_report_free(&rep);

    /* A contradiction with a majority: --fix keeps the majority's records. */
    const char *m = "{\"prompt\":\"m\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"m.\",\"completion\":\"y\"}\n"
                    "{\"prompt\":\"M\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"n\",\"completion\":\"x\"}\n"
                    "{\"prompt\":\"n\",\"completion\":\"y\"}\n"
                    "{\"prompt\":\"N\",\"completion\":\"z\"}\n";
    struct slm_data_records mr;
    cr_assert_eq(parse(m, "m.jsonl", &mr, &err), SLM_OK);
    cr_assert_eq(slm_data_check(&mr, NULL, &rep, &err), SLM_OK);
    cr_assert_eq(rep.count[SLM_ISSUE_CONTRADICTION], 6);
    cr_assert(!rep.drop[0] && rep.drop[1] && !rep.drop[2], "m: x has 2 of 3, y goes");
    cr_assert(rep.drop[3] && rep.drop[4] && rep.drop[5], "n: no majority, all go");
    slm_data_check_report_free(&rep);
    slm_data_records_free(&mr);

    /* JSON outputs: checked automatically when most look like JSON. */
    const char *j = "{\"prompt\":\"1\",\"completion\":\"{\\\"a\\\":1}\"}\n"
                    "{\"prompt\":\"2\",\"completion\":\"{\\\"a\\\":2}\"}\n"
                    "{\"prompt\":\"3\",\"completion\":\"{\\\"a\\\":3}\"}\n"
                    "{\"prompt\":\"4\",\"completion\":\"{\\\"a\\\":4}\"}\n"
                    "{\"prompt\":\"5\",\"completion\":\"{\\\"a\\\":\"}\n";
    struct slm_data_records jr;
    cr_assert_eq(parse(j, "j.jsonl", &jr, &err), SLM_OK);
    cr_assert_eq(slm_data_check(&jr, NULL, &rep, &err), SLM_OK);
    cr_assert(rep.checked_json);
    cr_assert_eq(rep.count[SLM_ISSUE_BAD_JSON], 1);
    slm_data_check_report_free(&rep);
    slm_data_records_free(&jr);
    slm_data_records_free(&r);
    slm_data_records_free(&v);
    tt_rmdir(dir);
}

/* Rows as `slm label` writes them: the input row plus the label field, null
 * with "<field>_error" when the contractor gave no label, "agreement" with
 * --votes. Read with a prompt template and the label as the completion field,
 * as `slm tune` and `slm data check` read them. */
static int parse_labelled(const char *rows, const char *field, bool keep,
                          struct slm_data_records *out, struct slm_err *err, char **dir) {
    *dir = tt_tmpdir();
    char tpl[4200];
    snprintf(tpl, sizeof(tpl), "%s/p.liquid", *dir);
    FILE *f = fopen(tpl, "w");
    fputs("Customer: {{ text }}\nIntent:", f);
    fclose(f);
    struct slm_data_read_params p = slm_data_read_params_default();
    p.prompt_template = tpl;
    p.completion_field = field;
    p.keep_unlabelled = keep;
    return slm_data_parse(rows, strlen(rows), "l.jsonl", &p, out, err);
}

Test(tune_data, null_labels_refused_for_training_kept_for_the_check) {
    const char *rows = "{\"text\":\"lost my card\",\"label\":\"card_lost\"}\n"
                       "{\"text\":\"hmm\",\"label\":null,\"label_error\":\"'I don't know' is not "
                       "one of the allowed labels\"}\n"
                       "{\"text\":\"what\",\"label\":null}\n";
    struct slm_data_records r;
    struct slm_err err = {0};
    char *dir;
    /* Training reads refuse, naming the line, the field, the reason and the way out. */
    cr_assert_eq(parse_labelled(rows, "label", false, &r, &err, &dir), SLM_E_INVALID);
    cr_assert_str_eq(err.msg, "l.jsonl:2: field 'label' is null, no label from the contractor "
                              "(label_error: 'I don't know' is not one of the allowed labels); "
                              "`slm data check --fix OUT` drops such rows");
    tt_rmdir(dir);
    cr_assert_eq(
        parse_labelled(rows + strlen("{\"text\":\"lost my card\",\"label\":\"card_lost\"}\n"
                                     "{\"text\":\"hmm\",\"label\":null,\"label_error\":\"'I "
                                     "don't know' is not one of the allowed labels\"}\n"),
                       "label", false, &r, &err, &dir),
        SLM_E_INVALID);
    cr_assert_str_eq(err.msg, "l.jsonl:1: field 'label' is null, no label from the contractor; "
                              "`slm data check --fix OUT` drops such rows");
    tt_rmdir(dir);
    /* A missing field is still the old error, kept or not. */
    cr_assert_eq(parse_labelled("{\"text\":\"a\"}", "label", true, &r, &err, &dir), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "completion field 'label' is missing"), "%s", err.msg);
    tt_rmdir(dir);

    /* The check's read keeps them, marked, with the reason. */
    cr_assert_eq(parse_labelled(rows, "label", true, &r, &err, &dir), SLM_OK, "%s", err.msg);
    cr_assert_eq(r.n, 3);
    cr_assert(!r.items[0].unlabelled && r.items[1].unlabelled && r.items[2].unlabelled);
    cr_assert_null(r.items[0].label_error);
    cr_assert_str_eq(r.items[1].label_error, "'I don't know' is not one of the allowed labels");
    cr_assert_null(r.items[2].label_error);
    cr_assert_str_eq(r.items[1].completion, "");
    slm_data_records_free(&r);
    tt_rmdir(dir);

    /* The error field follows the completion field: intent -> intent_error. */
    const char *intent = "{\"text\":\"x\",\"intent\":null,\"label_error\":\"not this one\","
                         "\"intent_error\":\"upstream: HTTP 500 after 3 attempts\"}\n";
    cr_assert_eq(parse_labelled(intent, "intent", true, &r, &err, &dir), SLM_OK, "%s", err.msg);
    cr_assert(r.items[0].unlabelled);
    cr_assert_str_eq(r.items[0].label_error, "upstream: HTTP 500 after 3 attempts");
    slm_data_records_free(&r);
    tt_rmdir(dir);
    cr_assert_eq(parse_labelled(intent, "intent", false, &r, &err, &dir), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "field 'intent' is null, no label from the contractor "
                              "(intent_error: upstream: HTTP 500 after 3 attempts)"),
              "%s", err.msg);
    tt_rmdir(dir);

    /* {"prompt","completion"} rows: "completion": null and completion_error. */
    const char *pc = "{\"prompt\":\"p\",\"completion\":null,\"completion_error\":\"why\"}\n";
    cr_assert_eq(parse(pc, "pc.jsonl", &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "pc.jsonl:1: field 'completion' is null, no label from the "
                              "contractor (completion_error: why)"),
              "%s", err.msg);
    struct slm_data_read_params keep = slm_data_read_params_default();
    keep.keep_unlabelled = true;
    cr_assert_eq(slm_data_parse(pc, strlen(pc), "pc.jsonl", &keep, &r, &err), SLM_OK);
    cr_assert(r.items[0].unlabelled);
    cr_assert_str_eq(r.items[0].label_error, "why");
    slm_data_records_free(&r);
}

Test(tune_data, check_reports_rows_without_a_label_and_fix_drops_them) {
    /* Line 2 has the same input as line 1 and no label: one finding (no
     * label), not a contradiction of "" with card_lost, nor an empty output. */
    const char *rows = "{\"text\":\"lost my card\",\"label\":\"card_lost\"}\n"
                       "{\"text\":\"lost my card\",\"label\":null,\"label_error\":\"no majority: "
                       "1 of 2 answers agree\",\"agreement\":0.5}\n"
                       "{\"text\":\"refund please\",\"label\":\"refund\"}\n"
                       "{\"text\":\"what\",\"label\":null}\n";
    struct slm_data_records r;
    struct slm_err err = {0};
    char *dir;
    cr_assert_eq(parse_labelled(rows, "label", true, &r, &err, &dir), SLM_OK, "%s", err.msg);
    const char *labels[] = {"card_lost", "refund"};
    struct slm_data_check_params cp = {0};
    cp.labels = labels;
    cp.n_labels = 2;
    struct slm_data_check_report rep;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK, "%s", err.msg);
    cr_assert(slm_data_issue_is_error(SLM_ISSUE_NO_LABEL));
    cr_assert_str_eq(slm_data_issue_name(SLM_ISSUE_NO_LABEL), "no label from the contractor");
    cr_assert_eq(rep.count[SLM_ISSUE_NO_LABEL], 2);
    cr_assert_eq(rep.count[SLM_ISSUE_CONTRADICTION], 0);
    cr_assert_eq(rep.count[SLM_ISSUE_EMPTY], 0);
    cr_assert_eq(rep.count[SLM_ISSUE_NOT_A_LABEL], 0);
    cr_assert_eq(rep.count[SLM_ISSUE_LOW_AGREEMENT], 0, "a row without a label is reported once");
    cr_assert_eq(rep.n_errors, 2);
    cr_assert_eq(rep.n_warnings, 0);
    cr_assert_eq(rep.distinct_outputs, 2);
    cr_assert(!rep.drop[0] && rep.drop[1] && !rep.drop[2] && rep.drop[3]);
    cr_assert_eq(rep.n_dropped, 2);
    char out[4200];
    snprintf(out, sizeof(out), "%s/fixed.jsonl", dir);
    cr_assert_eq(slm_data_write_kept(out, &r, rep.drop, &err), SLM_OK, "%s", err.msg);
    struct slm_buf b = {0};
    cr_assert_eq(slm_file_read(out, 1 << 20, &b, &err), SLM_OK);
    cr_assert_str_eq(slm_buf_cstr(&b), "{\"text\":\"lost my card\",\"label\":\"card_lost\"}\n"
                                       "{\"text\":\"refund please\",\"label\":\"refund\"}\n");
    slm_buf_free(&b);
    slm_data_check_report_free(&rep);
    slm_data_records_free(&r);
    /* What --fix wrote trains: the strict read (as `slm tune` reads) takes it. */
    char tpl[4200];
    snprintf(tpl, sizeof(tpl), "%s/p.liquid", dir);
    struct slm_data_read_params p = slm_data_read_params_default();
    p.prompt_template = tpl;
    p.completion_field = "label";
    cr_assert_eq(slm_data_read(out, &p, &r, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(r.n, 2);
    slm_data_records_free(&r);
    tt_rmdir(dir);
}

Test(tune_data, check_warns_on_low_agreement_at_two_decimals) {
    /* As `slm label --votes K` writes agreement: best / K as a double. */
    const char *rows = "{\"text\":\"a\",\"label\":\"x\",\"agreement\":1.0}\n"
                       "{\"text\":\"b\",\"label\":\"x\",\"agreement\":0.6666666666666666}\n"
                       "{\"text\":\"c\",\"label\":\"x\",\"agreement\":0.67}\n"
                       "{\"text\":\"d\",\"label\":\"x\",\"agreement\":0.5}\n"
                       "{\"text\":\"e\",\"label\":\"x\",\"agreement\":0.6}\n"
                       "{\"text\":\"f\",\"label\":\"x\"}\n"
                       "{\"text\":\"g\",\"label\":\"x\",\"agreement\":\"0.1\"}\n"
                       "{\"text\":\"h\",\"label\":\"x\",\"agreement\":0}\n";
    struct slm_data_records r;
    struct slm_err err = {0};
    char *dir;
    cr_assert_eq(parse_labelled(rows, "label", true, &r, &err, &dir), SLM_OK, "%s", err.msg);
    struct slm_data_check_params cp = {0};
    struct slm_data_check_report rep;
    /* Default 0.67: 2 of 3 passes; 1 of 2, 3 of 5 and 0 do not; no number, no finding. */
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(rep.count[SLM_ISSUE_LOW_AGREEMENT], 3);
    cr_assert(!slm_data_issue_is_error(SLM_ISSUE_LOW_AGREEMENT));
    size_t low[3], n = 0;
    for (size_t i = 0; i < rep.n_issues; i++) {
        if (rep.issues[i].kind == SLM_ISSUE_LOW_AGREEMENT) {
            low[n++] = rep.issues[i].idx;
        }
    }
    cr_assert(n == 3 && low[0] == 3 && low[1] == 4 && low[2] == 7);
    cr_assert_eq(rep.n_errors, 0);
    cr_assert_eq(rep.n_dropped, 0, "a warning: --fix keeps the row");
    slm_data_check_report_free(&rep);
    /* At the threshold passes, below it does not. */
    cp.min_agreement = 0.6;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.count[SLM_ISSUE_LOW_AGREEMENT], 2); /* 0.5, 0 */
    slm_data_check_report_free(&rep);
    cp.min_agreement = 1.0;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.count[SLM_ISSUE_LOW_AGREEMENT], 5);
    slm_data_check_report_free(&rep);
    cp.min_agreement = -1; /* off */
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.count[SLM_ISSUE_LOW_AGREEMENT], 0);
    slm_data_check_report_free(&rep);
    slm_data_records_free(&r);
    tt_rmdir(dir);
}

Test(tune_data, check_finds_chunks_and_files_shared_with_the_validation_set) {
    /* Rows as `slm distill --docs` writes them. Line 2 is cut from the same
     * chunk as validation line 1 with another question: a leak. Line 3 shares
     * only the file with validation line 2. Line 4's file is not in the
     * validation set; line 5 has the chunk number of a validation row but
     * another file; line 6 has no place. */
    const char *t = "{\"prompt\":\"What does make do?\",\"completion\":\"Builds.\","
                    "\"source\":\"guide.md\",\"chunk\":1,\"heading\":\"Install\"}\n"
                    "{\"prompt\":\"How do I install it?\",\"completion\":\"Run make.\","
                    "\"source\":\"guide.md\",\"chunk\":2,\"heading\":\"Install\"}\n"
                    "{\"prompt\":\"What is in the notes?\",\"completion\":\"Plain notes.\","
                    "\"source\":\"sub/notes.txt\",\"chunk\":0,\"heading\":\"\"}\n"
                    "{\"prompt\":\"Other?\",\"completion\":\"Yes.\","
                    "\"source\":\"other.md\",\"chunk\":2,\"heading\":\"\"}\n"
                    "{\"prompt\":\"And this?\",\"completion\":\"No.\","
                    "\"source\":\"third.md\",\"chunk\":2,\"heading\":\"\"}\n"
                    "{\"prompt\":\"Plain\",\"completion\":\"row\"}\n";
    const char *v = "{\"prompt\":\"Which command installs it?\",\"completion\":\"make\","
                    "\"source\":\"guide.md\",\"chunk\":2,\"heading\":\"Install\"}\n"
                    "{\"prompt\":\"Any notes?\",\"completion\":\"Some.\","
                    "\"source\":\"sub/notes.txt\",\"chunk\":5,\"heading\":\"\"}\n"
                    "{\"prompt\":\"Install how?\",\"completion\":\"make\","
                    "\"source\":\"guide.md\",\"chunk\":2,\"heading\":\"Install\"}\n"
                    "{\"prompt\":\"x\",\"completion\":\"y\",\"source\":\"third.md\"}\n";
    struct slm_data_records r, vr;
    struct slm_err err = {0};
    cr_assert_eq(parse(t, "t.jsonl", &r, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(parse(v, "v.jsonl", &vr, &err), SLM_OK, "%s", err.msg);
    struct slm_data_check_params cp = {0};
    cp.valid = &vr;
    struct slm_data_check_report rep;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(rep.count[SLM_ISSUE_IN_VALID], 0, "the questions all differ");
    cr_assert_eq(rep.count[SLM_ISSUE_CHUNK_LEAK], 1);
    cr_assert(slm_data_issue_is_error(SLM_ISSUE_CHUNK_LEAK));
    cr_assert(!slm_data_issue_is_error(SLM_ISSUE_SOURCE_IN_VALID));
    cr_assert_str_eq(slm_data_issue_name(SLM_ISSUE_CHUNK_LEAK),
                     "same document chunk as the validation set");
    /* One warning per file: guide.md (2 rows here, 2 there), sub/notes.txt
     * (1, 1), third.md (1, 1: a file without chunk numbers still counts). */
    cr_assert_eq(rep.count[SLM_ISSUE_SOURCE_IN_VALID], 3);
    bool leak = false, guide = false, notes = false, third = false;
    for (size_t i = 0; i < rep.n_issues; i++) {
        const struct slm_data_issue *is = &rep.issues[i];
        if (is->kind == SLM_ISSUE_CHUNK_LEAK) {
            leak = is->idx == 1 && is->other == 0;
        } else if (is->kind == SLM_ISSUE_SOURCE_IN_VALID) {
            const char *src = json_string_value(json_object_get(r.items[is->idx].row, "source"));
            guide |= strcmp(src, "guide.md") == 0 && is->idx == 0 && is->other == 0 &&
                     is->n_here == 2 && is->n_there == 2;
            notes |= strcmp(src, "sub/notes.txt") == 0 && is->idx == 2 && is->other == 1 &&
                     is->n_here == 1 && is->n_there == 1;
            third |= strcmp(src, "third.md") == 0 && is->idx == 4 && is->other == 3 &&
                     is->n_here == 1 && is->n_there == 1;
        }
    }
    cr_assert(leak && guide && notes && third, "leak %d guide %d notes %d third %d", leak, guide,
              notes, third);
    cr_assert_eq(rep.n_errors, 1);
    cr_assert_eq(rep.n_warnings, 3);
    cr_assert_eq(rep.n_dropped, 1);
    cr_assert(rep.drop[1]);
    char *dir = tt_tmpdir();
    char out[4200];
    snprintf(out, sizeof(out), "%s/fixed.jsonl", dir);
    cr_assert_eq(slm_data_write_kept(out, &r, rep.drop, &err), SLM_OK, "%s", err.msg);
    struct slm_data_records fixed;
    cr_assert_eq(slm_data_read(out, NULL, &fixed, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(fixed.n, 5);
    for (size_t i = 0; i < fixed.n; i++) {
        cr_assert_str_neq(fixed.items[i].prompt, "How do I install it?");
    }
    slm_data_check_report_free(&rep);
    /* The fixed set has no leak left; the shared files stay warnings. */
    cr_assert_eq(slm_data_check(&fixed, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.n_errors, 0);
    cr_assert_eq(rep.count[SLM_ISSUE_SOURCE_IN_VALID], 3);
    slm_data_check_report_free(&rep);
    /* Without a validation set, nothing of this is checked. */
    cp.valid = NULL;
    cr_assert_eq(slm_data_check(&r, &cp, &rep, &err), SLM_OK);
    cr_assert_eq(rep.n_errors + rep.n_warnings, 0);
    slm_data_check_report_free(&rep);
    slm_data_records_free(&fixed);
    slm_data_records_free(&r);
    slm_data_records_free(&vr);
    tt_rmdir(dir);
}

/* ---------------------------------------------------------------- tokenizing */

Test(tune_data, completion_tokens_are_the_only_targets) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    struct slm_dataset *ds = tt_dataset(
        m, "{\"prompt\":\"Once upon a time\",\"completion\":\" there was a dog.\"}\n", 0);
    const uint8_t *train;
    size_t n;
    const int32_t *tok = slm_dataset_example(ds, 0, &train, &n);
    cr_assert_not_null(tok);
    size_t n_prompt = 0, n_comp = 0;
    bool seen_target = false;
    for (size_t i = 0; i < n; i++) {
        if (train[i]) {
            seen_target = true;
            n_comp++;
        } else {
            cr_assert(!seen_target, "a prompt token after the completion started");
            n_prompt++;
        }
    }
    cr_assert(n_prompt >= 4 && n_comp >= 4);
    cr_assert_eq(tok[n - 1], slm_tune_model_eos(m), "completions end with EOS");
    uint64_t nt, ng;
    slm_dataset_stats(ds, &nt, &ng, NULL);
    cr_assert_eq(ng, n_comp);
    slm_dataset_free(ds);

    /* Cut at n_ctx, and counted. */
    ds = tt_dataset(m, "{\"text\":\"one two three four five six seven eight nine ten\"}\n", 4);
    size_t cut;
    slm_dataset_stats(ds, NULL, NULL, &cut);
    cr_assert_eq(cut, 1);
    slm_dataset_example(ds, 0, NULL, &n);
    cr_assert_eq(n, 4);
    slm_dataset_free(ds);

    /* A long prompt loses its start, not the completion. */
    ds = tt_dataset(m,
                    "{\"prompt\":\"one two three four five six seven eight nine ten\","
                    "\"completion\":\" dog\"}\n",
                    6);
    tok = slm_dataset_example(ds, 0, &train, &n);
    cr_assert_eq(n, 6);
    cr_assert(train[n - 1] && train[n - 2], "the completion and EOS survive the cut");
    cr_assert(!train[0] && !train[1]);
    slm_dataset_free(ds);
    slm_tune_model_free(m);
}

Test(tune_data, messages_mask_everything_but_assistant_turns) {
    const char *path = tt_stories();
    TT_NEED(path);
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    /* stories260K has no chat template: ChatML is used (DESIGN.md). */
    struct slm_dataset *ds = tt_dataset(
        m,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":"
        "\"hello\"},{\"role\":\"user\",\"content\":\"bye\"},{\"role\":\"assistant\",\"content\":"
        "\"see you\"}]}\n",
        0);
    const uint8_t *train;
    size_t n;
    slm_dataset_example(ds, 0, &train, &n);
    int runs = 0;
    for (size_t i = 0; i < n; i++) {
        runs += train[i] && (i == 0 || !train[i - 1]);
    }
    cr_assert_eq(runs, 2, "two assistant turns carry loss, got %d runs", runs);
    cr_assert(!train[0]);
    slm_dataset_free(ds);
    slm_tune_model_free(m);
}

Test(tune_data, loss_chart_svg) {
    char *dir = tt_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/loss.svg", dir);
    const float train[] = {5.0f, 4.0f, NAN, 3.0f, 2.5f};
    const float valid[] = {5.5f, 3.1f};
    const uint32_t vstep[] = {0, 5};
    struct slm_err err = {0};
    cr_assert_eq(slm_tune_write_svg(path, train, 5, valid, vstep, 2, &err), SLM_OK, "%s", err.msg);
    struct slm_buf b = {0};
    cr_assert_eq(slm_file_read(path, 0, &b, &err), SLM_OK);
    cr_assert(strstr(b.ptr, "<svg") && strstr(b.ptr, "</svg>"));
    cr_assert(strstr(b.ptr, "<polyline"));
    cr_assert(!strstr(b.ptr, "nan") && !strstr(b.ptr, "inf"), "non-finite values leaked");
    slm_buf_free(&b);
    /* Nothing to draw still makes a valid (empty) chart. */
    cr_assert_eq(slm_tune_write_svg(path, NULL, 0, NULL, NULL, 0, &err), SLM_OK);
    tt_rmdir(dir);
}
