"""The simulated machine as immutable values: generations, devices, HBM banks, logical NeuronCores."""
from __future__ import annotations

from dataclasses import dataclass, field

GiB = 1 << 30


@dataclass(frozen=True)
class CoreGeneration:
    """Figures of one NeuronCore generation that the cost model and the runtime need."""

    name: str                     # "v1", "v2", "v3"
    arch_name: str                # nrt_instance_info_t.arch_name style, e.g. "NCv2"
    kelf_target: str              # kelf-N.json "target" of NEFFs built for it: tonga / sunda / cayman
    peak_flops: dict[str, float]  # per *physical* core, FLOP/s by dtype class: "fp32", "bf16" (also fp16), "fp8", "int8"
    hbm_bandwidth: float          # bytes/s per device
    launch_cost_s: float          # fixed cost of one execution
    microcode_bytes: int          # device memory the runtime takes per physical core (model code / microcode)
    host_device_bandwidth: float = 16e9   # bytes/s of one host<->device DMA transfer (PCIe), per device
    dma_latency_s: float = 2e-6   # fixed cost of one DMA transfer (descriptor set-up and completion)


@dataclass(frozen=True)
class HbmBank:
    """One HBM region of a device; every logical core allocates from exactly one bank."""

    device: int
    index: int                    # bank index within the device
    capacity: int                 # bytes


@dataclass(frozen=True)
class LogicalCore:
    """A NeuronCore as the runtime numbers it (logical: LNC physical cores joined)."""

    global_id: int                # machine-wide logical id (what NEURON_RT_VISIBLE_CORES names)
    device: int
    local_id: int                 # index within the device
    physical_ids: tuple[int, ...]  # machine-wide physical core ids
    hbm_bank: int                 # bank index within the device


@dataclass(frozen=True)
class Device:
    """One Neuron device (neuron-ls row)."""

    index: int
    physical_cores: int
    memory_bytes: int
    hbm_banks: tuple[HbmBank, ...]
    connected: tuple[int, ...]
    bdf: str
    cpu_affinity: str
    numa_node: int


@dataclass(frozen=True)
class Machine:
    """An instance type with its devices and logical cores at a given LNC setting."""

    instance_type: str
    family: str                   # nrt instance family name: INF1, TRN1, TRN1N, INF2, TRN2
    size: str                     # nrt instance size name: 1XL, 2XL, 3XL, 6XL, 8XL, 24XL, 32XL, 48XL
    generation: CoreGeneration
    devices: tuple[Device, ...]
    lnc: int                      # physical cores per logical core
    cores: tuple[LogicalCore, ...] = field(default=())
    instance_id: str = "i-0123456789abcdef0"
    source: str = "catalog"       # "catalog" or the topology file path

    @property
    def total_cores(self) -> int:
        return len(self.cores)

    @property
    def cores_per_device(self) -> int:
        return len(self.cores) // max(1, len(self.devices))

    @property
    def total_physical_cores(self) -> int:
        return sum(d.physical_cores for d in self.devices)

    def core(self, global_id: int) -> LogicalCore:
        return self.cores[global_id]

    def bank_of(self, core: LogicalCore) -> HbmBank:
        return self.devices[core.device].hbm_banks[core.hbm_bank]
