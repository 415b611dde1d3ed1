# The two commands a user needs on a fresh machine: `make demo` (the main job) and `make test`.
# Both do all set-up first. `./env.sh <command>` runs anything else inside the environment.
.PHONY: setup build demo test bench clean

PYTEST_ARGS ?=

setup:
	@bash scripts/setup.sh

# Rebuild after changing msg/, srv/, launch/, config/ or adding a node.
build: setup

demo: setup
	@./env.sh bash scripts/demo.sh

test: setup
	@./env.sh bash scripts/test_modules.sh $(PYTEST_ARGS)

bench: setup
	@./env.sh dpros bench sampler --json build/bench/sampler.json

clean:
	rm -rf build install log
