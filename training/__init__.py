"""LUGPI training library: data, prompts, generation, training loops, losses,
evaluation, export and the CLI. Importing this package imports no torch; the
contract modules (config, bundle, jobs, artifacts, errors) stay torch-free."""
