"""pm500 edge collector: PowerMonitor 500 over EtherNet/IP -> AWS IoT (MQTT/TLS) and InfluxDB."""
