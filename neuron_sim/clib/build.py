"""Build the drop-in ``libnrt.so.1`` with cffi's embedding API into a per-user cache, once per key.

The cache directory is ``$NEURON_SIM_CACHE_DIR`` (default ``$XDG_CACHE_HOME/neuron_sim``, else
``~/.cache/neuron_sim``) plus ``libnrt/<key>/``; the key covers the neuron_sim and cffi versions, the
embedded Python and the C declarations, so a new version or a new virtual environment builds afresh.
The directory holds ``libnrt.so.1`` (soname ``libnrt.so.1``), a ``libnrt.so`` link, the headers under
``include/nrt/`` and ``build-info.json``. The library records the Python that built it (its executable and
``sys.path``), so its embedded interpreter finds neuron_sim without PYTHONHOME or PYTHONPATH.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import neuron_sim

MODULE_NAME = "_neuron_sim_libnrt"
SONAME = "libnrt.so.1"
HEADER_DIR = Path(__file__).resolve().parent / "include"
HEADER = HEADER_DIR / "nrt" / "nrt.h"


class LibnrtBuildError(RuntimeError):
    """The library cannot be built here; the message names what to install."""


# ---- the C declarations -------------------------------------------------------------------------
def declarations() -> str:
    """nrt.h as cffi reads it: no comments, no preprocessor lines except integer ``#define``s."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    keep = [line for line in text.splitlines()
            if not line.startswith("#") or re.fullmatch(r"#define \w+ \d+", line.strip())]
    return "\n".join(keep)


def exported_functions() -> dict[str, str]:
    """Name → C return type of every function the library exports, in header order."""
    found = re.finditer(r"^([A-Za-z_][\w ]*?[\s*]+)(nrta?_\w+)\s*\(", declarations(), re.M)
    return {m.group(2): " ".join(m.group(1).replace("*", " * ").split()) for m in found}


def failure_value(return_type: str) -> str:
    """What a function returns when it cannot run, as Python source: NRT_FAILURE, None (void) or 0/NULL."""
    if return_type == "NRT_STATUS":
        return "1"
    return "None" if return_type == "void" else ("ffi.NULL" if return_type.endswith("*") else "0")


# ---- what is recorded in the library ------------------------------------------------------------
def recorded_python() -> dict:
    """The building interpreter, so the embedded one starts the same way (venv, .pth files, PYTHONPATH)."""
    sitedirs = [*site.getsitepackages(), site.getusersitepackages()]
    versioned = Path(sys.executable).with_name(f"python{sys.version_info.major}.{sys.version_info.minor}")
    return {
        "executable": str(versioned) if versioned.exists() else sys.executable,   # one key for python/python3
        "sitedirs": [d for d in sitedirs if os.path.isdir(d)],
        "pythonpath": [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p],
        "pythonhome": os.environ.get("PYTHONHOME", ""),
        "package_root": str(Path(neuron_sim.__file__).resolve().parent.parent),
    }


def _init_code(recorded: dict) -> str:
    """Python run once, at the library's first call: find neuron_sim, then attach the exports.

    If neuron_sim cannot be imported every function logs why and returns NRT_FAILURE (never a silent 0).
    """
    return f'''\
import sys, site
_recorded = {recorded!r}
for _p in _recorded["sitedirs"]:
    if _p not in sys.path:
        site.addsitedir(_p)
for _p in _recorded["pythonpath"] + [_recorded["package_root"]]:
    if _p not in sys.path:
        sys.path.append(_p)
from {MODULE_NAME} import ffi
try:
    from neuron_sim.clib import exports
except Exception as _exc:
    _why = "libnrt.so.1 (neuron_sim): cannot import neuron_sim (%r) with sys.path=%r; reinstall neuron_sim " \\
           "and run 'neuron-sim libnrt build'" % (_exc, sys.path)
    def _broken(name, value):
        def fail(*args):
            sys.stderr.write("ERROR   NRT:%s   %s\\n" % (name, _why))
            return value
        return fail
    for _name, _value in {_failure_values()}:
        ffi.def_extern(name=_name)(_broken(_name, _value))
else:
    exports.install(ffi)
'''


def _failure_values() -> str:
    pairs = ", ".join(f"({name!r}, {failure_value(rt)})" for name, rt in exported_functions().items())
    return f"[{pairs}]"


def _wide_literal(text: str) -> str:
    """A C ``wchar_t`` string literal for any path."""
    return 'L"' + "".join(c if c.isascii() and c.isprintable() and c not in '\\"' else f"\\U{ord(c):08x}"
                          for c in text) + '"'


def _narrow_literal(text: str) -> str:
    """A C string literal of a path's bytes."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '\\"?' else f"\\{b:03o}"
                         for b in os.fsencode(text)) + '"'


def _c_source(recorded: dict) -> str:
    """Declarations plus a constructor that readies a C program's embedded Python before cffi starts it."""
    home = ""
    if recorded["pythonhome"]:
        home = ('\n    if (getenv("PYTHONHOME") == NULL)\n'
                f'        Py_SetPythonHome({_wide_literal(recorded["pythonhome"])});')
    executable = _narrow_literal(recorded["executable"])
    return f'''\
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
#include "nrt/nrt.h"
/* Runs when the library is loaded. A program that dlopen()s us with RTLD_LOCAL would hide libpython's
   symbols from the extension modules Python imports: make them global. Then, unless the process already
   runs Python, name the interpreter that built this library, so Python finds its standard library and
   virtual environment (site-packages, .pth files) from there; if it is gone, say so before Python fails. */
__attribute__((constructor)) static void neuron_sim_prepare_python(void)
{{
    Dl_info libpython;
    if (dladdr((void *)&Py_IsInitialized, &libpython) && libpython.dli_fname != NULL)
        dlopen(libpython.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    if (Py_IsInitialized())
        return;
    if (access({executable}, X_OK) != 0)
        fprintf(stderr, "ERROR   NRT:nrt_init   libnrt.so.1 (neuron_sim): the Python that built this library "
                "(%s) is gone; build it again with 'neuron-sim libnrt build'\\n", {executable});
    Py_SetProgramName({_wide_literal(recorded["executable"])});{home}
}}
'''


# ---- cache --------------------------------------------------------------------------------------
def cache_root() -> Path:
    """``$NEURON_SIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/neuron_sim``, else ``~/.cache/neuron_sim``."""
    explicit = os.environ.get("NEURON_SIM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "neuron_sim"


def cache_key() -> str:
    """neuron_sim version, embedded Python and a digest of everything compiled into the library."""
    import cffi
    recorded = recorded_python()
    digest = hashlib.sha256("\0".join([
        neuron_sim.__version__, cffi.__version__, sys.version, HEADER.read_text(),
        _init_code(recorded), _c_source(recorded), json.dumps(_link_options()),
    ]).encode()).hexdigest()[:12]
    return f"{neuron_sim.__version__}-py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def library_dir(root: Path | None = None) -> Path:
    """Where the library for this neuron_sim and this Python lives (built or not)."""
    return (root or cache_root()) / "libnrt" / cache_key()


# ---- toolchain ----------------------------------------------------------------------------------
def _python_dev_package() -> str:
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"python{v}-dev (Debian/Ubuntu) or python{v}-devel (Fedora/RHEL); a Python built from source "
            "needs --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install)")


def check_toolchain(config: dict | None = None, environ: dict | None = None) -> None:
    """A C compiler, Python.h and the Python shared library must exist; else one error naming what to install."""
    config = sysconfig.get_config_vars() if config is None else config
    env = os.environ if environ is None else environ
    compiler = (env.get("CC") or config.get("CC") or "cc").split()[0]
    if shutil.which(compiler, path=env.get("PATH")) is None:
        raise LibnrtBuildError(f"no C compiler: '{compiler}' is not on PATH; install one (gcc or clang, e.g. "
                               "'apt-get install gcc' or 'dnf install gcc') or set CC to a C compiler")
    include = config.get("INCLUDEPY") or ""
    if not os.path.isfile(os.path.join(include, "Python.h")):
        raise LibnrtBuildError(f"no Python headers (Python.h not in '{include}'): install {_python_dev_package()}")
    libdir = config.get("LIBDIR") or ""
    shared = f"lib{_python_lib_name()}.so"            # what -lpythonX.Y links against
    if not os.path.exists(os.path.join(libdir, shared)):
        raise LibnrtBuildError(f"no Python shared library ({shared} not in '{libdir}') for {sys.executable}: "
                               f"install {_python_dev_package()}")


def _python_lib_name() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"


def _link_options() -> dict:
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    return {"library_dirs": [libdir],
            "libraries": ["dl"],
            "extra_link_args": [f"-Wl,-soname,{SONAME}", f"-Wl,-rpath,{libdir}"],
            "extra_compile_args": ["-Wno-deprecated-declarations"]}


# ---- build --------------------------------------------------------------------------------------
def compile_into(out_dir: Path, recorded: dict) -> Path:
    """Compile ``libnrt.so.1`` into ``out_dir`` (run in a child process: the compiler's output is captured)."""
    import cffi
    ffi = cffi.FFI()
    ffi.embedding_api(declarations())
    ffi.set_source(MODULE_NAME, _c_source(recorded), include_dirs=[str(HEADER_DIR)], **_link_options())
    ffi.embedding_init_code(_init_code(recorded))
    work = out_dir / "work"
    built = Path(ffi.compile(tmpdir=str(work), target=SONAME, verbose=False))
    final = out_dir / SONAME
    built.replace(final)
    shutil.rmtree(work, ignore_errors=True)
    return final


def build(root: Path | None = None) -> Path:
    """The directory holding ``libnrt.so.1`` for this neuron_sim and Python, building it on first use."""
    target = library_dir(root)
    if (target / SONAME).is_file():
        return target
    try:
        import cffi  # noqa: F401
    except ImportError:
        raise LibnrtBuildError("cffi is not installed: pip install 'neuron_sim[clib]'") from None
    check_toolchain()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        recorded = recorded_python()
        (staging / "build-info.json").write_text(json.dumps(
            {"neuron_sim": neuron_sim.__version__, "python": sys.version, "recorded": recorded,
             "functions": list(exported_functions())}, indent=2) + "\n")
        proc = subprocess.run([sys.executable, "-m", "neuron_sim.clib.build", str(staging)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not (staging / SONAME).is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise LibnrtBuildError(f"compiling {SONAME} failed:\n{tail}")
        (staging / "libnrt.so").symlink_to(SONAME)
        shutil.copytree(HEADER_DIR, staging / "include")
        try:
            staging.rename(target)
        except OSError:            # another process finished the same build first: use theirs
            if not (target / SONAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    _out = Path(sys.argv[1])
    compile_into(_out, json.loads((_out / "build-info.json").read_text())["recorded"])
