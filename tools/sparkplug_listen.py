"""What a Sparkplug host sees: subscribe to spBv1.0/# and print every message decoded, one line per
message (topic, seq, metrics as name-or-alias=value), with a JSON line per message under --json.

    python tools/sparkplug_listen.py --port 1883 [--group demo-line] [--seconds 90] [--json]

Aliases are shown with the name the latest BIRTH gave them, as a host resolves them.
"""

from __future__ import annotations

import argparse
import json
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.service.sparkplug.payload import decode, value_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--group", default="+", help="Sparkplug group id (default: every group)")
    p.add_argument("--seconds", type=float, default=60.0, help="listen this long, then exit")
    p.add_argument("--json", action="store_true", help="one JSON object per message instead of a line")
    args = p.parse_args()
    names: dict[tuple[str, int], str] = {}  # (edge node, alias) -> name, from births

    def on_message(client, userdata, msg):
        parts = msg.topic.split("/")
        if len(parts) < 4 or parts[1] == "STATE":
            return
        node = parts[3]
        try:
            payload = decode(msg.payload)
        except Exception as exc:  # a message that is not Sparkplug B
            print(f"{msg.topic}: undecodable ({exc})", flush=True)
            return
        metrics = {}
        for m in payload.metrics:
            if m.name and m.HasField("alias"):
                names[(node, m.alias)] = m.name
            name = m.name or names.get((node, m.alias), f"alias {m.alias}")
            metrics[name + (" (historical)" if m.is_historical else "")] = value_of(m)
        seq = payload.seq if payload.HasField("seq") else None
        if args.json:
            print(json.dumps({"topic": msg.topic, "qos": msg.qos, "seq": seq, "metrics": metrics}), flush=True)
        else:
            shown = ", ".join(f"{k}={v!r}" for k, v in metrics.items())
            print(f"{msg.topic} qos {msg.qos} seq {seq}: {shown}", flush=True)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sparkplug-listen-{int(time.time())}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"spBv1.0/{args.group}/#", qos=1)
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    time.sleep(args.seconds)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
