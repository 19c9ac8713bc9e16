# Two commands do all set-up: `make demo` and `make test`. Both create .venv and install
# what is missing; the stamp file makes a second run skip the install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.debian-packages
CORES ?= 2
DEMO_DATA := data/demo

.PHONY: demo test install system-packages clean-results report

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -c "import torch, torchvision, cv2, simplejpeg, snakemake, librosa, h5py, pyarrow"
	touch $(STAMP)

# Made again when the generator changes (its code is the stamp's prerequisite).
$(DEMO_DATA)/.complete: $(STAMP) $(wildcard pipeline/synth/*.py)
	rm -rf $(DEMO_DATA)
	$(PY) -m pipeline.synth --out $(DEMO_DATA) --size demo --seed 0
	touch $@

demo: $(STAMP) $(DEMO_DATA)/.complete
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml --report results/report.html
	@cat results/report/index.md
	@echo "HTML report (open it in a browser): results/report.html"
	@echo "drawn: $$(ls results/visualize/* 2>/dev/null | tr '\n' ' ')"

# The self-contained HTML report of the demo's results (snakemake --report; the rules' report() outputs).
report: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml --report results/report.html

# Debian packages some tests need (envs/debian-packages.txt): installed only as root with apt-get.
system-packages: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): envs/debian-packages.txt $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  packages="$$(grep -v '^\s*#' envs/debian-packages.txt | xargs)"; \
	  echo "installing Debian packages: $$packages"; \
	  { apt-get update -qq || apt-get update -qq; } && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages >/dev/null || exit 1; \
	else \
	  echo "not root or no apt-get: Debian packages of envs/debian-packages.txt not installed; tests that need them are skipped"; \
	fi
	touch $@

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m pytest -q

clean-results:
	rm -rf results .snakemake
