"""Running models: OpenVINO and ONNX Runtime sessions, PyTorch devices, the one interleaved timer with its
statistics (timing.py), the one top-1 loop (accuracy.py) and the one "run once and name the failing layer"
probe (probe.py).

Used by analysis, deploy, train and the benchmarks; imports nothing above it.
"""
