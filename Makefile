# The two commands in README.md: `make demo` and `make test`.
PY ?= python3
PIP = $(PY) -m pip

.PHONY: install demo test bench clean

# compat editable mode: the default editable mode does not expose twisted/plugins to twistd
install:
	@$(PIP) install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test,sim,sandbox]'
	@$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" 2>/dev/null || true

demo: install
	@bash .ci/setup-system sandbox
	$(PY) -m market demo

# system parts (MariaDB up, bubblewrap, PyPy, Chromium, busybox) when run as root on Debian, then the suite
test: install
	@bash .ci/setup-system
	$(PY) -m pytest -q

bench: install
	@for b in tests/bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build dist *.egg-info var demo .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
