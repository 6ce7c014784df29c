"""The broker sections: the JSON link (mqtt) and the Sparkplug B edge node beside it (mqtt.sparkplug).
Secrets never stand inline: the password comes from an environment variable or a credentials file
(systemd's LoadCredential= puts one under $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from edge_inspector.config.base import Strict, read_secret

SPARKPLUG_ID = r"^[^/+#]+$"  # group, edge node and device ids are topic levels: no '/', '+' or '#'


class TlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="Client key for mutual TLS.")


class SparkplugConfig(Strict):
    group_id: str = Field(pattern=SPARKPLUG_ID, description="Sparkplug group id (spBv1.0/<group>/...).")
    edge_node_id: str | None = Field(None, pattern=SPARKPLUG_ID, description="Edge node id; default: the station.")
    device_id: str = Field("camera", pattern=SPARKPLUG_ID, description="Device id of the station's camera.")
    primary_host_id: str | None = Field(None, pattern=SPARKPLUG_ID, description="Birth only while this host's "
                                        "spBv1.0/STATE/<id> says online; absent: birth on connect.")
    client_id: str | None = Field(None, description="Client id of the node's own connection; default: "
                                  "edge-inspector-<station>-sparkplug.")
    history_max_mb: float = Field(64.0, gt=0, description="Disk bound of the verdicts kept while no host hears "
                                  "them, replayed as historical metrics.")


class MqttConfig(Strict):
    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    protocol: Literal["3.1.1", "5"] = Field("5", description="MQTT protocol version.")
    client_id: str | None = Field(None, description="Client id; default: edge-inspector-<station>.")
    topic_prefix: str = Field("edge-inspector", description="Topics are <prefix>/<station>/...")
    username: str | None = Field(None, description="User name.")
    password_env: str | None = Field(None, description="Environment variable that holds the password.")
    password_file: Path | None = Field(None, description="File that holds the password.")
    password_credential: str | None = Field(None, description="Name of a systemd credential (LoadCredential=) "
                                            "that holds the password, read from $CREDENTIALS_DIRECTORY.")
    tls: TlsConfig | None = Field(None, description="TLS settings; absent: plain TCP.")
    keepalive: int = Field(30, ge=5, description="Keep-alive in seconds (the last will fires after 1.5x this).")
    publish_mask: Literal["always", "ng", "never"] = Field("ng", description="When the defect mask PNG is published.")
    outbox_max_mb: float = Field(256.0, gt=0, description="Disk bound of the outbox of unacknowledged messages.")
    sparkplug: SparkplugConfig | None = Field(None, description="A Sparkplug B edge node beside the JSON topics "
                                              "(docs/sparkplug.md); absent: JSON only.")

    @model_validator(mode="before")
    @classmethod
    def no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("inline passwords are not accepted: use password_env or password_file")
        return data

    def password(self) -> str | None:
        """The secret, read when needed so that it never sits in the config object."""
        return read_secret("mqtt.password", self.password_env, self.password_file, self.password_credential)
