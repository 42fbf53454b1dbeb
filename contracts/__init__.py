"""The contracts every process shares, importable without torch.

The training config schema (also the body of ``POST /jobs/train``), the error tree, the
student bundle schema, job states, stage records and the model repository. The API, the
worker, the models and the training library all import these; this package imports none
of them (``tests/test_layering.py`` holds that).
"""
