"""Running a student bundle: onnxruntime + ``tokenizers`` + numpy, never torch.

One implementation, used by the API to serve and by export to check what it is about to
ship, so that what export checks is exactly what the server runs:

    encoding.TextEncoder   tokenizer.json -> unpadded encodings -> graph feed (pad to longest)
    session                onnxruntime session options and execution providers
    classifier             OnnxClassifier: an encoder + a session = probabilities per text
    metrics                accuracy / macro-F1, probabilities -> predictions, agreement

Layer: contracts <- runtime <- api, training, worker (see docs/architecture.md).
"""
