"""The denoiser network of an adapter and its speed levers, written once for every family (architecture.md §3).

An adapter inherits `NetworkMixin` and names the attribute that holds its network (`network_attribute`).
`optimize(levers)` then applies `torch.compile`, diffusers' fused QKV projections and channels-last weights,
each on its own, and undoes the ones not asked for. The family's `predict_x0` keeps calling
`self.<attribute>(...)`: when compiled, that attribute is a `CompiledNetwork`, which reads like the module
(config, dtype) and calls the compiled one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from semanticdraw_cli import defaults
from semanticdraw_cli.families import ip_adapter
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs


@dataclass(frozen=True)
class Levers:
    """How the network runs; the default is eager, as loaded."""

    compile: str | None = None  # a torch.compile mode (defaults.COMPILE_MODES); None: eager
    fuse_qkv: bool = False  # one matrix product for attention's q, k and v
    channels_last: bool = False  # convolution weights in channels-last memory format
    backend: str = defaults.COMPILE_BACKEND  # torch.compile backend; modes apply to inductor only


class CompiledNetwork:
    """`torch.compile` of a network with static shapes; attributes other than calls read the module's."""

    def __init__(self, module: torch.nn.Module, levers: Levers, device: torch.device):
        self.module = module
        mode = {"mode": levers.compile} if levers.backend == "inductor" else {}
        self.compiled = torch.compile(module, backend=levers.backend, dynamic=False, **mode)
        self.cuda_graphs = device.type == "cuda" and levers.backend == "inductor" and levers.compile in CUDA_GRAPH_MODES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.cuda_graphs:  # each call's outputs are used before the next: replays may reuse their memory
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["module"], name)


class NetworkMixin:
    """The contract's `network`, `levers`, `optimize` and `eager` for an adapter holding its network in
    `network_attribute`; the network must be a diffusers model (fused QKV projections)."""

    network_attribute: str = "unet"
    levers: Levers = Levers()
    device: torch.device

    @property
    def network(self) -> torch.nn.Module:
        """The eager module, also while a compiled one is in use."""
        held = getattr(self, self.network_attribute)
        return held.module if isinstance(held, CompiledNetwork) else held

    @property
    def cuda_graphs(self) -> bool:
        held = getattr(self, self.network_attribute)
        return isinstance(held, CompiledNetwork) and held.cuda_graphs

    def optimize(self, levers: Levers) -> bool:
        """Run the network with exactly these levers; True when that changed anything."""
        if levers == self.levers:
            return False
        module, current = self.network, self.levers
        if levers.fuse_qkv != current.fuse_qkv:
            with ip_adapter.reloaded_around_fusion(self):
                module.fuse_qkv_projections() if levers.fuse_qkv else module.unfuse_qkv_projections()
        if levers.channels_last != current.channels_last:
            module.to(memory_format=torch.channels_last if levers.channels_last else torch.contiguous_format)
        held = CompiledNetwork(module, levers, self.device) if levers.compile else module
        setattr(self, self.network_attribute, held)
        self.levers = levers
        return True

    @contextmanager
    def eager(self) -> Iterator[None]:
        """The uncompiled network for a while: probes and FLOP counts compile nothing for their shapes."""
        held = getattr(self, self.network_attribute)
        setattr(self, self.network_attribute, self.network)
        try:
            yield
        finally:
            setattr(self, self.network_attribute, held)
