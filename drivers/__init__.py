"""Transports (serial, VISA), the ODPM-96 driver and the simulated device."""
