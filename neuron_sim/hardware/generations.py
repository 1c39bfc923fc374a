"""NeuronCore generations (v1 inf1, v2 trn1/trn1n/inf2, v3 trn2) with the figures the cost model uses.

Every figure is per *physical* NeuronCore (except ``hbm_bandwidth``, per device) and comes from the
published per-chip figure divided by the chip's physical core count; each number names its source or
states the assumption behind it. "MB" in the Neuron device-memory guide is read as MiB, like its
"32 GB" HBM which is 32 GiB.
"""
from __future__ import annotations

from neuron_sim.hardware.model import CoreGeneration

MiB = 1 << 20
TERA = 1e12
GIGA = 1e9

# runtime-semantics.md §2.2 (device-memory guide): "model code plus 96 MB microcode per physical NC".
# The guide gives it for current generations; we assume the same reservation on NeuronCore-v1.
MICROCODE_BYTES = 96 * MiB

# Inferentia (NeuronCore-v1): one chip = 4 NeuronCores.
_V1_CORES_PER_CHIP = 4
V1 = CoreGeneration(
    name="v1",
    arch_name="NCv1",
    kelf_target="tonga",
    peak_flops={
        # Inferentia: 64 TFLOPS FP16/BF16 per chip (published) / 4 cores = 16 TFLOPS per core.
        "bf16": 64 * TERA / _V1_CORES_PER_CHIP,
        # Inferentia: 128 TOPS INT8 per chip (published) / 4 cores = 32 TOPS per core.
        "int8": 128 * TERA / _V1_CORES_PER_CHIP,
        # Assumption: no native FP32 matmul (the compiler casts FP32 to BF16 by default);
        # we charge FP32 at a quarter of the BF16 rate, 4 TFLOPS per core.
        "fp32": 64 * TERA / _V1_CORES_PER_CHIP / 4,
        # Assumption: NeuronCore-v1 has no FP8 path; FP8 data is charged at the BF16 rate.
        "fp8": 64 * TERA / _V1_CORES_PER_CHIP,
    },
    # Assumption: the per-chip DRAM bandwidth of Inferentia (8 GiB DRAM) is not published;
    # 50 GB/s is a dual-channel DDR4-class figure.
    hbm_bandwidth=50 * GIGA,
    # Assumption: fixed cost of one nrt_execute on inf1 (host doorbell + completion), 50 us.
    launch_cost_s=50e-6,
    microcode_bytes=MICROCODE_BYTES,
    # Assumption: Inferentia sits on PCIe Gen3 x16; its nominal 15.75 GB/s is the host<->device bandwidth.
    host_device_bandwidth=15.75 * GIGA,
    # Assumption: 2 us per DMA transfer for descriptor set-up and the completion notification.
    dma_latency_s=2e-6,
)

# Trainium / Inferentia2 (NeuronCore-v2): one chip = 2 NeuronCores.
_V2_CORES_PER_CHIP = 2
V2 = CoreGeneration(
    name="v2",
    arch_name="NCv2",
    kelf_target="sunda",
    peak_flops={
        # Trainium: 190 TFLOPS BF16/FP16 per chip (published) / 2 cores = 95 TFLOPS per core.
        # Inferentia2 publishes the same 190 TFLOPS FP16 per chip.
        "bf16": 190 * TERA / _V2_CORES_PER_CHIP,
        # Trainium: 47.5 TFLOPS FP32 per chip (published) / 2 cores = 23.75 TFLOPS per core.
        "fp32": 47.5 * TERA / _V2_CORES_PER_CHIP,
        # Trainium: 190 TFLOPS cFP8 per chip (published, same as BF16) / 2 = 95 TFLOPS per core.
        "fp8": 190 * TERA / _V2_CORES_PER_CHIP,
        # Assumption: INT8 runs at the 8-bit (cFP8) rate, 95 TOPS per core.
        "int8": 190 * TERA / _V2_CORES_PER_CHIP,
    },
    # Trainium: 820 GB/s HBM per chip (published); Inferentia2 publishes the same 820 GB/s per chip.
    hbm_bandwidth=820 * GIGA,
    # Assumption: fixed cost of one nrt_execute on trn1/inf2, 30 us.
    launch_cost_s=30e-6,
    microcode_bytes=MICROCODE_BYTES,
    # Assumption: Trainium/Inferentia2 sit on PCIe Gen4 x16; its nominal 31.5 GB/s is the host<->device bandwidth.
    host_device_bandwidth=31.5 * GIGA,
    # Assumption: 2 us per DMA transfer for descriptor set-up and the completion notification.
    dma_latency_s=2e-6,
)

# Trainium2 (NeuronCore-v3): one chip = 8 physical NeuronCores.
_V3_CORES_PER_CHIP = 8
V3 = CoreGeneration(
    name="v3",
    arch_name="NCv3",
    kelf_target="cayman",
    peak_flops={
        # Trainium2: 667 TFLOPS BF16/FP16 dense per chip (published) / 8 = 83.375 TFLOPS per core.
        "bf16": 667 * TERA / _V3_CORES_PER_CHIP,
        # Trainium2: 181 TFLOPS FP32 per chip (published) / 8 = 22.625 TFLOPS per core.
        "fp32": 181 * TERA / _V3_CORES_PER_CHIP,
        # Trainium2: 1299 TFLOPS FP8 dense per chip (published) / 8 = 162.375 TFLOPS per core.
        "fp8": 1299 * TERA / _V3_CORES_PER_CHIP,
        # Assumption: INT8 runs at the FP8 rate, 162.375 TOPS per core.
        "int8": 1299 * TERA / _V3_CORES_PER_CHIP,
    },
    # Trainium2: 2.9 TB/s HBM per chip (published).
    hbm_bandwidth=2.9 * TERA,
    # Assumption: fixed cost of one nrt_execute on trn2, 20 us.
    launch_cost_s=20e-6,
    microcode_bytes=MICROCODE_BYTES,
    # Assumption: Trainium2 sits on PCIe Gen5 x16; its nominal 63 GB/s is the host<->device bandwidth.
    host_device_bandwidth=63 * GIGA,
    # Assumption: 2 us per DMA transfer for descriptor set-up and the completion notification.
    dma_latency_s=2e-6,
)

GENERATIONS: dict[str, CoreGeneration] = {"v1": V1, "v2": V2, "v3": V3}


def display_name(generation: CoreGeneration) -> str:
    """The generation as Neuron docs spell it, e.g. ``NeuronCore-v3``."""
    return f"NeuronCore-{generation.name}"
