"""Variants of the KMDGAN model config for the benchmark tools: 'default', or key=value settings
(each value read as YAML, several separated by ';') over the default config."""

from __future__ import annotations

import yaml

from edge_inspector.config import KMDGANModelConfig

# keys that change what prepare() computes (features, memory banks): a variant sharing one
# preparation with others must leave them alone
PREPARED_KEYS = ("input_size", "bank_size", "sampler", "match_strides", "backbone")


def overrides(text: str) -> dict:
    """{key: value} of a variant: 'default' (none), or key=value settings separated by ';'."""
    if text == "default":
        return {}
    pairs = [part.partition("=") for part in text.split(";")]
    return {key.strip(): yaml.safe_load(value) for key, _, value in pairs}


def variant_config(text: str, **base) -> KMDGANModelConfig:
    """The KMDGAN config of a variant; its own settings win over base (e.g. the run's --iterations)."""
    settings = {k: v for k, v in base.items() if v is not None}
    return KMDGANModelConfig(kind="kmdgan", **{**settings, **overrides(text)})


def cut_text(level, extent) -> str:
    """A mask cut as the tools' tables print it: 'threshold / extent', 'threshold / plain', or '-'."""
    return "-" if level is None else f"{level:g} / {'plain' if extent is None else f'{extent:g}'}"
