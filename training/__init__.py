"""LUGPI training library: data, prompts, generation, training loops, losses,
evaluation, export and the CLI. Importing this package imports no torch. The torch-free
contracts it writes and reads (config, bundle, job states, stage records, errors) live in
``contracts``; the job service in ``jobs``."""
