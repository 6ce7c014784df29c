"""Measuring a model: the protocol and operating-point metrics, and the evaluation harness."""
