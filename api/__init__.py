"""The LUGPI inference service: FastAPI + onnxruntime + tokenizers. Never imports torch.

Run it with ``uvicorn api.main:app`` (settings from ``LUGPI_*`` environment variables,
see ``api/settings.py``).
"""
