"""Readers that turn raw data into one in-memory form, `RawData`, and check it.

Three sources share the contract of docs/design.md §4: the embedded simulator's
`raw_dir/synthetic.npz`, an external `.npz` of the same layout, and the CAMELS CMD 2D maps.
All maps are *mass per pixel* in Msun/h and must be square (H == W): the metrics measure
spectra over a square box of side `box_size`, so a non-square map is rejected at read time.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_BOX_SIZE = 6.25  # Mpc/h, the simulator's cutout side (docs/design.md §3)
DEFAULT_TARGET_NAMES = ("dm_hydro", "gas", "stars")
EXTRA_KEYS = ("halo_mass", "r200", "truth_realizations")
# Extras that are masses or lengths, so that a negative value is an error.
_NON_NEGATIVE_EXTRAS = ("halo_mass", "r200", "truth_realizations")

CAMELS_BOX_SIZE = 25.0  # Mpc/h, side of every CAMELS CMD map
CAMELS_MAPS_PER_SIM = 15
CAMELS_PARAM_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")
CAMELS_TARGET_FIELDS = ("Mcdm", "Mgas", "Mstar")


class DataError(ValueError):
    """Invalid input data; the message is one line naming the file, the key and the index."""


@dataclass
class RawData:
    """Maps in physical units (mass per pixel, Msun/h), as read from one source.

    `condition` (N, Cc, H, W), `target` (N, Ct, H, W), `params` (N, P) with P possibly 0,
    `group` (N,) int: maps sharing a group never straddle splits. `origin` is the file or
    directory the data came from, used in error messages. `extras` holds the optional
    per-map arrays `halo_mass` (N,), `r200` (N,) in Mpc/h and `truth_realizations`
    (N, R, Ct, H, W) in the target's units.
    """

    condition: np.ndarray
    target: np.ndarray
    params: np.ndarray
    param_names: list[str]
    channel_names: list[str]
    group: np.ndarray
    box_size: float
    origin: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    condition_names: list[str] = field(default_factory=list)

    @property
    def n_maps(self) -> int:
        return int(self.condition.shape[0])

    def subset(self, index: np.ndarray) -> RawData:
        """The maps at `index` (a copy), with the same names, box and origin."""
        return RawData(
            condition=self.condition[index],
            target=self.target[index],
            params=self.params[index],
            param_names=list(self.param_names),
            channel_names=list(self.channel_names),
            group=self.group[index],
            box_size=self.box_size,
            origin=self.origin,
            extras={k: v[index] for k, v in self.extras.items()},
            condition_names=list(self.condition_names),
        )


# ---------------------------------------------------------------------------- external .npz


def read_npz(path: str | Path) -> RawData:
    """Read and validate one external `.npz` (docs/design.md §4); keys other than those known are
    ignored. Missing optional keys get defaults: no params, one group per map, box 6.25."""
    path = Path(path)
    origin = str(path)
    arrays = _load_npz_arrays(path)
    for key in ("condition", "target"):
        if key not in arrays:
            raise DataError(f"{origin}: key {key!r} missing (required keys: condition, target)")
    condition = _as_float(arrays["condition"], origin, "condition")
    target = _as_float(arrays["target"], origin, "target")
    _check_rank(condition, 4, origin, "condition", "(N, C, H, W)")
    _check_rank(target, 4, origin, "target", "(N, C, H, W)")
    n = condition.shape[0]

    if "params" in arrays:
        params = _as_float(arrays["params"], origin, "params")
        if params.ndim == 1:  # one scalar parameter per map, written as (N,)
            params = params[:, None]
        _check_rank(params, 2, origin, "params", "(N, P)")
    else:
        params = np.zeros((n, 0), dtype=np.float64)
    group = arrays.get("group", np.arange(n))
    extras = {k: _as_float(arrays[k], origin, k) for k in EXTRA_KEYS if k in arrays}

    n_target = target.shape[1]
    default_targets = (
        DEFAULT_TARGET_NAMES
        if n_target == len(DEFAULT_TARGET_NAMES)
        else [f"target_{i}" for i in range(n_target)]
    )
    raw = RawData(
        condition=condition,
        target=target,
        params=params,
        param_names=_names(arrays, "param_names", [f"param_{i}" for i in range(params.shape[1])]),
        channel_names=_names(arrays, "channel_names", list(default_targets)),
        group=np.asarray(group),
        box_size=_box_size(arrays, origin),
        origin=origin,
        extras=extras,
        condition_names=_names(arrays, "condition_names", _default_condition_names(condition)),
    )
    validate(raw)
    return raw


def _load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        # numpy reports a non-archive as "pickled data"; say plainly what is wrong instead.
        raise DataError(
            f"{path}: not a readable .npz file (expected a NumPy .npz archive)"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy under an .npz name
        raise DataError(f"{path}: not a readable .npz file (a single array, not an archive)")
    with npz:
        return {key: _read_key(npz, key, path) for key in npz.files}


def _read_key(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError:  # object arrays need pickle, which we never allow
        raise DataError(
            f"{path}: key {key!r}: holds Python objects (pickle); store numbers or strings"
        ) from None


def _as_float(a: np.ndarray, origin: str, key: str) -> np.ndarray:
    """Integer arrays become float64; float arrays keep their precision."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return a
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    raise DataError(f"{origin}: key {key!r}: expected numbers, got dtype {a.dtype}")


def _check_rank(a: np.ndarray, ndim: int, origin: str, key: str, shape: str) -> None:
    if a.ndim != ndim:
        raise DataError(
            f"{origin}: key {key!r}: wrong rank, expected {ndim}-D {shape}, got shape {a.shape}"
        )


def _names(arrays: dict[str, np.ndarray], key: str, default: list[str]) -> list[str]:
    if key not in arrays:
        return default
    return [str(s) for s in np.atleast_1d(arrays[key]).tolist()]


def _default_condition_names(condition: np.ndarray) -> list[str]:
    return ["dmo"] + [f"context_{i}" for i in range(1, condition.shape[1])]


def _box_size(arrays: dict[str, np.ndarray], origin: str) -> float:
    if "box_size" not in arrays:
        return DEFAULT_BOX_SIZE
    box = np.asarray(arrays["box_size"])
    if box.size != 1 or box.dtype.kind not in "iuf":
        raise DataError(f"{origin}: key 'box_size': expected one number, got shape {box.shape}")
    return float(box.reshape(()))


# ------------------------------------------------------------------------------- validation


def validate(raw: RawData) -> None:
    """Raise `DataError` at the first problem: wrong rank, mismatched N or map shape, names of
    the wrong length, NaN/inf, negative mass, a bad box size or non-integer groups."""
    o = raw.origin
    _check_rank(raw.condition, 4, o, "condition", "(N, C, H, W)")
    _check_rank(raw.target, 4, o, "target", "(N, C, H, W)")
    _check_rank(raw.params, 2, o, "params", "(N, P)")
    _check_rank(raw.group, 1, o, "group", "(N,)")
    n = raw.condition.shape[0]
    if n == 0:
        raise DataError(f"{o}: key 'condition': no maps (N = 0)")
    _check_lengths(raw, n)
    _check_map_shapes(raw)
    _check_names(raw)
    if raw.group.dtype.kind not in "iu":
        raise DataError(f"{o}: key 'group': expected integers, got dtype {raw.group.dtype}")
    if not (np.isfinite(raw.box_size) and raw.box_size > 0):
        raise DataError(f"{o}: key 'box_size': must be a positive number, got {raw.box_size}")
    for key, a in _numeric_arrays(raw):
        _check_finite(a, o, key)
        if key != "params":  # parameters may be negative (e.g. logs); masses may not
            _check_non_negative(a, o, key)


def _numeric_arrays(raw: RawData) -> list[tuple[str, np.ndarray]]:
    pairs = [("condition", raw.condition), ("target", raw.target), ("params", raw.params)]
    return pairs + [(k, raw.extras[k]) for k in _NON_NEGATIVE_EXTRAS if k in raw.extras]


def _check_lengths(raw: RawData, n: int) -> None:
    """Every per-map array has N rows; the message names the first index one lacks or adds."""
    arrays = {"target": raw.target, "params": raw.params, "group": raw.group, **raw.extras}
    for key, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != n:
            rows = 0 if a.ndim == 0 else a.shape[0]
            raise DataError(
                f"{raw.origin}: key {key!r} index {min(rows, n)}: mismatched N "
                f"({key!r} has {rows} rows, 'condition' has {n})"
            )


def _check_map_shapes(raw: RawData) -> None:
    o = raw.origin
    h, w = raw.condition.shape[-2:]
    if h != w:
        raise DataError(f"{o}: key 'condition' index 0: maps must be square, got {h}x{w}")
    if raw.target.shape[-2:] != (h, w):
        th, tw = raw.target.shape[-2:]
        raise DataError(
            f"{o}: key 'target' index 0: map shape {th}x{tw} differs from 'condition' {h}x{w}"
        )
    for key, ndim in (("halo_mass", 1), ("r200", 1), ("truth_realizations", 5)):
        if key in raw.extras and raw.extras[key].ndim != ndim:
            shape = raw.extras[key].shape
            raise DataError(f"{o}: key {key!r}: wrong rank, expected {ndim}-D, got shape {shape}")
    if "truth_realizations" in raw.extras:
        shape = raw.extras["truth_realizations"].shape
        if shape[2:] != raw.target.shape[1:]:
            raise DataError(
                f"{o}: key 'truth_realizations' index 0: realisation shape {shape[2:]} "
                f"differs from 'target' {raw.target.shape[1:]}"
            )


def _check_names(raw: RawData) -> None:
    lengths = (
        ("channel_names", raw.channel_names, raw.target.shape[1], "target channels"),
        ("condition_names", raw.condition_names, raw.condition.shape[1], "condition channels"),
        ("param_names", raw.param_names, raw.params.shape[1], "params columns"),
    )
    for key, names, expected, what in lengths:
        if len(names) != expected:
            raise DataError(f"{raw.origin}: key {key!r}: {len(names)} names for {expected} {what}")


def _row_axes(a: np.ndarray) -> tuple[int, ...]:
    """Every axis but the first, so that `.all(axis=...)` gives one flag per map."""
    return tuple(range(1, a.ndim))


def _check_finite(a: np.ndarray, origin: str, key: str) -> None:
    ok = np.isfinite(a).all(axis=_row_axes(a))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        kind = "NaN" if np.isnan(a[i]).any() else "inf"
        raise DataError(f"{origin}: key {key!r} index {i}: {kind}")


def _check_non_negative(a: np.ndarray, origin: str, key: str) -> None:
    ok = (a >= 0).all(axis=_row_axes(a))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{origin}: key {key!r} index {i}: negative mass (min {a[i].min():g})")


# ------------------------------------------------------------------------------ CAMELS CMD


def camels_map_path(directory: str | Path, field_name: str, suite: str, set_name: str) -> Path:
    """`Maps_{field}_{suite}_{set}_z=0.00.npy`, the CAMELS CMD naming of 2D maps."""
    return Path(directory) / f"Maps_{field_name}_{suite}_{set_name}_z=0.00.npy"


def camels_params_path(directory: str | Path, suite: str, set_name: str) -> Path:
    return Path(directory) / f"params_{set_name}_{suite}.txt"


def read_camels_cmd(directory: str | Path, suite: str, set_name: str, crop: int) -> RawData:
    """CAMELS Multifield Dataset 2D maps as condition/target pairs.

    Condition: `Mtot` of the N-body twin, which CAMELS names `Nbody_{suite}`. Targets: `Mcdm`,
    `Mgas`, `Mstar` of the hydro `suite`. Each map (15 per simulation, side 25 Mpc/h) is cut
    into non-overlapping `crop`×`crop` tiles (a remainder narrower than `crop` is dropped);
    the tiles of one simulation share its group, so a simulation never straddles splits.
    All six parameters of `params_{set}_{suite}.txt` are kept.

    Units: CAMELS stores surface densities Σ in (Msun/h)/(Mpc/h)²; they are multiplied by the
    pixel area (25/H Mpc/h)² to give mass per pixel in Msun/h, the unit of every source.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: CAMELS CMD directory not found")
    files = [camels_map_path(directory, "Mtot", f"Nbody_{suite}", set_name)]
    files += [camels_map_path(directory, f, suite, set_name) for f in CAMELS_TARGET_FIELDS]
    params_file = camels_params_path(directory, suite, set_name)
    for path in [*files, params_file]:
        if not path.is_file():
            raise DataError(f"{path}: file not found")

    maps = [_load_camels_maps(path) for path in files]
    n_maps, side = maps[0].shape[0], maps[0].shape[1]
    for path, m in zip(files[1:], maps[1:], strict=True):
        if m.shape != maps[0].shape:
            raise DataError(
                f"{path}: key 'maps' index 0: shape {m.shape} differs from {files[0].name} "
                f"{maps[0].shape}"
            )
    params = _load_camels_params(params_file, n_maps, files[0])
    if crop > side:
        raise DataError(f"{files[0]}: crop {crop} is larger than the {side}x{side} maps")

    pixel_side = CAMELS_BOX_SIZE / side
    pixel_area = pixel_side**2
    condition = _tiles(maps[0], crop)[:, None] * pixel_area
    target = np.stack([_tiles(m, crop) for m in maps[1:]], axis=1) * pixel_area
    tiles_per_map = (side // crop) ** 2
    sim_of_map = np.arange(n_maps) // CAMELS_MAPS_PER_SIM
    names = list(CAMELS_PARAM_NAMES)
    if params.shape[1] != len(names):
        names = [f"param_{i}" for i in range(params.shape[1])]
    raw = RawData(
        condition=condition,
        target=target,
        params=np.repeat(params[sim_of_map], tiles_per_map, axis=0),
        param_names=names,
        channel_names=list(DEFAULT_TARGET_NAMES),
        group=np.repeat(sim_of_map, tiles_per_map),
        box_size=pixel_side * crop,
        origin=str(directory),
        condition_names=["dmo"],
    )
    validate(raw)
    return raw


def _load_camels_maps(path: Path) -> np.ndarray:
    # Memory-mapped: a full CAMELS LH field is 15000 maps of 256² (about 4 GB).
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    if maps.ndim != 3:
        raise DataError(f"{path}: key 'maps': wrong rank, expected 3-D (N, H, W), got {maps.shape}")
    if maps.shape[1] != maps.shape[2]:
        raise DataError(f"{path}: key 'maps' index 0: maps must be square, got {maps.shape[1:]}")
    return maps


def _load_camels_params(path: Path, n_maps: int, maps_file: Path) -> np.ndarray:
    try:
        params = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: not a table of numbers ({err})") from None
    n_sims = params.shape[0]
    if n_maps != n_sims * CAMELS_MAPS_PER_SIM:
        raise DataError(
            f"{maps_file}: key 'maps' index {min(n_maps, n_sims * CAMELS_MAPS_PER_SIM)}: "
            f"mismatched N ({n_maps} maps, but {path.name} has {n_sims} simulations "
            f"x {CAMELS_MAPS_PER_SIM} maps)"
        )
    return params


def _tiles(maps: np.ndarray, crop: int) -> np.ndarray:
    """(M, S, S) → (M·k², crop, crop) with k = S // crop; tiles of a map stay consecutive,
    in row-major order of their position."""
    m, side = maps.shape[0], maps.shape[1]
    k = side // crop
    used = np.asarray(maps[:, : k * crop, : k * crop])  # reads the mapped file, keeps dtype
    tiles = used.reshape(m, k, crop, k, crop).transpose(0, 1, 3, 2, 4)
    return tiles.reshape(m * k * k, crop, crop)


# -------------------------------------------------------------------------------- dispatch


def load_source(
    source: str, path: str | Path, *, camels_suite: str, camels_set: str, crop: int
) -> RawData:
    """Read `path` as `source` (`data.source`): the simulator's npz, an external npz or a
    CAMELS CMD directory (cropped to `crop`² cutouts)."""
    if source == "synthetic":
        if not Path(path).is_file():
            raise DataError(f"{path}: file not found (run `halocm generate` first)")
        return read_npz(path)
    if source == "npz":
        return read_npz(path)
    if source == "camels_cmd":
        return read_camels_cmd(path, camels_suite, camels_set, crop)
    raise DataError(f"data.source={source!r}: allowed: 'synthetic', 'npz', 'camels_cmd'")
