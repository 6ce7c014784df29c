"""The station configuration: one YAML file per station, validated into typed models. Unknown
keys are rejected; every error is one line naming the file, YAML line, key path and what was
expected. Secrets never stand inline (config/mqtt.py).
"""

from edge_inspector.config.base import Strict
from edge_inspector.config.loader import load_config
from edge_inspector.config.mqtt import MqttConfig, SparkplugConfig, TlsConfig
from edge_inspector.config.station import (
    KMDGAN_BANK_SIZE,
    BackboneConfig,
    CalibrationConfig,
    CameraConfig,
    DatasetConfig,
    FolderCameraConfig,
    HttpConfig,
    InspectionConfig,
    KMDGANModelConfig,
    KMDGANModulesConfig,
    MemoryBankModelConfig,
    ModelConfig,
    OpenCVCameraConfig,
    PylonCameraConfig,
    Roi,
    RuntimeConfig,
    ServiceConfig,
    StationConfig,
    ThresholdConfig,
)

__all__ = ["KMDGAN_BANK_SIZE", "BackboneConfig", "CalibrationConfig", "CameraConfig", "DatasetConfig",
           "FolderCameraConfig", "HttpConfig", "InspectionConfig", "KMDGANModelConfig",
           "KMDGANModulesConfig", "MemoryBankModelConfig", "ModelConfig", "MqttConfig",
           "OpenCVCameraConfig", "PylonCameraConfig", "Roi", "RuntimeConfig", "ServiceConfig",
           "SparkplugConfig", "StationConfig", "Strict", "ThresholdConfig", "TlsConfig", "load_config"]
