"""Running models: OpenVINO and ONNX Runtime sessions, and the one "run once and name the failing layer" probe.

Used by analysis, deploy, train and the benchmarks; imports nothing above it.
"""
