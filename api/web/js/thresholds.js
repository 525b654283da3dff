// Alarm thresholds as GET /api/v1/thresholds returns them, read per channel.
//
// Per-channel overrides replace the global value of the fields they set; a field
// left unset inherits it (README, "Alarms").  Newer services may also return an
// `effective` table (per channel, already resolved): it is used when present.

const CHANNEL_FIELDS = ["power_low_dbm", "power_high_dbm", "osnr_low_db", "offset_high_ghz"];

export class Thresholds {
  constructor(body) {
    this.body = body || {};
  }

  /** The threshold `name` in force for `channel` (null: not checked). */
  get(channel, name) {
    const b = this.body;
    const eff = b.effective;
    if (eff && typeof eff === "object") {
      const row = (eff.channels && eff.channels[channel]) || eff[channel];
      if (row && name in row) return row[name];
      if (name in eff && typeof eff[name] !== "object") return eff[name];
    }
    const overrides = b.overrides || b;
    const ch = overrides.channels && overrides.channels[channel];
    if (ch && ch[name] !== undefined && ch[name] !== null) return ch[name];
    const global = name in overrides ? overrides[name] : b[name];
    return global === undefined ? null : global;
  }

  /** All four channel thresholds for `channel`. */
  forChannel(channel) {
    const out = {};
    for (const f of CHANNEL_FIELDS) out[f] = this.get(channel, f);
    return out;
  }

  /** "ok", "bad" or "none" for a channel's power against its limits. */
  powerState(channel, powerDbm) {
    if (powerDbm == null) return "none";
    const lo = this.get(channel, "power_low_dbm");
    const hi = this.get(channel, "power_high_dbm");
    if ((lo != null && powerDbm < lo) || (hi != null && powerDbm > hi)) return "bad";
    return "ok";
  }

  osnrState(channel, osnrDb) {
    if (osnrDb == null) return "none";
    const lo = this.get(channel, "osnr_low_db");
    return lo != null && osnrDb < lo ? "bad" : "ok";
  }
}
