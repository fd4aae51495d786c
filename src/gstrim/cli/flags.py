"""Flags generated from the library's configuration dataclasses (`gstrim.options.option` fields: help,
choices, default, flag), and the groups every verb shares, each declared once: the inputs (scene, --data,
--iteration, --nonfinite), the dataset options, photo-free views, and run control (--resume, --device, ...).
A flag left out keeps the library's default, so defaults live in one place; errors about a field come back
naming its flag (`flag_of`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from gstrim.data import DataOptions
from gstrim.data.virtual import ViewConfig
from gstrim.options import flag_name
from gstrim.pipelines.inputs import Inputs, RunControl

_KNOWN: list[type] = []  # every config class with flags, for `flag_of`


def _dest(config_cls, name: str) -> str:
    return flag_name(config_cls, name).lstrip("-").replace("-", "_")


def _field_type(hint) -> tuple[type, bool]:
    """(the element type, whether the field is a list)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def add_config_options(p, config_cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per described field of `config_cls` but those in `skip` (which another config of the same verb
    provides)."""
    if config_cls not in _KNOWN:
        _KNOWN.append(config_cls)
    hints = typing.get_type_hints(config_cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if "help" not in meta or f.name in skip:
            continue
        target = p
        if meta.get("exclusive"):
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = p.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
        kind, many = _field_type(hints[f.name])
        choices = meta.get("choices")
        choices = choices() if callable(choices) else choices
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        hidden = default is None or isinstance(default, bool) or default == []
        default_text = "" if hidden else f" (default: {shown})"
        kwargs = {"dest": _dest(config_cls, f.name), "default": None, "help": meta["help"] + default_text}
        if kind is bool:
            kwargs |= {"action": "store_false" if default is True else "store_true"}
        else:
            metavar = meta.get("metavar") or (None if choices else {int: "N", float: "X"}.get(kind))
            kwargs |= {"type": kind, "choices": choices, "metavar": metavar}
            if many:
                kwargs["nargs"] = meta.get("nargs") or "+"
        target.add_argument(flag_name(config_cls, f.name), **kwargs)


def config_from_args(args, config_cls, **overrides):
    """`config_cls` with the fields given on the command line (the namespace is only read)."""
    given = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(args, _dest(config_cls, f.name), None) if "help" in f.metadata else None
        if value is not None:
            given[f.name] = value
    return config_cls(**{**given, **overrides})


def flag_of(field: str) -> str:
    """The flag of a field named in an error (the first config class with flags that has it)."""
    for cls in _KNOWN:
        if field in {f.name for f in dataclasses.fields(cls)}:
            return flag_name(cls, field)
    return flag_name(None, field)


# ---- shared groups ---------------------------------------------------------------------------------------


def add_nonfinite(p) -> None:
    p.add_argument("--nonfinite", choices=("error", "drop", "keep"), default="error",
                   help="what to do with Gaussians that have NaN/Inf parameters (default: error)")


def add_inputs(p, name: str = "model", nargs: str | None = None, photo_free: bool = False) -> None:
    """The scene a verb reads (a folder with --iteration, a scene file or a checkpoint), its dataset and how it
    is loaded; with `photo_free`, the options of runs that learn from the scene's own renders."""
    p.add_argument(name, nargs=nargs, help="model folder, scene file (.ply, .splat, ...) or checkpoint chkpnt*.pt")
    p.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
    p.add_argument("--iteration", type=int, help="saved iteration of a model folder (default: latest)")
    add_nonfinite(p)
    add_config_options(p.add_argument_group("dataset options"), DataOptions)
    if photo_free:
        add_photo_free(p)


def add_photo_free(p) -> None:
    """The options of runs that learn from the scene's own renders."""
    g = p.add_argument_group("photo-free (without --data: the scene renders its own targets from virtual views)")
    g.add_argument("--photo-free", action="store_true", help="use virtual views even when the model records a dataset")
    add_config_options(g, ViewConfig, skip=("seed",))


def views_from_args(args) -> ViewConfig | None:
    """The photo-free views typed on the command line; None when no view option was given."""
    given = any(getattr(args, _dest(ViewConfig, f.name), None) is not None
                for f in dataclasses.fields(ViewConfig) if "help" in f.metadata)
    return config_from_args(args, ViewConfig) if given else None


def data_options(args) -> dict:
    """The dataset options typed on the command line (defaults left to the loader and the recorded run)."""
    return config_from_args(args, DataOptions).given()


def inputs_from_args(args, name: str = "model") -> Inputs:
    return Inputs(getattr(args, name), args.data, data_options(args), args.iteration, args.nonfinite,
                  views_from_args(args), getattr(args, "photo_free", False))


def add_output(p, help: str, required: bool = True, default: str | None = None) -> None:
    p.add_argument("-o", "--output", required=required, default=default, help=help)


def add_run_control(p, skip: tuple[str, ...] = ()) -> None:
    add_config_options(p.add_argument_group("run control"), RunControl, skip)


def add_device(p) -> None:
    add_run_control(p, skip=("resume", "checkpoint_every", "no_eval"))


def control_from_args(args) -> RunControl:
    return config_from_args(args, RunControl)
