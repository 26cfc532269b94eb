#!/bin/bash
# test_tune.sh - the tuning workflow with the real binary on the test model
# (lib.sh need_model; the accuracy checks need stories260K):
# data check (and --fix) -> tune, stopped by SIGTERM and by kill -9, resumed to
# the same adapter bytes as an uninterrupted run -> eval -> fuse -> run with
# the adapter, the fused model and a created model, all giving the same text.
source "$(dirname "$0")/lib.sh"
need_model

W=$(mktemp -d /tmp/slm-e2e-tune-XXXXXX)
trap 'rm -rf "$W" "$SLM_HOME"' EXIT
DATA=$SLM_SRC/tests/data/tune/colors.jsonl
VALID=$SLM_SRC/tests/data/tune/colors-valid.jsonl
TUNE=(--valid "$VALID" --steps 60 --lr 1e-2 --rank 8 --ctx-size 128 --threads 1 --eval-every 20 -q)

# --- data check
out=$("$SLM" data check "$DATA" --model "$MODEL" --labels red,blue,green,big,small,happy,sad,old)
contains "$out" "64 records" "data check"
contains "$out" "0 errors" "data check"
printf '%s\n' '{"prompt":"a","completion":"x"}' '{"prompt":"a","completion":"y"}' \
    '{"prompt":"b","completion":"x"}' '{"prompt":"b","completion":"x"}' >"$W/bad.jsonl"
expect_exit 1 "$SLM" data check "$W/bad.jsonl" --fix "$W/fixed.jsonl"
[ "$(wc -l <"$W/fixed.jsonl")" = 1 ] || fail "--fix should keep one record: $(cat "$W/fixed.jsonl")"
expect_exit 2 "$SLM" data frobnicate "$DATA"
# A row `slm label` left without a label is refused for training, naming it and the way out.
printf '%s\n' '{"text":"a","label":"x"}' '{"text":"b","label":null,"label_error":"no majority"}' \
    >"$W/labelled.jsonl"
echo '{{ text }}' >"$W/t.liquid"
expect_exit 1 "$SLM" tune "$MODEL" "$W/labelled.jsonl" --template "$W/t.liquid" \
    --completion-field label -o "$W/x.gguf"
contains "$ERR" "labelled.jsonl:2: field 'label' is null, no label from the contractor (label_error: no majority)"
contains "$ERR" "slm data check --fix OUT"
expect_exit 3 "$SLM" tune "$MODEL" "$W/missing.jsonl" -o "$W/x.gguf"

# --- an uninterrupted run
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" -o "$W/full-run.gguf" >"$W/run1.txt" 2>"$W/run1.err"
contains "$(head -n1 "$W/run1.err")" "device: " "the first line names the device"
contains "$(cat "$W/run1.txt")" "validation loss" "tune report"
[ -s "$W/full-run.loss.svg" ] || fail "no loss chart"
grep -q "<polyline" "$W/full-run.loss.svg" || fail "loss chart has no curve"

# --- devices: an unknown name fails and lists them; --device cpu is the default
# here when auto found no GPU (the same bytes, the direct CPU path)
code=0
out=$("$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" --device NoSuchGPU7 -o "$W/d.gguf" 2>&1) || code=$?
[ "$code" != 0 ] || fail "an unknown --device should fail"
contains "$out" "unknown device 'NoSuchGPU7'" "--device error"
contains "$out" "CPU (cpu:" "--device error lists the devices"
expect_exit 2 "$SLM" tune eval "$MODEL" "$DATA" --device cpu
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" --device cpu -o "$W/cpu.gguf" >/dev/null 2>"$W/cpu.err"
contains "$(head -n1 "$W/cpu.err")" "device: CPU (" "--device cpu"
if head -n1 "$W/run1.err" | grep -q "^device: CPU ("; then
    cmp -s "$W/cpu.gguf" "$W/full-run.gguf" || fail "--device cpu differs from auto on the CPU"
fi

# --- SIGTERM mid-run: checkpoint, exit 130, then --resume ends with the same bytes
wait_ckpt() { # file, pid
    for _ in $(seq 1 600); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 0
        sleep 0.05
    done
}
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" -o "$W/a.gguf" --checkpoint-every 12 &
pid=$!
wait_ckpt "$W/a.gguf.ckpt" $pid
kill -TERM $pid 2>/dev/null || true
code=0
wait $pid || code=$?
if [ "$code" = 130 ]; then
    [ -s "$W/a.gguf.ckpt" ] || fail "no checkpoint after SIGTERM"
    [ -s "$W/a.gguf" ] || fail "an interrupted run keeps its weights so far in the output"
    "$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" -o "$W/a.gguf" --resume 2>"$W/resume.txt"
    contains "$(cat "$W/resume.txt")" "resuming from" "resume"
else
    [ "$code" = 0 ] || fail "tune exited $code after SIGTERM"
fi
cmp -s "$W/a.gguf" "$W/full-run.gguf" || fail "resumed adapter differs from the uninterrupted run"

# --- kill -9: the last periodic checkpoint survives and --resume finishes the job
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" -o "$W/b.gguf" --checkpoint-every 12 &
pid=$!
wait_ckpt "$W/b.gguf.ckpt" $pid
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" -o "$W/b.gguf" --resume 2>/dev/null
cmp -s "$W/b.gguf" "$W/full-run.gguf" || fail "adapter resumed after kill -9 differs"

# --- a time limit stops the run cleanly (exit 0) with an output
"$SLM" tune "$MODEL" "$DATA" "${TUNE[@]}" --steps 100000 --time-limit 1 -o "$W/t.gguf" 2>"$W/t.txt"
contains "$(cat "$W/t.txt")" "time limit" "time-limited run"
[ -s "$W/t.gguf" ] || fail "no output after the time limit"

# --- eval: the adapter learned the job
base=$("$SLM" tune eval "$MODEL" "$VALID" --threads 1)
tuned=$("$SLM" tune eval "$MODEL" "$VALID" --adapter "$W/a.gguf" --threads 1)
acc() { sed -n 's/.*accuracy \([0-9]*\)\..*/\1/p' <<<"$1"; }
if coherent "tune eval: the tuned accuracy >= 60% and the base's <= 50%"; then
    [ "$(acc "$tuned")" -ge 60 ] || fail "tuned accuracy too low: $tuned"
    [ "$(acc "$base")" -le 50 ] || fail "the base model should not already know: $base"
fi

# --- fuse, run, create
"$SLM" fuse "$MODEL" "$W/a.gguf" "$W/fused.gguf" >/dev/null
PROMPT="Mia had a ball. The ball was"
want=$("$SLM" run "$MODEL" --adapter "$W/a.gguf" --temperature 0 -n 4 "$PROMPT")
got=$("$SLM" run "$W/fused.gguf" --temperature 0 -n 4 "$PROMPT")
[ "$want" = "$got" ] || fail "fused model says '$got', base+adapter says '$want'"
if coherent "the tuned model answers 'happy'"; then
    contains "$want" "happy" "tuned output"
fi
printf 'FROM %s\nADAPTER %s\n' "$MODEL" "$W/a.gguf" >"$W/Modelfile"
"$SLM" create colors -f "$W/Modelfile" >/dev/null 2>&1
got=$("$SLM" run colors --temperature 0 -n 4 "$PROMPT")
[ "$want" = "$got" ] || fail "created model says '$got', base+adapter says '$want'"
# ... which tune eval measures with its adapter, and tune refuses to train on
# (a second adapter on top of the first is not supported)
got=$("$SLM" tune eval colors "$VALID" --threads 1)
[ "${got% (*}" = "${tuned% (*}" ] || fail "tune eval of the created model: '$got', base+adapter: '$tuned'"
out=$("$SLM" tune colors "$DATA" -o "$W/y.gguf" 2>&1) && fail "tune on a model with an adapter should fail"
contains "$out" "carries an adapter" "tune on a created model with ADAPTER"
expect_exit 1 "$SLM" tune eval colors "$VALID" --adapter "$W/a.gguf"
echo "ok"
