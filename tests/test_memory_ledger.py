"""Machine-wide device memory (issue 9 §5): two real processes on the two cores of one trn1 device share its 32 GiB
HBM bank through the ledger; a killed holder's bytes come back; the ledger reader and its chunking."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from neuron_sim.hardware.select import select_machine
from neuron_sim.runtime.memory import DeviceMemory
from neuron_sim.runtime.memory_ledger import CHUNK_BYTES, read_machine_memory
from neuron_sim.runtime.reservation import default_state_dir
from tests.conftest import REPO

GIB = 1 << 30
TRN1 = select_machine("trn1.2xlarge", None, None)

# Allocates 30 GiB of device tensors (3.75 GiB each: a tensor must stay under 4 GB) on its one core, reports,
# then holds them until stdin closes.
HOLDER = """
import json, sys
from neuron_sim import nrt
assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
held, status = [], nrt.NRT_SUCCESS
for i in range(8):
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 15 << 28, f"w{i}")
    if status != nrt.NRT_SUCCESS:
        break
    held.append(t)
used, limit = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used, nrt.nrt_get_vnc_memory_stats(0)[1].bytes_limit
print(json.dumps({"status": status, "tensors": len(held), "used": used, "limit": limit}), flush=True)
sys.stdin.read()
nrt.nrt_close()
"""


@pytest.fixture
def trn1_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    env.update(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_SIM_STATE_DIR=str(tmp_path / "state"))
    procs: list[subprocess.Popen] = []
    yield env, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _start(env, procs, core: int) -> tuple[subprocess.Popen, dict]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER], env={**env, "NEURON_RT_VISIBLE_CORES": str(core)},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    procs.append(p)
    line = p.stdout.readline()
    assert line, p.stderr.read()
    return p, json.loads(line)


def _state(env) -> str:
    return str(default_state_dir(TRN1, env))


def test_two_processes_on_one_trn1_device_share_its_hbm(trn1_env):
    env, procs = trn1_env
    first, got1 = _start(env, procs, 0)
    assert (got1["status"], got1["tensors"]) == (0, 8)                       # 30 GiB fit alone
    [bank] = read_machine_memory(_state(env), TRN1)
    assert [e.pid for e in bank.entries] == [first.pid]
    assert 30 * GIB < bank.used <= 30 * GIB + (96 << 20) + CHUNK_BYTES      # tensors + microcode, one chunk slack
    second, got2 = _start(env, procs, 1)
    assert got2["status"] == 4 and got2["tensors"] < 8                       # NRT_RESOURCE, as on the hardware
    assert got2["limit"] == 32 * GIB - bank.used                             # stats are machine-wide
    second.stdin.close()
    err = second.stderr.read()
    assert "Displaying Current Memory Utilization" in err
    neighbour = [ln for ln in err.splitlines() if f"PID {first.pid}" in ln]
    assert neighbour and "another process on this machine" in neighbour[0] and "GB" in neighbour[0], err
    assert "ERROR" in neighbour[0]


def test_sigkilled_holder_memory_stays_until_the_next_init_resets_the_cores(trn1_env):
    """NEURON_RT_RESET_CORES (default 1): the next nrt_init on the device clears what the crashed holder left."""
    env, procs = trn1_env
    first, got1 = _start(env, procs, 0)
    assert got1["tensors"] == 8
    assert read_machine_memory(_state(env), TRN1)[0].used > 30 * GIB
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    [left] = read_machine_memory(_state(env), TRN1)[0].entries               # left behind, no longer alive
    assert (left.pid, left.alive) == (first.pid, False) and left.nbytes > 30 * GIB
    second, got2 = _start(env, procs, 1)
    assert (got2["status"], got2["tensors"]) == (0, 8)                       # the reset gave the HBM back
    assert [e.pid for e in read_machine_memory(_state(env), TRN1)[0].entries] == [second.pid]


def test_sigkilled_holder_memory_stays_without_reset(trn1_env):
    """NEURON_RT_RESET_CORES=0: the crashed holder's device memory stays allocated, and nrt_init says so."""
    env, procs = trn1_env
    first, _ = _start(env, procs, 0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second, got2 = _start({**env, "NEURON_RT_RESET_CORES": "0", "NEURON_RT_LOG_LEVEL": "WARN"}, procs, 1)
    assert got2["status"] == 4 and got2["tensors"] == 0                      # the HBM is still taken
    second.stdin.close()
    err = second.stderr.read()
    assert f"device memory left by exited process {first.pid} stay allocated" in err
    assert "NEURON_RT_RESET_CORES=1" in err
    third, got3 = _start(env, procs, 0)                                      # default: reset at init
    assert (got3["status"], got3["tensors"]) == (0, 8)


def test_small_allocations_write_the_ledger_only_per_chunk(tmp_path):
    state = tmp_path / "ns"
    state.mkdir(mode=0o700)
    mem = DeviceMemory(TRN1, state)
    writes = []
    real = mem.ledger._write
    mem.ledger._write = lambda key, n: writes.append(n) or real(key, n)
    core = TRN1.cores[0]
    allocs = [mem.allocate(core, "tensors", 4096) for _ in range(2000)]      # 8 MB in 4 KiB tensors
    assert writes == [CHUNK_BYTES]
    for a in allocs:
        mem.free(a)
    big = mem.allocate(core, "tensors", 5 * CHUNK_BYTES)
    mem.free(big)                                                            # more than two chunks unused
    assert writes == [CHUNK_BYTES, 5 * CHUNK_BYTES, 0]
    [bank] = read_machine_memory(state, TRN1)
    assert bank.entries == ()
    mem.allocate(core, "tensors", 1)
    assert [e.nbytes for e in read_machine_memory(state, TRN1)[0].entries] == [CHUNK_BYTES]
    mem.close()
    assert read_machine_memory(state, TRN1)[0].entries == ()


def test_garbage_ledger_files_are_ignored(tmp_path):
    state = tmp_path / "ns"
    state.mkdir(mode=0o700)
    (state / "mem-1.ledger").write_bytes(b"\x00garbage")
    os.symlink("/etc/passwd", state / "mem-2.ledger")
    mem = DeviceMemory(TRN1, state)
    mem.allocate(TRN1.cores[0], "tensors", 1)
    entries = read_machine_memory(state, TRN1)[0].entries
    assert [e.pid for e in entries] == [os.getpid()]
    assert not (state / "mem-1.ledger").exists()                             # unlocked: dropped as dead
    mem.close()


def test_ls_shows_machine_wide_memory(trn1_env):
    env, procs = trn1_env
    first, got = _start(env, procs, 0)
    assert got["tensors"] == 8
    used = read_machine_memory(_state(env), TRN1)[0].used
    ls = lambda *flags: subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "ls", *flags], env=env,
                                       capture_output=True, text=True, check=True, cwd=REPO).stdout
    table = ls("-a")
    from neuron_sim.runtime.memory import format_bytes
    assert f"ND 0 HBM 0: {format_bytes(used)} of 32.000GB - PID {first.pid} (" in table
    assert "memory_used" not in json.loads(ls("-j"))[0]        # -j keeps the real tool's keys only


from hypothesis import given, strategies as st  # noqa: E402

from neuron_sim.runtime.memory_ledger import _decode, _encode  # noqa: E402


@given(st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_ledger_decode_never_raises(data):
    record = _decode(data)
    assert record is None or isinstance(record[2], dict)


@given(st.integers(1, 1 << 30), st.text(max_size=50),
       st.dictionaries(st.tuples(st.integers(0, 15), st.integers(0, 3)), st.integers(1, 1 << 40), max_size=8))
def test_ledger_record_round_trips(pid, command, banks):
    assert _decode(_encode(pid, command, banks)) == (pid, command, banks)


def test_ls_with_a_bad_state_dir_is_a_clean_error(trn1_env):
    env, _ = trn1_env
    ls = subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "ls", "-a"], cwd=REPO, capture_output=True,
                        text=True, env={**env, "NEURON_SIM_STATE_DIR": "~nosuchuser/x"})
    assert ls.returncode == 1 and "Traceback" not in ls.stderr
    assert "NEURON_SIM_STATE_DIR" in ls.stderr and "~nosuchuser" in ls.stderr
