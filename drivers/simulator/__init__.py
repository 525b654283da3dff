"""A simulated ODPM-96: physics model, SCPI engine and TCP / pty servers.

``SimulatorServer.start_tcp(port=0)`` or ``SimulatorServer.start_pty()`` gives a
running device whose ``.address`` any driver transport can open; ``.device``
is the in-process handle for scenario changes and fault injection (the same
operations the ``SIM:...`` wire commands perform).
"""

from drivers.simulator.device import SimulatedOdpm96
from drivers.simulator.model import OpticalModel
from drivers.simulator.protocol import ScpiSession
from drivers.simulator.server import SimulatorServer

__all__ = ["OpticalModel", "ScpiSession", "SimulatedOdpm96", "SimulatorServer"]
