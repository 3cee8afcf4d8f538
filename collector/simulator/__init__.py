"""PowerMonitor 500 simulator: cpppo EtherNet/IP server on 127.0.0.1 built from the shared register map.

Run `python -m collector.simulator --meters 2 --base-port 44818`; tests and benchmarks start it as a
subprocess with `collector.simulator.process.SimulatorProcess`. See docs/meter.md.
"""
