"""edge-inspector: factory-line edge inspection with KMDGAN anomaly detection."""

__version__ = "0.1.0"
