"""The LUGPI inference service: FastAPI + onnxruntime + tokenizers. Never imports torch.

Run it with ``uvicorn api.main:app`` (settings from ``LUGPI_*`` environment variables,
see ``api/settings.py``).
"""

# Reported by GET /v2 (server version) and GET /info (TEI's router version).
API_VERSION = "0.1.0"
