"""Real C and C++ programs, compiled with the system compiler against the spec's declarations, on libnrt.so.1."""
from __future__ import annotations

import numpy as np
import pytest

from neuron_sim import nrt
from neuron_sim.compute.ops import gelu_erf_reference
from neuron_sim.neff.reader import read_neff_file
from tests.clib.conftest import run_program
from tests.conftest import NEFFS


def mlp_reference(stem: str, x: np.ndarray, act: str = "relu") -> np.ndarray:
    w = read_neff_file(NEFFS / f"{stem}.neff").weights
    h = x @ w["w1"] + w["b1"]
    h = np.maximum(h, 0) if act == "relu" else gelu_erf_reference(h)
    return h @ w["w2"] + w["b2"]


@pytest.mark.parametrize("stem, instance, act", [("mlp_trn1", "trn1.2xlarge", "relu"),
                                                 ("mlp_inf2", "inf2.xlarge", "gelu")])
def test_first_app_call_order_outputs_equal_numpy(programs, c_env, tmp_path, stem, instance, act):
    """(a) init, mmap + load, tensor info, sets, allocate, fill inputs from files, execute, outputs to files."""
    exe = programs("first_app.c", "-lnrt")
    x = np.random.default_rng(7).standard_normal((1, 64)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    proc = run_program([exe, NEFFS / f"{stem}.neff", tmp_path, f"x={tmp_path / 'x.bin'}"],
                       c_env(NEURON_SIM_INSTANCE_TYPE=instance))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["in x dtype=10 size=256 shape=1x64",
                                        "out y dtype=10 size=40 shape=1x10", "y va matches", "done"]
    got = np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, mlp_reference(stem, x, act), rtol=1e-5, atol=1e-5)


def test_first_app_zero_fills_inputs_without_a_file(programs, c_env, tmp_path):
    exe = programs("first_app.c", "-lnrt")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff", tmp_path], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stderr
    got = np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, mlp_reference("mlp_trn1", np.zeros((1, 64), np.float32)), rtol=1e-6)


def test_first_app_failure_is_a_status_and_a_log_line(programs, c_env, tmp_path):
    exe = programs("first_app.c", "-lnrt")
    proc = run_program([exe, NEFFS / "mlp_inf2.neff", tmp_path], c_env(NEURON_SIM_INSTANCE_TYPE="inf1.xlarge"))
    assert proc.returncode == 1
    assert "nrt_load(neff, st.st_size, -1, -1, &model) failed: NRT_UNSUPPORTED_NEFF_VERSION (10)" in proc.stderr
    assert "ERROR   NRT:nrt_load" in proc.stderr


def test_cxx_dlopen_dlsym_and_tensor_va_bytes(programs, c_env):
    """(b) a C++ program that does not link libnrt: dlopen("libnrt.so.1") + dlsym, then get_va checks."""
    exe = programs("dlopen_va.cpp", "-ldl")
    proc = run_program([exe], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "done" and len(lines) == 25
    for check in ("va bytes equal what nrt_tensor_write wrote", "nrt_tensor_read sees bytes stored through the va",
                  "slice va = source va + offset", "attached tensor's va is the caller's buffer",
                  "writes land in the caller's buffer in place", "reads see the caller's later stores (no copy)"):
        assert f"ok {check}" in lines


def test_async_callback_counts_every_completion_with_its_params(programs, c_env):
    """(c) the legacy async callback is called once per execution, on the runtime's thread, with params."""
    exe = programs("async_callback.c", "-lnrt", "-lpthread")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff", "40"],
                       c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS="3"))
    assert proc.returncode == 0, proc.stderr
    fields = dict(kv.split("=") for kv in proc.stdout.split())
    assert fields["submitted"] == fields["completed"] == fields["successes"] == "40"
    assert fields["params_ok"] == "1" and fields["other_thread"] == "1"
    assert proc.stderr.count("Async queue of NC 0 is full") == int(fields["queue_full"])


EXPECTED_BAD_CALLS = {
    "before_init.tensor_allocate": 13, "before_init.load": 13, "before_init.allocate_tensor_set": 13,
    "before_init.total_nc_count": 0, "before_init.total_nc_count.value": 2,
    "before_init.get_version": 0, "before_init.get_version.major": 2,
    "init.bad_framework": 2, "init": 0, "init.twice": 1,
    "null.load_out": 2, "null.load_neff": 2, "null.load_garbage": 2, "null.load_garbage.model_untouched": 1,
    "null.tensor_allocate_out": 2, "null.total_nc_count_out": 2, "null.allocate_tensor_set_out": 2,
    "null.get_version_out": 2, "null.memory_stats_out": 2, "null.instance_info_out": 2, "null.execute": 2,
    "null.tensor_read": 2, "null.tensor_get_size": 0, "null.tensor_get_va": 1,
    "null.check_output_completion": 2, "null.reset_output_completion": 2, "null.add_to_set": 2,
    "null.free_model_tensor_info": 2, "null.read_batch": 2, "null.frees_survived": 1,
    "load": 0, "null.tensor_info_out": 2, "tensor_info": 0, "tensor_allocate": 0, "null.tensor_write_buf": 2,
    "size.write_past_end": 2, "size.read_past_end": 2, "size.read_huge_offset": 2, "size.write_huge_size": 2,
    "size.memset_past_end": 2, "size.slice_past_end": 2, "size.allocate_4gb": 4, "size.allocate_bad_vnc": 2,
    "size.execute_wrong_input_size": 2, "execute": 0,
    "versioned.memory_stats_short": 0, "versioned.memory_stats_short.size_out": 8,
    "versioned.memory_stats_short.used_set": 1, "versioned.memory_stats_short.limit_untouched": 1,
    "versioned.memory_stats_full": 0, "versioned.memory_stats_full.size_out": 16,
    "versioned.memory_stats_bad_vnc": 2, "versioned.model_info_zero": 0,
    "versioned.model_info_zero.untouched": 1, "versioned.model_info": 0, "versioned.model_info.vnc": 0,
    "set.missing_name": 1, "set.missing_name.untouched": 1, "set.null_name": 2,
    "foreign.tensor_as_model": 2, "foreign.garbage_tensor": 2, "foreign.stack_pointer_model": 2,
    "foreign.model_as_set": 2,
    "freed.pointer_cleared": 1, "freed.tensor_read": 3, "freed.tensor_write": 3, "freed.add_to_set": 3,
    "freed.execute_with_freed_input": 2, "freed.double_free_survived": 1, "freed.set_pointer_cleared": 1,
    "freed.execute_destroyed_set": 2, "unload": 0, "freed.unload_twice": 3,
    "freed.model_info_after_unload": 3, "freed.nc_count_after_unload": 3,
    "free_model_tensor_info": 0, "freed.free_model_tensor_info_twice": 2,
    "status_string.unknown": 1, "status_string.invalid": 1,
    "after_close.tensor_allocate": 14, "after_close.load": 14, "after_close.tensor_read": 14,
}


def test_bad_calls_return_the_spec_statuses_and_never_crash(programs, c_env):
    """(d) NULL pointers, wrong sizes, freed/foreign handles, before init and after close."""
    exe = programs("bad_calls.c", "-lnrt")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff"], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "survived"
    got = {k: int(v) for k, v in (line.split("=") for line in lines[:-1])}
    assert got == EXPECTED_BAD_CALLS
    # every refusal is logged in the runtime's format, naming the function and the cause
    assert "ERROR   NRT:nrt_load" in proc.stderr and "model pointer is NULL" in proc.stderr
    assert "ERROR   NRT:nrt_tensor_read" in proc.stderr and "was already freed" in proc.stderr
    assert "internal error" not in proc.stderr


def test_many_c_threads_share_a_model_and_get_numpy_results(programs, c_env, tmp_path):
    exe = programs("threads.c", "-lnrt", "-lpthread")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff", tmp_path, "8", "60"],
                       c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "threads=8 failures=0 mismatches=0"
    for i in range(8):
        x = np.fromfile(tmp_path / f"thread_{i}.in", np.float32).reshape(1, 64)
        y = np.fromfile(tmp_path / f"thread_{i}.out", np.float32).reshape(1, 10)
        assert x[0, 0] == pytest.approx((i + 1) * 0.01 * -20)
        np.testing.assert_allclose(y, mlp_reference("mlp_trn1", x), rtol=1e-5, atol=1e-5)


def test_every_other_function_from_c_matches_the_flat_face(programs, c_env, monkeypatch):
    """Batches, copy, repeat, allocation info, completions, counts, instance, version, memory stats, collectives."""
    exe = programs("api_tour.c", "-lnrt")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff"], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split("=", 1) for line in proc.stdout.splitlines())

    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")           # the same calls, flat face
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_PYTORCH, "2.1", "1.0") == 0
    _, model = nrt.nrt_load_collectives((NEFFS / "mlp_trn1.neff").read_bytes(), 1, -1, 0, 1)
    _, a = nrt.nrt_tensor_allocate(0, 1, 256, "x")
    _, b = nrt.nrt_tensor_allocate(0, 1, 256, "x_copy")
    _, y = nrt.nrt_tensor_allocate(0, 1, 40, "y")
    x = (np.arange(64, dtype=np.float32) / np.float32(64) - np.float32(0.5))
    nrt.nrt_tensor_write(a, x, 0, 256)
    nrt.nrt_tensor_copy(a, 0, b, 0, 256)
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", b)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    assert nrt.nrt_execute_repeat(model, ins, outs, 3) == 0
    out = np.empty(10, np.float32)
    nrt.nrt_tensor_read(y, out, 0, 40)
    stats = nrt.nrt_get_vnc_memory_stats(1)[1]
    version = nrt.nrt_get_version()[1]
    instance = nrt.nrt_get_instance_info()[1]
    dai = nrt.nrt_tensor_get_device_allocation_info(b)[1]
    nrt.nrt_close()

    statuses = ("init", "instance_info", "version", "load_collectives", "write_batch", "copy", "read_batch",
                "device_allocation_info", "execute_repeat", "reset_completion", "check_completion_zero",
                "register_callback_without_async", "drain", "memory_stats", "unload")
    assert {k: got[k] for k in statuses} == dict.fromkeys(statuses, "0")
    assert got["check_completion_none"] == "5"                                  # NRT_TIMEOUT
    assert got["copy_roundtrip"] == "1" and got["dai_address_nonzero"] == "1"
    assert (got["total_vnc_count"], got["visible_vnc_count"], got["visible_nc_count"]) == ("2", "2", "2")
    assert (got["model_vnc"], got["model_vnc_count"], got["model_nc_count"], got["model_instance_count"]) == \
        ("1", "1", "1", "1")
    assert got["instance"] == f"{instance.family}/{instance.size}/{instance.arch_name}/{instance.device_revision}"
    assert got["version_numbers"] == ".".join(str(v) for v in (version.rt_major, version.rt_minor, version.rt_patch,
                                                               version.rt_maintenance))
    assert (got["version_detail"], got["git_hash"]) == (version.rt_detail, version.git_hash)
    assert (int(got["dai_size"]), int(got["dai_hbm"])) == (dai.size, dai.hbm_index)
    assert (int(got["bytes_used"]), int(got["bytes_limit"])) == (stats.bytes_used, stats.bytes_limit)
    np.testing.assert_array_equal(np.array(got["y"].split(","), np.float32), out)


def test_nrta_pipeline_statuses_through_pointers_and_eventfds(programs, c_env):
    """The explicit async API from C: NRT_STATUS *ret written at completion, eventfds that poll() sees."""
    exe = programs("nrta_pipeline.c", "-lnrt")
    proc = run_program([exe, NEFFS / "mlp_trn1.neff"], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    fields = dict(line.split("=", 1) for line in lines[:-1])
    assert lines[-1] == "done"
    assert fields["write_event"] == "1" and fields["xu_event"] == "1"
    assert fields["ret_w"] == fields["ret_e"] == fields["ret_r"] == "0"
    assert fields["seq_nums"] == "1,1,1" and fields["distinct_xu_ids"] == "1" and fields["last_is_read"] == "1"
    assert (fields["bad_seq"], fields["null_ret"], fields["null_seq"], fields["bad_queue"],
            fields["not_eventfd"]) == ("2", "2", "2", "2", "2")
    assert fields["untouched_ret"] == "1"
    x = (np.arange(64, dtype=np.float32) / 64.0 - 0.5).reshape(1, 64)
    got = np.array([float(v) for v in fields["y"].split(",")], np.float32)
    np.testing.assert_allclose(got, mlp_reference("mlp_trn1", x)[0], rtol=1e-5, atol=1e-6)
    assert "is not an eventfd" in proc.stderr and "Invalid sequence id" in proc.stderr
