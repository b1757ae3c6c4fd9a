"""ONNX Runtime backend: sessions over the shared weight file (:mod:`.runner`), fused attention (:mod:`.fused`).

No torch here. May import NumPy, onnxruntime and onnx (lazily) and :mod:`snnet_export.engine_folder`.
"""
