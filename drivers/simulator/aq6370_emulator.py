"""An emulated Yokogawa AQ6370D: the command subset :mod:`drivers.aq6370` uses, on TCP.

It starts with the login handshake (``open "<user>"`` -> ``AUTHENTICATE
CRAM-MD5.`` -> any password -> ``ready``; ``SIM:FAULt:LOGin ON`` refuses it),
answers with CR LF, and keeps trace A of the last sweep so the same sweep can be
read in REAL,64 and in ASCII.  The spectrum, faults and ``SIM:`` commands are
:mod:`drivers.simulator.osa_emulator`'s.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drivers.simulator.osa_emulator import (
    EmulatorError,
    Handler,
    OsaEmulator,
    Session,
    number_arg,
)
from odpm.air import vacuum_to_air_nm
from odpm.grid import frequency_thz_to_wavelength_nm

#: ``:SENSe:SENSe`` names by index (the AQ6370's own numbering).
SENSITIVITIES = ("NHLD", "NAUT", "MID", "HIGH1", "HIGH2", "HIGH3", "NORM")


class Aq6370Emulator(OsaEmulator):
    terminator = b"\r\n"
    requires_login = True
    idn = "YOKOGAWA,AQ6370D,91XXSIM1,02.08"
    sensitivity: int
    single: bool
    operation_event: int
    wdm_table: npt.NDArray[np.float64] | None

    def _login_step(self, session: Session, text: str) -> bytes:
        if session.login_user is None:
            if text.lower().startswith("open ") and text.count('"') == 2:
                session.login_user = text.split('"')[1]
                return b"AUTHENTICATE CRAM-MD5." + self.terminator
            return b""  # the instrument ignores everything before "open"
        session.login_user = None
        if self.faults.refuse_login:
            return b"error" + self.terminator
        session.authenticated = True
        return b"ready" + self.terminator

    def _operation_event(self) -> int:
        if self.take_sweep_complete():
            self.operation_event |= 1
        value, self.operation_event = self.operation_event, 0
        return value

    def _register(self) -> None:
        self.sensitivity = 1
        self.single = False
        self.operation_event = 0
        self.wdm_table = None
        dev = self.device

        def idn(s: Session, a: list[str]) -> str:
            return self.idn

        def cls(s: Session, a: list[str]) -> None:
            dev.clear_errors()
            self.operation_event = 0

        def err(s: Session, a: list[str]) -> str:
            code, message = dev.pop_error()
            return f'{code},"{message}"'

        def fmt(s: Session, a: list[str]) -> None:
            text = ",".join(a).upper().replace(" ", "")
            if text in ("ASCII", "ASC"):
                self.binary = False
            elif text == "REAL,64":
                self.binary = True
            else:
                raise EmulatorError(-224, "Illegal parameter value;ASCII|REAL,64")

        def fmt_q(s: Session, a: list[str]) -> str:
            return "REAL,64" if self.binary else "ASCII"

        def smode(s: Session, a: list[str]) -> None:
            value = a[0].upper() if a else ""
            if value in ("SINGLE", "SING", "1"):
                self.single = True
            elif value in ("REPEAT", "REP", "2"):
                self.single = False
            else:
                raise EmulatorError(-224, "Illegal parameter value;SINGle|REPeat")

        def init(s: Session, a: list[str]) -> None:
            self.start_sweep()

        def oper_event(s: Session, a: list[str]) -> str:
            return str(self._operation_event())

        def medium(s: Session, a: list[str]) -> None:
            value = a[0].upper() if a else ""
            if value in ("AIR", "0"):
                self.medium = "air"
            elif value in ("VACUUM", "VAC", "1"):
                self.medium = "vacuum"
            else:
                raise EmulatorError(-224, "Illegal parameter value;AIR|VACuum")

        def medium_q(s: Session, a: list[str]) -> str:
            return "0" if self.medium == "air" else "1"

        def rbw_q(s: Session, a: list[str]) -> str:
            return f"{self.rbw_nm() * 1e-9:.8E}"

        def points(s: Session, a: list[str]) -> None:
            self.points = int(number_arg(a, 0, 101, 50001))

        def points_q(s: Session, a: list[str]) -> str:
            return str(self.points)

        def sens(s: Session, a: list[str]) -> None:
            value = a[0].upper() if a else ""
            if value in SENSITIVITIES:
                self.sensitivity = SENSITIVITIES.index(value)
            else:
                self.sensitivity = int(number_arg(a, 0, 0, 6))

        def sens_q(s: Session, a: list[str]) -> str:
            return str(self.sensitivity)

        def aver(s: Session, a: list[str]) -> None:
            self.averaging = int(number_arg(a, 0, 1, 999))

        def aver_q(s: Session, a: list[str]) -> str:
            return str(self.averaging)

        def trace_arg(a: list[str]) -> None:
            if not a or a[0].upper() != "TRA":
                raise EmulatorError(-224, "Illegal parameter value;only trace TRA is emulated")
            if self.wavelength_nm.size == 0:
                raise EmulatorError(-200, "Execution error;no sweep yet")

        def trace_x(s: Session, a: list[str]) -> bytes:
            trace_arg(a)
            return self.values_reply(self.wavelength_nm * 1e-9)

        def trace_y(s: Session, a: list[str]) -> bytes:
            trace_arg(a)
            return self.values_reply(self.level_dbm)

        def category(s: Session, a: list[str]) -> None:
            if not a or a[0].upper() != "WDM":
                raise EmulatorError(-224, "Illegal parameter value;only WDM is emulated")

        def calculate(s: Session, a: list[str]) -> None:
            lit = np.flatnonzero(np.isfinite(self.model.truth_power_dbm()))
            vac_nm = frequency_thz_to_wavelength_nm(self.model.carrier_thz()[lit])
            shown = vac_nm if self.medium == "vacuum" else vacuum_to_air_nm(vac_nm)
            self.wdm_table = np.stack(
                (
                    shown[::-1] * 1e-9,
                    self.model.truth_power_dbm()[lit][::-1],
                    self.model.truth_osnr_db()[lit][::-1],
                )
            )

        def wdm(column: int) -> Handler:
            def reply(s: Session, a: list[str]) -> str:
                if self.wdm_table is None:
                    raise EmulatorError(-200, "Execution error;no analysis yet")
                return ",".join(f"{v:.6E}" for v in self.wdm_table[column].tolist())

            return reply

        def nchannels(s: Session, a: list[str]) -> str:
            if self.wdm_table is None:
                raise EmulatorError(-200, "Execution error;no analysis yet")
            return str(self.wdm_table.shape[1])

        self.add(idn, "*IDN?")
        self.add(cls, "*CLS")
        self.add(err, "SYSTem:ERRor?", "SYSTem:ERRor:NEXT?")
        self.add(fmt, "FORMat:DATA")
        self.add(fmt_q, "FORMat:DATA?")
        self.add(smode, "INITiate:SMODe")
        self.add(init, "INITiate", "INITiate:IMMediate")
        self.add(oper_event, "STATus:OPERation:EVENt?")
        self.add(medium, "SENSe:CORRection:RVELocity:MEDium")
        self.add(medium_q, "SENSe:CORRection:RVELocity:MEDium?")
        self.add(rbw_q, "SENSe:BANDwidth?", "SENSe:BANDwidth:RESolution?")
        self.add(points, "SENSe:SWEep:POINts")
        self.add(points_q, "SENSe:SWEep:POINts?")
        self.add(sens, "SENSe:SENSe")
        self.add(sens_q, "SENSe:SENSe?")
        self.add(aver, "SENSe:AVERage:COUNt")
        self.add(aver_q, "SENSe:AVERage:COUNt?")
        self.add(trace_x, "TRACe:X?", "TRACe:DATA:X?")
        self.add(trace_y, "TRACe:Y?", "TRACe:DATA:Y?")
        self.add(category, "CALCulate:CATegory")
        self.add(calculate, "CALCulate", "CALCulate:IMMediate")
        self.add(nchannels, "CALCulate:DATA:NCHannels?")
        self.add(wdm(0), "CALCulate:DATA:CWAVelengths?")
        self.add(wdm(1), "CALCulate:DATA:CPOWers?")
        self.add(wdm(2), "CALCulate:DATA:CSNR?")
        self._register_faults()
