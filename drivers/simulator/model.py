"""Physics model of what an ODPM-96 sees at its input: DWDM channels, EDFA ASE, a ROADM.

The model (all powers at the monitor input unless said otherwise)
=================================================================

Line system.  Channels sit on a channel plan: by default the ITU-T G.694.1
50 GHz plan (80 channels, 192.10-196.05 THz); any :class:`~odpm.grid.ChannelPlan`
may be given, including flexible-grid plans with a width per channel (see
:func:`slot_widths_ghz`).  Channel ``c`` has an amplifier input power
``P_in,c`` (mW), a symbol rate ``R_s,c`` (GBd, up to 130), a raised-cosine
spectrum of roll-off ``beta_c`` (per channel) and a carrier offset ``df_c`` (GHz)
from its nominal centre.

Two ways for a channel to carry no signal, as in a real ROADM network:

* *dark* (``SIM:CHAN:DARK``): the channel is not provisioned: no transmitter,
  and the ROADM's WSS blocks its slot (no passband);
* *signal off* (``SIM:CHAN:SIGN`` for one channel, ``SIM:SIGN`` for all): the
  transmitter is switched off but the channel stays provisioned, so its WSS
  passband stays configured and the ASE under the channel still reaches the
  monitor - what a commissioning engineer measures in a signal-off trace
  (IEC TR 61282-12's integral method, AQ6370 DUAL TRACE).  The ground truth
  keeps describing the channel as it is when on.

Amplifier.  One EDFA of gain ``G(f)`` and noise figure ``NF``.  Its gain
profile in dB is ``G_dB + tilt * (f - f_mid) / span + ripple/2 * sin(2 pi (f - f0) / period)``
(tilt and ripple in dB across the channel plan).  The ASE it adds, in both
polarisations, has the power spectral density (Desurvire, *Erbium-Doped Fiber
Amplifiers*, 1994; NF ~ 2 n_sp at high gain)::

    S_ASE(f) = 2 n_sp h f (G(f) - 1) = NF h f (G(f) - 1)        [W/Hz]

so a channel's OSNR referred to ``B_ref`` = 12.5 GHz (0.1 nm at 1550 nm) is::

    OSNR_c = G(f_c) P_in,c / (S_ASE(f_c) B_ref)
           ~ 58 + P_in,c[dBm] - NF[dB]   (10 log10(h f B_ref / 1 mW) = -57.96 dBm)

ROADM (WSS-filtered ASE).  When the WSS stage is on, the spectrum (ASE and
signals alike) crosses a wavelength-selective switch before the monitor.  Each
provisioned channel has a passband centred on its slot, ``B_c = width_c - guard``
wide at -6 dB, with Gaussian edges of standard deviation ``edge`` (the
rect-convolved-with-Gaussian passband of Pulikkaseril et al., "Spectral modeling
of channel band shapes in wavelength selective switches", Opt. Express 19(9),
2011; :func:`wss_passband`).  Outside the passbands the WSS attenuates by
``depth_db``::

    T(f) = T_min + (1 - T_min) min(sum_c passband_c(f), 1),   T_min = 10^(-depth/10)

so the ASE between channels (and under blocked, dark slots) is carved down to
``T_min``, while under a lit channel it is flat.  The signal is filtered by the
same ``T`` (a wide channel in a tight passband loses its edges).  The ground
truth stays the in-band definition and applies the same transmission: signal
power after the WSS over ``S_ASE(f_c) T(f_c) B_ref``.

A tap of ``tap_loss_db`` attenuates signal and ASE alike on the way to the
monitor, so the OSNR at the monitor is the OSNR at the amplifier output.
:meth:`OpticalModel.truth_osnr_db` evaluates exactly this formula (times the
WSS transmission at the carrier when the WSS is on): it is the ground truth the
OSNR pipeline is judged against.

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
(with the WSS transmission and each signal's share through it) until the
scenario changes, so a scan costs a few random numbers and a copy.
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
from odpm.special import erf
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

#: WSS defaults: the stage is off; when on, it carves the ASE outside the passbands
#: by 20 dB; passbands are the slot minus a 6 GHz guard, with 2 GHz Gaussian edges
#: (typical LCoS WSS: -3 dB bandwidth ~ slot - 6..8 GHz, edge sigma ~ 1.5-3 GHz).
WSS_DEFAULT_DEPTH_DB = 20.0
WSS_DEFAULT_GUARD_GHZ = 6.0
WSS_DEFAULT_EDGE_GHZ = 2.0
#: Allowed ranges (the SCPI commands and ``odpm sim`` check these).
WSS_MAX_DEPTH_DB = 60.0
WSS_MIN_EDGE_GHZ = 0.1
WSS_MAX_EDGE_GHZ = 20.0
#: A passband is evaluated out to this many edge sigmas beyond its half width
#: (erf is 1 to 2e-17 there).
_WSS_REACH_SIGMAS = 6.0

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
    delta_ghz: FloatArray, symbol_rate_gbd: FloatArray, rolloff: float | FloatArray
) -> FloatArray:
    """Shape of a raised-cosine spectrum (peak 1): flat to (1-b)Rs/2, cosine taper to (1+b)Rs/2."""
    a = np.abs(delta_ghz)
    rs = symbol_rate_gbd
    f1 = (1.0 - rolloff) * rs / 2.0
    f2 = (1.0 + rolloff) * rs / 2.0
    taper = 0.5 * (1.0 + np.cos(np.pi * (a - f1) / np.maximum(f2 - f1, 1e-12)))
    return np.where(a <= f1, 1.0, np.where(a <= f2, taper, 0.0))


def _check_rolloff(rolloff: float) -> None:
    if not 0.0 <= rolloff <= 1.0:
        raise ValueError(f"roll-off must be in 0..1, got {rolloff:g}")


def slot_widths_ghz(plan: ChannelPlan) -> FloatArray:
    """Each channel's slot width in GHz: the plan's per-channel widths on a flexible
    grid (``ChannelPlan.widths_ghz``), else the uniform spacing.

    The one place the model reads slot widths, so it follows flex plans as soon as
    the plan carries widths."""
    widths = getattr(plan, "widths_ghz", plan.spacing_ghz)
    return np.array(np.broadcast_to(np.asarray(widths, dtype=np.float64), (plan.count,)))


def wss_passband(delta_ghz: FloatArray, passband_ghz: FloatArray, edge_ghz: float) -> FloatArray:
    """Transmission (peak 1) of one WSS passband at ``delta_ghz`` from its centre: a
    box of ``passband_ghz`` (the width at half transmission, -3 dB) convolved with a
    Gaussian of standard deviation ``edge_ghz`` (Pulikkaseril et al., Opt. Express
    19(9), 2011)::

        0.5 [erf((d + B/2) / (sqrt2 sigma)) - erf((d - B/2) / (sqrt2 sigma))]
    """
    k = 1.0 / (math.sqrt(2.0) * edge_ghz)
    half = passband_ghz / 2.0
    return np.asarray(0.5 * (erf((delta_ghz + half) * k) - erf((delta_ghz - half) * k)))


def wss_transmission(passband_sum: FloatArray, depth_db: float) -> FloatArray:
    """The WSS's power transmission from the sum of its passbands at a frequency:
    ``T_min + (1 - T_min) min(sum, 1)`` with ``T_min = 10^(-depth/10)`` (overlapping
    passbands of adjacent channels merge, they do not add up past 1)."""
    floor = 10.0 ** (-depth_db / 10.0)
    return np.asarray(floor + (1.0 - floor) * np.minimum(passband_sum, 1.0))


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
        wss: bool = False,
        wss_depth_db: float = WSS_DEFAULT_DEPTH_DB,
        wss_guard_ghz: float = WSS_DEFAULT_GUARD_GHZ,
        wss_edge_ghz: float = WSS_DEFAULT_EDGE_GHZ,
        port_fwhm_ghz: float = 30.0,
        adjacent_crosstalk_db: float = -30.0,
        awg_tempco_ghz_per_c: float = -1.4,
        reading_noise_db: float = 0.02,
        detector_noise_dbm: float = -75.0,
        rbw_ghz: float = TRACE_RBW_GHZ,
    ) -> None:
        self._lock = threading.RLock()
        self._version = 0
        #: Noise-equivalent bandwidth of the trace's resolution filter (``SIM:RBW``).
        self.rbw_ghz = _checked_rbw_ghz(rbw_ghz)
        self.rng = np.random.default_rng(seed)
        self.plan = plan or ChannelPlan.c_band_50ghz()
        self.ports = ports or PortGrid(
            ODPM96_FIRST_PORT_THZ, ODPM96_PORT_SPACING_GHZ, ODPM96_PORT_COUNT
        )
        n = self.plan.count
        self.channel_thz = self.plan.frequencies_thz
        self.slot_width_ghz = slot_widths_ghz(self.plan)
        self.gain_db = gain_db
        self.nf_db = nf_db
        self.tap_loss_db = tap_loss_db
        self.tilt_db = tilt_db
        self.ripple_db = ripple_db
        self.ripple_period_ghz = ripple_period_ghz
        _check_rolloff(rolloff)
        #: Raised-cosine roll-off of each channel.
        self.rolloff = np.full(n, float(rolloff))
        self.wss_enabled = False
        self.wss_depth_db = WSS_DEFAULT_DEPTH_DB
        self.wss_guard_ghz = WSS_DEFAULT_GUARD_GHZ
        self.wss_edge_ghz = WSS_DEFAULT_EDGE_GHZ
        self.set_wss(
            enabled=wss, depth_db=wss_depth_db, guard_ghz=wss_guard_ghz, edge_ghz=wss_edge_ghz
        )
        self.port_fwhm_ghz = port_fwhm_ghz
        self.adjacent_crosstalk_db = adjacent_crosstalk_db
        self.awg_tempco_ghz_per_c = awg_tempco_ghz_per_c
        self.reading_noise_db = reading_noise_db
        self.detector_noise_dbm = detector_noise_dbm
        #: Provisioned channels: a transmitter, and a WSS passband (dark: neither).
        self.lit = np.ones(n, dtype=bool)
        #: All signals switched off for a signal-off trace (see set_signals_off).
        self.signals_off = False
        #: Transmitters switched off one by one (see set_signal_off); passbands stay.
        self.tx_off = np.zeros(n, dtype=bool)
        self.offset_ghz = self.rng.uniform(-1.0, 1.0, n)
        # Mostly 10 GBd (resolvable on 50 GHz), a quarter 28 GBd (spectra reach the midpoints).
        self.symbol_rate_gbd = self.rng.choice(np.array([10.0, 28.0]), n, p=[0.75, 0.25])
        self.fine_thz = FINE_START_THZ + np.arange(FINE_POINTS) * (FINE_STEP_GHZ / 1000.0)
        target = channel_power_dbm + self.rng.uniform(-power_spread_db, power_spread_db, n)
        self.input_power_dbm = target - self._gain_profile_db(self.carrier_thz()) + tap_loss_db
        self._cache_version = -1
        self._port_conv = np.zeros(FINE_POINTS)
        self._trace_mw = np.zeros(TRACE_POINTS)
        self._fine_mw = np.zeros(FINE_POINTS)
        self._wss_fine = np.ones(FINE_POINTS)
        self._signal_through_wss = np.ones(n)
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
            self.lit[i] = True
            self._changed()
            # The power is the one after the WSS: make up for its loss on the signal.
            through_db = 0.0
            if self.wss_enabled:
                self._refresh()
                through_db = float(linear_to_db(self._signal_through_wss[i]))
            g = self._gain_profile_db(self.carrier_thz()[i : i + 1])[0]
            self.input_power_dbm[i] = power_dbm - g + self.tap_loss_db - through_db
            self._changed()

    def set_signals_off(self, off: bool = True) -> None:
        """Switch every channel's signal off (or back on) while the scenario - and the
        ground truth, which describes the channels when on - stays: what a
        commissioning engineer does to take a signal-off trace of the noise alone."""
        with self._lock:
            self.signals_off = off
            self._changed()

    def set_signal_off(self, channel: int, off: bool = True) -> None:
        """Switch one channel's transmitter off (or back on).  Unlike :meth:`set_dark`
        the channel stays provisioned: its WSS passband stays open, so the ASE under
        it still reaches the monitor (a real ROADM keeps a channel's passband when
        its transmitter goes dark), and its ground truth stays that of the channel on."""
        with self._lock:
            self.tx_off[self._channel_index(channel)] = off
            self._changed()

    def set_dark(self, channel: int, dark: bool = True) -> None:
        """Make a channel dark (not provisioned: no signal, its WSS slot blocked) or lit."""
        with self._lock:
            self.lit[self._channel_index(channel)] = not dark
            self._changed()

    def set_rolloff(self, channel: int | None, rolloff: float) -> None:
        """Set one channel's raised-cosine roll-off (every channel's with ``None``)."""
        _check_rolloff(rolloff)
        with self._lock:
            if channel is None:
                self.rolloff[:] = rolloff
            else:
                self.rolloff[self._channel_index(channel)] = rolloff
            self._changed()

    def set_wss(
        self,
        *,
        enabled: bool | None = None,
        depth_db: float | None = None,
        guard_ghz: float | None = None,
        edge_ghz: float | None = None,
    ) -> None:
        """Configure the ROADM's WSS stage (see the module docstring); ``None`` keeps a
        setting.  Every value is checked before any is applied."""
        with self._lock:
            if depth_db is not None and not 0.0 <= depth_db <= WSS_MAX_DEPTH_DB:
                raise ValueError(
                    f"WSS depth must be in 0..{WSS_MAX_DEPTH_DB:g} dB, got {depth_db:g}"
                )
            narrowest = float(self.slot_width_ghz.min())
            if guard_ghz is not None and not 0.0 <= guard_ghz < narrowest:
                raise ValueError(
                    f"WSS guard must be in 0..{narrowest:g} GHz (below the narrowest slot), "
                    f"got {guard_ghz:g}"
                )
            if edge_ghz is not None and not WSS_MIN_EDGE_GHZ <= edge_ghz <= WSS_MAX_EDGE_GHZ:
                raise ValueError(
                    f"WSS edge must be in {WSS_MIN_EDGE_GHZ:g}..{WSS_MAX_EDGE_GHZ:g} GHz, "
                    f"got {edge_ghz:g}"
                )
            if enabled is not None:
                self.wss_enabled = enabled
            if depth_db is not None:
                self.wss_depth_db = depth_db
            if guard_ghz is not None:
                self.wss_guard_ghz = guard_ghz
            if edge_ghz is not None:
                self.wss_edge_ghz = edge_ghz
            self._changed()

    def wss_passband_ghz(self) -> FloatArray:
        """Each channel's WSS passband width (slot width minus the guard), GHz."""
        return np.asarray(self.slot_width_ghz - self.wss_guard_ghz)

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

    def _pre_wss_power_dbm(self) -> FloatArray:
        """Each channel's signal power at the monitor if no WSS were there (lit or not)."""
        return np.asarray(
            self.input_power_dbm + self._gain_profile_db(self.carrier_thz()) - self.tap_loss_db
        )

    def wss_transmission_at(self, frequency_thz: npt.ArrayLike) -> FloatArray:
        """The WSS's power transmission ``T(f)`` at some frequencies (1 when it is off).

        Every open passband is evaluated at every frequency: for a few points (the
        carriers); the fine grid uses :meth:`_wss_fine_transmission`."""
        with self._lock:
            f = np.atleast_1d(np.asarray(frequency_thz, dtype=np.float64))
            if not self.wss_enabled:
                return np.ones_like(f)
            d_ghz = (f[:, None] - self.channel_thz[None, self.lit]) * 1000.0
            passband = self.wss_passband_ghz()[None, self.lit]
            total = wss_passband(d_ghz, passband, self.wss_edge_ghz).sum(axis=1)
            return wss_transmission(total, self.wss_depth_db)

    def _wss_fine_transmission(self) -> FloatArray:
        """``T`` on the fine grid, each open passband evaluated only over its own reach
        (the full product would cost ~80 x 17,920 erf per scenario change)."""
        if not self.wss_enabled:
            return np.ones(FINE_POINTS)
        open_ = np.flatnonzero(self.lit)
        if open_.size == 0:
            return wss_transmission(np.zeros(FINE_POINTS), self.wss_depth_db)
        df = FINE_STEP_GHZ
        centre = self.channel_thz[open_]
        passband = self.wss_passband_ghz()[open_]
        reach = math.ceil((float(passband.max()) / 2 + _WSS_REACH_SIGMAS * self.wss_edge_ghz) / df)
        k0 = np.rint((centre - FINE_START_THZ) * 1000.0 / df).astype(np.int64)
        idx = k0[:, None] + np.arange(-reach, reach + 1)[None, :]
        inside = (idx >= 0) & (idx < FINE_POINTS)
        idx = np.clip(idx, 0, FINE_POINTS - 1)
        d_ghz = (self.fine_thz[idx] - centre[:, None]) * 1000.0
        values = np.where(inside, wss_passband(d_ghz, passband[:, None], self.wss_edge_ghz), 0.0)
        total = np.asarray(
            np.bincount(idx.ravel(), weights=values.ravel(), minlength=FINE_POINTS),
            dtype=np.float64,
        )
        return wss_transmission(total, self.wss_depth_db)

    def truth_power_dbm(self) -> FloatArray:
        """Signal power of each channel at the monitor input, after the WSS (NaN when
        dark).  A channel whose transmitter is off keeps the power it has when on."""
        with self._lock:
            self._refresh()
            with np.errstate(divide="ignore"):
                through_db = linear_to_db(self._signal_through_wss)
            p = self._pre_wss_power_dbm() + through_db
            return np.where(self.lit, p, np.nan)

    def truth_osnr_db(self) -> FloatArray:
        """OSNR of each channel in dB: signal power after the WSS over the ASE density
        at its carrier after the WSS, in 12.5 GHz (NaN when dark)."""
        with self._lock:
            carrier = self.carrier_thz()
            signal_mw = db_to_linear(self.truth_power_dbm())
            noise_mw = (
                self.ase_psd_at_monitor_mw_per_ghz(carrier)
                * self.wss_transmission_at(carrier)
                * OSNR_REFERENCE_BANDWIDTH_GHZ
            )
            return np.asarray(linear_to_db(signal_mw / noise_mw))

    def truth_offset_ghz(self) -> FloatArray:
        with self._lock:
            return np.where(self.lit, self.offset_ghz, np.nan)

    def fine_spectrum_mw(self) -> FloatArray:
        """Power per fine-grid bin (mW): channel spectra plus ASE, through the WSS."""
        with self._lock:
            self._refresh()
            return self._fine_mw.copy()

    def _build_fine_spectrum(self) -> None:
        """Compute the WSS transmission, each signal's share through it, and the fine
        spectrum (called by :meth:`_refresh` when the scenario changed)."""
        df = FINE_STEP_GHZ
        t_fine = self._wss_fine_transmission()
        carrier = self.carrier_thz()
        emitting = self.lit & ~self.tx_off & ~self.signals_off
        signal_mw = np.where(emitting, db_to_linear(self._pre_wss_power_dbm()), 0.0)
        half_width = (
            math.ceil(float(((1.0 + self.rolloff) * self.symbol_rate_gbd).max()) / 2 / df) + 2
        )
        k0 = np.rint((carrier - FINE_START_THZ) * 1000.0 / df).astype(np.int64)
        idx = k0[:, None] + np.arange(-half_width, half_width + 1)[None, :]
        delta_ghz = (self.fine_thz[idx] - carrier[:, None]) * 1000.0
        shape = raised_cosine_psd(delta_ghz, self.symbol_rate_gbd[:, None], self.rolloff[:, None])
        shape /= shape.sum(axis=1, keepdims=True)
        shape *= t_fine[idx]
        self._signal_through_wss = shape.sum(axis=1)
        spectrum = np.bincount(
            idx.ravel(), weights=(shape * signal_mw[:, None]).ravel(), minlength=FINE_POINTS
        )
        ase_mw = self.ase_psd_at_monitor_mw_per_ghz(self.fine_thz) * df * t_fine
        self._wss_fine = t_fine
        self._fine_mw = np.asarray(spectrum + ase_mw)

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
        self._build_fine_spectrum()
        spectrum_f = np.fft.rfft(self._fine_mw)
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
            self._refresh()
            return float(linear_to_db(self._fine_mw.sum()))

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
