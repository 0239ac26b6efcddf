"""Header-only reads of uvh5 files with h5py: never touches the visibility datasets.

Opened read-only; any problem becomes an :class:`IngestError` with a message a person can act on.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import h5py
import numpy as np

from ..errors import IngestError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class Header:
    nants_data: int
    nants_telescope: int
    ntimes: int
    nfreqs: int
    npols: int
    freq_start_hz: float
    freq_end_hz: float
    channel_width_hz: float
    integration_s: float
    start_mjd: float
    end_mjd: float
    field: str
    ra_deg: float | None
    dec_deg: float | None
    telescope: str
    polarizations: list[int]
    antenna_names: list[str] = field(default_factory=list)
    phase_type: str = "sidereal"
    # every phase centre the data use (``phase_center_id_array``), in order of first use; ``field``
    # is the first. More than one: the file holds several fields (see ``several_centres``).
    phase_centres: list[dict] = field(default_factory=list)

    def several_centres(self) -> str | None:
        """One line naming the centres when the data use more than one, else None."""
        if len(self.phase_centres) < 2:
            return None
        return f"data use {len(self.phase_centres)} phase centres (" + ", ".join(
            _describe(c) for c in self.phase_centres) + "): one field per file is supported; " \
            "cut it per centre (pyuvdata select(phase_center_ids=...))"

    def as_dict(self) -> dict:
        return asdict(self)


def _str(v) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _str(v[()])
    return str(v)


def _ds(h: h5py.Group, name: str):
    """Dataset ``name`` of ``h`` read whole (KeyError if absent) through h5py's low-level API: about
    60 % of the cost of ``h[name][()]``, and ~20 such reads make up a header-only index."""
    d = h5py.h5d.open(h.id, name.encode())
    dt = d.dtype
    if dt.kind == "O":  # variable-length strings and the like: the high-level path knows them
        return h[name][()]
    arr = np.empty(d.shape, dtype=dt)
    d.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
    return arr[()] if arr.shape == () else arr


def _scalar(h: h5py.Group, name: str, default=None):
    try:
        v = _ds(h, name)
    except KeyError:
        if default is not None:
            return default
        raise IngestError(f"uvh5 header lacks {name!r}") from None
    return v.item() if isinstance(v, np.ndarray) and v.size == 1 else v


def _opt(h: h5py.Group, name: str, default):
    try:
        return _ds(h, name)
    except KeyError:
        return default


def read_header(path: str | os.PathLike) -> Header:
    """Read what the catalogue needs from a uvh5 header."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise IngestError(f"cannot stat: {err.strerror}") from None
    if size == 0:
        raise IngestError("empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError as err:
        raise IngestError(f"cannot read: {err.strerror}") from None
    if magic != HDF5_SIGNATURE:
        raise IngestError("not an HDF5 file (bad signature)")
    try:
        with h5py.File(path, "r") as f:
            try:
                h = f["Header"]
            except KeyError:
                raise IngestError("HDF5 file without a uvh5 'Header' group (not uvh5)") from None
            try:
                vis = f["Data/visdata"]
            except KeyError:
                raise IngestError("uvh5 file without Data/visdata") from None
            nblts = int(_scalar(h, "Nblts"))
            nfreqs = int(_scalar(h, "Nfreqs"))
            npols = int(_scalar(h, "Npols"))
            if vis.shape[0] != nblts or vis.shape[-1] != npols:
                raise IngestError(f"visdata shape {vis.shape} disagrees with header (Nblts={nblts}, Npols={npols})")
            _check_not_truncated(f, vis, size)
            freqs = np.asarray(_ds(h, "freq_array"), dtype=float).ravel()
            if freqs.size != nfreqs:
                raise IngestError(f"freq_array has {freqs.size} channels, Nfreqs says {nfreqs}")
            cw = np.asarray(_ds(h, "channel_width"), dtype=float).ravel()
            times = _ds(h, "time_array")
            itime = float(np.asarray(_ds(h, "integration_time")).ravel()[0])
            names = [_str(n) for n in _opt(h, "antenna_names", [])]
            centres = _phase_centres(h, nblts)
            first = centres[0]
            field_name, ra, dec, ptype = first["name"], first["ra_deg"], first["dec_deg"], first["type"]
            return Header(
                nants_data=int(_scalar(h, "Nants_data")),
                nants_telescope=int(_scalar(h, "Nants_telescope", len(names) or 0)),
                ntimes=int(_scalar(h, "Ntimes")),
                nfreqs=nfreqs,
                npols=npols,
                freq_start_hz=float(freqs.min()),
                freq_end_hz=float(freqs.max()),
                channel_width_hz=float(abs(cw[0])),
                integration_s=itime,
                start_mjd=float(times.min()) - 2400000.5,
                end_mjd=float(times.max()) - 2400000.5,
                field=field_name,
                ra_deg=ra,
                dec_deg=dec,
                telescope=_str(_scalar(h, "telescope_name", b"unknown")),
                polarizations=[int(p) for p in np.asarray(_ds(h, "polarization_array")).ravel()],
                antenna_names=names,
                phase_type=ptype,
                phase_centres=centres,
            )
    except IngestError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "truncated" in msg or "eof" in msg.lower():
            raise IngestError(f"truncated HDF5 file: {msg}") from None
        raise IngestError(f"unreadable uvh5 header: {msg}") from None


def _check_not_truncated(f: h5py.File, vis: h5py.Dataset, size: int) -> None:
    """A file whose visdata would end past the end of the file is truncated (or still being written)."""
    try:
        offset = vis.id.get_offset()
        nbytes = vis.id.get_storage_size()
    except Exception:  # chunked/compressed: h5py checks EOF on open
        return
    if offset is not None and nbytes and offset + nbytes > size:
        raise IngestError(f"truncated file: visibility data ends at byte {offset + nbytes}, file has {size}")


def _describe(c: dict) -> str:
    if c["ra_deg"] is None or c["dec_deg"] is None:
        return f"{c['name']} (id {c['id']}, {c['type']})"
    return f"{c['name']} (id {c['id']}, {c['ra_deg']:.5f} {c['dec_deg']:+.5f})"


def _same_source(a: dict, b: dict, tol_deg: float = 1.0 / 3600) -> bool:
    if a["name"] != b["name"] or a["type"] != b["type"]:
        return False
    if None in (a["ra_deg"], a["dec_deg"], b["ra_deg"], b["dec_deg"]):
        return a["ra_deg"] == b["ra_deg"] and a["dec_deg"] == b["dec_deg"]
    dra = (a["ra_deg"] - b["ra_deg"] + 180.0) % 360.0 - 180.0
    return abs(a["dec_deg"] - b["dec_deg"]) < tol_deg and abs(dra * math.cos(math.radians(a["dec_deg"]))) < tol_deg


def _catalogue_entry(cat: h5py.Group, key: str) -> dict:
    c = cat[key]
    name = _str(_opt(c, "cat_name", b"unknown"))
    ctype = _str(_opt(c, "cat_type", b"sidereal"))
    ra = dec = None
    if ctype != "unprojected":
        lon = _opt(c, "cat_lon", None)
        lat = _opt(c, "cat_lat", None)
        ra = math.degrees(float(lon)) % 360.0 if lon is not None else None
        dec = math.degrees(float(lat)) if lat is not None else None
    return {"id": int(key) if key.lstrip("-").isdigit() else key, "name": name, "ra_deg": ra, "dec_deg": dec,
            "type": ctype}


def _phase_centres(h: h5py.Group, nblts: int) -> list[dict]:
    """The phase-centre catalogue entries the data use, in order of first use.

    pyuvdata's ``select()`` keeps every catalogue entry, so a per-scan file cut from a multi-source
    observation lists all the sources; ``phase_center_id_array`` (one small int per baseline-time)
    says which ones its data use. Without a catalogue: the old single-centre header keywords.
    """
    cat = h.get("phase_center_catalog")
    if cat is not None and len(cat.keys()):
        keys = {int(k) if k.lstrip("-").isdigit() else k: k for k in cat.keys()}
        try:
            ids = np.asarray(_ds(h, "phase_center_id_array")).ravel()
        except KeyError:
            ids = None
        if ids is None:
            if len(keys) > 1:
                raise IngestError(f"phase_center_catalog has {len(keys)} entries but the header has no "
                                  "phase_center_id_array to say which the data use")
            used = list(keys)
        else:
            if ids.size != nblts:
                raise IngestError(f"phase_center_id_array has {ids.size} entries, Nblts says {nblts}")
            uniq, first = np.unique(ids, return_index=True)
            used = [int(u) for u in uniq[np.argsort(first)]] or sorted(keys, key=str)[:1]
            unknown = [u for u in used if u not in keys]
            if unknown:
                raise IngestError(f"phase_center_id_array uses id(s) {unknown} that phase_center_catalog "
                                  f"lacks (it has {sorted(keys, key=str)})")
        out: list[dict] = []
        for u in used:  # entries repeating one source (same name and position) are one field
            c = _catalogue_entry(cat, keys[u])
            if not any(_same_source(c, o) for o in out):
                out.append(c)
        return out
    name = _str(h["object_name"][()]) if "object_name" in h else "unknown"
    if "phase_center_ra" in h and "phase_center_dec" in h:
        return [{"id": 0, "name": name, "ra_deg": math.degrees(float(h["phase_center_ra"][()])) % 360.0,
                 "dec_deg": math.degrees(float(h["phase_center_dec"][()])), "type": "sidereal"}]
    return [{"id": 0, "name": name, "ra_deg": None, "dec_deg": None, "type": "unprojected"}]
