"""The models: the frozen backbone, the memory-bank scorer (baseline) and KMDGAN, and scoring."""
