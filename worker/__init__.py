"""Celery workers and the embedded job process: thin shells over ``training/``.

Nothing here is imported by the API (it sends tasks by name, jobs.lifecycle.TASK_*).
"""
