"""The engine-folder format every step after export reads. No torch here.

Owns: :mod:`.manifest` (``manifest.json`` schema), :mod:`.weight_file` (read side of the shared
weight file: one memory map, verified tensor views), :mod:`.profile` (``profile.<device>.json`` and
the Pareto frontier), :mod:`.engine_records` (records of built TensorRT engines and the
compatibility rule), :mod:`.integrity` (``snnet-export verify``).
May import: NumPy, onnx (integrity only, lazily), and the top-level helpers (errors, deps, fileio).
Never torch, timm, click or TensorRT; a test imports every module here without torch.
"""
