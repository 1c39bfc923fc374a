"""Building the library: cache layout and reuse, exported names, struct layouts, toolchain errors."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import cffi
import pytest

from neuron_sim import nrt
from neuron_sim.clib import build
from neuron_sim.dtypes import NrtDtype
from neuron_sim.runtime.xu import XuType
from neuron_sim.status import NrtStatus

# sizeof / offsetof worked out by hand from the spec's struct definitions for LP64 (x86-64, aarch64)
LAYOUT = {
    "sizeof(nrt_tensor_info_t)": 296, "offsetof(nrt_tensor_info_t, usage)": 256,
    "offsetof(nrt_tensor_info_t, size)": 264, "offsetof(nrt_tensor_info_t, dtype)": 272,
    "offsetof(nrt_tensor_info_t, shape)": 280, "offsetof(nrt_tensor_info_t, ndim)": 288,
    "offsetof(nrt_tensor_info_array_t, tensor_array)": 8,
    "sizeof(nrt_version_t)": 224, "offsetof(nrt_version_t, rt_detail)": 32, "offsetof(nrt_version_t, git_hash)": 160,
    "sizeof(nrt_instance_info_t)": 32, "offsetof(nrt_instance_info_t, arch_name)": 8,
    "offsetof(nrt_instance_info_t, device_revision)": 24,
    "sizeof(nrt_vnc_memory_stats_t)": 16, "sizeof(nrt_model_info_t)": 4,
    "sizeof(nrt_tensor_device_allocation_info_t)": 24, "offsetof(nrt_tensor_device_allocation_info_t, hbm_index)": 16,
    "sizeof(nrt_tensor_batch_op_t)": 24, "sizeof(nrt_tensor_batch_t)": 24,
    "offsetof(nrt_tensor_batch_t, num_ops)": 16, "sizeof(NRT_STATUS)": 4, "sizeof(nrt_dtype_t)": 4,
}


def test_cache_directory_holds_the_library_its_link_and_headers(libnrt):
    assert libnrt.parent.name == "libnrt" and libnrt.name == build.cache_key()
    assert (libnrt / "libnrt.so.1").is_file()
    assert os.readlink(libnrt / "libnrt.so") == "libnrt.so.1"
    assert (libnrt / "include" / "nrt" / "nrt.h").read_text() == build.HEADER.read_text()
    for extra in ("nrt_experimental.h", "nrt_status.h", "nrt_version.h"):
        assert (libnrt / "include" / "nrt" / extra).is_file()
    readelf = shutil.which("readelf")
    if readelf:
        dynamic = subprocess.run([readelf, "-d", str(libnrt / "libnrt.so.1")], capture_output=True, text=True).stdout
        assert "Library soname: [libnrt.so.1]" in dynamic


def test_a_second_build_reuses_the_cached_library(libnrt):
    before = (libnrt / "libnrt.so.1").stat().st_mtime_ns
    assert build.build(libnrt.parent.parent) == libnrt
    assert (libnrt / "libnrt.so.1").stat().st_mtime_ns == before


def test_cache_location_follows_the_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURON_SIM_CACHE_DIR", str(tmp_path / "mine"))
    assert build.library_dir() == tmp_path / "mine" / "libnrt" / build.cache_key()
    monkeypatch.delenv("NEURON_SIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.library_dir() == tmp_path / "xdg" / "neuron_sim" / "libnrt" / build.cache_key()


def test_every_function_of_the_flat_face_is_exported(libnrt):
    flat = {name for name in dir(nrt) if name.startswith(("nrt_", "nrta_")) and not name.endswith("_t")}
    assert set(build.exported_functions()) == flat
    lib = ctypes.CDLL(str(libnrt / "libnrt.so.1"))          # resolving symbols runs no Python
    for name in flat:
        assert getattr(lib, name) is not None


def test_header_enums_match_the_runtime():
    ffi = cffi.FFI()
    ffi.cdef(build.declarations())

    def enum(ctype: str) -> dict[str, int]:
        return ffi.typeof(ctype).relements

    assert enum("NRT_STATUS") == {f"NRT_{s.name}": int(s) for s in NrtStatus}
    assert enum("nrt_dtype_t") == {"NRT_DTYPE_INVALID": 0, **{f"NRT_DTYPE_{d.name}": int(d) for d in NrtDtype}}
    assert enum("nrt_tensor_placement_t")["NRT_TENSOR_PLACEMENT_VIRTUAL"] == nrt.NRT_TENSOR_PLACEMENT_VIRTUAL
    assert enum("nrt_framework_type_t")["NRT_FRAMEWORK_TYPE_PRECHECK"] == nrt.NRT_FRAMEWORK_TYPE_PRECHECK
    for family, code in nrt.INSTANCE_FAMILIES.items():
        assert enum("nrt_instance_family_t")[f"NRT_INSTANCE_{family}"] == code
    for size, code in nrt.INSTANCE_SIZES.items():
        assert enum("nrt_instance_size_t")[f"NRT_INSTANCE_SIZE_{size}"] == code
    assert enum("nrta_xu_t") == {f"NRTA_XU_{x.name}": int(x) for x in XuType} | {"NRTA_XU_TYPE_NUM": 3}
    assert (nrt.NRTA_XU_TENSOR_OP, nrt.NRTA_XU_COMPUTE, nrt.NRTA_XU_COLLECTIVES) == (0, 1, 2)


def test_struct_layouts_match_the_spec_in_c_and_in_the_library(libnrt, tmp_path):
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler '{cc}' on PATH")
    body = "\n".join(f'    printf("%s=%zu\\n", "{k}", (size_t){k});' for k in LAYOUT)
    (tmp_path / "layout.c").write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <nrt/nrt.h>\n"
        f"int main(void)\n{{\n{body}\n    return 0;\n}}\n")
    subprocess.run([cc, "-std=c11", f"-I{libnrt / 'include'}", "-o", str(tmp_path / "layout"),
                    str(tmp_path / "layout.c")], check=True)
    out = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout
    assert {k: int(v) for k, v in (line.split("=") for line in out.splitlines())} == LAYOUT
    ffi = cffi.FFI()                                             # the layout the library's Python side copies
    ffi.cdef(build.declarations())
    for key, value in LAYOUT.items():
        kind, args = key.rstrip(")").split("(")
        if kind == "sizeof":
            assert ffi.sizeof(args) == value, key
        else:
            struct, field = (a.strip() for a in args.split(","))
            assert ffi.offsetof(struct, field) == value, key


def test_a_missing_compiler_is_one_error_naming_what_to_install():
    with pytest.raises(build.LibnrtBuildError, match=r"no C compiler: '/nonexistent/cc' .* install one \(gcc or clang"):
        build.check_toolchain(environ={"CC": "/nonexistent/cc", "PATH": "/nonexistent"})


def test_a_missing_python_shared_library_is_one_error_naming_what_to_install(tmp_path):
    (tmp_path / "Python.h").write_text("")
    cc = shutil.which("cc") or sys.executable                  # any program found on PATH stands for the compiler
    (tmp_path / "libpython.a").write_text("")                  # a static library alone does not do
    config = {"CC": cc, "INCLUDEPY": str(tmp_path), "LIBDIR": str(tmp_path)}
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(build.LibnrtBuildError, match=rf"no Python shared library .* install python{v}-dev"):
        build.check_toolchain(config=config, environ={"PATH": os.environ["PATH"]})
    with pytest.raises(build.LibnrtBuildError, match=rf"no Python headers .* install python{v}-dev"):
        build.check_toolchain(config={**config, "INCLUDEPY": str(tmp_path / "none")},
                              environ={"PATH": os.environ["PATH"]})


def test_cli_build_without_a_compiler_fails_cleanly(tmp_path):
    env = {**os.environ, "NEURON_SIM_CACHE_DIR": str(tmp_path / "cache"), "CC": "/nonexistent/cc"}
    proc = subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "libnrt", "build"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("neuron-sim libnrt: error: no C compiler") and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_a_library_that_cannot_import_neuron_sim_fails_every_call_with_nrt_failure(programs, tmp_path):
    """Its embedded Python is an empty virtual environment: nrt_init is NRT_FAILURE with the cause, no crash.

    cffi's own backend must be importable (it loads before the library's start-up code); PYTHONPATH gives it."""
    import _cffi_backend
    venv = tmp_path / "empty-venv"
    (venv / "bin").mkdir(parents=True)
    base = os.path.realpath(sys.executable)
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(base)}\ninclude-system-site-packages = false\n")
    python = venv / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    python.symlink_to(base)
    (tmp_path / "cffi-only").mkdir()
    (tmp_path / "cffi-only" / os.path.basename(_cffi_backend.__file__)).symlink_to(_cffi_backend.__file__)
    recorded = {**build.recorded_python(), "executable": str(python), "sitedirs": [], "pythonpath": [],
                "package_root": str(tmp_path / "nowhere")}
    broken = tmp_path / "broken"
    broken.mkdir()
    subprocess.run([sys.executable, "-c", "import sys, json, pathlib; from neuron_sim.clib import build; "
                    "build.compile_into(pathlib.Path(sys.argv[1]), json.loads(sys.argv[2]))", str(broken),
                    json.dumps(recorded)], check=True, capture_output=True)
    env = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": str(broken), "PYTHONPATH": str(tmp_path / "cffi-only"),
           "NEURON_SIM_STATE_DIR": os.environ["NEURON_SIM_STATE_DIR"]}
    proc = subprocess.run([str(programs("first_app.c", "-lnrt")), "none.neff", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert 'nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") failed' in proc.stderr
    assert "ERROR   NRT:nrt_init   libnrt.so.1 (neuron_sim): cannot import neuron_sim" in proc.stderr
