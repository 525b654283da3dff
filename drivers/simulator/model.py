"""Physics model of what an ODPM-96 sees at its input: 80 DWDM channels plus EDFA ASE.

The model (all powers at the monitor input unless said otherwise)
=================================================================

Line system.  Channels sit on the ITU-T G.694.1 50 GHz plan (80 channels,
192.10-196.05 THz).  Channel ``c`` has an amplifier input power
``P_in,c`` (mW), a symbol rate ``R_s,c`` (GBd), a raised-cosine spectrum of
roll-off ``beta`` and a carrier offset ``df_c`` (GHz) from its nominal centre;
a dark channel has no signal.

Amplifier.  One EDFA of gain ``G(f)`` and noise figure ``NF``.  Its gain
profile in dB is ``G_dB + tilt * (f - f_mid) / span + ripple/2 * sin(2 pi (f - f0) / period)``
(tilt and ripple in dB across the channel plan).  The ASE it adds, in both
polarisations, has the power spectral density (Desurvire, *Erbium-Doped Fiber
Amplifiers*, 1994; NF ~ 2 n_sp at high gain)::

    S_ASE(f) = 2 n_sp h f (G(f) - 1) = NF h f (G(f) - 1)        [W/Hz]

so a channel's OSNR referred to ``B_ref`` = 12.5 GHz (0.1 nm at 1550 nm) is::

    OSNR_c = G(f_c) P_in,c / (S_ASE(f_c) B_ref)
           ~ 58 + P_in,c[dBm] - NF[dB]   (10 log10(h f B_ref / 1 mW) = -57.96 dBm)

A tap of ``tap_loss_db`` attenuates signal and ASE alike on the way to the
monitor, so the OSNR at the monitor is the OSNR at the amplifier output.
:meth:`OpticalModel.truth_osnr_db` evaluates exactly this formula: it is the
ground truth the OSNR pipeline (IEC 61280-2-9 interpolation) is judged against.

Monitor.  The spectrum is laid on a fine grid (0.3125 GHz).

* Ports: each of the 96 AWG ports has a Gaussian passband of ``port_fwhm_ghz``
  (30 GHz at -3 dB) plus a wide, weak pedestal (phase errors of the AWG
  scatter light into neighbouring ports) sized so the adjacent port, 50 GHz
  away, sees about ``-30 dB``.  A port's power is the spectrum integrated
  through its passband.  The AWG shifts with chip temperature
  (``awg_tempco_ghz_per_c``), which the TEC normally holds to a few mK.
* Trace: each point is the spectrum integrated through a Gaussian filter whose
  noise-equivalent bandwidth is ``rbw_ghz`` (6.25 GHz; ``SIM:RBW`` sets it), so a flat ASE density
  ``S`` reads ``S * rbw``.
* Detection: ports below the photodiode floor (-60 dBm) read as "below floor";
  every reading has a multiplicative noise (``reading_noise_db``) and an
  additive detector noise; averaging N readings divides both by sqrt(N).

Both passbands are applied as one FFT convolution of the fine spectrum, cached
until the scenario changes, so a scan costs a few random numbers and a copy.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import numpy.typing as npt

from odpm.grid import (
    ODPM96_FIRST_PORT_THZ,
    ODPM96_PORT_COUNT,
    ODPM96_PORT_SPACING_GHZ,
    ChannelPlan,
    PortGrid,
)
from odpm.units import db_to_linear, linear_to_db

FloatArray = npt.NDArray[np.float64]

#: Planck constant (exact, SI 2019), J s.
PLANCK_J_S = 6.62607015e-34
#: OSNR reference bandwidth: 0.1 nm at 1550 nm, conventionally 12.5 GHz (IEC 61280-2-9).
OSNR_REFERENCE_BANDWIDTH_GHZ = 12.5

#: Trace axis of the simulated device (``TRAC:STAR?``/``STEP?``/``POIN?``/``RBW?``).
TRACE_START_THZ = 191.250
TRACE_STEP_GHZ = 1.25
TRACE_POINTS = 3881
TRACE_RBW_GHZ = 6.25

#: Fine grid on which the spectrum is built: 4 points per trace step, with
#: margins wide enough that the circular FFT convolution never wraps into the band.
FINE_STEP_GHZ = TRACE_STEP_GHZ / 4
FINE_START_THZ = 190.900
FINE_POINTS = 17920

#: Highest symbol rate a channel may have (coherent transceivers reach ~130 GBd).
MAX_SYMBOL_RATE_GBD = 130.0

#: Ports read below this as "below floor" (-99.99 on the wire).
PORT_FLOOR_DBM = -60.0

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: Resolution bandwidths the simulated trace may have (GHz): at least two trace steps,
#: at most a quarter of a 100 GHz slot.
RBW_MIN_GHZ = 2.5
RBW_MAX_GHZ = 25.0


def _checked_rbw_ghz(rbw_ghz: float) -> float:
    if not RBW_MIN_GHZ <= rbw_ghz <= RBW_MAX_GHZ:
        raise ValueError(f"RBW must be in {RBW_MIN_GHZ:g}..{RBW_MAX_GHZ:g} GHz, got {rbw_ghz}")
    return float(rbw_ghz)


def ase_psd_mw_per_ghz(
    frequency_thz: npt.ArrayLike, gain_db: npt.ArrayLike, nf_db: float
) -> FloatArray:
    """EDFA output ASE density, both polarisations: ``NF h f (G - 1)``, in mW/GHz."""
    f_hz = np.asarray(frequency_thz, dtype=np.float64) * 1e12
    g = db_to_linear(gain_db)
    w_per_hz = db_to_linear(nf_db) * PLANCK_J_S * f_hz * (g - 1.0)
    return np.asarray(w_per_hz * 1e3 * 1e9)


def raised_cosine_psd(
    delta_ghz: FloatArray, symbol_rate_gbd: FloatArray, rolloff: float
) -> FloatArray:
    """Shape of a raised-cosine spectrum (peak 1): flat to (1-b)Rs/2, cosine taper to (1+b)Rs/2."""
    a = np.abs(delta_ghz)
    rs = symbol_rate_gbd
    f1 = (1.0 - rolloff) * rs / 2.0
    f2 = (1.0 + rolloff) * rs / 2.0
    taper = 0.5 * (1.0 + np.cos(np.pi * (a - f1) / np.maximum(f2 - f1, 1e-12)))
    return np.where(a <= f1, 1.0, np.where(a <= f2, taper, 0.0))


class OpticalModel:
    """The optical scenario and what the monitor reads from it.

    Thread-safe: the simulator serves several connections from one model.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        plan: ChannelPlan | None = None,
        ports: PortGrid | None = None,
        channel_power_dbm: float = -20.0,
        power_spread_db: float = 0.5,
        gain_db: float = 20.0,
        nf_db: float = 5.5,
        tap_loss_db: float = 20.0,
        tilt_db: float = 0.0,
        ripple_db: float = 0.3,
        ripple_period_ghz: float = 800.0,
        rolloff: float = 0.1,
        port_fwhm_ghz: float = 30.0,
        adjacent_crosstalk_db: float = -30.0,
        awg_tempco_ghz_per_c: float = -1.4,
        reading_noise_db: float = 0.02,
        detector_noise_dbm: float = -75.0,
        rbw_ghz: float = TRACE_RBW_GHZ,
    ) -> None:
        self._lock = threading.RLock()
        #: Noise-equivalent bandwidth of the trace's resolution filter (``SIM:RBW``).
        self.rbw_ghz = _checked_rbw_ghz(rbw_ghz)
        self.rng = np.random.default_rng(seed)
        self.plan = plan or ChannelPlan.c_band_50ghz()
        self.ports = ports or PortGrid(
            ODPM96_FIRST_PORT_THZ, ODPM96_PORT_SPACING_GHZ, ODPM96_PORT_COUNT
        )
        n = self.plan.count
        self.channel_thz = self.plan.frequencies_thz
        self.gain_db = gain_db
        self.nf_db = nf_db
        self.tap_loss_db = tap_loss_db
        self.tilt_db = tilt_db
        self.ripple_db = ripple_db
        self.ripple_period_ghz = ripple_period_ghz
        self.rolloff = rolloff
        self.port_fwhm_ghz = port_fwhm_ghz
        self.adjacent_crosstalk_db = adjacent_crosstalk_db
        self.awg_tempco_ghz_per_c = awg_tempco_ghz_per_c
        self.reading_noise_db = reading_noise_db
        self.detector_noise_dbm = detector_noise_dbm
        self.lit = np.ones(n, dtype=bool)
        #: All signals switched off for a signal-off trace (see set_signals_off).
        self.signals_off = False
        self.offset_ghz = self.rng.uniform(-1.0, 1.0, n)
        # Mostly 10 GBd (resolvable on 50 GHz), a quarter 28 GBd (spectra reach the midpoints).
        self.symbol_rate_gbd = self.rng.choice(np.array([10.0, 28.0]), n, p=[0.75, 0.25])
        self.fine_thz = FINE_START_THZ + np.arange(FINE_POINTS) * (FINE_STEP_GHZ / 1000.0)
        target = channel_power_dbm + self.rng.uniform(-power_spread_db, power_spread_db, n)
        self.input_power_dbm = target - self._gain_profile_db(self.carrier_thz()) + tap_loss_db
        self._version = 0
        self._cache_version = -1
        self._port_conv = np.zeros(FINE_POINTS)
        self._trace_mw = np.zeros(TRACE_POINTS)
        self._kernels = self._make_kernels()

    # -- scenario -------------------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1

    def _channel_index(self, channel: int) -> int:
        if not 1 <= channel <= self.plan.count:
            raise ValueError(f"channel must be in 1..{self.plan.count}, got {channel}")
        return channel - 1

    def set_channel_power(self, channel: int, power_dbm: float) -> None:
        """Set a channel's signal power at the monitor input (lighting it if dark)."""
        if not -60.0 <= power_dbm <= 20.0:
            raise ValueError(f"channel power must be in -60..20 dBm, got {power_dbm}")
        with self._lock:
            i = self._channel_index(channel)
            g = self._gain_profile_db(self.carrier_thz()[i : i + 1])[0]
            self.input_power_dbm[i] = power_dbm - g + self.tap_loss_db
            self.lit[i] = True
            self._changed()

    def set_signals_off(self, off: bool = True) -> None:
        """Switch every channel's signal off (or back on) while the scenario - and the
        ground truth, which describes the channels when on - stays: what a
        commissioning engineer does to take a signal-off trace of the noise alone."""
        with self._lock:
            self.signals_off = off
            self._changed()

    def set_dark(self, channel: int, dark: bool = True) -> None:
        with self._lock:
            self.lit[self._channel_index(channel)] = not dark
            self._changed()

    def set_offset(self, channel: int, offset_ghz: float) -> None:
        if not -20.0 <= offset_ghz <= 20.0:
            raise ValueError(f"offset must be in -20..20 GHz, got {offset_ghz}")
        with self._lock:
            self.offset_ghz[self._channel_index(channel)] = offset_ghz
            self._changed()

    def set_symbol_rate(self, channel: int, symbol_rate_gbd: float) -> None:
        if not 1.0 <= symbol_rate_gbd <= MAX_SYMBOL_RATE_GBD:
            raise ValueError(
                f"symbol rate must be in 1..{MAX_SYMBOL_RATE_GBD:g} GBd, got {symbol_rate_gbd}"
            )
        with self._lock:
            self.symbol_rate_gbd[self._channel_index(channel)] = symbol_rate_gbd
            self._changed()

    def set_amplifier(
        self,
        *,
        gain_db: float | None = None,
        nf_db: float | None = None,
        tilt_db: float | None = None,
        ripple_db: float | None = None,
    ) -> None:
        """Change the EDFA; channel *input* powers stay, so gain/tilt move monitor powers."""
        with self._lock:
            if gain_db is not None:
                if not 5.0 <= gain_db <= 40.0:
                    raise ValueError(f"gain must be in 5..40 dB, got {gain_db}")
                self.gain_db = gain_db
            if nf_db is not None:
                if not 3.0 <= nf_db <= 40.0:
                    raise ValueError(f"noise figure must be in 3..40 dB, got {nf_db}")
                self.nf_db = nf_db
            if tilt_db is not None:
                if not -10.0 <= tilt_db <= 10.0:
                    raise ValueError(f"tilt must be in -10..10 dB, got {tilt_db}")
                self.tilt_db = tilt_db
            if ripple_db is not None:
                if not 0.0 <= ripple_db <= 5.0:
                    raise ValueError(f"ripple must be in 0..5 dB, got {ripple_db}")
                self.ripple_db = ripple_db
            self._changed()

    def set_rbw(self, rbw_ghz: float) -> None:
        """Change the trace's resolution bandwidth (a bench OSA's RESOLUTION setting):
        wide channels through 12.5 GHz (0.1 nm) hide the noise floor that 6.25 GHz shows."""
        with self._lock:
            self.rbw_ghz = _checked_rbw_ghz(rbw_ghz)
            self._kernels = self._make_kernels()
            self._changed()

    def set_mean_osnr(self, osnr_db: float) -> None:
        """Choose the noise figure so the lit channels' mean OSNR (dB) is ``osnr_db``.

        OSNR in dB falls one-for-one with NF (S_ASE is proportional to NF), so
        one step lands exactly.
        """
        with self._lock:
            current = self.truth_osnr_db()
            lit = current[self.lit]
            if lit.size == 0:
                raise ValueError("no lit channel to set an OSNR for")
            nf = self.nf_db + float(np.mean(lit)) - osnr_db
            if not 3.0 <= nf <= 40.0:
                raise ValueError(
                    f"OSNR {osnr_db} dB needs a noise figure of {nf:.1f} dB, outside 3..40 dB"
                )
            self.nf_db = nf
            self._changed()

    # -- physics ----------------------------------------------------------------------
    def _gain_profile_db(self, frequency_thz: FloatArray) -> FloatArray:
        f = np.asarray(frequency_thz, dtype=np.float64)
        f_lo, f_hi = float(self.channel_thz[0]), float(self.channel_thz[-1])
        span = max(f_hi - f_lo, 1e-9)
        mid = 0.5 * (f_lo + f_hi)
        ripple = (
            0.5 * self.ripple_db * np.sin(2 * np.pi * (f - f_lo) * 1000.0 / self.ripple_period_ghz)
        )
        return np.asarray(self.gain_db + self.tilt_db * (f - mid) / span + ripple)

    def carrier_thz(self) -> FloatArray:
        return np.asarray(self.channel_thz + self.offset_ghz / 1000.0)

    def ase_psd_at_monitor_mw_per_ghz(self, frequency_thz: npt.ArrayLike) -> FloatArray:
        f = np.asarray(frequency_thz, dtype=np.float64)
        s = ase_psd_mw_per_ghz(f, self._gain_profile_db(f), self.nf_db)
        return np.asarray(s * db_to_linear(-self.tap_loss_db))

    def truth_power_dbm(self) -> FloatArray:
        """Signal power of each channel at the monitor input (NaN when dark)."""
        with self._lock:
            p = self.input_power_dbm + self._gain_profile_db(self.carrier_thz()) - self.tap_loss_db
            return np.where(self.lit, p, np.nan)

    def truth_osnr_db(self) -> FloatArray:
        """OSNR of each channel in dB, noise referred to 12.5 GHz (NaN when dark)."""
        with self._lock:
            carrier = self.carrier_thz()
            signal_mw = db_to_linear(self.truth_power_dbm())
            noise_mw = self.ase_psd_at_monitor_mw_per_ghz(carrier) * OSNR_REFERENCE_BANDWIDTH_GHZ
            return np.asarray(linear_to_db(signal_mw / noise_mw))

    def truth_offset_ghz(self) -> FloatArray:
        with self._lock:
            return np.where(self.lit, self.offset_ghz, np.nan)

    def fine_spectrum_mw(self) -> FloatArray:
        """Power per fine-grid bin (mW): channel spectra plus ASE."""
        df = FINE_STEP_GHZ
        carrier = self.carrier_thz()
        signal_mw = np.where(self.lit, db_to_linear(self.truth_power_dbm()), 0.0)
        if self.signals_off:
            signal_mw = np.zeros_like(signal_mw)
        half_width = (
            math.ceil((1.0 + self.rolloff) * float(self.symbol_rate_gbd.max()) / 2 / df) + 2
        )
        k0 = np.rint((carrier - FINE_START_THZ) * 1000.0 / df).astype(np.int64)
        idx = k0[:, None] + np.arange(-half_width, half_width + 1)[None, :]
        delta_ghz = (self.fine_thz[idx] - carrier[:, None]) * 1000.0
        shape = raised_cosine_psd(delta_ghz, self.symbol_rate_gbd[:, None], self.rolloff)
        shape /= shape.sum(axis=1, keepdims=True)
        spectrum = np.bincount(
            idx.ravel(), weights=(shape * signal_mw[:, None]).ravel(), minlength=FINE_POINTS
        )
        return np.asarray(spectrum + self.ase_psd_at_monitor_mw_per_ghz(self.fine_thz) * df)

    def _make_kernels(self) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
        """FFTs of the port passband and the RBW filter, centred at index 0 (circular)."""
        j = np.arange(FINE_POINTS)
        offset_ghz = np.where(j < FINE_POINTS // 2, j, j - FINE_POINTS) * FINE_STEP_GHZ
        sigma = self.port_fwhm_ghz * _FWHM_TO_SIGMA
        spacing = self.ports.spacing_ghz
        # Pedestal width and height: the adjacent port (one spacing away) sees the
        # requested crosstalk in total (main lobe tail + pedestal).
        sigma_w = 2.0 * spacing
        main_at_adjacent = math.exp(-(spacing**2) / (2 * sigma**2))
        wanted = 10.0 ** (self.adjacent_crosstalk_db / 10.0)
        pedestal = max(wanted - main_at_adjacent, 0.0) / math.exp(-(spacing**2) / (2 * sigma_w**2))
        port = np.exp(-(offset_ghz**2) / (2 * sigma**2)) + pedestal * np.exp(
            -(offset_ghz**2) / (2 * sigma_w**2)
        )
        # Gaussian with peak 1 and noise-equivalent bandwidth sigma * sqrt(2 pi) = RBW.
        sigma_r = self.rbw_ghz / math.sqrt(2 * math.pi)
        rbw = np.exp(-(offset_ghz**2) / (2 * sigma_r**2))
        return np.fft.rfft(port), np.fft.rfft(rbw)

    def _refresh(self) -> None:
        if self._cache_version == self._version:
            return
        spectrum_f = np.fft.rfft(self.fine_spectrum_mw())
        port_k, rbw_k = self._kernels
        self._port_conv = np.fft.irfft(spectrum_f * port_k, n=FINE_POINTS)
        trace_conv = np.fft.irfft(spectrum_f * rbw_k, n=FINE_POINTS)
        first = round((TRACE_START_THZ - FINE_START_THZ) * 1000.0 / FINE_STEP_GHZ)
        stride = round(TRACE_STEP_GHZ / FINE_STEP_GHZ)
        self._trace_mw = trace_conv[first : first + stride * TRACE_POINTS : stride].copy()
        self._cache_version = self._version

    # -- readings ---------------------------------------------------------------------
    def port_power_mw(self, awg_shift_ghz: float = 0.0) -> FloatArray:
        """Noiseless power at each port (mW), AWG shifted by ``awg_shift_ghz``."""
        with self._lock:
            self._refresh()
            f = self.ports.frequencies_thz + awg_shift_ghz / 1000.0
            return np.asarray(np.interp(f, self.fine_thz, self._port_conv))

    def total_power_dbm(self) -> float:
        with self._lock:
            return float(linear_to_db(self.fine_spectrum_mw().sum()))

    def _noisy(self, mw: FloatArray, averaging: int, detector_noise_dbm: float) -> FloatArray:
        scale = 1.0 / math.sqrt(averaging)
        mult = db_to_linear(self.rng.normal(0.0, self.reading_noise_db * scale, mw.shape))
        add = self.rng.normal(0.0, 10.0 ** (detector_noise_dbm / 10.0) * scale, mw.shape)
        return np.asarray(mw * mult + add)

    def read_port_powers_dbm(self, *, averaging: int = 1, awg_shift_ghz: float = 0.0) -> FloatArray:
        """One port reading in dBm with reading noise; NaN below the -60 dBm floor."""
        with self._lock:
            mw = self._noisy(self.port_power_mw(awg_shift_ghz), averaging, self.detector_noise_dbm)
        with np.errstate(invalid="ignore", divide="ignore"):
            dbm = linear_to_db(mw)
        return np.where(dbm >= PORT_FLOOR_DBM, dbm, np.nan)

    def read_trace_dbm(self, *, averaging: int = 1) -> npt.NDArray[np.float32]:
        """One scanned trace (float32 dBm), with reading and detector noise."""
        with self._lock:
            self._refresh()
            mw = self._noisy(self._trace_mw, averaging, self.detector_noise_dbm - 10.0)
        floor_mw = 10.0 ** ((self.detector_noise_dbm - 20.0) / 10.0)
        return linear_to_db(np.maximum(mw, floor_mw)).astype(np.float32)

    @staticmethod
    def trace_frequency_thz() -> FloatArray:
        return np.asarray(TRACE_START_THZ + np.arange(TRACE_POINTS) * (TRACE_STEP_GHZ / 1000.0))
