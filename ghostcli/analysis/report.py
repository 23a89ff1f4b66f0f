"""Dataclasses returned by ``profile_model`` / ``profile_models`` and serialised as ``--json``.

The JSON layout is versioned by :data:`SCHEMA_VERSION` and documented in docs/output.md.
Add fields freely (minor change); rename or remove one only with a major version bump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ghostcli.schema import SCHEMA_VERSION

PROFILE_KIND = "ghostcli.profile"
CHECK_KIND = "ghostcli.check"


@dataclass
class Environment:
    """Where the numbers were measured."""

    ghostcli: str
    python: str
    platform: str
    cpu: str
    cpu_count: int | None
    torch: str
    torchvision: str | None
    fvcore: str | None
    openvino: str | None
    cuda: str | None = None
    gpu: str | None = None
    cpu_isa: list[str] = field(default_factory=list)  # AVX2, AVX-512, VNNI, AVX512-BF16, AMX ... (analysis.env)


@dataclass
class ModuleStat:
    """One module of the tree (``--depth``) or one leaf layer (``--per-layer``)."""

    name: str
    type: str
    depth: int
    macs: int
    params: int
    output_shape: list[int] | None = None
    activations: int | None = None  # elements in the module's outputs


@dataclass
class MemoryStats:
    """Memory of one forward pass at one batch size, in bytes."""

    batch_size: int
    weights_bytes: int
    input_bytes: int
    activations_peak_bytes: int | None  # intermediate tensors alive at once (excl. weights, input)
    peak_bytes: int | None  # the whole forward: weights + input + activations peak (or CUDA allocator peak)
    method: str


@dataclass
class LatencyStats:
    """Wall-clock latency of one forward at one batch size, in milliseconds."""

    batch_size: int
    warmup: int
    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float  # images per second at the median: batch_size / median


@dataclass
class Conditions:
    """How latency and memory were measured; printed beside the numbers."""

    device: str  # cpu | cuda | openvino
    device_name: str
    dtype: str
    threads: int | None
    batch_sizes: list[int]
    warmup: int
    runs: int
    inference_precision: str | None = None  # OpenVINO: the precision that actually ran
    performance_hint: str | None = None  # OpenVINO
    timer: str = ""
    memory_format: str = "contiguous"  # cpu/cuda: "contiguous" (NCHW) or "channels_last" (NHWC)
    threads_requested: int | None = None  # what was asked for, when that is not what ran
    cpus: int | None = None  # CPUs this process may use


@dataclass
class LayerTime:
    """Median time of one inference spent in one module (``profile --layer-times``)."""

    name: str  # module path, e.g. "layer1.0.conv3"; a block path for ops outside any layer; "(runtime)"
    kind: str  # module class (Conv2d, GhostModule ...) or, for block-level ops, the OpenVINO node types
    ms: float
    nodes: int  # OpenVINO: executed nodes summed into ``ms``; PyTorch: calls of the module per forward


@dataclass
class RuntimeInfo:
    """What ran one model's latency and layer times (``profile`` prints it for exported models)."""

    name: str  # pytorch | openvino | onnxruntime
    version: str | None
    device: str  # pytorch: cpu | cuda; openvino: CPU (the CPU plugin); onnxruntime: its execution provider
    precision: str | None  # pytorch: the dtype; openvino: the inference precision that ran; onnxruntime: None
    threads: int | None  # None: the runtime's default
    precision_default: bool = False  # openvino: nobody asked for a precision; the plugin picked it
    int8_layers: str | None = None  # openvino: "20/20 conv/FC layers in i8/u8" when any runs in INT8


@dataclass
class ModelProfile:
    """Everything measured for one model."""

    name: str
    source: str
    input_size: list[int]  # C, H, W (batch 1 for MACs)
    macs: int  # PyTorch: fvcore total (conv + linear/matmul + norms + pooling/upsample); exported: from the graph
    macs_conv_linear: int  # conv + linear/matmul only: the GhostNet paper's convention (BN excluded)
    flops: int  # 2 x macs
    macs_by_operator: dict[str, int]
    uncounted_ops: dict[str, int]  # operator -> occurrences fvcore has no formula for (counted as 0)
    params: int
    trainable_params: int
    weight_bytes: int
    activations: int  # elements produced by conv and linear layers for one image (fvcore's definition)
    memory: list[MemoryStats] = field(default_factory=list)
    latency: list[LatencyStats] = field(default_factory=list)
    modules: list[ModuleStat] = field(default_factory=list)  # the --depth tree
    layers: list[ModuleStat] = field(default_factory=list)  # the --per-layer leaves
    layer_times: list[LayerTime] = field(default_factory=list)  # --layer-times (OpenVINO PERF_COUNT)
    notes: list[str] = field(default_factory=list)
    format: str = "pytorch"  # pytorch | onnx | openvino (an exported file, counted from its graph)
    runtime: RuntimeInfo | None = None  # what timed it; None when nothing was timed


@dataclass
class Comparison:
    """One model against the first model of the run (ratios = this / first)."""

    name: str
    reference: str
    macs_ratio: float | None
    params_ratio: float | None
    weight_bytes_ratio: float | None
    latency_ratio: float | None  # median at the first batch size
    speedup: float | None  # first / this, median latency


@dataclass
class ProfileReport:
    """The result of ``profile_models``: one entry per model plus the run's conditions."""

    models: list[ModelProfile]
    conditions: Conditions
    environment: Environment
    comparisons: list[Comparison] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    kind: str = PROFILE_KIND
    macs_convention: str = (
        "1 MAC = 1 fused multiply-add (the GhostNet paper's FLOP); 'macs' counts conv, linear/matmul, "
        "batch/group/layer norm, adaptive average pooling and upsampling (fvcore); 'macs_conv_linear' "
        "counts conv and linear/matmul only (the paper's tables); 'flops' = 2 x macs"
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, ``schema_version`` and ``kind`` first."""
        from ghostcli.render import to_jsonable

        d = to_jsonable(self)
        head = {"schema_version": d.pop("schema_version"), "kind": d.pop("kind")}
        return {**head, **d}
