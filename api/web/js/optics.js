// Optical quantities the console derives for display, each written once.

/** Speed of light in vacuum, m/s (exact, SI). */
const SPEED_OF_LIGHT_M_PER_S = 299792458;

/** OSNR reference bandwidth, 0.1 nm at 1550 nm = 12.5 GHz (IEC 61280-2-9;
 *  odpm.pipeline.OSNR_REFERENCE_BANDWIDTH_GHZ). */
export const OSNR_REFERENCE_BANDWIDTH_GHZ = 12.5;

/** Vacuum wavelength (nm) of a frequency (THz): lambda = c / f. */
export function wavelengthNm(frequencyThz) {
  return SPEED_OF_LIGHT_M_PER_S / 1e3 / frequencyThz;
}

/**
 * The noise level the pipeline used for a channel's OSNR, as it appears on the
 * trace (dBm per resolution bandwidth), so it can be drawn on the spectrum.
 *
 * odpm.pipeline.osnr_db: OSNR = S / (N x B_ref) with N the noise PSD at the
 * channel centre (IEC 61280-2-9 interpolation).  Hence N x B_ref in dBm is
 * S(dBm) - OSNR(dB), and the trace, whose points each hold N x RBW, shows it at
 * S - OSNR + 10 log10(RBW / B_ref).
 */
export function noiseLevelDbm(signalPowerDbm, osnrDb, rbwGhz) {
  if (signalPowerDbm == null || osnrDb == null || !(rbwGhz > 0)) return null;
  return signalPowerDbm - osnrDb + 10 * Math.log10(rbwGhz / OSNR_REFERENCE_BANDWIDTH_GHZ);
}
