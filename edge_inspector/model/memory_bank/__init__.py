"""The memory bank: nearest-row search and samplers, the baseline scorer and its fitting."""
