# Two commands for a fresh machine:
#   make demo   set everything up, then run the main job on the embedded demo
#   make test   set everything up, then run the test suite (what CI runs: .ci/run)
SHELL := /bin/bash
VENV ?= .venv
DEMO_OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: venv demo test clean-venv

venv:
	scripts/setup.sh $(VENV)

demo: venv
	source scripts/ros_env.sh $(VENV) && $(VENV)/bin/unifygeo synth --out $(DEMO_OUT) --city DemoCity --seed 2026 --size-m 300 --panos 200 --force
	@echo "demo: data in $(DEMO_OUT)/DemoCity, picture: $(DEMO_OUT)/DemoCity/preview.png"

test: venv
	source scripts/ros_env.sh $(VENV) && $(VENV)/bin/python -m pytest -q --timeout 900 $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV) .ros_overlay
