"""The job service: job records in a store (SQLite or Redis), the lifecycle transitions
and the task/queue names. Torch-free: the API uses it to accept and report jobs, the
worker to run them. Imports only ``contracts``."""
