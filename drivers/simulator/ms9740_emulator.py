"""An emulated Anritsu MS9740A: the command subset :mod:`drivers.ms9740` uses, on TCP.

A real MS9740 is reached by VXI-11 (``TCPIP::host::inst0::INSTR``) or GPIB; the
emulator serves the same commands on a raw socket, which the driver opens as
``socket://host:port`` (no VXI-11 server is needed to test the driver's logic).
Replies end in LF; ``DMA?`` sends one level per line (CR LF between them).
The spectrum, faults and ``SIM:`` commands are :mod:`drivers.simulator.osa_emulator`'s.
"""

from __future__ import annotations

from drivers.simulator.osa_emulator import EmulatorError, OsaEmulator, Session, number_arg


class Ms9740Emulator(OsaEmulator):
    terminator = b"\n"
    idn = "ANRITSU,MS9740A,6200000000,1.00.00"
    esr2: int

    def _login_step(self, session: Session, text: str) -> bytes:
        raise AssertionError("the MS9740 has no login")

    def _register(self) -> None:
        self.esr2 = 0
        dev = self.device

        def idn(s: Session, a: list[str]) -> str:
            return self.idn

        def cls(s: Session, a: list[str]) -> None:
            dev.clear_errors()
            self.esr2 = 0

        def err(s: Session, a: list[str]) -> str:
            code, message = dev.pop_error()
            return f'{code},"{message}"'

        def ssi(s: Session, a: list[str]) -> None:
            self.start_sweep()

        def esr2(s: Session, a: list[str]) -> str:
            if self.take_sweep_complete():
                self.esr2 |= 1
            value, self.esr2 = self.esr2, 0
            return str(value)

        def dca(s: Session, a: list[str]) -> str:
            return f"{self.start_vac_nm:.2f},{self.stop_vac_nm:.2f},{self.points}"

        def res(s: Session, a: list[str]) -> str:
            return f"{self.rbw_nm():.4f}"

        def mpt(s: Session, a: list[str]) -> None:
            self.points = int(number_arg(a, 0, 51, 50001))

        def mpt_q(s: Session, a: list[str]) -> str:
            return str(self.points)

        def avs(s: Session, a: list[str]) -> None:
            self.averaging = int(number_arg(a, 0, 1, 1000))

        def avs_q(s: Session, a: list[str]) -> str:
            return str(self.averaging)

        def no_sweep() -> None:
            if self.level_dbm.size == 0:
                raise EmulatorError(-200, "Execution error;no sweep yet")

        def dma(s: Session, a: list[str]) -> bytes:
            no_sweep()
            return "\r\n".join(f"{v:.17g}" for v in self.level_dbm.tolist()).encode() + b"\r\n"

        def fmt(s: Session, a: list[str]) -> None:
            value = a[0].upper() if a else ""
            if value == "REAL":
                self.binary = True
            elif value in ("ASCII", "ASC"):
                self.binary = False
            else:
                raise EmulatorError(-224, "Illegal parameter value;REAL|ASCii")

        def trace_y(s: Session, a: list[str]) -> bytes:
            if not a or a[0].upper() != "TRA":
                raise EmulatorError(-224, "Illegal parameter value;only trace TRA is emulated")
            no_sweep()
            return self.values_reply(self.level_dbm)

        self.add(idn, "*IDN?")
        self.add(cls, "*CLS")
        self.add(err, "SYSTem:ERRor?")
        self.add(ssi, "SSI")
        self.add(esr2, "ESR2?")
        self.add(dca, "DCA?")
        self.add(res, "RES?")
        self.add(mpt, "MPT")
        self.add(mpt_q, "MPT?")
        self.add(avs, "AVS")
        self.add(avs_q, "AVS?")
        self.add(dma, "DMA?")
        self.add(fmt, "FORMat", "FORMat:DATA")
        self.add(trace_y, "TRACe?", "TRACe:DATA?", "TRACe:DATA:Y?", "TRACe:Y?")
        self._register_faults()
