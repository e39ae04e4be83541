"""The inner step in one call on a CPU: the paper's two networks in C++ (``native.cpp``), through ctypes.

On a CPU an inner step of these small networks costs about as much in framework calls (some 60 per
step) as in arithmetic.
``native.cpp`` computes the forward pass, the summed (or mean) cross-entropy and the whole gradient in
one call, its convolutions as im2col + one matrix product of the BLAS that PyTorch itself links
(``sgemm_`` / ``dgemm_``, whose addresses are handed over at load time, so nothing else is linked).

It is compiled on first use with the machine's C++ compiler (``$CXX``, else ``g++`` / ``c++``) into a
cache folder (``$REPTILE_NATIVE_CACHE``, else ``~/.cache/reptile_lib``), keyed by the source, the
compiler and the CPU, written then renamed, so concurrent first uses are safe. Where there is no
compiler, no such BLAS symbol (a PyTorch built without MKL), or ``REPTILE_NATIVE=0``, :func:`available`
is False, :func:`unavailable_reason` says why, and the engine runs its PyTorch kernels instead.
Same arithmetic as the PyTorch kernels up to float rounding (tests compare them in float64).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native.cpp")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
_KINDS = {"conv": 0, "norm": 1, "relu": 2, "pool": 3}
_reason: list[str] = []


def cache_dir() -> Path:
    """Where the compiled library is kept (``$REPTILE_NATIVE_CACHE``, else ``~/.cache/reptile_lib``)."""
    env = os.environ.get("REPTILE_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reptile_lib"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_key() -> str:
    try:  # -march=native: the library is built for this CPU's instruction set
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + platform.processor() + flags


def _blas() -> tuple[int, int] | None:
    """Addresses of sgemm_ / dgemm_ in the library PyTorch's CPU kernels use (None: not exported)."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for path in sorted(glob.glob(str(lib_dir / "libtorch_cpu.*"))):
        try:
            lib = ctypes.CDLL(path)
            found = (ctypes.cast(lib.sgemm_, ctypes.c_void_p).value, ctypes.cast(lib.dgemm_, ctypes.c_void_p).value)
        except (OSError, AttributeError):
            continue
        return found
    return None


def _build(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cxx, version, " ".join(FLAGS), _cpu_key()]).encode())
    target = cache_dir() / f"native-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{cxx} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)   # whole or not at all
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=None)
def library() -> Any:
    """The loaded library (None where it cannot be had; :func:`unavailable_reason` says why)."""
    if os.environ.get("REPTILE_NATIVE", "1") == "0":
        _reason.append("disabled by REPTILE_NATIVE=0")
        return None
    blas = _blas()
    if blas is None:
        _reason.append("PyTorch's CPU library exports no sgemm_/dgemm_ (built without MKL)")
        return None
    cxx = _compiler()
    if cxx is None:
        _reason.append("no C++ compiler (set CXX, or install g++)")
        return None
    try:
        lib = ctypes.CDLL(str(_build(cxx)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        _reason.append(f"could not build {SOURCE.name}: {err}")
        return None
    vp, i32, f64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
    lib.rn_set_blas.argtypes, lib.rn_set_blas.restype = [vp, vp], i32
    lib.rn_create.argtypes, lib.rn_create.restype = [i32, i32, vp, vp, i32, i32, i32], vp
    lib.rn_free.argtypes, lib.rn_free.restype = [vp], None
    lib.rn_grad.argtypes, lib.rn_grad.restype = [vp, vp, vp, vp, i32, i32, vp], f64
    lib.rn_logits.argtypes, lib.rn_logits.restype = [vp, vp, vp, i32, i32, vp], None
    lib.rn_update.argtypes, lib.rn_update.restype = [i32, ctypes.c_int64, vp, vp, vp, f64, f64, f64, vp], None
    lib.spec_ints = lib.rn_set_blas(*blas)
    return lib


def available() -> bool:
    """Whether the one-call kernels can run here."""
    return library() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (None when it is True)."""
    return None if available() else (_reason[-1] if _reason else "unknown")


def supports(net: Any, dtype: torch.dtype, device: Any = "cpu") -> bool:
    """Whether :class:`NativeNet` implements this ``engine.sequential.FlatNet`` in ``dtype`` on ``device``."""
    return (torch.device(device).type == "cpu" and dtype in (torch.float32, torch.float64)
            and _describe(net) is not None)


def _describe(net: Any) -> tuple[list[int], list[float], int, int, int] | None:
    """The layer description ``rn_create`` reads (12 ints per layer), or None for a layer it lacks."""
    offsets, at = {}, 0
    for name, size in zip(net.names, net.sizes):
        offsets[name] = at
        at += size
    spec: list[int] = []
    eps: list[float] = []
    h = w = net.size
    c = net.channels
    for layer in net.layers:
        if layer.kind == "conv":
            shape = net.shapes[layer.prefix + "weight"]
            cout, k = shape[0], shape[2]
            off = offsets[layer.prefix + "weight"]
            if offsets.get(layer.prefix + "bias") != off + net.sizes[net.names.index(layer.prefix + "weight")]:
                return None
            top, bottom, left, right = layer.pad
            ho, wo = (h + top + bottom - k) // layer.stride + 1, (w + left + right - k) // layer.stride + 1
            spec += [0, c, cout, k, layer.stride, top, left, h, w, ho, wo, off]
            h, w, c = ho, wo, cout
        elif layer.kind == "norm":
            off = offsets[layer.prefix + "weight"]
            if offsets.get(layer.prefix + "bias") != off + c:
                return None
            spec += [1, c, c, 0, 0, 0, 0, h, w, h, w, off]
        elif layer.kind == "relu":
            spec += [2, c, c, 0, 0, 0, 0, h, w, h, w, 0]
        else:
            kernel, stride, padding, dilation, ceil = layer.pool
            if (kernel, stride, padding, dilation) not in ((2, 2, 0, 1), (2, 2, 0, (1, 1))):
                return None
            ho, wo = (-(-h // 2), -(-w // 2)) if ceil else (h // 2, w // 2)
            spec += [3, c, c, 2, 2, 0, 0, h, w, ho, wo, 0]
            h, w = ho, wo
        eps.append(float(layer.eps))
    dense = offsets.get("classifier.weight")
    ways, feat = net.shapes["classifier.weight"]
    if dense is None or feat != h * w * c or offsets.get("classifier.bias") != dense + ways * feat:
        return None
    return spec, eps, ways, feat, dense


class NativeNet:
    """A FlatNet's forward and gradient in one call each (``native.cpp``), for one dtype on the CPU."""

    def __init__(self, net: Any, dtype: torch.dtype):
        lib = library()
        if lib is None:
            raise RuntimeError(f"native kernels unavailable: {unavailable_reason()}")
        described = _describe(net)
        if described is None or dtype not in (torch.float32, torch.float64):
            raise TypeError(f"no native kernels for this network in {dtype}")
        spec, eps, self.ways, feat, dense = described
        self._lib, self.dtype, self.channels, self.size = lib, dtype, net.channels, net.size
        self._spec = (ctypes.c_int * len(spec))(*spec)
        self._eps = (ctypes.c_double * len(eps))(*eps)
        self._h = lib.rn_create(0 if dtype == torch.float32 else 1, len(eps), self._spec, self._eps,
                                self.ways, feat, dense)

    def __del__(self):
        if getattr(self, "_h", None):
            self._lib.rn_free(self._h)
            self._h = None

    def _nhwc(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.channels, self.size, self.size).to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last)   # (B, C, H, W) stored as (B, H, W, C)

    def grad(self, p: Tensor, x: Tensor, y: Tensor, g: Tensor, mean: bool = False) -> Tensor:
        """The loss on (x, y) at the flat parameters ``p`` (summed over the batch, or its mean); the
        gradient is written to the flat buffer ``g``."""
        x = self._nhwc(x)
        y = y.to(torch.int64).contiguous()
        if not (p.is_contiguous() and g.is_contiguous() and p.dtype == g.dtype == self.dtype):
            raise ValueError("p and g must be contiguous flat vectors of the net's dtype")
        loss = self._lib.rn_grad(self._h, p.data_ptr(), x.data_ptr(), y.data_ptr(), x.shape[0], int(mean),
                                 g.data_ptr())
        return torch.tensor(loss, dtype=self.dtype)

    def update(self, p: Tensor, v: Tensor | None, g: Tensor, lr_t: float, beta2: float = 0.0, eps: float = 0.0,
               out: Tensor | None = None) -> None:
        """One step in place, one pass: Adam with beta1 = 0 if ``v`` is given (v <- beta2 v + (1 - beta2) g^2,
        p <- p - lr_t g / (sqrt(v) + eps)), else SGD (p <- p - lr_t g); ``out`` receives the step itself."""
        for t in (p, g, v, out):
            if t is not None and not (t.is_contiguous() and t.dtype == self.dtype and t.numel() == p.numel()):
                raise ValueError("p, v, g and out must be contiguous flat vectors of one size and the net's dtype")
        self._lib.rn_update(0 if self.dtype == torch.float32 else 1, p.numel(), p.data_ptr(),
                            None if v is None else v.data_ptr(), g.data_ptr(), lr_t, beta2, eps,
                            None if out is None else out.data_ptr())

    def logits(self, p: Tensor, x: Tensor, groups: int = 1) -> Tensor:
        """Outputs (B, ways), BatchNorm on the statistics of each of ``groups`` equal consecutive parts."""
        x = self._nhwc(x)
        if x.shape[0] % groups:
            raise ValueError(f"a batch of {x.shape[0]} images does not split into {groups} groups")
        out = torch.empty(x.shape[0], self.ways, dtype=self.dtype)
        self._lib.rn_logits(self._h, p.data_ptr(), x.data_ptr(), x.shape[0], groups, out.data_ptr())
        return out
