"""A device's second traces for OSNR (``[devices.osnr]``): a reference and a signal-off trace.

The pipeline's ``reference`` and ``signal_off`` methods (:mod:`odpm.pipeline.reference`,
:mod:`odpm.pipeline.companions`) need, beside the live trace, a trace on the same axis
taken under other conditions:

* ``reference``: the same channels at high OSNR (commissioning, or back-to-back at the
  transmitter: EXFO US 9,112,604 / US 9,596,027) - each channel's signal shape;
* ``noise_trace``: the same span with the transmitters switched off and the ROADM
  passbands left configured (IEC TR 61282-12's integral method; AQ6370 DUAL TRACE) -
  the noise under each channel.

Each is named in the config as an archived reference trace of the device (``odpm
traces``, ``POST /api/v1/devices/{id}/references``) or, when the value ends in
``.csv``, as a trace file (the format ``odpm analyze`` reads).  It is loaded on the
device's first trace scan and again whenever the device's references change.

A companion taken on another axis is resampled onto the live one (linearly in mW, as
``odpm analyze`` does) when it covers it; one that does not cover it, or was taken at
another resolution (the shapes differ), is not used: the device's
:attr:`CompanionTraces.problem` says why in one line (logged once, and a health reason),
and the pipeline falls back to the methods that need no second trace.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from odpm.errors import UserError
from odpm.units import dbm_to_mw, mw_to_dbm

if TYPE_CHECKING:
    from odpm.config import OsnrTracesConfig
    from odpm.storage.traces import TraceArchive

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Resolutions differing by more than this fraction make a companion unusable: the
#: channels' shapes (reference) and the noise per point (signal-off) scale with the RBW.
RBW_TOLERANCE = 0.02
#: Frequency slack when checking that a companion covers the live axis, THz (1 MHz).
_COVER_SLACK_THZ = 1e-6


class CompanionError(Exception):
    """A companion trace that cannot be used, phrased as one line."""


@dataclass(frozen=True, slots=True)
class CompanionTrace:
    """A second trace as loaded: where from, its axis, levels and resolution (if known)."""

    kind: str  # "reference" or "noise_trace"
    source: str  # "reference 'name'" or "file path.csv"
    frequency_thz: FloatArray
    power_dbm: FloatArray
    rbw_ghz: float | None

    def on_axis(self, frequency_thz: FloatArray, rbw_ghz: float | None) -> npt.NDArray[np.float32]:
        """The levels on the live axis; CompanionError when they cannot be (``rbw_ghz``
        None: the live trace's resolution is not known, so it is not compared)."""
        if (
            rbw_ghz is not None
            and self.rbw_ghz is not None
            and abs(self.rbw_ghz / rbw_ghz - 1.0) > RBW_TOLERANCE
        ):
            raise CompanionError(
                f"{self.kind} ({self.source}) was taken at {self.rbw_ghz:g} GHz resolution, "
                f"the live trace at {rbw_ghz:g} GHz"
            )
        f = np.asarray(frequency_thz, dtype=np.float64)
        if f.shape == self.frequency_thz.shape and np.array_equal(f, self.frequency_thz):
            return self.power_dbm.astype(np.float32)
        lo, hi = float(self.frequency_thz[0]), float(self.frequency_thz[-1])
        if f.min() < lo - _COVER_SLACK_THZ or f.max() > hi + _COVER_SLACK_THZ:
            raise CompanionError(
                f"{self.kind} ({self.source}) covers {lo:.4f}-{hi:.4f} THz, the live trace "
                f"{f.min():.4f}-{f.max():.4f} THz: it must cover the live trace"
            )
        mw = np.interp(f, self.frequency_thz, dbm_to_mw(self.power_dbm))
        return np.asarray(mw_to_dbm(mw), dtype=np.float32)


def _finite_sorted(
    frequency_thz: npt.ArrayLike, power_dbm: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Points with a level (a stored trace keeps NaN below the floor), ascending."""
    f = np.asarray(frequency_thz, dtype=np.float64)
    p = np.asarray(power_dbm, dtype=np.float64)
    keep = np.isfinite(f) & np.isfinite(p)
    order = np.argsort(f[keep], kind="stable")
    return f[keep][order], p[keep][order]


def load_companion(
    kind: str, spec: str, device_id: str, archive: TraceArchive | None
) -> CompanionTrace:
    """Load ``spec`` (an archived reference name, or a ``.csv`` path); CompanionError
    names what is missing or wrong."""
    if spec.lower().endswith(".csv"):
        from odpm.tracefile import read_trace_file

        try:
            tf = read_trace_file(spec)
        except UserError as exc:
            raise CompanionError(f"{kind}: {exc}") from None
        f, p = _finite_sorted(tf.frequency_thz, tf.power_dbm)
        source, rbw = f"file {spec}", tf.rbw_hint_ghz
    else:
        if archive is None:
            raise CompanionError(
                f"{kind} '{spec}' is an archived reference, but this service has no archive "
                "(no journal)"
            )
        ref = archive.reference(device_id, spec)
        if ref is None:
            raise CompanionError(
                f"{kind}: device {device_id} has no reference trace '{spec}' "
                "(odpm traces / POST .../references to store one)"
            )
        f, p = _finite_sorted(ref.frequency_thz, ref.power_dbm)
        source, rbw = f"reference '{spec}'", float(ref.rbw_ghz)
    if f.size < 2:
        raise CompanionError(f"{kind} ({source}) has fewer than two points with a level")
    return CompanionTrace(kind, source, f, p, rbw)


class CompanionTraces:
    """One device's configured companions, loaded lazily and resampled per live axis.

    Thread-safe; the resampled levels are cached per axis, so a scan on an unchanged
    axis costs one comparison of the axis."""

    def __init__(self, device_id: str, config: OsnrTracesConfig) -> None:
        self.device_id = device_id
        self.config = config
        self._lock = threading.Lock()
        self._loaded: dict[str, CompanionTrace | None] | None = None
        self._problems: dict[str, str] = {}
        self._cache_key: tuple[bytes, float] | None = None
        self._cache: dict[str, npt.NDArray[np.float32] | None] = {}

    @property
    def configured(self) -> bool:
        return bool(self.config.reference or self.config.noise_trace)

    @property
    def problem(self) -> str | None:
        """Why a configured companion is not in use (None when all are)."""
        with self._lock:
            return "; ".join(self._problems.values()) or None

    def reload(self) -> None:
        """Forget what was loaded: the next scan loads again (references changed)."""
        with self._lock:
            self._loaded = None
            self._cache_key = None

    def _note(self, kind: str, problem: str | None) -> None:
        if problem is None:
            self._problems.pop(kind, None)
            return
        if self._problems.get(kind) != problem:
            log.warning("%s: %s: not used for OSNR", self.device_id, problem)
        self._problems[kind] = problem

    def for_axis(
        self, frequency_thz: FloatArray, rbw_ghz: float, archive: TraceArchive | None
    ) -> dict[str, npt.NDArray[np.float32] | None]:
        """``{"reference": levels | None, "noise_trace": levels | None}`` on this axis."""
        f = np.asarray(frequency_thz, dtype=np.float64)
        key = (f.tobytes(), float(rbw_ghz))
        with self._lock:
            if self._loaded is None:
                self._loaded = {}
                for kind in ("reference", "noise_trace"):
                    spec = getattr(self.config, kind)
                    if not spec:
                        self._loaded[kind] = None
                        self._problems.pop(kind, None)
                        continue
                    try:
                        self._loaded[kind] = load_companion(kind, spec, self.device_id, archive)
                        self._note(kind, None)
                    except CompanionError as exc:
                        self._loaded[kind] = None
                        self._note(kind, str(exc))
                self._cache_key = None
            if self._cache_key != key:
                self._cache = {}
                for kind, trace in self._loaded.items():
                    if trace is None:
                        self._cache[kind] = None
                        continue
                    try:
                        self._cache[kind] = trace.on_axis(f, rbw_ghz)
                        self._note(kind, None)
                    except CompanionError as exc:
                        self._cache[kind] = None
                        self._note(kind, str(exc))
                self._cache_key = key
            return dict(self._cache)
