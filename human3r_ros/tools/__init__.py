"""Developer tools: the `make demo` runner, demo weights and the bundled sample frames."""
