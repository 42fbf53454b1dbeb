"""onnxruntime's transformer graph optimizer on an exported student: the fused fp32 graph.

``optimize_model`` rewrites the traced encoder into onnxruntime's fused contrib ops
(EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu). The fused graph is
what the fast int8 variants start from — dynamic quantization then turns Attention into
QAttention and the MatMuls into MatMulInteger, the VNNI kernels — and it is the fp32 model
a bundle ships when it passes the same parity check as the traced graph (docs/export.md).

It is run with ``opt_level=0``: only the pattern fusions, no onnxruntime session pass
baked into the file, so the saved graph still loads on any execution provider (the CPU
API, and CUDA workers, which fuse further at session creation). Only BERT-shaped encoders
(BERT, DistilBERT, RoBERTa, MiniLM) have fusion patterns; others keep the traced graph.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx

log = logging.getLogger("lugpi.export")

# config.model_type values whose encoder layers onnxruntime's "bert" patterns match.
BERT_SHAPED = {"bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra"}


def fuse_transformer(
    src: Path, dst: Path, model_type: str, num_heads: int, hidden_size: int
) -> dict[str, int] | None:
    """Write the fused graph of ``src`` to ``dst``; return the fused-op counts, or None (and
    write nothing) when the encoder has no fusion patterns or nothing was fused."""
    if model_type not in BERT_SHAPED:
        return None
    # Imported here: the optimizer pulls in a large module tree that only export needs.
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
    )
    counts = Counter(node.op_type for node in optimized.model.graph.node)
    fused = {op: counts[op] for op in ("Attention", "SkipLayerNormalization", "BiasGelu")}
    if fused["Attention"] == 0:
        log.info("%s: the transformer optimizer fused no attention; keeping the traced graph", src)
        return None
    optimized.save_model_to_file(str(dst))
    onnx.checker.check_model(str(dst))
    return fused | {"EmbedLayerNormalization": counts["EmbedLayerNormalization"]}
