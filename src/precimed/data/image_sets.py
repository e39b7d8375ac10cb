"""Built-in image sets: real images that can be had offline, listed as data in ``image_sets.yaml``.

Each set is fetched once by a package client (``scripts/fetch_imaging_data.sh``: the pyradiomics 3.1.0 sdist from
the package index, checked by its sha256; ``apt-get`` for Debian's mricron-data and invesalius-examples; pip for
pydicom-data); nothing downloads at run time. When a set is absent, :func:`image_set_path` says the exact command
that gets it. The registry keeps each set's licence and citation, for ``precimed datasets`` and the report.

The InVesalius example CT comes as an ``.inv3`` project (a gzipped tar holding a plist that gives the matrix's
shape, type and spacing, and the raw matrix); :func:`read_inv3` reads it, checking the plist's shape against the
size of the matrix member before a byte of it is read.
"""

from __future__ import annotations

import importlib.util
import math
import os
import plistlib
import tarfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from precimed.data.images import ImageVolume, _check_voxels, read_image, read_mask
from precimed.errors import ConfigError, DataError
from precimed.limits import MAX_INPUT_ENV, check_input_size, max_input_bytes

IMAGE_DATA_ENV = "PRECIMED_IMAGE_DATA"
DEFAULT_IMAGE_DATA = "~/.cache/precimed/images"
_REGISTRY_FILE = "image_sets.yaml"
_KEYS = ("name", "title", "modality", "cases", "licence", "citation", "source", "location", "get", "items")
_INV3_DTYPES = {"int16": "<i2", "uint16": "<u2", "int8": "i1", "uint8": "u1", "int32": "<i4", "float32": "<f4"}
_MAX_PLIST_BYTES = 1_000_000


@dataclass(frozen=True)
class ImageSetInfo:
    """What a built-in image set is, its licence and citation, where it is found and how to get it."""

    name: str
    title: str
    modality: str
    cases: int
    licence: str
    citation: str
    source: str
    get: str
    location: str = ""
    items: tuple[dict[str, str], ...] = field(default=(), hash=False, compare=False)


# ---------------------------------------------------------------------------------------------- registry


@cache
def _registry() -> dict[str, ImageSetInfo]:
    text = resources.files("precimed.data").joinpath(_REGISTRY_FILE).read_text(encoding="utf-8")
    out: dict[str, ImageSetInfo] = {}
    for entry in yaml.safe_load(text):
        keys = set(entry)
        if keys != set(_KEYS):
            raise ConfigError(f"{_REGISTRY_FILE}: entry {entry.get('name')!r} has keys {sorted(keys)}; "
                              f"expected exactly {sorted(_KEYS)}")
        out[entry["name"]] = ImageSetInfo(
            name=str(entry["name"]), title=str(entry["title"]), modality=str(entry["modality"]),
            cases=int(entry["cases"]), licence=str(entry["licence"]), citation=" ".join(str(entry["citation"]).split()),
            source=" ".join(str(entry["source"]).split()), get=str(entry["get"]), location=str(entry["location"]),
            items=tuple(dict(item) for item in entry["items"] or ()))
    return out


def list_image_sets() -> list[ImageSetInfo]:
    """Every built-in image set, in registry order."""
    return list(_registry().values())


def _info(name: str) -> ImageSetInfo:
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown image set {name!r}; known: {', '.join(registry)}")
    return registry[name]


def image_data_folder() -> Path:
    """The folder of fetched image data: ``PRECIMED_IMAGE_DATA`` when set, else ``~/.cache/precimed/images``."""
    return Path(os.environ.get(IMAGE_DATA_ENV, "").strip() or DEFAULT_IMAGE_DATA).expanduser()


def _location(info: ImageSetInfo) -> Path | None:
    """Where the set would be on this machine (None when its Python package is not installed)."""
    loc = info.location
    if loc.startswith("{image_data}"):
        return image_data_folder() / loc.removeprefix("{image_data}").lstrip("/")
    if loc.startswith("{package:"):
        package, _, rest = loc.removeprefix("{package:").partition("}")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / rest.lstrip("/")
    return Path(loc)


def image_set_available(name: str) -> bool:
    """True when the set's files are on this machine."""
    path = _location(_info(name))
    return path is not None and path.exists()


def image_set_path(name: str) -> Path:
    """The set's folder or file; a DataError naming the set and the command that gets it when absent."""
    info = _info(name)
    path = _location(info)
    if path is None or not path.exists():
        shown = str(path) if path is not None else info.location
        raise DataError(f"image set {name!r} is not on this machine (looked for {shown}); get it with: {info.get}")
    return path


# ------------------------------------------------------------------------------------------- pyradiomics


def pyradiomics_cases() -> list[dict[str, Any]]:
    """The 5 pyradiomics cases: ``{"case", "image", "mask", "modality", "site"}`` with absolute paths."""
    folder = image_set_path("pyradiomics")
    out = []
    for item in _info("pyradiomics").items:
        case = {"case": item["case"], "image": folder / f"{item['case']}_image.nrrd",
                "mask": folder / f"{item['case']}_label.nrrd", "modality": item["modality"], "site": item["site"]}
        for key in ("image", "mask"):
            if not case[key].is_file():
                raise DataError(f"image set 'pyradiomics': {case[key]} is missing; get it again with: "
                                f"{_info('pyradiomics').get}")
        out.append(case)
    return out


def load_case(case: dict[str, Any]) -> tuple[ImageVolume, np.ndarray]:
    """A case's image (with its modality from the registry) and its 0/1 mask of the same shape."""
    volume = read_image(case["image"])
    if volume.modality is None and case.get("modality"):
        volume.modality = str(case["modality"])
    return volume, read_mask(case["mask"], volume)


# ------------------------------------------------------------------------------------------------- .inv3


def read_inv3(path: str | Path) -> ImageVolume:
    """The CT matrix of an InVesalius ``.inv3`` project as a (z, y, x) volume in HU with its spacing."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    check_input_size(p)
    try:
        with tarfile.open(p, "r:*") as tar:
            members = _inv3_members(tar, p)
            plist = _inv3_plist(tar, members, p)
            return _inv3_matrix(tar, members, plist, p)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{p}: not a readable InVesalius .inv3 project ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]})") from None


def _inv3_members(tar: tarfile.TarFile, p: Path) -> dict[str, tarfile.TarInfo]:
    """Regular members by base name, their declared sizes bounded by the input limit."""
    limit, total, out = max_input_bytes(), 0, {}
    for member in tar:
        total += member.size
        if total > limit:
            raise DataError(f"{p}: unpacks to more than the input limit of {limit:,} bytes; "
                            f"raise {MAX_INPUT_ENV} if this machine has the memory")
        if member.isfile():
            out[Path(member.name).name] = member
    return out


def _inv3_plist(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], p: Path) -> dict[str, Any]:
    member = members.get("main.plist")
    if member is None or member.size > _MAX_PLIST_BYTES:
        raise DataError(f"{p}: no main.plist (under {_MAX_PLIST_BYTES:,} bytes) in the project; not an .inv3 file")
    handle = tar.extractfile(member)
    try:
        plist = plistlib.loads(handle.read() if handle else b"")
        matrix = plist["matrix"]
        shape = [int(s) for s in matrix["shape"]]
        spacing = [float(s) for s in plist["spacing"]]
        dtype = str(matrix["dtype"])
        filename = str(matrix["filename"])
    except (plistlib.InvalidFileException, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{p}: main.plist lacks the matrix shape, dtype, file or spacing ({exc!r:.80})") from None
    if len(shape) != 3 or min(shape) < 1 or len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise DataError(f"{p}: matrix shape {shape} / spacing {spacing}: expected 3 positive sizes and spacings")
    if dtype not in _INV3_DTYPES or "/" in filename or filename not in members:
        raise DataError(f"{p}: matrix dtype {dtype!r} / file {filename!r}: expected one of {sorted(_INV3_DTYPES)} "
                        "and a member of the project")
    return {"shape": shape, "spacing": spacing, "dtype": dtype, "filename": filename,
            "modality": str(plist.get("modality", "")) or None,
            "window_center": plist.get("window_level"), "window_width": plist.get("window_width")}


def _inv3_matrix(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], plist: dict[str, Any],
                 p: Path) -> ImageVolume:
    shape, dtype = plist["shape"], np.dtype(_INV3_DTYPES[plist["dtype"]])
    _check_voxels(shape, str(p))
    member = members[plist["filename"]]
    expected = math.prod(shape) * dtype.itemsize
    if member.size != expected:
        raise DataError(f"{p}: {plist['filename']} holds {member.size:,} bytes; the plist's shape {shape} of "
                        f"{plist['dtype']} needs {expected:,}")
    handle = tar.extractfile(member)
    data = handle.read(expected) if handle else b""
    if len(data) != expected:
        raise DataError(f"{p}: {plist['filename']} is truncated ({len(data):,} of {expected:,} bytes)")
    array = np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32)
    sx, sy, sz = plist["spacing"]  # the plist lists spacing as (x, y, z); the matrix is stored (z, y, x)
    meta: dict[str, Any] = {"format": "inv3", "spacing_known": True}
    for key in ("window_center", "window_width"):
        if isinstance(plist[key], int | float):
            meta[key] = float(plist[key])
    return ImageVolume(array, (sz, sy, sx), p.name, plist["modality"], meta)


__all__ = [
    "DEFAULT_IMAGE_DATA",
    "IMAGE_DATA_ENV",
    "ImageSetInfo",
    "image_data_folder",
    "image_set_available",
    "image_set_path",
    "list_image_sets",
    "load_case",
    "pyradiomics_cases",
    "read_inv3",
]
