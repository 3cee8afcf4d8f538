"""The local end-to-end demo: the whole pm500 edge pipeline on one machine, no cloud (`./dev demo`).

Every AWS or plant piece is replaced by a real local stand-in from `sandbox/`, bound to 127.0.0.1:
moto for the AWS APIs (seeded from the real Pulumi program evaluated on the mock runtime), Mosquitto
with mutual TLS for the IoT Core endpoint, InfluxDB 1.x for the edge historian, cpppo simulators for
the PM500 meters. The operator-facing pieces run exactly as in a plant: `cli.py devices provision`
writes the bundle, `python -m collector --config <bundle>/config.yaml` reads it unchanged.
"""
