# Two commands do all set-up: `make demo` and `make test`. Both create .venv and install
# what is missing; the stamp file makes a second run skip the install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= 2
DEMO_DATA := data/demo

.PHONY: demo test install clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -c "import torch, torchvision, cv2, simplejpeg, snakemake, librosa, h5py, pyarrow"
	touch $(STAMP)

$(DEMO_DATA)/.complete: $(STAMP)
	$(PY) -m pipeline.synth --out $(DEMO_DATA) --size demo --seed 0
	touch $@

demo: $(STAMP) $(DEMO_DATA)/.complete
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml
	@cat results/report/index.md

test: $(STAMP)
	$(PY) -m pytest -q

clean-results:
	rm -rf results .snakemake
