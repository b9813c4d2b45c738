#!/usr/bin/env bash
# Regenerates tests/fixtures/smollm2/ (read by tests/generative):
#   smollm2-prompts.txt, hf-chat-templates.json   scripts/make_chat_fixtures.py (transformers'
#                                                 chat-template renderings and the prompt list)
#   smollm2-llamacpp.jsonl                        llama.cpp's prompt token ids and 24 greedy tokens
#                                                 per prompt (../shared/anchors/gguf.py through
#                                                 scripts/gguf_no_extra_bufts.py: llama.cpp's AMX
#                                                 path crashes on the CPU they were made on)
# Needs `make models` (the SmolLM2 GGUF) and the anchors venv with llama-cpp-python
# (`make anchors ANCHORS_ARGS=--llama`). Run from anywhere:
#   scripts/make_llamacpp_reference.sh [OUT_DIR]      (default tests/fixtures/smollm2)
# Environment: ANCHORS_PY (python with transformers + llama-cpp-python), MODEL (the GGUF),
# ANCHORS_DIR (folder with gguf.py, default ../shared/anchors next to the checkout).
# Last run with llama-cpp-python 0.3.36, transformers 5.24.0 (2 threads, n_ctx 2048).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/tests/fixtures/smollm2}
PY=${ANCHORS_PY:-$HOME/.cache/taskbench-anchors/bin/python}
MODEL=${MODEL:-$ROOT/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$MODEL" ]; then
  echo "$MODEL is missing: run \`make models\` first" >&2
  exit 1
fi
mkdir -p "$OUT"
"$PY" "$ROOT/scripts/make_chat_fixtures.py" --out "$OUT"
"$PY" "$ROOT/scripts/gguf_no_extra_bufts.py" "$MODEL" --greedy "$OUT/smollm2-prompts.txt" \
  --gen-tokens 24 > "$OUT/smollm2-llamacpp.jsonl.tmp"
mv "$OUT/smollm2-llamacpp.jsonl.tmp" "$OUT/smollm2-llamacpp.jsonl"
echo "wrote $OUT"
