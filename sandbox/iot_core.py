"""AWS IoT Core's services around the broker, for the sandbox: lifecycle events, the Device Shadow
service's MQTT side and the rules engine, started together on one broker and one moto server.

Mosquitto plays the message broker; these three play what IoT Core does with its traffic
(`sandbox.lifecycle_events`, `sandbox.shadow_service`, `sandbox.iot_rules`). Start them once the
stack's resources are in moto (a plan replay): the rules engine runs the topic rules registered there,
and moto runs the state machines those rules start. moto keeps executable state machines in another
backend than recorded ones: call `MotoServer.execute_state_machines()` before the stack is replayed.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from sandbox.iot_rules import RulesEngine
from sandbox.lifecycle_events import LifecycleEvents
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import MotoServer
from sandbox.plan_replay import moto_clients
from sandbox.shadow_service import ShadowService


class IotCoreServices:
    def __init__(self, broker: MosquittoBroker, moto: MotoServer, region: str, workdir: Path) -> None:
        self.broker, self.moto, self.region, self.workdir = broker, moto, region, workdir
        self.rules: RulesEngine | None = None
        self._started: list[LifecycleEvents | ShadowService | RulesEngine] = []

    def start(self) -> Self:
        client = moto_clients(self.moto.aws_env(), self.region)
        self._started.append(LifecycleEvents(self.broker, self.workdir / "lifecycle").start())
        self._started.append(ShadowService(self.broker, client, self.workdir / "shadow").start())
        self.rules = RulesEngine(self.broker, client, self.workdir / "rules").start()
        self._started.append(self.rules)
        return self

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
