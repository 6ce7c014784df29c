"""Calibrating a station: collect normal samples, import defects, train, threshold, report, switch."""
