# Quick start (Debian / Raspberry Pi OS). Run as root to have the system packages installed,
# otherwise the missing ones are named.
#   make demo   set up .venv and run the demo
#   make test   set up .venv-test and run the test suite
PYTHON ?= python3
VENV ?= .venv
TEST_VENV ?= .venv-test
SYSTEM_PACKAGES = python3-venv ffmpeg portaudio19-dev
# The audio-model tools tests synthesize a tiny corpus (tests/test_tools_audio.py).
# systemd: systemd-analyze for the unit's tests; procps: /bin/kill of the unit's ExecReload.
TEST_SYSTEM_PACKAGES = espeak-ng libespeak-ng1 festival festvox-kallpc16k flite systemd procps

.PHONY: demo test system-packages test-system-packages clean

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[audio]"
	touch $@

$(TEST_VENV)/.installed: setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q --upgrade pip
	$(TEST_VENV)/bin/pip install -q -e ".[audio,dev,tools]"
	touch $@

demo: system-packages $(VENV)/.installed
	$(VENV)/bin/edgemate demo

test-system-packages:
	@$(MAKE) --no-print-directory system-packages SYSTEM_PACKAGES="$(SYSTEM_PACKAGES) $(TEST_SYSTEM_PACKAGES)"

test: test-system-packages $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(TEST_VENV) build *.egg-info
