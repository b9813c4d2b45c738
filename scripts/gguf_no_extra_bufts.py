"""Runs the anchors' gguf.py (../shared/anchors/gguf.py next to the checkout, or $ANCHORS_DIR/gguf.py)
unchanged, but with llama.cpp's extra CPU buffer types off.

On the machine the fixtures were made on (AVX512 + AMX_INT8 CPU, GGML_NATIVE build) llama_decode
crashes inside ggml_backend_amx_mul_mat; `use_extra_bufts = False` keeps the weights in the plain
CPU buffer (no AMX, no repacking). Tokenization does not depend on it.

  python scripts/gguf_no_extra_bufts.py MODEL.gguf --greedy PROMPTS.txt --gen-tokens 24
"""
import os
import runpy
import sys

import llama_cpp.llama_cpp as llama_cpp_api  # the module llama_cpp.Llama calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS = os.environ.get("ANCHORS_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "anchors")
GGUF_PY = os.path.join(ANCHORS, "gguf.py")
if not os.path.isfile(GGUF_PY):
    sys.exit(f"{GGUF_PY} not found: set ANCHORS_DIR to the anchors folder (see `make anchors`)")

_default_params = llama_cpp_api.llama_model_default_params


def _params_without_extra_bufts():
    params = _default_params()
    params.use_extra_bufts = False
    return params


llama_cpp_api.llama_model_default_params = _params_without_extra_bufts
sys.argv = [GGUF_PY] + sys.argv[1:]
runpy.run_path(GGUF_PY, run_name="__main__")
