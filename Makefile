# The two quick-start commands: `make pretrain` (main job) and `make test` (both cores: pytest-xdist,
# one thread per worker). Each installs first.
PYTHON ?= python3
RUN ?= runs/fmnist-hpm

.PHONY: install pretrain test test-slow bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

pretrain: install
	hpm pretrain --subset 10000 --output-dir $(RUN)

test: install
	$(PYTHON) -m pytest -q -n 2 --dist worksteal

test-slow: install
	$(PYTHON) -m pytest -q -n 2 --dist worksteal -m slow

bench: install
	hpm bench --preset vit_b16 --batch-size 8 --precision fp32,bf16
