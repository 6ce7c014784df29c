"""The line service: camera -> queue -> model -> postprocess -> outbox -> MQTT, under systemd."""
