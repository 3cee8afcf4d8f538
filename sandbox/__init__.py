"""Local stand-ins for the cloud and the plant, used by tests, benchmarks and the demo.

Everything here runs as a real process or server bound to 127.0.0.1 only:

- `sandbox.ca.DevCA`: a throw-away certificate authority (the bring-your-own-CA of a real fleet);
- `sandbox.mosquitto.MosquittoBroker`: Mosquitto 2.x with mutual TLS and an ACL rendered from
  `collector.topics`, standing in for the AWS IoT Core endpoint;
- `sandbox.influx.InfluxServer`: InfluxDB 1.x (`influxd`) with a generated config;
- `sandbox.moto.MotoServer`: moto's threaded server standing in for the AWS APIs;
- `sandbox.mqtt.Recorder`: a TLS subscriber that records what reaches the broker;
- `sandbox.procs.ManagedProcess`: child processes in their own process group, never left behind.
"""
