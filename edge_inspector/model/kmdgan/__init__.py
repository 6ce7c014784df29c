"""KMDGAN: the network and its modules, losses, training, score calibration and the artefact."""
